//! The replication-isolation drill on local backends: checkpoint-fanout
//! running for real on a filesystem store and an embedded state store, a
//! workload with a 1 s RPO target and a 3 s isolation.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use lifeboat_checkpoint_fanout::Outcome;
use lifeboat_checkpoint_fanout::conformance::{self, Rig};
use lifeboat_drill::isolation::{self, IsolationContext, IsolationError};
use lifeboat_shared::metrics::state::StateMetrics;
use lifeboat_shared::pause::{self, Pause};
use lifeboat_shared::records::drill_run::{DrillRun, Trigger};
use lifeboat_shared::server::Shutdown;
use lifeboat_shared::state::local::LocalStateStore;
use lifeboat_shared::storage::local::LocalStore;
use lifeboat_shared::topology::{Drill, Topology};

const WORKLOAD: &str = "ranker";
const REGION: &str = "us-east1";

/// The fan-out conformance topology with a 1 s RPO target and an isolation
/// drill of us-east1 lasting `isolate_for`.
fn topology(isolate_for: &str) -> Topology {
    // No step duration: 100 steps of one would not fit in a 1 s RPO.
    let yaml = conformance::topology_yaml("iso", "orbax")
        .replace(
            "    pattern: active-passive\n",
            "    pattern: active-passive\n    rpo: 1s\n",
        )
        .replace("          step-duration: 2s\n", "")
        + &format!(
            r#"drills:
  - id: isolate-east
    kind: replication-isolation
    workload: {WORKLOAD}
    target-region: {REGION}
    schedule: "0 10 * * TUE"
    max-duration: 2m
    isolate-for: {isolate_for}
"#
        );
    Topology::parse(&yaml, "isolation.yaml").expect("valid topology")
}

async fn world(isolate_for: &str) -> (tempfile::TempDir, Arc<Rig>, IsolationContext) {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = LocalStore::open(dir.path().join("storage"))
        .await
        .expect("store");
    let state = Arc::new(
        LocalStateStore::open(dir.path().join("state"))
            .await
            .expect("state"),
    );
    let topology = topology(isolate_for);
    let rig = Rig::new(topology.clone(), Arc::new(storage), state.clone()).await;
    let context = IsolationContext {
        topology: Arc::new(topology),
        metrics: Arc::new(StateMetrics::new(state.clone())),
        state,
        poll: Duration::from_millis(100),
    };
    (dir, Arc::new(rig), context)
}

fn drill(context: &IsolationContext) -> Drill {
    context.topology.drills()[0].clone()
}

fn run_of(drill: &Drill) -> DrillRun {
    let now = Utc::now();
    let mut run = DrillRun::new(drill, format!("{}--test", drill.id), Trigger::Manual, now);
    run.deadline = now + TimeDelta::minutes(2);
    run
}

fn committed(outcome: &Outcome) -> Vec<String> {
    match outcome {
        Outcome::FannedOut(report) => report
            .regions
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|c| c.region.to_string()))
            .collect(),
        other => panic!("expected a fan-out, got {other:?}"),
    }
}

async fn still_paused(context: &IsolationContext) -> bool {
    !pause::active(context.state.as_ref(), Utc::now())
        .await
        .expect("pauses")
        .is_empty()
}

