//! Refreshing the plan's prices from the Cloud Billing Catalog, against the
//! catalog stand-in built on the official `google-cloud-billing-v1` types.

use chrono::{DateTime, Utc};
use lifeboat_plan::catalog::{self, RefreshError};
use lifeboat_plan::prices::{PriceBook, PriceKey};
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::topology::StorageClass;
use lifeboat_tests::billing_standin::{self, BillingStandIn};

/// The snapshot with every price changed, so a refreshed price can only
/// have come from the stand-in.
fn served_book() -> PriceBook {
    let mut book = PriceBook::snapshot();
    for price in &mut book.prices {
        price.usd_per_unit = (price.usd_per_unit * 1.1 * 1e9).round() / 1e9;
    }
    book
}

fn keys(book: &PriceBook) -> Vec<PriceKey> {
    book.prices.iter().map(|price| price.key.clone()).collect()
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z")
        .expect("date")
        .with_timezone(&Utc)
}

async fn refresh_from(
    standin: &BillingStandIn,
    keys: &[PriceKey],
) -> Result<PriceBook, RefreshError> {
    let client = catalog::connect(&ApiEndpoint::emulator(&standin.host()))
        .await
        .expect("connect to the stand-in");
    catalog::refresh(&client, keys, now()).await
}

#[tokio::test]
async fn refresh_finds_every_key_over_several_pages_at_the_served_price() {
    let served = served_book();
    let skus = billing_standin::seed_from(&served);
    let listed: usize = skus.values().map(Vec::len).sum();
    let standin = BillingStandIn::start(skus).await;

    let refreshed = refresh_from(&standin, &keys(&served))
        .await
        .expect("refresh");

    assert_eq!(refreshed.prices.len(), served.prices.len());
    for (index, (got, want)) in refreshed.prices.iter().zip(&served.prices).enumerate() {
        assert_eq!(got.key, want.key);
        assert_eq!(got.sku, format!("STANDIN-{index:04}"), "{}", want.key);
        assert_eq!(got.description, want.description);
        assert_eq!(got.unit, want.unit);
        assert!(
            (got.usd_per_unit - want.usd_per_unit).abs() < 1e-12,
            "{}: refreshed {} but the stand-in served {}",
            want.key,
            got.usd_per_unit,
            want.usd_per_unit
        );
    }
    assert_eq!(refreshed.source.taken_at, now());
    assert_eq!(refreshed.source.stale_after_days, 180);
    assert!(
        refreshed
            .source
            .origin
            .contains("Cloud Billing Catalog API")
    );
    assert!(
        standin.pages_served() >= listed / billing_standin::PAGE_SIZE,
        "{} pages for {listed} SKUs: the client did not follow nextPageToken",
        standin.pages_served()
    );
}

#[tokio::test]
async fn a_key_with_no_sku_is_an_error_naming_it_and_the_sku_looked_for() {
    let mut served = served_book();
    let missing = PriceKey::BigQueryStorage {
        region: "europe-west4".into(),
    };
    let keys = keys(&served);
    served.prices.retain(|price| price.key != missing);
    let standin = BillingStandIn::start(billing_standin::seed_from(&served)).await;

    let error = refresh_from(&standin, &keys).await.unwrap_err();

    let RefreshError::NoSku { key, .. } = &error else {
        panic!("expected no SKU, got {error}");
    };
    assert_eq!(key, &missing);
    let message = error.to_string();
    assert!(
        message.contains("BigQuery active logical storage in europe-west4"),
        "{message}"
    );
    assert!(
        message.contains("Active Logical Storage (europe-west4)"),
        "{message}"
    );
}

#[tokio::test]
async fn two_matching_skus_are_an_error_naming_both() {
    let served = served_book();
    let key = PriceKey::Storage {
        class: StorageClass::Standard,
        region: "us-east1".into(),
    };
    let price = served.price(&key).expect("snapshot price").clone();
    let mut skus = billing_standin::seed_from(&served);
    skus.get_mut(catalog::CLOUD_STORAGE)
        .expect("storage SKUs")
        .push(billing_standin::catalog_sku(
            catalog::CLOUD_STORAGE,
            "TWIN-0001",
            &price.description,
            &["us-east1", "us-central1"],
            &price.unit,
            0.5,
        ));
    let standin = BillingStandIn::start(skus).await;

    let error = refresh_from(&standin, std::slice::from_ref(&key))
        .await
        .unwrap_err();

    let RefreshError::Ambiguous {
        key: named, skus, ..
    } = &error
    else {
        panic!("expected two SKUs, got {error}");
    };
    assert_eq!(named, &key);
    assert_eq!(skus.len(), 2, "{skus:?}");
    assert!(
        skus.iter().any(|sku| sku.starts_with("TWIN-0001")),
        "{skus:?}"
    );
}

#[tokio::test]
async fn the_catalog_failing_is_an_error_not_a_price() {
    let served = served_book();
    let standin = BillingStandIn::start(billing_standin::seed_from(&served)).await;
    standin.set_failing(true);

    let error = refresh_from(&standin, &keys(&served)).await.unwrap_err();

    assert!(matches!(error, RefreshError::List { .. }), "{error}");
    assert!(
        error.to_string().contains("list the SKUs of service"),
        "{error}"
    );
}

#[tokio::test]
async fn a_refreshed_price_file_saved_loads_back_equal() {
    let served = served_book();
    let standin = BillingStandIn::start(billing_standin::seed_from(&served)).await;
    let refreshed = refresh_from(&standin, &keys(&served))
        .await
        .expect("refresh");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("prices.json");

    refreshed.save(&path).expect("save");

    assert_eq!(PriceBook::load(&path).expect("load"), refreshed);
}
