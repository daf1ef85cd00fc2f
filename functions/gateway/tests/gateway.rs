//! The gateway over real sockets: two upstream regions on loopback, the
//! routing table in the embedded state store, predictions through the
//! gateway's router served on its own port.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use lifeboat_gateway::{
    ATTEMPTS_HEADER, Gateway, GatewayOptions, REGION_HEADER, Upstreams, router,
};
use lifeboat_shared::fault::{self, Fault, FaultKind};
use lifeboat_shared::gcp::Credentials;
use lifeboat_shared::routing::{self, RoutingTable};
use lifeboat_shared::server::Shutdown;
use lifeboat_shared::state::StateStore;
use lifeboat_shared::state::local::LocalStateStore;
use lifeboat_shared::traffic;

/// One region's inference server: answers with its name, or fails on demand.
struct Region {
    url: String,
    failing: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
}

async fn region(name: &'static str) -> Region {
    let failing = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let (fail, count) = (failing.clone(), served.clone());
    let app = Router::new().route(
        "/predict",
        post(move |body: String| {
            let (fail, count) = (fail.clone(), count.clone());
            async move {
                if fail.load(Ordering::SeqCst) {
                    return (StatusCode::SERVICE_UNAVAILABLE, "region down".to_string());
                }
                count.fetch_add(1, Ordering::SeqCst);
                (
                    StatusCode::OK,
                    format!("{{\"region\":\"{name}\",\"echo\":{body}}}"),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/predict", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    Region {
        url,
        failing,
        served,
    }
}

struct Rig {
    url: String,
    state: Arc<dyn StateStore>,
    central: Region,
    east: Region,
    _dir: tempfile::TempDir,
    shutdown: Shutdown,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

fn weights(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs.iter().map(|(r, w)| (r.to_string(), *w)).collect()
}

async fn rig(initial: &[(&str, u32)]) -> Rig {
    rig_with(initial, None, true).await
}

/// A rig whose us-central1 upstream is `central_url` when given (e.g. a
/// port nobody listens on) instead of its inference server, and whose
/// gateway retries in the next region when `retry`.
async fn rig_with(initial: &[(&str, u32)], central_url: Option<String>, retry: bool) -> Rig {
    let options = GatewayOptions {
        retry,
        ..rig_options()
    };
    rig_configured(initial, central_url, options).await
}

/// What a rig's gateway runs with by default: quick refreshes, a 2 s
/// attempt timeout, in us-east1.
fn rig_options() -> GatewayOptions {
    GatewayOptions {
        refresh: Duration::from_millis(100),
        attempt_timeout: Duration::from_secs(2),
        region: Some("us-east1".to_string()),
        ..GatewayOptions::default()
    }
}

/// A rig whose gateway runs with `options`.
async fn rig_configured(
    initial: &[(&str, u32)],
    central_url: Option<String>,
    options: GatewayOptions,
) -> Rig {
    let dir = tempfile::tempdir().expect("temp dir");
    let state: Arc<dyn StateStore> =
        Arc::new(LocalStateStore::open(dir.path()).await.expect("state"));
    let table = RoutingTable::new("ranking", weights(initial), "test").expect("table");
    routing::write(state.as_ref(), &table, 0)
        .await
        .expect("routing table");
    let (central, east) = (region("us-central1").await, region("us-east1").await);
    let mut upstreams = Upstreams::new();
    let central_upstream = central_url.unwrap_or_else(|| central.url.clone());
    upstreams.insert("ranking", "ranker", "us-central1", central_upstream);
    upstreams.insert("ranking", "ranker", "us-east1", east.url.clone());
    let gateway = Gateway::new(upstreams, state.clone(), Credentials::Anonymous, options);
    let shutdown = Shutdown::new();
    tokio::spawn(gateway.clone().keep_refreshed(shutdown.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let app = router(gateway);
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    // Until the first refresh has read the table.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let routes: serde_json::Value = client
            .get(format!("{url}/routes"))
            .send()
            .await
            .expect("routes")
            .json()
            .await
            .expect("json");
        if routes.as_array().is_some_and(|r| !r.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never read the table"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Rig {
        url,
        state,
        central,
        east,
        _dir: dir,
        shutdown,
    }
}

async fn predict(client: &reqwest::Client, rig: &Rig) -> (StatusCode, String, String, String) {
    predict_at(client, rig, "/predict/ranking/ranker").await
}

/// A prediction POSTed to `path` of the gateway: its status, region and
/// attempts headers, and body.
async fn predict_at(
    client: &reqwest::Client,
    rig: &Rig,
    path: &str,
) -> (StatusCode, String, String, String) {
    let response = client
        .post(format!("{}{path}", rig.url))
        .header("content-type", "application/json")
        .body(r#"{"instances":[[1,2]]}"#)
        .send()
        .await
        .expect("the gateway answers");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (region, attempts) = (header(REGION_HEADER), header(ATTEMPTS_HEADER));
    (
        StatusCode::from_u16(response.status().as_u16()).expect("status"),
        region,
        attempts,
        response.text().await.expect("body"),
    )
}

#[tokio::test]
async fn predictions_follow_the_weights_and_a_change_within_a_second() {
    let rig = rig(&[("us-central1", 100), ("us-east1", 0)]).await;
    let client = reqwest::Client::new();
    for _ in 0..20 {
        let (status, region, _, body) = predict(&client, &rig).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(region, "us-central1");
        assert!(body.contains(r#""echo":{"instances":[[1,2]]}"#), "{body}");
    }
    assert_eq!(rig.east.served.load(Ordering::SeqCst), 0);

    let moved = RoutingTable::new(
        "ranking",
        weights(&[("us-central1", 0), ("us-east1", 100)]),
        "failover",
    )
    .expect("table");
    let written = routing::write(rig.state.as_ref(), &moved, 1)
        .await
        .expect("write");
    let changed_at = Instant::now();
    loop {
        let (_, region, _, _) = predict(&client, &rig).await;
        if region == "us-east1" {
            break;
        }
        assert!(
            changed_at.elapsed() < Duration::from_secs(1),
            "still routed to {region} after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(written.revision, 2);
}

#[tokio::test]
async fn a_failing_region_is_retried_once_in_the_next() {
    let rig = rig(&[("us-central1", 100), ("us-east1", 1)]).await;
    let client = reqwest::Client::new();
    rig.central.failing.store(true, Ordering::SeqCst);
    for _ in 0..20 {
        let (status, region, attempts, body) = predict(&client, &rig).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(region, "us-east1");
        assert!(attempts == "1" || attempts == "2", "{attempts}");
    }
    // Both down: the last region's answer, after two attempts.
    rig.east.failing.store(true, Ordering::SeqCst);
    let (status, _, attempts, _) = predict(&client, &rig).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(attempts, "2");
}

#[tokio::test]
async fn a_failing_primary_is_retried_in_its_warm_standby_before_failover_moves_weight() {
    let rig = rig(&[("us-central1", 100), ("us-east1", 0)]).await;
    let client = reqwest::Client::new();
    rig.central.failing.store(true, Ordering::SeqCst);
    for _ in 0..10 {
        let (status, region, attempts, body) = predict(&client, &rig).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!((region.as_str(), attempts.as_str()), ("us-east1", "2"));
    }
    // Healthy again: the standby takes nothing.
    rig.central.failing.store(false, Ordering::SeqCst);
    let served = rig.east.served.load(Ordering::SeqCst);
    let (status, region, attempts, _) = predict(&client, &rig).await;
    assert_eq!(
        (status, region.as_str(), attempts.as_str()),
        (StatusCode::OK, "us-central1", "1")
    );
    assert_eq!(rig.east.served.load(Ordering::SeqCst), served);
}

#[tokio::test]
async fn with_the_retry_off_a_failing_region_fails_its_share_after_one_attempt() {
    let rig = rig_with(&[("us-central1", 1), ("us-east1", 1)], None, false).await;
    let client = reqwest::Client::new();
    rig.central.failing.store(true, Ordering::SeqCst);
    let (mut failed, mut served) = (0, 0);
    for _ in 0..40 {
        let (status, region, attempts, body) = predict(&client, &rig).await;
        assert_eq!(attempts, "1", "{body}");
        if status == StatusCode::OK {
            assert_eq!(region, "us-east1");
            served += 1;
        } else {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
            failed += 1;
        }
    }
    assert!(failed > 0 && served > 0, "{failed} failed, {served} served");
}

#[tokio::test]
async fn an_unreachable_region_is_retried_and_an_unknown_model_is_a_404() {
    // A port that was free a moment ago: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let rig = rig_with(
        &[("us-central1", 1), ("us-east1", 1)],
        Some(format!("http://{closed}/predict")),
        true,
    )
    .await;
    let client = reqwest::Client::new();
    let mut retried = 0;
    for _ in 0..20 {
        let (status, region, attempts, body) = predict(&client, &rig).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(region, "us-east1");
        if attempts == "2" {
            retried += 1;
        }
    }
    assert!(
        retried > 0,
        "half the traffic goes to the unreachable region first"
    );
    let unknown = client
        .post(format!("{}/predict/ranking/nope", rig.url))
        .body("{}")
        .send()
        .await
        .expect("answers");
    assert_eq!(unknown.status(), 404);
    assert!(
        unknown
            .text()
            .await
            .expect("text")
            .contains("no model nope")
    );
}

/// Hop-by-hop and forwarding headers, and the gateway's own, as a client
/// or a region might send them.
const UNTRUSTED: [(&str, &str); 15] = [
    ("connection", "x-hop"),
    ("x-hop", "named by connection"),
    ("keep-alive", "timeout=99"),
    ("proxy-authorization", "Basic c3B5OnNweQ=="),
    ("proxy-authenticate", "Basic realm=spy"),
    ("te", "trailers"),
    ("trailer", "x-checksum"),
    ("upgrade", "h2c"),
    ("x-forwarded-for", "10.9.8.7"),
    ("x-forwarded-host", "spoofed.example"),
    ("x-forwarded-proto", "gopher"),
    ("forwarded", "for=10.9.8.7;proto=gopher"),
    ("x-real-ip", "10.9.8.7"),
    (REGION_HEADER, "spoofed-region"),
    (ATTEMPTS_HEADER, "99"),
];

#[tokio::test]
async fn hop_by_hop_and_forwarding_headers_cross_the_gateway_in_neither_direction() {
    // A region that records the headers it receives and answers with every
    // untrusted header.
    let received: Arc<std::sync::Mutex<Option<axum::http::HeaderMap>>> = Arc::default();
    let seen = received.clone();
    let upstream = Router::new().route(
        "/predict",
        post(move |headers: axum::http::HeaderMap| {
            *seen.lock().unwrap() = Some(headers);
            async {
                let mut answer = axum::http::HeaderMap::new();
                for (name, value) in UNTRUSTED {
                    answer.insert(name, value.parse().unwrap());
                }
                answer.insert("content-type", "application/json".parse().unwrap());
                (StatusCode::OK, answer, r#"{"predictions":[1]}"#)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream_url = format!("http://{}/predict", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, upstream).await.expect("serve") });

    let dir = tempfile::tempdir().expect("temp dir");
    let state: Arc<dyn StateStore> =
        Arc::new(LocalStateStore::open(dir.path()).await.expect("state"));
    let mut upstreams = Upstreams::new();
    upstreams.insert("ranking", "ranker", "us-central1", upstream_url);
    let table =
        RoutingTable::new("ranking", weights(&[("us-central1", 100)]), "test").expect("table");
    let gateway = Gateway::new(
        upstreams,
        state,
        Credentials::Anonymous,
        GatewayOptions::default(),
    )
    .with_tables([table]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/predict/ranking/ranker",
        listener.local_addr().expect("address")
    );
    tokio::spawn(async move { axum::serve(listener, router(gateway)).await.expect("serve") });

    let client = reqwest::Client::new();
    let mut request = client
        .post(&url)
        .header("content-type", "application/json")
        .header("authorization", "Bearer the-client-s-own")
        .body(r#"{"instances":[[1]]}"#);
    for (name, value) in UNTRUSTED {
        request = request.header(name, value);
    }
    let response = request.send().await.expect("the gateway answers");
    assert_eq!(response.status().as_u16(), 200);
    for (name, value) in UNTRUSTED {
        let back = response.headers().get(name).and_then(|v| v.to_str().ok());
        assert_ne!(back, Some(value), "{name} came back to the client");
    }
    assert_eq!(response.headers()[REGION_HEADER], "us-central1");
    assert_eq!(response.headers()[ATTEMPTS_HEADER], "1");
    assert_eq!(response.headers()["content-type"], "application/json");

    let received = received
        .lock()
        .unwrap()
        .clone()
        .expect("the region was called");
    for (name, value) in UNTRUSTED
        .iter()
        .chain(&[("authorization", "Bearer the-client-s-own")])
    {
        let arrived = received.get(*name).and_then(|v| v.to_str().ok());
        assert_ne!(arrived, Some(*value), "{name} reached the region");
    }
    assert!(received.get("x-hop").is_none());
    assert_eq!(received["content-type"], "application/json");
}

#[tokio::test]
async fn a_prediction_over_vertex_ai_s_payload_limit_is_a_413_that_reaches_no_region() {
    let rig = rig(&[("us-central1", 100)]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/predict/ranking/ranker", rig.url);
    let too_large = vec![b' '; lifeboat_gateway::PREDICTION_BODY_LIMIT + 1];
    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .body(too_large)
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(response.status().as_u16(), 413);
    assert_eq!(rig.central.served.load(Ordering::SeqCst), 0);
    let (status, region, _, _) = predict(&client, &rig).await;
    assert_eq!((status, region.as_str()), (StatusCode::OK, "us-central1"));
}

#[tokio::test]
async fn a_pinned_prediction_goes_to_its_region_only_whatever_the_weights() {
    let rig = rig(&[("us-central1", 100), ("us-east1", 0)]).await;
    let client = reqwest::Client::new();
    let to_east = "/regions/us-east1/predict/ranking/ranker";
    for _ in 0..5 {
        let (status, region, attempts, body) = predict_at(&client, &rig, to_east).await;
        assert_eq!(
            (status, region.as_str(), attempts.as_str()),
            (StatusCode::OK, "us-east1", "1"),
            "{body}"
        );
        assert!(body.contains(r#""region":"us-east1""#), "{body}");
    }
    assert_eq!(rig.east.served.load(Ordering::SeqCst), 5);
    assert_eq!(rig.central.served.load(Ordering::SeqCst), 0);

    // A failing pinned region's own answer, never a retry elsewhere.
    rig.east.failing.store(true, Ordering::SeqCst);
    let (status, region, attempts, body) = predict_at(&client, &rig, to_east).await;
    assert_eq!(
        (status, region.as_str(), attempts.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "us-east1", "1"),
        "{body}"
    );
    assert_eq!(rig.central.served.load(Ordering::SeqCst), 0);

    // A region outside the workload's table is named in a 404.
    let (status, _, _, body) = predict_at(
        &client,
        &rig,
        "/regions/europe-west1/predict/ranking/ranker",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("region europe-west1"), "{body}");
    let (status, _, _, body) =
        predict_at(&client, &rig, "/regions/us-east1/predict/ranking/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn an_unreachable_pinned_region_is_a_502_naming_it() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let rig = rig_with(
        &[("us-central1", 100), ("us-east1", 0)],
        Some(format!("http://{closed}/predict")),
        true,
    )
    .await;
    let client = reqwest::Client::new();
    let (status, region, attempts, body) =
        predict_at(&client, &rig, "/regions/us-central1/predict/ranking/ranker").await;
    assert_eq!(
        (status, region.as_str(), attempts.as_str()),
        (StatusCode::BAD_GATEWAY, "us-central1", "1"),
        "{body}"
    );
    assert!(body.starts_with("us-central1: "), "{body}");
    assert_eq!(rig.east.served.load(Ordering::SeqCst), 0, "no retry");
}

/// The routing table a pattern starts with, us-central1 its primary: an
/// active-active standby serves already, the others wait.
fn starting_weights(pattern: &str) -> [(&'static str, u32); 2] {
    match pattern {
        "active-active" => [("us-central1", 100), ("us-east1", 100)],
        _ => [("us-central1", 100), ("us-east1", 0)],
    }
}

/// One pattern with its primary dark from the start (its inference host
/// unreachable): until failover writes the table, an active-active or warm
/// standby answers through the retry and a pilot light (nothing deployed
/// yet) cannot; once the table is written, every prediction goes straight
/// to the standby within a second. The gateway needs nothing of the
/// primary: the table lives in the state store.
async fn the_primary_dark_is_routed_around(pattern: &str) {
    let dark = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let rig = rig_with(
        &starting_weights(pattern),
        Some(format!("http://{dark}/predict")),
        true,
    )
    .await;
    let pilot_light = pattern == "pilot-light";
    rig.east.failing.store(pilot_light, Ordering::SeqCst);
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let (status, region, _, body) = predict(&client, &rig).await;
        if pilot_light {
            assert!(
                !status.is_success(),
                "{pattern}: nothing serves yet: {body}"
            );
        } else {
            assert_eq!(status, StatusCode::OK, "{pattern}: {body}");
            assert_eq!(region, "us-east1", "{pattern}");
        }
    }

    // Failover readies the standby and writes the table.
    rig.east.failing.store(false, Ordering::SeqCst);
    let moved = RoutingTable::new(
        "ranking",
        weights(&[("us-central1", 0), ("us-east1", 100)]),
        "failover",
    )
    .expect("table");
    let written = routing::write(rig.state.as_ref(), &moved, 1)
        .await
        .expect("write");
    let changed_at = Instant::now();
    loop {
        let routes: serde_json::Value = client
            .get(format!("{}/routes", rig.url))
            .send()
            .await
            .expect("routes")
            .json()
            .await
            .expect("json");
        if routes[0]["revision"] == written.revision {
            break;
        }
        assert!(
            changed_at.elapsed() < Duration::from_secs(1),
            "{pattern}: the gateway still routes by the old table after 1 s: {routes}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..10 {
        let (status, region, attempts, body) = predict(&client, &rig).await;
        assert_eq!(status, StatusCode::OK, "{pattern}: {body}");
        assert_eq!((region.as_str(), attempts.as_str()), ("us-east1", "1"));
    }
}

#[tokio::test]
async fn every_pattern_routes_around_a_dark_primary() {
    for pattern in ["active-active", "active-passive", "pilot-light"] {
        the_primary_dark_is_routed_around(pattern).await;
    }
}

/// Puts a drill fault of `kind` on workload ranking in `region`, owned by
/// run `drill-7`, expiring after `ttl`, and waits for the gateway to read
/// it (two refreshes).
async fn inject(rig: &Rig, region: &str, kind: FaultKind, ttl: Duration) -> Fault {
    let now = chrono::Utc::now();
    let drill = Fault {
        workload: "ranking".to_string(),
        region: region.to_string(),
        kind,
        run: "drill-7".to_string(),
        injected_at: now,
        expires_at: now + chrono::TimeDelta::from_std(ttl).expect("ttl"),
    };
    fault::inject(rig.state.as_ref(), &drill)
        .await
        .expect("inject");
    tokio::time::sleep(Duration::from_millis(300)).await;
    drill
}

/// The traffic the rig's gateway counted, flushed at its shutdown, summed
/// per region chosen first: (ok, retried, failed).
async fn counted(rig: &Rig) -> BTreeMap<String, (u64, u64, u64)> {
    rig.shutdown.trigger();
    let now = chrono::Utc::now();
    let from = now - chrono::TimeDelta::minutes(5);
    let to = now + chrono::TimeDelta::minutes(1);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seconds = traffic::read(rig.state.as_ref(), "ranking", from, to)
            .await
            .expect("read traffic");
        if !seconds.is_empty() || Instant::now() > deadline {
            let mut sums: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
            for second in seconds {
                let sum = sums.entry(second.region).or_default();
                sum.0 += second.ok;
                sum.1 += second.retried;
                sum.2 += second.failed;
            }
            return sums;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_stopped_region_is_answered_by_the_next_and_fails_its_pinned_predictions() {
    let rig = rig(&[("us-central1", 100), ("us-east1", 0)]).await;
    let client = reqwest::Client::new();
    inject(&rig, "us-central1", FaultKind::Stop, fault::FAULT_TTL).await;
    for _ in 0..5 {
        let (status, region, attempts, body) = predict(&client, &rig).await;
        assert_eq!(
            (status, region.as_str(), attempts.as_str()),
            (StatusCode::OK, "us-east1", "2"),
            "{body}"
        );
    }
    let (status, region, attempts, body) =
        predict_at(&client, &rig, "/regions/us-central1/predict/ranking/ranker").await;
    assert_eq!(
        (status, region.as_str(), attempts.as_str()),
        (StatusCode::BAD_GATEWAY, "us-central1", "1"),
        "{body}"
    );
    assert!(body.contains("drill run drill-7"), "{body}");
    assert_eq!(
        rig.central.served.load(Ordering::SeqCst),
        0,
        "the fault lives in the front door: nothing reached the region"
    );
    // Another workload's region, or the other region, is untouched.
    let (status, region, _, body) =
        predict_at(&client, &rig, "/regions/us-east1/predict/ranking/ranker").await;
    assert_eq!(
        (status, region.as_str()),
        (StatusCode::OK, "us-east1"),
        "{body}"
    );

    // Counted by the region chosen first; pinned predictions are checks,
    // not traffic, and are not counted.
    let counts = counted(&rig).await;
    assert_eq!(
        counts,
        BTreeMap::from([("us-central1".to_string(), (0, 5, 0))])
    );
}

#[tokio::test]
async fn an_erroring_region_answers_503_and_the_next_region_answers_for_it() {
    let rig = rig(&[("us-central1", 100), ("us-east1", 0)]).await;
    let client = reqwest::Client::new();
    let (status, _, attempts, _) = predict(&client, &rig).await;
    assert_eq!((status, attempts.as_str()), (StatusCode::OK, "1"));
    inject(&rig, "us-central1", FaultKind::Error, fault::FAULT_TTL).await;
    let (status, region, attempts, body) = predict(&client, &rig).await;
    assert_eq!(
        (status, region.as_str(), attempts.as_str()),
        (StatusCode::OK, "us-east1", "2"),
        "{body}"
    );
    let (status, region, _, body) =
        predict_at(&client, &rig, "/regions/us-central1/predict/ranking/ranker").await;
    assert_eq!(
        (status, region.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "us-central1"),
        "{body}"
    );
    assert!(body.contains("drill run drill-7"), "{body}");
    // Both regions failing: the client gets the last region's error.
    rig.east.failing.store(true, Ordering::SeqCst);
    let (status, _, attempts, _) = predict(&client, &rig).await;
    assert_eq!(
        (status, attempts.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "2")
    );
    let counts = counted(&rig).await;
    assert_eq!(
        counts,
        BTreeMap::from([("us-central1".to_string(), (1, 1, 1))])
    );
}

#[tokio::test]
async fn a_slow_region_times_out_within_the_attempt_and_answers_late_within_a_longer_one() {
    let rig = rig(&[("us-central1", 100), ("us-east1", 0)]).await;
    let client = reqwest::Client::new();
    inject(&rig, "us-central1", FaultKind::Slow, fault::FAULT_TTL).await;
    let started = Instant::now();
    let (status, region, attempts, body) = predict(&client, &rig).await;
    assert_eq!(
        (status, region.as_str(), attempts.as_str()),
        (StatusCode::OK, "us-east1", "2"),
        "{body}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < fault::SLOW_DELAY,
        "the slow attempt ends at the 2 s attempt timeout: {waited:?}"
    );
    let (status, _, _, body) =
        predict_at(&client, &rig, "/regions/us-central1/predict/ranking/ranker").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        body.contains("no answer within") && body.contains("drill-7"),
        "{body}"
    );

    // An attempt timeout longer than the delay: the slow region answers.
    let patient = rig_configured(
        &[("us-central1", 100), ("us-east1", 0)],
        None,
        GatewayOptions {
            attempt_timeout: fault::SLOW_DELAY + Duration::from_secs(3),
            ..rig_options()
        },
    )
    .await;
    inject(&patient, "us-central1", FaultKind::Slow, fault::FAULT_TTL).await;
    let started = Instant::now();
    let (status, region, attempts, body) = predict(&client, &patient).await;
    assert_eq!(
        (status, region.as_str(), attempts.as_str()),
        (StatusCode::OK, "us-central1", "1"),
        "{body}"
    );
    assert!(started.elapsed() >= fault::SLOW_DELAY);
}

#[tokio::test]
async fn an_expired_fault_is_ignored() {
    let rig = rig(&[("us-central1", 100), ("us-east1", 0)]).await;
    let client = reqwest::Client::new();
    let drill = inject(
        &rig,
        "us-central1",
        FaultKind::Error,
        Duration::from_secs(1),
    )
    .await;
    let pinned = "/regions/us-central1/predict/ranking/ranker";
    let (status, _, _, body) = predict_at(&client, &rig, pinned).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let left = (drill.expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(50)).await;
    let (status, region, attempts, body) = predict_at(&client, &rig, pinned).await;
    assert_eq!(
        (status, region.as_str(), attempts.as_str()),
        (StatusCode::OK, "us-central1", "1"),
        "{body}"
    );
    assert!(
        rig.state
            .get(
                fault::COLLECTION,
                &fault::record_id("ranking", "us-central1")
            )
            .await
            .expect("get")
            .is_some(),
        "the expired record is still stored, and ignored"
    );
}

#[tokio::test]
async fn the_region_health_route_answers_per_workload_and_fault() {
    let rig = rig(&[("us-central1", 100), ("us-east1", 0)]).await;
    let client = reqwest::Client::new();
    let health = |workload: &str| {
        let url = format!("{}/region/healthz?workload={workload}", rig.url);
        let client = client.clone();
        async move { client.get(url).send().await }
    };
    let response = health("ranking").await.expect("healthz");
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(
        body,
        serde_json::json!({"region": "us-east1", "workload": "ranking"})
    );
    // A fault in another region leaves this one's front door healthy.
    inject(&rig, "us-central1", FaultKind::Stop, fault::FAULT_TTL).await;
    assert_eq!(
        health("ranking").await.expect("healthz").status(),
        StatusCode::OK
    );

    inject(&rig, "us-east1", FaultKind::Error, fault::FAULT_TTL).await;
    let response = health("ranking").await.expect("healthz");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.text().await.expect("body").contains("drill-7"));
    assert_eq!(
        health("search").await.expect("healthz").status(),
        StatusCode::OK,
        "another workload's front door in the region is healthy"
    );
    inject(&rig, "us-east1", FaultKind::Stop, fault::FAULT_TTL).await;
    let dropped = health("ranking").await;
    assert!(
        dropped.is_err(),
        "a stopped front door drops the connection: {dropped:?}"
    );
    let response = client
        .get(format!("{}/region/healthz", rig.url))
        .send()
        .await
        .expect("healthz");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // A gateway that does not know its region cannot say.
    let unplaced = rig_configured(
        &[("us-central1", 100)],
        None,
        GatewayOptions {
            region: None,
            ..rig_options()
        },
    )
    .await;
    let response = client
        .get(format!("{}/region/healthz?workload=ranking", unplaced.url))
        .send()
        .await
        .expect("healthz");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
