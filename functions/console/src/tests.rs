use std::collections::BTreeMap;

use axum::body::Body;
use chrono::{DateTime, TimeDelta, Utc};
use http::Request;
use lifeboat_shared::records::checkpoint_rpo::{self, NewestCheckpoint};
use lifeboat_shared::records::incident::{self, Step};
use lifeboat_shared::routing::{self, RoutingTable};
use lifeboat_shared::state::local::LocalStateStore;
use tower::ServiceExt;

use super::*;

/// Training in us-central1, checkpoints copied to us-east1 and
/// europe-west1; RPO 1 h.
fn topology() -> Topology {
    let yaml = r#"
project: acme-ml-prod
regions:
  - id: us-central1
    role: primary
  - id: us-east1
    role: standby
  - id: europe-west1
    role: standby
workloads:
  - id: ranker
    class: production-training
    pattern: active-passive
    assets:
      checkpoints:
        - id: ranker-ckpt
          bucket: ckpt-usc1
          prefix: runs/v7/
          marker: orbax
          replicas:
            us-east1: ckpt-use1
            europe-west1: ckpt-euw1
          interval-steps: 100
          keep-newest: 2
          step-duration: 2s
"#;
    Topology::parse(yaml, "console.yaml").expect("a valid topology")
}

async fn context(dir: &std::path::Path) -> ConsoleContext {
    ConsoleContext {
        topology: Arc::new(topology()),
        state: Arc::new(LocalStateStore::open(dir).await.expect("state")),
    }
}

fn newest(region: &str, step: u64, written: DateTime<Utc>) -> NewestCheckpoint {
    NewestCheckpoint {
        workload: "ranker".into(),
        location: "ranker-ckpt".into(),
        region: region.into(),
        step,
        directory: format!("runs/v7/step_{step}/"),
        source_written_at: written,
        committed_at: written + TimeDelta::seconds(3),
        copy_millis: 3000,
        history: Vec::new(),
    }
}

async fn get(context: &ConsoleContext, path: &str) -> (StatusCode, String) {
    let response = router(context.clone())
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("answered");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .expect("body");
    (status, String::from_utf8(bytes.to_vec()).expect("UTF-8"))
}

#[tokio::test]
async fn a_fresh_deployment_is_at_risk_and_the_page_says_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let context = context(dir.path()).await;
    let (status, json) = get(&context, "/overview").await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let overview: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let ranker = &overview["workloads"][0];
    assert_eq!(ranker["readiness"]["ready"], false, "{json}");
    let reasons = ranker["readiness"]["reasons"].to_string();
    assert!(
        reasons.contains("losing us-central1: no region is ready")
            && reasons.contains("us-east1: checkpoints ranker-ckpt: no complete checkpoint yet"),
        "{reasons}"
    );
    assert_eq!(ranker["routing"]["weights"]["us-central1"], 100, "{json}");

    let (status, html) = get(&context, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"id="verdict-ranker">AT RISK<"#), "{html}");
    assert!(html.contains("implied by the pattern"), "{html}");
    assert!(
        html.contains(r#"id="region-us-central1" data-health="healthy""#),
        "{html}"
    );
    assert!(html.contains("No data: nothing replicated yet."), "{html}");
}

#[tokio::test]
async fn fresh_copies_make_it_ready_and_an_open_incident_on_the_source_shows_everywhere() {
    let dir = tempfile::tempdir().expect("temp dir");
    let context = context(dir.path()).await;
    let state = context.state.as_ref();
    let now = Utc::now();
    for (step, ago) in [(100, 20), (200, 10), (300, 1)] {
        for region in ["us-east1", "europe-west1"] {
            checkpoint_rpo::record(state, &newest(region, step, now - TimeDelta::minutes(ago)))
                .await
                .expect("recorded");
        }
    }
    let weights = |pairs: &[(&str, u32)]| -> BTreeMap<String, u32> {
        pairs.iter().map(|(r, w)| (r.to_string(), *w)).collect()
    };
    let first = RoutingTable::new(
        "ranker",
        weights(&[("us-central1", 100), ("us-east1", 0)]),
        "initial",
    )
    .expect("table");
    routing::write(state, &first, 0).await.expect("written");

    let (_, html) = get(&context, "/").await;
    assert!(html.contains(r#"id="verdict-ranker">READY<"#), "{html}");
    assert!(
        html.contains("losing us-central1: us-east1 is ready to take its traffic"),
        "{html}"
    );
    assert!(
        html.contains(r#"data-asset="ranker-ckpt" data-region="us-east1" data-state="met""#),
        "{html}"
    );
    let exposure = &html[html
        .find(r#"id="chart-exposure-ranker""#)
        .expect("an exposure chart")..];
    assert!(exposure.contains("polyline"), "the sawtooth is drawn");

    // us-central1 fails: an incident opens and failover moves the traffic.
    incident::append(
        state,
        ("incident-7", "ranker", "us-central1", now),
        Step::new("received", "uptime check failed <script>alert(1)</script>"),
        None,
        None,
    )
    .await
    .expect("incident");
    let moved = RoutingTable::new(
        "ranker",
        weights(&[("us-central1", 0), ("us-east1", 100)]),
        "incident-7",
    )
    .expect("table");
    routing::write(state, &moved, 1).await.expect("written");

    let (_, html) = get(&context, "/").await;
    assert!(
        html.contains(r#"id="region-us-central1" data-health="incident""#),
        "{html}"
    );
    assert!(
        html.contains(r#"data-region="us-east1" data-weight="100""#),
        "{html}"
    );
    assert!(
        html.contains(r#"data-region="us-central1" data-weight="0""#),
        "{html}"
    );
    assert!(
        html.contains(
            r#"id="incident-incident-7" data-state="open" data-region="us-central1" open"#
        ),
        "{html}"
    );
    assert!(
        html.contains(r#"data-region="us-east1" data-state="source-down""#),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !html.contains("<script>alert"),
        "escaped"
    );
    let routing = &html[html
        .find(r#"id="chart-routing-ranker""#)
        .expect("a routing chart")..];
    let routing = &routing[..routing.find("</svg>").expect("closed")];
    assert_eq!(
        routing.matches("<path").count(),
        2,
        "one step line per region: {routing}"
    );
    assert_eq!(
        routing.matches("<circle").count(),
        4,
        "two writes per region: {routing}"
    );
}

#[tokio::test]
async fn a_drill_report_is_drawn_from_its_record_and_an_unknown_run_is_404() {
    let dir = tempfile::tempdir().expect("temp dir");
    let context = context(dir.path()).await;
    let (status, body) = get(&context, "/runs/no-such-run/report").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("no drill run no-such-run"), "{body}");
}
