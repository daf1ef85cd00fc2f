//! BigQuery tables: each protected dataset's tables copied to the replica
//! dataset in every target region with copy jobs (`WRITE_TRUNCATE`), on a
//! table-change audit event and on the scheduled reconcile, which copies a
//! table when its last modified time is newer than the one of its last
//! verified copy.
//!
//! A copy counts as verified only when the replica's row count matches the
//! source's and the source did not change during the copy; then the source
//! time of that copy is recorded per table and region (collection
//! [`COLLECTION`]), which is what the table's RPO is measured from.

use chrono::{DateTime, Utc};
use lifeboat_shared::events::BigQueryTableChange;
use lifeboat_shared::pause::PauseError;
use lifeboat_shared::state::{Precondition, StateError};
use lifeboat_shared::topology::DatasetAsset;
use lifeboat_shared::warehouse::{TableRef, WarehouseError};
use serde::{Deserialize, Serialize};

use crate::DataSync;
use lifeboat_shared::records::data_rpo::{self as rpo, AssetKind, RpoRecord};

/// The collection of table copy records.
pub const COLLECTION: &str = "data-sync.tables";

/// What went wrong copying a table. Every variant names the asset, region
/// and table.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A warehouse call failed.
    #[error("asset {asset}, region {region}: {source}")]
    Warehouse {
        /// The dataset asset.
        asset: String,
        /// The replica region (or the primary, reading the source).
        region: String,
        /// The failure, which names the table.
        #[source]
        source: WarehouseError,
    },
    /// The copy finished but does not verify.
    #[error("asset {asset}, region {region}, table {table}: {detail}")]
    Unverified {
        /// The dataset asset.
        asset: String,
        /// The replica region.
        region: String,
        /// The replica table.
        table: TableRef,
        /// Row counts and times compared.
        detail: String,
    },
    /// Reading or writing the copy record failed.
    #[error("asset {asset}, region {region}, table {table}: copy record: {source}")]
    Record {
        /// The dataset asset.
        asset: String,
        /// The replica region.
        region: String,
        /// The source table.
        table: String,
        /// The failure.
        #[source]
        source: StateError,
    },
    /// The replication pauses could not be read, or a change could not be
    /// noted as unreplicated in a paused region.
    #[error("asset {asset}: replication pause: {source}")]
    Pause {
        /// The dataset asset.
        asset: String,
        /// The failure.
        #[source]
        source: PauseError,
    },
}

impl TableError {
    /// True when a retry may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            TableError::Warehouse { source, .. } => source.is_transient(),
            TableError::Unverified { .. } => true,
            TableError::Record { source, .. } => source.is_transient(),
            TableError::Pause { .. } => true,
        }
    }
}

/// The last verified copy of one table to one region.
///
/// Size bound: fixed fields, the topology's ids and a table id (at most
/// 1,024 bytes in BigQuery), under 2 KiB.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCopy {
    /// The dataset asset.
    pub asset: String,
    /// The replica region.
    pub region: String,
    /// The table id (the same in source and replica datasets).
    pub table: String,
    /// The source's last modified time when it was copied.
    pub source_time: DateTime<Utc>,
    /// The row count both had.
    pub rows: u64,
    /// When the copy was verified.
    pub verified_at: DateTime<Utc>,
}

/// What syncing one table to one region did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableSync {
    /// The replica was already as fresh as the source.
    Current,
    /// A copy was made and verified.
    Copied(TableCopy),
    /// The replica is older than the source, but a drill has paused
    /// replication into the region: the change is noted as unreplicated
    /// there, and the first reconcile after the pause copies it.
    Paused,
}

/// `project.dataset` of a topology dataset id, in `default_project` when it
/// names none.
pub fn split_dataset<'a>(id: &'a str, default_project: &'a str) -> (&'a str, &'a str) {
    id.split_once('.').unwrap_or((default_project, id))
}

/// The record of `table` in `region`: named after the asset and its source
/// dataset, so renaming either starts afresh.
fn record_id(asset: &DatasetAsset, region: &str, table: &str) -> String {
    format!("{}.{}.{region}.{table}", asset.id, asset.source)
}

