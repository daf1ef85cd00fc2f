//! A Cloud Billing Catalog stand-in: the two REST methods of the catalog
//! (`services.list` and `services.skus.list`), built on the official
//! `google-cloud-billing-v1` types so its JSON cannot drift from the
//! client's. It pages its listings [`PAGE_SIZE`] at a time so clients must
//! follow `nextPageToken`, and can be told to fail with 503.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use google_cloud_billing_v1::model::pricing_expression::TierRate;
use google_cloud_billing_v1::model::{
    Category, ListServicesResponse, ListSkusResponse, PricingExpression, PricingInfo, Service, Sku,
};
use google_cloud_type::model::Money;
use google_cloud_wkt::Timestamp;
use lifeboat_plan::catalog::{self, sku_query};
use lifeboat_plan::prices::PriceBook;

use crate::standin_server::{LoopbackServer, google_error};

/// Entries per listing page.
pub const PAGE_SIZE: usize = 3;

/// The catalog services Lifeboat prices from, with their display names.
const SERVICES: [(&str, &str); 6] = [
    (catalog::VERTEX_AI, "Vertex AI"),
    (catalog::CLOUD_STORAGE, "Cloud Storage"),
    (catalog::BIGQUERY, "BigQuery"),
    (catalog::COMPUTE_ENGINE, "Compute Engine"),
    (catalog::NETWORKING, "Networking"),
    (catalog::CLOUD_RUN, "Cloud Run"),
];

struct Shared {
    services: Vec<Service>,
    skus: BTreeMap<String, Vec<Sku>>,
    failing: AtomicBool,
    pages_served: AtomicUsize,
}

/// The stand-in, serving on a loopback port until dropped.
pub struct BillingStandIn {
    shared: Arc<Shared>,
    server: LoopbackServer,
}

impl BillingStandIn {
    /// Starts the stand-in on a free loopback port, listing `skus` (by
    /// catalog service id) under the six services Lifeboat prices from.
    pub async fn start(skus: BTreeMap<String, Vec<Sku>>) -> Self {
        let services = SERVICES
            .iter()
            .map(|(id, name)| {
                Service::new()
                    .set_name(format!("services/{id}"))
                    .set_service_id(*id)
                    .set_display_name(*name)
            })
            .collect();
        let shared = Arc::new(Shared {
            services,
            skus,
            failing: AtomicBool::new(false),
            pages_served: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route("/v1/services", get(list_services))
            .route("/v1/services/{service}/skus", get(list_skus))
            .with_state(shared.clone());
        let server = LoopbackServer::start(router).await;
        Self { shared, server }
    }

    /// The `host:port` to give a client as its endpoint.
    pub fn host(&self) -> String {
        self.server.host()
    }

    /// While `failing`, every call is answered 503 UNAVAILABLE.
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    /// How many listing pages were answered (failures not counted).
    pub fn pages_served(&self) -> usize {
        self.shared.pages_served.load(Ordering::SeqCst)
    }
}

/// A catalog SKU as the real catalog shapes one: `OnDemand`, with an
/// older pricing at twice the price and a newer one whose first tier is
/// free (so a client must take the newest pricing's first paid tier).
pub fn catalog_sku(
    service: &str,
    sku_id: &str,
    description: &str,
    regions: &[&str],
    unit: &str,
    usd_per_unit: f64,
) -> Sku {
    let pricing = |seconds: i64, tiers: Vec<TierRate>| {
        PricingInfo::new()
            .set_effective_time(Timestamp::clamp(seconds, 0))
            .set_pricing_expression(
                PricingExpression::new()
                    .set_usage_unit(unit)
                    .set_tiered_rates(tiers),
            )
    };
    let tier = |start: f64, usd: f64| {
        TierRate::new()
            .set_start_usage_amount(start)
            .set_unit_price(money(usd))
    };
    Sku::new()
        .set_name(format!("services/{service}/skus/{sku_id}"))
        .set_sku_id(sku_id)
        .set_description(description)
        .set_category(Category::new().set_usage_type("OnDemand"))
        .set_service_regions(regions.iter().copied())
        .set_pricing_info([
            pricing(1_700_000_000, vec![tier(0.0, usd_per_unit * 2.0)]),
            pricing(
                1_780_000_000,
                vec![tier(0.0, 0.0), tier(10.0, usd_per_unit)],
            ),
        ])
}

/// US dollars as the catalog writes them: whole units and nanos.
fn money(usd: f64) -> Money {
    let units = usd.trunc();
    Money::new()
        .set_currency_code("USD")
        .set_units(units as i64)
        .set_nanos(((usd - units) * 1e9).round() as i32)
}

/// A catalog seeded from `book`: one SKU per price, under the service and
/// in the region its key's SKU query names, with ids `STANDIN-0000`,
/// `STANDIN-0001`, ... in the book's order. Each SKU is shadowed by a
/// committed-use twin with the same description that a client must skip.
pub fn seed_from(book: &PriceBook) -> BTreeMap<String, Vec<Sku>> {
    let mut skus: BTreeMap<String, Vec<Sku>> = BTreeMap::new();
    for (index, price) in book.prices.iter().enumerate() {
        let query = sku_query(&price.key);
        let sku = catalog_sku(
            query.service,
            &format!("STANDIN-{index:04}"),
            &price.description,
            &[query.region.as_str()],
            &price.unit,
            price.usd_per_unit,
        );
        let commitment = sku
            .clone()
            .set_sku_id(format!("COMMIT-{index:04}"))
            .set_category(Category::new().set_usage_type("Commit1Yr"));
        skus.entry(query.service.to_string())
            .or_default()
            .extend([sku, commitment]);
    }
    skus
}

fn failure(shared: &Shared) -> Option<Response> {
    shared.failing.load(Ordering::SeqCst).then(|| {
        google_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "the stand-in was told to fail".into(),
        )
    })
}

/// The page of `items` a `pageToken` (an offset) asks for, and the token
/// of the next page (empty on the last).
fn page<T: Clone>(
    shared: &Shared,
    items: &[T],
    query: &HashMap<String, String>,
) -> (Vec<T>, String) {
    shared.pages_served.fetch_add(1, Ordering::SeqCst);
    let offset: usize = query
        .get("pageToken")
        .and_then(|token| token.parse().ok())
        .unwrap_or(0);
    let page: Vec<T> = items.iter().skip(offset).take(PAGE_SIZE).cloned().collect();
    let next = offset + page.len();
    let token = if next < items.len() {
        next.to_string()
    } else {
        String::new()
    };
    (page, token)
}

async fn list_services(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(failure) = failure(&shared) {
        return failure;
    }
    let (services, token) = page(&shared, &shared.services, &query);
    Json(
        ListServicesResponse::new()
            .set_services(services)
            .set_next_page_token(token),
    )
    .into_response()
}

async fn list_skus(
    State(shared): State<Arc<Shared>>,
    Path(service): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(failure) = failure(&shared) {
        return failure;
    }
    if !shared.services.iter().any(|s| s.service_id == service) {
        return google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no service services/{service}"),
        );
    }
    let skus = shared.skus.get(&service).cloned().unwrap_or_default();
    let (skus, token) = page(&shared, &skus, &query);
    Json(
        ListSkusResponse::new()
            .set_skus(skus)
            .set_next_page_token(token),
    )
    .into_response()
}