#[tokio::test]
async fn an_isolation_sees_the_exposure_cross_on_time_and_come_back() {
    let (_dir, rig, context) = world("3s").await;
    rig.write_shards(100, 2, 1).await;
    assert_eq!(committed(&rig.commit(100).await).len(), 2);

    // Training goes on during the drill: step 200 is committed while
    // us-east1 is paused; once the pause ends its redelivery copies it
    // (late: a lag past the target), then step 300 brings the exposure
    // back under the target.
    let training = {
        let (rig, context) = (rig.clone(), context.clone());
        tokio::spawn(async move {
            while !still_paused(&context).await {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            rig.write_shards(200, 2, 1).await;
            let marker = rig.write(200, "commit_success.txt", b"ok").await;
            let id = format!("marker-200-{}", marker.generation);
            let during = committed(&rig.deliver(&id, &marker).await);
            while still_paused(&context).await {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let redelivered = committed(&rig.deliver(&id, &marker).await);
            tokio::time::sleep(Duration::from_millis(500)).await;
            rig.write_shards(300, 2, 1).await;
            let next = committed(&rig.commit(300).await);
            (during, redelivered, next)
        })
    };

    let drill = drill(&context);
    let mut run = run_of(&drill);
    isolation::isolate(&context, &drill, &mut run, &Shutdown::new())
        .await
        .expect("isolation");
    let (during, redelivered, next) = training.await.expect("training");
    assert_eq!(
        during,
        vec!["europe-west1".to_string()],
        "paused region copied"
    );
    assert_eq!(redelivered.len(), 2, "the redelivery completes the fan-out");
    assert_eq!(next.len(), 2);

    let crossed = run
        .measurements
        .exposure_crossed_after_seconds
        .expect("a crossing");
    assert!(crossed > 0.0 && crossed < 1.5, "crossed after {crossed} s");
    for check in &run.checks {
        assert!(check.held, "{check:?}\n{:#?}", run.findings);
    }
    let names: Vec<&str> = run.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "exposure crosses the RPO when it should",
            "exposure back under the RPO after resuming",
            "RPO alert metric passes the target",
        ]
    );
    let phases: Vec<&str> = run.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(phases, ["isolation", "catch-up"]);
    assert!(run.cleanup.paused_at.is_some() && run.cleanup.resumed_at.is_some());
    let isolation = &run.phases[0];
    let length = (isolation.to - isolation.from).as_seconds_f64();
    assert!((3.0..4.0).contains(&length), "isolation lasted {length} s");
    assert!(
        run.findings
            .iter()
            .any(|f| f.asset == conformance::ASSET && f.ok)
    );
    let over: Vec<_> = run
        .series
        .exposure
        .iter()
        .filter(|p| p.asset == conformance::ASSET && p.seconds > 1)
        .collect();
    assert!(!over.is_empty(), "the series shows the exposure past 1 s");
    assert!(!still_paused(&context).await);
}

#[tokio::test]
async fn an_abort_resumes_replication_at_once() {
    let (_dir, rig, context) = world("60s").await;
    rig.write_shards(100, 1, 1).await;
    rig.commit(100).await;
    let drill = drill(&context);
    let mut run = run_of(&drill);
    let abort = Shutdown::new();
    let trigger = abort.clone();
    let pauses = context.clone();
    tokio::spawn(async move {
        while !still_paused(&pauses).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        trigger.trigger();
    });
    let started = std::time::Instant::now();
    let result = isolation::isolate(&context, &drill, &mut run, &abort).await;
    assert!(
        matches!(result, Err(IsolationError::Aborted { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        !still_paused(&context).await,
        "an aborted drill left a pause"
    );
    assert!(run.cleanup.resumed_at.is_some());
    assert!(run.step_time("replication-resumed").is_some());
}

#[tokio::test]
async fn a_crashed_runs_pause_is_resumed_by_its_recovery_and_only_its_own() {
    let (_dir, _rig, context) = world("60s").await;
    let drill = drill(&context);
    let mut run = run_of(&drill);
    let now = Utc::now();
    // The crashed service had paused and recorded it, then died.
    pause::pause(
        context.state.as_ref(),
        &Pause {
            workload: WORKLOAD.into(),
            region: REGION.into(),
            run: run.id.clone(),
            paused_at: now,
            until: now + TimeDelta::seconds(60),
        },
    )
    .await
    .expect("pause");
    run.cleanup.paused_at = Some(now);
    // A run that never paused has nothing to resume.
    let mut other = run_of(&drill);
    other.id = "isolate-east--other".into();
    isolation::resume(&context, &mut other)
        .await
        .expect("resume");
    assert!(other.cleanup.resumed_at.is_none());
    assert!(still_paused(&context).await);

    isolation::resume(&context, &mut run).await.expect("resume");
    assert!(!still_paused(&context).await);
    let resumed = run.cleanup.resumed_at.expect("resumed");
    isolation::resume(&context, &mut run)
        .await
        .expect("resume again");
    assert_eq!(run.cleanup.resumed_at, Some(resumed), "idempotent");
    assert_eq!(
        run.steps
            .iter()
            .filter(|s| s.what == "replication-resumed")
            .count(),
        1
    );
}
