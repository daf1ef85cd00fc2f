//! The fan-out itself: every shard of one checkpoint copied server-side to
//! each target region's bucket, each copy verified (size and CRC32C), and
//! only then the marker, so a region never shows a checkpoint it does not
//! wholly hold. Regions proceed independently: one that fails holds back
//! none of the others.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use lifeboat_shared::pause::{self, Pause};
use lifeboat_shared::storage::replica::{holds_generation, replicate};
use lifeboat_shared::storage::{ObjectMeta, ObjectRef, ObjectStore, StorageError};
use lifeboat_shared::topology::{BucketName, RegionId};
use serde::Serialize;
use tracing::Instrument;

use crate::checkpoint::{Checkpoint, list_all};

/// Copies in flight per region unless told otherwise.
pub const DEFAULT_PARALLELISM: usize = 64;

/// Why one region did not get the checkpoint.
#[derive(Debug, thiserror::Error)]
#[error("{asset} step {step} in {region}: {problem}")]
pub struct RegionError {
    /// The checkpoint location's id.
    pub asset: String,
    /// The checkpoint's step.
    pub step: u64,
    /// The region that failed.
    pub region: RegionId,
    /// What went wrong.
    #[source]
    pub problem: RegionProblem,
}

/// What went wrong in one region; every variant names the object and why.
#[derive(Debug, thiserror::Error)]
pub enum RegionProblem {
    /// The shard was rewritten in the source after it was listed.
    #[error(
        "shard {shard} changed while it was copied (generation {generation} is no longer the live one): {source}"
    )]
    ShardChanged {
        /// The source shard.
        shard: ObjectRef,
        /// The generation that was being copied.
        generation: i64,
        /// What showed it: a failed precondition, or a copy of the newer
        /// generation that did not verify against the listed one.
        source: StorageError,
    },
    /// The copy's size or CRC32C differ from the source's.
    #[error("shard {shard} failed verification: {source}")]
    ShardUnverified {
        /// The source shard.
        shard: ObjectRef,
        /// The verification failure.
        source: StorageError,
    },
    /// The copy failed.
    #[error("shard {shard} could not be copied: {source}")]
    ShardCopy {
        /// The source shard.
        shard: ObjectRef,
        /// The storage failure.
        source: StorageError,
    },
    /// The replicas already there could not be listed, or a stale marker
    /// could not be removed.
    #[error("preparing {bucket}/{directory}: {source}")]
    Destination {
        /// The replica bucket.
        bucket: String,
        /// The checkpoint directory.
        directory: String,
        /// The storage failure.
        source: StorageError,
    },
    /// Replication into the region is paused for the workload (a
    /// `replication-isolation` drill): nothing was copied, and the region
    /// counts as not holding the checkpoint until a later delivery copies
    /// it.
    #[error("replication paused by drill run {run} until {until}")]
    Paused {
        /// The drill run that paused it.
        run: String,
        /// When the pause ends by itself.
        until: DateTime<Utc>,
    },
    /// Every shard is verified but the marker could not be written.
    #[error("marker {marker} could not be written: {source}")]
    Marker {
        /// The source marker.
        marker: ObjectRef,
        /// The storage failure.
        source: StorageError,
    },
}

/// One region that now holds the checkpoint, committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RegionCommit {
    /// The region.
    #[serde(serialize_with = "region_id")]
    pub region: RegionId,
    /// Its replica bucket.
    pub bucket: String,
    /// Shards copied by this fan-out.
    pub shards_copied: usize,
    /// Shards that were already there and verified.
    pub shards_present: usize,
    /// Bytes copied by this fan-out.
    pub bytes_copied: u64,
    /// Whether the checkpoint was already committed there (a duplicate).
    pub already_committed: bool,
    /// How long the region took, from the start of the fan-out to its marker.
    #[serde(serialize_with = "seconds")]
    pub copy_duration: Duration,
    /// When the marker was written (or found).
    pub committed_at: DateTime<Utc>,
}

