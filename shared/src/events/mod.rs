//! Events in: every HTTP POST a Lifeboat function receives, turned into one
//! typed [`InboundEvent`].
//!
//! Google Cloud delivers the same facts in several wrappings: CloudEvents
//! from Eventarc (binary or structured mode), Pub/Sub push envelopes (whose
//! message may itself carry a CloudEvent in the Pub/Sub protocol binding, a
//! Cloud Storage notification, a log entry or a Monitoring incident), Cloud
//! Monitoring webhooks and Cloud Scheduler ticks. [`parse`] unwraps all of
//! them so that handlers `match` on what happened and never look at headers;
//! the axum extractor in [`extract`] does the same for a request.
//!
//! Malformed input is an [`EventError`] that names the offending field:
//! redelivering it can never succeed, so the extractor hands it to the
//! handler, which keeps it as a [`crate::poison`] record and acknowledges it
//! (an error answer would be redelivered forever). A well-formed event
//! of a kind Lifeboat does not handle is not an error; it arrives as
//! [`InboundEvent::Other`] or [`InboundEvent::Message`] so the handler can
//! acknowledge it and move on.

pub mod audit_log;
pub mod cloud_event;
pub mod extract;
mod field;
pub mod monitoring;
pub mod pubsub;
pub mod scheduler;
pub mod storage;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use http::HeaderMap;
use http::header::CONTENT_TYPE;

pub use audit_log::{
    AuditLogEntry, BigQueryTable, BigQueryTableChange, LogOperation, TableChangeKind, UploadedModel,
};
pub use extract::{Delivery, Received};
pub use monitoring::{Incident, IncidentState};
pub use pubsub::PubSubMessage;
pub use scheduler::SchedulerTick;
pub use storage::StorageObject;

/// What every event carries, whatever its kind: enough to deduplicate it,
/// say where it came from and when, and tie its logs to the caller's trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventContext {
    /// Unique per event and stable across redeliveries: the CloudEvent id,
    /// the Pub/Sub message id, `incident_id/state` for an incident, or
    /// `job@schedule_time` for a scheduler tick. Idempotency records key on it.
    pub id: String,
    /// Who emitted it: the CloudEvent source, the Pub/Sub subscription, the
    /// bucket of a storage notification, the Monitoring project or the
    /// scheduler job.
    pub source: String,
    /// When the fact happened (CloudEvent time, Pub/Sub publish time,
    /// incident start or end, scheduled time), not when it was received.
    /// Where the sender may leave it out (a CloudEvent without `time`, a
    /// Cloud Scheduler run started by hand) it is the payload's own time
    /// when it has one, else the time the event was read.
    pub time: DateTime<Utc>,
    /// The caller's trace, when one came with the request.
    pub trace: Option<TraceContext>,
}

/// A W3C / Cloud Trace context: which trace the request belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The caller's span, 16 lowercase hex digits, when known.
    pub span_id: Option<String>,
    /// Whether the caller sampled the trace.
    pub sampled: bool,
}

impl TraceContext {
    /// Reads the trace from the `traceparent` header, or failing that from
    /// `X-Cloud-Trace-Context`. A malformed header is ignored: tracing must
    /// never cost an event.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        header("traceparent")
            .and_then(Self::from_traceparent)
            .or_else(|| header("x-cloud-trace-context").and_then(Self::from_cloud_trace_context))
    }

    /// Parses a W3C `traceparent`: `00-<trace id>-<span id>-<flags>`.
    pub fn from_traceparent(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let valid = version.len() == 2
            && version != "ff"
            && is_hex_id(trace_id, 32)
            && is_hex_id(span_id, 16)
            && flags.len() == 2;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        valid.then(|| Self {
            trace_id: trace_id.to_ascii_lowercase(),
            span_id: Some(span_id.to_ascii_lowercase()),
            sampled: flags & 1 == 1,
        })
    }

    /// Parses Google's `X-Cloud-Trace-Context`: `TRACE_ID[/SPAN_ID][;o=1]`,
    /// where the span id is decimal.
    pub fn from_cloud_trace_context(value: &str) -> Option<Self> {
        let (ids, options) = value.trim().split_once(';').unwrap_or((value.trim(), ""));
        let (trace_id, span_id) = match ids.split_once('/') {
            Some((trace, span)) => (trace, Some(span)),
            None => (ids, None),
        };
        if !is_hex_id(trace_id, 32) {
            return None;
        }
        let span_id = span_id
            .and_then(|span| span.parse::<u64>().ok())
            .filter(|span| *span != 0)
            .map(|span| format!("{span:016x}"));
        Some(Self {
            trace_id: trace_id.to_ascii_lowercase(),
            span_id,
            sampled: options.trim() == "o=1",
        })
    }
}

/// Whether `id` is `len` hex digits and not all zeros (which W3C forbids).
fn is_hex_id(id: &str, len: usize) -> bool {
    id.len() == len && id.bytes().all(|b| b.is_ascii_hexdigit()) && id.bytes().any(|b| b != b'0')
}

