//! data-sync against fake-gcs-server and the Firestore emulator: the same
//! scenario suite the local backends pass.

use std::sync::Arc;

use lifeboat_data_sync::scenarios::{self, Fixture};
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::state::firestore::{DEFAULT_DATABASE, FirestoreStore};
use lifeboat_shared::storage::gcs::GcsStore;
use lifeboat_tests::{PROJECT, emulator_host, unique_name};

async fn emulator_fixture() -> Fixture {
    let storage = GcsStore::new(
        ApiEndpoint::emulator(&emulator_host("STORAGE_EMULATOR_HOST")),
        PROJECT,
    )
    .with_list_page_size(3);
    let state = FirestoreStore::new(
        ApiEndpoint::emulator(&emulator_host("FIRESTORE_EMULATOR_HOST")),
        PROJECT,
        DEFAULT_DATABASE,
    )
    .expect("Firestore client");
    Fixture::create(&unique_name("ds"), Arc::new(storage), Arc::new(state)).await
}

#[tokio::test]
async fn data_sync_passes_the_scenarios_on_the_emulators() {
    scenarios::run_all(&emulator_fixture().await).await;
}