/// Reads the last verified copy of `table` to `region`, if any.
pub async fn last_copy(
    sync: &DataSync,
    asset: &DatasetAsset,
    region: &str,
    table: &str,
) -> Result<Option<TableCopy>, TableError> {
    let record_error = |source| TableError::Record {
        asset: asset.id.to_string(),
        region: region.to_string(),
        table: table.to_string(),
        source,
    };
    let id = record_id(asset, region, table);
    match sync
        .state
        .get(COLLECTION, &id)
        .await
        .map_err(record_error)?
    {
        Some(doc) => serde_json::from_value(doc.value).map(Some).map_err(|e| {
            record_error(StateError::InvalidValue {
                collection: COLLECTION.to_string(),
                id,
                reason: e.to_string(),
            })
        }),
        None => Ok(None),
    }
}

/// Brings the replica of `table` in every region of `asset` up to date:
/// copies it when `force` (an audit event said it changed), when the
/// replica is missing, or when the source is newer than its last verified
/// copy. Returns what was done per region: nothing for the regions not
/// reached yet when the source table is found deleted (then there is
/// nothing to copy).
pub async fn sync_table(
    sync: &DataSync,
    asset: &DatasetAsset,
    table: &str,
    force: bool,
) -> Result<Vec<(String, TableSync)>, TableError> {
    let project = sync.topology.project().as_str();
    let (source_project, source_dataset) = split_dataset(asset.source.as_str(), project);
    let source = TableRef::new(source_project, source_dataset, table);
    let primary = sync.topology.primary().to_string();
    let read_source = || async {
        sync.warehouse
            .table(&source)
            .await
            .map_err(|source| TableError::Warehouse {
                asset: asset.id.to_string(),
                region: primary.clone(),
                source,
            })
    };
    let pause_failed = |source: PauseError| TableError::Pause {
        asset: asset.id.to_string(),
        source,
    };
    let paused = sync.paused_regions(asset.id.as_str()).await;
    let mut done = Vec::new();
    for (region, replica_dataset) in &asset.replicas {
        let region = region.as_str();
        let failed = |source| TableError::Warehouse {
            asset: asset.id.to_string(),
            region: region.to_string(),
            source,
        };
        let (replica_project, replica_dataset) = split_dataset(replica_dataset.as_str(), project);
        let replica = TableRef::new(replica_project, replica_dataset, table);
        let before = match read_source().await {
            Ok(table) => table,
            // Deleted since the change was logged: its deletion is an event
            // of its own, and replicas of a deleted table are kept.
            Err(TableError::Warehouse {
                source: WarehouseError::NotFound { .. },
                ..
            }) => {
                tracing::info!(asset = %asset.id, %table, "source table gone; nothing to copy");
                return Ok(done);
            }
            Err(error) => return Err(error),
        };
        let last = last_copy(sync, asset, region, table).await?;
        let replica_exists = match sync.warehouse.table(&replica).await {
            Ok(_) => true,
            Err(WarehouseError::NotFound { .. }) => false,
            Err(error) => return Err(failed(error)),
        };
        let stale = last
            .as_ref()
            .is_none_or(|copy| copy.source_time < before.last_modified);
        if !force && replica_exists && !stale {
            done.push((region.to_string(), TableSync::Current));
            continue;
        }
        if let Some(pause) = paused.iter().find(|p| p.region == region) {
            tracing::info!(asset = %asset.id, region, table, run = %pause.run, "replication paused by a drill; change noted as unreplicated");
            rpo::note_unreplicated(
                sync.state.as_ref(),
                AssetKind::Dataset,
                asset.id.as_str(),
                region,
                sync.target_rpo_seconds(asset.id.as_str()),
                before.last_modified,
            )
            .await
            .map_err(|error| pause_failed(error.into()))?;
            done.push((region.to_string(), TableSync::Paused));
            continue;
        }
        sync.warehouse
            .copy_table(&source, &replica)
            .await
            .map_err(failed)?;
        let after = read_source().await?;
        let source_rows = sync.warehouse.row_count(&source).await.map_err(failed)?;
        let copied_rows = sync.warehouse.row_count(&replica).await.map_err(failed)?;
        if after.last_modified != before.last_modified || copied_rows != source_rows {
            return Err(TableError::Unverified {
                asset: asset.id.to_string(),
                region: region.to_string(),
                table: replica,
                detail: format!(
                    "source modified at {} before the copy and at {} after, {source_rows} \
                     rows; the replica has {copied_rows} rows",
                    before.last_modified, after.last_modified,
                ),
            });
        }
        let copy = TableCopy {
            asset: asset.id.to_string(),
            region: region.to_string(),
            table: table.to_string(),
            source_time: before.last_modified,
            rows: copied_rows,
            verified_at: Utc::now(),
        };
        record(sync, asset, &copy).await?;
        tracing::info!(asset = %asset.id, region, table, rows = copy.rows, "table copied and verified");
        done.push((region.to_string(), TableSync::Copied(copy)));
    }
    Ok(done)
}

