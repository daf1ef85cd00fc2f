//! The skeleton every Lifeboat service runs on: its name and its axum
//! [`Router`] become a [`Service`] that adds health endpoints, a tracing
//! span and a deadline per request, and serves with graceful shutdown.
//!
//! # Answering only when the work is durable
//!
//! Every sender (Eventarc, Pub/Sub, Cloud Scheduler, Monitoring) retries
//! until it gets a 2xx, and nothing else. So a handler makes its work
//! durable (object copied and verified, record committed) *before* it
//! answers 2xx, and is idempotent on [`crate::events::EventContext::id`].
//! Then stopping at any point is safe: on SIGTERM the service stops
//! accepting connections and lets requests in flight finish for a grace
//! period (Cloud Run allows 10 s; [`DEFAULT_GRACE_PERIOD`] is 8 s); a request
//! still running when it ends is cut off and answered 503, never 2xx, and
//! its sender delivers the event again. The same holds for a request that
//! exceeds its deadline ([`DEFAULT_REQUEST_TIMEOUT`]).
//!
//! # Deadlines that match the sender's
//!
//! A sender stops waiting at its own deadline and counts the delivery as
//! failed, so a 2xx sent after it is lost and the work is delivered again.
//! A request therefore ends by its sender's deadline: a Pub/Sub or Eventarc
//! push by [`PUSH_ACK_DEADLINE`], a Cloud Scheduler run by
//! [`SCHEDULER_ATTEMPT_DEADLINE`] (both set so in `infra/`), answered 503
//! at it ([`within_deadline`]) so that the retry resumes the work.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, field};

use crate::events::TraceContext;

pub mod callers;

/// How long requests in flight may run once shutdown begins.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(8);
/// How long one request may run before it is answered 503.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The acknowledgement deadline of every push subscription in `infra/`
/// (Pub/Sub's largest; Eventarc's own subscriptions are raised to it): a
/// push not answered within it is delivered again.
pub const PUSH_ACK_DEADLINE: Duration = Duration::from_secs(600);
/// The attempt deadline of every Cloud Scheduler job in `infra/`.
pub const SCHEDULER_ATTEMPT_DEADLINE: Duration = Duration::from_secs(1800);
/// The port served when `$PORT` is not set.
pub const DEFAULT_PORT: u16 = 8080;
/// The largest request body a service takes unless it says otherwise
/// ([`Service::with_body_limit`]): that of the largest event, a Pub/Sub
/// push of a 10 MB message.
pub const DEFAULT_BODY_LIMIT: usize = crate::events::extract::MAX_BODY_BYTES;

/// Tells whether the service can do useful work now (its backends are
/// reachable, its configuration loaded).
type ReadinessCheck = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

/// The signal that a process should stop: triggered by SIGTERM or Ctrl-C in
/// production, by the test itself in tests. Clones share the signal.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    /// A signal that only [`Shutdown::trigger`] fires.
    pub fn new() -> Self {
        Self::default()
    }

    /// A signal that fires on SIGTERM (what Cloud Run sends) or Ctrl-C.
    /// Must be called inside a Tokio runtime.
    pub fn on_signals() -> Self {
        let shutdown = Self::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            let signal = termination_signal().await;
            tracing::info!(signal, "shutdown requested");
            trigger.trigger();
        });
        shutdown
    }

    /// Fires the signal.
    pub fn trigger(&self) {
        self.0.cancel();
    }

    /// Whether the signal has fired.
    pub fn is_triggered(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Waits until the signal fires.
    pub async fn triggered(&self) {
        self.0.cancelled().await;
    }
}

/// Waits for SIGTERM or Ctrl-C; returns which came. If a signal handler
/// cannot be installed, waits for the other one only.
async fn termination_signal() -> &'static str {
    let ctrl_c = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "ctrl-c",
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
                "SIGTERM"
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<&'static str>();
    tokio::select! {
        name = ctrl_c => name,
        name = terminate => name,
    }
}

