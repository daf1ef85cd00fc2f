//! Comparing predictions, and judging a region over a socket: a loopback
//! server stands in for the gateway's pinned route and answers right,
//! wrong, malformed or not at all.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};

use super::*;
use crate::topology::Topology;

fn tolerance(text: &str) -> Tolerance {
    serde_json::from_str(text).expect("a tolerance")
}

#[test]
fn numbers_may_differ_by_the_tolerance_and_nothing_else_may_differ() {
    let exact = tolerance("0");
    assert!(compare(&json!(1), &json!(1.0), exact).is_ok());
    assert!(compare(&json!(4.625), &json!(4.625), exact).is_ok());
    assert!(compare(&json!(4.625), &json!(4.6250001), exact).is_err());
    assert!(compare(&json!(4.625), &json!(4.6250001), tolerance("0.001")).is_ok());
    assert!(compare(&json!(4.625), &json!(4.627), tolerance("0.001")).is_err());
    assert!(compare(&json!(-2), &json!(-3), tolerance("1")).is_ok());
    // Neighbours an f64 cannot tell apart are still different integers.
    let big = 9_007_199_254_740_993_u64;
    assert!(compare(&json!(big), &json!(big - 1), exact).is_err());
    assert!(compare(&json!(big), &json!(big), exact).is_ok());
    // Other values are compared exactly, whatever the tolerance.
    let loose = tolerance("10");
    assert!(compare(&json!("top"), &json!("top"), loose).is_ok());
    assert!(compare(&json!("top"), &json!("Top"), loose).is_err());
    assert!(compare(&json!(true), &json!(1), loose).is_err());
    assert!(compare(&json!(null), &json!(0), loose).is_err());
    assert!(compare(&json!("1"), &json!(1), loose).is_err());
}

#[test]
fn arrays_and_objects_are_compared_inside_and_the_difference_located() {
    let expected = json!({"scores": [0.9, 0.1], "classes": ["cat", "dog"]});
    let close = json!({"classes": ["cat", "dog"], "scores": [0.9001, 0.0999]});
    assert!(compare(&expected, &close, tolerance("0.001")).is_ok());
    let swapped = json!({"scores": [0.1, 0.9], "classes": ["cat", "dog"]});
    let difference = compare(&expected, &swapped, tolerance("0.001")).unwrap_err();
    assert_eq!(difference.at, ".scores[0]");
    assert_eq!(
        (difference.expected, difference.got),
        (json!(0.9), json!(0.1))
    );
    let extra_key = json!({"scores": [0.9, 0.1], "classes": ["cat", "dog"], "x": 1});
    assert_eq!(
        compare(&expected, &extra_key, tolerance("1"))
            .unwrap_err()
            .at,
        ""
    );
    let missing_key = json!({"scores": [0.9, 0.1], "labels": ["cat", "dog"]});
    assert!(compare(&expected, &missing_key, tolerance("1")).is_err());
    let shorter = json!({"scores": [0.9], "classes": ["cat", "dog"]});
    assert_eq!(
        compare(&expected, &shorter, tolerance("1")).unwrap_err().at,
        ".scores"
    );
}

const TOPOLOGY: &str = "\
project: acme-ml-prod
regions:
  - {id: us-central1, role: primary}
  - {id: us-east1, role: standby}
workloads:
  - id: ranker
    class: online-inference
    pattern: active-passive
    assets:
      models:
        - id: scorer
          model-id: m1
          serving-replicas: 2
          standby-replicas: 1
          endpoints: {us-central1: e1, us-east1: e2}
          golden-requests:
            - instances: [[1.0, 2.0], [3.0]]
              predictions: [0.5, 1.5]
              tolerance: 0.01
            - instances: [{user: u-1}]
              predictions: [{label: top}]
        - id: plain
          model-id: m2
          serving-replicas: 2
          standby-replicas: 1
          endpoints: {us-central1: e3, us-east1: e4}
";

/// What the stand-in gateway answers to every request, and every request it got.
#[derive(Clone, Default)]
struct Stand {
    answer: Arc<Mutex<(u16, String)>>,
    asked: Arc<Mutex<Vec<(String, Value)>>>,
}

async fn gateway(stand: Stand) -> String {
    let app = Router::new()
        .route(
            "/base/regions/{region}/predict/{workload}/{model}",
            post(
                |State(stand): State<Stand>,
                 Path((region, workload, model)): Path<(String, String, String)>,
                 body: axum::Json<Value>| async move {
                    stand
                        .asked
                        .lock()
                        .unwrap()
                        .push((format!("{region}/{workload}/{model}"), body.0));
                    let (status, body) = stand.answer.lock().unwrap().clone();
                    (StatusCode::from_u16(status).unwrap(), body)
                },
            ),
        )
        .with_state(stand);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}/base/")
}

