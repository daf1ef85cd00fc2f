//! The embedded warehouse of the local cloud: one directory per dataset,
//! one JSON file per table holding its columns, rows and last modified time.
//! Writes go to a temporary file renamed into place, so a table is always
//! whole; a process-wide lock orders writers.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::{Column, TableMeta, TableRef, Warehouse, WarehouseError};

/// The file naming a dataset's location.
const LOCATION_FILE: &str = ".location";

/// The warehouse kept under a directory.
#[derive(Debug)]
pub struct LocalWarehouse {
    root: PathBuf,
    writes: Mutex<()>,
}

/// A table as stored.
#[derive(Serialize, Deserialize)]
struct StoredTable {
    columns: Vec<Column>,
    rows: Vec<serde_json::Value>,
    last_modified: DateTime<Utc>,
}

impl LocalWarehouse {
    /// Opens (or creates) the warehouse under `root`.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, WarehouseError> {
        let root = root.into();
        tokio::fs::create_dir_all(&root)
            .await
            .map_err(|e| io(&format!("open warehouse {}", root.display()), e))?;
        Ok(Self {
            root,
            writes: Mutex::new(()),
        })
    }

    fn dataset_dir(&self, project: &str, dataset: &str) -> Result<PathBuf, WarehouseError> {
        for (what, id) in [("project", project), ("dataset", dataset)] {
            check_id(what, id)?;
        }
        Ok(self.root.join(project).join(dataset))
    }

    fn table_file(&self, table: &TableRef) -> Result<PathBuf, WarehouseError> {
        check_id("table", &table.table)?;
        Ok(self
            .dataset_dir(&table.project, &table.dataset)?
            .join(format!("{}.json", table.table)))
    }

    async fn read(&self, table: &TableRef) -> Result<StoredTable, WarehouseError> {
        let path = self.table_file(table)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io(&format!("read table {table}"), std::io::Error::other(e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(WarehouseError::NotFound {
                what: table.to_string(),
            }),
            Err(e) => Err(io(&format!("read table {table}"), e)),
        }
    }

    async fn write(&self, table: &TableRef, stored: &StoredTable) -> Result<(), WarehouseError> {
        let path = self.table_file(table)?;
        let context = format!("write table {table}");
        let dir = path.parent().unwrap_or(&self.root);
        if !tokio::fs::try_exists(dir.join(LOCATION_FILE))
            .await
            .map_err(|e| io(&context, e))?
        {
            return Err(WarehouseError::NotFound {
                what: format!("dataset {}.{}", table.project, table.dataset),
            });
        }
        let bytes =
            serde_json::to_vec(stored).map_err(|e| io(&context, std::io::Error::other(e)))?;
        let temporary = dir.join(format!(
            ".{}.{}",
            table.table,
            uuid::Uuid::new_v4().simple()
        ));
        tokio::fs::write(&temporary, bytes)
            .await
            .map_err(|e| io(&context, e))?;
        tokio::fs::rename(&temporary, &path)
            .await
            .map_err(|e| io(&context, e))
    }
}

/// Ids are single path segments: no `/`, `\`, NUL, and no leading `.`.
fn check_id(what: &str, id: &str) -> Result<(), WarehouseError> {
    if id.is_empty() || id.starts_with('.') || id.contains(['/', '\\', '\0']) {
        return Err(WarehouseError::Rejected {
            context: format!("{what} {id:?}"),
            status: 400,
            message: "invalid id".to_string(),
        });
    }
    Ok(())
}

fn io(context: &str, error: std::io::Error) -> WarehouseError {
    WarehouseError::Backend {
        context: context.to_string(),
        source: Box::new(error),
    }
}

/// Now, strictly after `previous`, so every write moves the clock forward.
fn tick(previous: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let now = Utc::now();
    match previous {
        Some(previous) if previous >= now => previous + chrono::TimeDelta::milliseconds(1),
        _ => now,
    }
}

fn meta(table: &TableRef, stored: &StoredTable) -> TableMeta {
    TableMeta {
        table: table.clone(),
        last_modified: stored.last_modified,
        num_rows: stored.rows.len() as u64,
    }
}

#[async_trait]
impl Warehouse for LocalWarehouse {
    async fn create_dataset(
        &self,
        project: &str,
        dataset: &str,
        location: &str,
    ) -> Result<(), WarehouseError> {
        let dir = self.dataset_dir(project, dataset)?;
        let context = format!("create dataset {project}.{dataset}");
        let _guard = self.writes.lock().await;
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io(&context, e))?;
        let marker = dir.join(LOCATION_FILE);
        if !tokio::fs::try_exists(&marker)
            .await
            .map_err(|e| io(&context, e))?
        {
            tokio::fs::write(&marker, location)
                .await
                .map_err(|e| io(&context, e))?;
        }
        Ok(())
    }

    async fn create_table(
        &self,
        table: &TableRef,
        columns: &[Column],
    ) -> Result<(), WarehouseError> {
        let _guard = self.writes.lock().await;
        match self.read(table).await {
            Ok(_) => Ok(()),
            Err(WarehouseError::NotFound { .. }) => {
                let stored = StoredTable {
                    columns: columns.to_vec(),
                    rows: Vec::new(),
                    last_modified: tick(None),
                };
                self.write(table, &stored).await
            }
            Err(error) => Err(error),
        }
    }

    async fn insert_rows(
        &self,
        table: &TableRef,
        rows: &[serde_json::Value],
    ) -> Result<(), WarehouseError> {
        let _guard = self.writes.lock().await;
        let mut stored = self.read(table).await?;
        stored.rows.extend(rows.iter().cloned());
        stored.last_modified = tick(Some(stored.last_modified));
        self.write(table, &stored).await
    }

    async fn list_tables(
        &self,
        project: &str,
        dataset: &str,
    ) -> Result<Vec<String>, WarehouseError> {
        let dir = self.dataset_dir(project, dataset)?;
        let context = format!("list tables of {project}.{dataset}");
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(WarehouseError::NotFound {
                    what: format!("dataset {project}.{dataset}"),
                });
            }
            Err(e) => return Err(io(&context, e)),
        };
        let mut tables = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(|e| io(&context, e))? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(table) = name.strip_suffix(".json")
                && !name.starts_with('.')
            {
                tables.push(table.to_string());
            }
        }
        tables.sort();
        Ok(tables)
    }

    async fn table(&self, table: &TableRef) -> Result<TableMeta, WarehouseError> {
        Ok(meta(table, &self.read(table).await?))
    }

    async fn row_count(&self, table: &TableRef) -> Result<u64, WarehouseError> {
        Ok(self.read(table).await?.rows.len() as u64)
    }

    async fn copy_table(
        &self,
        source: &TableRef,
        destination: &TableRef,
    ) -> Result<(), WarehouseError> {
        let _guard = self.writes.lock().await;
        let mut stored = self.read(source).await?;
        let previous = match self.read(destination).await {
            Ok(existing) => Some(existing.last_modified),
            Err(WarehouseError::NotFound { .. }) => None,
            Err(error) => return Err(error),
        };
        stored.last_modified = tick(previous);
        self.write(destination, &stored).await
    }
}

impl LocalWarehouse {
    /// The directory the warehouse is kept in.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::LocalWarehouse;
    use crate::warehouse::conformance;

    #[tokio::test]
    async fn the_local_warehouse_passes_the_suite() {
        let dir = tempfile::tempdir().expect("temp dir");
        let warehouse = LocalWarehouse::open(dir.path()).await.expect("warehouse");
        conformance::run_all(&warehouse, "lifeboat-test", "events", "events_use1").await;
    }
}
