//! The reconcile: what guarantees the RPO when events are lost. For each
//! bucket asset it walks the source listing once, side by side with every
//! replica's listing (all come in name order, one page at a time, so memory
//! stays bounded whatever the bucket holds), copies what is missing or
//! different, applies deletes the events missed and the keep periods that
//! ended, and reports per replica region the drift: the objects the events
//! had not handled.
//!
//! Every repair goes through [`converge`], the same code the events run, so
//! a reconcile racing with events cannot leave an older generation behind.
//!
//! A replica that drifted far (a new, empty replica of a large bucket, or
//! a long outage of its events) is not repaired object by object: once the
//! missing and different objects the walk found for it reach the bulk
//! threshold ([`crate::BulkPath`]), the walk hands the rest of them to a
//! bulk copy engine, which copies the source into the replica after the
//! walk; deletes still go through the repairs. [`RegionReport::bulk`] says
//! what the engine did.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::SinkExt as _;
use futures::StreamExt;
use futures::channel::mpsc;
use lifeboat_shared::storage::replica::replicate;
use lifeboat_shared::storage::{ObjectMeta, ObjectRef, ObjectStore, StorageError};
use lifeboat_shared::topology::{BucketAsset, DeletePolicy};
use lifeboat_shared::transfer::{self, BulkCopy, TransferCounters};
use serde::Serialize;
use tracing::Instrument as _;

use crate::bucket_sync::{Converged, SyncError, converge, observation};
use crate::ledger::{self, Observation};
use crate::settle::{self, PageCost};
use crate::{BulkPath, DataSync};
use lifeboat_shared::records::data_rpo::{AssetKind, RpoRecord};

/// How many repairs run at once.
pub const DEFAULT_CONCURRENCY: usize = 32;
/// How many differences wait for a repair, and how many repairs wait to be
/// settled, per replica region: a few MiB of object metadata per region,
/// whatever the bucket holds.
const QUEUED: usize = 4096;
/// How many names of each kind of drift a report keeps, as examples.
const SAMPLES: usize = 10;

/// What went wrong in a reconcile as a whole (a single object's failure is
/// counted in the report instead, and the walk goes on).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A listing failed, so the walk cannot go on.
    #[error("asset {asset}: listing gs://{bucket}: {source}")]
    Listing {
        /// The bucket asset.
        asset: String,
        /// The bucket being listed (the source or a replica).
        bucket: String,
        /// The failure.
        #[source]
        source: StorageError,
    },
}

/// What one reconcile of one asset in one region found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RegionReport {
    /// The bucket asset.
    pub asset: String,
    /// The replica region.
    pub region: String,
    /// Objects listed in the source so far.
    pub source_objects: u64,
    /// Objects listed in the replica so far.
    pub replica_objects: u64,
    /// Source objects missing in the replica, copied (drift).
    pub copied_missing: u64,
    /// Replicas whose size or CRC32C differed from the source, copied again
    /// (drift).
    pub repaired_different: u64,
    /// Replicas of deleted objects removed: mirrored deletes the events
    /// missed, and keep periods that ended.
    pub deleted: u64,
    /// Replicas of deleted objects kept until their keep period ends.
    pub kept: u64,
    /// Deletes no event had recorded (drift).
    pub missed_deletes: u64,
    /// Objects that could not be repaired; the next reconcile tries again.
    pub failed: u64,
    /// Some names of drifted objects, as examples.
    pub drift_samples: Vec<String>,
    /// The source write time of the oldest change that is still not
    /// replicated (a failed repair), if any.
    pub oldest_unreplicated: Option<DateTime<Utc>>,
    /// The bulk copy the drift called for, if it reached the threshold.
    pub bulk: Option<BulkReport>,
}

/// A bulk copy of a replica that drifted past the threshold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BulkReport {
    /// The engine's job ([`transfer::job_name`]).
    pub job: String,
    /// Missing or different objects the walk handed to the engine instead
    /// of repairing them itself (drift).
    pub handed_over: u64,
    /// The engine's counters, as the copy goes on and at its end.
    pub counters: TransferCounters,
    /// Why the copy failed, if it did: every object handed over then
    /// counts as failed.
    pub error: Option<String>,
}

