//! [`DarkBuckets`]: any [`ObjectStore`] whose buckets located in a dark
//! region ([`DarkRegions`]) are unreachable, for tests and the local cloud.
//! A bucket's region is told up front (the topology says where each bucket
//! is: a source in the primary, a replica in its region); a bucket it does
//! not know, or one in a multi-region, never goes dark.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::{
    ByteStream, CopyOptions, ListPage, ObjectMeta, ObjectRef, ObjectStore, PutOptions, StorageError,
};
use crate::outage::DarkRegions;
use crate::topology::Topology;

/// An object store whose buckets in dark regions fail every call
/// transiently, as an unreachable regional endpoint would.
#[derive(Clone, Debug)]
pub struct DarkBuckets {
    inner: Arc<dyn ObjectStore>,
    dark: DarkRegions,
    /// The region of each bucket known.
    regions: BTreeMap<String, String>,
}

impl DarkBuckets {
    /// `inner`, with the buckets of `topology` dark while their region is.
    pub fn new(inner: Arc<dyn ObjectStore>, dark: DarkRegions, topology: &Topology) -> Self {
        let regions = topology
            .buckets()
            .into_iter()
            .map(|(bucket, region)| (bucket.to_string(), region.to_string()))
            .collect();
        Self {
            inner,
            dark,
            regions,
        }
    }

    /// Fails when `bucket` is in a dark region.
    fn reach(&self, bucket: &str, call: impl FnOnce() -> String) -> Result<(), StorageError> {
        let Some(region) = self.regions.get(bucket) else {
            return Ok(());
        };
        self.dark.reach(region, call).map_err(|unreachable| {
            let context = unreachable.call.clone();
            StorageError::Backend {
                context,
                source: Box::new(unreachable),
            }
        })
    }
}

#[async_trait]
impl ObjectStore for DarkBuckets {
    async fn create_bucket(&self, bucket: &str, location: &str) -> Result<(), StorageError> {
        self.reach(bucket, || format!("create bucket gs://{bucket}"))?;
        self.inner.create_bucket(bucket, location).await
    }

    async fn bucket_location(&self, bucket: &str) -> Result<Option<String>, StorageError> {
        self.reach(bucket, || format!("get bucket gs://{bucket}"))?;
        self.inner.bucket_location(bucket).await
    }

    async fn put(
        &self,
        object: &ObjectRef,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        self.reach(&object.bucket, || format!("put {object}"))?;
        self.inner.put(object, body, options).await
    }

    async fn get(&self, object: &ObjectRef) -> Result<(ObjectMeta, ByteStream), StorageError> {
        self.reach(&object.bucket, || format!("get {object}"))?;
        self.inner.get(object).await
    }

    async fn head(&self, object: &ObjectRef) -> Result<ObjectMeta, StorageError> {
        self.reach(&object.bucket, || format!("head {object}"))?;
        self.inner.head(object).await
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        page_token: Option<&str>,
    ) -> Result<ListPage, StorageError> {
        self.reach(bucket, || format!("list gs://{bucket}/{prefix}"))?;
        self.inner.list(bucket, prefix, page_token).await
    }

    async fn list_range(
        &self,
        bucket: &str,
        first: &str,
        last: &str,
        page_token: Option<&str>,
    ) -> Result<ListPage, StorageError> {
        self.reach(bucket, || {
            format!("list gs://{bucket} from {first} to {last}")
        })?;
        self.inner.list_range(bucket, first, last, page_token).await
    }

    async fn delete(
        &self,
        object: &ObjectRef,
        if_generation_match: Option<i64>,
    ) -> Result<(), StorageError> {
        self.reach(&object.bucket, || format!("delete {object}"))?;
        self.inner.delete(object, if_generation_match).await
    }

    async fn copy(
        &self,
        source: &ObjectRef,
        destination: &ObjectRef,
        options: CopyOptions,
    ) -> Result<ObjectMeta, StorageError> {
        let call = || format!("copy {source} -> {destination}");
        self.reach(&source.bucket, call)?;
        self.reach(&destination.bucket, call)?;
        self.inner.copy(source, destination, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::local::LocalStore;
    use crate::storage::{bytes_stream, conformance};

    const TOPOLOGY: &str = "\
project: acme-ml-prod
regions:
  - {id: us-central1, role: primary}
  - {id: us-east1, role: standby}
workloads:
  - id: w
    class: online-inference
    pattern: active-passive
    assets:
      buckets:
        - id: features
          source: acme-features-usc1
          replicas: {us-east1: acme-features-use1}
";

    #[tokio::test]
    async fn passes_the_conformance_suite_while_its_regions_are_reachable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let local = LocalStore::open(dir.path())
            .await
            .expect("store")
            .with_list_page_size(conformance::LIST_PAGE_SIZE);
        for (bucket, region) in [("conf-a", "europe-west4"), ("conf-b", "us-central1")] {
            local.create_bucket(bucket, region).await.expect("bucket");
        }
        let topology = Topology::parse(
            &TOPOLOGY
                .replace("acme-features-usc1", "conf-b")
                .replace("acme-features-use1", "conf-a"),
            "t.yaml",
        )
        .expect("topology");
        let dark = DarkRegions::default();
        dark.darken("asia-east1");
        let store = DarkBuckets::new(Arc::new(local), dark, &topology);
        conformance::run_all(&store, "conf-a", "conf-b").await;
    }

    #[tokio::test]
    async fn buckets_in_a_dark_region_fail_transiently_and_the_others_answer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let local = LocalStore::open(dir.path()).await.expect("store");
        let topology = Topology::parse(TOPOLOGY, "t.yaml").expect("topology");
        let dark = DarkRegions::default();
        let store = DarkBuckets::new(Arc::new(local), dark.clone(), &topology);
        let source = ObjectRef::new("acme-features-usc1", "a/b.parquet");
        let replica = ObjectRef::new("acme-features-use1", "a/b.parquet");
        store
            .create_bucket("acme-features-usc1", "us-central1")
            .await
            .expect("bucket");
        store
            .create_bucket("acme-features-use1", "us-east1")
            .await
            .expect("bucket");
        store
            .put(&source, bytes_stream(&b"rows"[..]), PutOptions::default())
            .await
            .expect("put");
        dark.darken("us-central1");
        let transient = |result: Result<(), StorageError>, what: &str| match result {
            Err(error) if error.is_transient() => {
                assert!(error.to_string().contains("us-central1"), "{error}");
            }
            other => panic!("{what} with us-central1 dark: {other:?}"),
        };
        transient(store.head(&source).await.map(drop), "head");
        transient(
            store.list("acme-features-usc1", "", None).await.map(drop),
            "list",
        );
        transient(
            store
                .copy(&source, &replica, CopyOptions::default())
                .await
                .map(drop),
            "copy out of it",
        );
        store
            .list("acme-features-use1", "", None)
            .await
            .expect("the replica's region answers");
        dark.restore("us-central1");
        store
            .copy(&source, &replica, CopyOptions::default())
            .await
            .expect("copied once it is back");
    }
}
