//! Version parity, per model and region, in the state store (collection
//! `model-parity`, written by model-copy): the versions present, the version deployed, how long
//! the newest version took to reach the region, and the last failure.
//! Records only move forward: versions are added, never removed, and an
//! older version never replaces a newer one as newest or deployed.

use crate::models::compare_versions;
use crate::state::{Document, StateError, StateStore, text_prefix, update};
use crate::topology::{Pattern, Topology};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The collection of parity records.
pub const COLLECTION: &str = "model-parity";

/// How many times [`record`] re-reads after losing a race.
const RECORD_ATTEMPTS: usize = 5;

/// The most version ids a record keeps: the newest.
pub const MAX_VERSIONS: usize = 1000;
/// The most bytes a record keeps of each free text (`error`, `problem`).
pub const MAX_TEXT_BYTES: usize = 1024;

/// What one region holds of one model. Version ids are the primary's.
///
/// Size bound: at most [`MAX_VERSIONS`] version ids (the newest; Vertex AI
/// numbers versions, so each is a few bytes) and [`MAX_TEXT_BYTES`] of each
/// free text: well under 64 KiB, far from Firestore's 1 MiB.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParityRecord {
    /// The model's asset id in the topology.
    pub model: String,
    /// The region.
    pub region: String,
    /// Every version verified present, in version order.
    pub versions_present: Vec<String>,
    /// The version the region's endpoint serves, if it has one.
    pub deployed_version: Option<String>,
    /// The newest version present.
    pub newest_version: Option<String>,
    /// How long the newest version took to reach the region, from its
    /// creation in the primary to its verification here.
    pub newest_reach_millis: Option<u64>,
    /// A version that failed to reach the region, newer than any present.
    pub failed_version: Option<String>,
    /// Why it failed (the operation's error).
    pub error: Option<String>,
    /// Why the region is not in parity although it holds the newest
    /// version (its warm endpoint does not serve it, or its image could not
    /// be pulled here during a primary outage), if it is not.
    #[serde(default)]
    pub problem: Option<String>,
    /// When the record last changed.
    pub updated_at: Option<DateTime<Utc>>,
}

/// What one handling learnt about one region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// `version` is present (and verified), after `reach_millis`.
    Present {
        /// The primary's version id.
        version: String,
        /// From its creation in the primary to its verification here.
        reach_millis: Option<u64>,
        /// Every version the region holds, as the primary's ids.
        all: Vec<String>,
        /// What the region's endpoint now serves, if it was checked.
        deployed: Option<String>,
        /// Why the region is not in parity although it holds the version
        /// (not served by its warm endpoint, an image it could not pull
        /// during a primary outage), if it is not.
        problem: Option<String>,
    },
    /// `version` did not reach the region.
    Failed {
        /// The primary's version id.
        version: String,
        /// Why (the operation's error).
        error: String,
    },
}

fn newer(a: &str, b: &str) -> bool {
    compare_versions(a, b).is_gt()
}

/// Merges `observation` into `record`, forward only.
pub fn merge(record: &mut ParityRecord, observation: &Observation, now: DateTime<Utc>) {
    match observation {
        Observation::Present {
            version,
            reach_millis,
            all,
            deployed,
            problem,
        } => {
            for v in all.iter().chain([version]) {
                if !record.versions_present.contains(v) {
                    record.versions_present.push(v.clone());
                }
            }
            record
                .versions_present
                .sort_by(|a, b| compare_versions(a, b));
            let over = record.versions_present.len().saturating_sub(MAX_VERSIONS);
            record.versions_present.drain(..over);
            if record
                .newest_version
                .as_deref()
                .is_none_or(|n| newer(version, n))
            {
                record.newest_version = Some(version.clone());
                record.newest_reach_millis = *reach_millis;
            }
            if record.newest_version.as_ref() == Some(version) {
                record.problem = problem
                    .as_deref()
                    .map(|problem| text_prefix(problem, MAX_TEXT_BYTES).to_string());
            }
            if let Some(deployed) = deployed
                && record
                    .deployed_version
                    .as_deref()
                    .is_none_or(|d| !newer(d, deployed))
            {
                record.deployed_version = Some(deployed.clone());
            }
            if record
                .failed_version
                .as_deref()
                .is_some_and(|f| !newer(f, version))
            {
                record.failed_version = None;
                record.error = None;
            }
        }
        Observation::Failed { version, error } => {
            let behind = record
                .newest_version
                .as_deref()
                .is_none_or(|n| newer(version, n));
            if behind {
                record.failed_version = Some(version.clone());
                record.error = Some(text_prefix(error, MAX_TEXT_BYTES).to_string());
            }
        }
    }
    record.updated_at = Some(now);
}

