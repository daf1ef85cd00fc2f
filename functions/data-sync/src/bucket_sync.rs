//! Bucket replication on object events: after a finalize or a delete in a
//! protected bucket, each replica bucket is brought to what the source holds
//! *now*.
//!
//! Events arrive late, twice and out of order, so an event is only a hint
//! that a name changed: [`converge`] reads the source's live generation and
//! copies that one (server-side, verified by size and CRC32C), or applies the
//! delete policy when the source is gone, then reads the source again and
//! starts over if it changed meanwhile. Whatever order two workers finish
//! in, the last one to check sees the newest generation in place; a late
//! finalize of an old generation therefore never leaves old bytes behind,
//! and a delete followed by a re-create ends with the object present. The
//! [`ledger`] answers stale and duplicate events without touching storage.
//!
//! A finalize takes a shorter way to the same end: the event describes the
//! generation (size, CRC32C), so it is copied to every region at once
//! without reading the source first, and one read of the source afterwards
//! settles all the copies (as [`crate::settle`] explains); only where that
//! read shows the source moved on does a region fall back to [`converge`].

use chrono::{DateTime, Utc};
use futures::future::join_all;
use lifeboat_shared::events::StorageObject;
use lifeboat_shared::pause::PauseError;
use lifeboat_shared::state::StateError;
use lifeboat_shared::storage::replica::{existing_replica, holds_generation, replicate};
use lifeboat_shared::storage::{ObjectMeta, ObjectRef, ObjectStore, StorageError};
use lifeboat_shared::topology::{BucketAsset, DeletePolicy};

use crate::DataSync;
use crate::ledger::{self, Observation};
use lifeboat_shared::records::data_rpo as rpo;

/// How many times [`converge`] starts over when the source changes under it.
const CONVERGE_ATTEMPTS: usize = 5;

/// What went wrong while syncing one object. Every variant names the asset,
/// the object and, where there is one, the region.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A storage call failed.
    #[error("asset {asset}, region {region}: {source}")]
    Storage {
        /// The bucket asset.
        asset: String,
        /// The replica region.
        region: String,
        /// The failure, which names the object.
        #[source]
        source: StorageError,
    },
    /// Reading or writing the ledger failed.
    #[error("asset {asset}, {object}: ledger: {source}")]
    Ledger {
        /// The bucket asset.
        asset: String,
        /// The source object.
        object: ObjectRef,
        /// The failure.
        #[source]
        source: StateError,
    },
    /// The source could not be read after a copy, so the copy does not
    /// count yet (see [`crate::settle`]).
    #[error("asset {asset}, region {region}, {object}: the copy is not settled: {detail}")]
    NotSettled {
        /// The bucket asset.
        asset: String,
        /// The replica region.
        region: String,
        /// The source object.
        object: ObjectRef,
        /// Why the source could not be read.
        detail: String,
    },
    /// The replication pauses could not be read, or a change could not be
    /// noted as unreplicated in a paused region; a redelivery tries again.
    #[error("asset {asset}: replication pause: {source}")]
    Pause {
        /// The bucket asset.
        asset: String,
        /// The failure.
        #[source]
        source: PauseError,
    },
    /// The source changed on every attempt; a later delivery will try again.
    #[error(
        "asset {asset}, region {region}, {object}: the source kept changing over {attempts} attempts"
    )]
    Unsettled {
        /// The bucket asset.
        asset: String,
        /// The replica region.
        region: String,
        /// The source object.
        object: ObjectRef,
        /// How many attempts were made.
        attempts: usize,
    },
}

impl SyncError {
    /// True when a retry may succeed: the sender should redeliver (5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Storage { source, .. } => matches!(
                source,
                StorageError::Backend { .. }
                    | StorageError::PreconditionFailed { .. }
                    | StorageError::Verification { .. }
            ),
            SyncError::Ledger { source, .. } => {
                source.is_transient() || matches!(source, StateError::Conflict { .. })
            }
            SyncError::NotSettled { .. }
            | SyncError::Unsettled { .. }
            | SyncError::Pause { .. } => true,
        }
    }
}

