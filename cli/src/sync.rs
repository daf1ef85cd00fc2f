//! `lifeboat sync reconcile`: the reconcile data-sync runs on its schedule
//! (buckets, then BigQuery tables),
//! run now from a terminal, with progress, against Google Cloud (or the
//! emulators named by `STORAGE_EMULATOR_HOST` and `FIRESTORE_EMULATOR_HOST`)
//! or against the local cloud's data directory.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use lifeboat_data_sync::reconcile::{RegionReport, reconcile_all};
use lifeboat_data_sync::tables::{TableCopy, reconcile_tables};
use lifeboat_data_sync::{BulkPath, DataSync, TRANSFER_EMULATOR_VAR};
use lifeboat_shared::gcp::{ApiEndpoint, Credentials};
use lifeboat_shared::metrics::{self, state::StateMetrics};
use lifeboat_shared::state::StateStore;
use lifeboat_shared::state::firestore::{DEFAULT_DATABASE, FirestoreStore};
use lifeboat_shared::state::local::LocalStateStore;
use lifeboat_shared::storage::ObjectStore;
use lifeboat_shared::storage::gcs::GcsStore;
use lifeboat_shared::storage::local::LocalStore;
use lifeboat_shared::topology::Topology;
use lifeboat_shared::transfer::BulkCopier;
use lifeboat_shared::transfer::local::StoreCopier;
use lifeboat_shared::transfer::storage_transfer::{self, StorageTransfer};
use lifeboat_shared::warehouse::bigquery::BigQueryWarehouse;
use lifeboat_shared::warehouse::local::LocalWarehouse;

use crate::progress;

/// Runs the reconcile of every bucket asset of the topology at
/// `topology_file`; `local`: the local cloud's data directory instead of
/// Google Cloud; a replica whose missing or different objects reach
/// `bulk_threshold` is copied in bulk. Returns whether every difference was
/// repaired.
pub fn reconcile(
    topology_file: &Path,
    local: Option<&Path>,
    concurrency: usize,
    bulk_threshold: u64,
) -> anyhow::Result<bool> {
    let topology =
        Topology::load(topology_file).map_err(|problems| anyhow::anyhow!("{problems}"))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let mut sync = backends(topology, local).await?;
        sync.bulk = sync.bulk.map(|bulk| bulk.with_threshold(bulk_threshold));
        let spinner = progress::spinner("reconciling buckets");
        let progress = |report: &RegionReport| {
            spinner.set_message(match &report.bulk {
                Some(bulk) => format!(
                    "{} -> {}: bulk copy {}: {} of {} source objects copied, {} already there, {} failed",
                    report.asset,
                    report.region,
                    bulk.job,
                    bulk.counters.objects_copied,
                    bulk.counters.objects_found,
                    bulk.counters.objects_skipped,
                    bulk.counters.objects_failed,
                ),
                None => format!(
                    "{} -> {}: {} source objects checked, {} drift, {} failed",
                    report.asset,
                    report.region,
                    report.source_objects,
                    report.drift(),
                    report.failed,
                ),
            });
        };
        let reports = reconcile_all(&sync, concurrency, &progress).await;
        spinner.finish_and_clear();
        let reports = reports?;
        print_reports(&reports);
        let spinner = progress::spinner("reconciling tables");
        let copies = reconcile_tables(&sync).await;
        spinner.finish_and_clear();
        print_table_copies(&copies?);
        Ok(reports.iter().all(|report| report.failed == 0))
    })
}

/// The backends of the local cloud kept in `local`, or else of Google Cloud.
pub(crate) async fn backends(topology: Topology, local: Option<&Path>) -> anyhow::Result<DataSync> {
    match local {
        Some(data_dir) => local_backends(topology, data_dir).await,
        None => cloud_backends(topology).await,
    }
}

