//! The metrics conformance suite against Cloud Monitoring's REST API, as the
//! stand-in built on the official types speaks it, plus what the suite
//! cannot show: the exact series Monitoring receives, and a failed call.

use google_cloud_api::model::metric_descriptor::{MetricKind, ValueType};
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::metrics::monitoring::CloudMonitoring;
use lifeboat_shared::metrics::{
    CHECKPOINT_REPLICATION_LAG, GaugePoint, METRIC_PREFIX, MetricSink, MetricsError, conformance,
};
use lifeboat_tests::PROJECT;
use lifeboat_tests::monitoring_standin::MonitoringStandIn;

async fn sink(standin: &MonitoringStandIn) -> CloudMonitoring {
    CloudMonitoring::new(PROJECT, &ApiEndpoint::emulator(&standin.host()))
        .await
        .expect("client")
}

#[tokio::test]
async fn cloud_monitoring_passes_the_conformance_suite() {
    let standin = MonitoringStandIn::start().await;
    conformance::run_all(&sink(&standin).await, "conformance").await;
}

#[tokio::test]
async fn a_point_becomes_a_double_gauge_on_the_global_resource() {
    let standin = MonitoringStandIn::start().await;
    let at = chrono::DateTime::from_timestamp(1_800_000_000, 500_000_000).expect("time");
    sink(&standin)
        .await
        .write(&[GaugePoint::new(
            CHECKPOINT_REPLICATION_LAG,
            [
                ("workload", "llm"),
                ("location", "ckpt"),
                ("region", "us-east1"),
            ],
            4.25,
            at,
        )])
        .await
        .expect("write");
    let written = standin.written(&format!("{METRIC_PREFIX}{CHECKPOINT_REPLICATION_LAG}"));
    assert_eq!(written.len(), 1, "{written:?}");
    let series = &written[0];
    assert_eq!(series.metric_kind, MetricKind::Gauge);
    assert_eq!(series.value_type, ValueType::Double);
    let resource = series.resource.as_ref().expect("a resource");
    assert_eq!(resource.r#type, "global");
    assert_eq!(resource.labels["project_id"], PROJECT);
    let metric = series.metric.as_ref().expect("a metric");
    assert_eq!(metric.labels["region"], "us-east1");
    assert_eq!(metric.labels["workload"], "llm");
    let point = &series.points[0];
    assert_eq!(
        point.value.as_ref().and_then(|v| v.double_value()),
        Some(&4.25)
    );
    let end = point
        .interval
        .as_ref()
        .and_then(|i| i.end_time)
        .expect("an end time");
    assert_eq!((end.seconds(), end.nanos()), (1_800_000_000, 500_000_000));
}

#[tokio::test]
async fn a_monitoring_outage_is_a_backend_error_naming_the_series() {
    let standin = MonitoringStandIn::start().await;
    standin.fail_next(usize::MAX);
    let point = GaugePoint::new(
        CHECKPOINT_REPLICATION_LAG,
        [("region", "us-east1")],
        1.0,
        chrono::Utc::now(),
    );
    let error = sink(&standin)
        .await
        .write(&[point])
        .await
        .expect_err("Monitoring is down");
    assert!(
        matches!(&error, MetricsError::Backend { context, .. } if context.contains("region=us-east1")),
        "{error}"
    );
    assert!(standin.create_calls() >= 1);
}
