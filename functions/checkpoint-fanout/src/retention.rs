//! Retention in a replica bucket: keep the newest K complete checkpoints of
//! a location. Only complete checkpoints (marker present) count and can go,
//! so one still being copied (no marker yet) is never touched, and the
//! newest complete one is always among the K kept. A doomed checkpoint's
//! marker goes first, so it is never visible while half deleted.

use lifeboat_shared::storage::{ObjectStore, StorageError};
use lifeboat_shared::topology::CheckpointLocation;

use crate::checkpoint::{list_all, step_of};

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
    let marker = location.marker.object_name();
    let mut complete: Vec<(u64, lifeboat_shared::storage::ObjectMeta, String)> =
        list_all(store, bucket, location.prefix.as_str())
            .await
            .map_err(fail)?
            .into_iter()
            .filter_map(|meta| {
                let directory = meta.object.name.strip_suffix(marker)?.to_string();
                let in_directory = directory.is_empty() || directory.ends_with('/');
                let step = step_of(&directory).filter(|_| in_directory)?;
                Some((step, meta, directory))
            })
            .collect();
    complete.sort_by_key(|(step, _, _)| std::cmp::Reverse(*step));
    let keep = usize::try_from(location.keep_newest.count()).unwrap_or(usize::MAX);
    let mut deleted = Vec::new();
    for (step, marker, directory) in complete.into_iter().skip(keep) {
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
