//! Poison records: the events a function can never handle, kept where a
//! person can see them instead of answered with an error.
//!
//! Pub/Sub, Eventarc and Cloud Scheduler redeliver on *any* answer that is
//! not a 2xx, a 4xx included, so an event that can never succeed (a payload
//! that does not parse, a model message without a model, an object name
//! Cloud Storage itself refuses) would loop until a dead-letter policy
//! ends it. Instead the function calls [`acknowledge`]: it writes (or
//! updates) one record in the state store's [`COLLECTION`] and answers 200.
//! Only when that write fails does it answer 503, so the sender delivers
//! the event again and nothing is lost.
//!
//! One record per function and event id: a duplicate delivery of the same
//! event bumps [`PoisonRecord::deliveries`] and [`PoisonRecord::last_seen`]
//! instead of adding a record. A record is bounded: the payload keeps its
//! first [`MAX_PAYLOAD_BYTES`] bytes and every other text its first
//! [`MAX_TEXT_BYTES`], so a record stays under 16 KiB. [`router`] serves
//! a function's records as `GET /poison`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::events::{EventError, Received};
use crate::state::idempotency::document_id;
use crate::state::{self, MAX_ID_BYTES, StateError, StateStore, text_prefix};

/// The collection every poison record lives in.
pub const COLLECTION: &str = "poison";

/// How much of an event's payload a record keeps: its first 8 KiB (cut at
/// a character boundary, invalid UTF-8 replaced), enough to see what was
/// sent; [`PoisonRecord::payload_bytes`] keeps the full size.
pub const MAX_PAYLOAD_BYTES: usize = 8 * 1024;

/// How much of the event id, type, source, field and problem a record
/// keeps: the first 1 KiB of each.
pub const MAX_TEXT_BYTES: usize = 1024;

/// How many times a write is retried after losing a race with another
/// delivery of the same event.
const WRITE_ATTEMPTS: usize = 5;

/// Why an event can never be handled: the field at fault and what is wrong
/// with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Where: `data.name`, `message.data`, `ce-type`, `body`...
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl Reason {
    /// A reason naming `field` and its `problem`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl From<&EventError> for Reason {
    /// The field an unreadable event's error names (`body` when it names
    /// none) and the error's message.
    fn from(error: &EventError) -> Self {
        match error {
            EventError::Invalid { field, problem } => Self::new(field, problem),
            other => Self::new("body", other.to_string()),
        }
    }
}

/// One delivery of an event that can never be handled, as a function saw
/// it: what [`keep`] records.
#[derive(Clone, Debug)]
pub struct Poison<'a> {
    /// The function that received it (`model-copy`, `data-sync`...).
    pub function: &'a str,
    /// The event id, stable across redeliveries.
    pub event_id: &'a str,
    /// The event's type: the CloudEvent type, or the kind of event.
    pub event_type: &'a str,
    /// Who emitted it.
    pub source: &'a str,
    /// Why it can never be handled.
    pub reason: Reason,
    /// The request body as received.
    pub payload: &'a [u8],
}

impl<'a> Poison<'a> {
    /// The poison of the request `received` by `function`, with `reason`:
    /// the id, type and source are the event's when it was read, else
    /// whatever the request still tells of them.
    pub fn of(function: &'a str, received: &'a Received, reason: Reason) -> Self {
        Self {
            function,
            event_id: &received.id,
            event_type: &received.event_type,
            source: &received.source,
            reason,
            payload: &received.body,
        }
    }
}

/// A poison record as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoisonRecord {
    /// The function that received the event.
    pub function: String,
    /// The event id (its first [`MAX_TEXT_BYTES`]).
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// Who emitted it.
    pub source: String,
    /// Why it can never be handled.
    pub reason: Reason,
    /// The first [`MAX_PAYLOAD_BYTES`] of the payload, as text.
    pub payload: String,
    /// The payload's full size in bytes.
    pub payload_bytes: u64,
    /// Whether [`PoisonRecord::payload`] holds less than the whole payload.
    pub payload_truncated: bool,
    /// When the first delivery arrived.
    pub first_seen: DateTime<Utc>,
    /// When the latest delivery arrived.
    pub last_seen: DateTime<Utc>,
    /// How many deliveries of the event arrived.
    pub deliveries: u64,
}

/// The document id of the record of `event_id` received by `function`:
/// the idempotency record's encoding of `function:event_id`. An id too
/// long for the store keeps its first 512 bytes, its length and its CRC32C
/// in the key, so it still names one record.
pub fn record_id(function: &str, event_id: &str) -> String {
    let key = format!("{function}:{event_id}");
    let id = document_id(&key);
    if id.len() <= MAX_ID_BYTES {
        return id;
    }
    let checksum = crc32c::crc32c(key.as_bytes());
    document_id(&format!(
        "{}…{} bytes, crc32c {checksum:08x}",
        text_prefix(&key, 512),
        key.len()
    ))
}

/// Records one delivery of `poison`: creates its record, or bumps the
/// delivery count of the record an earlier delivery of the same event
/// wrote, keeping its first-seen time and taking this delivery's reason
/// and payload (the same for a true redelivery). Returns the record as
/// stored.
pub async fn keep(store: &dyn StateStore, poison: &Poison<'_>) -> Result<PoisonRecord, StateError> {
    let now = Utc::now();
    let id = record_id(poison.function, poison.event_id);
    state::update(
        store,
        COLLECTION,
        &id,
        WRITE_ATTEMPTS,
        |current: Option<PoisonRecord>| {
            Ok::<_, StateError>(match current {
                Some(earlier) => PoisonRecord {
                    first_seen: earlier.first_seen,
                    deliveries: earlier.deliveries + 1,
                    ..new_record(poison, now)
                },
                None => new_record(poison, now),
            })
        },
    )
    .await
}

