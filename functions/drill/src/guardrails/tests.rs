use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use lifeboat_failover::facts::Records;
use lifeboat_shared::records::data_rpo::{self, AssetKind, RpoRecord};
use lifeboat_shared::records::drill_run::{AbortRequest, Trigger};
use lifeboat_shared::records::incident::{IncidentRecord, Outcome, Step};
use lifeboat_shared::routing::RoutingTable;
use lifeboat_shared::state::local::LocalStateStore;
use lifeboat_shared::topology::Topology;
use lifeboat_shared::traffic::SecondCount;

use super::*;

const EXAMPLE: &str = include_str!("../../../../examples/production-three-region.yaml");

fn topology() -> Topology {
    Topology::parse(EXAMPLE, "production-three-region.yaml").expect("the example is valid")
}

/// Tuesday 2026-12-08 at `hh:mm` UTC.
fn at(hh: u32, mm: u32) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("2026-12-08T{hh:02}:{mm:02}:00Z"))
        .expect("time")
        .to_utc()
}

fn weights(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs.iter().map(|(r, w)| (r.to_string(), *w)).collect()
}

fn incident(
    id: &str,
    region: &str,
    started: DateTime<Utc>,
    outcome: Option<Outcome>,
) -> IncidentRecord {
    IncidentRecord {
        incident_id: id.to_string(),
        workload: "recommendations".to_string(),
        region: region.to_string(),
        started_at: Some(started),
        steps: vec![Step {
            at: started,
            what: "received".to_string(),
            detail: String::new(),
            repeats: 0,
            first_at: None,
        }],
        outcome,
        ..IncidentRecord::default()
    }
}

struct Case {
    incidents: Vec<IncidentRecord>,
    table: Option<RoutingTable>,
    weights: BTreeMap<String, u32>,
    records: Records,
    ignore_window: bool,
    now: DateTime<Utc>,
}

impl Case {
    fn new() -> Self {
        Self {
            incidents: Vec::new(),
            table: None,
            weights: weights(&[("us-central1", 100), ("us-east1", 0), ("europe-west1", 0)]),
            records: Records::default(),
            ignore_window: false,
            now: at(10, 0),
        }
    }

    fn check(&self, drill: &str) -> Verdict {
        let topology = topology();
        let drill = topology.drill(drill).expect("declared").clone();
        let workload = topology
            .workload("recommendations")
            .expect("declared")
            .clone();
        before(&Before {
            topology: &topology,
            drill: &drill,
            workload: &workload,
            incidents: &self.incidents,
            table: self.table.as_ref(),
            weights: &self.weights,
            records: &self.records,
            ignore_window: self.ignore_window,
            now: self.now,
        })
    }
}

fn refused_by(verdict: &Verdict, words: &str) -> bool {
    verdict.refused.iter().any(|r| r.contains(words))
}

#[test]
fn a_drill_in_its_window_with_nothing_wrong_may_run() {
    let verdict = Case::new().check("weekly-region-outage");
    assert!(verdict.refused.is_empty(), "{:?}", verdict.refused);
    assert!(
        verdict
            .passed
            .iter()
            .any(|p| p.contains("inside the window 09:00-16:00"))
    );
    assert!(
        verdict
            .passed
            .iter()
            .any(|p| p.contains("not known yet (noted)")),
        "a standby without records is noted: {:?}",
        verdict.passed
    );
}

#[test]
fn outside_its_window_a_drill_is_refused_unless_run_by_hand_past_it() {
    let mut case = Case::new();
    case.now = at(17, 30);
    let verdict = case.check("weekly-region-outage");
    assert!(
        refused_by(
            &verdict,
            "17:30 UTC is outside the drill's window 09:00-16:00"
        ),
        "{:?}",
        verdict.refused
    );
    case.ignore_window = true;
    assert!(case.check("weekly-region-outage").refused.is_empty());
}

#[test]
fn an_open_incident_refuses_a_drill_and_a_closed_or_failback_one_does_not() {
    let mut case = Case::new();
    case.incidents = vec![
        incident("closed-1", "us-east1", at(9, 0), Some(Outcome::Closed)),
        incident(
            "failback-recommendations-x",
            "us-central1",
            at(9, 10),
            Some(Outcome::Moved),
        ),
        incident("ancient", "us-east1", at(9, 0) - TimeDelta::days(3), None),
    ];
    assert!(
        case.check("nightly-restore-us-east1")
            .refused
            .iter()
            .all(|r| !r.contains("open incident"))
    );
    case.incidents.push(incident(
        "inc-7",
        "europe-west1",
        at(9, 50),
        Some(Outcome::Moved),
    ));
    let verdict = case.check("nightly-restore-us-east1");
    assert!(
        refused_by(&verdict, "open incident: inc-7 in europe-west1"),
        "{:?}",
        verdict.refused
    );
}

