//! The axum extractor: a handler that takes an [`InboundEvent`] argument
//! receives the parsed event, and a malformed request is answered with a
//! plain-text 4xx naming the problem before the handler runs.

use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;

use super::{EventError, InboundEvent, parse};

/// The largest body read: a Pub/Sub message holds at most 10 MB of data,
/// which base64 and the envelope inflate by about a third.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A request that is not a readable event, answered with its status and the
/// error's message as plain text.
#[derive(Debug)]
pub struct EventRejection(pub EventError);

impl IntoResponse for EventRejection {
    fn into_response(self) -> Response {
        let status = self.0.status();
        tracing::warn!(error = %self.0, "rejected a malformed event");
        (status, self.0.to_string()).into_response()
    }
}

impl<S> FromRequest<S> for InboundEvent
where
    S: Send + Sync,
{
    type Rejection = EventRejection;

    /// Reads and parses the request, and records the event's id, kind and
    /// trace on the current span (the request span of [`crate::server`]),
    /// so every log line of the handler carries them.
    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let mut chunks = body.into_data_stream();
        let mut body = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| {
                EventRejection(EventError::invalid(
                    "body",
                    format!("could not be read ({e})"),
                ))
            })?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(EventRejection(EventError::TooLarge {
                    limit: MAX_BODY_BYTES,
                }));
            }
            body.extend_from_slice(&chunk);
        }
        let event = parse(&parts.headers, &body).map_err(EventRejection)?;
        let context = event.context();
        let span = tracing::Span::current();
        span.record("event_id", context.id.as_str());
        span.record("event_kind", event.kind());
        if let Some(trace) = &context.trace {
            span.record("trace_id", trace.trace_id.as_str());
        }
        Ok(event)
    }
}
