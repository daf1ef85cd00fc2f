//! The ledger: per source object, what deletes and reconcile repairs saw:
//! the newest source generation, whether it was live or deleted then, and
//! the source generation they left in each replica region.
//!
//! It remembers when a delete was seen, so that a replica kept under
//! `delete-policy: {keep: …}` is deleted once its retention ends, and lets a
//! late delete of a replaced generation be answered without touching
//! storage. Finalizes are not recorded: their copies are pinned to the
//! generation and settled by reading the source, which needs no record, and
//! a state-store write per new object would cost more than the copy.
//!
//! One document per source object, in a collection per source bucket
//! (`data-sync.<bucket>`); the document id is `o` followed by the URL-safe
//! base64 of the object name, so any name (spaces, `/`, `#`, `%`, unicode, up
//! to Cloud Storage's 1024 bytes) maps to a valid and distinct id. Updates
//! are compare-and-set and merge: a newer generation always wins.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use lifeboat_shared::state::{Precondition, StateError, StateStore};
use serde::{Deserialize, Serialize};

/// How many times [`record`] re-reads after losing a compare-and-set race.
const RECORD_ATTEMPTS: usize = 8;

/// What data-sync knows of one source object.
///
/// Size bound: fixed fields and one generation per replica region of the
/// topology, under 1 KiB (the object's name is the document id).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLedger {
    /// The newest source generation seen, live or deleted.
    pub generation: i64,
    /// Whether that generation was live when last observed.
    pub live: bool,
    /// When the object was first seen deleted (the start of a keep period);
    /// `None` while it is live.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Per replica region: the source generation verified present there.
    /// A region is absent when its replica was deleted or never made.
    pub regions: BTreeMap<String, i64>,
}

/// One observation of the source object and of what was done in a region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// Generation `generation` was live and is verified in `region`.
    Replicated {
        /// The replica region.
        region: String,
        /// The source generation copied and verified.
        generation: i64,
    },
    /// The source object was absent; `generation` is the newest generation
    /// known to have been deleted. `replica_deleted`: the replica in `region`
    /// was deleted (mirror policy) rather than kept.
    Deleted {
        /// The replica region.
        region: String,
        /// The deleted generation.
        generation: i64,
        /// When the deletion was observed.
        at: DateTime<Utc>,
        /// Whether the replica was deleted too.
        replica_deleted: bool,
    },
}

impl ObjectLedger {
    /// Whether `generation` is older than the newest one seen.
    pub fn supersedes(&self, generation: i64) -> bool {
        self.generation > generation
    }

    /// Merges one observation; an older generation never overrides a newer
    /// one.
    pub fn apply(&mut self, observation: &Observation) {
        match observation {
            Observation::Replicated { region, generation } => {
                if *generation >= self.generation {
                    if *generation > self.generation || !self.live {
                        self.deleted_at = None;
                    }
                    self.generation = *generation;
                    self.live = true;
                }
                if self
                    .regions
                    .get(region)
                    .is_none_or(|seen| seen <= generation)
                {
                    self.regions.insert(region.clone(), *generation);
                }
            }
            Observation::Deleted {
                region,
                generation,
                at,
                replica_deleted,
            } => {
                if *generation > self.generation || (*generation == self.generation && self.live) {
                    self.generation = *generation;
                    self.live = false;
                    self.deleted_at = Some(*at);
                }
                if !self.live && self.deleted_at.is_none() {
                    self.deleted_at = Some(*at);
                }
                if *replica_deleted {
                    self.regions.remove(region);
                }
            }
        }
    }
}

/// The collection holding the ledger of `bucket`'s objects.
pub fn collection(bucket: &str) -> String {
    format!("data-sync.{bucket}")
}

/// The document id of object `name`.
pub fn document_id(name: &str) -> String {
    format!("o{}", URL_SAFE_NO_PAD.encode(name.as_bytes()))
}

/// A ledger as read, with the precondition a write based on it needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadLedger {
    /// What the ledger held.
    pub ledger: ObjectLedger,
    /// Holds while nobody wrote the ledger since it was read.
    pub unchanged: Precondition,
}

