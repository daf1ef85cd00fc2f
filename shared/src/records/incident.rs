//! The record of each incident: every step with its time, the decision with
//! its reasons, and how it ended. One document per incident id in the state
//! store, appended to with compare-and-set, so a redelivered or retried
//! event continues the record instead of starting another.
//!
//! A record stays whole and bounded: a close is never undone by a move that
//! finishes after it ([`IncidentRecord::finish`]), and retries do not grow it
//! without bound ([`IncidentRecord::add`]: a repeated step is counted, not
//! appended again; past [`MAX_STEPS`] the oldest steps after the opening
//! ones are dropped and counted; a detail is cut at [`MAX_DETAIL_BYTES`]).
//!
//! Written by failover (incidents, failbacks, manual moves); read by
//! drills, `lifeboat status` and the console.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::state::{StateError, StateStore, Tracked, text_prefix};

/// The collection of incident records.
pub const COLLECTION: &str = "failover-incidents";

/// How many times an append re-reads after losing a race.
const APPEND_ATTEMPTS: usize = 8;

/// The most steps a record holds.
pub const MAX_STEPS: usize = 64;

/// How many opening steps are never dropped when a record reaches
/// [`MAX_STEPS`]: what was received, probed and decided first.
const KEPT_OPENING_STEPS: usize = 8;

/// How many of the latest steps a new step is compared with: one found
/// among them with the same `what` and `detail` is counted again instead of
/// appended (a retried failover repeats the same few steps each attempt).
const REPEAT_WINDOW: usize = 8;

/// The longest detail a step holds, in bytes; a longer one is cut (at a
/// character boundary) and ends with `…`.
pub const MAX_DETAIL_BYTES: usize = 1024;

/// One step of handling an incident.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// When it ended (the last time, when it happened more than once).
    pub at: DateTime<Utc>,
    /// What it was (`received`, `probed`, `decided`, `scaled`, `routed`,
    /// `verified`...).
    pub what: String,
    /// What it found or did.
    pub detail: String,
    /// How many more times the same step happened after the first.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repeats: u32,
    /// When it first happened, when it happened more than once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_at: Option<DateTime<Utc>>,
}

impl Step {
    /// The step `what`, ending now, that found or did `detail`.
    pub fn new(what: &str, detail: impl Into<String>) -> Self {
        Self {
            at: Utc::now(),
            what: what.to_string(),
            detail: detail.into(),
            repeats: 0,
            first_at: None,
        }
    }
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_zero(count: &u32) -> bool {
    *count == 0
}

/// How handling the incident ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Traffic moved and predictions from the new region were verified.
    Moved,
    /// Traffic stayed where it was (the decision says why).
    Stayed,
    /// The incident closed.
    Closed,
}

/// Everything done about one incident.
///
/// Size bound: at most [`MAX_STEPS`] steps of at most [`MAX_DETAIL_BYTES`]
/// of detail each (about 80 KiB of steps as JSON), plus the decision, which
/// holds one candidate per region of the topology: far under Firestore's
/// 1 MiB document limit however long the incident is retried.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentRecord {
    /// Monitoring's incident id.
    pub incident_id: String,
    /// The workload it is about.
    pub workload: String,
    /// The region it is about.
    pub region: String,
    /// When the condition started: the start of the outage.
    pub started_at: Option<DateTime<Utc>>,
    /// Every step, in order.
    pub steps: Vec<Step>,
    /// The failover decision, once made.
    pub decision: Option<Decision>,
    /// How it ended, once it has.
    pub outcome: Option<Outcome>,
    /// When the incident closed, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
    /// How many steps were dropped to keep the record within [`MAX_STEPS`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub steps_dropped: u32,
}

/// What the failover decision chose, with every reason (made by
/// failover's `decide`, kept in the record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Move traffic: the new weights, the region(s) taking it.
    Move {
        /// The new routing weights.
        weights: BTreeMap<String, u32>,
        /// The regions that receive the failed region's traffic.
        to: Vec<String>,
        /// Why, check by check.
        reasons: Vec<String>,
    },
    /// Leave traffic where it is.
    Stay {
        /// Why, check by check.
        reasons: Vec<String>,
        /// When traffic stays because every candidate region failed a
        /// safety rule: each of them and the rule. Empty when the decision
        /// stopped before judging them (unconfirmed alert, no traffic left,
        /// hold-down).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        refused: Vec<Refused>,
    },
}

