//! The behaviour every [`MetricSink`] must show, as plain async functions
//! that each backend's tests call with a sink and a prefix no other test
//! uses: the prefix goes into the metric name, so runs that share a backend
//! never see each other's series.
//!
//! Each function panics with a message naming what went wrong.

use chrono::{DateTime, TimeDelta, Utc};

use super::{GaugePoint, MetricSink, MetricsError};

/// Runs every test of the suite.
pub async fn run_all(sink: &dyn MetricSink, prefix: &str) {
    newest_point_of_each_series_is_read_back(sink, prefix).await;
    a_point_not_newer_than_the_series_is_rejected(sink, prefix).await;
    invalid_points_are_refused_before_anything_is_written(sink, prefix).await;
}

/// A metric name under `prefix` (lower-case, as metric names must be).
fn metric(prefix: &str, name: &str) -> String {
    format!(
        "conformance/{}/{name}",
        prefix.to_ascii_lowercase().replace(['-', '.'], "_")
    )
}

/// Whole seconds, so every backend's timestamps compare equal.
fn seconds_ago(seconds: i64) -> DateTime<Utc> {
    let now = Utc::now() - TimeDelta::seconds(seconds);
    DateTime::from_timestamp(now.timestamp(), 0).expect("a valid time")
}

fn lag(metric: &str, region: &str, value: f64, at: DateTime<Utc>) -> GaugePoint {
    GaugePoint::new(
        metric,
        [("location", "ckpt"), ("region", region)],
        value,
        at,
    )
}

/// Two series of one metric, one written twice (in two calls and within
/// one call): `latest` gives each series' newest value, and nothing of
/// another metric.
pub async fn newest_point_of_each_series_is_read_back(sink: &dyn MetricSink, prefix: &str) {
    let lag_metric = metric(prefix, "lag");
    let other_metric = metric(prefix, "other");
    sink.write(&[
        lag(&lag_metric, "us-east1", 10.0, seconds_ago(300)),
        lag(&other_metric, "us-east1", 99.0, seconds_ago(300)),
    ])
    .await
    .unwrap_or_else(|e| panic!("first write: {e}"));
    let newest_at = seconds_ago(60);
    sink.write(&[
        lag(&lag_metric, "europe-west1", 4.5, seconds_ago(200)),
        lag(&lag_metric, "us-east1", 7.0, seconds_ago(120)),
        lag(&lag_metric, "us-east1", 3.25, newest_at),
    ])
    .await
    .unwrap_or_else(|e| panic!("second write: {e}"));

    let latest = sink
        .latest(&lag_metric)
        .await
        .unwrap_or_else(|e| panic!("latest: {e}"));
    let found: Vec<(String, f64)> = latest
        .iter()
        .map(|point| (point.labels["region"].clone(), point.value))
        .collect();
    assert_eq!(
        found,
        vec![
            ("europe-west1".to_string(), 4.5),
            ("us-east1".to_string(), 3.25)
        ],
        "the newest point of each series, ordered by series"
    );
    assert!(
        latest.iter().all(|point| point.metric == lag_metric
            && point.labels.get("location").map(String::as_str) == Some("ckpt")),
        "metric and labels read back as written: {latest:?}"
    );
    assert_eq!(
        latest[1].at, newest_at,
        "the point's time reads back as written"
    );
}

/// A point older than, or as old as, the series' newest is refused and
/// leaves the newest in place.
pub async fn a_point_not_newer_than_the_series_is_rejected(sink: &dyn MetricSink, prefix: &str) {
    let lag_metric = metric(prefix, "ordered");
    let newest_at = seconds_ago(30);
    sink.write(&[lag(&lag_metric, "us-east1", 2.0, newest_at)])
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    for at in [seconds_ago(90), newest_at] {
        let refused = sink.write(&[lag(&lag_metric, "us-east1", 50.0, at)]).await;
        assert!(
            matches!(refused, Err(MetricsError::Rejected { .. })),
            "a point at {at} after one at {newest_at} must be rejected, got {refused:?}"
        );
    }
    let latest = sink
        .latest(&lag_metric)
        .await
        .unwrap_or_else(|e| panic!("latest: {e}"));
    assert_eq!(
        latest.iter().map(|p| (p.value, p.at)).collect::<Vec<_>>(),
        vec![(2.0, newest_at)],
        "the refused points changed nothing"
    );
}

/// A non-finite value, a bad metric name or a bad label key fails the call
/// with [`MetricsError::Invalid`] naming the series, and none of the call's
/// points is written.
pub async fn invalid_points_are_refused_before_anything_is_written(
    sink: &dyn MetricSink,
    prefix: &str,
) {
    let good_metric = metric(prefix, "valid");
    let good = lag(&good_metric, "us-east1", 1.0, seconds_ago(10));
    let mut bad_label = good.clone();
    bad_label
        .labels
        .insert("Region Name".to_string(), "x".to_string());
    let bad_points = [
        lag(&good_metric, "us-east1", f64::NAN, seconds_ago(10)),
        lag(&good_metric, "us-east1", f64::INFINITY, seconds_ago(10)),
        lag("Conformance Lag", "us-east1", 1.0, seconds_ago(10)),
        bad_label,
    ];
    for bad in bad_points {
        let result = sink.write(&[good.clone(), bad.clone()]).await;
        match result {
            Err(MetricsError::Invalid { series, .. }) => assert_eq!(series, bad.series()),
            other => panic!("{bad:?} must be refused as invalid, got {other:?}"),
        }
    }
    let latest = sink
        .latest(&good_metric)
        .await
        .unwrap_or_else(|e| panic!("latest: {e}"));
    assert!(
        latest.is_empty(),
        "nothing of a refused call is written: {latest:?}"
    );
}
