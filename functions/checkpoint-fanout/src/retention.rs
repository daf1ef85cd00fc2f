//! Retention in a replica bucket: keep the newest K complete checkpoints of
//! a location. Only complete checkpoints (marker present) count and can go,
//! so one still being copied (no marker yet) is never touched, and the
//! newest complete one is always among the K kept. A doomed checkpoint's
//! marker goes first, so it is never visible while half deleted.

use lifeboat_shared::storage::{ObjectStore, StorageError};
use lifeboat_shared::topology::CheckpointLocation;

use crate::checkpoint::{Committed, committed, list_all};

/// Why retention could not finish in a bucket.
#[derive(Debug, thiserror::Error)]
#[error("{asset}: retention in {bucket}: {source}")]
pub struct RetentionError {
    /// The checkpoint location's id.
    pub asset: String,
    /// The replica bucket.
    pub bucket: String,
    /// The storage failure.
    #[source]
    pub source: StorageError,
}

/// Deletes the complete checkpoints of `location` in `bucket` beyond its
/// newest `keep-newest`, and returns the steps deleted, newest first.
pub async fn apply(
    store: &dyn ObjectStore,
    location: &CheckpointLocation,
    bucket: &str,
) -> Result<Vec<u64>, RetentionError> {
    let fail = |source| RetentionError {
        asset: location.id.to_string(),
        bucket: bucket.to_string(),
        source,
    };
    let complete = committed(store, location, bucket).await.map_err(fail)?;
    let keep = usize::try_from(location.keep_newest.count()).unwrap_or(usize::MAX);
    let mut deleted = Vec::new();
    for Committed {
        step,
        directory,
        marker,
    } in complete.into_iter().skip(keep)
    {
        match store.delete(&marker.object, Some(marker.generation)).await {
            Ok(()) | Err(StorageError::NotFound { .. }) => {}
            Err(source) => return Err(fail(source)),
        }
        for object in list_all(store, bucket, &directory).await.map_err(fail)? {
            match store.delete(&object.object, None).await {
                Ok(()) | Err(StorageError::NotFound { .. }) => {}
                Err(source) => return Err(fail(source)),
            }
        }
        tracing::info!(asset = %location.id, bucket, step, "old checkpoint deleted by retention");
        deleted.push(step);
    }
    Ok(deleted)
}