/// Whether `region` is in parity with `primary`: it holds the primary's
/// newest version with no newer failure and no problem with it (an image
/// it can pull without the primary, a warm endpoint serving it), and, where
/// it keeps the model deployed (`warm`), serves it.
pub fn in_parity(primary: &ParityRecord, region: &ParityRecord, warm: bool) -> bool {
    let Some(newest) = &primary.newest_version else {
        return false;
    };
    region.versions_present.contains(newest)
        && region.failed_version.is_none()
        && region.problem.is_none()
        && (!warm || region.deployed_version.as_ref() == Some(newest))
}

/// The document id of a model's record in a region.
pub fn document_id(model: &str, region: &str) -> String {
    format!("{model}:{region}")
}

/// Reads one record.
pub async fn read(
    state: &dyn StateStore,
    model: &str,
    region: &str,
) -> Result<Option<ParityRecord>, StateError> {
    let id = document_id(model, region);
    let document = state.get(COLLECTION, &id).await?;
    parse(&id, document)
}

/// The record in `document` (of id `id`), if there is one.
fn parse(id: &str, document: Option<Document>) -> Result<Option<ParityRecord>, StateError> {
    let Some(document) = document else {
        return Ok(None);
    };
    serde_json::from_value(document.value)
        .map(Some)
        .map_err(|e| StateError::InvalidValue {
            collection: COLLECTION.to_string(),
            id: id.to_string(),
            reason: e.to_string(),
        })
}

/// Merges `observation` into the record of `model` in `region`, with
/// compare-and-set.
pub async fn record(
    state: &dyn StateStore,
    model: &str,
    region: &str,
    observation: &Observation,
) -> Result<ParityRecord, StateError> {
    let id = document_id(model, region);
    update(state, COLLECTION, &id, RECORD_ATTEMPTS, |stored| {
        let mut current: ParityRecord = stored.unwrap_or_default();
        current.model = model.to_string();
        current.region = region.to_string();
        merge(&mut current, observation, Utc::now());
        Ok::<_, StateError>(current)
    })
    .await
}

/// One row of `lifeboat status` for models: what one standby region holds
/// of one model, against the primary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParityRow {
    /// The workload's id.
    pub workload: String,
    /// The model's asset id.
    pub model: String,
    /// The standby region.
    pub region: String,
    /// The versions verified present there.
    pub versions_present: Vec<String>,
    /// The version its endpoint serves, if it keeps one deployed.
    pub deployed_version: Option<String>,
    /// The primary's newest version.
    pub source_version: Option<String>,
    /// How long the newest version present took to reach the region.
    pub newest_reach_millis: Option<u64>,
    /// Whether the region holds (and, for a warm standby, serves) the
    /// primary's newest version.
    pub parity: bool,
    /// The last failure newer than anything present, else why the newest
    /// version present is not in parity.
    pub error: Option<String>,
}

