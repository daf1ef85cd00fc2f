//! Pub/Sub push: the envelope a push subscription POSTs, and what the
//! message inside may carry (a CloudEvent in the Pub/Sub protocol binding, a
//! Cloud Storage notification, a Monitoring incident, a log entry from a log
//! sink, or anything else).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::field::{JsonObject, decode_base64};
use super::{
    AuditLogEntry, EventContext, EventError, InboundEvent, StorageObject, TraceContext,
    cloud_event, monitoring,
};

/// One Pub/Sub message as a push subscription delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubMessage {
    /// The id Pub/Sub gave the message; redeliveries keep it.
    pub message_id: String,
    /// When the message was published.
    pub publish_time: DateTime<Utc>,
    /// The payload, base64-decoded (empty when the message had none).
    pub data: Vec<u8>,
    /// The message attributes.
    pub attributes: BTreeMap<String, String>,
    /// The ordering key, when the publisher set one.
    pub ordering_key: Option<String>,
    /// The subscription that pushed it (`projects/P/subscriptions/S`).
    pub subscription: Option<String>,
    /// How many times Pub/Sub has tried to deliver it, when dead-lettering is
    /// configured.
    pub delivery_attempt: Option<i64>,
}

/// The attribute in which Pub/Sub's OpenTelemetry integration carries the
/// publisher's W3C trace context.
const TRACEPARENT_ATTRIBUTE: &str = "googclient_traceparent";
/// The attribute with which Cloud Storage notifications name their event.
const GCS_EVENT_TYPE: &str = "eventType";
/// The attribute naming a notification's bucket.
const GCS_BUCKET_ID: &str = "bucketId";
/// The attribute naming a notification's object.
const GCS_OBJECT_ID: &str = "objectId";

impl PubSubMessage {
    /// Reads a push envelope `{"message": {...}, "subscription": ...}`;
    /// `envelope` knows its own path so errors read `message.data` for a
    /// plain push and `data.message.data` inside an Eventarc CloudEvent.
    pub(crate) fn from_envelope(envelope: &JsonObject<'_>) -> Result<Self, EventError> {
        let message = envelope.object("message")?;
        let data = match message.opt_string("data")? {
            Some(text) => decode_base64(&message.path_of("data"), &text)?,
            None => Vec::new(),
        };
        Ok(Self {
            message_id: message.string_any(&["messageId", "message_id"])?,
            publish_time: message.timestamp_any(&["publishTime", "publish_time"])?,
            data,
            attributes: message.string_map("attributes")?,
            ordering_key: message.opt_string("orderingKey")?,
            subscription: envelope.opt_string("subscription")?,
            delivery_attempt: envelope.opt_integer("deliveryAttempt")?,
        })
    }

    /// The context of the message itself: its id, its subscription and its
    /// publish time.
    fn context(&self, trace: Option<TraceContext>) -> EventContext {
        EventContext {
            id: self.message_id.clone(),
            source: self.subscription.clone().unwrap_or_default(),
            time: self.publish_time,
            trace,
        }
    }

    /// The data as a JSON object, if it is one.
    fn data_object(&self) -> Option<Value> {
        serde_json::from_slice::<Value>(&self.data)
            .ok()
            .filter(Value::is_object)
    }
}

/// Turns a message into the event it carries. Without a trace from the
/// request, the publisher's trace (if Pub/Sub carried one) is used.
pub(crate) fn dispatch(
    message: PubSubMessage,
    trace: Option<TraceContext>,
) -> Result<InboundEvent, EventError> {
    let trace = trace.or_else(|| {
        message
            .attributes
            .get(TRACEPARENT_ATTRIBUTE)
            .and_then(|value| TraceContext::from_traceparent(value))
    });
    if message
        .attributes
        .keys()
        .any(|name| name.eq_ignore_ascii_case("ce-specversion"))
    {
        let event = cloud_event::from_pubsub(&message)?;
        return cloud_event::dispatch(event, trace).map_err(|e| e.within("message"));
    }
    if let (Some(event_type), Some(bucket), Some(_)) = (
        message.attributes.get(GCS_EVENT_TYPE),
        message.attributes.get(GCS_BUCKET_ID),
        message.attributes.get(GCS_OBJECT_ID),
    ) {
        return storage_notification(event_type.clone(), bucket.clone(), message, trace);
    }
    if let Some(data) = message.data_object() {
        let root = JsonObject::new("message.data", &data)?;
        if root.has("incident") {
            return monitoring::parse_notification(&root, trace);
        }
        if root.has("protoPayload") && root.has("logName") {
            let entry = AuditLogEntry::from_json(&root)?;
            return Ok(InboundEvent::AuditLog {
                context: message.context(trace),
                entry: Box::new(entry),
            });
        }
    }
    Ok(InboundEvent::Message {
        context: message.context(trace),
        message,
    })
}

/// A Cloud Storage Pub/Sub notification (`payloadFormat` `JSON_API_V1`):
/// the object resource is the message data.
fn storage_notification(
    event_type: String,
    bucket: String,
    message: PubSubMessage,
    trace: Option<TraceContext>,
) -> Result<InboundEvent, EventError> {
    let finalized = match event_type.as_str() {
        "OBJECT_FINALIZE" => true,
        "OBJECT_DELETE" => false,
        _ => {
            return Ok(InboundEvent::Message {
                context: message.context(trace),
                message,
            });
        }
    };
    let data = message.data_object().ok_or_else(|| {
        EventError::invalid(
            "message.data",
            "expected the object resource as JSON (notification payloadFormat JSON_API_V1)",
        )
    })?;
    let object = StorageObject::from_json(&JsonObject::new("message.data", &data)?)?;
    let context = EventContext {
        source: format!("//storage.googleapis.com/projects/_/buckets/{bucket}"),
        ..message.context(trace)
    };
    Ok(if finalized {
        InboundEvent::ObjectFinalized { context, object }
    } else {
        InboundEvent::ObjectDeleted { context, object }
    })
}
