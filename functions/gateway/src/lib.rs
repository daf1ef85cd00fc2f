//! gateway: the inference front door. Vertex AI endpoints are regional, so
//! something in front of them must move traffic: every prediction for a
//! workload's model is forwarded to a region chosen by the workload's
//! routing table ([`lifeboat_shared::routing`]), and when that region fails
//! the request (it cannot be reached, times out or answers 5xx), the request
//! is sent once more to the next region of the table, within its deadline.
//! Predictions are safe to retry: they change nothing.
//!
//! The routing tables are read on a short refresh ([`GatewayOptions::refresh`]),
//! never per request: a request only reads memory.
//!
//! Drills fail a region in this front door: the gateway obeys the drill
//! faults ([`lifeboat_shared::fault`], read on the same refresh) when it
//! forwards a prediction to the faulted workload's region, and in its own
//! region's health route (`/region/healthz?workload=W`, what the uptime
//! checks probe), so the real alert, incident and failover follow. It
//! counts every prediction's outcome by workload and region chosen first
//! ([`lifeboat_shared::traffic`]) and flushes the counts every
//! [`traffic::FLUSH_INTERVAL`], for drills to measure what an outage cost.
//!
//! A prediction may also be pinned to one region of the workload's table
//! (`/regions/{region}/predict/...`): it goes there whatever its weight and
//! is never retried elsewhere, so a health check through the front door
//! (golden requests, [`lifeboat_shared::golden`]) judges that region alone.

pub mod upstreams;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use chrono::Utc;
use lifeboat_shared::fault::{self, Fault, FaultKind, FaultWatch};
use lifeboat_shared::gcp::Credentials;
use lifeboat_shared::routing::{self, RoutingTable};
use lifeboat_shared::server::Shutdown;
use lifeboat_shared::state::StateStore;
use lifeboat_shared::traffic::{self, Outcome, TrafficCounter};
use serde::{Deserialize, Serialize};

pub use upstreams::Upstreams;

/// The service's name, in logs.
pub const SERVICE_NAME: &str = "gateway";

pub use lifeboat_shared::routing::{ATTEMPTS_HEADER, REGION_HEADER};

/// The largest prediction taken: Vertex AI's online prediction payload
/// limit (1.5 MB; read as MiB, so that nothing Vertex AI takes is refused
/// here). A larger body is answered 413 without reaching a region.
pub const PREDICTION_BODY_LIMIT: usize = 3 << 19;

/// The variable that turns the retry in the next region off (`0`, `false`)
/// or on (`1`, `true`); see [`GatewayOptions::retry`].
pub const RETRY_VARIABLE: &str = "LIFEBOAT_GATEWAY_RETRY";

/// The variable naming the region a gateway runs in; see
/// [`GatewayOptions::region`].
pub const REGION_VARIABLE: &str = "LIFEBOAT_REGION";

/// The instance id a gateway counts its traffic under when nothing else
/// names it (the local cloud's single gateway).
pub const LOCAL_INSTANCE: &str = "local";

/// How the gateway behaves.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    /// How often the routing tables are read again.
    pub refresh: Duration,
    /// How long one region may take to answer before the next is tried.
    pub attempt_timeout: Duration,
    /// Whether a prediction that its region fails (unreachable, timed out,
    /// 5xx) is sent once more, to the next serving region of the table, or
    /// when none is left to a standby (weight 0) of the table. On
    /// by default, since a prediction changes nothing; `$LIFEBOAT_GATEWAY_RETRY`
    /// set to `0` turns it off, for upstreams that must not be called twice
    /// or to measure what the retry saves.
    pub retry: bool,
    /// The id this gateway instance flushes its traffic counts under:
    /// unique among the instances counting at the same time.
    pub instance: String,
    /// The region this gateway runs in, whose front door its
    /// `/region/healthz` reports on; `None` answers that route 404.
    pub region: Option<String>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            refresh: Duration::from_millis(500),
            attempt_timeout: Duration::from_secs(10),
            retry: true,
            instance: LOCAL_INSTANCE.to_string(),
            region: None,
        }
    }
}