#[tokio::test]
async fn a_standby_past_its_rpo_refuses_the_drill_naming_the_asset_and_region() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = LocalStateStore::open(dir.path()).await.expect("state");
    let now = Utc::now();
    let behind = RpoRecord {
        kind: AssetKind::Bucket,
        asset: "recsys-features".to_string(),
        region: "us-east1".to_string(),
        target_seconds: 300,
        oldest_unreplicated: Some(now - TimeDelta::minutes(20)),
        checked_at: Some(now),
        changed_at: None,
        history: Vec::new(),
    };
    data_rpo::record_check(&state, &behind)
        .await
        .expect("recorded");
    let mut case = Case::new();
    case.records = Records::read(&topology(), &state, now)
        .await
        .expect("records");
    case.ignore_window = true;
    case.now = now;
    let verdict = case.check("weekly-region-outage");
    assert!(
        refused_by(
            &verdict,
            "data within RPO in us-east1: recsys-features is 1200s behind, past its RPO of 300s"
        ),
        "{:?}",
        verdict.refused
    );
}

#[test]
fn a_region_outage_within_the_hold_down_or_of_a_region_without_traffic_is_refused() {
    let mut case = Case::new();
    let mut table = RoutingTable::new("recommendations", case.weights.clone(), "failover inc-3")
        .expect("table");
    table.updated_at = at(9, 50);
    case.table = Some(table);
    let verdict = case.check("weekly-region-outage");
    assert!(
        refused_by(
            &verdict,
            "hold-down: traffic of recommendations moved at 09:50:00"
        ),
        "{:?}",
        verdict.refused
    );
    // A restore moves no traffic: the hold-down does not apply.
    assert!(
        case.check("nightly-restore-us-east1")
            .refused
            .iter()
            .all(|r| !r.contains("hold-down"))
    );
    let mut case = Case::new();
    case.weights = weights(&[("us-central1", 0), ("us-east1", 100), ("europe-west1", 0)]);
    let verdict = case.check("weekly-region-outage");
    assert!(
        refused_by(
            &verdict,
            "us-central1 serves none of recommendations's traffic now"
        ),
        "{:?}",
        verdict.refused
    );
}

fn running(kind: DrillKind, target: &str) -> DrillRun {
    let topology = topology();
    let drill = topology.drill("weekly-region-outage").expect("declared");
    let mut run = DrillRun::new(drill, "d--20261208T100000Z", Trigger::Manual, at(10, 0));
    run.kind = kind;
    run.target_region = target.to_string();
    run.deadline = at(10, 30);
    run
}

fn second(at: DateTime<Utc>, ok: u64, failed: u64) -> SecondCount {
    SecondCount {
        at,
        region: "us-central1".to_string(),
        ok,
        retried: 0,
        failed,
    }
}

#[test]
fn a_run_stops_on_abort_deadline_real_incident_or_error_ratio_and_not_otherwise() {
    let run = running(DrillKind::RegionOutage, "us-central1");
    let now = at(10, 5);
    // Its own incident, in its target region, is expected.
    let own = incident("inc-own", "us-central1", at(10, 1), Some(Outcome::Moved));
    let calm: Vec<SecondCount> = (0..10)
        .map(|s| second(now - TimeDelta::seconds(s), 10, 0))
        .collect();
    assert_eq!(
        during(&run, std::slice::from_ref(&own), &calm, 0.05, now),
        None
    );

    let mut asked = run.clone();
    asked.abort = Some(AbortRequest {
        at: now,
        by: "ana@example.com".to_string(),
        reason: "customer demo".to_string(),
    });
    let why = during(&asked, &[], &calm, 0.05, now).expect("stops");
    assert!(
        why.contains("aborted by ana@example.com: customer demo"),
        "{why}"
    );

    let why = during(&run, &[], &calm, 0.05, at(10, 31)).expect("stops");
    assert!(why.contains("maximum duration"), "{why}");

    let real = incident("inc-real", "us-east1", at(10, 2), None);
    let why = during(&run, &[own, real], &calm, 0.05, now).expect("stops");
    assert!(
        why.contains("a real incident opened on recommendations in us-east1 (inc-real)"),
        "{why}"
    );

    // A restore has no incident of its own: one in its target region is real.
    let restore = running(DrillKind::Restore, "us-east1");
    let in_target = incident("inc-t", "us-east1", at(10, 2), None);
    assert!(during(&restore, &[in_target], &calm, 0.05, now).is_some());

    let failing: Vec<SecondCount> = (0..10)
        .map(|s| second(now - TimeDelta::seconds(s), 9, 1))
        .collect();
    let why = during(&run, &[], &failing, 0.05, now).expect("stops");
    assert!(
        why.contains("error ratio 10.0 % (10 of 100 predictions in the last 10 s)"),
        "{why}"
    );
    // Too few predictions to judge, or failures older than the window.
    let few = vec![second(now, 1, 2)];
    assert_eq!(during(&run, &[], &few, 0.05, now), None);
    let old: Vec<SecondCount> = (20..30)
        .map(|s| second(now - TimeDelta::seconds(s), 0, 10))
        .collect();
    assert_eq!(during(&run, &[], &old, 0.05, now), None);
}
