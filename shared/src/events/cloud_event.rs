//! CloudEvents, from Eventarc over HTTP (binary or structured mode) or from
//! a Pub/Sub message in the Pub/Sub protocol binding (`ce-*` attributes),
//! and the dispatch on their type to the typed payloads.

use chrono::{DateTime, Utc};
use cloudevents::{AttributesReader, Data, Event, event::ExtensionValue};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::field::{JsonObject, excerpt};
use super::{
    AuditLogEntry, EventContext, EventError, InboundEvent, StorageObject, TraceContext, pubsub,
};

/// Eventarc's type for a Cloud Storage object written.
pub const STORAGE_OBJECT_FINALIZED: &str = "google.cloud.storage.object.v1.finalized";
/// Eventarc's type for a Cloud Storage object deleted.
pub const STORAGE_OBJECT_DELETED: &str = "google.cloud.storage.object.v1.deleted";
/// Eventarc's type for a Cloud Audit Log entry written.
pub const AUDIT_LOG_WRITTEN: &str = "google.cloud.audit.log.v1.written";
/// Eventarc's type for a message published on a Pub/Sub topic; its data is
/// a Pub/Sub push envelope.
pub const PUBSUB_MESSAGE_PUBLISHED: &str = "google.cloud.pubsub.topic.v1.messagePublished";

/// Reads a CloudEvent from an HTTP request in binary or structured mode.
pub(crate) fn from_http(
    headers: &HeaderMap,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Event, EventError> {
    if content_type.is_some_and(|ct| ct.starts_with("application/cloudevents-batch")) {
        return Err(EventError::invalid(
            "content-type",
            "CloudEvents batch mode is not supported; send one event per request",
        ));
    }
    let structured = content_type.is_some_and(|ct| ct.starts_with("application/cloudevents+json"));
    if structured && body.iter().all(u8::is_ascii_whitespace) {
        return Err(EventError::invalid("body", "empty"));
    }
    cloudevents::binding::http::to_event(headers, body.to_vec()).map_err(|e| {
        let part = if structured { "body" } else { "ce-* headers" };
        EventError::invalid(part, format!("invalid CloudEvent ({e})"))
    })
}

/// Reads a CloudEvent carried by a Pub/Sub message in the Pub/Sub protocol
/// binding: attributes `ce-specversion`, `ce-id`, ..., and `content-type`.
pub(crate) fn from_pubsub(message: &pubsub::PubSubMessage) -> Result<Event, EventError> {
    let mut headers = HeaderMap::new();
    for (name, value) in &message.attributes {
        let lower = name.to_ascii_lowercase();
        if !(lower.starts_with("ce-") || lower == "content-type") {
            continue;
        }
        let field = || format!("message.attributes.{name}");
        let name = HeaderName::from_bytes(lower.as_bytes())
            .map_err(|_| EventError::invalid(field(), "not a valid attribute name"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| EventError::invalid(field(), "not a valid attribute value"))?;
        headers.insert(name, value);
    }
    cloudevents::binding::http::to_event(&headers, message.data.clone()).map_err(|e| {
        EventError::invalid(
            "message.attributes",
            format!("invalid CloudEvent in the Pub/Sub binding ({e})"),
        )
    })
}

/// Turns a CloudEvent into the typed event its type announces.
pub(crate) fn dispatch(
    event: Event,
    outer_trace: Option<TraceContext>,
) -> Result<InboundEvent, EventError> {
    match event.ty() {
        STORAGE_OBJECT_FINALIZED => {
            let object = storage_object(&event)?;
            let written = object.updated.or(object.time_created);
            Ok(InboundEvent::ObjectFinalized {
                context: context_of(&event, outer_trace, written),
                object,
            })
        }
        STORAGE_OBJECT_DELETED => Ok(InboundEvent::ObjectDeleted {
            object: storage_object(&event)?,
            context: context_of(&event, outer_trace, None),
        }),
        AUDIT_LOG_WRITTEN => {
            let data = data_json(&event)?;
            let entry = AuditLogEntry::from_json(&JsonObject::new("data", &data)?)?;
            Ok(InboundEvent::AuditLog {
                context: context_of(&event, outer_trace, entry.timestamp),
                entry: Box::new(entry),
            })
        }
        PUBSUB_MESSAGE_PUBLISHED => {
            let data = data_json(&event)?;
            let envelope = JsonObject::new("data", &data)?;
            let message = pubsub::PubSubMessage::from_envelope(&envelope)?;
            let trace = context_of(&event, outer_trace, None).trace;
            pubsub::dispatch(message, trace).map_err(|e| e.within("data"))
        }
        _ => Ok(InboundEvent::Other {
            context: context_of(&event, outer_trace, None),
            event: Box::new(event),
        }),
    }
}

/// The context of a CloudEvent: its id, source and time; its trace from the
/// request or else from its `traceparent` extension.
///
/// `time` is optional in CloudEvents 1.0 (`ce-time` in binary mode, `time`
/// in structured mode). Without it the context's time is `payload_time`,
/// when the payload tells when the fact happened (a finalized object's
/// `updated`, an audit log entry's `timestamp`), and else the time the event
/// is read, which is never earlier than the fact: RPO measured from it errs
/// on the optimistic side by at most the delivery delay.
fn context_of(
    event: &Event,
    outer_trace: Option<TraceContext>,
    payload_time: Option<DateTime<Utc>>,
) -> EventContext {
    let time = event
        .time()
        .copied()
        .or(payload_time)
        .unwrap_or_else(Utc::now);
    let trace = outer_trace.or_else(|| match event.extension("traceparent") {
        Some(ExtensionValue::String(value)) => TraceContext::from_traceparent(value),
        _ => None,
    });
    EventContext {
        id: event.id().to_owned(),
        source: event.source().to_string(),
        time,
        trace,
    }
}

/// The object resource in a storage event's data.
fn storage_object(event: &Event) -> Result<StorageObject, EventError> {
    let data = data_json(event)?;
    StorageObject::from_json(&JsonObject::new("data", &data)?)
}

/// The event's data as a JSON object, whichever way it was carried.
fn data_json(event: &Event) -> Result<Value, EventError> {
    let value = match event.data() {
        None => return Err(EventError::invalid("data", "missing")),
        Some(Data::Json(value)) => value.clone(),
        Some(Data::String(text)) => parse_json(text.as_bytes())?,
        Some(Data::Binary(bytes)) => parse_json(bytes)?,
    };
    if value.is_object() {
        Ok(value)
    } else {
        Err(EventError::invalid(
            "data",
            format!("expected a JSON object, got {}", excerpt(&value)),
        ))
    }
}

/// Parses data bytes as JSON.
fn parse_json(bytes: &[u8]) -> Result<Value, EventError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(EventError::invalid("data", "missing"));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| EventError::invalid("data", format!("invalid JSON ({e})")))
}