impl GatewayOptions {
    /// The defaults, with [`GatewayOptions::retry`] from
    /// `$LIFEBOAT_GATEWAY_RETRY` when it is set (a value that is not a
    /// switch is refused, naming the variable), [`GatewayOptions::region`]
    /// from `$LIFEBOAT_REGION`, and [`GatewayOptions::instance`] from Cloud
    /// Run's `$K_REVISION` (or `gateway`) with a random suffix, since
    /// several instances of one revision run at once.
    pub fn from_env() -> Result<Self, String> {
        let value = std::env::var(RETRY_VARIABLE).ok();
        let revision = std::env::var("K_REVISION").unwrap_or_else(|_| SERVICE_NAME.to_string());
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        Ok(Self {
            retry: retry_switch(value.as_deref())?,
            instance: format!("{revision}-{}", &suffix[..8]),
            region: std::env::var(REGION_VARIABLE)
                .ok()
                .filter(|region| !region.trim().is_empty()),
            ..Self::default()
        })
    }
}

/// The retry switch from the value of [`RETRY_VARIABLE`] (on when unset).
fn retry_switch(value: Option<&str>) -> Result<bool, String> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("1" | "true") => Ok(true),
        Some("0" | "false") => Ok(false),
        Some(other) => Err(format!(
            "{RETRY_VARIABLE}: expected 0, 1, false or true, got {other:?}"
        )),
    }
}

/// The weighted regions of one workload, ready for a pick per request.
#[derive(Debug)]
struct Route {
    table: RoutingTable,
    /// Serving regions with their cumulative weight, heaviest first.
    cumulative: Vec<(String, u64)>,
    /// Regions of the table without weight (standbys), in table order.
    standbys: Vec<String>,
}

impl Route {
    fn new(table: RoutingTable) -> Self {
        let mut total = 0;
        let cumulative = table
            .serving_regions()
            .into_iter()
            .map(|(region, weight)| {
                total += u64::from(weight);
                (region.to_string(), total)
            })
            .collect();
        let standbys = table
            .weights
            .iter()
            .filter(|(_, weight)| **weight == 0)
            .map(|(region, _)| region.clone())
            .collect();
        Self {
            table,
            cumulative,
            standbys,
        }
    }

    /// The region for ticket `ticket` (spread over the weights), then the
    /// other serving regions in table order, then the standbys: a warm
    /// standby answers a prediction its failing primary did not, before
    /// failover gives it weight.
    fn regions(&self, ticket: u64) -> Vec<&str> {
        let total = self.cumulative.last().map_or(0, |(_, total)| *total);
        if total == 0 {
            return Vec::new();
        }
        // A multiplicative (Fibonacci) hash spreads consecutive tickets over
        // the range, so a 90/10 split interleaves instead of sending runs of
        // 90. Its high bits are scaled to the range, not its low bits taken
        // modulo it: the low bits follow the weights only over thousands of
        // tickets (a third of the weight got up to 48 % of 150 consecutive
        // predictions), the high bits over any run of consecutive ones.
        let hashed = ticket.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let point = u64::try_from((u128::from(hashed) * u128::from(total)) >> 64).unwrap_or(0);
        let first = self
            .cumulative
            .iter()
            .position(|(_, upto)| point < *upto)
            .unwrap_or(0);
        let count = self.cumulative.len();
        (0..count)
            .map(|offset| self.cumulative[(first + offset) % count].0.as_str())
            .chain(self.standbys.iter().map(String::as_str))
            .collect()
    }
}

/// The gateway: upstreams, the routing tables and drill faults as last
/// read, its traffic counts, and the HTTP client forwarding predictions.
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct Gateway {
    upstreams: Arc<Upstreams>,
    state: Arc<dyn StateStore>,
    credentials: Credentials,
    routes: Arc<RwLock<HashMap<String, Arc<Route>>>>,
    tickets: Arc<AtomicU64>,
    client: reqwest::Client,
    faults: FaultWatch,
    traffic: TrafficCounter,
    options: GatewayOptions,
}

impl Gateway {
    /// A gateway forwarding to `upstreams` (authorized with `credentials`)
    /// by the routing tables in `state`.
    pub fn new(
        upstreams: Upstreams,
        state: Arc<dyn StateStore>,
        credentials: Credentials,
        options: GatewayOptions,
    ) -> Self {
        Self {
            upstreams: Arc::new(upstreams),
            state,
            credentials,
            routes: Arc::default(),
            tickets: Arc::default(),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .tcp_nodelay(true)
                .build()
                .unwrap_or_default(),
            faults: FaultWatch::new(),
            traffic: TrafficCounter::new(),
            options,
        }
    }

