//! [`MetricSink`] on Cloud Monitoring, through the official
//! `google-cloud-monitoring-v3` client: each point becomes a `GAUGE`,
//! `DOUBLE` custom metric point under [`METRIC_PREFIX`] on the `global`
//! monitored resource of the project (`projects.timeSeries.create`), and
//! [`MetricSink::latest`] reads `projects.timeSeries.list` back.

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use google_cloud_api::model::metric_descriptor::{MetricKind, ValueType};
use google_cloud_api::model::{Metric, MonitoredResource};
use google_cloud_gax::error::rpc::Code;
use google_cloud_monitoring_v3::client::MetricService;
use google_cloud_monitoring_v3::model::list_time_series_request::TimeSeriesView;
use google_cloud_monitoring_v3::model::{Point, TimeInterval, TimeSeries, TypedValue};
use google_cloud_wkt::Timestamp;

use super::{GaugePoint, METRIC_PREFIX, MetricSink, MetricsError};
use crate::gcp::{ApiEndpoint, Credentials};

/// Cloud Monitoring accepts at most this many series per create call.
const MAX_SERIES_PER_CALL: usize = 200;

/// How far back [`MetricSink::latest`] looks.
const LATEST_WINDOW: TimeDelta = TimeDelta::hours(24);

/// Gauges in Cloud Monitoring, for one project.
#[derive(Clone, Debug)]
pub struct CloudMonitoring {
    client: MetricService,
    project: String,
    base_url: String,
}

impl CloudMonitoring {
    /// Connects to the Monitoring API at `endpoint` for `project`.
    /// Anonymous endpoint credentials (a stand-in) are passed on; with
    /// Google credentials the client finds Application Default Credentials
    /// itself.
    pub async fn new(
        project: impl Into<String>,
        endpoint: &ApiEndpoint,
    ) -> Result<Self, MetricsError> {
        let mut builder = MetricService::builder().with_endpoint(&endpoint.base_url);
        if matches!(endpoint.credentials, Credentials::Anonymous) {
            builder = builder.with_credentials(
                google_cloud_auth::credentials::anonymous::Builder::new().build(),
            );
        }
        let client = builder
            .build()
            .await
            .map_err(|error| MetricsError::Backend {
                context: format!("connect to Cloud Monitoring at {}", endpoint.base_url),
                detail: error.to_string(),
            })?;
        Ok(Self {
            client,
            project: project.into(),
            base_url: endpoint.base_url.clone(),
        })
    }

    fn project_name(&self) -> String {
        format!("projects/{}", self.project)
    }

    fn time_series(&self, point: &GaugePoint) -> TimeSeries {
        TimeSeries::new()
            .set_metric(
                Metric::new()
                    .set_type(format!("{METRIC_PREFIX}{}", point.metric))
                    .set_labels(point.labels.clone()),
            )
            .set_resource(
                MonitoredResource::new()
                    .set_type("global")
                    .set_labels([("project_id", self.project.as_str())]),
            )
            .set_metric_kind(MetricKind::Gauge)
            .set_value_type(ValueType::Double)
            .set_points([Point::new()
                .set_interval(TimeInterval::new().set_end_time(timestamp(point.at)))
                .set_value(TypedValue::new().set_double_value(point.value))])
    }

    /// Maps a failed call: an `INVALID_ARGUMENT` (an out-of-order point, a
    /// refused label) is the caller's to fix, anything else the backend's.
    fn failure(
        &self,
        context: String,
        series: String,
        error: google_cloud_gax::error::Error,
    ) -> MetricsError {
        match error.status() {
            Some(status) if status.code == Code::InvalidArgument => MetricsError::Rejected {
                series,
                detail: status.message.clone(),
            },
            _ => MetricsError::Backend {
                context: format!("{context} at {}", self.base_url),
                detail: error.to_string(),
            },
        }
    }
}

fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp::clamp(at.timestamp(), at.timestamp_subsec_nanos() as i32)
}

fn date_time(at: &Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(at.seconds(), u32::try_from(at.nanos()).ok()?)
}