impl RegionReport {
    /// Objects the events had missed: missing, different or deleted.
    pub fn drift(&self) -> u64 {
        self.copied_missing
            + self.repaired_different
            + self.missed_deletes
            + self.bulk.as_ref().map_or(0, |bulk| bulk.handed_over)
    }

    fn note_drift(&mut self, name: &str) {
        if self.drift_samples.len() < SAMPLES {
            self.drift_samples.push(name.to_string());
        }
    }

    fn note_failure(&mut self, source_time: Option<DateTime<Utc>>) {
        self.failed += 1;
        self.note_unreplicated(source_time);
    }

    fn note_unreplicated(&mut self, source_time: Option<DateTime<Utc>>) {
        if let Some(time) = source_time {
            self.oldest_unreplicated = Some(self.oldest_unreplicated.map_or(time, |t| t.min(time)));
        }
    }
}

/// One bucket listing walked one page at a time, in name order.
struct Listing<'a> {
    store: &'a dyn ObjectStore,
    bucket: &'a str,
    page: std::vec::IntoIter<ObjectMeta>,
    next_token: Option<String>,
    started: bool,
    current: Option<ObjectMeta>,
}

impl<'a> Listing<'a> {
    fn new(store: &'a dyn ObjectStore, bucket: &'a str) -> Self {
        Self {
            store,
            bucket,
            page: Vec::new().into_iter(),
            next_token: None,
            started: false,
            current: None,
        }
    }

    /// Makes [`Listing::current`] the next object, fetching a page if
    /// needed; returns what the page fetched last cost, if one was.
    async fn fill(&mut self) -> Result<Option<PageCost>, StorageError> {
        let mut fetched = None;
        while self.current.is_none() {
            if let Some(object) = self.page.next() {
                self.current = Some(object);
            } else if !self.started || self.next_token.is_some() {
                let timer = Instant::now();
                let page = self
                    .store
                    .list(self.bucket, "", self.next_token.as_deref())
                    .await?;
                fetched = Some(PageCost {
                    time: timer.elapsed(),
                    names: page.objects.len() as u64,
                });
                self.started = true;
                self.next_token = page.next_page_token;
                self.page = page.objects.into_iter();
            } else {
                break;
            }
        }
        Ok(fetched)
    }

    fn current(&self) -> Option<&ObjectMeta> {
        self.current.as_ref()
    }

    /// Takes [`Listing::current`] if it is named `name`.
    fn take_named(&mut self, name: &str) -> Option<ObjectMeta> {
        self.current.take_if(|meta| meta.object.name == name)
    }
}

/// A difference between source and replica found by the walk.
enum Difference {
    /// In the source, not in the replica.
    Missing(ObjectMeta),
    /// In both, with different size or CRC32C.
    Different(ObjectMeta),
    /// In the replica only.
    Orphan(ObjectMeta),
}

/// What repairing one difference did.
enum Repair {
    /// The listed generation was copied; it counts once the source is seen
    /// still holding it ([`settle`]).
    CopiedListed {
        generation: i64,
    },
    Copied,
    Deleted {
        missed: bool,
    },
    Kept {
        missed: bool,
    },
    Nothing,
}

