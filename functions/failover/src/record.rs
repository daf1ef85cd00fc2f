//! The record of each incident: every step with its time, the decision with
//! its reasons, and how it ended. One document per incident id in the state
//! store, appended to with compare-and-set, so a redelivered or retried
//! event continues the record instead of starting another.

use chrono::{DateTime, Utc};
use lifeboat_shared::state::{StateError, StateStore, update};
use serde::{Deserialize, Serialize};

use crate::decision::Decision;

/// The collection of incident records.
pub const COLLECTION: &str = "failover-incidents";

/// How many times an append re-reads after losing a race.
const APPEND_ATTEMPTS: usize = 8;

/// One step of handling an incident.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// When it ended.
    pub at: DateTime<Utc>,
    /// What it was (`received`, `probed`, `decided`, `scaled`, `routed`,
    /// `verified`...).
    pub what: String,
    /// What it found or did.
    pub detail: String,
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
}

/// Appends `step` to the record of `incident_id` (creating it with
/// `workload`, `region` and `started_at`); `finish` sets the decision and
/// the outcome when given. Returns the record as written.
pub async fn append(
    store: &dyn StateStore,
    incident: (&str, &str, &str, DateTime<Utc>),
    step: Step,
    decision: Option<&Decision>,
    outcome: Option<Outcome>,
) -> Result<IncidentRecord, StateError> {
    let (incident_id, workload, region, started_at) = incident;
    update(
        store,
        COLLECTION,
        incident_id,
        APPEND_ATTEMPTS,
        |stored: Option<IncidentRecord>| {
            let mut record = stored.unwrap_or_else(|| IncidentRecord {
                incident_id: incident_id.to_string(),
                workload: workload.to_string(),
                region: region.to_string(),
                started_at: Some(started_at),
                ..IncidentRecord::default()
            });
            record.steps.push(step.clone());
            if let Some(decision) = decision {
                record.decision = Some(decision.clone());
            }
            if let Some(outcome) = outcome.clone() {
                record.outcome = Some(outcome);
            }
            Ok::<_, StateError>(record)
        },
    )
    .await
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