/// A candidate region the decision would not move to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// The region.
    pub region: String,
    /// The safety rule it failed, with what was seen.
    pub reason: String,
}

/// What the id of a failback's own record starts with: a failback is
/// recorded like an incident, but is not one.
pub const FAILBACK_PREFIX: &str = "failback-";

/// What the id of a move asked for by hand starts with: recorded like an
/// incident, but not one.
pub const MANUAL_PREFIX: &str = "manual-";

impl IncidentRecord {
    /// Whether this is a failback's own record, not an incident's.
    pub fn is_failback(&self) -> bool {
        self.incident_id.starts_with(FAILBACK_PREFIX)
    }

    /// Whether this is a failback's or a manual move's record rather than
    /// a Monitoring incident's.
    pub fn is_operation(&self) -> bool {
        self.is_failback() || self.incident_id.starts_with(MANUAL_PREFIX)
    }

    /// Whether it still needs attention: an incident until it closes, a
    /// failback or a manual move until it has an outcome.
    pub fn is_open(&self) -> bool {
        match self.outcome {
            Some(Outcome::Closed) => false,
            Some(_) => !self.is_operation(),
            None => true,
        }
    }

    /// When it ended: its close, or an operation's last step once it has
    /// an outcome.
    pub fn ended_at(&self) -> Option<DateTime<Utc>> {
        if self.is_open() {
            return None;
        }
        self.closed_at
            .or_else(|| self.steps.last().map(|step| step.at))
    }

    /// Adds `step`: counted on an equal step (same `what` and `detail`)
    /// among the latest few, else appended, dropping the oldest step after
    /// the opening ones when the record already holds [`MAX_STEPS`].
    pub fn add(&mut self, mut step: Step) {
        if step.detail.len() > MAX_DETAIL_BYTES {
            let end = text_prefix(&step.detail, MAX_DETAIL_BYTES - '…'.len_utf8()).len();
            step.detail.truncate(end);
            step.detail.push('…');
        }
        let recent = self.steps.len().saturating_sub(REPEAT_WINDOW);
        if let Some(same) = self.steps[recent..]
            .iter_mut()
            .rev()
            .find(|s| s.what == step.what && s.detail == step.detail)
        {
            same.first_at.get_or_insert(same.at);
            same.at = step.at;
            same.repeats = same.repeats.saturating_add(1 + step.repeats);
            return;
        }
        if self.steps.len() >= MAX_STEPS {
            self.steps.remove(KEPT_OPENING_STEPS);
            self.steps_dropped = self.steps_dropped.saturating_add(1);
        }
        self.steps.push(step);
    }

    /// The step that ended last: not always the last in [`Self::steps`],
    /// since a repeated step is counted where it first appeared.
    pub fn latest_step(&self) -> Option<&Step> {
        self.steps.iter().rev().max_by_key(|step| step.at)
    }

    /// Sets how the incident ended, unless it closed already: a close is
    /// final, so a move or a stay that finishes after it keeps its steps
    /// but not its outcome.
    pub fn finish(&mut self, outcome: Outcome, at: DateTime<Utc>) {
        if self.outcome == Some(Outcome::Closed) {
            return;
        }
        if outcome == Outcome::Closed {
            self.closed_at = Some(at);
        }
        self.outcome = Some(outcome);
    }
}

/// Which incident a record is of: its id, workload, region and start.
pub type IncidentKey<'a> = (&'a str, &'a str, &'a str, DateTime<Utc>);

/// Adds `step` to the record of `incident_id` ([`IncidentRecord::add`];
/// creating it with `workload`, `region` and `started_at`), and sets the
/// decision and the outcome ([`IncidentRecord::finish`]) when given.
/// Returns the record as written. One read and one write; a writer adding
/// several steps keeps a [`Journal`] instead.
pub async fn append(
    store: &dyn StateStore,
    incident: IncidentKey<'_>,
    step: Step,
    decision: Option<&Decision>,
    outcome: Option<Outcome>,
) -> Result<IncidentRecord, StateError> {
    Journal::new(store, incident)
        .append(step, decision, outcome)
        .await
}

