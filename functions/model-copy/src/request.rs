//! What an inbound event asks for: a new version of which model. An audit
//! log entry of `ModelService.UploadModel` names the model in its resource
//! (and the version in its response once the upload is done); a Pub/Sub
//! message names it in its JSON data (`{"model": "...", "version": "..."}`)
//! or in its `model` and `version` attributes.

use lifeboat_shared::events::{AuditLogEntry, PubSubMessage};
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
    /// Malformed: it can never be handled.
    Malformed(String),
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
    let parts: Vec<&str> = entry.resource_name.split('/').collect();
    let ["projects", _, "locations", region, "models", model] = parts.as_slice() else {
        return Err(NotARequest::Malformed(format!(
            "UploadModel resource {:?} is not projects/P/locations/R/models/M",
            entry.resource_name
        )));
    };
    let (model, named_version) = match model.split_once('@') {
        Some((model, version)) => (model, Some(version.to_string())),
        None => (*model, None),
    };
    let logged_version = entry
        .response
        .as_ref()
        .and_then(|r| r.get("modelVersionId"))
        .and_then(|v| v.as_str())
        .map(str::to_string);
    Ok(NewVersion {
        model: model.to_string(),
        region: Some((*region).to_string()),
        version: named_version.or(logged_version),
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
        NotARequest::Malformed(format!(
            "message {}: neither a `model` attribute nor JSON data {{\"model\": ...}}: {e}",
            message.message_id
        ))
    })?;
    Ok(NewVersion {
        model: data.model,
        region: None,
        version: data.version,
    })
}