    /// Routes `tables` until the state store holds a table for their
    /// workload (a stored table has revision 1 or more, so it replaces a
    /// table given here, which has revision 0): the routing a topology's
    /// patterns imply before any failover wrote one.
    pub fn with_tables(self, tables: impl IntoIterator<Item = RoutingTable>) -> Self {
        {
            let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
            for table in tables {
                routes
                    .entry(table.workload.clone())
                    .or_insert_with(|| Arc::new(Route::new(table)));
            }
        }
        self
    }

    /// Reads the routing tables once; returns how many workloads changed.
    pub async fn refresh(&self) -> Result<usize, routing::RoutingError> {
        let tables = routing::read_all(self.state.as_ref()).await?;
        let mut changed = 0;
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        for table in tables {
            let current = routes.get(&table.workload).map(|r| r.table.revision);
            if current != Some(table.revision) {
                tracing::info!(workload = %table.workload, revision = table.revision, weights = ?table.weights, "routing table changed");
                routes.insert(table.workload.clone(), Arc::new(Route::new(table)));
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Refreshes the routing tables and the drill faults every
    /// [`GatewayOptions::refresh`], and flushes the traffic counts every
    /// [`traffic::FLUSH_INTERVAL`] and once more at `shutdown`; a failed
    /// read keeps what was read before, a failed flush keeps the counts
    /// for the next.
    pub async fn keep_refreshed(self, shutdown: Shutdown) {
        let mut flushed = tokio::time::Instant::now();
        loop {
            if let Err(error) = self.refresh().await {
                tracing::warn!(%error, "routing tables not refreshed; keeping the last ones");
            }
            if let Err(error) = self.faults.refresh(self.state.as_ref()).await {
                tracing::warn!(%error, "drill faults not refreshed; keeping the last ones");
            }
            if flushed.elapsed() >= traffic::FLUSH_INTERVAL {
                self.flush().await;
                flushed = tokio::time::Instant::now();
            }
            tokio::select! {
                () = shutdown.triggered() => {
                    self.flush().await;
                    return;
                }
                () = tokio::time::sleep(self.options.refresh) => {}
            }
        }
    }

    /// Flushes the traffic counts under [`GatewayOptions::instance`].
    async fn flush(&self) {
        if let Err(error) = self
            .traffic
            .flush(self.state.as_ref(), &self.options.instance)
            .await
        {
            tracing::warn!(%error, instance = %self.options.instance, "traffic counts not flushed; kept for the next flush");
        }
    }

    fn route(&self, workload: &str) -> Option<Arc<Route>> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        routes.get(workload).cloned()
    }

    /// The upstream URL of `model` per region and `workload`'s routing, or
    /// the answer saying which of the two is missing.
    fn destinations(
        &self,
        workload: &str,
        model: &str,
    ) -> Result<Destinations<'_>, (StatusCode, String)> {
        let Some(regions) = self.upstreams.regions(workload, model) else {
            return Err((
                StatusCode::NOT_FOUND,
                format!("no model {model} of workload {workload} behind this gateway"),
            ));
        };
        let Some(route) = self.route(workload) else {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no routing table for workload {workload} yet"),
            ));
        };
        Ok(Destinations {
            urls: regions,
            route,
        })
    }

    /// Forwards one prediction: the chosen region, then at most one more
    /// when [`GatewayOptions::retry`] is on.
    async fn predict(
        &self,
        workload: &str,
        model: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        let Destinations {
            urls: regions,
            route,
        } = match self.destinations(workload, model) {
            Ok(found) => found,
            Err(refusal) => return refusal.into_response(),
        };
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        let candidates = route.regions(ticket);
        let Some(first) = candidates.first().copied() else {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("workload {workload}: the routing table has no serving region"),
            )
                .into_response();
        };
        let mut last_failure = String::new();
        let mut attempts = 0;
        let tries: u32 = if self.options.retry { 2 } else { 1 };
        for region in candidates.into_iter().take(tries as usize) {
            let Some(url) = regions.get(region) else {
                last_failure = format!("{region}: no upstream configured");
                continue;
            };
            attempts += 1;
            match self
                .attempt(workload, region, url, headers, body.clone())
                .await
            {
                Ok(reply) if !reply.status.is_server_error() => {
                    let outcome = if region == first {
                        Outcome::Ok
                    } else {
                        Outcome::Retried
                    };
                    self.traffic.count(workload, first, outcome);
                    return reply.answer(region, attempts);
                }
                Ok(reply) => {
                    last_failure = format!("{region} answered {}", reply.status);
                    if attempts == tries {
                        self.traffic.count(workload, first, Outcome::Failed);
                        return reply.answer(region, attempts);
                    }
                }
                Err(error) => last_failure = format!("{region}: {error}"),
            }
            tracing::warn!(workload, model, region, failure = %last_failure, "region failed the prediction");
        }
        self.traffic.count(workload, first, Outcome::Failed);
        (
            StatusCode::BAD_GATEWAY,
            [(ATTEMPTS_HEADER, attempts.to_string())],
            format!("workload {workload}: no region answered; last: {last_failure}"),
        )
            .into_response()
    }

    /// Forwards one prediction to `region` only: the region must be in the
    /// workload's routing table (any weight); its answer, or its failure, is
    /// the answer.
    async fn predict_in(
        &self,
        region: &str,
        workload: &str,
        model: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        let Destinations {
            urls: regions,
            route,
        } = match self.destinations(workload, model) {
            Ok(found) => found,
            Err(refusal) => return refusal.into_response(),
        };
        let Some(url) = regions
            .get(region)
            .filter(|_| route.table.weights.contains_key(region))
        else {
            return (
                StatusCode::NOT_FOUND,
                format!(
                    "region {region} is not in the routing table of workload {workload} \
                     or serves no model {model} there"
                ),
            )
                .into_response();
        };
        match self.attempt(workload, region, url, headers, body).await {
            Ok(reply) => reply.answer(region, 1),
            Err(error) => {
                tracing::warn!(workload, model, region, %error, "pinned region failed the prediction");
                (
                    StatusCode::BAD_GATEWAY,
                    [
                        (REGION_HEADER, region.to_string()),
                        (ATTEMPTS_HEADER, "1".to_string()),
                    ],
                    format!("{region}: {error}"),
                )
                    .into_response()
            }
        }
    }

    /// One attempt of a prediction of `workload` in `region`, within
    /// [`GatewayOptions::attempt_timeout`], obeying the drill fault of the
    /// workload in that region: stopped, it fails as unreachable; failed
    /// with errors, it is the region's 503; slow, it waits
    /// [`fault::SLOW_DELAY`] first (and so times out when the attempt's
    /// timeout is shorter).
    async fn attempt(
        &self,
        workload: &str,
        region: &str,
        url: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Reply, String> {
        let drill = self.faults.fault(workload, region, Utc::now());
        let work = async {
            match &drill {
                Some(Fault {
                    kind: FaultKind::Stop,
                    run,
                    ..
                }) => return Err(format!("unreachable: stopped by drill run {run}")),
                Some(Fault {
                    kind: FaultKind::Error,
                    run,
                    ..
                }) => return Ok(Reply::failed_by_drill(workload, region, run)),
                Some(Fault {
                    kind: FaultKind::Slow,
                    ..
                }) => tokio::time::sleep(fault::SLOW_DELAY).await,
                None => {}
            }
            self.forward(url, headers, body).await
        };
        match tokio::time::timeout(self.options.attempt_timeout, work).await {
            Ok(reply) => reply,
            Err(_) => Err(match &drill {
                Some(fault) => format!(
                    "no answer within {:?} (slowed by drill run {})",
                    self.options.attempt_timeout, fault.run
                ),
                None => format!("no answer within {:?}", self.options.attempt_timeout),
            }),
        }
    }

    /// Sends the prediction to `url` with the body and its `Content-Type`
    /// only, and reads the whole answer (a body that breaks off fails the
    /// attempt): no other header of the client's goes on, so hop-by-hop headers
    /// (`Connection` and those it names, `Keep-Alive`, `Proxy-*`, `TE`,
    /// `Trailer`, `Transfer-Encoding`, `Upgrade`), forwarding headers a
    /// client could spoof (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`) and the
    /// client's own `Authorization` never reach a region.
    async fn forward(&self, url: &str, headers: &HeaderMap, body: Bytes) -> Result<Reply, String> {
        let mut request = self.client.post(url).body(body);
        if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = self
            .credentials
            .authorize(request)
            .await
            .map_err(|error| error.to_string())?;
        let response = request.send().await.map_err(|error| error.to_string())?;
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let body = response
            .bytes()
            .await
            .map_err(|error| format!("the answer broke off: {error}"))?;
        Ok(Reply {
            status,
            content_type,
            body,
        })
    }

    /// `GET /region/healthz?workload=W`: this gateway's region's front door
    /// for workload W, as the uptime checks see it; the drill fault of W in
    /// that region applies.
    async fn region_health(&self, workload: Option<String>) -> Response {
        let Some(region) = &self.options.region else {
            return (
                StatusCode::NOT_FOUND,
                format!("this gateway has no region configured (${REGION_VARIABLE})"),
            )
                .into_response();
        };
        let Some(workload) = workload.filter(|w| !w.is_empty()) else {
            return (
                StatusCode::BAD_REQUEST,
                "expected ?workload=W: the health of a front door is per workload",
            )
                .into_response();
        };
        if let Some(drill) = self.faults.fault(&workload, region, Utc::now()) {
            let cause = format!(
                "workload {workload} in {region} is failed by drill run {}",
                drill.run
            );
            if let Some(refusal) = fault::intercept(drill.kind, &cause).await {
                return refusal;
            }
        }
        Json(RegionHealth {
            region: region.clone(),
            workload,
        })
        .into_response()
    }
}