/// The record of one incident as its handler (the lease holder) last read
/// or wrote it, so that each step it adds costs one write: the read happens
/// once, and again only when another writer (a close, a redelivery) came
/// between.
#[derive(Debug)]
pub struct Journal<'s> {
    store: &'s dyn StateStore,
    incident_id: String,
    workload: String,
    region: String,
    started_at: DateTime<Utc>,
    document: Tracked<IncidentRecord>,
    /// Steps kept for the next write ([`Journal::stage`]).
    staged: Vec<Step>,
}

impl<'s> Journal<'s> {
    /// The record of `incident` in `store`, not read yet.
    pub fn new(store: &'s dyn StateStore, incident: IncidentKey<'_>) -> Self {
        let (incident_id, workload, region, started_at) = incident;
        Self {
            store,
            incident_id: incident_id.to_string(),
            workload: workload.to_string(),
            region: region.to_string(),
            started_at,
            document: Tracked::new(COLLECTION, incident_id),
            staged: Vec::new(),
        }
    }

    /// The record of `incident` in `store`, read now.
    pub async fn open(
        store: &'s dyn StateStore,
        incident: IncidentKey<'_>,
    ) -> Result<Self, StateError> {
        let mut journal = Self::new(store, incident);
        journal.document = Tracked::read(store, COLLECTION, incident.0).await?;
        Ok(journal)
    }

    /// Which incident this is the record of.
    pub fn key(&self) -> IncidentKey<'_> {
        (
            &self.incident_id,
            &self.workload,
            &self.region,
            self.started_at,
        )
    }

    /// The record as last read or written; `None` before it exists.
    pub fn record(&self) -> Option<&IncidentRecord> {
        self.document.value()
    }

    /// Keeps `step`, with its time, to be written with the next
    /// [`Journal::append`]: for steps that change nothing outside the record
    /// (a receipt, what was read), so that the steps up to the next one that
    /// acts cost one write together.
    pub fn stage(&mut self, step: Step) {
        self.staged.push(step);
    }

    /// Adds the staged steps and `step` as [`append`] does, reading the
    /// record again only when another writer changed it since this journal
    /// last did.
    pub async fn append(
        &mut self,
        step: Step,
        decision: Option<&Decision>,
        outcome: Option<Outcome>,
    ) -> Result<IncidentRecord, StateError> {
        let (incident_id, workload, region, started_at, staged) = (
            &self.incident_id,
            &self.workload,
            &self.region,
            self.started_at,
            &self.staged,
        );
        let written = self
            .document
            .update(
                self.store,
                APPEND_ATTEMPTS,
                |stored: Option<IncidentRecord>| {
                    let mut record = stored.unwrap_or_else(|| IncidentRecord {
                        incident_id: incident_id.clone(),
                        workload: workload.clone(),
                        region: region.clone(),
                        started_at: Some(started_at),
                        ..IncidentRecord::default()
                    });
                    for earlier in staged {
                        record.add(earlier.clone());
                    }
                    record.add(step.clone());
                    if let Some(decision) = decision {
                        record.decision = Some(decision.clone());
                    }
                    if let Some(outcome) = outcome.clone() {
                        record.finish(outcome, step.at);
                    }
                    Ok::<_, StateError>(record)
                },
            )
            .await?;
        self.staged.clear();
        Ok(written)
    }
}

/// The record of `incident_id`, if any.
pub async fn read(
    store: &dyn StateStore,
    incident_id: &str,
) -> Result<Option<IncidentRecord>, StateError> {
    match store.get(COLLECTION, incident_id).await? {
        None => Ok(None),
        Some(document) => serde_json::from_value(document.value)
            .map(Some)
            .map_err(|error| StateError::InvalidValue {
                collection: COLLECTION.to_string(),
                id: incident_id.to_string(),
                reason: error.to_string(),
            }),
    }
}

