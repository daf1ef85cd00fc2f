//! The local cloud's storage notifications: what Cloud Storage and Eventarc
//! do on Google Cloud. Every bucket of the topology is scanned at a short
//! interval; each new object generation (written through `LocalStore` or as
//! a plain file by any process) is published on the local bus as a
//! `google.cloud.storage.object.v1.finalized` CloudEvent carrying the JSON
//! API object resource, so push subscriptions deliver it to the functions
//! exactly as Eventarc would.
//!
//! Event ids are `bucket/name#generation`: after a restart every object is
//! announced again under the same id, which idempotent handlers answer as a
//! duplicate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloudevents::{Event, EventBuilder, EventBuilderV10};
use lifeboat_shared::bus::{BusError, EVENTS_TOPIC, EventBus};
use lifeboat_shared::events::cloud_event::STORAGE_OBJECT_FINALIZED;
use lifeboat_shared::server::Shutdown;
use lifeboat_shared::storage::{ObjectMeta, ObjectRef, ObjectStore, StorageError};

/// How often the buckets are scanned.
pub const SCAN_INTERVAL: Duration = Duration::from_millis(200);

/// Publishes a finalize event for every new object generation in `buckets`.
#[derive(Debug, Clone)]
pub struct StorageNotifier {
    storage: Arc<dyn ObjectStore>,
    bus: Arc<dyn EventBus>,
    buckets: Vec<String>,
}

/// Why a scan stopped early; the objects not yet announced are announced by
/// the next scan.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A bucket could not be listed.
    #[error("storage notifications: {0}")]
    Storage(#[from] StorageError),
    /// An event could not be published.
    #[error("storage notifications: {0}")]
    Bus(#[from] BusError),
    /// An event could not be built.
    #[error("storage notifications: {0}")]
    Event(#[from] cloudevents::event::EventBuilderError),
}

impl StorageNotifier {
    /// A notifier for `buckets` of `storage`, publishing on `bus`'s
    /// [`EVENTS_TOPIC`].
    pub fn new(
        storage: Arc<dyn ObjectStore>,
        bus: Arc<dyn EventBus>,
        buckets: Vec<String>,
    ) -> Self {
        Self {
            storage,
            bus,
            buckets,
        }
    }

    /// Scans every [`SCAN_INTERVAL`] until `shutdown` fires.
    pub async fn run(self, shutdown: Shutdown) {
        let mut announced = HashMap::new();
        loop {
            if let Err(error) = self.scan(&mut announced).await {
                tracing::warn!(%error, "storage notification scan failed; retrying");
            }
            tokio::select! {
                () = shutdown.triggered() => return,
                () = tokio::time::sleep(SCAN_INTERVAL) => {}
            }
        }
    }

    /// Publishes an event for each object whose generation is not in
    /// `announced`, and records it there; returns how many were published.
    pub async fn scan(
        &self,
        announced: &mut HashMap<ObjectRef, i64>,
    ) -> Result<usize, NotifyError> {
        let mut published = 0;
        for bucket in &self.buckets {
            let mut token: Option<String> = None;
            loop {
                let page = self.storage.list(bucket, "", token.as_deref()).await?;
                for meta in page.objects {
                    if announced.get(&meta.object) == Some(&meta.generation) {
                        continue;
                    }
                    self.bus.publish(EVENTS_TOPIC, &finalized(&meta)?).await?;
                    announced.insert(meta.object.clone(), meta.generation);
                    published += 1;
                }
                match page.next_page_token {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
        }
        Ok(published)
    }
}

/// The finalize CloudEvent of one object generation, shaped as Eventarc's.
pub fn finalized(meta: &ObjectMeta) -> Result<Event, cloudevents::event::EventBuilderError> {
    let object = &meta.object;
    let data = serde_json::json!({
        "kind": "storage#object",
        "bucket": object.bucket,
        "name": object.name,
        "generation": meta.generation.to_string(),
        "metageneration": "1",
        "size": meta.size.to_string(),
        "crc32c": STANDARD.encode(meta.crc32c.to_be_bytes()),
        "contentType": meta.content_type,
        "metadata": meta.metadata,
        "timeCreated": meta.updated,
        "updated": meta.updated,
    });
    EventBuilderV10::new()
        .id(format!(
            "{}/{}#{}",
            object.bucket, object.name, meta.generation
        ))
        .ty(STORAGE_OBJECT_FINALIZED)
        .source(format!(
            "//storage.googleapis.com/projects/_/buckets/{}",
            object.bucket
        ))
        .subject(format!("objects/{}", object.name))
        .time(meta.updated)
        .data("application/json", data)
        .build()
}