/// Splits `points` into create calls: at most [`MAX_SERIES_PER_CALL`] series
/// each, and a series at most once per call (Monitoring refuses two points
/// of one series in one call), keeping each series' points in order.
fn calls(points: &[GaugePoint]) -> Vec<Vec<&GaugePoint>> {
    let mut calls: Vec<Vec<&GaugePoint>> = Vec::new();
    let mut series_in_call: Vec<HashSet<String>> = Vec::new();
    let mut last_call_of: BTreeMap<String, usize> = BTreeMap::new();
    for point in points {
        let series = point.series();
        let earliest = last_call_of.get(&series).map_or(0, |call| call + 1);
        let index = (earliest..calls.len())
            .find(|&i| calls[i].len() < MAX_SERIES_PER_CALL && !series_in_call[i].contains(&series))
            .unwrap_or_else(|| {
                calls.push(Vec::new());
                series_in_call.push(HashSet::new());
                calls.len() - 1
            });
        calls[index].push(point);
        series_in_call[index].insert(series.clone());
        last_call_of.insert(series, index);
    }
    calls
}

#[async_trait]
impl MetricSink for CloudMonitoring {
    async fn write(&self, points: &[GaugePoint]) -> Result<(), MetricsError> {
        for point in points {
            point.validate()?;
        }
        for call in calls(points) {
            let series: Vec<String> = call.iter().map(|point| point.series()).collect();
            self.client
                .create_time_series()
                .set_name(self.project_name())
                .set_time_series(call.iter().map(|point| self.time_series(point)))
                .send()
                .await
                .map_err(|error| {
                    self.failure(
                        format!("write {} to Cloud Monitoring", series.join(" ")),
                        series.join(" "),
                        error,
                    )
                })?;
        }
        Ok(())
    }

    async fn latest(&self, metric: &str) -> Result<Vec<GaugePoint>, MetricsError> {
        let now = Utc::now();
        let context = format!("list {METRIC_PREFIX}{metric} from Cloud Monitoring");
        let mut latest: BTreeMap<String, GaugePoint> = BTreeMap::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .client
                .list_time_series()
                .set_name(self.project_name())
                .set_filter(format!("metric.type = \"{METRIC_PREFIX}{metric}\""))
                .set_interval(
                    TimeInterval::new()
                        .set_start_time(timestamp(now - LATEST_WINDOW))
                        .set_end_time(timestamp(now)),
                )
                .set_view(TimeSeriesView::Full)
                .set_page_token(page_token.clone())
                .send()
                .await
                .map_err(|error| self.failure(context.clone(), metric.to_string(), error))?;
            for series in page.time_series {
                let labels: BTreeMap<String, String> = series
                    .metric
                    .map(|metric| metric.labels.into_iter().collect())
                    .unwrap_or_default();
                // Monitoring returns each series' points newest first.
                let newest = series.points.iter().find_map(|point| {
                    let at = point
                        .interval
                        .as_ref()?
                        .end_time
                        .as_ref()
                        .and_then(date_time)?;
                    let value = *point.value.as_ref()?.double_value()?;
                    Some((at, value))
                });
                if let Some((at, value)) = newest {
                    let point = GaugePoint {
                        metric: metric.to_string(),
                        labels,
                        value,
                        at,
                    };
                    let series = point.series();
                    if latest.get(&series).is_none_or(|known| known.at < point.at) {
                        latest.insert(series, point);
                    }
                }
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        Ok(latest.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(metric: &str, region: &str, seconds: i64) -> GaugePoint {
        GaugePoint::new(
            metric,
            [("region", region)],
            1.0,
            DateTime::from_timestamp(seconds, 0).expect("time"),
        )
    }

    #[test]
    fn a_series_appears_once_per_call_and_in_order() {
        let points = [
            point("lag", "a", 1),
            point("lag", "b", 1),
            point("lag", "a", 2),
            point("lag", "a", 3),
            point("lag", "c", 1),
        ];
        let calls = calls(&points);
        let seconds: Vec<Vec<(String, i64)>> = calls
            .iter()
            .map(|call| {
                call.iter()
                    .map(|p| (p.labels["region"].clone(), p.at.timestamp()))
                    .collect()
            })
            .collect();
        assert_eq!(
            seconds,
            vec![
                vec![("a".into(), 1), ("b".into(), 1), ("c".into(), 1)],
                vec![("a".into(), 2)],
                vec![("a".into(), 3)],
            ]
        );
    }

    #[test]
    fn a_call_holds_at_most_200_series() {
        let points: Vec<GaugePoint> = (0..450)
            .map(|i| point("lag", &format!("r{i}"), 1))
            .collect();
        let sizes: Vec<usize> = calls(&points).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![200, 200, 50]);
    }
}
