//! Object storage: the trait every function copies and verifies through, its
//! Google Cloud Storage implementation ([`gcs`]), its local filesystem one
//! ([`local`]) and the conformance suite both must pass ([`conformance`]).
//!
//! A copy is always server-side: [`ObjectStore::copy`] never moves the bytes
//! through the caller. A replica counts as verified only when its size and
//! CRC32C match the source ([`ObjectMeta::verifies`]).

pub mod conformance;
pub mod dark;
pub mod gcs;
pub mod local;
pub mod naming;
pub mod replica;

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

/// One object: the bucket it lives in and its name inside that bucket.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Bucket name (globally unique, as in Cloud Storage).
    pub bucket: String,
    /// Object name: any UTF-8 up to 1024 bytes, `/` has no special meaning.
    pub name: String,
}

impl ObjectRef {
    /// The object `name` in `bucket`.
    pub fn new(bucket: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gs://{}/{}", self.bucket, self.name)
    }
}

/// What the store knows of one object version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Where the object is.
    pub object: ObjectRef,
    /// The version of the object's data; a new write gets a larger one.
    pub generation: i64,
    /// Size in bytes.
    pub size: u64,
    /// CRC32C (Castagnoli) of the whole content.
    pub crc32c: u32,
    /// MIME type, when one was set.
    pub content_type: Option<String>,
    /// User metadata (`x-goog-meta-*` in Cloud Storage).
    pub metadata: BTreeMap<String, String>,
    /// When this generation was written.
    pub updated: DateTime<Utc>,
}

impl ObjectMeta {
    /// True when `replica` holds the same bytes as `self` as far as the
    /// definition of "verified" goes: same size and same CRC32C.
    pub fn verifies(&self, replica: &ObjectMeta) -> bool {
        self.size == replica.size && self.crc32c == replica.crc32c
    }
}

/// How to write an object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// MIME type to record.
    pub content_type: Option<String>,
    /// User metadata to record.
    pub metadata: BTreeMap<String, String>,
    /// Write only if the live generation is this one (`Some(0)`: only if
    /// the object does not exist yet).
    pub if_generation_match: Option<i64>,
}

/// How to copy an object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// Copy only if the source's live generation is this one, so a copy never
    /// mixes up two versions of a changing object.
    pub if_source_generation_match: Option<i64>,
}

/// One page of a listing, in name order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The objects of this page.
    pub objects: Vec<ObjectMeta>,
    /// Pass this to get the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// The content of an object, as a stream of chunks (bounded memory whatever
/// the object's size).
pub type ByteStream = BoxStream<'static, Result<Bytes, StorageError>>;

/// Turns bytes held in memory into a [`ByteStream`].
pub fn bytes_stream(bytes: impl Into<Bytes>) -> ByteStream {
    Box::pin(futures::stream::once(futures::future::ready(Ok(
        bytes.into()
    ))))
}

/// What can go wrong in object storage. Every variant names the object or
/// bucket concerned.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object (or its bucket) does not exist.
    #[error("{object}: not found")]
    NotFound {
        /// The missing object.
        object: ObjectRef,
    },
    /// The bucket does not exist.
    #[error("bucket {bucket}: not found")]
    BucketNotFound {
        /// The missing bucket.
        bucket: String,
    },
    /// A generation precondition did not hold.
    #[error("{object}: precondition failed: {detail}")]
    PreconditionFailed {
        /// The object the precondition was about.
        object: ObjectRef,
        /// What was expected and what was found.
        detail: String,
    },
    /// The name cannot be stored (empty, too long, escapes the bucket...).
    #[error("{object}: invalid object name: {reason}")]
    InvalidName {
        /// The rejected object.
        object: ObjectRef,
        /// Why it is rejected.
        reason: String,
    },
    /// The bytes that arrived do not match what was expected.
    #[error("{object}: verification failed: {detail}")]
    Verification {
        /// The object whose bytes do not match.
        object: ObjectRef,
        /// Sizes and checksums compared.
        detail: String,
    },
    /// The backend refused the request for a reason a retry cannot fix (a
    /// 4xx answer other than 404 and 412: bad request, permission denied...).
    #[error("{context}: rejected with HTTP {status}: {message}")]
    Rejected {
        /// The operation and object, e.g. `put gs://a/x`.
        context: String,
        /// The HTTP status of the answer.
        status: u16,
        /// The server's own explanation.
        message: String,
    },
    /// The backend could not be reached or answered with an error; worth a
    /// retry.
    #[error("{context}: {source}")]
    Backend {
        /// The operation and object, e.g. `copy gs://a/x -> gs://b/x`.
        context: String,
        /// The underlying failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StorageError {
    /// True when retrying the same call may succeed (a 5xx answer from the
    /// function's point of view).
    pub fn is_transient(&self) -> bool {
        matches!(self, StorageError::Backend { .. })
    }
}

