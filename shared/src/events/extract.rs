//! The axum extractor: a handler that takes a [`Delivery`] argument receives
//! the parsed event, or the [`EventError`] that says why the request is not
//! one, together with what a poison record needs of the request (its body
//! and whatever id, type and source it tells). No request is answered with
//! an error before the handler runs: a 4xx would be redelivered forever,
//! so an unreadable event goes to [`crate::poison`] like any other event
//! that can never be handled.

use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use futures::StreamExt as _;
use http::HeaderMap;

use super::{EventError, InboundEvent, parse, scheduler};

/// The largest body read: a Pub/Sub message holds at most 10 MB of data,
/// which base64 and the envelope inflate by about a third.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// One request as a function received it.
#[derive(Debug)]
pub struct Delivery {
    /// The event, or why the request is not one Lifeboat can read.
    pub event: Result<InboundEvent, EventError>,
    /// What the request says of itself, parsed or not.
    pub received: Received,
}

/// What a request tells of its event even when it cannot be parsed: enough
/// to keep it as a poison record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The event's id when it was parsed; else the CloudEvent id, Pub/Sub
    /// message id, incident or scheduler run the request names; else
    /// `body crc32c XXXXXXXX, N bytes` (the same for the same body).
    pub id: String,
    /// The CloudEvent type, else the kind of event, else `unreadable`.
    pub event_type: String,
    /// Who emitted it, when the request says (empty otherwise).
    pub source: String,
    /// The body as read (its first [`MAX_BODY_BYTES`] when larger).
    pub body: Bytes,
}

impl<S> FromRequest<S> for Delivery
where
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    /// Reads and parses the request, and records the event's id and kind
    /// (and trace, when parsed) on the current span (the request span of
    /// [`crate::server`]), so every log line of the handler carries them.
    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let (body, read) = read_body(body).await;
        let event = read.and_then(|()| parse(&parts.headers, &body));
        let received = Received::of(&parts.headers, &body, event.as_ref().ok());
        let span = tracing::Span::current();
        span.record("event_id", received.id.as_str());
        match &event {
            Ok(event) => {
                span.record("event_kind", event.kind());
                if let Some(trace) = &event.context().trace {
                    span.record("trace_id", trace.trace_id.as_str());
                }
            }
            Err(error) => {
                span.record("event_kind", "unreadable");
                tracing::warn!(%error, "unreadable event");
            }
        }
        Ok(Self { event, received })
    }
}

/// Reads up to [`MAX_BODY_BYTES`] of `body`; the error says why it stopped
/// early, if it did.
async fn read_body(body: axum::body::Body) -> (Bytes, Result<(), EventError>) {
    let mut chunks = body.into_data_stream();
    let mut read = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                let error = EventError::invalid("body", format!("could not be read ({e})"));
                return (read.into(), Err(error));
            }
        };
        if read.len() + chunk.len() > MAX_BODY_BYTES {
            let error = EventError::TooLarge {
                limit: MAX_BODY_BYTES,
            };
            return (read.into(), Err(error));
        }
        read.extend_from_slice(&chunk);
    }
    (read.into(), Ok(()))
}

impl Received {
    /// What `headers` and `body` tell of the event; `event` when parsed.
    fn of(headers: &HeaderMap, body: &Bytes, event: Option<&InboundEvent>) -> Self {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        };
        let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let text = |pointer: &str| {
            json.as_ref()
                .and_then(|json| json.pointer(pointer))
                .and_then(|value| match value {
                    serde_json::Value::String(text) => Some(text.clone()),
                    serde_json::Value::Number(number) => Some(number.to_string()),
                    _ => None,
                })
        };
        let event_type = header("ce-type")
            .or_else(|| text("/type"))
            .or_else(|| match event {
                Some(InboundEvent::Other { event, .. }) => {
                    Some(cloudevents::AttributesReader::ty(event.as_ref()).to_string())
                }
                Some(event) => Some(event.kind().to_string()),
                None => None,
            })
            .unwrap_or_else(|| "unreadable".to_string());
        let Some(event) = event else {
            let scheduled = || {
                let job = header(scheduler::JOB_NAME_HEADER)?;
                let time = header(scheduler::SCHEDULE_TIME_HEADER).unwrap_or_default();
                Some(format!("{job}@{time}"))
            };
            let incident = || {
                let id = text("/incident/incident_id")?;
                Some(format!(
                    "{id}/{}",
                    text("/incident/state").unwrap_or_default()
                ))
            };
            let id = header("ce-id")
                .or_else(|| text("/message/messageId"))
                .or_else(|| text("/message/message_id"))
                .or_else(|| text("/id"))
                .or_else(incident)
                .or_else(scheduled)
                .unwrap_or_else(|| {
                    let checksum = crc32c::crc32c(body);
                    format!("body crc32c {checksum:08x}, {} bytes", body.len())
                });
            let source = header("ce-source")
                .or_else(|| text("/subscription"))
                .or_else(|| text("/source"))
                .or_else(|| header(scheduler::JOB_NAME_HEADER))
                .unwrap_or_default();
            return Self {
                id,
                event_type,
                source,
                body: body.clone(),
            };
        };
        let context = event.context();
        Self {
            id: context.id.clone(),
            event_type,
            source: context.source.clone(),
            body: body.clone(),
        }
    }
}
