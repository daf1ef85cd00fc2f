//! Where a drill's report goes ([`ReportSink`]): the reports bucket on
//! Google Cloud, a folder of the data directory in the local cloud. The
//! report itself is drawn by `lifeboat_pages::report`.

use std::path::PathBuf;
use std::sync::Arc;

use lifeboat_shared::records::drill_run::DrillRun;
use lifeboat_shared::storage::{ObjectRef, ObjectStore, PutOptions, StorageError, bytes_stream};
use thiserror::Error;

/// The folder of the reports bucket that holds the reports.
pub const BUCKET_FOLDER: &str = "reports";

/// What can go wrong saving a report.
#[derive(Debug, Error)]
pub enum ReportError {
    /// The run's id cannot name a file or object.
    #[error(
        "run id {run:?} cannot name a report: it must be one path segment, not empty, without `/`, `\\` or NUL, not starting with `.`"
    )]
    InvalidRunId {
        /// The run's id.
        run: String,
    },
    /// The object store refused or failed the write.
    #[error("writing the report of run {run} to {location}: {source}")]
    Storage {
        /// The run's id.
        run: String,
        /// Where it was going.
        location: String,
        /// Why it failed.
        #[source]
        source: StorageError,
    },
    /// The file could not be written.
    #[error("writing the report of run {run} to {}: {source}", path.display())]
    Io {
        /// The run's id.
        run: String,
        /// The file (or its temporary sibling).
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// Where reports are written.
#[derive(Clone, Debug)]
pub enum ReportSink {
    /// `reports/{run}.html` in a bucket: the reports bucket on Google Cloud.
    Bucket {
        /// The store holding the bucket.
        storage: Arc<dyn ObjectStore>,
        /// The bucket.
        bucket: String,
    },
    /// `{dir}/{run}.html` on disk: the local cloud's data directory.
    Directory(PathBuf),
}

impl ReportSink {
    /// Writes `html`, the report of `run`, and returns where it went
    /// (`gs://bucket/reports/RUN.html`, or the file's path). A report
    /// written again for the same run replaces the earlier one whole.
    pub async fn save(&self, run: &DrillRun, html: &str) -> Result<String, ReportError> {
        let id = &run.id;
        if id.is_empty() || id.starts_with('.') || id.contains(['/', '\\', '\0']) {
            return Err(ReportError::InvalidRunId { run: id.clone() });
        }
        let location = match self {
            ReportSink::Bucket { storage, bucket } => {
                let object = ObjectRef::new(bucket, format!("{BUCKET_FOLDER}/{id}.html"));
                let options = PutOptions {
                    content_type: Some("text/html; charset=utf-8".to_string()),
                    ..PutOptions::default()
                };
                storage
                    .put(&object, bytes_stream(html.as_bytes().to_vec()), options)
                    .await
                    .map_err(|source| ReportError::Storage {
                        run: id.clone(),
                        location: object.to_string(),
                        source,
                    })?;
                object.to_string()
            }
            ReportSink::Directory(dir) => {
                let path = dir.join(format!("{id}.html"));
                write_atomically(id, &path, html).await?;
                path.display().to_string()
            }
        };
        tracing::info!(run = %id, %location, bytes = html.len(), "drill report saved");
        Ok(location)
    }
}

/// Writes `html` to `path` through a temporary sibling renamed into place,
/// so a reader sees the old report or the new one, never half of one.
async fn write_atomically(
    run: &str,
    path: &std::path::Path,
    html: &str,
) -> Result<(), ReportError> {
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| ReportError::Io {
            run: run.to_string(),
            path,
            source,
        }
    };
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
    }
    let temporary =
        path.with_file_name(format!(".{run}.html.{}.tmp", uuid::Uuid::new_v4().simple()));
    let written = match tokio::fs::write(&temporary, html).await {
        Ok(()) => tokio::fs::rename(&temporary, path).await.map_err(io(path)),
        Err(source) => Err(io(&temporary)(source)),
    };
    if written.is_err() {
        // Best effort: a temporary left behind is hidden and harmless.
        let _ = tokio::fs::remove_file(&temporary).await;
    }
    written
}

#[cfg(test)]
mod tests;