/// One event received over HTTP, unwrapped from whatever carried it.
#[derive(Debug, Clone, PartialEq)]
pub enum InboundEvent {
    /// A Cloud Storage object was written (a new generation exists).
    ObjectFinalized {
        /// Id, source, time and trace.
        context: EventContext,
        /// The object as it is now.
        object: StorageObject,
    },
    /// A Cloud Storage object generation was deleted or overwritten.
    ObjectDeleted {
        /// Id, source, time and trace.
        context: EventContext,
        /// The object as it was.
        object: StorageObject,
    },
    /// A Cloud Audit Log entry: an API call such as Vertex AI
    /// `ModelService.UploadModel` or a BigQuery table change.
    AuditLog {
        /// Id, source, time and trace.
        context: EventContext,
        /// The log entry.
        entry: Box<AuditLogEntry>,
    },
    /// A Cloud Monitoring incident opened or closed.
    Incident {
        /// Id (`incident_id/state`), source, time and trace.
        context: EventContext,
        /// The incident.
        incident: Box<Incident>,
    },
    /// A Cloud Scheduler job fired.
    SchedulerTick {
        /// Id (`job@schedule_time`), source, time and trace.
        context: EventContext,
        /// The job and its body.
        tick: SchedulerTick,
    },
    /// A Pub/Sub message of none of the shapes above (for example from a
    /// scheduler job that publishes to a topic); the handler decides.
    Message {
        /// Id (message id), source (subscription), time and trace.
        context: EventContext,
        /// The message as delivered.
        message: PubSubMessage,
    },
    /// A well-formed CloudEvent of a type that is not parsed here: Lifeboat's
    /// own event types, or Google types no function handles. A handler that
    /// does not recognise `event.ty()` acknowledges it and moves on.
    Other {
        /// Id, source, time and trace.
        context: EventContext,
        /// The event as received.
        event: Box<cloudevents::Event>,
    },
}

impl InboundEvent {
    /// The id, source, time and trace of the event.
    pub fn context(&self) -> &EventContext {
        match self {
            Self::ObjectFinalized { context, .. }
            | Self::ObjectDeleted { context, .. }
            | Self::AuditLog { context, .. }
            | Self::Incident { context, .. }
            | Self::SchedulerTick { context, .. }
            | Self::Message { context, .. }
            | Self::Other { context, .. } => context,
        }
    }

    /// A short name of the kind of event, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ObjectFinalized { .. } => "object_finalized",
            Self::ObjectDeleted { .. } => "object_deleted",
            Self::AuditLog { .. } => "audit_log",
            Self::Incident { .. } => "incident",
            Self::SchedulerTick { .. } => "scheduler_tick",
            Self::Message { .. } => "pubsub_message",
            Self::Other { .. } => "other",
        }
    }

    /// How long its sender waits for the answer: a Cloud Scheduler run
    /// [`crate::server::SCHEDULER_ATTEMPT_DEADLINE`], every push (Eventarc,
    /// Pub/Sub, a Monitoring alert through Pub/Sub)
    /// [`crate::server::PUSH_ACK_DEADLINE`]. An answer after it is lost.
    pub fn sender_deadline(&self) -> std::time::Duration {
        match self {
            Self::SchedulerTick { .. } => crate::server::SCHEDULER_ATTEMPT_DEADLINE,
            _ => crate::server::PUSH_ACK_DEADLINE,
        }
    }
}

/// Why a request is not an event Lifeboat can read. Every message names the
/// field, header or part of the body at fault; all of them are the sender's
/// fault, and no redelivery can cure them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// A field is missing, of the wrong type or holds a bad value.
    #[error("{field}: {problem}")]
    Invalid {
        /// Where: `data.generation`, `message.data`, `ce-type`, `body`...
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The request is none of the shapes Lifeboat accepts.
    #[error(
        "body: not a CloudEvent, a Pub/Sub push envelope, a Monitoring incident nor a Cloud Scheduler job ({0})"
    )]
    Unrecognised(String),
    /// The body is larger than Lifeboat reads.
    #[error("body: larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

impl EventError {
    /// A bad or missing field.
    pub(crate) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The same error found inside a wrapper: prefixes the field's path
    /// (`data` + `message.data` = `data.message.data`).
    pub(crate) fn within(self, prefix: &str) -> Self {
        match self {
            Self::Invalid { field, problem } if !prefix.is_empty() => Self::Invalid {
                field: format!("{prefix}.{field}"),
                problem,
            },
            other => other,
        }
    }
}

/// Turns a request's headers and body into an event. Never panics, whatever
/// the input: anything it cannot read is an [`EventError`].
pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<InboundEvent, EventError> {
    let trace = TraceContext::from_headers(headers);
    let content_type = headers
        .get(CONTENT_TYPE)
        .map(|value| {
            value
                .to_str()
                .map(|text| text.trim().to_ascii_lowercase())
                .map_err(|_| EventError::invalid("content-type", "not valid text"))
        })
        .transpose()?;
    let content_type = content_type.as_deref();

    if content_type.is_some_and(|ct| ct.starts_with("application/cloudevents"))
        || headers.contains_key("ce-specversion")
    {
        let event = cloud_event::from_http(headers, content_type, body)?;
        return cloud_event::dispatch(event, trace);
    }
    if scheduler::is_scheduler(headers) {
        return scheduler::parse(headers, body, trace);
    }
    if let Some(ct) = content_type
        && !is_json(ct)
    {
        return Err(EventError::invalid(
            "content-type",
            format!(
                "expected application/json, application/cloudevents+json or CloudEvents binary mode (ce-* headers), got {}",
                field::quote(ct)
            ),
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(EventError::invalid("body", "empty"));
    }
    let json: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| EventError::invalid("body", format!("invalid JSON ({e})")))?;
    if !json.is_object() {
        return Err(EventError::invalid(
            "body",
            format!("expected a JSON object, got {}", field::excerpt(&json)),
        ));
    }
    let root = field::JsonObject::new("", &json)?;
    if root.has("message") {
        let message = pubsub::PubSubMessage::from_envelope(&root)?;
        return pubsub::dispatch(message, trace);
    }
    if root.has("incident") {
        return monitoring::parse_notification(&root, trace);
    }
    Err(EventError::Unrecognised(
        "a JSON object with neither \"message\" nor \"incident\"".to_owned(),
    ))
}

/// Whether a content type is JSON (`application/json; charset=utf-8` is).
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence == "application/json" || essence.ends_with("+json")
}