/// One Lifeboat service: a name, its routes (state already applied) and
/// how it is run.
#[derive(Clone)]
pub struct Service {
    /// The service's name, in logs and spans.
    name: Arc<str>,
    /// The service's own routes.
    router: Router,
    /// What `/readyz` asks.
    readiness: ReadinessCheck,
    /// The deadline of one request.
    request_timeout: Duration,
    /// How long requests in flight may finish once shutdown begins.
    grace_period: Duration,
    /// The largest request body taken, in bytes.
    body_limit: usize,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("request_timeout", &self.request_timeout)
            .field("grace_period", &self.grace_period)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// A service named `name` serving `router`; always ready until
    /// [`Service::with_readiness`] says otherwise.
    pub fn new(name: &str, router: Router) -> Self {
        Self {
            name: name.into(),
            router,
            readiness: Arc::new(|| Box::pin(async { true })),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            grace_period: DEFAULT_GRACE_PERIOD,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }

    /// Makes `/readyz` answer 200 only while `check` returns true.
    pub fn with_readiness<F, Fut>(mut self, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        self.readiness = Arc::new(move || Box::pin(check()));
        self
    }

    /// Makes `/readyz` answer 200 only while `state` answers a cheap read
    /// within [`crate::state::READINESS_DEADLINE`]
    /// ([`crate::state::answers`]): for services that can do nothing
    /// without their state store.
    pub fn with_state_readiness(self, state: Arc<dyn crate::state::StateStore>) -> Self {
        self.with_readiness(move || {
            let state = state.clone();
            async move { crate::state::answers(state.as_ref(), crate::state::READINESS_DEADLINE).await }
        })
    }

    /// Sets the deadline of one request; past it the request is answered 503.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets how long requests in flight may finish once shutdown begins.
    pub fn with_grace_period(mut self, grace_period: Duration) -> Self {
        self.grace_period = grace_period;
        self
    }

    /// Sets the largest request body taken; a larger one is answered 413.
    /// A route may lower it for itself with axum's [`DefaultBodyLimit`].
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The service's routes with `/healthz`, `/readyz`, the request span,
    /// the request deadline and the body limit. The CLI mounts several services in one process
    /// by nesting these under a prefix each (`/failover`, `/drill`...) and
    /// serving the result with [`serve_router`].
    pub fn into_router(self) -> Router {
        let name = self.name.clone();
        let timeout = self.request_timeout;
        let readiness = self.readiness.clone();
        let body_limit = self.body_limit;
        self.router
            .layer(DefaultBodyLimit::max(body_limit))
            .layer(middleware::from_fn(move |request: Request, next: Next| {
                within_body_limit(body_limit, request, next)
            }))
            .layer(middleware::from_fn(move |request: Request, next: Next| {
                request_within_deadline(timeout, request, next)
            }))
            .layer(middleware::from_fn(move |request: Request, next: Next| {
                in_request_span(name.clone(), request, next)
            }))
            .route("/healthz", get(|| async { StatusCode::OK }))
            .route(
                "/readyz",
                get(move || async move {
                    if readiness().await {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    }
                }),
            )
    }

    /// Serves on `listener` until `shutdown` fires, then drains requests in
    /// flight for the grace period (see the module documentation).
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> std::io::Result<()> {
        let grace_period = self.grace_period;
        tracing::info!(
            service = %self.name,
            address = ?listener.local_addr().ok(),
            "serving"
        );
        serve_router(self.into_router(), listener, shutdown, grace_period).await
    }

    /// Serves on `$PORT` (default 8080) on every interface until SIGTERM or
    /// Ctrl-C: what each function's `main` calls on Cloud Run.
    pub async fn serve_from_env(self) -> std::io::Result<()> {
        let port = port_from_env(std::env::var("PORT").ok().as_deref())?;
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).await?;
        self.serve(listener, Shutdown::on_signals()).await
    }
}

/// The port to listen on, from the value of `$PORT`.
fn port_from_env(value: Option<&str>) -> std::io::Result<u16> {
    match value {
        None => Ok(DEFAULT_PORT),
        Some(text) => text.trim().parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("PORT: expected a port number, got {text:?}"),
            )
        }),
    }
}