/// The state a replica was brought to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Converged {
    /// The replica holds the source's live generation, verified.
    Replicated {
        /// The source generation now in the replica.
        generation: i64,
        /// When the source wrote that generation.
        source_time: DateTime<Utc>,
        /// Whether a copy was made (false: the replica already verified).
        copied: bool,
    },
    /// The source object does not exist.
    Absent {
        /// Whether the replica was deleted (mirror policy) or kept.
        replica_deleted: bool,
    },
}

/// Brings `replica` to what `source` holds now: the live generation copied
/// and verified, or, when the source is gone, the delete policy applied.
/// Starts over while the source changes under it.
pub async fn converge(
    store: &dyn ObjectStore,
    asset: &BucketAsset,
    region: &str,
    source: &ObjectRef,
    replica: &ObjectRef,
) -> Result<Converged, SyncError> {
    let failed = |source: StorageError| SyncError::Storage {
        asset: asset.id.to_string(),
        region: region.to_string(),
        source,
    };
    for _ in 0..CONVERGE_ATTEMPTS {
        let converged = match store.head(source).await {
            Ok(live) => {
                let copied = match existing_replica(store, &live, replica)
                    .await
                    .map_err(failed)?
                {
                    Some(_) => false,
                    None => match replicate(store, &live, replica).await {
                        Ok(_) => true,
                        // The source was replaced or deleted during the copy.
                        Err(
                            StorageError::PreconditionFailed { .. } | StorageError::NotFound { .. },
                        ) => {
                            continue;
                        }
                        Err(error @ StorageError::Verification { .. }) => {
                            // Never leave a replica with the wrong bytes.
                            let _ = store.delete(replica, None).await;
                            // A server that does not enforce the copy's
                            // precondition copies a newer generation: start
                            // over on it. Otherwise the bytes were damaged.
                            match holds_generation(store, source, live.generation).await {
                                Ok(false) => continue,
                                _ => return Err(failed(error)),
                            }
                        }
                        Err(error) => return Err(failed(error)),
                    },
                };
                Converged::Replicated {
                    generation: live.generation,
                    source_time: live.updated,
                    copied,
                }
            }
            Err(StorageError::NotFound { .. }) => {
                let replica_deleted = match asset.delete_policy {
                    DeletePolicy::Mirror => match store.delete(replica, None).await {
                        Ok(()) | Err(StorageError::NotFound { .. }) => true,
                        Err(error) => return Err(failed(error)),
                    },
                    DeletePolicy::Keep(_) => false,
                };
                Converged::Absent { replica_deleted }
            }
            Err(error) => return Err(failed(error)),
        };
        // Settled only if the source is still as it was when we acted.
        let settled = match (store.head(source).await, &converged) {
            (Ok(now), Converged::Replicated { generation, .. }) => now.generation == *generation,
            (Err(StorageError::NotFound { .. }), Converged::Absent { .. }) => true,
            (Ok(_) | Err(StorageError::NotFound { .. }), _) => false,
            (Err(error), _) => return Err(failed(error)),
        };
        if settled {
            return Ok(converged);
        }
    }
    Err(SyncError::Unsettled {
        asset: asset.id.to_string(),
        region: region.to_string(),
        object: source.clone(),
        attempts: CONVERGE_ATTEMPTS,
    })
}

/// What kind of change an event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A generation was written.
    Finalized,
    /// A generation was deleted (or overwritten).
    Deleted,
}

/// What handling one object event did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A delete of a generation older than the live one: nothing to do.
    Stale,
    /// Every replica was brought to the source's state, region by region.
    Synced(Vec<(String, Converged)>),
}

