//! The `restore` drill: can training resume and data be served in the
//! target region? For each checkpoint location replicated there, the newest
//! checkpoint complete there (its marker present: the marker is written
//! last) is read back in full, every shard's bytes checked against the
//! CRC32C the replica records and that against the source's, and the read timed: the training part of
//! the RTO. For each replica bucket, up to [`SAMPLE_OBJECTS`] objects spread
//! over the source listing are compared with their replicas; for each
//! replica dataset, every table's row count with the source's. What it
//! finds goes into the run record as findings, checks and measurements.
//!
//! An object or table changed at the source more recently than the
//! workload's RPO allows may legitimately not be in the replica yet: it is
//! counted as pending, named in the finding, and does not fail the drill.
//! The source write time decides it (data-sync's ledger records deletes and
//! repairs only, not which generation each replica holds).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use lifeboat_checkpoint_fanout::checkpoint::{Checkpoint, CheckpointError, committed, shards_in};
use lifeboat_data_sync::tables::split_dataset;
use lifeboat_shared::records::drill_run::{DrillRun, TargetCheck};
use lifeboat_shared::server::Shutdown;
use lifeboat_shared::state::StateStore;
use lifeboat_shared::storage::{ObjectMeta, ObjectStore, StorageError};
use lifeboat_shared::topology::{
    BucketAsset, CheckpointLocation, DatasetAsset, Drill, Duration, Topology, Workload,
};
use lifeboat_shared::warehouse::{TableRef, Warehouse, WarehouseError};

/// The most objects sampled per replica bucket.
pub const SAMPLE_OBJECTS: usize = 20;

/// The most source objects listed to sample from, so a bucket of millions
/// costs a few listing pages, not thousands.
pub const MAX_LISTED: usize = 10_000;

/// Shards read at once: a restoring training job reads its shards in
/// parallel too.
pub const READ_PARALLELISM: usize = 8;

/// What a restore reads: the topology and the backends holding the
/// sources and the replicas.
#[derive(Clone, Debug)]
pub struct RestoreContext {
    /// The deployment.
    pub topology: Arc<Topology>,
    /// Every bucket, source and replicas.
    pub storage: Arc<dyn ObjectStore>,
    /// Every dataset, source and replicas.
    pub warehouse: Arc<dyn Warehouse>,
    /// The state store (the other functions' records).
    pub state: Arc<dyn StateStore>,
}

/// Why a restore stopped before judging every asset.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The abort signal fired; the run holds what was found until then.
    #[error("restore drill {drill}: aborted")]
    Aborted {
        /// The drill's id.
        drill: String,
    },
    /// The drill names a workload the topology does not have.
    #[error("restore drill {drill}: workload {workload} is not in the topology")]
    UnknownWorkload {
        /// The drill's id.
        drill: String,
        /// The workload named.
        workload: String,
    },
}

/// Runs the `restore` drill `drill` and records what it found in `run`.
/// Problems with the replicas are findings and failed checks, not errors;
/// an error means the drill could not go on (aborted, or no such
/// workload).
pub async fn restore(
    context: &RestoreContext,
    drill: &Drill,
    run: &mut DrillRun,
    abort: &Shutdown,
) -> Result<(), RestoreError> {
    let workload = context
        .topology
        .workload(drill.workload.as_str())
        .ok_or_else(|| RestoreError::UnknownWorkload {
            drill: drill.id.to_string(),
            workload: drill.workload.to_string(),
        })?;
    let job = Job {
        context,
        workload,
        region: drill.target_region.as_str(),
        drill: drill.id.as_str(),
        abort,
    };
    job.checkpoints(run).await?;
    job.buckets(run).await?;
    job.tables(run).await?;
    Ok(())
}

/// One restore: what every part reads.
struct Job<'a> {
    context: &'a RestoreContext,
    workload: &'a Workload,
    region: &'a str,
    drill: &'a str,
    abort: &'a Shutdown,
}

/// What reading one checkpoint back found.
#[derive(Default)]
struct ReadBack {
    shards: usize,
    verified: usize,
    bytes: u64,
}

