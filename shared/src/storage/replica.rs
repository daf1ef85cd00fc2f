//! Replicas: a server-side copy of one source generation, verified (size and
//! CRC32C) before anyone may count on it. Every function that replicates
//! objects (checkpoint fan-out, bucket sync) goes through here, so "verified"
//! means one thing everywhere.

use super::{CopyOptions, ObjectMeta, ObjectRef, ObjectStore, StorageError};

/// Copies the generation of `source` described by its metadata to
/// `destination`, server-side, and verifies the result. Fails with
/// [`StorageError::PreconditionFailed`] if the source changed since `source`
/// was read, and with [`StorageError::Verification`] if the new object's size
/// or CRC32C differ from the source's.
pub async fn replicate(
    store: &dyn ObjectStore,
    source: &ObjectMeta,
    destination: &ObjectRef,
) -> Result<ObjectMeta, StorageError> {
    let options = CopyOptions {
        if_source_generation_match: Some(source.generation),
    };
    let copied = store.copy(&source.object, destination, options).await?;
    if source.verifies(&copied) {
        Ok(copied)
    } else {
        Err(StorageError::Verification {
            object: destination.clone(),
            detail: format!(
                "copy of {} generation {} has {} bytes and CRC32C {:08x}, the source {} bytes and {:08x}",
                source.object,
                source.generation,
                copied.size,
                copied.crc32c,
                source.size,
                source.crc32c
            ),
        })
    }
}

/// The existing replica at `destination` when it already verifies against
/// `source` (same size and CRC32C), so the copy can be skipped; `None` when it
/// is missing or differs.
pub async fn existing_replica(
    store: &dyn ObjectStore,
    source: &ObjectMeta,
    destination: &ObjectRef,
) -> Result<Option<ObjectMeta>, StorageError> {
    match store.head(destination).await {
        Ok(replica) if source.verifies(&replica) => Ok(Some(replica)),
        Ok(_) | Err(StorageError::NotFound { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Whether `source` still holds `generation` (false once it was replaced or
/// deleted): what decides, after a copy, whether the copy is still current.
pub async fn holds_generation(
    store: &dyn ObjectStore,
    source: &ObjectRef,
    generation: i64,
) -> Result<bool, StorageError> {
    match store.head(source).await {
        Ok(live) => Ok(live.generation == generation),
        Err(StorageError::NotFound { .. }) => Ok(false),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::local::LocalStore;
    use crate::storage::{PutOptions, bytes_stream};

    async fn store_with_buckets() -> (tempfile::TempDir, LocalStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalStore::open(dir.path()).await.expect("store opens");
        store
            .create_bucket("source-usc1", "us-central1")
            .await
            .expect("bucket");
        store
            .create_bucket("replica-use1", "us-east1")
            .await
            .expect("bucket");
        (dir, store)
    }

    #[tokio::test]
    async fn a_source_holds_its_generation_until_replaced_or_deleted() {
        let (_dir, store) = store_with_buckets().await;
        let source = ObjectRef::new("source-usc1", "step_7/shard 1");
        let put = |body: &'static [u8]| {
            let store = &store;
            let source = &source;
            async move {
                let body = bytes_stream(body);
                let written = store.put(source, body, PutOptions::default()).await;
                written.expect("put").generation
            }
        };
        let first = put(b"one").await;
        assert!(
            holds_generation(&store, &source, first)
                .await
                .expect("head")
        );
        let second = put(b"two").await;
        assert!(
            !holds_generation(&store, &source, first)
                .await
                .expect("head")
        );
        store.delete(&source, None).await.expect("delete");
        assert!(
            !holds_generation(&store, &source, second)
                .await
                .expect("head")
        );
    }

    #[tokio::test]
    async fn replicate_copies_and_verifies_then_existing_replica_finds_it() {
        let (_dir, store) = store_with_buckets().await;
        let source = ObjectRef::new("source-usc1", "step_100/shard 0");
        let written = store
            .put(
                &source,
                bytes_stream(&b"weights"[..]),
                PutOptions::default(),
            )
            .await
            .expect("put");
        let destination = ObjectRef::new("replica-use1", "step_100/shard 0");
        assert_eq!(
            existing_replica(&store, &written, &destination)
                .await
                .expect("head"),
            None
        );

        let replica = replicate(&store, &written, &destination)
            .await
            .expect("replicated");
        assert_eq!(
            (replica.size, replica.crc32c),
            (written.size, written.crc32c)
        );
        let found = existing_replica(&store, &written, &destination)
            .await
            .expect("head");
        assert_eq!(found.map(|meta| meta.object), Some(destination));
    }

    #[tokio::test]
    async fn a_source_changed_since_it_was_read_is_not_replicated() {
        let (_dir, store) = store_with_buckets().await;
        let source = ObjectRef::new("source-usc1", "step_100/shard-0");
        let first = store
            .put(&source, bytes_stream(&b"old"[..]), PutOptions::default())
            .await
            .expect("put");
        store
            .put(&source, bytes_stream(&b"newer"[..]), PutOptions::default())
            .await
            .expect("put again");
        let destination = ObjectRef::new("replica-use1", "step_100/shard-0");
        let error = replicate(&store, &first, &destination)
            .await
            .expect_err("stale source");
        assert!(
            matches!(error, StorageError::PreconditionFailed { .. }),
            "{error}"
        );
        assert!(matches!(
            store.head(&destination).await,
            Err(StorageError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn a_different_replica_is_not_taken_for_a_verified_one() {
        let (_dir, store) = store_with_buckets().await;
        let source = store
            .put(
                &ObjectRef::new("source-usc1", "a"),
                bytes_stream(&b"abc"[..]),
                PutOptions::default(),
            )
            .await
            .expect("put");
        let destination = ObjectRef::new("replica-use1", "a");
        store
            .put(
                &destination,
                bytes_stream(&b"abd"[..]),
                PutOptions::default(),
            )
            .await
            .expect("put");
        assert_eq!(
            existing_replica(&store, &source, &destination)
                .await
                .expect("head"),
            None
        );
    }
}
