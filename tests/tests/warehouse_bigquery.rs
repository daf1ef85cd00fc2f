//! `BigQueryWarehouse` against bqemulator: the warehouse conformance suite.

use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::warehouse::bigquery::BigQueryWarehouse;
use lifeboat_shared::warehouse::conformance;
use lifeboat_tests::{PROJECT, emulator_host, unique_name};

#[tokio::test]
async fn bigquery_passes_the_warehouse_conformance_suite() {
    let warehouse = BigQueryWarehouse::new(
        ApiEndpoint::emulator(&emulator_host("BIGQUERY_EMULATOR_HOST")),
        PROJECT,
    );
    let source = unique_name("src").replace('-', "_");
    let replica = unique_name("rep").replace('-', "_");
    conformance::run_all(&warehouse, PROJECT, &source, &replica).await;
}
