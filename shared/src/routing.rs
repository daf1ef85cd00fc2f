//! The routing table: per workload, the weight of each region in its
//! inference traffic. Failover and failback write it (compare-and-set, so
//! two writers never interleave); every gateway reads it, never per request
//! but on a short refresh, and forwards predictions by it.
//!
//! A table never gives every region weight zero: [`RoutingTable::new`]
//! refuses it, so traffic can never be routed to nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::records::history;
use crate::state::{Precondition, StateError, StateStore, Version};
use crate::topology::{Pattern, Topology, Workload};

/// The state collection of routing tables, one document per workload.
pub const COLLECTION: &str = "routing";

/// The gateway's response header naming the region that answered.
pub const REGION_HEADER: &str = "x-lifeboat-region";

/// The gateway's response header counting the regions tried (1 or 2).
pub const ATTEMPTS_HEADER: &str = "x-lifeboat-attempts";

/// What is wrong with a routing table.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    /// Every region has weight zero, or there is no region.
    #[error("routing table of {workload}: every region has weight zero; traffic would go nowhere")]
    NoTraffic {
        /// The workload.
        workload: String,
    },
    /// The state store failed, or another writer changed the table first.
    #[error("routing table of {workload}: {source}")]
    State {
        /// The workload.
        workload: String,
        /// The failure.
        #[source]
        source: StateError,
    },
    /// The stored table is unreadable.
    #[error("routing table of {workload} is unreadable: {detail}")]
    Unreadable {
        /// The workload.
        workload: String,
        /// What is wrong.
        detail: String,
    },
}

/// The weights of one workload's regions, with a revision that grows with
/// every change, and the weights it replaced in the last day.
///
/// Size bound: one weight per region of the topology (tens of regions at
/// most), a few KiB, and at most [`history::MAX_POINTS`] replaced tables
/// of the same size: under 1 MiB for up to 40 regions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingTable {
    /// The workload.
    pub workload: String,
    /// Weight per region id; traffic is split in proportion.
    pub weights: BTreeMap<String, u32>,
    /// Incremented by every write.
    pub revision: u64,
    /// When it was written.
    pub updated_at: DateTime<Utc>,
    /// Why it was written (a failover's incident, a failback step, a person).
    pub reason: String,
    /// The weights this table replaced within [`history::WINDOW`], oldest
    /// first, each from when it was written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RoutingPoint>,
}

/// A workload's routing weights from a moment on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingPoint {
    /// When the weights were written (or seen).
    pub at: DateTime<Utc>,
    /// Weight per region.
    pub weights: BTreeMap<String, u32>,
}

impl RoutingTable {
    /// A table for `workload` with `weights`; refuses one that sends traffic
    /// nowhere.
    pub fn new(
        workload: impl Into<String>,
        weights: BTreeMap<String, u32>,
        reason: impl Into<String>,
    ) -> Result<Self, RoutingError> {
        let workload = workload.into();
        if weights.values().all(|weight| *weight == 0) {
            return Err(RoutingError::NoTraffic { workload });
        }
        Ok(Self {
            workload,
            weights,
            revision: 0,
            updated_at: Utc::now(),
            reason: reason.into(),
            history: Vec::new(),
        })
    }

    /// The weights over the last day, oldest first, ending with these.
    pub fn series(&self) -> Vec<RoutingPoint> {
        let mut points = self.history.clone();
        points.push(RoutingPoint {
            at: self.updated_at,
            weights: self.weights.clone(),
        });
        points
    }

    /// The regions with a weight above zero, heaviest first (ties by id).
    pub fn serving_regions(&self) -> Vec<(&str, u32)> {
        let mut regions: Vec<(&str, u32)> = self
            .weights
            .iter()
            .filter(|(_, weight)| **weight > 0)
            .map(|(region, weight)| (region.as_str(), *weight))
            .collect();
        regions.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        regions
    }
}

/// The weights `workload`'s pattern implies before any table is written:
/// the primary takes everything, or, active-active, every region with an
/// endpoint of one of its models takes an equal share.
pub fn implied_weights(topology: &Topology, workload: &Workload) -> BTreeMap<String, u32> {
    topology
        .regions()
        .iter()
        .map(|region| {
            let serves = workload.pattern == Pattern::ActiveActive
                && workload
                    .assets
                    .models
                    .iter()
                    .any(|m| m.endpoints.contains_key(&region.id));
            let primary = &region.id == topology.primary();
            let weight = if primary || serves { 100 } else { 0 };
            (region.id.to_string(), weight)
        })
        .collect()
}

/// Reads every workload's routing table.
pub async fn read_all(store: &dyn StateStore) -> Result<Vec<RoutingTable>, RoutingError> {
    let documents = store
        .list(COLLECTION)
        .await
        .map_err(|source| RoutingError::State {
            workload: "*".to_string(),
            source,
        })?;
    documents
        .into_iter()
        .map(|document| {
            serde_json::from_value(document.value).map_err(|error| RoutingError::Unreadable {
                workload: document.id,
                detail: error.to_string(),
            })
        })
        .collect()
}

/// A workload's routing table as stored, with the version it was read or
/// written at: what [`write_over`] writes after without reading again.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredTable {
    /// The table.
    pub table: RoutingTable,
    /// The stored document's version.
    pub version: Version,
}

/// Reads `workload`'s routing table; `None` before one is written.
pub async fn read(
    store: &dyn StateStore,
    workload: &str,
) -> Result<Option<StoredTable>, RoutingError> {
    let document = store
        .get(COLLECTION, workload)
        .await
        .map_err(|source| RoutingError::State {
            workload: workload.to_string(),
            source,
        })?;
    document
        .map(|document| {
            let table = serde_json::from_value(document.value).map_err(|error| {
                RoutingError::Unreadable {
                    workload: workload.to_string(),
                    detail: error.to_string(),
                }
            })?;
            Ok(StoredTable {
                table,
                version: document.version,
            })
        })
        .transpose()
}