/// One shard's read-back: its bytes, or why it is bad.
type ShardRead = Result<u64, String>;

impl Job<'_> {
    fn aborted(&self) -> RestoreError {
        RestoreError::Aborted {
            drill: self.drill.to_string(),
        }
    }

    fn check_abort(&self) -> Result<(), RestoreError> {
        if self.abort.is_triggered() {
            Err(self.aborted())
        } else {
            Ok(())
        }
    }

    /// Whether a source change at `at` is newer than the RPO allows a
    /// replica to lack.
    fn within_rpo(&self, at: DateTime<Utc>) -> bool {
        (Utc::now() - at)
            .to_std()
            .map_or(true, |age| age <= self.workload.target_rpo().get())
    }

    fn rpo(&self) -> Duration {
        self.workload.target_rpo()
    }

    /// Reads back the newest complete checkpoint of every location
    /// replicated into the region.
    async fn checkpoints(&self, run: &mut DrillRun) -> Result<(), RestoreError> {
        let locations: Vec<(&CheckpointLocation, &str)> = self
            .workload
            .assets
            .checkpoints
            .iter()
            .filter_map(|l| {
                l.replicas
                    .iter()
                    .find(|(r, _)| r.as_str() == self.region)
                    .map(|(_, bucket)| (l, bucket.as_str()))
            })
            .collect();
        if locations.is_empty() {
            return Ok(());
        }
        let started = Utc::now();
        let mut total = ReadBack::default();
        let mut seconds = 0.0;
        let mut unread = Vec::new();
        for (location, bucket) in locations {
            self.check_abort()?;
            match self.read_back(run, location, bucket).await? {
                Some((read, took)) => {
                    total.shards += read.shards;
                    total.verified += read.verified;
                    total.bytes += read.bytes;
                    seconds += took;
                }
                None => unread.push(location.id.to_string()),
            }
        }
        run.phase("checkpoint-read", started, Utc::now());
        run.measurements.checkpoint_read_seconds = Some(seconds);
        let mut measured = format!("{} of {}", total.verified, total.shards);
        if !unread.is_empty() {
            measured.push_str(&format!("; no checkpoint read in {}", unread.join(", ")));
        }
        run.checks.push(TargetCheck {
            name: "checkpoint shards verified".to_string(),
            target: "all".to_string(),
            measured,
            held: unread.is_empty() && total.verified == total.shards,
        });
        let rto = self.workload.target_rto();
        run.checks.push(TargetCheck {
            name: "checkpoint read time".to_string(),
            target: format!("≤ {} s (RTO)", rto.as_secs()),
            measured: format!("{seconds:.1} s"),
            held: unread.is_empty() && seconds <= rto.get().as_secs_f64(),
        });
        Ok(())
    }

    /// Reads back the newest checkpoint of `location` complete in `bucket`;
    /// `None` when there is none to read (a finding says why).
    async fn read_back(
        &self,
        run: &mut DrillRun,
        location: &CheckpointLocation,
        bucket: &str,
    ) -> Result<Option<(ReadBack, f64)>, RestoreError> {
        let store = self.context.storage.as_ref();
        let asset = location.id.as_str();
        let newest = match committed(store, location, bucket).await {
            Ok(complete) => complete.into_iter().next(),
            Err(error) => {
                run.find(asset, false, format!("cannot list gs://{bucket}: {error}"));
                return Ok(None);
            }
        };
        let Some(newest) = newest else {
            run.find(
                asset,
                false,
                format!(
                    "no complete checkpoint in gs://{bucket}/{} (no commit marker)",
                    location.prefix
                ),
            );
            return Ok(None);
        };
        let checkpoint = Checkpoint {
            workload: self.workload,
            location,
            directory: newest.directory.clone(),
            step: newest.step,
        };
        let replica = match shards_in(store, &checkpoint, bucket, READ_PARALLELISM).await {
            Ok(shards) => shards,
            Err(error) => {
                let shard = matches!(error, CheckpointError::MissingShard { .. });
                let what = if shard { "shard missing" } else { "unreadable" };
                run.find(
                    asset,
                    false,
                    format!("step {}: {what}: {error}", newest.step),
                );
                return Ok(None);
            }
        };
        // The source may have dropped the step (its own retention) or be
        // unreachable: then each shard is judged by the replica's metadata.
        let source = shards_in(
            store,
            &checkpoint,
            location.bucket.as_str(),
            READ_PARALLELISM,
        )
        .await;
        let source: BTreeMap<String, ObjectMeta> = match source {
            Ok(shards) => shards
                .into_iter()
                .map(|s| (s.object.name.clone(), s))
                .collect(),
            Err(error) => {
                run.find(
                    asset,
                    true,
                    format!(
                        "step {}: the source's shards cannot be read ({error}); each shard \
                         is checked against the replica's recorded CRC32C only",
                        newest.step
                    ),
                );
                BTreeMap::new()
            }
        };
        let mut read = ReadBack {
            shards: replica.len(),
            ..ReadBack::default()
        };
        let present: Vec<&str> = replica.iter().map(|s| s.object.name.as_str()).collect();
        for name in source.keys().filter(|n| !present.contains(&n.as_str())) {
            read.shards += 1;
            run.find(
                asset,
                false,
                format!(
                    "step {}: shard {name} is missing from gs://{bucket}",
                    newest.step
                ),
            );
        }
        let started = Instant::now();
        let results: Vec<(ObjectMeta, ShardRead)> = futures::stream::iter(replica)
            .map(|shard| {
                let expected = source.get(&shard.object.name).cloned();
                async move {
                    if self.abort.is_triggered() {
                        return Err(self.aborted());
                    }
                    let outcome = read_shard(store, &shard, expected.as_ref()).await;
                    Ok((shard, outcome))
                }
            })
            .buffered(READ_PARALLELISM)
            .try_collect()
            .await?;
        let seconds = started.elapsed().as_secs_f64();
        for (shard, outcome) in results {
            match outcome {
                Ok(bytes) => {
                    read.verified += 1;
                    read.bytes += bytes;
                }
                Err(problem) => run.find(
                    asset,
                    false,
                    format!("step {}: shard {}: {problem}", newest.step, shard.object),
                ),
            }
        }
        let megabytes_per_second = if seconds > 0.0 {
            read.bytes as f64 / 1e6 / seconds
        } else {
            0.0
        };
        let whole = read.verified == read.shards;
        run.find(
            asset,
            whole,
            format!(
                "step {} in gs://{bucket}/{}: {} of {} shards verified, {} bytes read back in \
                 {seconds:.2} s ({megabytes_per_second:.1} MB/s)",
                newest.step, newest.directory, read.verified, read.shards, read.bytes
            ),
        );
        tracing::info!(
            asset,
            step = newest.step,
            shards = read.shards,
            verified = read.verified,
            bytes = read.bytes,
            seconds,
            "checkpoint read back"
        );
        Ok(Some((read, seconds)))
    }

    /// Samples every replica bucket of the workload in the region.
    async fn buckets(&self, run: &mut DrillRun) -> Result<(), RestoreError> {
        let mut sampled = 0;
        let mut matched = 0;
        let mut held = true;
        let mut any = false;
        for asset in &self.workload.assets.buckets {
            let Some(replica) = asset.replica_bucket(self.region) else {
                continue;
            };
            any = true;
            let sample = self.sample_bucket(run, asset, replica).await?;
            sampled += sample.sampled;
            matched += sample.matched;
            held &= sample.ok;
        }
        if any {
            run.checks.push(TargetCheck {
                name: "sampled objects matched".to_string(),
                target: format!(
                    "all (objects written in the last {} s, within the RPO, excepted)",
                    self.rpo().as_secs()
                ),
                measured: format!("{matched} of {sampled}"),
                held,
            });
        }
        Ok(())
    }

    /// Compares up to [`SAMPLE_OBJECTS`] objects of `asset`'s source,
    /// spread over its listing, with their replicas in `replica`.
    async fn sample_bucket(
        &self,
        run: &mut DrillRun,
        asset: &BucketAsset,
        replica: &str,
    ) -> Result<Sample, RestoreError> {
        let store = self.context.storage.as_ref();
        let id = asset.id.as_str();
        let listed = match list_some(store, asset.source.as_str(), MAX_LISTED).await {
            Ok(listed) => listed,
            Err(error) => {
                run.find(id, false, format!("cannot list the source: {error}"));
                return Ok(Sample::failed());
            }
        };
        let mut sample = Sample {
            ok: true,
            ..Sample::default()
        };
        let (mut missing, mut different, mut pending) = (Vec::new(), Vec::new(), Vec::new());
        for source in spread(&listed, SAMPLE_OBJECTS) {
            self.check_abort()?;
            sample.sampled += 1;
            let there = store
                .head(&lifeboat_shared::storage::ObjectRef::new(
                    replica,
                    source.object.name.clone(),
                ))
                .await;
            let problem = match there {
                Ok(copy) if source.verifies(&copy) => {
                    sample.matched += 1;
                    continue;
                }
                Ok(copy) => (
                    &mut different,
                    format!(
                        "{} ({} bytes crc32c {:08x}, source {} bytes {:08x})",
                        source.object.name, copy.size, copy.crc32c, source.size, source.crc32c
                    ),
                ),
                Err(StorageError::NotFound { .. }) => (&mut missing, source.object.name.clone()),
                Err(error) => (&mut different, format!("{} ({error})", source.object.name)),
            };
            if self.within_rpo(source.updated) {
                pending.push(source.object.name.clone());
            } else {
                problem.0.push(problem.1);
            }
        }
        sample.ok = missing.is_empty() && different.is_empty();
        let mut detail = format!(
            "gs://{replica}: sampled {} of {} source objects listed, {} matched",
            sample.sampled,
            listed.len(),
            sample.matched
        );
        if !pending.is_empty() {
            detail.push_str(&format!(
                "; not yet there but written within the RPO: {}",
                pending.join(", ")
            ));
        }
        if !missing.is_empty() {
            detail.push_str(&format!("; missing: {}", missing.join(", ")));
        }
        if !different.is_empty() {
            detail.push_str(&format!("; different: {}", different.join(", ")));
        }
        run.find(id, sample.ok, detail);
        Ok(sample)
    }

    /// Compares the row count of every table of every replica dataset of
    /// the workload in the region with its source's.
    async fn tables(&self, run: &mut DrillRun) -> Result<(), RestoreError> {
        let mut tables = 0;
        let mut equal = 0;
        let mut held = true;
        let mut any = false;
        for asset in &self.workload.assets.datasets {
            let Some((_, replica)) = asset
                .replicas
                .iter()
                .find(|(r, _)| r.as_str() == self.region)
            else {
                continue;
            };
            any = true;
            let counted = self.count_tables(run, asset, replica.as_str()).await?;
            tables += counted.sampled;
            equal += counted.matched;
            held &= counted.ok;
        }
        if any {
            run.checks.push(TargetCheck {
                name: "table row counts equal".to_string(),
                target: format!(
                    "all (tables changed in the last {} s, within the RPO, excepted)",
                    self.rpo().as_secs()
                ),
                measured: format!("{equal} of {tables}"),
                held,
            });
        }
        Ok(())
    }

    async fn count_tables(
        &self,
        run: &mut DrillRun,
        asset: &DatasetAsset,
        replica: &str,
    ) -> Result<Sample, RestoreError> {
        let warehouse = self.context.warehouse.as_ref();
        let project = self.context.topology.project().as_str();
        let (source_project, source_dataset) = split_dataset(asset.source.as_str(), project);
        let (replica_project, replica_dataset) = split_dataset(replica, project);
        let names = match warehouse.list_tables(source_project, source_dataset).await {
            Ok(names) => names,
            Err(error) => {
                run.find(
                    asset.id.as_str(),
                    false,
                    format!("cannot list the source dataset: {error}"),
                );
                return Ok(Sample::failed());
            }
        };
        let mut counted = Sample {
            ok: true,
            ..Sample::default()
        };
        for name in names {
            self.check_abort()?;
            counted.sampled += 1;
            let source = TableRef::new(source_project, source_dataset, name.as_str());
            let copy = TableRef::new(replica_project, replica_dataset, name.as_str());
            let finding = format!("{}/{name}", asset.id);
            let (ok, detail) = self.compare_table(&source, &copy).await;
            if ok {
                counted.matched += 1;
            }
            counted.ok &= ok;
            run.find(&finding, ok, detail);
        }
        Ok(counted)
    }

    /// Whether `copy` holds as many rows as `source` (or may lag it, the
    /// source having changed within the RPO), and what was found. The
    /// counts are the tables' metadata (`tables.get`): no query job runs,
    /// so a drill needs only metadata access to the datasets.
    async fn compare_table(&self, source: &TableRef, copy: &TableRef) -> (bool, String) {
        let warehouse = self.context.warehouse.as_ref();
        let (rows, changed) = match warehouse.table(source).await {
            Ok(meta) => (meta.num_rows, meta.last_modified),
            Err(error) => return (false, format!("cannot read the source {source}: {error}")),
        };
        let copied = match warehouse.table(copy).await {
            Ok(meta) => meta.num_rows,
            Err(WarehouseError::NotFound { .. }) => {
                return (
                    false,
                    format!("{copy} is missing; {source} has {rows} rows"),
                );
            }
            Err(error) => return (false, format!("cannot read {copy}: {error}")),
        };
        if copied == rows {
            (true, format!("{copy}: {copied} rows, as {source}"))
        } else if self.within_rpo(changed) {
            (
                true,
                format!(
                    "{copy}: {copied} rows, {source} {rows}; the source changed at {changed}, \
                     within the RPO"
                ),
            )
        } else {
            (
                false,
                format!("{copy}: {copied} rows, but {source} has {rows}"),
            )
        }
    }
}