/// Reads the ledger of `bucket`/`name`; the default (generation 0, not live)
/// when there is none.
pub async fn read(
    state: &dyn StateStore,
    bucket: &str,
    name: &str,
) -> Result<ReadLedger, StateError> {
    let collection = collection(bucket);
    let id = document_id(name);
    Ok(match state.get(&collection, &id).await? {
        Some(doc) => ReadLedger {
            ledger: decode(&collection, &id, doc.value)?,
            unchanged: Precondition::Version(doc.version),
        },
        None => ReadLedger {
            ledger: ObjectLedger::default(),
            unchanged: Precondition::MustNotExist,
        },
    })
}

/// Merges `observations` into the ledger of `bucket`/`name` with
/// compare-and-set, and returns the ledger as written. `read` is the ledger
/// as the caller read it, if it did: the first attempt then writes without
/// reading again.
pub async fn record(
    state: &dyn StateStore,
    bucket: &str,
    name: &str,
    observations: &[Observation],
    read: Option<ReadLedger>,
) -> Result<ObjectLedger, StateError> {
    let collection = collection(bucket);
    let id = document_id(name);
    let mut last_conflict = None;
    let mut known = read;
    for _ in 0..RECORD_ATTEMPTS {
        let ReadLedger {
            mut ledger,
            unchanged,
        } = match known.take() {
            Some(read) => read,
            None => self::read(state, bucket, name).await?,
        };
        for observation in observations {
            ledger.apply(observation);
        }
        let value = serde_json::to_value(&ledger).map_err(|e| StateError::InvalidValue {
            collection: collection.clone(),
            id: id.clone(),
            reason: e.to_string(),
        })?;
        match state.put(&collection, &id, &value, unchanged).await {
            Ok(_) => return Ok(ledger),
            Err(conflict @ StateError::Conflict { .. }) => last_conflict = Some(conflict),
            Err(error) => return Err(error),
        }
    }
    Err(last_conflict.unwrap_or_else(|| StateError::Conflict {
        collection,
        id,
        detail: "no attempt was made".to_string(),
    }))
}

fn decode(
    collection: &str,
    id: &str,
    value: serde_json::Value,
) -> Result<ObjectLedger, StateError> {
    serde_json::from_value(value).map_err(|e| StateError::InvalidValue {
        collection: collection.to_string(),
        id: id.to_string(),
        reason: format!("not a data-sync ledger: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicated(region: &str, generation: i64) -> Observation {
        Observation::Replicated {
            region: region.to_string(),
            generation,
        }
    }

    fn deleted(region: &str, generation: i64, replica_deleted: bool) -> Observation {
        Observation::Deleted {
            region: region.to_string(),
            generation,
            at: DateTime::<Utc>::UNIX_EPOCH,
            replica_deleted,
        }
    }

    #[test]
    fn an_older_generation_never_overrides_a_newer_one() {
        let mut ledger = ObjectLedger::default();
        ledger.apply(&replicated("us-east1", 7));
        ledger.apply(&replicated("us-east1", 5));
        assert_eq!((ledger.generation, ledger.live), (7, true));
        assert_eq!(ledger.regions["us-east1"], 7);
        ledger.apply(&deleted("us-east1", 5, true));
        assert_eq!((ledger.generation, ledger.live), (7, true));
        assert!(ledger.supersedes(6));
        assert!(!ledger.supersedes(7));
    }

    #[test]
    fn a_delete_then_a_recreate_ends_live() {
        let mut ledger = ObjectLedger::default();
        ledger.apply(&replicated("us-east1", 3));
        ledger.apply(&deleted("us-east1", 3, false));
        assert!(!ledger.live);
        assert!(ledger.deleted_at.is_some());
        assert_eq!(ledger.regions.get("us-east1"), Some(&3), "replica kept");
        ledger.apply(&replicated("us-east1", 9));
        assert!(ledger.live);
        assert_eq!(ledger.deleted_at, None);
        assert_eq!(ledger.regions.get("us-east1"), Some(&9));
    }

    #[test]
    fn ids_of_unusual_names_are_valid_and_distinct() {
        let long = "n".repeat(1024);
        let names = [
            "a b",
            "a/b",
            "#?%",
            "日本 🚀",
            ".",
            "..",
            "__x__",
            long.as_str(),
        ];
        let mut ids = std::collections::BTreeSet::new();
        for name in names {
            let id = document_id(name);
            lifeboat_shared::state::check_id(&collection("bucket.with.dots"), &id)
                .unwrap_or_else(|e| panic!("{name:?}: {e}"));
            ids.insert(id);
        }
        assert_eq!(ids.len(), names.len());
    }
}
