//! The CloudEvents Pub/Sub protocol binding in binary content mode, shared
//! by both buses so that an event looks the same whether Pub/Sub or the local
//! bus carries it: the message data is the event's data, every context
//! attribute travels as a `ce-` message attribute and the data's media type
//! as `content-type`.
//!
//! [`PushEnvelope`] is the JSON body a push subscription POSTs. Only the
//! minimal way back from a message to an event lives here
//! ([`PubSubMessage::to_event`]); the full intake of every inbound shape is
//! the job of [`crate::events`].

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, SecondsFormat, Utc};
use cloudevents::event::{Data, ExtensionValue};
use cloudevents::{AttributesReader, Event, EventBuilder, EventBuilderV10};
use serde::{Deserialize, Serialize};

use super::BusError;

/// Pub/Sub allows at most this many attributes on a message.
const MAX_ATTRIBUTES: usize = 100;
/// Pub/Sub's limit on an attribute key, in bytes.
const MAX_ATTRIBUTE_KEY_BYTES: usize = 256;
/// Pub/Sub's limit on an attribute value, in bytes.
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1024;
/// Pub/Sub's limit on a whole message (data and attributes), in bytes.
const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;

/// Prefix of every CloudEvents attribute carried as a message attribute.
const CE_PREFIX: &str = "ce-";
/// The message attribute that carries the data's media type.
const CONTENT_TYPE: &str = "content-type";

/// A Pub/Sub message as the binding produces it: the data bytes and the
/// attributes, before the bus gives it an id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PubSubMessage {
    /// The event's data (empty when the event has none).
    pub data: Vec<u8>,
    /// `ce-id`, `ce-source`, `ce-type`, `ce-specversion`, the optional
    /// `ce-time`, `ce-subject`, `ce-dataschema`, one `ce-NAME` per
    /// extension, and `content-type` when the data has a media type.
    pub attributes: BTreeMap<String, String>,
}

/// Why a message cannot be turned back into an event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The push body is not a push envelope.
    #[error("not a Pub/Sub push envelope: {0}")]
    Envelope(#[from] serde_json::Error),
    /// The envelope's data is not base64.
    #[error("message {message_id}: data is not base64: {source}")]
    Data {
        /// The message concerned.
        message_id: String,
        /// The decoding failure.
        #[source]
        source: base64::DecodeError,
    },
    /// The attributes do not make a valid CloudEvent.
    #[error("message {message_id}: not a CloudEvent: {reason}")]
    Event {
        /// The message concerned.
        message_id: String,
        /// What is missing or malformed.
        reason: String,
    },
}

impl PubSubMessage {
    /// Encodes `event`, bound for `topic`, checking Pub/Sub's limits so that
    /// the local bus refuses what Pub/Sub would refuse.
    pub fn from_event(topic: &str, event: &Event) -> Result<Self, BusError> {
        let invalid = |reason: String| BusError::InvalidEvent {
            topic: topic.to_string(),
            event_id: event.id().to_string(),
            reason,
        };
        let mut attributes = BTreeMap::new();
        attributes.insert(format!("{CE_PREFIX}id"), event.id().to_string());
        attributes.insert(format!("{CE_PREFIX}source"), event.source().to_string());
        attributes.insert(format!("{CE_PREFIX}type"), event.ty().to_string());
        attributes.insert(
            format!("{CE_PREFIX}specversion"),
            event.specversion().to_string(),
        );
        if let Some(time) = event.time() {
            attributes.insert(
                format!("{CE_PREFIX}time"),
                time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            );
        }
        if let Some(subject) = event.subject() {
            attributes.insert(format!("{CE_PREFIX}subject"), subject.to_string());
        }
        if let Some(schema) = event.dataschema() {
            attributes.insert(format!("{CE_PREFIX}dataschema"), schema.to_string());
        }
        if let Some(content_type) = event.datacontenttype() {
            attributes.insert(CONTENT_TYPE.to_string(), content_type.to_string());
        }
        for (name, value) in event.iter_extensions() {
            let value = match value {
                ExtensionValue::String(s) => s.clone(),
                ExtensionValue::Boolean(b) => b.to_string(),
                ExtensionValue::Integer(i) => i.to_string(),
            };
            attributes.insert(format!("{CE_PREFIX}{name}"), value);
        }
        let data = match event.data() {
            None => Vec::new(),
            Some(Data::Binary(bytes)) => bytes.clone(),
            Some(Data::String(text)) => text.clone().into_bytes(),
            Some(Data::Json(json)) => serde_json::to_vec(json)
                .map_err(|e| invalid(format!("data cannot be serialized: {e}")))?,
        };

        if attributes.len() > MAX_ATTRIBUTES {
            return Err(invalid(format!(
                "{} attributes, Pub/Sub allows {MAX_ATTRIBUTES}",
                attributes.len()
            )));
        }
        let mut size = data.len();
        for (key, value) in &attributes {
            if key.len() > MAX_ATTRIBUTE_KEY_BYTES {
                return Err(invalid(format!(
                    "attribute {key} is longer than {MAX_ATTRIBUTE_KEY_BYTES} bytes"
                )));
            }
            if value.len() > MAX_ATTRIBUTE_VALUE_BYTES {
                return Err(invalid(format!(
                    "attribute {key} is {} bytes, Pub/Sub allows {MAX_ATTRIBUTE_VALUE_BYTES}",
                    value.len()
                )));
            }
            size += key.len() + value.len();
        }
        if size > MAX_MESSAGE_BYTES {
            return Err(invalid(format!(
                "message is {size} bytes, Pub/Sub allows {MAX_MESSAGE_BYTES}"
            )));
        }
        Ok(Self { data, attributes })
    }