/// Writes `copy` unless a record of a newer source time is already there.
async fn record(sync: &DataSync, asset: &DatasetAsset, copy: &TableCopy) -> Result<(), TableError> {
    let id = record_id(asset, &copy.region, &copy.table);
    let record_error = |source| TableError::Record {
        asset: copy.asset.clone(),
        region: copy.region.clone(),
        table: copy.table.clone(),
        source,
    };
    let value = serde_json::to_value(copy).map_err(|e| {
        record_error(StateError::InvalidValue {
            collection: COLLECTION.to_string(),
            id: id.clone(),
            reason: e.to_string(),
        })
    })?;
    for _ in 0..5 {
        let precondition = match sync
            .state
            .get(COLLECTION, &id)
            .await
            .map_err(record_error)?
        {
            Some(doc) => {
                let newer = serde_json::from_value::<TableCopy>(doc.value)
                    .is_ok_and(|existing| existing.source_time > copy.source_time);
                if newer {
                    return Ok(());
                }
                Precondition::Version(doc.version)
            }
            None => Precondition::MustNotExist,
        };
        match sync.state.put(COLLECTION, &id, &value, precondition).await {
            Ok(_) => return Ok(()),
            Err(StateError::Conflict { .. }) => continue,
            Err(error) => return Err(record_error(error)),
        }
    }
    Err(record_error(StateError::Conflict {
        collection: COLLECTION.to_string(),
        id,
        detail: "lost every race to record the copy".to_string(),
    }))
}

/// The dataset asset whose source dataset holds `change`'s table.
pub fn dataset_asset<'a>(
    sync: &'a DataSync,
    change: &BigQueryTableChange,
) -> Option<&'a DatasetAsset> {
    let project = sync.topology.project().as_str();
    sync.topology
        .workloads()
        .iter()
        .flat_map(|workload| &workload.assets.datasets)
        .find(|asset| {
            let (p, d) = split_dataset(asset.source.as_str(), project);
            p == change.table.project && d == change.table.dataset
        })
}

/// Every table of every protected dataset brought up to date (copied when
/// its source is newer than its last verified copy). Returns the copies made.
pub async fn reconcile_tables(sync: &DataSync) -> Result<Vec<TableCopy>, TableError> {
    let project = sync.topology.project().as_str();
    let mut copies = Vec::new();
    let assets: Vec<DatasetAsset> = sync
        .topology
        .workloads()
        .iter()
        .flat_map(|workload| workload.assets.datasets.iter().cloned())
        .collect();
    for asset in &assets {
        let (source_project, source_dataset) = split_dataset(asset.source.as_str(), project);
        let tables = sync
            .warehouse
            .list_tables(source_project, source_dataset)
            .await
            .map_err(|source| TableError::Warehouse {
                asset: asset.id.to_string(),
                region: sync.topology.primary().to_string(),
                source,
            })?;
        let checked_at = Utc::now();
        for table in tables {
            for (_, done) in sync_table(sync, asset, &table, false).await? {
                if let TableSync::Copied(copy) = done {
                    copies.push(copy);
                }
            }
        }
        // Every table of the asset is verified as of the check, except in
        // a region a drill has paused, whose record keeps its notes.
        let paused = sync.paused_regions(asset.id.as_str()).await;
        for region in asset
            .replicas
            .keys()
            .filter(|region| !paused.iter().any(|p| p.region == region.as_str()))
        {
            let record = RpoRecord {
                kind: AssetKind::Dataset,
                asset: asset.id.to_string(),
                region: region.to_string(),
                target_seconds: sync.target_rpo_seconds(asset.id.as_str()),
                oldest_unreplicated: None,
                checked_at: Some(checked_at),
                changed_at: None,
                history: Vec::new(),
            };
            sync.record_check(&record)
                .await
                .map_err(|source| TableError::Record {
                    asset: asset.id.to_string(),
                    region: region.to_string(),
                    table: "*".to_string(),
                    source,
                })?;
        }
    }
    Ok(copies)
}
