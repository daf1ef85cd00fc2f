//! Metrics: gauges such as replication lag, written where operators watch
//! them. On Google Cloud that is Cloud Monitoring ([`monitoring`], custom
//! metrics under `custom.googleapis.com/lifeboat/`); in the local cloud the
//! newest point of each series is kept in the state store ([`state`]).
//! [`conformance`] is the suite both must pass.

pub mod conformance;
pub mod monitoring;
pub mod state;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::gcp::ApiEndpoint;
use crate::state::StateStore;

/// Where every Lifeboat metric lives in Cloud Monitoring.
pub const METRIC_PREFIX: &str = "custom.googleapis.com/lifeboat/";

/// Replication lag of the newest checkpoint committed in a region, in
/// seconds from its source write to its commit there; labels `workload`,
/// `location`, `region`.
pub const CHECKPOINT_REPLICATION_LAG: &str = "checkpoint/replication_lag";

/// RPO exposure of a bucket or dataset copy when a reconcile checked it, in
/// seconds (the source write time of the oldest change not verified there,
/// to the check); labels `workload`, `kind`, `asset`, `region`.
pub const DATA_RPO_EXPOSURE: &str = "data/rpo_exposure";

/// 1 when a standby region holds (and, as a warm standby, serves) the
/// primary's newest version of a model, else 0, as `lifeboat status
/// --models` judges it; written after every copy. Labels `workload`,
/// `model`, `region`.
pub const MODEL_PARITY: &str = "model/parity";

/// A region's routing weight for a workload, written with every change of
/// the routing table (failover, failback, a move by hand); labels
/// `workload`, `region`.
pub const ROUTING_WEIGHT: &str = "routing/weight";

/// From an incident's start to predictions verified in the region traffic
/// moved to, in seconds; labels `workload`, `from`, `to`.
pub const FAILOVER_RECOVERY_TIME: &str = "failover/recovery_time";

/// The RTO a region-outage drill measured, in seconds; labels `drill`,
/// `workload`, `region` (the region it failed).
pub const DRILL_RTO: &str = "drill/rto";

/// Writes `points` where operators watch them. They are for dashboards and
/// alerts; Lifeboat decides on the records, so a failure is logged, never
/// retried or returned.
pub async fn write_or_log(sink: &dyn MetricSink, points: &[GaugePoint]) {
    if points.is_empty() {
        return;
    }
    if let Err(error) = sink.write(points).await {
        let series: Vec<String> = points.iter().map(GaugePoint::series).collect();
        tracing::warn!(%error, series = %series.join(" "), "metric not written");
    }
}

/// One value of one gauge series at one time. The series is the metric and
/// its labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GaugePoint {
    /// The metric's name under [`METRIC_PREFIX`], e.g.
    /// [`CHECKPOINT_REPLICATION_LAG`].
    pub metric: String,
    /// The series' labels.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
    /// When the value was observed.
    pub at: DateTime<Utc>,
}

impl GaugePoint {
    /// A point of `metric` with `labels`, observed at `at`.
    pub fn new<'a>(
        metric: &str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        value: f64,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            metric: metric.to_string(),
            labels: labels
                .into_iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
            value,
            at,
        }
    }

    /// The series as text: `metric{key=value,...}`.
    pub fn series(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        format!("{}{{{}}}", self.metric, labels.join(","))
    }

    /// Checks what Cloud Monitoring requires of a point, so both sinks
    /// refuse the same points: a finite value, a metric name of lower-case
    /// letters, digits, `_` and `/`, and label keys that start with a letter
    /// and hold lower-case letters, digits and `_`.
    pub fn validate(&self) -> Result<(), MetricsError> {
        let invalid = |detail: String| MetricsError::Invalid {
            series: self.series(),
            detail,
        };
        if !self.value.is_finite() {
            return Err(invalid(format!("value {} is not finite", self.value)));
        }
        let name_ok = !self.metric.is_empty()
            && self
                .metric
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'/');
        if !name_ok {
            return Err(invalid(format!(
                "metric name {:?} must be lower-case letters, digits, '_' and '/'",
                self.metric
            )));
        }
        for key in self.labels.keys() {
            let key_ok = key.starts_with(|c: char| c.is_ascii_lowercase())
                && key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && key.len() <= 100;
            if !key_ok {
                return Err(invalid(format!(
                    "label key {key:?} must start with a letter and hold lower-case letters, digits and '_'"
                )));
            }
        }
        Ok(())
    }
}

/// What can go wrong writing or reading metrics. Every variant names the
/// series or the call.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The point can never be written as it is.
    #[error("metric {series}: {detail}")]
    Invalid {
        /// The series.
        series: String,
        /// What is wrong.
        detail: String,
    },
    /// The backend refused the point: it is not newer than the series'
    /// newest, or the backend's rules refuse it.
    #[error("metric {series}: refused: {detail}")]
    Rejected {
        /// The series (or every series of the call).
        series: String,
        /// The backend's reason.
        detail: String,
    },
    /// The backend could not be reached or failed.
    #[error("{context}: {detail}")]
    Backend {
        /// The call that failed.
        context: String,
        /// The backend's error.
        detail: String,
    },
}

/// Somewhere gauges are written and their newest values read back.
#[async_trait]
pub trait MetricSink: Send + Sync + fmt::Debug {
    /// Writes `points`, each newer than every point already written to its
    /// series; [`MetricsError::Rejected`] if one is not.
    async fn write(&self, points: &[GaugePoint]) -> Result<(), MetricsError>;

    /// The newest point of every series of `metric` (written in the last
    /// 24 hours), ordered by series.
    async fn latest(&self, metric: &str) -> Result<Vec<GaugePoint>, MetricsError>;
}

/// The sink a service's environment asks for: `$LIFEBOAT_METRICS` is
/// `cloud-monitoring` (the default: the Monitoring API, or the stand-in at
/// `$MONITORING_EMULATOR_HOST`) or `state` (the newest point of each series
/// kept in `state`, as the local cloud does).
pub async fn from_env(
    project: &str,
    state: Arc<dyn StateStore>,
) -> Result<Arc<dyn MetricSink>, MetricsError> {
    let choice = std::env::var("LIFEBOAT_METRICS").unwrap_or_default();
    match choice.as_str() {
        "" | "cloud-monitoring" => {
            let endpoint = ApiEndpoint::from_env(
                "MONITORING_EMULATOR_HOST",
                "https://monitoring.googleapis.com",
            )
            .await
            .map_err(|error| MetricsError::Backend {
                context: "connect to Cloud Monitoring".to_string(),
                detail: error.to_string(),
            })?;
            Ok(Arc::new(
                monitoring::CloudMonitoring::new(project, &endpoint).await?,
            ))
        }
        "state" => Ok(Arc::new(state::StateMetrics::new(state))),
        other => Err(MetricsError::Invalid {
            series: "LIFEBOAT_METRICS".to_string(),
            detail: format!("{other:?} is neither cloud-monitoring nor state"),
        }),
    }
}