/// The local cloud's storage and state under `data_dir` (as `lifeboat local
/// up --data-dir` keeps them).
async fn local_backends(topology: Topology, data_dir: &Path) -> anyhow::Result<DataSync> {
    let data_dir = data_dir.join(topology.project().as_str());
    let storage = LocalStore::open(data_dir.join("storage"))
        .await
        .with_context(|| format!("opening the local object store in {}", data_dir.display()))?;
    let state = LocalStateStore::open(data_dir.join("state"))
        .await
        .with_context(|| {
            format!(
                "opening the local state store in {} (stop `lifeboat local up` first: it holds it)",
                data_dir.display()
            )
        })?;
    let warehouse = LocalWarehouse::open(data_dir.join("warehouse"))
        .await
        .with_context(|| format!("opening the local warehouse in {}", data_dir.display()))?;
    let state = Arc::new(state);
    let storage: Arc<dyn ObjectStore> = Arc::new(storage);
    Ok(DataSync {
        topology: Arc::new(topology),
        bulk: Some(BulkPath::new(Arc::new(StoreCopier::new(storage.clone())))),
        storage,
        metrics: Arc::new(StateMetrics::new(state.clone())),
        state,
        warehouse: Arc::new(warehouse),
    })
}

/// Cloud Storage and Firestore, or their emulators when the usual variables
/// name them.
async fn cloud_backends(topology: Topology) -> anyhow::Result<DataSync> {
    let project = topology.project().as_str().to_string();
    let storage_api =
        ApiEndpoint::from_env("STORAGE_EMULATOR_HOST", "https://storage.googleapis.com").await?;
    let bigquery_api =
        ApiEndpoint::from_env("BIGQUERY_EMULATOR_HOST", "https://bigquery.googleapis.com").await?;
    let state: Arc<dyn StateStore> =
        Arc::new(FirestoreStore::from_env(&project, DEFAULT_DATABASE).await?);
    let emulated = matches!(storage_api.credentials, Credentials::Anonymous);
    let storage: Arc<dyn ObjectStore> = Arc::new(GcsStore::new(storage_api, project.clone()));
    // A transfer job cannot read an emulator's buckets: against the storage
    // emulator, unless a Storage Transfer stand-in is named, the emulator's
    // own copy plays the engine's part.
    let engine: Arc<dyn BulkCopier> = match std::env::var(TRANSFER_EMULATOR_VAR) {
        Err(_) if emulated => Arc::new(StoreCopier::new(storage.clone())),
        _ => {
            let api =
                ApiEndpoint::from_env(TRANSFER_EMULATOR_VAR, storage_transfer::PRODUCTION_URL)
                    .await?;
            Arc::new(StorageTransfer::new(&api, &project).await?)
        }
    };
    Ok(DataSync {
        topology: Arc::new(topology),
        warehouse: Arc::new(BigQueryWarehouse::new(bigquery_api, project.clone())),
        metrics: metrics::from_env(&project, state.clone()).await?,
        storage,
        state,
        bulk: Some(BulkPath::new(engine)),
    })
}

fn print_reports(reports: &[RegionReport]) {
    println!(
        "{:<24} {:<16} {:>10} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6}",
        "asset", "region", "objects", "copied", "repaired", "deleted", "kept", "drift", "failed"
    );
    for r in reports {
        println!(
            "{:<24} {:<16} {:>10} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6}",
            r.asset,
            r.region,
            r.source_objects,
            r.copied_missing,
            r.repaired_different,
            r.deleted,
            r.kept,
            r.drift(),
            r.failed
        );
        if !r.drift_samples.is_empty() {
            println!("  drift, for example: {}", r.drift_samples.join(", "));
        }
        if let Some(bulk) = &r.bulk {
            let c = &bulk.counters;
            println!(
                "  bulk copy {} ({} objects handed over): {} copied ({} bytes), {} already there, {} failed{}",
                bulk.job,
                bulk.handed_over,
                c.objects_copied,
                c.bytes_copied,
                c.objects_skipped,
                c.objects_failed,
                bulk.error
                    .as_deref()
                    .map(|e| format!("; failed: {e}"))
                    .unwrap_or_default()
            );
        }
    }
}

fn print_table_copies(copies: &[TableCopy]) {
    if copies.is_empty() {
        println!("tables: every replica is as new as its source");
        return;
    }
    println!(
        "{:<24} {:<16} {:<32} {:>10}  source time",
        "asset", "region", "table copied", "rows"
    );
    for copy in copies {
        println!(
            "{:<24} {:<16} {:<32} {:>10}  {}",
            copy.asset,
            copy.region,
            copy.table,
            copy.rows,
            copy.source_time.to_rfc3339()
        );
    }
}