/// Keeps `poison` and answers its sender: 200 with the record when it is
/// stored (the event ends here), 503 when the store cannot be written (the
/// sender delivers it again; nothing is lost).
pub async fn acknowledge(store: &dyn StateStore, poison: &Poison<'_>) -> Response {
    match keep(store, poison).await {
        Ok(record) => {
            tracing::error!(
                function = poison.function,
                event_id = poison.event_id,
                field = %record.reason.field,
                problem = %record.reason.problem,
                deliveries = record.deliveries,
                "event can never be handled; acknowledged and kept as a poison record"
            );
            (StatusCode::OK, Json(json!({ "poison": record }))).into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "poison record not written; the sender will retry");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("could not keep the poison record: {error}"),
            )
                .into_response()
        }
    }
}

/// Every poison record `function` wrote, oldest first.
pub async fn records(
    store: &dyn StateStore,
    function: &str,
) -> Result<Vec<PoisonRecord>, StateError> {
    let mut records = Vec::new();
    for document in store.list(COLLECTION).await? {
        let record: PoisonRecord =
            serde_json::from_value(document.value).map_err(|e| StateError::InvalidValue {
                collection: COLLECTION.to_string(),
                id: document.id.clone(),
                reason: e.to_string(),
            })?;
        if record.function == function {
            records.push(record);
        }
    }
    records.sort_by_key(|record| record.first_seen);
    Ok(records)
}

/// `GET /poison`: the JSON list of `function`'s poison records ([`records`]),
/// or 503 when the store cannot be read. Merged into each function's router.
pub fn router(store: Arc<dyn StateStore>, function: &'static str) -> Router {
    Router::new()
        .route("/poison", get(list))
        .with_state((store, function))
}

async fn list(State((store, function)): State<(Arc<dyn StateStore>, &'static str)>) -> Response {
    match records(store.as_ref(), function).await {
        Ok(records) => Json(records).into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

/// The first record of `poison`, its texts bounded.
fn new_record(poison: &Poison<'_>, now: DateTime<Utc>) -> PoisonRecord {
    let cut = poison.payload.len().min(MAX_PAYLOAD_BYTES);
    let mut payload = String::from_utf8_lossy(&poison.payload[..cut]).into_owned();
    // A character cut in two became U+FFFD, which may be longer than the
    // bytes it replaced.
    while payload.len() > MAX_PAYLOAD_BYTES {
        payload.pop();
    }
    let text = |value: &str| text_prefix(value, MAX_TEXT_BYTES).to_string();
    PoisonRecord {
        function: poison.function.to_string(),
        event_id: text(poison.event_id),
        event_type: text(poison.event_type),
        source: text(poison.source),
        reason: Reason::new(text(&poison.reason.field), text(&poison.reason.problem)),
        payload,
        payload_bytes: u64::try_from(poison.payload.len()).unwrap_or(u64::MAX),
        payload_truncated: cut < poison.payload.len(),
        first_seen: now,
        last_seen: now,
        deliveries: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poison<'a>(event_id: &'a str, payload: &'a [u8]) -> Poison<'a> {
        Poison {
            function: "model-copy",
            event_id,
            event_type: "pubsub_message",
            source: "projects/p/subscriptions/s",
            reason: Reason::new("message.data.model", "missing"),
            payload,
        }
    }

    #[test]
    fn the_payload_keeps_its_first_8_kib_on_a_character_boundary() {
        let payload = "é".repeat(10_000);
        let record = new_record(&poison("e", payload.as_bytes()), Utc::now());
        assert!(record.payload.len() <= MAX_PAYLOAD_BYTES);
        assert_eq!(record.payload.len(), MAX_PAYLOAD_BYTES);
        assert!(
            record.payload.chars().all(|c| c == 'é'),
            "cut on a boundary"
        );
        assert_eq!(record.payload_bytes, 20_000);
        assert!(record.payload_truncated);

        let binary = vec![0xff_u8; MAX_PAYLOAD_BYTES + 1];
        let record = new_record(&poison("e", &binary), Utc::now());
        assert!(
            record.payload.len() <= MAX_PAYLOAD_BYTES,
            "replacements stay in bounds"
        );
        assert!(record.payload_truncated);

        let small = new_record(&poison("e", b"{\"x\":1}"), Utc::now());
        assert_eq!(small.payload, "{\"x\":1}");
        assert!(!small.payload_truncated);
    }

    #[test]
    fn overlong_event_ids_still_name_one_valid_document() {
        let long_a = "a".repeat(4000);
        let long_b = format!("{}b", "a".repeat(3999));
        let (a, b) = (record_id("f", &long_a), record_id("f", &long_b));
        assert_ne!(a, b, "ids differing after the kept prefix stay apart");
        for id in [&a, &b, &record_id("f", "short/id ..")] {
            state::check_id(COLLECTION, id).expect("a valid document id");
        }
        assert_eq!(
            record_id("f", "x"),
            document_id("f:x"),
            "short ids are encoded like idempotency keys"
        );
        let record = new_record(&poison(&long_a, b""), Utc::now());
        assert_eq!(record.event_id.len(), MAX_TEXT_BYTES);
    }
}
