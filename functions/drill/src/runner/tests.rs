use std::sync::Arc;

use lifeboat_failover::probes::Prober;
use lifeboat_failover::{FailoverContext, FailoverOptions, ProbeTargets};
use lifeboat_shared::bus::DRILL_EVENTS_TOPIC;
use lifeboat_shared::bus::EventBus;
use lifeboat_shared::bus::local::{LocalBus, LocalBusOptions};
use lifeboat_shared::fault::{Fault, FaultKind};
use lifeboat_shared::metrics::state::StateMetrics;
use lifeboat_shared::models::local::LocalRegistry;
use lifeboat_shared::records::drill_run::overview;
use lifeboat_shared::state::local::LocalStateStore;
use lifeboat_shared::storage::local::LocalStore;
use lifeboat_shared::topology::Topology;
use lifeboat_shared::warehouse::local::LocalWarehouse;

use super::*;
use crate::DrillOptions;
use crate::report::ReportSink;

const EXAMPLE: &str = include_str!("../../../../examples/production-three-region.yaml");

/// A drill context on the local backends, in `dir`, for the example with
/// the weekly outage drill's window moved to two hours from now (so that
/// it is closed now).
async fn context(dir: &std::path::Path) -> DrillContext {
    let opens = Utc::now() + TimeDelta::hours(2);
    let window = format!(
        "window: \"{}-{}\"",
        opens.format("%H:00"),
        (opens + TimeDelta::hours(1)).format("%H:00")
    );
    let text = EXAMPLE.replacen("window: \"09:00-16:00\"", &window, 1);
    let topology = Topology::parse(&text, "production-three-region.yaml").expect("valid");
    let state: Arc<dyn StateStore> = Arc::new(
        LocalStateStore::open(dir.join("state"))
            .await
            .expect("state"),
    );
    let bus = LocalBus::open(dir.join("bus"), LocalBusOptions::default())
        .await
        .expect("bus");
    bus.create_topic(DRILL_EVENTS_TOPIC).await.expect("topic");
    DrillContext {
        failover: FailoverContext {
            topology: Arc::new(topology),
            state: state.clone(),
            registry: Arc::new(LocalRegistry::new(state.clone())),
            bus: Arc::new(bus),
            probes: ProbeTargets::default(),
            prober: Prober::default(),
            golden: None,
            options: FailoverOptions::default(),
            metrics: Arc::new(StateMetrics::new(state.clone())),
        },
        storage: Arc::new(
            LocalStore::open(dir.join("storage"))
                .await
                .expect("storage"),
        ),
        warehouse: Arc::new(
            LocalWarehouse::open(dir.join("warehouse"))
                .await
                .expect("warehouse"),
        ),
        gateway_url: "http://127.0.0.1:1/gateway".to_string(),
        reports: ReportSink::Directory(dir.join("reports")),
        options: DrillOptions {
            lease_ttl: Duration::from_millis(300),
            ..DrillOptions::default()
        },
        live: LiveRuns::default(),
    }
}

fn weights(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs.iter().map(|(r, w)| (r.to_string(), *w)).collect()
}

#[test]
fn a_run_is_named_by_its_drill_and_due_time() {
    let due = DateTime::parse_from_rfc3339("2026-12-08T10:00:00Z")
        .expect("time")
        .to_utc();
    assert_eq!(
        run_id("weekly-region-outage", due),
        "weekly-region-outage--20261208T100000Z"
    );
    assert_eq!(
        run_id("x", due + TimeDelta::milliseconds(400)),
        run_id("x", due)
    );
}

#[tokio::test]
async fn two_deliveries_of_one_tick_make_one_run_and_a_refusal_is_recorded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let context = context(dir.path()).await;
    // Its window opens in two hours: a tick now is refused.
    let due = Utc::now();
    let first = start(
        &context,
        "weekly-region-outage",
        due,
        Trigger::Scheduler,
        false,
    )
    .await
    .expect("answered");
    let Started::Refused(refused) = first else {
        panic!("outside its window the drill is refused: {first:?}");
    };
    assert_eq!(refused.state, RunState::Refused);
    assert!(
        refused
            .reasons
            .iter()
            .any(|r| r.contains("outside the drill's window")),
        "{:?}",
        refused.reasons
    );
    let again = start(
        &context,
        "weekly-region-outage",
        due,
        Trigger::Scheduler,
        false,
    )
    .await
    .expect("answered");
    assert!(
        matches!(again, Started::Duplicate(ref run) if run.id == refused.id),
        "{again:?}"
    );
    assert_eq!(read_all(context.state()).await.expect("runs").len(), 1);
    let unknown = start(&context, "no-such-drill", due, Trigger::Scheduler, false).await;
    assert!(
        matches!(unknown, Err(StartError::UnknownDrill(_))),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn a_second_drill_on_a_busy_workload_is_refused_naming_the_running_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let context = context(dir.path()).await;
    let state = context.state();
    let name = lease_name("recommendations");
    lease::acquire(
        state,
        &name,
        "weekly-region-outage--20261208T100000Z",
        Duration::from_secs(60),
    )
    .await
    .expect("lease")
    .expect("taken");
    let started = start(
        &context,
        "nightly-restore-us-east1",
        Utc::now(),
        Trigger::Manual,
        true,
    )
    .await
    .expect("answered");
    let Started::Refused(run) = started else {
        panic!("one drill per workload: {started:?}");
    };
    assert!(
        run.reasons.iter().any(|r| r.contains(
            "another drill is running on recommendations: weekly-region-outage--20261208T100000Z"
        )),
        "{:?}",
        run.reasons
    );
}

