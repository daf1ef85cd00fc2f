//! The skeleton through real sockets and through `oneshot`: health, readiness,
//! deadlines and graceful shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::ServiceExt as _;

use super::*;
use crate::events::Delivery;

/// GETs `path` from the service's router.
async fn get_status(router: Router, path: &str) -> StatusCode {
    let request = Request::get(path).body(Body::empty()).expect("request");
    router.oneshot(request).await.expect("infallible").status()
}

#[tokio::test]
async fn healthz_and_readyz() {
    let ready = Arc::new(AtomicBool::new(false));
    let check = ready.clone();
    let service = Service::new("test", Router::new())
        .with_readiness(move || {
            let ready = check.load(Ordering::SeqCst);
            async move { ready }
        })
        .into_router();
    assert_eq!(
        get_status(service.clone(), "/healthz").await,
        StatusCode::OK
    );
    assert_eq!(
        get_status(service.clone(), "/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    ready.store(true, Ordering::SeqCst);
    assert_eq!(get_status(service, "/readyz").await, StatusCode::OK);
}

#[tokio::test]
async fn services_nest_under_prefixes_in_one_router() {
    let app = |reply: &'static str| Router::new().route("/", post(move || async move { reply }));
    let both = Router::new()
        .nest(
            "/failover",
            Service::new("failover", app("failover")).into_router(),
        )
        .nest("/drill", Service::new("drill", app("drill")).into_router());
    assert_eq!(
        get_status(both.clone(), "/failover/healthz").await,
        StatusCode::OK
    );
    assert_eq!(get_status(both, "/drill/readyz").await, StatusCode::OK);
}

#[tokio::test]
async fn a_request_past_its_deadline_is_answered_503() {
    let slow = Router::new().route(
        "/",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            "done"
        }),
    );
    let service = Service::new("slow", slow)
        .with_request_timeout(Duration::from_millis(50))
        .into_router();
    assert_eq!(
        get_status(service, "/").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[test]
fn port_comes_from_the_environment() {
    assert_eq!(port_from_env(None).expect("default"), 8080);
    assert_eq!(port_from_env(Some("9090")).expect("set"), 9090);
    assert!(port_from_env(Some("http")).is_err());
}

/// A service whose `/slow` handler tells `started` it began, then takes
/// `duration` to answer 200.
fn slow_service(started: Arc<Notify>, duration: Duration) -> Service {
    let router = Router::new().route(
        "/slow",
        post(move || {
            let started = started.clone();
            async move {
                started.notify_one();
                tokio::time::sleep(duration).await;
                "durable"
            }
        }),
    );
    Service::new("slow", router)
}

/// Serves `service` on an ephemeral port; returns its address, the signal
/// that stops it and the serving task.
async fn serve_ephemeral(
    service: Service,
) -> (
    SocketAddr,
    Shutdown,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let shutdown = Shutdown::new();
    let task = tokio::spawn(service.serve(listener, shutdown.clone()));
    (address, shutdown, task)
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish_and_refuses_new_ones() {
    let started = Arc::new(Notify::new());
    let service = slow_service(started.clone(), Duration::from_millis(500))
        .with_grace_period(Duration::from_secs(5));
    let (address, shutdown, server) = serve_ephemeral(service).await;

    let client = reqwest::Client::new();
    let in_flight = tokio::spawn(client.post(format!("http://{address}/slow")).send());
    started.notified().await;
    shutdown.trigger();

    // New connections are refused as soon as the listener is closed, while
    // the request in flight is still running.
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(address).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "a connection after shutdown was accepted");
    assert!(!in_flight.is_finished());

    let response = in_flight.await.expect("task").expect("response");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(response.text().await.expect("body"), "durable");
    server.await.expect("task").expect("served");
}

#[tokio::test]
async fn a_request_cut_off_by_the_grace_period_is_not_answered_2xx() {
    let started = Arc::new(Notify::new());
    let service = slow_service(started.clone(), Duration::from_secs(3600))
        .with_grace_period(Duration::from_millis(100));
    let (address, shutdown, server) = serve_ephemeral(service).await;

    let client = reqwest::Client::new();
    let in_flight = tokio::spawn(client.post(format!("http://{address}/slow")).send());
    started.notified().await;
    shutdown.trigger();

    let served = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serving ends soon after the grace period");
    served.expect("task").expect("served");
    let response = in_flight.await.expect("task").expect("response");
    assert_eq!(response.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
}

/// Log lines captured in memory.
#[derive(Debug, Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Every captured line that is a JSON object.
    fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().expect("lock").clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn handler_logs_carry_the_event_id_and_the_trace() {
    use tracing_subscriber::layer::SubscriberExt as _;

    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_stackdriver::layer().with_writer(captured.clone()));
    let _default = tracing::subscriber::set_default(subscriber);

    let router = Router::new().route(
        "/",
        post(|delivery: Delivery| async move {
            let kind = delivery.event.as_ref().map_or("unreadable", |e| e.kind());
            tracing::info!(kind, "handled");
            StatusCode::NO_CONTENT
        }),
    );
    let request = Request::post("/")
        .header("x-cloudscheduler", "true")
        .header("x-cloudscheduler-jobname", "reconcile")
        .header("x-cloudscheduler-scheduletime", "2024-11-25T03:00:00Z")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Body::from("{}"))
        .expect("request");
    let response = Service::new("drill", router)
        .into_router()
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let lines = captured.lines();
    let handled = lines
        .iter()
        .find(|line| line["message"] == "handled")
        .unwrap_or_else(|| panic!("no handler line in {lines:?}"));
    assert_eq!(
        handled["span"]["event_id"],
        "reconcile@2024-11-25T03:00:00Z"
    );
    assert_eq!(handled["span"]["event_kind"], "scheduler_tick");
    assert_eq!(handled["span"]["service"], "drill");

    let writer = crate::telemetry::CloudLoggingWriter::new("drill", Some("ml-prod".into()));
    let enriched: serde_json::Value =
        serde_json::from_slice(&writer.enrich(handled.to_string().as_bytes())).expect("JSON");
    assert_eq!(
        enriched["logging.googleapis.com/trace"],
        "projects/ml-prod/traces/4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert!(
        lines
            .iter()
            .any(|line| line["message"] == "request done" && line["status"] == 204),
        "{lines:?}"
    );
}

/// POSTs `size` bytes to `/`: with a `Content-Length`, or streamed in
/// chunks without one.
async fn post_status(router: Router, size: usize, declared: bool) -> StatusCode {
    let request = Request::post("/").header("content-type", "application/json");
    let request = if declared {
        request
            .header("content-length", size)
            .body(Body::from(vec![b' '; size]))
    } else {
        let chunks = vec![b' '; size]
            .chunks(4096)
            .map(|chunk| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(chunk)))
            .collect::<Vec<_>>();
        request.body(Body::from_stream(futures::stream::iter(chunks)))
    }
    .expect("request");
    router.oneshot(request).await.expect("infallible").status()
}