#[tokio::test]
async fn a_region_passes_only_with_every_expected_prediction() {
    let topology = Topology::parse(TOPOLOGY, "t.yaml").unwrap();
    let workload = &topology.workloads()[0];
    assert!(declared(workload));
    let stand = Stand::default();
    let client = GoldenClient::new(&gateway(stand.clone()).await).unwrap();
    let set = |status: u16, body: Value| {
        *stand.answer.lock().unwrap() = (status, body.to_string());
    };

    // The first request is answered right (within 0.01), so the second is
    // sent; the same answer to it has a prediction too many.
    set(
        200,
        json!({"predictions": [0.505, 1.5], "deployedModelId": "1"}),
    );
    let failure = client.check(workload, "us-east1").await.unwrap_err();
    assert_eq!(
        failure.to_string(),
        "us-east1 answered golden request 1 of model scorer without its predictions: \
         2 predictions for 1 instances"
    );
    {
        let asked = stand.asked.lock().unwrap();
        assert_eq!(asked[0].0, "us-east1/ranker/scorer");
        assert_eq!(asked[0].1, json!({"instances": [[1.0, 2.0], [3.0]]}));
        assert_eq!(asked[1].1, json!({"instances": [{"user": "u-1"}]}));
    }

    // A 2xx with a wrong number is a failure naming it.
    set(200, json!({"predictions": [0.5, 2.5]}));
    let failure = client.check(workload, "us-east1").await.unwrap_err();
    assert!(
        matches!(
            &failure,
            GoldenFailure::Wrong {
                request: 0,
                instance: 1,
                ..
            }
        ),
        "{failure:?}"
    );
    assert!(
        failure
            .to_string()
            .contains("instance 1 [3.0]: expected 1.5, got 2.5 (tolerance 0.01)"),
        "{failure}"
    );

    // No predictions, too few, not JSON, an error status.
    set(200, json!({"outputs": [0.5, 1.5]}));
    let failure = client.check(workload, "us-east1").await.unwrap_err();
    assert!(
        failure.to_string().contains("no `predictions` list"),
        "{failure}"
    );
    set(200, json!({"predictions": [0.5]}));
    let failure = client.check(workload, "us-east1").await.unwrap_err();
    assert!(
        failure
            .to_string()
            .contains("1 predictions for 2 instances"),
        "{failure}"
    );
    *stand.answer.lock().unwrap() = (200, "<html>".to_string());
    let failure = client.check(workload, "us-east1").await.unwrap_err();
    assert!(failure.to_string().contains("not JSON"), "{failure}");
    *stand.answer.lock().unwrap() = (503, "us-east1 is failed".to_string());
    let failure = client.check(workload, "us-east1").await.unwrap_err();
    assert_eq!(
        failure.to_string(),
        "us-east1 did not answer golden request 0 of model scorer: \
         HTTP 503 Service Unavailable: us-east1 is failed"
    );
}

#[tokio::test]
async fn every_request_answered_right_passes_and_a_closed_port_fails() {
    let yaml = TOPOLOGY.replace(
        "            - instances: [{user: u-1}]\n              predictions: [{label: top}]\n",
        "",
    );
    let topology = Topology::parse(&yaml, "t.yaml").unwrap();
    let workload = &topology.workloads()[0];
    let stand = Stand::default();
    let client = GoldenClient::new(&gateway(stand.clone()).await).unwrap();
    *stand.answer.lock().unwrap() = (200, json!({"predictions": [0.5, 1.495]}).to_string());
    let pass = client.check(workload, "us-central1").await.unwrap();
    assert_eq!(
        pass.to_string(),
        "us-central1 answered 1 golden requests right (2 predictions)"
    );
    assert_eq!(
        stand.asked.lock().unwrap().len(),
        1,
        "the plain model has none"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let client = GoldenClient::new(&format!("http://{closed}")).unwrap();
    assert!(matches!(
        client.check(workload, "us-central1").await,
        Err(GoldenFailure::Unanswered { request: 0, .. })
    ));
}

#[test]
fn gateway_urls_are_checked_and_pinned_urls_built() {
    let client = GoldenClient::new("http://127.0.0.1:8080/gateway/").unwrap();
    assert_eq!(
        client.pinned_url("us-east1", "ranker", "scorer"),
        "http://127.0.0.1:8080/gateway/regions/us-east1/predict/ranker/scorer"
    );
    let refused = GoldenClient::new("gateway.example.com").unwrap_err();
    assert!(
        refused.to_string().contains("not a gateway URL"),
        "{refused}"
    );
    assert!(GoldenClient::new("ftp://gateway.example.com").is_err());
}
