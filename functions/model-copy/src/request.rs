//! What an inbound event asks for: a new version of which model. An audit
//! log entry of `ModelService.UploadModel` names the model in its resource,
//! or for a first upload in its response or request
//! ([`AuditLogEntry::uploaded_model`]), and the version once the upload is
//! done; a Pub/Sub
//! message names it in its JSON data (`{"model": "...", "version": "..."}`)
//! or in its `model` and `version` attributes.

use lifeboat_shared::events::{AuditLogEntry, PubSubMessage};
use lifeboat_shared::poison::Reason;
use serde::Deserialize;

/// The method whose audit log entries announce a new model version.
pub const UPLOAD_MODEL_METHOD: &str = "google.cloud.aiplatform.v1.ModelService.UploadModel";

/// A new version of a model, as an event names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewVersion {
    /// The model as named: asset id, Vertex AI model id or display name.
    pub model: String,
    /// The region it was uploaded to, when the event says.
    pub region: Option<String>,
    /// The version id, when the event says; else the newest is meant.
    pub version: Option<String>,
}

/// Why an event asks for nothing, or cannot be understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotARequest {
    /// Well-formed, but not a new model version (another method, a failed
    /// upload).
    Other(String),
    /// Malformed: it can never be handled; the field at fault and why.
    Malformed(Reason),
}

/// The new version an audit log entry announces.
pub fn from_audit_log(entry: &AuditLogEntry) -> Result<NewVersion, NotARequest> {
    if entry.method_name != UPLOAD_MODEL_METHOD {
        return Err(NotARequest::Other(format!(
            "audit log of {}, not of UploadModel",
            entry.method_name
        )));
    }
    if entry.status_code.is_some_and(|code| code != 0) {
        return Err(NotARequest::Other(format!(
            "UploadModel of {} failed: {}",
            entry.resource_name,
            entry.status_message.as_deref().unwrap_or("no message")
        )));
    }
    let Some(uploaded) = entry.uploaded_model() else {
        let pending = entry.operation.as_ref().is_some_and(|op| !op.last);
        let reason = format!(
            "UploadModel entry on {:?} names no model (resource, response, request nor operation)",
            entry.resource_name
        );
        return Err(if pending {
            NotARequest::Other(format!("{reason}; the operation's last entry will"))
        } else {
            NotARequest::Malformed(Reason::new("protoPayload", reason))
        });
    };
    Ok(NewVersion {
        model: uploaded.model,
        region: Some(uploaded.region),
        version: uploaded.version,
    })
}

#[derive(Deserialize)]
struct MessageData {
    model: String,
    version: Option<String>,
}

/// The new version a Pub/Sub message names.
pub fn from_message(message: &PubSubMessage) -> Result<NewVersion, NotARequest> {
    if let Some(model) = message.attributes.get("model") {
        return Ok(NewVersion {
            model: model.clone(),
            region: None,
            version: message.attributes.get("version").cloned(),
        });
    }
    let data: MessageData = serde_json::from_slice(&message.data).map_err(|e| {
        NotARequest::Malformed(Reason::new(
            "message.data",
            format!(
                "message {}: neither a `model` attribute nor JSON data {{\"model\": ...}}: {e}",
                message.message_id
            ),
        ))
    })?;
    Ok(NewVersion {
        model: data.model,
        region: None,
        version: data.version,
    })
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};
    use lifeboat_shared::events::{self, InboundEvent};

    use super::*;

    /// The audit log entry of a structured-mode fixture.
    fn structured_entry(name: &str) -> AuditLogEntry {
        let path = format!(
            "{}/../../tests/fixtures/events/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/cloudevents+json"),
        );
        match events::parse(&headers, &body) {
            Ok(InboundEvent::AuditLog { entry, .. }) => *entry,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn a_first_upload_names_its_model_in_the_response() {
        let entry = structured_entry("audit_log_upload_model_first_structured.json");
        assert_eq!(
            from_audit_log(&entry),
            Ok(NewVersion {
                model: "6630104472913281024".to_owned(),
                region: Some("europe-west4".to_owned()),
                version: Some("1".to_owned()),
            })
        );
    }

    #[test]
    fn an_entry_naming_no_model_waits_for_the_operations_last_entry() {
        let mut entry = structured_entry("audit_log_upload_model_first_structured.json");
        entry.response = None;
        entry.request = None;
        entry.operation = None;
        assert!(matches!(
            from_audit_log(&entry),
            Err(NotARequest::Malformed(_))
        ));
        entry.operation = Some(events::LogOperation {
            id: "operations/7".to_owned(),
            producer: None,
            first: true,
            last: false,
        });
        assert!(matches!(from_audit_log(&entry), Err(NotARequest::Other(_))));
    }
}