/// Reconciles every bucket asset of the topology in every replica region;
/// `progress` is called as the walk goes on with the report so far.
pub async fn reconcile_all(
    sync: &DataSync,
    concurrency: usize,
    progress: &(dyn Fn(&RegionReport) + Send + Sync),
) -> Result<Vec<RegionReport>, ReconcileError> {
    let assets: Vec<BucketAsset> = sync
        .topology
        .workloads()
        .iter()
        .flat_map(|workload| workload.assets.buckets.iter().cloned())
        .collect();
    let mut reports = Vec::new();
    for asset in &assets {
        let target_seconds = sync.target_rpo_seconds(asset.id.as_str());
        let checked_at = Utc::now();
        let span = tracing::info_span!("reconcile", asset = %asset.id);
        let asset_reports = reconcile_asset(sync, asset, concurrency, progress)
            .instrument(span)
            .await?;
        for report in &asset_reports {
            let record = RpoRecord {
                kind: AssetKind::Bucket,
                asset: report.asset.clone(),
                region: report.region.clone(),
                target_seconds,
                oldest_unreplicated: report.oldest_unreplicated,
                checked_at: Some(checked_at),
                changed_at: None,
                history: Vec::new(),
            };
            if let Err(error) = sync.record_check(&record).await {
                tracing::warn!(asset = %asset.id, region = %report.region, %error, "could not record the RPO check");
            }
        }
        reports.extend(asset_reports);
    }
    Ok(reports)
}

/// Reconciles every replica of `asset` with its source: one walk of the
/// source listing, side by side with each replica's listing, hands each
/// difference to that replica's repairs, which run meanwhile. Returns a
/// report per replica region.
async fn reconcile_asset(
    sync: &DataSync,
    asset: &BucketAsset,
    concurrency: usize,
    progress: &(dyn Fn(&RegionReport) + Send + Sync),
) -> Result<Vec<RegionReport>, ReconcileError> {
    let started = Utc::now();
    // A region a drill has paused is not reconciled (and gets no report,
    // so its RPO record keeps what the events noted there): the first
    // reconcile after the pause repairs it.
    let paused = sync.paused_regions(asset.id.as_str()).await;
    for pause in &paused {
        tracing::info!(region = %pause.region, run = %pause.run, until = %pause.until, "replication paused by a drill; region not reconciled");
    }
    let replicas: Vec<Replica> = asset
        .replicas
        .keys()
        .filter(|region| !paused.iter().any(|p| p.region == region.as_str()))
        .map(|region| Replica {
            repairs: Repairs {
                sync,
                asset,
                region: region.as_str(),
                replica_bucket: asset.replica_bucket(region.as_str()).unwrap_or_default(),
                started,
                concurrency: concurrency.max(1),
            },
            report: Mutex::new(RegionReport {
                asset: asset.id.to_string(),
                region: region.to_string(),
                ..RegionReport::default()
            }),
            handover: Mutex::new(Handover::default()),
        })
        .collect();
    // Measured by the walk before it finds anything to repair.
    let page_cost = Mutex::new(PageCost {
        time: std::time::Duration::ZERO,
        names: 1,
    });
    let (senders, receivers): (Vec<_>, Vec<_>) =
        replicas.iter().map(|_| mpsc::channel(QUEUED)).unzip();
    let (done, finished) = mpsc::channel(QUEUED);
    let walk = walk(sync, asset, &replicas, senders, &page_cost, progress);
    let repairs = futures::future::join_all(
        replicas
            .iter()
            .enumerate()
            .zip(receivers)
            .map(|((index, replica), found)| replica.repair_all(index, found, done.clone())),
    );
    drop(done);
    let settled = settle_all(
        sync,
        asset,
        concurrency.max(1),
        &replicas,
        finished,
        &page_cost,
    );
    let (walked, _, ()) = futures::join!(walk, repairs, settled);
    walked?;
    if let Some(bulk) = &sync.bulk {
        futures::future::join_all(
            replicas
                .iter()
                .map(|replica| replica.bulk_copy(bulk, progress)),
        )
        .await;
    }
    Ok(replicas
        .into_iter()
        .map(|replica| {
            let report = replica
                .report
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner);
            progress(&report);
            tracing::info!(
                region = report.region,
                source_objects = report.source_objects,
                drift = report.drift(),
                failed = report.failed,
                "reconcile done"
            );
            report
        })
        .collect())
}