/// Every incident record, in id order.
pub async fn read_all(store: &dyn StateStore) -> Result<Vec<IncidentRecord>, StateError> {
    store
        .list(COLLECTION)
        .await?
        .into_iter()
        .map(|document| {
            serde_json::from_value(document.value).map_err(|error| StateError::InvalidValue {
                collection: COLLECTION.to_string(),
                id: document.id,
                reason: error.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::state::local::LocalStateStore;

    use super::*;

    const INCIDENT: (&str, &str, &str) = ("inc-storm", "recsys-ranker", "us-central1");

    #[test]
    fn an_incident_is_open_until_it_closes_and_an_operation_until_it_has_an_outcome() {
        let record = |id: &str, outcome: Option<Outcome>| {
            let mut record = IncidentRecord {
                incident_id: id.to_string(),
                ..IncidentRecord::default()
            };
            record.add(Step::new("routed", "us-east1 takes the traffic"));
            if let Some(outcome) = outcome {
                record.finish(outcome, Utc::now());
            }
            record
        };
        let moved = record("inc-1", Some(Outcome::Moved));
        assert!(moved.is_open() && moved.ended_at().is_none(), "{moved:?}");
        assert!(!record("inc-1", Some(Outcome::Closed)).is_open());
        for id in ["failback-ranker-1", "manual-ranker-20261203T101010.000Z"] {
            assert!(record(id, None).is_open(), "{id} under way");
            let done = record(id, Some(Outcome::Moved));
            assert!(
                !done.is_open() && done.ended_at().is_some(),
                "{id} done: {done:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_journal_writes_staged_steps_with_the_next_and_keeps_what_another_writer_added() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalStateStore::open(dir.path()).await.expect("store");
        let (id, workload, region) = INCIDENT;
        let key = (id, workload, region, Utc::now());
        let mut journal = Journal::open(&store, key).await.expect("open");
        assert!(journal.record().is_none(), "no record yet");

        journal.stage(Step::new("received", "incident"));
        journal.stage(Step::new("probed", "us-central1 fails"));
        assert!(
            read(&store, id).await.expect("read").is_none(),
            "staged steps are not written on their own"
        );
        let decided = journal
            .append(Step::new("decided", "move to us-east1"), None, None)
            .await
            .expect("append");
        let whats = |record: &IncidentRecord| -> Vec<String> {
            record.steps.iter().map(|s| s.what.clone()).collect()
        };
        assert_eq!(whats(&decided), ["received", "probed", "decided"]);
        assert_eq!(read(&store, id).await.expect("read"), Some(decided));

        // The incident closes while the journal's holder works: its next
        // step lands after the close, which it keeps.
        append(
            &store,
            key,
            Step::new("closed", "closed"),
            None,
            Some(Outcome::Closed),
        )
        .await
        .expect("close");
        let routed = journal
            .append(
                Step::new("routed", "revision 1"),
                None,
                Some(Outcome::Moved),
            )
            .await
            .expect("append after another writer");
        assert_eq!(
            whats(&routed),
            ["received", "probed", "decided", "closed", "routed"]
        );
        assert_eq!(routed.outcome, Some(Outcome::Closed), "a close is final");
        assert_eq!(journal.record(), Some(&routed));
        assert_eq!(read(&store, id).await.expect("read"), Some(routed));
    }

    async fn add(store: &dyn StateStore, step: Step, outcome: Option<Outcome>) -> IncidentRecord {
        let (id, workload, region) = INCIDENT;
        append(
            store,
            (id, workload, region, Utc::now()),
            step,
            None,
            outcome,
        )
        .await
        .expect("appended")
    }

    #[test]
    fn a_stored_record_of_todays_shape_reads_back_unchanged() {
        let stored = serde_json::json!({
            "incident_id": "inc-storm",
            "workload": "recsys-ranker",
            "region": "us-central1",
            "started_at": "2026-11-25T10:00:00Z",
            "steps": [
                {
                    "at": "2026-11-25T10:00:05Z",
                    "what": "received",
                    "detail": "incident about recsys-ranker",
                },
                {
                    "at": "2026-11-25T10:01:00Z",
                    "what": "probed",
                    "detail": "us-central1: 0 of 3 probes answered",
                    "repeats": 2,
                    "first_at": "2026-11-25T10:00:10Z",
                },
            ],
            "decision": {
                "decision": "move",
                "weights": {"us-central1": 0, "us-east1": 100},
                "to": ["us-east1"],
                "reasons": ["us-central1 failure confirmed: 0 of 3 probes answered"],
            },
            "outcome": "closed",
            "closed_at": "2026-11-25T11:00:00Z",
            "steps_dropped": 3,
        });
        let record: IncidentRecord = serde_json::from_value(stored.clone()).expect("reads back");
        assert_eq!(record.outcome, Some(Outcome::Closed));
        assert_eq!(record.steps[1].repeats, 2);
        assert!(matches!(record.decision, Some(Decision::Move { .. })));
        assert_eq!(serde_json::to_value(&record).expect("encode"), stored);

        let refused = serde_json::json!({
            "incident_id": "failback-recsys-ranker-1",
            "workload": "recsys-ranker",
            "region": "us-central1",
            "started_at": null,
            "steps": [],
            "decision": {
                "decision": "stay",
                "reasons": ["no eligible region"],
                "refused": [{"region": "us-east1", "reason": "unhealthy (0/3 probes)"}],
            },
            "outcome": "stayed",
        });
        let record: IncidentRecord = serde_json::from_value(refused.clone()).expect("reads back");
        assert!(record.is_failback());
        assert_eq!((record.closed_at, record.steps_dropped), (None, 0));
        assert_eq!(serde_json::to_value(&record).expect("encode"), refused);
    }

    #[tokio::test]
    async fn a_move_finishing_after_the_close_keeps_its_steps_not_its_outcome() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalStateStore::open(dir.path()).await.expect("state");
        add(&store, Step::new("received", "incident"), None).await;
        let closed = add(&store, Step::new("closed", "closed"), Some(Outcome::Closed)).await;
        let closed_at = closed.closed_at.expect("closed_at");
        let after = add(
            &store,
            Step::new("verified", "us-east1"),
            Some(Outcome::Moved),
        )
        .await;
        assert_eq!(after.outcome, Some(Outcome::Closed), "{after:#?}");
        assert_eq!(after.closed_at, Some(closed_at));
        let names: Vec<&str> = after.steps.iter().map(|s| s.what.as_str()).collect();
        assert_eq!(names, ["received", "closed", "verified"]);
    }

    #[tokio::test]
    async fn a_long_retry_storm_leaves_a_bounded_record() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalStateStore::open(dir.path()).await.expect("state");
        // What each failed retry adds, 300 times (1,200 steps; the issue saw
        // 881); the probes' detail changes every time, the rest repeats.
        for attempt in 0..300 {
            for (what, detail) in [
                (
                    "resumed",
                    "an earlier attempt stopped after `decided`".to_string(),
                ),
                ("received", "incident about recsys-ranker".to_string()),
                (
                    "probed",
                    format!("us-central1: attempt {attempt} {}", "x".repeat(2_000)),
                ),
                ("decided", "move to us-east1".to_string()),
            ] {
                add(&store, Step::new(what, detail), None).await;
            }
        }
        let record = read(&store, INCIDENT.0)
            .await
            .expect("read")
            .expect("record");
        assert_eq!(record.steps.len(), MAX_STEPS, "{:?}", record.steps.len());
        assert!(
            record
                .steps
                .iter()
                .all(|s| s.detail.len() <= MAX_DETAIL_BYTES)
        );
        let size = serde_json::to_vec(&record).expect("json").len();
        assert!(size < 80 * 1024, "{size} bytes");
        // A repeated step is counted, with its first and last time, while
        // it is among the latest steps.
        let resumed = &record.steps[0];
        assert_eq!(resumed.what, "resumed");
        assert!(resumed.repeats > 0, "{resumed:#?}");
        assert!(resumed.first_at.expect("first_at") < resumed.at);
        let latest = record.latest_step().expect("a step");
        assert_eq!(
            latest.what, "decided",
            "the last retry's last step: {latest:#?}"
        );
        // Every step is accounted for: kept once, counted, or dropped and
        // counted.
        let kept: u32 = record.steps.iter().map(|s| 1 + s.repeats).sum();
        let dropped = record.steps_dropped;
        assert!(dropped > 0);
        let probes = record.steps.iter().filter(|s| s.what == "probed").count();
        assert!(probes < MAX_STEPS, "{probes}");
        assert!(kept + dropped <= 1_200, "{kept} + {dropped}");
        assert_eq!(record.steps[2].detail[..25], *"us-central1: attempt 0 xx");
        assert!(
            record
                .steps
                .last()
                .expect("a step")
                .detail
                .contains("attempt 299")
        );
    }
}
