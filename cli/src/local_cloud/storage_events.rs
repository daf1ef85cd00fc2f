//! The local cloud's storage notifications: what Cloud Storage and Eventarc
//! do on Google Cloud. Every bucket of the topology is scanned at a short
//! interval; each new object generation (written through `LocalStore` or as
//! a plain file by any process) is published on the local bus as a
//! `google.cloud.storage.object.v1.finalized` CloudEvent carrying the JSON
//! API object resource, and each announced generation that is gone as a
//! `google.cloud.storage.object.v1.deleted` one, so push subscriptions
//! deliver them to the functions exactly as Eventarc would. (An object
//! deleted while the cloud was stopped is not announced: data-sync's
//! reconcile applies that delete.)
//!
//! Event ids are `bucket/name#generation` (with `/deleted` for deletes)
//! while that fits [`PLAIN_EVENT_ID_BYTES`]; a longer one keeps the start of
//! the name and the SHA-256 of all of it (see [`event_id`]), so an id is
//! stable, distinct per object generation, and always within Pub/Sub's
//! 1024-byte attribute limit. An event the bus refuses anyway is logged and
//! skipped: one object never holds back the others. How far each bucket has
//! been announced (the newest `updated` time published) is kept in the state
//! store, so a restarted cloud announces only what changed since, plus a few
//! seconds of overlap whose repeats idempotent handlers answer as
//! duplicates.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloudevents::{Event, EventBuilder, EventBuilderV10};
use lifeboat_shared::bus::binding::MAX_ATTRIBUTE_VALUE_BYTES;
use lifeboat_shared::bus::{BusError, EVENTS_TOPIC, EventBus};
use lifeboat_shared::events::cloud_event::{STORAGE_OBJECT_DELETED, STORAGE_OBJECT_FINALIZED};
use lifeboat_shared::server::Shutdown;
use lifeboat_shared::state::{Precondition, StateError, StateStore};
use lifeboat_shared::storage::{ObjectMeta, ObjectStore, StorageError};
use sha2::{Digest, Sha256};

/// How often the buckets are scanned.
pub const SCAN_INTERVAL: Duration = Duration::from_millis(200);

/// The state collection holding each bucket's announced-through time.
pub const PROGRESS_COLLECTION: &str = "storage-notifications";

/// After a restart, objects updated up to this long before a bucket's
/// announced-through time are announced again: one written just before the
/// stop may not have been listed yet.
pub const RESTART_OVERLAP: TimeDelta = TimeDelta::seconds(5);

/// Longest event id kept as `bucket/name#generation[/deleted]`; a longer
/// one is shortened (see [`event_id`]) to between this and
/// [`MAX_ATTRIBUTE_VALUE_BYTES`], so the two forms never meet.
pub const PLAIN_EVENT_ID_BYTES: usize = 512;

/// How much of a long name a shortened event id keeps, in bytes.
const KEPT_NAME_BYTES: usize = 600;

/// Publishes a finalize event for every new object generation in `buckets`.
#[derive(Debug, Clone)]
pub struct StorageNotifier {
    storage: Arc<dyn ObjectStore>,
    bus: Arc<dyn EventBus>,
    state: Arc<dyn StateStore>,
    buckets: Vec<String>,
    restart_overlap: TimeDelta,
}

/// What the notifier knows: each object generation announced (or, after a
/// restart, already announced before), and each bucket's announced-through
/// time (from the previous run, then kept current).
#[derive(Debug, Default)]
pub struct Announced {
    /// Per bucket, per object name.
    objects: HashMap<String, HashMap<String, ObjectMeta>>,
    through: HashMap<String, DateTime<Utc>>,
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
    /// The announced-through times could not be read or kept.
    #[error("storage notifications: {0}")]
    State(#[from] StateError),
}

impl StorageNotifier {
    /// A notifier for `buckets` of `storage`, publishing on `bus`'s
    /// [`EVENTS_TOPIC`] and keeping its progress in `state`.
    pub fn new(
        storage: Arc<dyn ObjectStore>,
        bus: Arc<dyn EventBus>,
        state: Arc<dyn StateStore>,
        buckets: Vec<String>,
    ) -> Self {
        Self {
            storage,
            bus,
            state,
            buckets,
            restart_overlap: RESTART_OVERLAP,
        }
    }