#[tokio::test]
async fn a_body_over_the_limit_is_answered_413() {
    let echo = Router::new().route(
        "/",
        post(|body: axum::body::Bytes| async move { body.len().to_string() }),
    );
    let small = Service::new("small", echo.clone())
        .with_body_limit(10_000)
        .into_router();
    for declared in [true, false] {
        assert_eq!(
            post_status(small.clone(), 10_000, declared).await,
            StatusCode::OK
        );
        assert_eq!(
            post_status(small.clone(), 10_001, declared).await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "declared length: {declared}"
        );
    }
    // The default takes the largest event (axum's own default, 2 MB, would
    // refuse a Pub/Sub push of a large message) and nothing much larger.
    let default = Service::new("default", echo).into_router();
    assert_eq!(
        post_status(default.clone(), 3 << 20, true).await,
        StatusCode::OK
    );
    assert_eq!(
        post_status(default, DEFAULT_BODY_LIMIT + 1, true).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // Event endpoints read the body themselves: the limit holds there too.
    let events = Router::new().route("/", post(|_: Delivery| async { "event" }));
    let events = Service::new("events", events)
        .with_body_limit(10_000)
        .into_router();
    assert_eq!(
        post_status(events, 10_001, true).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[tokio::test]
async fn readyz_answers_503_while_the_state_store_is_unreachable() {
    use crate::gcp::ApiEndpoint;
    use crate::state::StateStore;
    use crate::state::firestore::FirestoreStore;
    use crate::state::local::LocalStateStore;

    let ready_on = |state: Arc<dyn StateStore>| {
        Service::new("test", Router::new())
            .with_state_readiness(state)
            .into_router()
    };
    let firestore_at = |host: String| -> Arc<dyn StateStore> {
        Arc::new(
            FirestoreStore::new(ApiEndpoint::emulator(&host), "lifeboat-test", "(default)")
                .expect("store"),
        )
    };

    let dir = tempfile::tempdir().expect("temp dir");
    let reachable = LocalStateStore::open(dir.path()).await.expect("state");
    assert_eq!(
        get_status(ready_on(Arc::new(reachable)), "/readyz").await,
        StatusCode::OK
    );

    // Nothing listens where the store should be.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = closed.local_addr().expect("address");
    drop(closed);
    let refused = ready_on(firestore_at(address.to_string()));
    assert_eq!(
        get_status(refused.clone(), "/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get_status(refused, "/healthz").await, StatusCode::OK);

    // The store accepts connections and never answers (frozen): not ready
    // once the readiness deadline passes, instead of waiting with it.
    let frozen = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = frozen.local_addr().expect("address");
    let holding = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = frozen.accept().await {
            held.push(connection);
        }
    });
    assert_eq!(
        get_status(ready_on(firestore_at(address.to_string())), "/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    holding.abort();
}