/// Serves any router (one service's, or several nested) on `listener`,
/// recording each request's peer address (`ConnectInfo<SocketAddr>`, which
/// [`callers`] judges local callers by), until `shutdown` fires; then stops accepting connections and waits up to
/// `grace_period` for requests in flight. Requests still running then are
/// answered 503 so that their senders retry, and serving ends.
pub async fn serve_router(
    router: Router,
    listener: TcpListener,
    shutdown: Shutdown,
    grace_period: Duration,
) -> std::io::Result<()> {
    let cut_off = CancellationToken::new();
    let guarded = cut_off.clone();
    let router = router.layer(middleware::from_fn(move |request: Request, next: Next| {
        until_cut_off(guarded.clone(), request, next)
    }));
    let stop = shutdown.0.clone();
    let router = router.into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .into_future();
    tokio::pin!(server);
    let grace_over = async {
        shutdown.triggered().await;
        tracing::info!(?grace_period, "draining requests in flight");
        tokio::time::sleep(grace_period).await;
    };
    tokio::select! {
        result = &mut server => return result,
        () = grace_over => {}
    }
    tracing::warn!("grace period over: answering 503 to requests still in flight");
    cut_off.cancel();
    // The cut-off requests answer at once; give their connections a moment
    // to write the 503 and close.
    match tokio::time::timeout(Duration::from_secs(1), server).await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}

/// Runs the request in a span that carries the service, the request and the
/// caller's trace; the event extractor records `event_id` and `event_kind`
/// on it. Logs the outcome of every request.
async fn in_request_span(service: Arc<str>, request: Request, next: Next) -> Response {
    let trace = TraceContext::from_headers(request.headers());
    let span = tracing::info_span!(
        "request",
        service = %service,
        method = %request.method(),
        path = %request.uri().path(),
        event_id = field::Empty,
        event_kind = field::Empty,
        trace_id = field::Empty,
        trace_sampled = field::Empty,
    );
    if let Some(trace) = &trace {
        span.record("trace_id", trace.trace_id.as_str());
        span.record("trace_sampled", trace.sampled);
    }
    async move {
        let started = Instant::now();
        let response = next.run(request).await;
        let status = response.status().as_u16();
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if response.status().is_server_error() {
            tracing::warn!(status, latency_ms, "request failed");
        } else if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
            tracing::warn!(status, latency_ms, "request body over the limit; refused");
        } else {
            tracing::info!(status, latency_ms, "request done");
        }
        response
    }
    .instrument(span)
    .await
}

/// Answers 413 at once when the request's `Content-Length` is over `limit`;
/// a body without one is held to the limit as it is read
/// ([`DefaultBodyLimit`], and the event extractor's own).
async fn within_body_limit(limit: usize, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body of {length} bytes is over this endpoint's limit of {limit}"),
        )
            .into_response(),
        _ => next.run(request).await,
    }
}

/// Answers 503 when the request runs past its deadline (the handler is
/// dropped at its next await point).
async fn request_within_deadline(timeout: Duration, request: Request, next: Next) -> Response {
    within_deadline(timeout, next.run(request)).await
}

/// The answer of `work`, or 503 ("retry") when it runs past `timeout`; the
/// work is dropped at its next await point. For a handler whose events come
/// from senders with different deadlines (see the module documentation).
pub async fn within_deadline(timeout: Duration, work: impl Future<Output = Response>) -> Response {
    match tokio::time::timeout(timeout, work).await {
        Ok(response) => response,
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("request timed out after {timeout:?}; retry"),
        )
            .into_response(),
    }
}

/// Answers 503 when the shutdown grace period ends before the request does.
async fn until_cut_off(cut_off: CancellationToken, request: Request, next: Next) -> Response {
    tokio::select! {
        response = next.run(request) => response,
        () = cut_off.cancelled() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "service shutting down; retry",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests;