/// Walks the source listing and every replica's side by side, in name
/// order, and sends each difference to its replica's repairs (`found`, in
/// the order of `replicas`). Notes in `page_cost` what each source page
/// cost.
async fn walk(
    sync: &DataSync,
    asset: &BucketAsset,
    replicas: &[Replica<'_>],
    mut found: Vec<mpsc::Sender<Found>>,
    page_cost: &Mutex<PageCost>,
    progress: &(dyn Fn(&RegionReport) + Send + Sync),
) -> Result<(), ReconcileError> {
    let store = sync.storage.as_ref();
    let listing_error = |bucket: &str, source: StorageError| ReconcileError::Listing {
        asset: asset.id.to_string(),
        bucket: bucket.to_string(),
        source,
    };
    let threshold = sync.bulk.as_ref().map(|bulk| bulk.threshold);
    let mut source = Listing::new(store, asset.source.as_str());
    let mut listings: Vec<Listing> = replicas
        .iter()
        .map(|replica| Listing::new(store, replica.repairs.replica_bucket))
        .collect();
    // How many source names were walked, and how many names in all.
    let (mut position, mut walked) = (0_u64, 0_u64);
    loop {
        let fetched = source
            .fill()
            .await
            .map_err(|e| listing_error(source.bucket, e))?;
        // A page counts when it is as full as the one counted before: the
        // last page, short, would make every page look dear.
        if let Some(cost) = fetched {
            let mut counted = lock(page_cost);
            if cost.names >= counted.names {
                *counted = cost;
            }
        }
        for listing in &mut listings {
            listing
                .fill()
                .await
                .map_err(|e| listing_error(listing.bucket, e))?;
        }
        // The next name in any listing.
        let Some(name) = std::iter::once(&source)
            .chain(&listings)
            .filter_map(Listing::current)
            .map(|meta| meta.object.name.as_str())
            .min()
            .map(str::to_owned)
        else {
            break;
        };
        let listed = source.take_named(&name);
        position += u64::from(listed.is_some());
        for ((replica, listing), sender) in replicas.iter().zip(&mut listings).zip(&mut found) {
            if let Some(difference) = replica
                .compare(listed.as_ref(), listing.take_named(&name))
                .and_then(|difference| replica.hand_over(difference, threshold))
            {
                // The repairs take differences until the walk ends: a send
                // fails only if they are gone, and then nothing is waiting.
                let _ = sender
                    .send(Found {
                        difference,
                        position,
                    })
                    .await;
            }
        }
        walked += 1;
        if walked.is_multiple_of(1000) {
            replicas
                .iter()
                .for_each(|replica| progress(&lock(&replica.report)));
        }
    }
    Ok(())
}

/// Settles the copies the replicas' repairs made (`finished`, tagged with
/// the replica's place in `replicas`), in groups of [`QUEUED`] repairs (the
/// last one smaller), and counts every outcome in its replica's report.
/// The repairs go on meanwhile; a large group lets a listing settle many
/// copies where the server makes pages cheap.
async fn settle_all(
    sync: &DataSync,
    asset: &BucketAsset,
    concurrency: usize,
    replicas: &[Replica<'_>],
    finished: mpsc::Receiver<(usize, Repaired)>,
    page_cost: &Mutex<PageCost>,
) {
    let mut groups = finished.chunks(QUEUED);
    while let Some(mut group) = groups.next().await {
        let page = *lock(page_cost);
        settle_group(sync, asset, concurrency, replicas, &mut group, page).await;
        for (index, repaired) in group {
            replicas[index].tally(repaired);
        }
    }
}

/// Settles a group's copies of listed generations with one read of the
/// source per name, whichever replicas it was copied to
/// ([`settle::moved_on`]): every replica copies the generation the one
/// walk of the source listed. Copies whose source moved on meanwhile are
/// converged on what the source holds now; if the source cannot be read,
/// the copies count as failed (the next reconcile finds them again).
async fn settle_group(
    sync: &DataSync,
    asset: &BucketAsset,
    concurrency: usize,
    replicas: &[Replica<'_>],
    group: &mut [(usize, Repaired)],
    page: PageCost,
) {
    let copied = |repaired: &Repaired| match repaired.result {
        Ok(Repair::CopiedListed { generation }) => Some(generation),
        _ => None,
    };
    // The generation each name was copied at.
    let mut generations: BTreeMap<&str, i64> = BTreeMap::new();
    let mut positions = (u64::MAX, 0);
    for (_, repaired) in group.iter() {
        if let Some(generation) = copied(repaired) {
            positions = (
                positions.0.min(repaired.position),
                positions.1.max(repaired.position),
            );
            generations.insert(repaired.name.as_str(), generation);
        }
    }
    // How many source names the copies lie among.
    let span = (positions.1 + 1).saturating_sub(positions.0);
    let copies: Vec<settle::Copy> = generations
        .into_iter()
        .map(|(name, generation)| settle::Copy {
            name: name.to_string(),
            generation,
        })
        .collect();
    let store = sync.storage.as_ref();
    let source_bucket = asset.source.as_str();
    let moved: BTreeSet<String> =
        match settle::moved_on(store, source_bucket, copies, span, page).await {
            Ok(moved) => moved.into_iter().collect(),
            Err(error) => {
                for (index, repaired) in group.iter_mut() {
                    if copied(repaired).is_some() {
                        repaired.result = Err(SyncError::NotSettled {
                            asset: asset.id.to_string(),
                            region: replicas[*index].repairs.region.to_string(),
                            object: ObjectRef::new(source_bucket, repaired.name.as_str()),
                            detail: error.to_string(),
                        });
                    }
                }
                return;
            }
        };
    // Each copy to converge: its place in the group, its replica, its name.
    let redo: Vec<(usize, usize, String)> = group
        .iter()
        .enumerate()
        .filter(|(_, (_, repaired))| copied(repaired).is_some() && moved.contains(&repaired.name))
        .map(|(at, (index, repaired))| (at, *index, repaired.name.clone()))
        .collect();
    let again: Vec<(usize, Result<Repair, SyncError>)> =
        futures::stream::iter(redo)
            .map(|(at, index, name)| async move {
                (at, replicas[index].repairs.reconverge(&name).await)
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    for (at, result) in again {
        group[at].1.result = result;
    }
}

/// Locks `mutex`, whatever a panic elsewhere left in it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A difference the walk found, and how many source names it had walked
/// then (which tells how far apart two copies lie in the source).
struct Found {
    difference: Difference,
    position: u64,
}

/// One replica of the asset being reconciled: its repairs, its report and
/// what the walk handed to the bulk copy.
struct Replica<'a> {
    repairs: Repairs<'a>,
    report: Mutex<RegionReport>,
    handover: Mutex<Handover>,
}

/// The missing and different objects the walk found for one replica, and
/// those of them it handed to the bulk copy.
#[derive(Clone, Copy, Debug, Default)]
struct Handover {
    /// Missing or different objects found so far.
    found: u64,
    /// How many of them were handed over.
    handed: u64,
    /// The oldest source write time among those handed over.
    oldest: Option<DateTime<Utc>>,
}

impl Replica<'_> {
    /// Keeps `difference` for the bulk copy (`None`) once the missing and
    /// different objects found for this replica reach `threshold`;
    /// otherwise gives it back for the repairs. Orphans always go to the
    /// repairs: what a replica keeps of deleted objects is Lifeboat's
    /// decision, never the engine's.
    fn hand_over(&self, difference: Difference, threshold: Option<u64>) -> Option<Difference> {
        let (Difference::Missing(meta) | Difference::Different(meta)) = &difference else {
            return Some(difference);
        };
        let mut handover = lock(&self.handover);
        handover.found += 1;
        if threshold.is_none_or(|threshold| handover.found < threshold) {
            return Some(difference);
        }
        handover.handed += 1;
        handover.oldest = Some(
            handover
                .oldest
                .map_or(meta.updated, |t| t.min(meta.updated)),
        );
        lock(&self.report).note_drift(&meta.object.name);
        None
    }

    /// Copies the source into the replica with the bulk engine if the walk
    /// handed it anything, passing the engine's counters on as `progress`.
    /// If the copy fails, every object handed over counts as failed and the
    /// oldest of them stays unreplicated: the RPO exposure is never
    /// understated.
    async fn bulk_copy(&self, bulk: &BulkPath, progress: &(dyn Fn(&RegionReport) + Send + Sync)) {
        let handover = *lock(&self.handover);
        if handover.handed == 0 {
            return;
        }
        let repairs = &self.repairs;
        let copy = BulkCopy {
            asset: repairs.asset.id.to_string(),
            region: repairs.region.to_string(),
            source_bucket: repairs.asset.source.to_string(),
            replica_bucket: repairs.replica_bucket.to_string(),
        };
        let job = transfer::job_name(&copy);
        // The walk's span names the asset; this one the region and the job.
        let span = tracing::info_span!("bulk_copy", region = %copy.region, job = %job);
        self.copy_in_bulk(bulk, &copy, job, handover, progress)
            .instrument(span)
            .await;
    }

    /// [`Replica::bulk_copy`] once the copy is decided: runs it as `job`
    /// and counts what it did in the report.
    async fn copy_in_bulk(
        &self,
        bulk: &BulkPath,
        copy: &BulkCopy,
        job: String,
        handover: Handover,
        progress: &(dyn Fn(&RegionReport) + Send + Sync),
    ) {
        tracing::info!(
            handed_over = handover.handed,
            threshold = bulk.threshold,
            "drift reached the bulk threshold; copying the bucket in bulk"
        );
        lock(&self.report).bulk = Some(BulkReport {
            job,
            handed_over: handover.handed,
            ..BulkReport::default()
        });
        let moved = |counters: &TransferCounters| {
            let mut report = lock(&self.report);
            if let Some(bulk) = report.bulk.as_mut() {
                bulk.counters = *counters;
            }
            progress(&report);
        };
        let result = bulk.engine.copy_bucket(copy, &moved).await;
        let mut report = lock(&self.report);
        match result {
            Ok(counters) => {
                tracing::info!(
                    copied = counters.objects_copied,
                    skipped = counters.objects_skipped,
                    bytes = counters.bytes_copied,
                    "bulk copy done"
                );
                if let Some(bulk) = report.bulk.as_mut() {
                    bulk.counters = counters;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "bulk copy failed; the objects handed over stay unreplicated");
                if let Some(bulk) = report.bulk.as_mut() {
                    bulk.counters = error.counters().unwrap_or(bulk.counters);
                    bulk.error = Some(error.to_string());
                }
                report.failed += handover.handed;
                report.note_unreplicated(handover.oldest);
            }
        }
        progress(&report);
    }

    /// Compares the replica's object (`replica`, if the replica lists one
    /// under the name being walked) with the source's (`listed`), counts
    /// them, and says what differs.
    fn compare(
        &self,
        listed: Option<&ObjectMeta>,
        replica: Option<ObjectMeta>,
    ) -> Option<Difference> {
        let mut report = lock(&self.report);
        match (listed, replica) {
            (Some(source), None) => {
                report.source_objects += 1;
                Some(Difference::Missing(source.clone()))
            }
            (None, Some(replica)) => {
                report.replica_objects += 1;
                Some(Difference::Orphan(replica))
            }
            (Some(source), Some(replica)) => {
                report.source_objects += 1;
                report.replica_objects += 1;
                (!source.verifies(&replica)).then(|| Difference::Different(source.clone()))
            }
            (None, None) => None,
        }
    }

    /// Repairs each difference the walk sends, `concurrency` at a time,
    /// and sends each outcome to `done`, tagged with `index`, the replica's
    /// place among the asset's replicas.
    async fn repair_all(
        &self,
        index: usize,
        found: mpsc::Receiver<Found>,
        done: mpsc::Sender<(usize, Repaired)>,
    ) {
        let region = tracing::info_span!("replica", region = self.repairs.region);
        // Forwarding fails only if the settling ended first, which it does
        // only once every replica's forwarding has.
        let _ = found
            .map(|found| self.repairs.repaired(found))
            .buffer_unordered(self.repairs.concurrency)
            .map(|repaired| Ok((index, repaired)))
            .forward(done)
            .instrument(region)
            .await;
    }

    /// Counts what a repair did in the report.
    fn tally(&self, repaired: Repaired) {
        let mut report = lock(&self.report);
        let name = repaired.name.as_str();
        match repaired.result {
            Ok(Repair::Copied | Repair::CopiedListed { .. }) => {
                if repaired.missing {
                    report.copied_missing += 1;
                } else {
                    report.repaired_different += 1;
                }
                report.note_drift(name);
            }
            Ok(Repair::Deleted { missed }) => {
                report.deleted += 1;
                if missed {
                    report.missed_deletes += 1;
                    report.note_drift(name);
                }
            }
            Ok(Repair::Kept { missed }) => {
                report.kept += 1;
                if missed {
                    report.missed_deletes += 1;
                    report.note_drift(name);
                }
            }
            Ok(Repair::Nothing) => {}
            Err(error) => {
                tracing::warn!(object = name, %error, "reconcile could not repair");
                report.note_failure(repaired.source_time);
            }
        }
    }
}

/// Repairs of one asset's replica in one region.
struct Repairs<'a> {
    sync: &'a DataSync,
    asset: &'a BucketAsset,
    region: &'a str,
    replica_bucket: &'a str,
    /// When the walk began: deletes it finds are dated from then.
    started: DateTime<Utc>,
    concurrency: usize,
}

/// The outcome of one repair, with what the report needs to know of it.
struct Repaired {
    name: String,
    /// How many source names the walk had walked when it found this.
    position: u64,
    /// The source write time of what was to be copied, if anything.
    source_time: Option<DateTime<Utc>>,
    /// The object was missing (rather than different or orphaned).
    missing: bool,
    result: Result<Repair, SyncError>,
}

impl Repairs<'_> {
    /// Repairs what the walk found.
    async fn repaired(&self, found: Found) -> Repaired {
        let Found {
            difference,
            position,
        } = found;
        let (meta, missing) = match &difference {
            Difference::Missing(meta) => (meta, true),
            Difference::Different(meta) | Difference::Orphan(meta) => (meta, false),
        };
        Repaired {
            name: meta.object.name.clone(),
            position,
            source_time: (!matches!(difference, Difference::Orphan(_))).then_some(meta.updated),
            missing,
            result: self.repair(&difference).await,
        }
    }

    /// Repairs one difference.
    async fn repair(&self, difference: &Difference) -> Result<Repair, SyncError> {
        let (asset, region) = (self.asset, self.region);
        let store = self.sync.storage.as_ref();
        let (Difference::Missing(meta) | Difference::Different(meta) | Difference::Orphan(meta)) =
            difference;
        let name = meta.object.name.as_str();
        let source = ObjectRef::new(asset.source.as_str(), name);
        let replica = ObjectRef::new(self.replica_bucket, name);
        if let Difference::Missing(listed) | Difference::Different(listed) = difference {
            return self.copy_listed(listed, &replica).await;
        }
        let known = ledger::read(self.sync.state.as_ref(), &source.bucket, name)
            .await
            .map_err(|error| SyncError::Ledger {
                asset: asset.id.to_string(),
                object: source.clone(),
                source: error,
            })?
            .ledger;
        // A delete is missed when the ledger has no record of it.
        let missed = known.live || known.deleted_at.is_none();
        if let (Difference::Orphan(_), DeletePolicy::Keep(keep)) = (difference, asset.delete_policy)
        {
            // The source lacked the object when listed: keep the replica
            // until the keep period, counted from when the delete was first
            // seen, ends.
            let seen = if known.live { None } else { known.deleted_at };
            let ends = seen.and_then(|at| {
                chrono::TimeDelta::from_std(keep.get())
                    .ok()
                    .and_then(|period| at.checked_add_signed(period))
            });
            match ends {
                Some(ends) if ends <= Utc::now() => {
                    match store.delete(&replica, Some(meta.generation)).await {
                        Ok(()) | Err(StorageError::NotFound { .. }) => {}
                        Err(error) => {
                            return Err(SyncError::Storage {
                                asset: asset.id.to_string(),
                                region: region.to_string(),
                                source: error,
                            });
                        }
                    }
                    // Re-created meanwhile: bring it back.
                    let after = converge(store, asset, region, &source, &replica).await?;
                    self.record(&source, &after, known.generation).await?;
                    return Ok(match after {
                        Converged::Replicated { .. } => Repair::Copied,
                        Converged::Absent { .. } => Repair::Deleted { missed: false },
                    });
                }
                Some(_) => return Ok(Repair::Kept { missed: false }),
                None => {}
            }
        }
        let converged = converge(store, asset, region, &source, &replica).await?;
        self.record(&source, &converged, known.generation).await?;
        Ok(match (difference, converged) {
            (_, Converged::Replicated { copied: true, .. }) => Repair::Copied,
            (_, Converged::Replicated { copied: false, .. }) => Repair::Nothing,
            (
                Difference::Orphan(_),
                Converged::Absent {
                    replica_deleted: true,
                },
            ) => Repair::Deleted { missed },
            (
                Difference::Orphan(_),
                Converged::Absent {
                    replica_deleted: false,
                },
            ) => Repair::Kept { missed },
            (_, Converged::Absent { .. }) => Repair::Nothing,
        })
    }

    /// Copies the generation the listing showed; [`settle_group`] then
    /// checks that it is still the live one. If the source changed before
    /// the copy, falls back to [`converge`]. The ledger is left alone: it
    /// only speeds up events, which converge on the live generation whatever
    /// it says.
    async fn copy_listed(
        &self,
        listed: &ObjectMeta,
        replica: &ObjectRef,
    ) -> Result<Repair, SyncError> {
        let store = self.sync.storage.as_ref();
        let failed = |error| SyncError::Storage {
            asset: self.asset.id.to_string(),
            region: self.region.to_string(),
            source: error,
        };
        match replicate(store, listed, replica).await {
            Ok(_) => {
                return Ok(Repair::CopiedListed {
                    generation: listed.generation,
                });
            }
            // Replaced or deleted since it was listed.
            Err(StorageError::PreconditionFailed { .. } | StorageError::NotFound { .. }) => {}
            Err(StorageError::Verification { .. }) => {
                // Never leave a replica with the wrong bytes; converging
                // tells a source that moved on from damaged bytes.
                let _ = store.delete(replica, None).await;
            }
            Err(error) => return Err(failed(error)),
        }
        self.reconverge(&listed.object.name).await
    }

    /// Converges the replica of `name` on what the source holds now.
    async fn reconverge(&self, name: &str) -> Result<Repair, SyncError> {
        let source = ObjectRef::new(self.asset.source.as_str(), name);
        let replica = ObjectRef::new(self.replica_bucket, name);
        let store = self.sync.storage.as_ref();
        Ok(
            match converge(store, self.asset, self.region, &source, &replica).await? {
                Converged::Replicated { .. } => Repair::Copied,
                Converged::Absent { .. } => Repair::Nothing,
            },
        )
    }

    /// Records what a repair found in the ledger.
    async fn record(
        &self,
        source: &ObjectRef,
        converged: &Converged,
        known_generation: i64,
    ) -> Result<(), SyncError> {
        let observations: [Observation; 1] = [observation(
            self.region,
            converged,
            known_generation,
            self.started,
        )];
        ledger::record(
            self.sync.state.as_ref(),
            &source.bucket,
            &source.name,
            &observations,
            None,
        )
        .await
        .map_err(|error| SyncError::Ledger {
            asset: self.asset.id.to_string(),
            object: source.clone(),
            source: error,
        })?;
        Ok(())
    }
}
