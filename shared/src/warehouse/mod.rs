//! The warehouse: BigQuery tables as data-sync needs them (read a table's
//! freshness and row count, copy it to another region's dataset), with its
//! BigQuery implementation ([`bigquery`]), an embedded one ([`local`]) and
//! the conformance suite both must pass ([`conformance`]).

pub mod bigquery;
pub mod conformance;
pub mod local;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One table: project, dataset and table id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableRef {
    /// The project holding the dataset.
    pub project: String,
    /// The dataset.
    pub dataset: String,
    /// The table.
    pub table: String,
}

impl TableRef {
    /// The table `table` of `project.dataset`.
    pub fn new(
        project: impl Into<String>,
        dataset: impl Into<String>,
        table: impl Into<String>,
    ) -> Self {
        Self {
            project: project.into(),
            dataset: dataset.into(),
            table: table.into(),
        }
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.project, self.dataset, self.table)
    }
}

/// A column: its name and BigQuery type (`INTEGER`, `STRING`...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// The column's name.
    pub name: String,
    /// Its BigQuery standard type name.
    #[serde(rename = "type")]
    pub kind: String,
}

/// What the warehouse says about a table now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableMeta {
    /// The table.
    pub table: TableRef,
    /// When its data or schema last changed.
    pub last_modified: DateTime<Utc>,
    /// How many rows its metadata says it holds (may lag behind recent
    /// writes; [`Warehouse::row_count`] counts them).
    pub num_rows: u64,
}

/// What can go wrong in the warehouse. Every variant names the table or
/// dataset concerned.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    /// The table or dataset does not exist.
    #[error("{what}: not found")]
    NotFound {
        /// The missing table or dataset.
        what: String,
    },
    /// The request was refused for a reason a retry cannot fix.
    #[error("{context}: rejected with HTTP {status}: {message}")]
    Rejected {
        /// The operation and table.
        context: String,
        /// The HTTP status.
        status: u16,
        /// The server's explanation.
        message: String,
    },
    /// A copy or insert job finished with an error.
    #[error("{context}: job failed: {message}")]
    JobFailed {
        /// The operation and tables.
        context: String,
        /// The job's error.
        message: String,
    },
    /// The backend could not be reached or failed; worth a retry.
    #[error("{context}: {source}")]
    Backend {
        /// The operation and table.
        context: String,
        /// The underlying failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl WarehouseError {
    /// True when retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, WarehouseError::Backend { .. })
    }
}

/// The warehouse as data-sync uses it. Implemented by BigQuery
/// ([`bigquery::BigQueryWarehouse`]) and embedded ([`local::LocalWarehouse`]).
#[async_trait]
pub trait Warehouse: Send + Sync + fmt::Debug {
    /// Creates dataset `dataset` of `project` in `location`; does nothing if
    /// it exists.
    async fn create_dataset(
        &self,
        project: &str,
        dataset: &str,
        location: &str,
    ) -> Result<(), WarehouseError>;

    /// Creates an empty table with `columns`; does nothing if it exists.
    async fn create_table(
        &self,
        table: &TableRef,
        columns: &[Column],
    ) -> Result<(), WarehouseError>;

    /// Appends `rows` (JSON objects keyed by column name) to `table`.
    async fn insert_rows(
        &self,
        table: &TableRef,
        rows: &[serde_json::Value],
    ) -> Result<(), WarehouseError>;

    /// Every table id of `project.dataset`, in id order.
    async fn list_tables(
        &self,
        project: &str,
        dataset: &str,
    ) -> Result<Vec<String>, WarehouseError>;

    /// The freshness and row count of `table`.
    async fn table(&self, table: &TableRef) -> Result<TableMeta, WarehouseError>;

    /// Counts the rows of `table` (`SELECT COUNT(*)`, which BigQuery answers
    /// from metadata without scanning): what a copy is verified by.
    async fn row_count(&self, table: &TableRef) -> Result<u64, WarehouseError>;

    /// Replaces `destination` with a copy of `source` (a copy job with
    /// `WRITE_TRUNCATE`, created if needed) and waits until it is done.
    async fn copy_table(
        &self,
        source: &TableRef,
        destination: &TableRef,
    ) -> Result<(), WarehouseError>;
}