/// Object storage as the functions use it. Implemented by Cloud Storage
/// ([`gcs::GcsStore`]) and by the local filesystem ([`local::LocalStore`]).
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Creates `bucket` in `location` (a region id); does nothing if it exists.
    async fn create_bucket(&self, bucket: &str, location: &str) -> Result<(), StorageError>;

    /// Where `bucket` keeps its objects: a region (`us-east1`), a dual- or
    /// multi-region (`NAM4`, `US`), as the store reports it (Cloud Storage
    /// in upper case); `None` when the store cannot tell.
    async fn bucket_location(&self, bucket: &str) -> Result<Option<String>, StorageError>;

    /// Writes an object from a stream, computing its CRC32C on the way, and
    /// returns what was stored. The object appears whole or not at all.
    async fn put(
        &self,
        object: &ObjectRef,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<ObjectMeta, StorageError>;

    /// Reads an object: its metadata and a stream of its content.
    async fn get(&self, object: &ObjectRef) -> Result<(ObjectMeta, ByteStream), StorageError>;

    /// Reads an object's metadata only.
    async fn head(&self, object: &ObjectRef) -> Result<ObjectMeta, StorageError>;

    /// Lists the objects whose names start with `prefix`, one page at a time.
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        page_token: Option<&str>,
    ) -> Result<ListPage, StorageError>;

    /// Lists the objects named `first` to `last`, both included, in name
    /// order, one page at a time.
    async fn list_range(
        &self,
        bucket: &str,
        first: &str,
        last: &str,
        page_token: Option<&str>,
    ) -> Result<ListPage, StorageError>;

    /// Deletes an object, optionally only if its live generation matches.
    async fn delete(
        &self,
        object: &ObjectRef,
        if_generation_match: Option<i64>,
    ) -> Result<(), StorageError>;

    /// Copies `source` to `destination` on the server side (across buckets and
    /// regions), keeping content type and metadata, and returns the new
    /// object. The bytes never pass through the caller. With a pinned source
    /// generation the store may skip reading the source first; callers that
    /// need a verified replica go through [`replica::replicate`].
    async fn copy(
        &self,
        source: &ObjectRef,
        destination: &ObjectRef,
        options: CopyOptions,
    ) -> Result<ObjectMeta, StorageError>;
}

/// Wraps the content stream of `expected` so that it ends with a
/// [`StorageError::Verification`] instead of a clean end when the bytes that
/// went through do not have the expected size and CRC32C: a reader never
/// mistakes a truncated or corrupted download for the object.
pub(crate) fn verified_stream(expected: ObjectMeta, inner: ByteStream) -> ByteStream {
    struct State {
        inner: ByteStream,
        expected: ObjectMeta,
        crc: u32,
        size: u64,
        finished: bool,
    }
    let state = State {
        inner,
        expected,
        crc: 0,
        size: 0,
        finished: false,
    };
    Box::pin(futures::stream::unfold(state, |mut state| async move {
        use futures::StreamExt;
        if state.finished {
            return None;
        }
        match state.inner.next().await {
            Some(Ok(chunk)) => {
                state.crc = crc32c::crc32c_append(state.crc, &chunk);
                state.size += chunk.len() as u64;
                Some((Ok(chunk), state))
            }
            Some(Err(error)) => {
                state.finished = true;
                Some((Err(error), state))
            }
            None => {
                state.finished = true;
                if state.size == state.expected.size && state.crc == state.expected.crc32c {
                    None
                } else {
                    let error = StorageError::Verification {
                        object: state.expected.object.clone(),
                        detail: format!(
                            "read {} bytes with crc32c {:08x}, expected {} bytes with crc32c {:08x}",
                            state.size, state.crc, state.expected.size, state.expected.crc32c
                        ),
                    };
                    Some((Err(error), state))
                }
            }
        }
    }))
}