    /// Decodes the message back into an event (data as bytes, extensions as
    /// strings). `message_id` only labels errors.
    pub fn to_event(&self, message_id: &str) -> Result<Event, DecodeError> {
        let invalid = |reason: String| DecodeError::Event {
            message_id: message_id.to_string(),
            reason,
        };
        let required = |name: &str| {
            self.attributes
                .get(&format!("{CE_PREFIX}{name}"))
                .ok_or_else(|| invalid(format!("attribute {CE_PREFIX}{name} is missing")))
        };
        let specversion = required("specversion")?;
        if specversion != "1.0" {
            return Err(invalid(format!("unsupported specversion {specversion}")));
        }
        let mut builder = EventBuilderV10::new()
            .id(required("id")?)
            .source(required("source")?.as_str())
            .ty(required("type")?);
        for (key, value) in &self.attributes {
            let Some(name) = key.strip_prefix(CE_PREFIX) else {
                continue;
            };
            builder = match name {
                "id" | "source" | "type" | "specversion" | "datacontenttype" => builder,
                "time" => {
                    let time = DateTime::parse_from_rfc3339(value)
                        .map_err(|e| invalid(format!("ce-time {value:?}: {e}")))?;
                    builder.time(time.with_timezone(&Utc))
                }
                "subject" => builder.subject(value),
                "dataschema" => builder.data_with_schema(
                    self.content_type(),
                    value.as_str(),
                    Data::Binary(self.data.clone()),
                ),
                extension => builder.extension(extension, value.as_str()),
            };
        }
        if !self.data.is_empty() && !self.attributes.contains_key("ce-dataschema") {
            builder = builder.data(self.content_type(), Data::Binary(self.data.clone()));
        }
        builder.build().map_err(|e| invalid(e.to_string()))
    }

    /// The data's media type, `application/octet-stream` when none was given.
    fn content_type(&self) -> String {
        self.attributes
            .get(CONTENT_TYPE)
            .cloned()
            .unwrap_or_else(|| "application/octet-stream".to_string())
    }
}

/// The body a push subscription POSTs to its endpoint, as Pub/Sub sends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushEnvelope {
    /// The message pushed.
    pub message: PushedMessage,
    /// `projects/PROJECT/subscriptions/NAME`.
    pub subscription: String,
}

/// The message inside a [`PushEnvelope`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushedMessage {
    /// The data, base64 (standard alphabet, padded).
    #[serde(default)]
    pub data: String,
    /// The message attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The id the bus gave the message at publish time. (Pub/Sub also sends
    /// a snake_case `message_id` copy, which is ignored.)
    pub message_id: String,
    /// When the bus accepted the message (the `publish_time` copy is
    /// ignored likewise).
    pub publish_time: DateTime<Utc>,
}

