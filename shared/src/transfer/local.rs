//! The bulk copy engine of the local cloud: any [`ObjectStore`]'s own
//! server-side copy, run in the calling process. It lists the source a
//! page at a time, compares each object with its replica and copies the
//! generation it listed, verified ([`replicate`]), a few at a time.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt as _;

use super::{BulkCopier, BulkCopy, Progress, TransferCounters, TransferError};
use crate::storage::replica::{existing_replica, replicate};
use crate::storage::{ObjectMeta, ObjectRef, ObjectStore, StorageError};

/// How many objects are copied at once.
const CONCURRENCY: usize = 16;
/// How many failed objects a failure's summary names.
const NAMED_FAILURES: usize = 5;

/// Bulk copies through an [`ObjectStore`]'s server-side copy.
#[derive(Clone, Debug)]
pub struct StoreCopier {
    store: Arc<dyn ObjectStore>,
}

impl StoreCopier {
    /// Copies within `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// Copies `source` unless its replica already holds the same bytes:
    /// `Ok(true)` when it copied.
    async fn copy_one(
        &self,
        source: &ObjectMeta,
        replica: &ObjectRef,
    ) -> Result<bool, StorageError> {
        let store = self.store.as_ref();
        if existing_replica(store, source, replica).await?.is_some() {
            return Ok(false);
        }
        match replicate(store, source, replica).await {
            Ok(_) => Ok(true),
            // Replaced since it was listed: copy what the source holds now,
            // as a transfer does; deleted since: nothing left to copy.
            Err(StorageError::PreconditionFailed { .. }) => {
                let live = match store.head(&source.object).await {
                    Ok(live) => live,
                    Err(StorageError::NotFound { .. }) => return Ok(false),
                    Err(error) => return Err(error),
                };
                replicate(store, &live, replica).await.map(|_| true)
            }
            Err(StorageError::NotFound { object }) if object == source.object => Ok(false),
            Err(error) => Err(error),
        }
    }
}

#[async_trait]
impl BulkCopier for StoreCopier {
    async fn copy_bucket(
        &self,
        copy: &BulkCopy,
        progress: Progress<'_>,
    ) -> Result<TransferCounters, TransferError> {
        let job = format!(
            "local copy gs://{} -> gs://{}",
            copy.source_bucket, copy.replica_bucket
        );
        let mut counters = TransferCounters::default();
        let mut failures: Vec<String> = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .store
                .list(&copy.source_bucket, "", token.as_deref())
                .await
                .map_err(|error| TransferError::Failed {
                    copy: Box::new(copy.clone()),
                    job: job.clone(),
                    summary: format!("listing the source: {error}"),
                    counters,
                })?;
            counters.objects_found += page.objects.len() as u64;
            let outcomes: Vec<(ObjectMeta, Result<bool, StorageError>)> =
                futures::stream::iter(page.objects)
                    .map(|source| async move {
                        let replica = ObjectRef::new(&copy.replica_bucket, &source.object.name);
                        let outcome = self.copy_one(&source, &replica).await;
                        (source, outcome)
                    })
                    .buffer_unordered(CONCURRENCY)
                    .collect()
                    .await;
            for (source, outcome) in outcomes {
                match outcome {
                    Ok(true) => {
                        counters.objects_copied += 1;
                        counters.bytes_copied += source.size;
                    }
                    Ok(false) => counters.objects_skipped += 1,
                    Err(error) => {
                        counters.objects_failed += 1;
                        if failures.len() < NAMED_FAILURES {
                            failures.push(error.to_string());
                        }
                    }
                }
            }
            progress(&counters);
            token = page.next_page_token;
            if token.is_none() {
                break;
            }
        }
        if counters.objects_failed == 0 {
            Ok(counters)
        } else {
            Err(TransferError::Failed {
                copy: Box::new(copy.clone()),
                job,
                summary: format!(
                    "{} object(s) failed, e.g. {}",
                    counters.objects_failed,
                    failures.join("; ")
                ),
                counters,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::conformance::LIST_PAGE_SIZE;
    use crate::storage::local::LocalStore;
    use crate::transfer::conformance;

    #[tokio::test]
    async fn the_local_store_passes_the_bulk_copy_suite() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn ObjectStore> = Arc::new(
            LocalStore::open(dir.path())
                .await
                .expect("local store")
                .with_list_page_size(LIST_PAGE_SIZE),
        );
        let copier = StoreCopier::new(store.clone());
        conformance::run_all(&copier, store.as_ref()).await;
    }
}
