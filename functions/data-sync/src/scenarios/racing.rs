//! A store with a writer racing data-sync: right after a server-side copy
//! of one armed object into one armed replica finishes, it writes a new
//! generation of that object in the source, as a producer overwriting it at
//! that moment would.

use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use lifeboat_shared::storage::{
    ByteStream, CopyOptions, ListPage, ObjectMeta, ObjectRef, ObjectStore, PutOptions,
    StorageError, bytes_stream,
};

/// An object store that overwrites an armed source object right after it
/// is copied.
#[derive(Debug)]
pub struct RacingWriter {
    inner: std::sync::Arc<dyn ObjectStore>,
    /// The source object to overwrite, the replica whose copy triggers it
    /// and the new bytes, until it fires.
    armed: Mutex<Option<(ObjectRef, ObjectRef, Bytes)>>,
}

impl RacingWriter {
    /// Wraps `inner`, unarmed.
    pub fn new(inner: std::sync::Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            armed: Mutex::new(None),
        }
    }

    /// The next copy of `source` to `replica` is followed by a write of
    /// `bytes` to `source`.
    pub fn arm(&self, source: ObjectRef, replica: ObjectRef, bytes: &[u8]) {
        *self.armed.lock().expect("armed") = Some((source, replica, Bytes::copy_from_slice(bytes)));
    }

    /// Whether the armed write has not happened yet.
    pub fn is_armed(&self) -> bool {
        self.armed.lock().expect("armed").is_some()
    }
}

#[async_trait]
impl ObjectStore for RacingWriter {
    async fn create_bucket(&self, bucket: &str, location: &str) -> Result<(), StorageError> {
        self.inner.create_bucket(bucket, location).await
    }
    async fn bucket_location(&self, bucket: &str) -> Result<Option<String>, StorageError> {
        self.inner.bucket_location(bucket).await
    }
    async fn put(
        &self,
        object: &ObjectRef,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        self.inner.put(object, body, options).await
    }
    async fn get(&self, object: &ObjectRef) -> Result<(ObjectMeta, ByteStream), StorageError> {
        self.inner.get(object).await
    }
    async fn head(&self, object: &ObjectRef) -> Result<ObjectMeta, StorageError> {
        self.inner.head(object).await
    }
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        page_token: Option<&str>,
    ) -> Result<ListPage, StorageError> {
        self.inner.list(bucket, prefix, page_token).await
    }
    async fn list_range(
        &self,
        bucket: &str,
        first: &str,
        last: &str,
        page_token: Option<&str>,
    ) -> Result<ListPage, StorageError> {
        self.inner.list_range(bucket, first, last, page_token).await
    }
    async fn delete(
        &self,
        object: &ObjectRef,
        if_generation_match: Option<i64>,
    ) -> Result<(), StorageError> {
        self.inner.delete(object, if_generation_match).await
    }
    async fn copy(
        &self,
        source: &ObjectRef,
        destination: &ObjectRef,
        options: CopyOptions,
    ) -> Result<ObjectMeta, StorageError> {
        let copied = self.inner.copy(source, destination, options).await?;
        let fire = {
            let mut armed = self.armed.lock().expect("armed");
            match armed.as_ref() {
                Some((object, replica, _)) if object == source && replica == destination => {
                    armed.take()
                }
                _ => None,
            }
        };
        if let Some((object, _, bytes)) = fire {
            self.inner
                .put(&object, bytes_stream(bytes), PutOptions::default())
                .await?;
        }
        Ok(copied)
    }
}
