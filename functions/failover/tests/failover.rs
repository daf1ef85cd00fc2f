//! Failover end to end on the embedded backends: the production example
//! (active-passive, 3 serving replicas, standbys at 1), the local model
//! registry, probes answered by a loopback server whose regions can be
//! failed, and incidents in Monitoring's webhook shape.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use cloudevents::AttributesReader;
use common::{body, incident, replicas, rig};
use lifeboat_failover::{handle_incident, refusal};
use lifeboat_shared::bus::binding::data_bytes;
use lifeboat_shared::bus::conformance::Receiver;
use lifeboat_shared::bus::local::{LocalBus, LocalBusOptions};
use lifeboat_shared::bus::{EventBus, FAILOVER_REFUSED_TOPIC};
use lifeboat_shared::events::Incident;
use lifeboat_shared::events::IncidentState;
use lifeboat_shared::records::incident as record;
use lifeboat_shared::routing::{self, RoutingTable};
use lifeboat_shared::state::{Precondition, StateStore, lease};

#[tokio::test]
async fn a_confirmed_outage_moves_traffic_to_a_scaled_standby_once() {
    let rig = rig().await;
    rig.fail("us-central1");

    let (status, record) = body(
        handle_incident(
            &rig.context,
            &incident("inc-1", "us-central1", IncidentState::Open),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record["outcome"], "moved", "{record:#}");
    let steps: Vec<&str> = record["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["what"].as_str().expect("what"))
        .collect();
    assert_eq!(
        steps,
        [
            "received", "probed", "decided", "readied", "routed", "verified"
        ]
    );
    let reasons = record["decision"]["reasons"].to_string();
    assert!(
        reasons.contains("model unknown"),
        "missing records are said: {reasons}"
    );
    // The dashboards' metrics: each region's new weight, and the time
    // from the incident's start to predictions verified.
    let weights = rig
        .context
        .metrics
        .latest(lifeboat_shared::metrics::ROUTING_WEIGHT)
        .await
        .expect("metrics read");
    let weight = |region: &str| {
        weights
            .iter()
            .find(|p| p.labels["region"] == region)
            .map(|p| p.value)
    };
    assert_eq!(weight("us-central1"), Some(0.0), "{weights:?}");
    assert_eq!(
        weights.iter().map(|p| p.value).sum::<f64>(),
        100.0,
        "{weights:?}"
    );
    let recovery = rig
        .context
        .metrics
        .latest(lifeboat_shared::metrics::FAILOVER_RECOVERY_TIME)
        .await
        .expect("metrics read");
    assert_eq!(recovery.len(), 1, "{recovery:?}");
    assert_eq!(recovery[0].labels["from"], "us-central1", "{recovery:?}");
    assert!(recovery[0].value >= 0.0, "{recovery:?}");

    let tables = routing::read_all(rig.state.as_ref()).await.expect("tables");
    assert_eq!(tables.len(), 1);
    assert_eq!(
        tables[0].weights,
        BTreeMap::from([
            ("europe-west1".to_string(), 0),
            ("us-central1".to_string(), 0),
            ("us-east1".to_string(), 100),
        ])
    );
    assert_eq!(
        replicas(rig.registry.as_ref(), "us-east1", "8812345002").await,
        3,
        "scaled to serving size"
    );
    assert_eq!(
        replicas(rig.registry.as_ref(), "europe-west1", "8812345003").await,
        1,
        "left warm"
    );

    // The same notification again: nothing more is done.
    let (status, again) = body(
        handle_incident(
            &rig.context,
            &incident("inc-1", "us-central1", IncidentState::Open),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["duplicate"], true, "{again}");
    // A second alert for the same outage: the region has no traffic left.
    let (_, second) = body(
        handle_incident(
            &rig.context,
            &incident("inc-2", "us-central1", IncidentState::Open),
        )
        .await,
    )
    .await;
    assert_eq!(second["outcome"], "stayed", "{second:#}");
    assert!(
        second["decision"]["reasons"]
            .to_string()
            .contains("already has no traffic")
    );
    assert_eq!(
        routing::read_all(rig.state.as_ref()).await.expect("tables")[0].revision,
        1
    );

    // The incident closes: recorded.
    let (_, closed) = body(
        handle_incident(
            &rig.context,
            &incident("inc-1", "us-central1", IncidentState::Closed),
        )
        .await,
    )
    .await;
    assert_eq!(closed["outcome"], "closed", "{closed:#}");
}

#[tokio::test]
async fn an_alert_the_probes_contradict_moves_nothing_and_says_why() {
    let rig = rig().await;
    let (status, record) = body(
        handle_incident(
            &rig.context,
            &incident("inc-3", "us-central1", IncidentState::Open),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["outcome"], "stayed", "{record:#}");
    assert!(
        record["decision"]["reasons"][0]
            .as_str()
            .expect("reason")
            .contains("not confirmed")
    );
    assert!(rig.routing_tables().await.is_empty());
    assert_eq!(
        replicas(rig.registry.as_ref(), "us-east1", "8812345002").await,
        1
    );
}

#[tokio::test]
async fn with_every_standby_down_traffic_stays_and_the_refusal_is_recorded_and_published() {
    let mut rig = rig().await;
    let receiver = Receiver::start(0).await;
    rig.bus
        .subscribe_push(
            FAILOVER_REFUSED_TOPIC,
            "refusals-to-pager",
            &receiver.endpoint(),
            5,
        )
        .await
        .expect("subscribed");
    for region in ["us-central1", "us-east1", "europe-west1"] {
        rig.fail(region);
    }
    let open = incident("inc-4", "us-central1", IncidentState::Open);

    // The bus cannot take the announcement (no such topic on this one):
    // the refusal is recorded but unfinished, and the event is retried.
    let healthy_bus = rig.context.bus.clone();
    let topicless_dir = tempfile::tempdir().expect("temp dir");
    rig.context.bus = Arc::new(
        LocalBus::open(topicless_dir.path(), LocalBusOptions::default())
            .await
            .expect("bus"),
    );
    let (status, answer) = body(handle_incident(&rig.context, &open).await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(answer.to_string().contains("not published"), "{answer}");
    let unfinished = record::read(rig.state.as_ref(), "inc-4")
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(unfinished.outcome, None, "{unfinished:?}");

    // Retried with the bus back: recorded, finished, and announced.
    rig.context.bus = healthy_bus;
    let (status, record) = body(handle_incident(&rig.context, &open).await).await;
    assert_eq!(status, StatusCode::OK, "{record:#}");
    assert_eq!(record["outcome"], "stayed", "{record:#}");
    let reasons = record["decision"]["reasons"].to_string();
    assert!(
        reasons.contains("us-east1 not eligible: unhealthy"),
        "{reasons}"
    );
    assert!(reasons.contains("no eligible region"), "{reasons}");
    let decided = record["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .rev()
        .find(|s| s["what"] == "decided")
        .expect("decided");
    assert!(
        decided["detail"]
            .as_str()
            .expect("detail")
            .contains("published to lifeboat-failover-refused"),
        "{decided}"
    );
    assert!(
        rig.routing_tables().await.is_empty(),
        "traffic left where it is"
    );

    let events = receiver.wait_for_distinct(1, Duration::from_secs(10)).await;
    let event = &events[0];
    assert_eq!(event.ty(), refusal::EVENT_TYPE);
    assert_eq!(event.id(), "inc-4/failover-refused");
    assert_eq!(event.subject(), Some("recommendations"));
    let published: refusal::FailoverRefused =
        serde_json::from_slice(&data_bytes(event)).expect("the payload");
    assert_eq!(published.workload, "recommendations");
    assert_eq!(published.failed_region, "us-central1");
    assert_eq!(published.incident_id, "inc-4");
    let candidates: Vec<(&str, &str)> = published
        .candidates
        .iter()
        .map(|c| (c.region.as_str(), c.reason.as_str()))
        .collect();
    assert_eq!(candidates.len(), 2, "{candidates:?}");
    for (region, reason) in candidates {
        assert!(["us-east1", "europe-west1"].contains(&region), "{region}");
        assert!(
            reason.starts_with("unhealthy") && reason.contains("HTTP 503"),
            "{region}: {reason}"
        );
    }
    assert!(
        published
            .reasons
            .iter()
            .any(|r| r.contains("no eligible region")),
        "{published:?}"
    );
}

#[tokio::test]
async fn unknown_resources_and_never_opened_closures_are_logged_no_ops() {
    let rig = rig().await;
    let mut stranger = incident("inc-5", "us-central1", IncidentState::Open);
    stranger.policy_user_labels.clear();
    let (status, answer) = body(handle_incident(&rig.context, &stranger).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        answer["ignored"]
            .as_str()
            .expect("ignored")
            .contains("no lifeboat-workload")
    );
    let (status, answer) = body(
        handle_incident(
            &rig.context,
            &incident("inc-6", "us-central1", IncidentState::Closed),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(answer.to_string().contains("never opened"));
    assert!(
        record::read_all(rig.state.as_ref())
            .await
            .expect("records")
            .is_empty()
    );
}

#[tokio::test]
async fn failback_returns_traffic_step_by_step_and_rolls_back_when_the_region_fails_again() {
    let mut rig = rig().await;
    rig.context.options.failback.step_wait = Duration::from_millis(300);
    rig.outage_moved("inc-7").await;
    let primary = rig.context.topology.workloads()[0].clone();

    // Still down: the failback is refused and nothing changes.
    let refused = lifeboat_failover::failback::fail_back(
        &rig.context,
        &primary,
        "us-central1",
        &rig.context.options.failback,
    )
    .await
    .expect("recorded");
    assert_eq!(refused.outcome, Some(record::Outcome::Stayed));
    assert!(
        refused.steps[0].detail.contains("not healthy"),
        "{refused:?}"
    );

    // Healed, then failing again during the first step: rolled back.
    rig.heal("us-central1");
    let dark = rig.dark.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        dark.darken("us-central1");
    });
    let rolled_back = lifeboat_failover::failback::fail_back(
        &rig.context,
        &primary,
        "us-central1",
        &rig.context.options.failback,
    )
    .await
    .expect("recorded");
    assert_eq!(
        rolled_back.outcome,
        Some(record::Outcome::Stayed),
        "{rolled_back:?}"
    );
    assert!(
        rolled_back.steps.iter().any(|s| s.what == "rolled back"),
        "{rolled_back:?}"
    );
    let table = &routing::read_all(rig.state.as_ref()).await.expect("tables")[0];
    assert_eq!(table.weights["us-central1"], 0, "{table:?}");
    assert_eq!(table.weights["us-east1"], 100, "{table:?}");

    // Healed for good: 10 %, 50 %, 100 %.
    rig.heal("us-central1");
    let back = lifeboat_failover::failback::fail_back(
        &rig.context,
        &primary,
        "us-central1",
        &rig.context.options.failback,
    )
    .await
    .expect("recorded");
    assert_eq!(back.outcome, Some(record::Outcome::Moved), "{back:?}");
    let routed: Vec<&str> = back
        .steps
        .iter()
        .filter(|s| s.what == "routed")
        .map(|s| s.detail.split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(routed, ["10%", "50%", "100%"]);
    let table = &routing::read_all(rig.state.as_ref()).await.expect("tables")[0];
    assert_eq!(table.weights["us-central1"], 100, "{table:?}");
    assert_eq!(table.weights["us-east1"], 0, "{table:?}");
}

#[tokio::test]
async fn automatic_failback_waits_for_the_closed_incident_to_be_stable() {
    let mut rig = rig().await;
    let yaml = std::fs::read_to_string(common::repository_file(
        "examples/production-three-region.yaml",
    ))
    .expect("example")
    .replace(
        "failback: manual",
        "failback: {automatic: {stable-for: 1s}}",
    );
    let topology = lifeboat_shared::topology::Topology::parse(&yaml, "automatic.yaml")
        .expect("a valid topology");
    rig.context.topology = std::sync::Arc::new(topology);
    rig.context.options.failback.step_wait = Duration::from_millis(20);
    rig.outage_moved("inc-8").await;

    // Still open: a tick does nothing.
    let (_, ticked) = body(lifeboat_failover::automatic_failbacks(&rig.context).await).await;
    assert_eq!(ticked["failbacks"], serde_json::json!([]), "{ticked}");
    rig.heal("us-central1");
    let closed = incident("inc-8", "us-central1", IncidentState::Closed);
    body(handle_incident(&rig.context, &closed).await).await;
    // Closed but not yet stable for 1 s: nothing.
    let (_, ticked) = body(lifeboat_failover::automatic_failbacks(&rig.context).await).await;
    assert_eq!(ticked["failbacks"], serde_json::json!([]), "{ticked}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, ticked) = body(lifeboat_failover::automatic_failbacks(&rig.context).await).await;
    assert_eq!(ticked["failbacks"][0]["outcome"], "moved", "{ticked}");
    let table = &routing::read_all(rig.state.as_ref()).await.expect("tables")[0];
    assert_eq!(table.weights["us-central1"], 100, "{table:?}");
}

#[tokio::test]
async fn a_person_moves_traffic_through_the_same_rules_and_records() {
    let rig = rig().await;
    let asked = |to: &str, force: bool| lifeboat_failover::ManualMove {
        to: to.to_string(),
        force,
        by: "test".to_string(),
    };
    // europe-west1 is down: refused, even forced (never to an unhealthy region).
    rig.fail("europe-west1");
    let (_, refused) = body(
        lifeboat_failover::manual_move(
            &rig.context,
            "recommendations",
            &asked("europe-west1", true),
        )
        .await,
    )
    .await;
    assert_eq!(refused["outcome"], "stayed", "{refused:#}");
    assert!(
        refused["decision"]["reasons"]
            .to_string()
            .contains("unhealthy")
    );

    // us-east1, healthy: moved from the primary, scaled up, recorded.
    let (status, moved) = body(
        lifeboat_failover::manual_move(&rig.context, "recommendations", &asked("us-east1", false))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(moved["outcome"], "moved", "{moved:#}");
    assert_eq!(
        moved["region"], "us-central1",
        "moved from the region serving"
    );
    assert!(
        moved["steps"][0]["detail"]
            .as_str()
            .expect("detail")
            .contains("test asked")
    );
    assert_eq!(
        replicas(rig.registry.as_ref(), "us-east1", "8812345002").await,
        3
    );
    // Within the hold-down a second move is refused unless forced.
    let (_, held) = body(
        lifeboat_failover::manual_move(
            &rig.context,
            "recommendations",
            &asked("us-central1", false),
        )
        .await,
    )
    .await;
    assert!(
        held["decision"]["reasons"]
            .to_string()
            .contains("hold-down"),
        "{held:#}"
    );
    let (_, forced) = body(
        lifeboat_failover::manual_move(
            &rig.context,
            "recommendations",
            &asked("us-central1", true),
        )
        .await,
    )
    .await;
    assert_eq!(forced["outcome"], "moved", "{forced:#}");
    let table = &routing::read_all(rig.state.as_ref()).await.expect("tables")[0];
    assert_eq!(table.weights["us-central1"], 100, "{table:?}");
}

#[tokio::test]
async fn two_alerts_for_one_outage_at_once_move_traffic_once() {
    let rig = rig().await;
    rig.fail("us-central1");
    let uptime = incident("inc-uptime", "us-central1", IncidentState::Open);
    let errors = incident("inc-errors", "us-central1", IncidentState::Open);
    let (first, second) = tokio::join!(
        handle_incident(&rig.context, &uptime),
        handle_incident(&rig.context, &errors),
    );
    let (first, second) = (body(first).await, body(second).await);
    let answers = [&first, &second];
    let moved: Vec<_> = answers
        .iter()
        .filter(|(_, record)| record["outcome"] == "moved")
        .collect();
    assert_eq!(moved.len(), 1, "exactly one moves: {answers:#?}");
    let (loser_status, loser) = answers
        .iter()
        .find(|(_, record)| record["outcome"] != "moved")
        .expect("the other");
    // The other either waited for the lease (and is retried) or found the
    // region already without traffic.
    assert!(
        *loser_status == StatusCode::TOO_MANY_REQUESTS || loser["outcome"] == "stayed",
        "{loser_status}: {loser:#}"
    );
    // The retry of whichever lost moves nothing more.
    let retried = if first.1["outcome"] == "moved" {
        &errors
    } else {
        &uptime
    };
    let (_, again) = body(handle_incident(&rig.context, retried).await).await;
    assert_eq!(again["outcome"], "stayed", "{again:#}");
    assert!(
        again["decision"]["reasons"]
            .to_string()
            .contains("already has no traffic"),
        "{again:#}"
    );
    let tables = routing::read_all(rig.state.as_ref()).await.expect("tables");
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0].revision, 1, "one routing change: {tables:?}");
    assert_eq!(tables[0].weights["us-east1"], 100, "{tables:?}");
}
/// The step names of a record, in order.
fn steps(record: &serde_json::Value) -> Vec<String> {
    record["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .filter_map(|s| s["what"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_same_alert_delivered_twice_at_once_fails_over_once() {
    let rig = rig().await;
    rig.fail("us-central1");
    let open = incident("inc-twice", "us-central1", IncidentState::Open);
    let (first, second) = tokio::join!(
        handle_incident(&rig.context, &open),
        handle_incident(&rig.context, &open),
    );
    let (first, second) = (body(first).await, body(second).await);
    let statuses = [first.0, second.0];
    assert!(
        statuses.contains(&StatusCode::OK),
        "one delivery does the work: {first:#?} {second:#?}"
    );
    // The redelivery of the one that did not finish finds the record done.
    let (status, again) = body(handle_incident(&rig.context, &open).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["duplicate"], true, "{again:#}");
    let record = &again["record"];
    assert_eq!(record["outcome"], "moved", "{record:#}");
    assert_eq!(
        steps(record),
        [
            "received", "probed", "decided", "readied", "routed", "verified"
        ],
        "one run, not two interleaved: {record:#}"
    );
    let tables = routing::read_all(rig.state.as_ref()).await.expect("tables");
    assert_eq!(tables[0].revision, 1, "one routing change: {tables:?}");
}

#[tokio::test]
async fn a_lease_is_renewed_while_its_holder_works_and_losing_it_stops_the_work() {
    let mut rig = rig().await;
    rig.context.options.lease_ttl = Duration::from_millis(300);
    rig.context.options.failback.step_wait = Duration::from_millis(250);
    rig.outage_moved("inc-lease").await;
    rig.heal("us-central1");
    let workload = rig.context.topology.workloads()[0].clone();
    let name = lifeboat_failover::lease_name(common::WORKLOAD);

    let fail_back_to = |region: &'static str, options| {
        lifeboat_failover::failback::fail_back(&rig.context, &workload, region, options)
    };

    // A failback of three 250 ms steps outlasts the 300 ms lease: renewed,
    // nobody else gets it meanwhile.
    let failback = fail_back_to("us-central1", &rig.context.options.failback);
    let intruder = async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        lease::acquire(
            rig.state.as_ref(),
            &name,
            "intruder",
            Duration::from_secs(1),
        )
        .await
        .expect("lease read")
    };
    let (back, intruded) = tokio::join!(failback, intruder);
    assert!(intruded.is_none(), "the lease was held: {intruded:?}");
    let back = back.expect("failed back");
    assert_eq!(back.outcome, Some(record::Outcome::Moved), "{back:?}");
    assert!(
        lease::current(rig.state.as_ref(), &name)
            .await
            .expect("lease read")
            .is_none(),
        "released at the end"
    );

    // The lease taken from its holder mid-failback (here: deleted): the
    // holder stops at its next renewal instead of acting without it.
    let slow_steps = lifeboat_failover::failback::FailbackOptions {
        step_wait: Duration::from_secs(5),
        ..rig.context.options.failback.clone()
    };
    let failback = fail_back_to("us-east1", &slow_steps);
    let thief = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        rig.state
            .delete(
                lease::COLLECTION,
                &name,
                lifeboat_shared::state::Precondition::None,
            )
            .await
            .expect("delete the lease");
    };
    let started = std::time::Instant::now();
    let (stopped, ()) = tokio::join!(failback, thief);
    let error = stopped.expect_err("the failback stops");
    assert!(error.contains("lost"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stopped at the next renewal, not after the 5 s step"
    );
}

/// A rig for killing a failover midway: a 600 ms lease, traffic on the
/// primary since yesterday (outside the hold-down), us-central1 failed, and
/// its state behind `stalling` built on the returned store.
async fn crash_rig(
    stalling: impl FnOnce(Arc<dyn StateStore>) -> common::Stalling,
) -> (common::Rig, Arc<common::Stalling>, Arc<dyn StateStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn StateStore> = Arc::new(
        lifeboat_shared::state::local::LocalStateStore::open(dir.path())
            .await
            .expect("state"),
    );
    let stalling = Arc::new(stalling(store.clone()));
    let mut rig = common::rig_on(stalling.clone(), Some(dir)).await;
    rig.context.options.lease_ttl = Duration::from_millis(600);
    let mut initial = RoutingTable::new(
        common::WORKLOAD,
        BTreeMap::from([
            ("us-central1".to_string(), 100),
            ("us-east1".to_string(), 0),
            ("europe-west1".to_string(), 0),
        ]),
        "initial",
    )
    .expect("table");
    initial.revision = 1;
    initial.updated_at -= chrono::TimeDelta::days(1);
    store
        .put(
            routing::COLLECTION,
            common::WORKLOAD,
            &serde_json::to_value(&initial).expect("json"),
            Precondition::MustNotExist,
        )
        .await
        .expect("initial table");
    rig.fail("us-central1");
    (rig, stalling, store)
}

/// Runs `open` and kills the run (aborts its task) where `stalling` parks
/// a write: nothing after it runs, nothing is released.
async fn kill_when_parked(rig: &common::Rig, stalling: &common::Stalling, open: &Incident) {
    let run = tokio::spawn({
        let (context, open) = (rig.context.clone(), open.clone());
        async move { handle_incident(&context, &open).await }
    });
    stalling.parked.notified().await;
    run.abort();
    assert!(run.await.expect_err("killed").is_cancelled());
    stalling.arm(false);
}

/// Redelivers `open` once the killed run's 600 ms lease has lapsed; the
/// record must end moved, with `expected` steps (the retry's `received`
/// counted on the first attempt's), step `detail.0` saying `detail.1`.
async fn redelivered_after_the_lease(
    rig: &common::Rig,
    open: &Incident,
    expected: &[&str],
    detail: (usize, &str),
) {
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (status, done) = body(handle_incident(&rig.context, open).await).await;
    assert_eq!(status, StatusCode::OK, "{done:#}");
    assert_eq!(done["outcome"], "moved", "{done:#}");
    assert_eq!(steps(&done), expected, "{done:#}");
    assert_eq!(done["steps"][0]["repeats"], 1, "{done:#}");
    let said = done["steps"][detail.0]["detail"].as_str().expect("detail");
    assert!(said.contains(detail.1), "{said}");
}

#[tokio::test]
async fn a_failover_killed_between_scale_up_and_routing_is_finished_by_the_retried_event() {
    let (rig, stalling, store) =
        crash_rig(|store| common::Stalling::new(store, routing::COLLECTION)).await;
    // What a gateway would read, every few milliseconds, for the whole test.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let watcher = tokio::spawn({
        let (store, seen) = (store.clone(), seen.clone());
        async move {
            loop {
                let tables = routing::read_all(store.as_ref()).await.expect("tables");
                seen.lock().expect("lock").push(tables[0].weights.clone());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let open = incident("inc-crash", "us-central1", IncidentState::Open);
    // The run reaches the routing write, and the service dies there.
    stalling.arm(true);
    kill_when_parked(&rig, &stalling, &open).await;

    // What it left: the standby scaled, the record stopped after the
    // scale-up, the lease held by the dead run, traffic where it was.
    assert_eq!(
        replicas(rig.registry.as_ref(), "us-east1", "8812345002").await,
        3
    );
    let left = record::read(store.as_ref(), "inc-crash")
        .await
        .expect("read")
        .expect("a record");
    assert_eq!(left.outcome, None);
    let left_steps: Vec<&str> = left.steps.iter().map(|s| s.what.as_str()).collect();
    assert_eq!(left_steps, ["received", "probed", "decided", "readied"]);
    let name = lifeboat_failover::lease_name(common::WORKLOAD);
    assert!(
        lease::current(store.as_ref(), &name)
            .await
            .expect("lease")
            .is_some()
    );
    let table = &routing::read_all(store.as_ref()).await.expect("tables")[0];
    assert_eq!((table.revision, table.weights["us-central1"]), (1, 100));

    // Redelivered at once: the dead run's lease has not lapsed; retry later.
    let (status, answer) = body(handle_incident(&rig.context, &open).await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    // Redelivered after the lease lapsed: the move is finished, without
    // scaling again.
    // The retry's steps that repeat the first attempt's (received, probed,
    // decided) are counted on them, not appended again.
    let after_crash = ["received", "probed", "decided", "readied"];
    let retried = ["resumed", "readied"];
    redelivered_after_the_lease(
        &rig,
        &open,
        &[&after_crash[..], &retried[..], &["routed", "verified"]].concat(),
        (5, "already at 3 replicas"),
    )
    .await;
    let table = &routing::read_all(store.as_ref()).await.expect("tables")[0];
    assert_eq!(table.revision, 2, "{table:?}");
    assert_eq!(table.weights["us-east1"], 100, "{table:?}");
    assert_eq!(table.weights["us-central1"], 0, "{table:?}");

    watcher.abort();
    let seen = seen.lock().expect("lock");
    assert!(
        seen.len() > 10,
        "the watcher read the table {} times",
        seen.len()
    );
    assert!(
        seen.iter().all(|weights| weights.values().any(|w| *w > 0)),
        "traffic was never on nothing"
    );
}

#[tokio::test]
async fn an_incident_closed_while_its_failover_moves_stays_closed() {
    let (rig, stalling, store) =
        crash_rig(|store| common::Stalling::new(store, routing::COLLECTION)).await;
    let open = incident("inc-race", "us-central1", IncidentState::Open);
    // The failover reaches the routing write and waits there...
    stalling.arm(true);
    let moving = tokio::spawn({
        let (context, open) = (rig.context.clone(), open.clone());
        async move { body(handle_incident(&context, &open).await).await }
    });
    stalling.parked.notified().await;
    // ...while the incident closes.
    let closing = incident("inc-race", "us-central1", IncidentState::Closed);
    let (status, closed) = body(handle_incident(&rig.context, &closing).await).await;
    assert_eq!(status, StatusCode::OK, "{closed:#}");
    assert_eq!(closed["outcome"], "closed", "{closed:#}");
    // The move finishes after the close: its steps are kept, the close too.
    stalling.arm(false);
    stalling.release();
    let (status, moved) = moving.await.expect("the failover ran");
    assert_eq!(status, StatusCode::OK, "{moved:#}");
    let record = record::read(store.as_ref(), "inc-race")
        .await
        .expect("read")
        .expect("a record");
    assert_eq!(record.outcome, Some(record::Outcome::Closed), "{record:#?}");
    let closed_at = record.closed_at.expect("when it closed");
    let names: Vec<&str> = record.steps.iter().map(|s| s.what.as_str()).collect();
    assert_eq!(
        names,
        [
            "received", "probed", "decided", "readied", "closed", "routed", "verified"
        ]
    );
    assert!(record.steps[4].at == closed_at, "{record:#?}");
    let table = &routing::read_all(store.as_ref()).await.expect("tables")[0];
    assert_eq!(table.weights["us-east1"], 100, "{table:?}");
}

#[tokio::test]
async fn malformed_events_are_kept_as_poison_bad_moves_get_a_4xx_and_strangers_a_logged_no_op() {
    let rig = rig().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let app = lifeboat_failover::router(rig.context.clone())
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let client = reqwest::Client::new();
    let post = |path: &str, body: String| {
        let request = client
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body);
        async move {
            let response = request.send().await.expect("an answer");
            let status = response.status().as_u16();
            (status, response.text().await.expect("text"))
        }
    };
    let notification = |incident: serde_json::Value| {
        serde_json::json!({"version": "1.2", "incident": incident}).to_string()
    };
    let labels = serde_json::json!({
        "lifeboat-workload": "recommendations",
        "lifeboat-region": "us-central1"
    });

    let refused = [
        ("/", "{\"incident\": ".to_string(), "body: invalid JSON"),
        (
            "/",
            serde_json::json!({"version": "1.1", "incident": {}}).to_string(),
            "version: expected notification schema \"1.2\"",
        ),
        (
            "/",
            notification(serde_json::json!({"incident_id": "x", "state": "open"})),
            "incident.started_at: missing",
        ),
        (
            "/",
            notification(serde_json::json!({
                "incident_id": "x", "state": "flapping", "started_at": 1732552200
            })),
            "incident.state: expected \"open\" or \"closed\"",
        ),
        (
            "/",
            notification(serde_json::json!({
                "incident_id": "", "state": "open", "started_at": 1732552200,
                "policy_user_labels": labels
            })),
            "incident.incident_id: must not be empty",
        ),
        (
            "/",
            notification(serde_json::json!({
                "incident_id": "x", "state": "open", "started_at": "yesterday"
            })),
            "incident.started_at",
        ),
        (
            "/move/recommendations",
            serde_json::json!({"force": true}).to_string(),
            "missing field `to`",
        ),
        (
            "/move/recommendations",
            serde_json::json!({"to": 5}).to_string(),
            "to: invalid type",
        ),
        (
            "/move/recommendations",
            serde_json::json!({"to": "mars-west9"}).to_string(),
            "to: no region mars-west9",
        ),
        (
            "/move/fraud-scorer",
            serde_json::json!({"to": "us-east1"}).to_string(),
            "no workload fraud-scorer",
        ),
        (
            "/failback/fraud-scorer",
            String::new(),
            "no workload fraud-scorer",
        ),
    ];
    for (path, body, names) in refused {
        let (status, text) = post(path, body.clone()).await;
        if path == "/" {
            // An event that can never be handled is acknowledged (a 4xx
            // would be redelivered forever) and kept as a poison record.
            assert_eq!(status, 200, "{body}: {text}");
            let answer: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            let reason = &answer["poison"]["reason"];
            let said = format!(
                "{}: {}",
                reason["field"].as_str().unwrap_or_default(),
                reason["problem"].as_str().unwrap_or_default()
            );
            assert!(said.contains(names), "{body}: {text}");
        } else {
            assert!(
                (400..500).contains(&status),
                "{path} {body}: {status} {text}"
            );
            assert!(text.contains(names), "{path} {body}: {status} {text}");
        }
    }
    // One record per event: the two notifications of incident x opening
    // are one event delivered twice.
    let listed = client
        .get(format!("{base}/poison"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(listed.status().as_u16(), 200);
    let records: Vec<serde_json::Value> = listed.json().await.expect("records");
    let x_open: Vec<_> = records
        .iter()
        .filter(|r| r["event_id"] == "x/open")
        .map(|r| r["deliveries"].as_u64())
        .collect();
    assert_eq!((records.len(), x_open), (5, vec![Some(2)]), "{records:?}");

    // Well-formed but about nothing Lifeboat protects, or closing what never
    // opened: acknowledged (2xx, never retried) and logged, nothing done.
    let stranger = notification(serde_json::json!({
        "incident_id": "inc-stranger", "state": "open", "started_at": 1732552200,
        "policy_user_labels": {"lifeboat-workload": "fraud-scorer", "lifeboat-region": "us-central1"}
    }));
    let (status, text) = post("/", stranger).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("workload fraud-scorer is not in the topology"),
        "{text}"
    );
    let never_opened = notification(serde_json::json!({
        "incident_id": "inc-never", "state": "closed", "started_at": 1732552200,
        "ended_at": 1732552800, "policy_user_labels": labels
    }));
    let (status, text) = post("/", never_opened).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("never opened"), "{text}");
    assert!(
        record::read_all(rig.state.as_ref())
            .await
            .expect("records")
            .is_empty()
    );
    assert!(rig.routing_tables().await.is_empty());
}

#[tokio::test]
async fn a_failover_killed_after_the_routing_change_is_verified_and_recorded_by_the_retried_event()
{
    // The run writes the routing table and dies before recording it.
    let (rig, stalling, store) = crash_rig(|store| {
        common::Stalling::new(store, record::COLLECTION).armed_by(routing::COLLECTION)
    })
    .await;
    let open = incident("inc-crash-routed", "us-central1", IncidentState::Open);
    kill_when_parked(&rig, &stalling, &open).await;
    let table = &routing::read_all(store.as_ref()).await.expect("tables")[0];
    assert_eq!((table.revision, table.weights["us-east1"]), (2, 100));
    let left = record::read(store.as_ref(), "inc-crash-routed")
        .await
        .expect("read")
        .expect("a record");
    assert_eq!(left.outcome, None);

    // The retried event, once the lease lapsed: the move is found made,
    // verified and recorded as such, not taken for "no traffic left".
    let after_crash = ["received", "probed", "decided", "readied"];
    redelivered_after_the_lease(
        &rig,
        &open,
        &[&after_crash[..], &["resumed", "routed", "verified"]].concat(),
        (5, "written by an earlier attempt"),
    )
    .await;
    let table = &routing::read_all(store.as_ref()).await.expect("tables")[0];
    assert_eq!(table.revision, 2, "written once: {table:?}");
}

#[tokio::test]
async fn no_move_leaves_the_allowed_regions_not_even_forced() {
    let rig = rig().await;
    // The production example kept to us-central1 and us-east1: europe-west1
    // stays a region of the topology, healthy, but outside the workload's
    // allowed regions. Its drills (the last section) are left out: one
    // isolates europe-west1's replicas, which this version does not keep.
    let example = std::fs::read_to_string(common::repository_file(
        "examples/production-three-region.yaml",
    ))
    .expect("example");
    let (example, _drills) = example.split_once("\ndrills:").expect("the drills section");
    let resident: String = example
        .lines()
        .filter(|line| !line.trim_start().starts_with("europe-west1:"))
        .map(|line| match line.trim() {
            "pattern: active-passive" => {
                format!("{line}\n    allowed-regions: [us-central1, us-east1]\n")
            }
            _ => format!("{line}\n"),
        })
        .collect();
    let topology = lifeboat_shared::topology::Topology::parse(&resident, "resident.yaml")
        .unwrap_or_else(|errors| panic!("{errors}"));
    let context = lifeboat_failover::FailoverContext {
        topology: Arc::new(topology),
        ..rig.context.clone()
    };
    for force in [false, true] {
        let asked = lifeboat_failover::ManualMove {
            to: "europe-west1".to_string(),
            force,
            by: "test".to_string(),
        };
        let (status, record) =
            body(lifeboat_failover::manual_move(&context, "recommendations", &asked).await).await;
        assert_eq!(status, StatusCode::OK, "{record:#}");
        assert_eq!(record["outcome"], "stayed", "forced: {force}: {record:#}");
        let reasons = record["decision"]["reasons"].to_string();
        assert!(
            reasons.contains("europe-west1 not eligible: residency: outside the workload's allowed regions (us-central1, us-east1)"),
            "forced: {force}: {reasons}"
        );
    }
    assert!(
        rig.routing_tables().await.is_empty(),
        "no routing table was written"
    );
    assert_eq!(
        replicas(rig.registry.as_ref(), "europe-west1", "8812345003").await,
        1
    );
}

#[tokio::test]
async fn only_allowed_invokers_move_or_fail_back_by_hand() {
    use lifeboat_shared::server::callers::CallerPolicy;
    use tower::ServiceExt as _;
    let rig = rig().await;
    let mut context = rig.context.clone();
    context.options.callers = CallerPolicy::invokers("ops@acme.iam.gserviceaccount.com");
    let app = lifeboat_failover::router(context);
    let send = |method: &str, path: &str, body: &str| {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .expect("request");
        let app = app.clone();
        async move { body_of(app.oneshot(request).await.expect("infallible")).await }
    };
    async fn body_of(response: axum::response::Response) -> (u16, String) {
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }
    let (status, text) = send("POST", "/move/recommendations", r#"{"to": "us-east1"}"#).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("no ID token"), "{text}");
    let (status, text) = send("POST", "/failback/recommendations", "").await;
    assert_eq!(status, 401, "{text}");
    // Reading and incidents are not guarded: Monitoring's webhook and the
    // console keep working.
    assert_eq!(send("GET", "/incidents", "").await.0, 200);
    assert!(rig.routing_tables().await.is_empty(), "nothing moved");
}

#[tokio::test]
async fn a_standby_that_answers_wrong_is_never_chosen_and_with_every_standby_wrong_traffic_stays() {
    // us-east1 passes its probes but answers 2xx with wrong predictions:
    // the move goes to europe-west1, and the decision says why not us-east1.
    let rig = rig().await;
    rig.wrong.lock().expect("lock").push("us-east1".to_string());
    rig.fail("us-central1");
    let open = incident("inc-g1", "us-central1", IncidentState::Open);
    let (status, record) = body(handle_incident(&rig.context, &open).await).await;
    assert_eq!(status, StatusCode::OK, "{record:#}");
    assert_eq!(record["outcome"], "moved", "{record:#}");
    assert_eq!(
        record["decision"]["to"],
        serde_json::json!(["europe-west1"]),
        "{record:#}"
    );
    let reasons = record["decision"]["reasons"].to_string();
    assert!(
        reasons.contains(
            "answered golden request 0 of model recsys-ranker wrong: instance 0 \
             [1.0,2.0,3.0,4.0]: expected 4.625, got 5.625 (tolerance 0.000001)"
        ),
        "{reasons}"
    );
    let verified = record["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["what"] == "verified")
        .expect("verified")["detail"]
        .to_string();
    assert!(
        verified.contains("answered 2 golden requests right (3 predictions)"),
        "{verified}"
    );

    // Every standby answers wrong: traffic stays, and the refusal says why.
    let rig = common::rig().await;
    rig.wrong
        .lock()
        .expect("lock")
        .extend(["us-east1", "europe-west1"].map(String::from));
    rig.fail("us-central1");
    let open = incident("inc-g1b", "us-central1", IncidentState::Open);
    let (status, record) = body(handle_incident(&rig.context, &open).await).await;
    assert_eq!(status, StatusCode::OK, "{record:#}");
    assert_eq!(record["outcome"], "stayed", "{record:#}");
    let reasons = record["decision"].to_string();
    assert!(
        reasons.contains("us-east1")
            && reasons.contains("europe-west1")
            && reasons.contains("expected 4.625, got 5.625"),
        "{reasons}"
    );
    assert!(
        rig.routing_tables().await.is_empty(),
        "no routing table was written"
    );
}

#[tokio::test]
async fn without_a_gateway_for_the_declared_golden_requests_no_region_counts_as_healthy() {
    let mut rig = rig().await;
    rig.context.golden = None;
    rig.fail("us-central1");
    let open = incident("inc-g2", "us-central1", IncidentState::Open);
    let (status, record) = body(handle_incident(&rig.context, &open).await).await;
    assert_eq!(status, StatusCode::OK, "{record:#}");
    assert_eq!(record["outcome"], "stayed", "{record:#}");
    assert!(
        record["decision"]
            .to_string()
            .contains("set LIFEBOAT_GATEWAY_URL"),
        "{record:#}"
    );
}

#[tokio::test]
async fn failback_to_a_primary_that_answers_wrong_is_refused_or_rolled_back_with_the_reason() {
    let mut rig = rig().await;
    rig.context.options.failback.step_wait = Duration::from_millis(300);
    rig.outage_moved("inc-g3").await;
    let workload = rig.context.topology.workloads()[0].clone();
    let fail_back = || {
        lifeboat_failover::failback::fail_back(
            &rig.context,
            &workload,
            "us-central1",
            &rig.context.options.failback,
        )
    };

    // Up again (its probes answer 2xx), but its predictions are wrong.
    rig.heal("us-central1");
    rig.wrong
        .lock()
        .expect("lock")
        .push("us-central1".to_string());
    let refused = fail_back().await.expect("recorded");
    assert_eq!(refused.outcome, Some(record::Outcome::Stayed));
    assert_eq!(refused.steps[0].what, "refused");
    assert!(
        refused.steps[0].detail.contains(
            "us-central1 is not healthy: us-central1 answered golden request 0 of model \
             recsys-ranker wrong"
        ),
        "{refused:?}"
    );

    // Right, then wrong during the first step: rolled back, saying why.
    rig.wrong.lock().expect("lock").clear();
    let wrong = rig.wrong.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        wrong.lock().expect("lock").push("us-central1".to_string());
    });
    let rolled_back = fail_back().await.expect("recorded");
    assert_eq!(rolled_back.outcome, Some(record::Outcome::Stayed));
    let step = rolled_back.steps.last().expect("steps");
    assert_eq!(step.what, "rolled back", "{rolled_back:?}");
    assert!(
        step.detail
            .starts_with("at 10%: us-central1 answered golden request 0"),
        "{step:?}"
    );
    let table = &routing::read_all(rig.state.as_ref()).await.expect("tables")[0];
    assert_eq!(table.weights["us-central1"], 0, "{table:?}");

    // Right answers: every step verified with them.
    rig.wrong.lock().expect("lock").clear();
    let back = fail_back().await.expect("recorded");
    assert_eq!(back.outcome, Some(record::Outcome::Moved), "{back:?}");
    let verified: Vec<&str> = back
        .steps
        .iter()
        .filter(|s| s.what == "verified")
        .map(|s| s.detail.as_str())
        .collect();
    assert_eq!(verified.len(), 3, "{back:?}");
    assert!(
        verified
            .iter()
            .all(|d| d.contains("us-central1 answered 2 golden requests right")),
        "{verified:?}"
    );
}
