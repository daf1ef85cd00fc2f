//! Cloud Storage objects as events describe them: the JSON API object
//! resource, the data of Eventarc's `google.cloud.storage.object.v1.*`
//! CloudEvents and of Pub/Sub notifications in `JSON_API_V1` format.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::EventError;
use super::field::JsonObject;

/// One generation of a Cloud Storage object, as the event saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageObject {
    /// The bucket name.
    pub bucket: String,
    /// The object name.
    pub name: String,
    /// The generation this event is about.
    pub generation: i64,
    /// The metadata generation, when given.
    pub metageneration: Option<i64>,
    /// Size in bytes.
    pub size: u64,
    /// CRC32C of the content (Castagnoli), which replicas are verified against.
    pub crc32c: u32,
    /// The content type, when set.
    pub content_type: Option<String>,
    /// Custom metadata.
    pub metadata: BTreeMap<String, String>,
    /// The storage class, when given.
    pub storage_class: Option<String>,
    /// When this generation was created: the source write time RPO is
    /// measured from.
    pub time_created: Option<DateTime<Utc>>,
    /// When the object's metadata last changed.
    pub updated: Option<DateTime<Utc>>,
}

impl StorageObject {
    /// Reads the object resource. Its 64-bit integers (`generation`,
    /// `metageneration`, `size`) are accepted as strings, as the JSON API
    /// renders them, or as numbers, which the proto3 JSON mapping also lets a
    /// parser accept; the CRC32C is base64 of its 4 big-endian bytes.
    pub(crate) fn from_json(object: &JsonObject<'_>) -> Result<Self, EventError> {
        Ok(Self {
            bucket: object.non_empty_string("bucket")?,
            name: object.non_empty_string("name")?,
            generation: object.int64("generation")?,
            metageneration: object.opt_int64("metageneration")?,
            size: object.uint64("size")?,
            crc32c: u32::from_be_bytes(object.base64_bytes::<4>("crc32c", "big-endian CRC32C")?),
            content_type: object.opt_string("contentType")?,
            metadata: object.string_map("metadata")?,
            storage_class: object.opt_string("storageClass")?,
            time_created: object.opt_timestamp("timeCreated")?,
            updated: object.opt_timestamp("updated")?,
        })
    }
}