    /// The notifier with another overlap than [`RESTART_OVERLAP`].
    #[cfg(test)]
    pub fn with_restart_overlap(mut self, overlap: TimeDelta) -> Self {
        self.restart_overlap = overlap;
        self
    }

    /// What a previous run announced: each bucket's announced-through time.
    pub async fn resume(&self) -> Result<Announced, NotifyError> {
        let mut announced = Announced::default();
        for document in self.state.list(PROGRESS_COLLECTION).await? {
            if let Some(through) = document.value["through"]
                .as_str()
                .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            {
                announced.through.insert(document.id, through.to_utc());
            }
        }
        Ok(announced)
    }

    /// Scans every [`SCAN_INTERVAL`] until `shutdown` fires.
    pub async fn run(self, shutdown: Shutdown) {
        let mut announced = loop {
            match self.resume().await {
                Ok(announced) => break announced,
                Err(error) => {
                    tracing::warn!(%error, "storage notification progress unreadable; retrying")
                }
            }
            tokio::select! {
                () = shutdown.triggered() => return,
                () = tokio::time::sleep(SCAN_INTERVAL) => {}
            }
        };
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

    /// Publishes a finalize event for each object generation not announced
    /// yet (neither in this run nor, before a restart, through the bucket's
    /// announced-through time less the restart overlap) and a delete event
    /// for each announced one that is gone; returns how many were published.
    pub async fn scan(&self, announced: &mut Announced) -> Result<usize, NotifyError> {
        let mut published = 0;
        for bucket in &self.buckets {
            let resumed_from = announced
                .through
                .get(bucket)
                .map(|t| *t - self.restart_overlap);
            let mut newest = announced.through.get(bucket).copied();
            let known = announced.objects.entry(bucket.clone()).or_default();
            let mut listed = HashSet::new();
            let mut token: Option<String> = None;
            loop {
                let page = self.storage.list(bucket, "", token.as_deref()).await?;
                for meta in page.objects {
                    listed.insert(meta.object.name.clone());
                    let same = known.get(&meta.object.name);
                    if same.is_some_and(|same| same.generation == meta.generation) {
                        continue;
                    }
                    let seen_before_restart = resumed_from.is_some_and(|from| meta.updated < from);
                    if !seen_before_restart {
                        if self.announce(STORAGE_OBJECT_FINALIZED, &meta).await? {
                            published += 1;
                        }
                        newest = newest.max(Some(meta.updated));
                    }
                    known.insert(meta.object.name.clone(), meta);
                }
                match page.next_page_token {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
            let gone: Vec<String> = known
                .keys()
                .filter(|name| !listed.contains(*name))
                .cloned()
                .collect();
            for name in gone {
                if let Some(meta) = known.get(&name)
                    && self.announce(STORAGE_OBJECT_DELETED, meta).await?
                {
                    published += 1;
                }
                known.remove(&name);
            }
            if let Some(through) = newest
                && announced.through.get(bucket) != Some(&through)
            {
                let value = serde_json::json!({"through": through.to_rfc3339()});
                self.state
                    .put(PROGRESS_COLLECTION, bucket, &value, Precondition::None)
                    .await?;
                announced.through.insert(bucket.clone(), through);
            }
        }
        Ok(published)
    }

    /// Publishes the `ty` event of `meta`; true when published. An event
    /// the bus refuses as it is (not a transient failure) is logged and
    /// skipped, so it never holds back the objects listed after it; a
    /// transient failure stops the scan, to be retried by the next.
    async fn announce(&self, ty: &str, meta: &ObjectMeta) -> Result<bool, NotifyError> {
        let refusal = match storage_event(ty, meta) {
            Ok(event) => match self.bus.publish(EVENTS_TOPIC, &event).await {
                Ok(_) => return Ok(true),
                Err(error) if error.is_transient() => return Err(error.into()),
                Err(error) => error.to_string(),
            },
            Err(error) => error.to_string(),
        };
        tracing::error!(
            object = %meta.object,
            generation = meta.generation,
            event_type = ty,
            error = refusal,
            "storage event cannot be published; skipped"
        );
        Ok(false)
    }
}

/// The id of the `ty` event of one object generation:
/// `bucket/name#generation` (`/deleted` added for a delete) when that has
/// at most [`PLAIN_EVENT_ID_BYTES`], else the same with the name cut to its
/// first [`KEPT_NAME_BYTES`] (at a character boundary) followed by `~` and
/// the SHA-256 of the whole name in hex, which lands strictly between
/// [`PLAIN_EVENT_ID_BYTES`] and [`MAX_ATTRIBUTE_VALUE_BYTES`].
pub fn event_id(ty: &str, meta: &ObjectMeta) -> String {
    let object = &meta.object;
    let deleted = if ty == STORAGE_OBJECT_DELETED {
        "/deleted"
    } else {
        ""
    };
    let plain = format!(
        "{}/{}#{}{deleted}",
        object.bucket, object.name, meta.generation
    );
    if plain.len() <= PLAIN_EVENT_ID_BYTES {
        return plain;
    }
    let mut kept = KEPT_NAME_BYTES.min(object.name.len());
    while !object.name.is_char_boundary(kept) {
        kept -= 1;
    }
    let digest: String = Sha256::digest(object.name.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!(
        "{}/{}~{digest}#{}{deleted}",
        object.bucket,
        &object.name[..kept],
        meta.generation
    )
}

/// The finalize or delete CloudEvent (`ty`) of one object generation,
/// shaped as Eventarc's.
pub fn storage_event(
    ty: &str,
    meta: &ObjectMeta,
) -> Result<Event, cloudevents::event::EventBuilderError> {
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
    let mut event = EventBuilderV10::new()
        .id(event_id(ty, meta))
        .ty(ty)
        .source(format!(
            "//storage.googleapis.com/projects/_/buckets/{}",
            object.bucket
        ))
        .time(meta.updated)
        .data("application/json", data);
    // The subject is optional and only repeats the name: it is left out
    // when it would pass Pub/Sub's attribute limit (a name over 1016 bytes).
    let subject = format!("objects/{}", object.name);
    if subject.len() <= MAX_ATTRIBUTE_VALUE_BYTES {
        event = event.subject(subject);
    }
    event.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_shared::bus::local::{LocalBus, LocalBusOptions};
    use lifeboat_shared::state::local::LocalStateStore;
    use lifeboat_shared::storage::local::LocalStore;
    use lifeboat_shared::storage::{ObjectRef, PutOptions, bytes_stream};

    async fn put(storage: &LocalStore, name: &str) {
        storage
            .put(
                &ObjectRef::new("ckpt-usc1", name),
                bytes_stream(&b"shard"[..]),
                PutOptions::default(),
            )
            .await
            .expect("put");
    }

    #[test]
    fn event_ids_stay_within_pub_sub_and_apart() {
        let meta = |name: &str, generation: i64| ObjectMeta {
            object: ObjectRef::new("ckpt-usc1", name),
            generation,
            size: 0,
            crc32c: 0,
            content_type: None,
            metadata: Default::default(),
            updated: Utc::now(),
        };
        assert_eq!(
            event_id(STORAGE_OBJECT_FINALIZED, &meta("step_1/a", 7)),
            "ckpt-usc1/step_1/a#7"
        );
        assert_eq!(
            event_id(STORAGE_OBJECT_DELETED, &meta("step_1/a", 7)),
            "ckpt-usc1/step_1/a#7/deleted"
        );
        let long = "é".repeat(512);
        let other = format!("{}x", "é".repeat(511));
        let mut ids = HashSet::new();
        for name in [long.as_str(), other.as_str(), "n".repeat(490).as_str()] {
            for generation in [1, i64::MAX] {
                for ty in [STORAGE_OBJECT_FINALIZED, STORAGE_OBJECT_DELETED] {
                    let id = event_id(ty, &meta(name, generation));
                    assert!(id.len() <= MAX_ATTRIBUTE_VALUE_BYTES, "{} bytes", id.len());
                    assert_eq!(id, event_id(ty, &meta(name, generation)), "stable");
                    assert!(ids.insert(id), "distinct");
                }
            }
        }
    }

    /// A local store with the bucket `ckpt-usc1`, a state store and a bus
    /// with the events topic, all under `dir`.
    async fn backends(
        dir: &std::path::Path,
    ) -> (Arc<LocalStore>, Arc<dyn StateStore>, Arc<dyn EventBus>) {
        let storage = Arc::new(
            LocalStore::open(dir.join("storage"))
                .await
                .expect("storage"),
        );
        storage
            .create_bucket("ckpt-usc1", "us-central1")
            .await
            .expect("bucket");
        let state = LocalStateStore::open(dir.join("state"))
            .await
            .expect("state");
        let bus = LocalBus::open(dir.join("bus"), LocalBusOptions::default())
            .await
            .expect("bus");
        bus.create_topic(EVENTS_TOPIC).await.expect("topic");
        (storage, Arc::new(state), Arc::new(bus))
    }

    #[tokio::test]
    async fn an_object_with_a_long_name_holds_back_no_other() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (storage, state, bus) = backends(dir.path()).await;
        // Listed first: names of 1000 and 1024 bytes, then ordinary ones.
        let long_names = ["0".repeat(1000), format!("0{}", "z".repeat(1023))];
        for name in &long_names {
            put(&storage, name).await;
        }
        for name in ["step_1/a", "step_1/b"] {
            put(&storage, name).await;
        }
        let notifier = StorageNotifier::new(
            storage.clone(),
            bus.clone(),
            state,
            vec!["ckpt-usc1".into()],
        );
        let mut announced = notifier.resume().await.expect("resume");
        assert_eq!(
            notifier.scan(&mut announced).await.expect("scan"),
            4,
            "every object announced in one scan"
        );
        for name in &long_names {
            storage
                .delete(&ObjectRef::new("ckpt-usc1", name.as_str()), None)
                .await
                .expect("delete");
        }
        assert_eq!(
            notifier.scan(&mut announced).await.expect("scan"),
            2,
            "the deletes announced"
        );
    }

    #[tokio::test]
    async fn a_restarted_notifier_announces_only_what_changed_since() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (storage, state, bus) = backends(dir.path()).await;
        let notifier = || {
            StorageNotifier::new(
                storage.clone(),
                bus.clone(),
                state.clone(),
                vec!["ckpt-usc1".into()],
            )
            .with_restart_overlap(TimeDelta::zero())
        };
        for name in ["step_1/a", "step_1/b", "step_1/commit_success.txt"] {
            put(&storage, name).await;
        }
        let first = notifier();
        let mut announced = first.resume().await.expect("resume");
        assert_eq!(first.scan(&mut announced).await.expect("scan"), 3);
        assert_eq!(
            first.scan(&mut announced).await.expect("scan"),
            0,
            "nothing new"
        );

        // A restart: a new notifier, resuming from the state store.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let restarted = notifier();
        let mut announced = restarted.resume().await.expect("resume");
        let repeats = restarted.scan(&mut announced).await.expect("scan");
        assert!(
            repeats <= 1,
            "only objects as new as the announced-through time repeat, got {repeats}"
        );
        put(&storage, "step_2/a").await;
        assert_eq!(
            restarted.scan(&mut announced).await.expect("scan"),
            1,
            "the new object"
        );
        storage
            .delete(&ObjectRef::new("ckpt-usc1", "step_1/a"), None)
            .await
            .expect("delete");
        assert_eq!(
            restarted.scan(&mut announced).await.expect("scan"),
            1,
            "the delete"
        );
        assert_eq!(
            restarted.scan(&mut announced).await.expect("scan"),
            0,
            "announced once"
        );
    }
}