/// What `/region/healthz` answers when the front door is healthy.
#[derive(Debug, Serialize)]
struct RegionHealth {
    region: String,
    workload: String,
}

/// The query of `/region/healthz`.
#[derive(Debug, Deserialize)]
struct HealthQuery {
    workload: Option<String>,
}

/// A region's whole answer to one attempt (or the 503 a drill fault gives
/// in its place).
struct Reply {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

impl Reply {
    /// The 503 of a region failed by drill run `run` for `workload`.
    fn failed_by_drill(workload: &str, region: &str, run: &str) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            content_type: Some(HeaderValue::from_static("text/plain; charset=utf-8")),
            body: Bytes::from(format!(
                "workload {workload} in {region} is failed by drill run {run}"
            )),
        }
    }

    /// The answer passed on, with where it came from: its status, body and
    /// `Content-Type`, and the gateway's own `x-lifeboat-*` headers. No
    /// other header of the region's goes back (hop-by-hop ones, forwarding
    /// ones, or an `x-lifeboat-*` of its own that would lie about the
    /// answer).
    fn answer(self, region: &str, attempts: u32) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(content_type) = self.content_type {
            headers.insert(header::CONTENT_TYPE, content_type);
        }
        if let Ok(region) = HeaderValue::from_str(region) {
            headers.insert(REGION_HEADER, region);
        }
        headers.insert(ATTEMPTS_HEADER, HeaderValue::from(attempts));
        (self.status, headers, self.body).into_response()
    }
}

