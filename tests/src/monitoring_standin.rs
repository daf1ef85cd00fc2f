//! A Cloud Monitoring stand-in: the two REST methods Lifeboat calls
//! (`projects.timeSeries.create` and `projects.timeSeries.list`), built on
//! the official `google-cloud-monitoring-v3` request and response types so
//! its JSON cannot drift from the client's. It enforces what Monitoring
//! enforces of gauge writes (one point per series per call, each newer than
//! the series' newest), pages its listings two series at a time so clients
//! must follow `nextPageToken`, and can be told to fail.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;

use crate::{LoopbackServer, google_error as error};
use google_cloud_monitoring_v3::model::{
    CreateTimeSeriesRequest, ListTimeSeriesResponse, TimeSeries,
};
use google_cloud_wkt::Timestamp;

/// Series per listing page.
const PAGE_SIZE: usize = 2;

/// Every point written, per series key, oldest first.
type Written = BTreeMap<String, Vec<TimeSeries>>;

#[derive(Default)]
struct Shared {
    series: Mutex<Written>,
    fail_next: AtomicUsize,
    create_calls: AtomicUsize,
}

/// The stand-in, serving on a loopback port until dropped.
pub struct MonitoringStandIn {
    shared: Arc<Shared>,
    server: LoopbackServer,
}

impl MonitoringStandIn {
    /// Starts the stand-in on a free loopback port.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let router = Router::new()
            .route("/v3/projects/{project}/timeSeries", post(create).get(list))
            .with_state(shared.clone());
        Self {
            server: LoopbackServer::start(router).await,
            shared,
        }
    }

    /// The `host:port` to give a client as its endpoint.
    pub fn host(&self) -> String {
        self.server.host()
    }

    /// Makes the next `count` calls fail with 503 UNAVAILABLE.
    pub fn fail_next(&self, count: usize) {
        self.shared.fail_next.store(count, Ordering::SeqCst);
    }

    /// How many create calls arrived (failed ones included).
    pub fn create_calls(&self) -> usize {
        self.shared.create_calls.load(Ordering::SeqCst)
    }

    /// Every series written whose metric type is `metric_type`, with its
    /// points oldest first.
    pub fn written(&self, metric_type: &str) -> Vec<TimeSeries> {
        let series = self.shared.series.lock().expect("stand-in lock");
        series
            .values()
            .flatten()
            .filter(|s| s.metric.as_ref().is_some_and(|m| m.r#type == metric_type))
            .cloned()
            .collect()
    }
}

fn injected_failure(shared: &Shared) -> Option<Response> {
    shared
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .ok()
        .map(|_| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "the stand-in was told to fail".into(),
            )
        })
}

/// What identifies a series: its metric type and labels, and its resource.
fn series_key(series: &TimeSeries) -> String {
    let sorted = |labels: &HashMap<String, String>| {
        labels
            .iter()
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let metric = series
        .metric
        .as_ref()
        .map(|m| format!("{}{{{}}}", m.r#type, sorted(&m.labels)));
    let resource = series
        .resource
        .as_ref()
        .map(|r| format!("{}{{{}}}", r.r#type, sorted(&r.labels)));
    format!(
        "{} on {}",
        metric.unwrap_or_default(),
        resource.unwrap_or_default()
    )
}

fn end_time(series: &TimeSeries) -> Option<Timestamp> {
    series.points.first()?.interval.as_ref()?.end_time
}

async fn create(
    State(shared): State<Arc<Shared>>,
    Path(_project): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    shared.create_calls.fetch_add(1, Ordering::SeqCst);
    if let Some(failure) = injected_failure(&shared) {
        return failure;
    }
    let request: CreateTimeSeriesRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                format!("bad request body: {e}"),
            );
        }
    };
    let invalid = |message: String| error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message);
    let mut stored = shared.series.lock().expect("stand-in lock");
    let mut seen = std::collections::HashSet::new();
    // Checked as a whole first: Monitoring writes none of a call it refuses.
    for series in &request.time_series {
        let key = series_key(series);
        if series.metric.is_none() || series.resource.is_none() {
            return invalid(format!(
                "{key}: a time series needs a metric and a resource"
            ));
        }
        if series.points.len() != 1 {
            return invalid(format!(
                "{key}: exactly one point per time series, got {}",
                series.points.len()
            ));
        }
        let Some(at) = end_time(series) else {
            return invalid(format!("{key}: the point has no interval.endTime"));
        };
        if !seen.insert(key.clone()) {
            return invalid(format!(
                "{key}: Field timeSeries[] had a duplicate time series in the same request"
            ));
        }
        let newest = stored
            .get(&key)
            .and_then(|points| points.last())
            .and_then(end_time);
        if newest
            .is_some_and(|newest| (newest.seconds(), newest.nanos()) >= (at.seconds(), at.nanos()))
        {
            return invalid(format!(
                "{key}: Points must be written in order. One or more of the points specified had an older start time than the most recent point."
            ));
        }
    }
    for series in request.time_series {
        stored.entry(series_key(&series)).or_default().push(series);
    }
    Json(serde_json::json!({})).into_response()
}

async fn list(
    State(shared): State<Arc<Shared>>,
    Path(_project): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(failure) = injected_failure(&shared) {
        return failure;
    }
    let filter = query.get("filter").map(String::as_str).unwrap_or_default();
    let Some(metric_type) = filter
        .strip_prefix("metric.type = \"")
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            format!("the stand-in understands only metric.type = \"...\" filters, got {filter:?}"),
        );
    };
    let time = |name: &str| {
        query.get(name).and_then(|text| {
            serde_json::from_value::<Timestamp>(serde_json::Value::String(text.clone())).ok()
        })
    };
    let (Some(start), Some(end)) = (time("interval.startTime"), time("interval.endTime")) else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "interval.startTime and interval.endTime are required".into(),
        );
    };
    let within = |at: &Timestamp| {
        (start.seconds(), start.nanos()) <= (at.seconds(), at.nanos())
            && (at.seconds(), at.nanos()) <= (end.seconds(), end.nanos())
    };
    let stored = shared.series.lock().expect("stand-in lock");
    let matching: Vec<TimeSeries> = stored
        .values()
        .filter_map(|written| {
            let first = written.first()?;
            if first.metric.as_ref()?.r#type != metric_type {
                return None;
            }
            // One series with its points in the interval, newest first, as
            // Monitoring returns them.
            let points = written
                .iter()
                .rev()
                .flat_map(|series| series.points.iter().cloned())
                .filter(|point| {
                    point
                        .interval
                        .as_ref()
                        .and_then(|i| i.end_time.as_ref())
                        .is_some_and(within)
                })
                .collect::<Vec<_>>();
            (!points.is_empty()).then(|| first.clone().set_points(points))
        })
        .collect();
    let offset: usize = query
        .get("pageToken")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let page: Vec<TimeSeries> = matching
        .iter()
        .skip(offset)
        .take(PAGE_SIZE)
        .cloned()
        .collect();
    let next = offset + page.len();
    let response = ListTimeSeriesResponse::new()
        .set_time_series(page)
        .set_next_page_token(if next < matching.len() {
            next.to_string()
        } else {
            String::new()
        });
    Json(response).into_response()
}