/// Writes `table` as the next revision of its workload's table, only if the
/// stored revision is still `expected_revision` (0: no table yet). Returns
/// the table as written.
pub async fn write(
    store: &dyn StateStore,
    table: &RoutingTable,
    expected_revision: u64,
) -> Result<RoutingTable, RoutingError> {
    let current = read(store, &table.workload).await?;
    let stored_revision = current.as_ref().map_or(0, |stored| stored.table.revision);
    if stored_revision != expected_revision {
        return Err(RoutingError::State {
            workload: table.workload.clone(),
            source: StateError::Conflict {
                collection: COLLECTION.to_string(),
                id: table.workload.clone(),
                detail: format!(
                    "expected revision {expected_revision}, the stored table is at {stored_revision}"
                ),
            },
        });
    }
    Ok(write_over(store, current.as_ref(), table).await?.table)
}

/// Writes `table` as the revision after `current` (the table as its writer
/// read it; `None`: no table yet) without reading it again: a conflict when
/// anyone wrote the table since.
pub async fn write_over(
    store: &dyn StateStore,
    current: Option<&StoredTable>,
    table: &RoutingTable,
) -> Result<StoredTable, RoutingError> {
    let workload = table.workload.clone();
    if table.weights.values().all(|weight| *weight == 0) {
        return Err(RoutingError::NoTraffic { workload });
    }
    let (precondition, stored_revision, history) = match current {
        None => (Precondition::MustNotExist, 0, Vec::new()),
        Some(stored) => {
            let mut history = stored.table.history.clone();
            history.push(RoutingPoint {
                at: stored.table.updated_at,
                weights: stored.table.weights.clone(),
            });
            (
                Precondition::Version(stored.version.clone()),
                stored.table.revision,
                history,
            )
        }
    };
    let now = Utc::now();
    let mut next = RoutingTable {
        revision: stored_revision + 1,
        updated_at: now,
        history,
        ..table.clone()
    };
    history::trim(&mut next.history, now, |point| point.at);
    let value = serde_json::to_value(&next).map_err(|error| RoutingError::Unreadable {
        workload: workload.clone(),
        detail: error.to_string(),
    })?;
    let version = store
        .put(COLLECTION, &table.workload, &value, precondition)
        .await
        .map_err(|source| RoutingError::State { workload, source })?;
    Ok(StoredTable {
        table: next,
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::local::LocalStateStore;

    fn weights(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(r, w)| (r.to_string(), *w)).collect()
    }

    #[test]
    fn a_table_sending_traffic_nowhere_is_refused() {
        let refused = RoutingTable::new("ranker", weights(&[("us-east1", 0)]), "test");
        assert!(matches!(refused, Err(RoutingError::NoTraffic { .. })));
        let refused = RoutingTable::new("ranker", BTreeMap::new(), "test");
        assert!(matches!(refused, Err(RoutingError::NoTraffic { .. })));
    }

    #[test]
    fn serving_regions_are_the_weighted_ones_heaviest_first() {
        let table = RoutingTable::new(
            "ranker",
            weights(&[("europe-west1", 10), ("us-central1", 90), ("us-east1", 0)]),
            "test",
        )
        .expect("table");
        assert_eq!(
            table.serving_regions(),
            vec![("us-central1", 90), ("europe-west1", 10)]
        );
    }

    #[test]
    fn the_implied_weights_follow_the_pattern() {
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let production =
            Topology::load(examples.join("production-three-region.yaml")).expect("example");
        assert_eq!(
            implied_weights(&production, &production.workloads()[0]),
            weights(&[("europe-west1", 0), ("us-central1", 100), ("us-east1", 0)])
        );
        let active = Topology::load(examples.join("active-active.yaml")).expect("example");
        let implied = implied_weights(&active, &active.workloads()[0]);
        assert!(implied.len() >= 2, "{implied:?}");
        assert!(implied.values().all(|weight| *weight == 100), "{implied:?}");
    }

    #[tokio::test]
    async fn writes_are_compare_and_set_on_the_revision() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalStateStore::open(dir.path()).await.expect("store");
        let table = RoutingTable::new("ranker", weights(&[("us-central1", 100)]), "initial")
            .expect("table");
        let first = write(&store, &table, 0).await.expect("first write");
        assert_eq!(first.revision, 1);
        let moved = RoutingTable {
            weights: weights(&[("us-central1", 0), ("us-east1", 100)]),
            ..first.clone()
        };
        let stale = write(&store, &moved, 0).await;
        assert!(
            matches!(
                stale,
                Err(RoutingError::State {
                    source: StateError::Conflict { .. },
                    ..
                })
            ),
            "{stale:?}"
        );
        let second = write(&store, &moved, 1).await.expect("second write");
        assert_eq!(second.revision, 2);
        assert_eq!(
            second.history,
            vec![RoutingPoint {
                at: first.updated_at,
                weights: first.weights.clone()
            }],
            "the replaced weights are kept"
        );
        assert_eq!(second.series().len(), 2);
        let all_zero = RoutingTable {
            weights: weights(&[("us-central1", 0)]),
            ..second.clone()
        };
        assert!(matches!(
            write(&store, &all_zero, 2).await,
            Err(RoutingError::NoTraffic { .. })
        ));
        assert_eq!(read_all(&store).await.expect("read"), vec![second]);
    }
}