/// Handles one finalize or delete event of `object` in `asset`'s source
/// bucket: every replica ends as the source's newest generation says. A
/// delete is recorded in the ledger (when it was seen starts a keep
/// period); a finalize needs no record, since its copies are pinned to the
/// generation and settled by reading the source. Fails if any region
/// failed (a redelivery redoes only what is missing).
///
/// A region into which a drill has paused replication of the asset's
/// workload gets nothing: the change is noted there as not replicated
/// ([`rpo::note_unreplicated`]), so its exposure grows as in a real
/// outage, and the first reconcile after the pause copies it and clears
/// the note.
pub async fn on_object_event(
    sync: &DataSync,
    asset: &BucketAsset,
    change: Change,
    object: &StorageObject,
    event_time: DateTime<Utc>,
) -> Result<Outcome, SyncError> {
    let written = match change {
        Change::Finalized => object.updated.or(object.time_created).unwrap_or(event_time),
        Change::Deleted => event_time,
    };
    let unpaused = unpaused(sync, asset, written).await?;
    let asset = unpaused.as_ref().unwrap_or(asset);
    let source = ObjectRef::new(object.bucket.as_str(), object.name.as_str());
    let store = sync.storage.as_ref();
    let results = match change {
        Change::Finalized => copy_finalized(store, asset, object, event_time).await,
        Change::Deleted => {
            let ledger_error = |source_error: StateError| SyncError::Ledger {
                asset: asset.id.to_string(),
                object: source.clone(),
                source: source_error,
            };
            let read = ledger::read(sync.state.as_ref(), &source.bucket, &source.name)
                .await
                .map_err(ledger_error)?;
            if read.ledger.live && read.ledger.supersedes(object.generation) {
                return Ok(Outcome::Stale);
            }
            let source = &source;
            let results = join_all(asset.replicas.keys().map(|region| async move {
                let result = converge_in(store, asset, region.as_str(), source).await;
                (region.to_string(), result)
            }))
            .await;
            let observations: Vec<Observation> = results
                .iter()
                .filter_map(|(region, result)| result.as_ref().ok().map(|state| (region, state)))
                .map(|(region, state)| observation(region, state, object.generation, event_time))
                .collect();
            if !observations.is_empty() {
                ledger::record(
                    sync.state.as_ref(),
                    &source.bucket,
                    &source.name,
                    &observations,
                    Some(read),
                )
                .await
                .map_err(ledger_error)?;
            }
            results
        }
    };
    let mut converged = Vec::new();
    let mut first_error = None;
    for (region, result) in results {
        match result {
            Ok(state) => converged.push((region, state)),
            Err(error) => {
                tracing::warn!(asset = %asset.id, region, object = %source, %error, "replica not brought up to date");
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(Outcome::Synced(converged)),
    }
}

/// `asset` without the regions a drill has paused (`None`: none is), each
/// of them noted as not holding a change written at `written`.
async fn unpaused(
    sync: &DataSync,
    asset: &BucketAsset,
    written: DateTime<Utc>,
) -> Result<Option<BucketAsset>, SyncError> {
    let failed = |source: PauseError| SyncError::Pause {
        asset: asset.id.to_string(),
        source,
    };
    let paused = sync.paused_regions(asset.id.as_str()).await;
    if paused.is_empty() {
        return Ok(None);
    }
    let target = sync.target_rpo_seconds(asset.id.as_str());
    for pause in &paused {
        tracing::info!(asset = %asset.id, region = %pause.region, run = %pause.run, "replication paused by a drill; change noted as unreplicated");
        rpo::note_unreplicated(
            sync.state.as_ref(),
            rpo::AssetKind::Bucket,
            asset.id.as_str(),
            &pause.region,
            target,
            written,
        )
        .await
        .map_err(|error| failed(error.into()))?;
    }
    let mut unpaused = asset.clone();
    unpaused
        .replicas
        .retain(|region, _| !paused.iter().any(|p| p.region == region.as_str()));
    Ok(Some(unpaused))
}

/// Below this size a copy costs about what reading the replica's metadata
/// costs, so a finalize copies without looking for a replica first.
const COPY_WITHOUT_LOOKING_BELOW: u64 = 1 << 20;

/// What a finalize's copy to one region left to do.
enum Copied {
    /// In place (`copied`: by this copy, or found verifying before); counts
    /// once the source is seen still holding the generation.
    Unsettled { copied: bool },
    /// The generation is gone from the source: converge on what it holds.
    Gone,
    /// The copy did not verify: the source may have moved on (a server that
    /// does not enforce the copy's precondition copies the newer
    /// generation), so converge, which keeps a replica that verifies against
    /// the live source and replaces any other; if it fails, the replica is
    /// deleted rather than left with bytes nobody verified.
    Unverified,
}

/// A finalize of `object`: its generation, as the event describes it, is
/// copied to every region at once (a large object only where the replica
/// does not already verify); then the source is read once to settle the
/// copies ([`crate::settle`]). A region whose copy found the generation
/// gone, or did not verify, or that the source moved on from, converges on
/// what the source holds now.
async fn copy_finalized(
    store: &dyn ObjectStore,
    asset: &BucketAsset,
    object: &StorageObject,
    event_time: DateTime<Utc>,
) -> Vec<(String, Result<Converged, SyncError>)> {
    let source = ObjectRef::new(object.bucket.as_str(), object.name.as_str());
    let source_time = object.updated.or(object.time_created).unwrap_or(event_time);
    let described = ObjectMeta {
        object: source.clone(),
        generation: object.generation,
        size: object.size,
        crc32c: object.crc32c,
        content_type: object.content_type.clone(),
        metadata: object.metadata.clone(),
        updated: source_time,
    };
    let replicated = |copied| Converged::Replicated {
        generation: object.generation,
        source_time,
        copied,
    };
    let failed = |region: &str, source: StorageError| SyncError::Storage {
        asset: asset.id.to_string(),
        region: region.to_string(),
        source,
    };
    let copies = join_all(asset.replicas.iter().map(|(region, bucket)| {
        let replica = ObjectRef::new(bucket.as_str(), object.name.as_str());
        let described = &described;
        async move {
            let region = region.as_str();
            if object.size >= COPY_WITHOUT_LOOKING_BELOW {
                match existing_replica(store, described, &replica).await {
                    Ok(Some(_)) => return (region, Ok(Copied::Unsettled { copied: false })),
                    Ok(None) => {}
                    Err(error) => return (region, Err(failed(region, error))),
                }
            }
            let copied = match replicate(store, described, &replica).await {
                Ok(_) => Ok(Copied::Unsettled { copied: true }),
                Err(StorageError::PreconditionFailed { .. } | StorageError::NotFound { .. }) => {
                    Ok(Copied::Gone)
                }
                Err(StorageError::Verification { .. }) => Ok(Copied::Unverified),
                Err(error) => Err(failed(region, error)),
            };
            (region, copied)
        }
    }))
    .await;

    let live = if copies
        .iter()
        .any(|(_, copied)| matches!(copied, Ok(Copied::Unsettled { .. })))
    {
        let held = holds_generation(store, &source, object.generation).await;
        Some(held.map_err(|error| error.to_string()))
    } else {
        None
    };
    join_all(copies.into_iter().map(|(region, copied)| {
        let live = &live;
        let source = &source;
        async move {
            let result = match copied {
                Ok(Copied::Unsettled { copied }) => match live {
                    Some(Ok(true)) => Ok(replicated(copied)),
                    Some(Err(detail)) => Err(SyncError::NotSettled {
                        asset: asset.id.to_string(),
                        region: region.to_string(),
                        object: source.clone(),
                        detail: detail.clone(),
                    }),
                    _ => converge_in(store, asset, region, source).await,
                },
                Ok(Copied::Gone) => converge_in(store, asset, region, source).await,
                Ok(Copied::Unverified) => {
                    let result = converge_in(store, asset, region, source).await;
                    if result.is_err() {
                        let _ = store.delete(&replica_of(asset, region, source), None).await;
                    }
                    result
                }
                Err(error) => Err(error),
            };
            (region.to_string(), result)
        }
    }))
    .await
}

/// The replica of `source` in `region`.
fn replica_of(asset: &BucketAsset, region: &str, source: &ObjectRef) -> ObjectRef {
    let bucket = asset.replica_bucket(region).unwrap_or_default();
    ObjectRef::new(bucket, source.name.as_str())
}

/// [`converge`] of `source`'s replica in `region`.
async fn converge_in(
    store: &dyn ObjectStore,
    asset: &BucketAsset,
    region: &str,
    source: &ObjectRef,
) -> Result<Converged, SyncError> {
    converge(
        store,
        asset,
        region,
        source,
        &replica_of(asset, region, source),
    )
    .await
}

/// The ledger observation of `state` in `region`; `event_generation` is the
/// generation the event reported, the newest known deleted one when the
/// source turned out absent.
pub fn observation(
    region: &str,
    state: &Converged,
    event_generation: i64,
    seen_at: DateTime<Utc>,
) -> Observation {
    match state {
        Converged::Replicated { generation, .. } => Observation::Replicated {
            region: region.to_string(),
            generation: *generation,
        },
        Converged::Absent { replica_deleted } => Observation::Deleted {
            region: region.to_string(),
            generation: event_generation,
            at: seen_at,
            replica_deleted: *replica_deleted,
        },
    }
}