/// The parity of every protected model in every standby region, from one
/// batch read of their records.
pub async fn report(
    topology: &Topology,
    state: &dyn StateStore,
) -> Result<Vec<ParityRow>, StateError> {
    let regions: Vec<&str> = std::iter::once(topology.primary().as_str())
        .chain(topology.standby_regions().map(|region| region.id.as_str()))
        .collect();
    let models: Vec<_> = topology
        .workloads()
        .iter()
        .flat_map(|workload| {
            workload
                .assets
                .models
                .iter()
                .map(move |model| (workload, model))
        })
        .collect();
    let ids: Vec<String> = models
        .iter()
        .flat_map(|(_, model)| {
            regions
                .iter()
                .map(|region| document_id(model.id.as_str(), region))
        })
        .collect();
    let mut records = state
        .get_many(COLLECTION, &ids)
        .await?
        .into_iter()
        .zip(&ids)
        .map(|(document, id)| parse(id, document))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter();
    let mut rows = Vec::new();
    for (workload, model) in models {
        let id = model.id.as_str();
        let primary = records.next().flatten().unwrap_or_default();
        for region in topology.standby_regions() {
            let held = records.next().flatten().unwrap_or_default();
            let warm = workload.pattern == Pattern::ActivePassive
                && model.standby_replicas > 0
                && model.version.is_none()
                && model.endpoints.contains_key(&region.id);
            rows.push(ParityRow {
                workload: workload.id.to_string(),
                model: id.to_string(),
                region: region.id.to_string(),
                parity: in_parity(&primary, &held, warm),
                source_version: primary.newest_version.clone(),
                versions_present: held.versions_present,
                deployed_version: held.deployed_version,
                newest_reach_millis: held.newest_reach_millis,
                error: held.error.or(held.problem),
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn present(version: &str, deployed: Option<&str>) -> Observation {
        Observation::Present {
            version: version.to_string(),
            reach_millis: Some(version.parse::<u64>().expect("numeric") * 1000),
            all: vec![version.to_string()],
            deployed: deployed.map(str::to_string),
            problem: None,
        }
    }

    #[test]
    fn a_stored_record_of_todays_shape_reads_back_unchanged() {
        let stored = serde_json::json!({
            "model": "churn",
            "region": "europe-west4",
            "versions_present": ["6", "7"],
            "deployed_version": "7",
            "newest_version": "7",
            "newest_reach_millis": 41_250,
            "failed_version": null,
            "error": null,
            "problem": "the warm endpoint serves 6",
            "updated_at": "2026-11-25T10:00:00Z",
        });
        let record: ParityRecord = serde_json::from_value(stored.clone()).expect("reads back");
        assert_eq!(record.versions_present, ["6", "7"]);
        assert_eq!(record.newest_reach_millis, Some(41_250));
        assert_eq!(
            record.updated_at,
            Some("2026-11-25T10:00:00Z".parse().expect("time"))
        );
        assert_eq!(serde_json::to_value(&record).expect("encode"), stored);
        let mut older = stored;
        older.as_object_mut().expect("object").remove("problem");
        let record: ParityRecord = serde_json::from_value(older).expect("no `problem` yet");
        assert_eq!(record.problem, None);
    }

    #[test]
    fn a_parity_row_of_todays_shape_reads_back_unchanged() {
        let served = serde_json::json!({
            "workload": "recommendations",
            "model": "churn",
            "region": "europe-west4",
            "versions_present": ["7"],
            "deployed_version": null,
            "source_version": "7",
            "newest_reach_millis": 41_250,
            "parity": true,
            "error": null,
        });
        let row: ParityRow = serde_json::from_value(served.clone()).expect("reads back");
        assert!(row.parity);
        assert_eq!(serde_json::to_value(&row).expect("encode"), served);
    }

    #[test]
    fn a_record_stays_within_its_size_bound() {
        let mut record = ParityRecord::default();
        let now = Utc::now();
        for version in 1..=MAX_VERSIONS + 100 {
            merge(&mut record, &present(&version.to_string(), None), now);
        }
        assert_eq!(record.versions_present.len(), MAX_VERSIONS);
        assert_eq!(record.versions_present[0], "101", "the oldest go first");
        let failed = Observation::Failed {
            version: (MAX_VERSIONS + 101).to_string(),
            error: "é".repeat(MAX_TEXT_BYTES),
        };
        merge(&mut record, &failed, now);
        let error = record.error.as_deref().expect("error");
        assert!(error.len() <= MAX_TEXT_BYTES && error.len() > MAX_TEXT_BYTES - 2);
        let encoded = serde_json::to_vec(&record).expect("encode");
        assert!(encoded.len() < 64 * 1024, "{} bytes", encoded.len());
    }

    #[test]
    fn records_only_move_forward() {
        let mut record = ParityRecord::default();
        let now = Utc::now();
        merge(&mut record, &present("10", Some("10")), now);
        merge(&mut record, &present("9", Some("9")), now);
        assert_eq!(record.versions_present, ["9", "10"], "numeric order");
        assert_eq!(record.newest_version.as_deref(), Some("10"));
        assert_eq!(
            record.newest_reach_millis,
            Some(10_000),
            "the newest's time kept"
        );
        assert_eq!(
            record.deployed_version.as_deref(),
            Some("10"),
            "never older"
        );

        let failed = Observation::Failed {
            version: "9".to_string(),
            error: "quota".to_string(),
        };
        merge(&mut record, &failed, now);
        assert_eq!(record.failed_version, None, "an older failure is moot");
        let failed = Observation::Failed {
            version: "11".to_string(),
            error: "quota".to_string(),
        };
        merge(&mut record, &failed, now);
        assert_eq!(record.failed_version.as_deref(), Some("11"));
        let primary = ParityRecord {
            newest_version: Some("11".to_string()),
            ..ParityRecord::default()
        };
        assert!(!in_parity(&primary, &record, false));
        merge(&mut record, &present("11", None), now);
        assert_eq!(
            (record.failed_version.as_deref(), record.error.as_deref()),
            (None, None)
        );
        assert!(in_parity(&primary, &record, false), "holds 11");
        assert!(!in_parity(&primary, &record, true), "but serves 10");
        let unpullable = Observation::Present {
            version: "11".to_string(),
            reach_millis: None,
            all: Vec::new(),
            deployed: None,
            problem: Some("only in us-central1".to_string()),
        };
        merge(&mut record, &unpullable, now);
        assert!(!in_parity(&primary, &record, false), "its image is not");
        merge(&mut record, &present("10", None), now);
        assert!(
            !in_parity(&primary, &record, false),
            "an older version says nothing"
        );
    }
}