impl PushEnvelope {
    /// The envelope pushing `message` (published as `message_id` at
    /// `publish_time`) for `subscription`, a full subscription name.
    pub fn new(
        subscription: impl Into<String>,
        message: &PubSubMessage,
        message_id: impl Into<String>,
        publish_time: DateTime<Utc>,
    ) -> Self {
        Self {
            message: PushedMessage {
                data: BASE64.encode(&message.data),
                attributes: message.attributes.clone(),
                message_id: message_id.into(),
                publish_time,
            },
            subscription: subscription.into(),
        }
    }

    /// Parses a push body and decodes the event it carries.
    pub fn decode_event(body: &[u8]) -> Result<Event, DecodeError> {
        let envelope: PushEnvelope = serde_json::from_slice(body)?;
        let message_id = envelope.message.message_id;
        let data = BASE64
            .decode(envelope.message.data.as_bytes())
            .map_err(|source| DecodeError::Data {
                message_id: message_id.clone(),
                source,
            })?;
        PubSubMessage {
            data,
            attributes: envelope.message.attributes,
        }
        .to_event(&message_id)
    }
}

/// The bytes of an event's data, as the binding sends them.
pub fn data_bytes(event: &Event) -> Vec<u8> {
    match event.data() {
        None => Vec::new(),
        Some(Data::Binary(bytes)) => bytes.clone(),
        Some(Data::String(text)) => text.clone().into_bytes(),
        Some(Data::Json(json)) => serde_json::to_vec(json).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        EventBuilderV10::new()
            .id("evt-1")
            .source("//storage.googleapis.com/projects/_/buckets/b")
            .ty("google.cloud.storage.object.v1.finalized")
            .subject("objects/a b/ü.bin")
            .time("2026-11-25T10:00:00.123Z")
            .extension("bucket", "b")
            .extension("attempt", 3i64)
            .data("application/json", serde_json::json!({"name": "a"}))
            .build()
            .expect("valid event")
    }

    #[test]
    fn attributes_follow_the_binary_mode_binding() {
        let message = PubSubMessage::from_event("t", &event()).expect("encodes");
        let get = |k: &str| message.attributes.get(k).map(String::as_str);
        assert_eq!(get("ce-id"), Some("evt-1"));
        assert_eq!(get("ce-specversion"), Some("1.0"));
        assert_eq!(get("ce-subject"), Some("objects/a b/ü.bin"));
        assert_eq!(get("ce-time"), Some("2026-11-25T10:00:00.123Z"));
        assert_eq!(get("ce-bucket"), Some("b"));
        assert_eq!(get("ce-attempt"), Some("3"));
        assert_eq!(get("content-type"), Some("application/json"));
        assert_eq!(message.data, br#"{"name":"a"}"#);
    }

    #[test]
    fn push_envelope_round_trips_the_event() {
        let original = event();
        let message = PubSubMessage::from_event("t", &original).expect("encodes");
        let envelope =
            PushEnvelope::new("projects/local/subscriptions/s", &message, "7", Utc::now());
        let body = serde_json::to_vec(&envelope).expect("serializes");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert!(json["message"]["messageId"].is_string());
        assert!(json["message"]["publishTime"].is_string());
        let decoded = PushEnvelope::decode_event(&body).expect("decodes");
        assert_eq!(decoded.id(), original.id());
        assert_eq!(decoded.source(), original.source());
        assert_eq!(decoded.ty(), original.ty());
        assert_eq!(decoded.subject(), original.subject());
        assert_eq!(decoded.time(), original.time());
        assert_eq!(data_bytes(&decoded), data_bytes(&original));
    }

    #[test]
    fn oversized_attribute_is_refused_with_the_topic() {
        let event = EventBuilderV10::new()
            .id("big")
            .source("/s")
            .ty("t")
            .subject("x".repeat(2000))
            .build()
            .expect("valid event");
        let err = PubSubMessage::from_event("orders", &event).expect_err("too long");
        assert!(err.to_string().contains("orders"), "{err}");
    }
}