/// How many of the things compared matched, and whether the asset holds.
#[derive(Default)]
struct Sample {
    sampled: usize,
    matched: usize,
    ok: bool,
}

impl Sample {
    fn failed() -> Self {
        Self::default()
    }
}

/// Reads `shard` in full (the store's read fails when the bytes do not
/// have the size and CRC32C its metadata records) and checks that metadata
/// against the source's, when known; its size when all is well.
async fn read_shard(
    store: &dyn ObjectStore,
    shard: &ObjectMeta,
    source: Option<&ObjectMeta>,
) -> ShardRead {
    let (meta, mut body) = store
        .get(&shard.object)
        .await
        .map_err(|e| format!("cannot be read: {e}"))?;
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        size += chunk.map_err(|e| format!("read back wrong: {e}"))?.len() as u64;
    }
    if let Some(source) = source
        && !source.verifies(&meta)
    {
        return Err(format!(
            "CRC32C mismatch: {} bytes with CRC32C {:08x}, the source {} has {} bytes {:08x}",
            meta.size, meta.crc32c, source.object, source.size, source.crc32c
        ));
    }
    Ok(size)
}

/// The first `limit` objects of `bucket`, in name order.
async fn list_some(
    store: &dyn ObjectStore,
    bucket: &str,
    limit: usize,
) -> Result<Vec<ObjectMeta>, StorageError> {
    let mut objects = Vec::new();
    let mut token: Option<String> = None;
    while objects.len() < limit {
        let page = store.list(bucket, "", token.as_deref()).await?;
        objects.extend(page.objects);
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    objects.truncate(limit);
    Ok(objects)
}

/// Up to `count` items of `items`, evenly spread from its first.
fn spread<T>(items: &[T], count: usize) -> impl Iterator<Item = &T> {
    let taken = items.len().min(count);
    (0..taken).map(move |i| &items[i * items.len() / taken])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_spread_over_the_listing() {
        let items: Vec<usize> = (0..100).collect();
        let picked: Vec<usize> = spread(&items, 4).copied().collect();
        assert_eq!(picked, [0, 25, 50, 75]);
        let few = [1, 2];
        assert_eq!(spread(&few, 20).count(), 2);
        assert_eq!(spread::<u8>(&[], 20).count(), 0);
    }
}