#[tokio::test]
async fn a_run_left_unfinished_by_a_dead_service_is_cleaned_up_and_recorded_as_aborted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let context = context(dir.path()).await;
    let state = context.state();
    let topology = context.topology().clone();
    let drill = topology
        .drill("weekly-region-outage")
        .expect("declared")
        .clone();
    let now = Utc::now();
    // What a service that died after failing the region and moving the
    // traffic leaves behind: the record, the fault, the moved routing and
    // a lease nobody renews.
    let mut run = DrillRun::new(
        &drill,
        run_id(drill.id.as_str(), now),
        Trigger::Scheduler,
        now,
    );
    run.cleanup.routing_before = Some(weights(&[
        ("europe-west1", 0),
        ("us-central1", 100),
        ("us-east1", 0),
    ]));
    run.cleanup.fault_injected_at = Some(now);
    assert_eq!(create(state, &run).await.expect("created"), None);
    let fault = Fault {
        workload: "recommendations".to_string(),
        region: "us-central1".to_string(),
        kind: FaultKind::Stop,
        run: run.id.clone(),
        injected_at: now,
        expires_at: now + TimeDelta::minutes(2),
    };
    fault::inject(state, &fault).await.expect("fault");
    let moved = RoutingTable::new(
        "recommendations",
        weights(&[("europe-west1", 0), ("us-central1", 0), ("us-east1", 100)]),
        "failover",
    )
    .expect("table");
    routing::write(state, &moved, 0).await.expect("routing");
    lease::acquire(
        state,
        &lease_name("recommendations"),
        &run.id,
        Duration::from_millis(100),
    )
    .await
    .expect("lease")
    .expect("taken");

    // While its lease lives, the run is left alone.
    assert_eq!(recover(&context).await.expect("recovery"), 0);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(recover(&context).await.expect("recovery"), 1);

    let after = read(state, &run.id).await.expect("read").expect("kept");
    assert_eq!(after.state, RunState::Aborted);
    assert!(
        after.reasons[0].contains("the drill service stopped mid-run"),
        "{:?}",
        after.reasons
    );
    assert!(
        after.cleanup.fault_removed_at.is_some() && after.cleanup.routing_restored_at.is_some()
    );
    assert!(
        fault::active(state, Utc::now())
            .await
            .expect("faults")
            .is_empty(),
        "the fault is removed"
    );
    let tables = routing::read_all(state).await.expect("routing");
    assert_eq!(
        tables[0].weights,
        run.cleanup.routing_before.clone().expect("before")
    );
    let report = after.report.expect("a report is written");
    assert!(std::path::Path::new(&report).exists(), "{report}");
    // Found once: a second look finds nothing to do.
    assert_eq!(recover(&context).await.expect("recovery"), 0);
    let aborted = abort(&context, &run.id, "ana", "too late").await;
    assert!(
        matches!(aborted, Err(AbortError::Finished(RunState::Aborted))),
        "{aborted:?}"
    );
}

#[tokio::test]
async fn the_overview_flags_a_drill_whose_due_run_was_missed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let context = context(dir.path()).await;
    let now = DateTime::parse_from_rfc3339("2026-12-09T12:00:00Z")
        .expect("time")
        .to_utc();
    let rows = overview(context.topology(), context.state(), now)
        .await
        .expect("overview");
    let nightly = rows
        .iter()
        .find(|r| r.id == "nightly-restore-us-east1")
        .expect("listed");
    assert!(nightly.overdue, "never run, due every night");
    assert_eq!(
        nightly.next_due,
        Some(
            DateTime::parse_from_rfc3339("2026-12-10T03:30:00Z")
                .expect("time")
                .to_utc()
        )
    );
    // A run last night: not overdue any more, and listed as the last run.
    let drill = context
        .topology()
        .drill("nightly-restore-us-east1")
        .expect("declared")
        .clone();
    let last_night = DateTime::parse_from_rfc3339("2026-12-09T03:30:00Z")
        .expect("time")
        .to_utc();
    let mut run = DrillRun::new(
        &drill,
        run_id(drill.id.as_str(), last_night),
        Trigger::Scheduler,
        last_night,
    );
    run.state = RunState::Passed;
    create(context.state(), &run).await.expect("created");
    let rows = overview(context.topology(), context.state(), now)
        .await
        .expect("overview");
    let nightly = rows
        .iter()
        .find(|r| r.id == "nightly-restore-us-east1")
        .expect("listed");
    assert!(!nightly.overdue);
    assert_eq!(
        nightly.last_run.as_ref().map(|r| r.state),
        Some(RunState::Passed)
    );
}

#[tokio::test]
async fn a_finished_run_writes_the_rto_it_measured_to_the_metrics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let context = context(dir.path()).await;
    let drill = context
        .topology()
        .drills()
        .iter()
        .find(|d| d.id.as_str() == "weekly-region-outage")
        .expect("the example's outage drill")
        .clone();
    let mut run = DrillRun::new(
        &drill,
        "weekly-region-outage--test",
        Trigger::Manual,
        Utc::now(),
    );
    run.measurements.rto_seconds = Some(42.5);
    finish(&context, &mut run, Ok(()), None).await;
    let points = context
        .failover
        .metrics
        .latest(lifeboat_shared::metrics::DRILL_RTO)
        .await
        .expect("metrics read");
    assert_eq!(points.len(), 1, "{points:?}");
    assert_eq!(points[0].value, 42.5);
    assert_eq!(points[0].labels["drill"], "weekly-region-outage");
    assert_eq!(points[0].labels["region"], run.target_region);
}