fn region_id<S: serde::Serializer>(region: &RegionId, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(region.as_str())
}

fn seconds<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

/// What one fan-out achieved, region by region.
#[derive(Debug)]
pub struct FanoutReport {
    /// The checkpoint location's id.
    pub asset: String,
    /// The checkpoint's step.
    pub step: u64,
    /// The number of shards.
    pub shards: usize,
    /// Each region's outcome, in the topology's order.
    pub regions: Vec<Result<RegionCommit, RegionError>>,
}

impl FanoutReport {
    /// Whether every target region now holds the checkpoint.
    pub fn is_complete(&self) -> bool {
        self.regions.iter().all(Result::is_ok)
    }

    /// The report as JSON: complete regions with their figures, failed ones
    /// with the error.
    pub fn to_json(&self) -> serde_json::Value {
        let mut complete = Vec::new();
        let mut failed = BTreeMap::new();
        for outcome in &self.regions {
            match outcome {
                Ok(commit) => complete.push(serde_json::to_value(commit).unwrap_or_default()),
                Err(error) => {
                    failed.insert(error.region.to_string(), error.to_string());
                }
            }
        }
        serde_json::json!({
            "asset": self.asset,
            "step": self.step,
            "shards": self.shards,
            "complete": complete,
            "failed": failed,
        })
    }
}

/// Copies `shards` and then `marker` of `checkpoint` to every replica
/// bucket of its location, at most `parallelism` copies in flight per
/// region; a region that one of `pauses` covers for the checkpoint's
/// workload gets nothing and fails with [`RegionProblem::Paused`].
pub async fn fan_out(
    store: &dyn ObjectStore,
    checkpoint: &Checkpoint<'_>,
    marker: &ObjectMeta,
    shards: &[ObjectMeta],
    parallelism: usize,
    pauses: &[Pause],
) -> FanoutReport {
    let job = Job {
        store,
        checkpoint,
        marker,
        shards,
        parallelism: parallelism.max(1),
        started: Instant::now(),
        pauses,
    };
    let regions = checkpoint.location.replicas.iter().map(|(region, bucket)| {
        let span = tracing::info_span!(
            "region",
            asset = %checkpoint.location.id,
            step = checkpoint.step,
            region = %region,
        );
        job.commit_region(region, bucket).instrument(span)
    });
    FanoutReport {
        asset: checkpoint.location.id.to_string(),
        step: checkpoint.step,
        shards: shards.len(),
        regions: futures::future::join_all(regions).await,
    }
}

/// One fan-out: what every region copies.
struct Job<'a> {
    store: &'a dyn ObjectStore,
    checkpoint: &'a Checkpoint<'a>,
    marker: &'a ObjectMeta,
    shards: &'a [ObjectMeta],
    parallelism: usize,
    started: Instant,
    pauses: &'a [Pause],
}