/// Where a prediction for a workload's model can go: the model's upstream
/// URL per region, and the workload's routing.
struct Destinations<'a> {
    urls: &'a BTreeMap<String, String>,
    route: Arc<Route>,
}

/// The routes: `POST /predict/{workload}/{model}` forwards a prediction;
/// `POST /regions/{region}/predict/{workload}/{model}` forwards it to that
/// region only (both take at most [`PREDICTION_BODY_LIMIT`] bytes);
/// `GET /routes` shows the routing tables the gateway is using;
/// `GET /region/healthz?workload=W` is the health of this gateway's
/// region's front door for workload W (404 without
/// [`GatewayOptions::region`]).
pub fn router(gateway: Gateway) -> Router {
    Router::new()
        .route(
            "/predict/{workload}/{model}",
            post(predict).layer(DefaultBodyLimit::max(PREDICTION_BODY_LIMIT)),
        )
        .route(
            "/regions/{region}/predict/{workload}/{model}",
            post(predict_in_region).layer(DefaultBodyLimit::max(PREDICTION_BODY_LIMIT)),
        )
        .route("/routes", get(routes))
        .route("/region/healthz", get(region_health))
        .with_state(Arc::new(gateway))
}

async fn predict(
    State(gateway): State<Arc<Gateway>>,
    Path((workload, model)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    gateway.predict(&workload, &model, &headers, body).await
}

async fn predict_in_region(
    State(gateway): State<Arc<Gateway>>,
    Path((region, workload, model)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    gateway
        .predict_in(&region, &workload, &model, &headers, body)
        .await
}

async fn region_health(
    State(gateway): State<Arc<Gateway>>,
    Query(query): Query<HealthQuery>,
) -> Response {
    gateway.region_health(query.workload).await
}

async fn routes(State(gateway): State<Arc<Gateway>>) -> Json<Vec<RoutingTable>> {
    let routes = gateway.routes.read().unwrap_or_else(|e| e.into_inner());
    let mut tables: Vec<RoutingTable> = routes.values().map(|r| r.table.clone()).collect();
    tables.sort_by(|a, b| a.workload.cmp(&b.workload));
    Json(tables)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn route(weights: &[(&str, u32)]) -> Route {
        let weights: BTreeMap<String, u32> =
            weights.iter().map(|(r, w)| (r.to_string(), *w)).collect();
        Route::new(RoutingTable::new("ranker", weights, "test").expect("table"))
    }

    #[test]
    fn picks_follow_the_weights_and_fall_back_to_the_others() {
        let route = route(&[("us-central1", 90), ("us-east1", 10), ("europe-west1", 0)]);
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for ticket in 0..10_000 {
            let regions = route.regions(ticket);
            assert_eq!(regions.len(), 3);
            assert_ne!(regions[0], regions[1]);
            assert_eq!(
                regions[2], "europe-west1",
                "a standby only after the serving regions"
            );
            *counts.entry(regions[0]).or_default() += 1;
        }
        let central = counts["us-central1"];
        assert!((8_800..=9_200).contains(&central), "{counts:?}");
    }

    #[tokio::test]
    async fn given_tables_route_until_a_stored_one_replaces_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = lifeboat_shared::state::local::LocalStateStore::open(dir.path())
            .await
            .expect("state");
        let state: Arc<dyn StateStore> = Arc::new(state);
        let weights = |pairs: &[(&str, u32)]| -> BTreeMap<String, u32> {
            pairs.iter().map(|(r, w)| (r.to_string(), *w)).collect()
        };
        let implied = RoutingTable::new("ranker", weights(&[("us-central1", 100)]), "implied")
            .expect("table");
        let gateway = Gateway::new(
            Upstreams::new(),
            state.clone(),
            Credentials::Anonymous,
            GatewayOptions::default(),
        )
        .with_tables([implied]);
        assert_eq!(gateway.refresh().await.expect("refresh"), 0);
        let route = gateway.route("ranker").expect("the given table routes");
        assert_eq!(route.regions(0), vec!["us-central1"]);
        let stored =
            RoutingTable::new("ranker", weights(&[("us-east1", 100)]), "failover").expect("table");
        routing::write(state.as_ref(), &stored, 0)
            .await
            .expect("write");
        assert_eq!(gateway.refresh().await.expect("refresh"), 1);
        let route = gateway.route("ranker").expect("the stored table routes");
        assert_eq!(route.regions(0), vec!["us-east1"]);
    }

    #[test]
    fn the_retry_is_on_unless_the_variable_says_off() {
        assert_eq!(retry_switch(None), Ok(true));
        assert_eq!(retry_switch(Some("1")), Ok(true));
        assert_eq!(retry_switch(Some(" TRUE ")), Ok(true));
        assert_eq!(retry_switch(Some("0")), Ok(false));
        assert_eq!(retry_switch(Some("false")), Ok(false));
        let refused = retry_switch(Some("no")).expect_err("not a switch");
        assert!(refused.contains(RETRY_VARIABLE), "{refused}");
    }

    #[test]
    fn every_run_of_consecutive_tickets_follows_the_weights() {
        let route = route(&[
            ("us-central1", 100),
            ("us-east1", 100),
            ("europe-west1", 100),
        ]);
        for start in (0..20_000).step_by(150) {
            let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
            for ticket in start..start + 150 {
                *counts.entry(route.regions(ticket)[0]).or_default() += 1;
            }
            assert!(
                counts.values().all(|n| (45..=55).contains(n)),
                "tickets {start}..{}: {counts:?}",
                start + 150
            );
        }
    }

    #[test]
    fn consecutive_tickets_interleave_a_small_weight() {
        let route = route(&[("us-central1", 90), ("us-east1", 10)]);
        let east_in_first_50 = (0..50)
            .filter(|t| route.regions(*t)[0] == "us-east1")
            .count();
        assert!(
            east_in_first_50 >= 2,
            "the 10% region waits for its turn: {east_in_first_50}"
        );
    }
}
