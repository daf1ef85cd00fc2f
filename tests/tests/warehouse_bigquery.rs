//! `BigQueryWarehouse` against bqemulator: the warehouse conformance suite,
//! and jobs in a single region polled with their location.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{Method, StatusCode, Uri};
use axum::response::IntoResponse;
use bytes::Bytes;
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::warehouse::bigquery::BigQueryWarehouse;
use lifeboat_shared::warehouse::{Column, TableRef, Warehouse, conformance};
use lifeboat_tests::{PROJECT, emulator_host, unique_name};
use serde_json::json;
use tokio::net::TcpListener;

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

/// The single region every job of the location test runs in.
const LOCATION: &str = "europe-west1";

/// What the location proxy saw: each poll's path and query string.
type Polls = Arc<Mutex<Vec<String>>>;

/// Stands between the warehouse and bqemulator and gives bqemulator the
/// two traits of BigQuery that it lacks and that the location fix is about
/// (bqemulator runs every job synchronously, reports each in `US`, and
/// ignores `location`): a job is still running when inserted (`jobs.query`
/// answers `jobComplete: false`, a copy job `RUNNING`), and a poll
/// (`jobs.get`, `jobs.getQueryResults`) without the job's location is
/// answered 404, as BigQuery answers it for a job in a single region. Copy
/// jobs report their location, as BigQuery's do; `jobs.query` answers
/// carry none, as bqemulator's do not, so the warehouse must take it from
/// the dataset.
async fn location_proxy(emulator: String) -> (String, Polls) {
    let polls: Polls = Arc::default();
    let seen = polls.clone();
    let client = reqwest::Client::new();
    let forward = move |method: Method, uri: Uri, body: Bytes| {
        let (client, emulator, seen) = (client.clone(), emulator.clone(), seen.clone());
        async move {
            let path = uri.path().to_string();
            let query = uri.query().unwrap_or_default().to_string();
            let is_poll =
                method == Method::GET && (path.contains("/jobs/") || path.contains("/queries/"));
            if is_poll {
                seen.lock().unwrap().push(format!("{path}?{query}"));
                if !query
                    .split('&')
                    .any(|pair| pair == format!("location={LOCATION}"))
                {
                    let message = format!("Not found: Job {path} (no location {LOCATION} given)");
                    let body = json!({"error": {"code": 404, "message": message}});
                    return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
                }
            }
            let url = format!(
                "{emulator}{}",
                uri.path_and_query().map_or("", |p| p.as_str())
            );
            let answer = client
                .request(method.clone(), url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("bqemulator answers");
            let status = answer.status();
            let mut value: serde_json::Value = answer.json().await.unwrap_or_default();
            if status.is_success() && method == Method::POST && path.ends_with("/queries") {
                value["jobComplete"] = json!(false);
                value.as_object_mut().map(|v| v.remove("rows"));
            }
            if status.is_success() && (path.ends_with("/jobs") || path.contains("/jobs/")) {
                value["jobReference"]["location"] = json!(LOCATION);
                if method == Method::POST {
                    value["status"] = json!({"state": "RUNNING"});
                }
            }
            (
                StatusCode::from_u16(status.as_u16()).unwrap(),
                axum::Json(value),
            )
                .into_response()
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        axum::serve(listener, Router::new().fallback(forward))
            .await
            .expect("proxy serves");
    });
    (format!("http://{address}"), polls)
}

#[tokio::test]
async fn jobs_in_a_single_region_are_polled_with_their_location() {
    let (proxy, polls) = location_proxy(emulator_host("BIGQUERY_EMULATOR_HOST")).await;
    let warehouse = BigQueryWarehouse::new(ApiEndpoint::emulator(&proxy), PROJECT);
    let source = unique_name("euw1_src").replace('-', "_");
    let replica = unique_name("euw1_rep").replace('-', "_");
    let columns = [Column {
        name: "id".to_string(),
        kind: "INTEGER".to_string(),
    }];
    for dataset in [&source, &replica] {
        warehouse
            .create_dataset(PROJECT, dataset, LOCATION)
            .await
            .expect("create dataset");
    }
    let table = TableRef::new(PROJECT, &source, "events");
    warehouse
        .create_table(&table, &columns)
        .await
        .expect("create table");
    warehouse
        .insert_rows(&table, &[json!({"id": 1}), json!({"id": 2})])
        .await
        .expect("insert rows");

    assert_eq!(warehouse.row_count(&table).await.expect("count rows"), 2);
    let copy = TableRef::new(PROJECT, &replica, "events");
    warehouse.copy_table(&table, &copy).await.expect("copy");

    let polls = polls.lock().unwrap().clone();
    for kind in ["/queries/", "/jobs/"] {
        assert!(
            polls.iter().any(|poll| poll.contains(kind)),
            "no {kind} poll went through the proxy: {polls:?}"
        );
    }
    for poll in &polls {
        assert!(poll.ends_with(&format!("location={LOCATION}")), "{poll}");
    }
    // The proxy refuses a poll without the location, as BigQuery does: the
    // test above fails if the warehouse ever polls without it.
    let unlocated = reqwest::get(format!("{proxy}/bigquery/v2/projects/{PROJECT}/jobs/any"))
        .await
        .expect("proxy answers");
    assert_eq!(unlocated.status(), reqwest::StatusCode::NOT_FOUND);
}