impl Job<'_> {
    /// Brings one region to hold the checkpoint: the shards missing or
    /// different there are copied and verified, then the marker is written.
    /// A paused region is left as it is.
    async fn commit_region(
        &self,
        region: &RegionId,
        bucket: &BucketName,
    ) -> Result<RegionCommit, RegionError> {
        let Job {
            store,
            checkpoint,
            marker,
            shards,
            parallelism,
            started,
            pauses,
        } = *self;
        let fail = |problem| RegionError {
            asset: checkpoint.location.id.to_string(),
            step: checkpoint.step,
            region: region.clone(),
            problem,
        };
        if let Some(paused) =
            pause::covering(pauses, checkpoint.workload.id.as_str(), region.as_str())
        {
            tracing::info!(run = %paused.run, until = %paused.until, "replication into the region paused by a drill; nothing copied");
            return Err(fail(RegionProblem::Paused {
                run: paused.run.clone(),
                until: paused.until,
            }));
        }
        let bucket = bucket.as_str();
        let destination = |object: &ObjectRef| ObjectRef::new(bucket, object.name.clone());
        let prepare = |source| {
            fail(RegionProblem::Destination {
                bucket: bucket.to_string(),
                directory: checkpoint.directory.clone(),
                source,
            })
        };
        // One listing tells which shards are already verified there (a retry
        // after a crash copies only the rest).
        let present: BTreeMap<String, ObjectMeta> = list_all(store, bucket, &checkpoint.directory)
            .await
            .map_err(prepare)?
            .into_iter()
            .map(|meta| (meta.object.name.clone(), meta))
            .collect();
        let verified_there = |source: &ObjectMeta| matches!(present.get(&source.object.name), Some(r) if source.verifies(r));
        let missing: Vec<&ObjectMeta> = shards.iter().filter(|s| !verified_there(s)).collect();
        let marker_there = present.get(&marker.object.name);
        if missing.is_empty() && marker_there.is_some_and(|m| marker.verifies(m)) {
            return Ok(RegionCommit {
                region: region.clone(),
                bucket: bucket.to_string(),
                shards_copied: 0,
                shards_present: shards.len(),
                bytes_copied: 0,
                already_committed: true,
                copy_duration: started.elapsed(),
                committed_at: Utc::now(),
            });
        }
        // A marker over shards that are about to change would make a half
        // copied checkpoint visible: take it down first.
        if let Some(stale) = marker_there {
            match store.delete(&stale.object, Some(stale.generation)).await {
                Ok(()) | Err(StorageError::NotFound { .. }) => {}
                Err(source) => return Err(prepare(source)),
            }
        }
        let copied = AtomicUsize::new(0);
        let bytes = AtomicU64::new(0);
        futures::stream::iter(missing.iter().map(Ok))
            .try_for_each_concurrent(parallelism, |shard| {
                let copied = &copied;
                let bytes = &bytes;
                async move {
                    if let Err(source) = replicate(store, shard, &destination(&shard.object)).await
                    {
                        return Err(fail(shard_problem(store, shard, source).await));
                    }
                    copied.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(shard.size, Ordering::Relaxed);
                    Ok(())
                }
            })
            .await?;
        replicate(store, marker, &destination(&marker.object))
            .await
            .map_err(|source| {
                fail(RegionProblem::Marker {
                    marker: marker.object.clone(),
                    source,
                })
            })?;
        let commit = RegionCommit {
            region: region.clone(),
            bucket: bucket.to_string(),
            shards_copied: copied.into_inner(),
            shards_present: shards.len() - missing.len(),
            bytes_copied: bytes.into_inner(),
            already_committed: false,
            copy_duration: started.elapsed(),
            committed_at: Utc::now(),
        };
        tracing::info!(
            shards_copied = commit.shards_copied,
            bytes_copied = commit.bytes_copied,
            seconds = commit.copy_duration.as_secs_f64(),
            "checkpoint committed in region"
        );
        Ok(commit)
    }
}

/// Names what went wrong with one shard's copy. A copy that does not
/// verify is a changed shard when the source no longer holds the listed
/// generation (a server that does not enforce the copy's precondition
/// copies the newer one), damaged bytes otherwise.
async fn shard_problem(
    store: &dyn ObjectStore,
    shard: &ObjectMeta,
    source: StorageError,
) -> RegionProblem {
    let changed = match &source {
        StorageError::PreconditionFailed { .. } | StorageError::NotFound { .. } => true,
        StorageError::Verification { .. } => !matches!(
            holds_generation(store, &shard.object, shard.generation).await,
            Ok(true)
        ),
        _ => false,
    };
    if changed {
        return RegionProblem::ShardChanged {
            shard: shard.object.clone(),
            generation: shard.generation,
            source,
        };
    }
    match source {
        StorageError::Verification { .. } => RegionProblem::ShardUnverified {
            shard: shard.object.clone(),
            source,
        },
        source => RegionProblem::ShardCopy {
            shard: shard.object.clone(),
            source,
        },
    }
}
