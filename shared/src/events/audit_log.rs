//! Cloud Audit Log entries: the data of Eventarc's
//! `google.cloud.audit.log.v1.written` CloudEvents and of messages from a log
//! sink to Pub/Sub. Lifeboat reads API calls from them (Vertex AI
//! `ModelService.UploadModel`) and BigQuery table changes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::EventError;
use super::field::JsonObject;

/// The BigQuery API's service name in audit logs.
const BIGQUERY_SERVICE: &str = "bigquery.googleapis.com";

/// One audit log entry: who called which method on which resource, and how
/// it went.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditLogEntry {
    /// `projects/P/logs/cloudaudit.googleapis.com%2Factivity` and the like.
    pub log_name: String,
    /// The entry's unique id within the log.
    pub insert_id: Option<String>,
    /// When the call happened.
    pub timestamp: Option<DateTime<Utc>>,
    /// The entry's severity (`NOTICE`, `ERROR`...).
    pub severity: Option<String>,
    /// The monitored resource type (`audited_resource`, `bigquery_dataset`...).
    pub resource_type: Option<String>,
    /// The monitored resource labels.
    pub resource_labels: BTreeMap<String, String>,
    /// The API called (`aiplatform.googleapis.com`).
    pub service_name: String,
    /// The method called
    /// (`google.cloud.aiplatform.v1.ModelService.UploadModel`).
    pub method_name: String,
    /// The resource acted on (`projects/P/locations/L/models/M`).
    pub resource_name: String,
    /// Who called, when the log says.
    pub principal_email: Option<String>,
    /// The call's status code (`google.rpc.Code`); absent means OK.
    pub status_code: Option<i64>,
    /// The status message, for a failed call.
    pub status_message: Option<String>,
    /// The request, as logged (its shape depends on the method).
    pub request: Option<Value>,
    /// The response, as logged (its shape depends on the method).
    pub response: Option<Value>,
    /// Service-specific metadata (`BigQueryAuditMetadata`...).
    pub metadata: Option<Value>,
    /// The long-running operation the entry belongs to, if any.
    pub operation: Option<LogOperation>,
    /// The BigQuery table change this entry records, if it records one.
    pub bigquery: Option<BigQueryTableChange>,
}

/// The long-running operation an audit log entry is part of: a call such as
/// `UploadModel` logs once when it starts (`first`) and once when it is done
/// (`last`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOperation {
    /// The operation's id.
    pub id: String,
    /// Who runs it (`aiplatform.googleapis.com`).
    pub producer: Option<String>,
    /// This is the entry logged when the operation started.
    pub first: bool,
    /// This is the entry logged when the operation finished.
    pub last: bool,
}

/// A BigQuery table, by its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigQueryTable {
    /// The project.
    pub project: String,
    /// The dataset.
    pub dataset: String,
    /// The table.
    pub table: String,
}

impl BigQueryTable {
    /// Parses `projects/P/datasets/D/tables/T`.
    pub fn from_resource_name(name: &str) -> Option<Self> {
        let mut parts = name.split('/');
        match (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) {
            (
                Some("projects"),
                Some(project),
                Some("datasets"),
                Some(dataset),
                Some("tables"),
                Some(table),
                None,
            ) if !project.is_empty() && !dataset.is_empty() && !table.is_empty() => Some(Self {
                project: project.to_owned(),
                dataset: dataset.to_owned(),
                table: table.to_owned(),
            }),
            _ => None,
        }
    }
}

/// The Vertex AI model an `UploadModel` call uploaded, as its audit log
/// entry names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedModel {
    /// The project, by id or number as the entry names it.
    pub project: String,
    /// The region (`us-central1`).
    pub region: String,
    /// The model id, the last part of `projects/P/locations/L/models/M`.
    pub model: String,
    /// The version id, when the entry names one.
    pub version: Option<String>,
}

impl UploadedModel {
    /// Parses `projects/P/locations/L/models/M`, `.../models/M@V`, or an
    /// operation under the model (`.../models/M/operations/O`).
    pub fn from_resource_name(name: &str) -> Option<Self> {
        let parts: Vec<&str> = name.split('/').collect();
        let (project, region, model) = match parts.as_slice() {
            ["projects", project, "locations", region, "models", model]
            | [
                "projects",
                project,
                "locations",
                region,
                "models",
                model,
                "operations",
                _,
            ] => (*project, *region, *model),
            _ => return None,
        };
        let (model, version) = match model.split_once('@') {
            Some((model, version)) => (model, Some(version.to_owned())),
            None => (model, None),
        };
        [project, region, model]
            .iter()
            .all(|part| !part.is_empty())
            .then(|| Self {
                project: project.to_owned(),
                region: region.to_owned(),
                model: model.to_owned(),
                version: version.filter(|v| !v.is_empty()),
            })
    }
}

/// What happened to a BigQuery table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableChangeKind {
    /// The table was created.
    Created,
    /// Its schema or metadata changed.
    Changed,
    /// Rows were inserted, updated, deleted or the table truncated.
    DataChanged,
    /// The table was deleted.
    Deleted,
}

/// A change to a BigQuery table, from `BigQueryAuditMetadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigQueryTableChange {
    /// The table.
    pub table: BigQueryTable,
    /// What happened to it.
    pub kind: TableChangeKind,
    /// The job that made the change, when one did.
    pub job_name: Option<String>,
    /// Why (`JOB`, `QUERY`, `TABLE_INSERT_REQUEST`...).
    pub reason: Option<String>,
}

impl AuditLogEntry {
    /// Reads a `LogEntry` whose payload is an audit log.
    pub(crate) fn from_json(entry: &JsonObject<'_>) -> Result<Self, EventError> {
        let payload = entry.object("protoPayload")?;
        let (resource_type, resource_labels) = entry.monitored_resource("resource")?;
        let status = payload.opt_object("status")?;
        let operation = entry
            .opt_object("operation")?
            .map(|op| -> Result<LogOperation, EventError> {
                Ok(LogOperation {
                    id: op.string("id")?,
                    producer: op.opt_string("producer")?,
                    first: op.flag("first")?,
                    last: op.flag("last")?,
                })
            })
            .transpose()?;
        let service_name = payload.non_empty_string("serviceName")?;
        let resource_name = payload.string("resourceName")?;
        let metadata = payload.opt_object("metadata")?;
        let bigquery = match &metadata {
            Some(metadata) if service_name == BIGQUERY_SERVICE => {
                table_change(metadata, &resource_name)?
            }
            _ => None,
        };
        Ok(Self {
            log_name: entry.non_empty_string("logName")?,
            insert_id: entry.opt_string("insertId")?,
            timestamp: entry.opt_timestamp("timestamp")?,
            severity: entry.opt_string("severity")?,
            resource_type,
            resource_labels,
            method_name: payload.non_empty_string("methodName")?,
            principal_email: payload
                .opt_object("authenticationInfo")?
                .map(|auth| auth.opt_string("principalEmail"))
                .transpose()?
                .flatten(),
            status_code: status
                .as_ref()
                .map(|s| s.opt_integer("code"))
                .transpose()?
                .flatten(),
            status_message: status
                .as_ref()
                .map(|s| s.opt_string("message"))
                .transpose()?
                .flatten(),
            request: payload.raw("request"),
            response: payload.raw("response"),
            metadata: payload.raw("metadata"),
            operation,
            bigquery,
            service_name,
            resource_name,
        })
    }

    /// The model a Vertex AI `UploadModel` entry is about, wherever the
    /// entry names it. `resourceName` is the target of the call: the model
    /// for a new version of it, but for a first upload it may be only the
    /// location the model is uploaded into (`projects/P/locations/L`, the
    /// request's `parent`). The model is then taken, in this order, from the
    /// `UploadModelResponse`'s `model` (logged when the operation is done),
    /// the request's `parentModel` (set only for a new version), the
    /// request's `modelId` under the request's `parent`, or the long-running
    /// operation's name (`.../models/M/operations/O`). The version is the
    /// name's `@V` suffix, else the response's `modelVersionId`. `None` when
    /// the entry names no model anywhere (the first entry of an upload whose
    /// id Vertex AI picks: the operation's last entry will name it).
    pub fn uploaded_model(&self) -> Option<UploadedModel> {
        let text = |value: Option<&Value>, key: &str| -> Option<String> {
            value?.get(key)?.as_str().map(str::to_owned)
        };
        let request = self.request.as_ref();
        let response = self.response.as_ref();
        let from_request_id = || {
            let parent = text(request, "parent").unwrap_or_else(|| self.resource_name.clone());
            let id = text(request, "modelId")?;
            UploadedModel::from_resource_name(&format!("{parent}/models/{id}"))
        };
        let mut model = UploadedModel::from_resource_name(&self.resource_name)
            .or_else(|| text(response, "model").and_then(|n| UploadedModel::from_resource_name(&n)))
            .or_else(|| {
                text(request, "parentModel").and_then(|n| UploadedModel::from_resource_name(&n))
            })
            .or_else(from_request_id)
            .or_else(|| text(response, "name").and_then(|n| UploadedModel::from_resource_name(&n)))
            .or_else(|| {
                self.operation
                    .as_ref()
                    .and_then(|op| UploadedModel::from_resource_name(&op.id))
            })?;
        if model.version.is_none() {
            model.version = text(response, "modelVersionId").filter(|v| !v.is_empty());
        }
        Some(model)
    }

    /// Whether the call succeeded (no status, or status code 0).
    pub fn succeeded(&self) -> bool {
        self.status_code.unwrap_or(0) == 0
    }
}

/// The table change recorded in `BigQueryAuditMetadata`, if any.
fn table_change(
    metadata: &JsonObject<'_>,
    resource_name: &str,
) -> Result<Option<BigQueryTableChange>, EventError> {
    const KINDS: [(&str, TableChangeKind); 4] = [
        ("tableCreation", TableChangeKind::Created),
        ("tableChange", TableChangeKind::Changed),
        ("tableDataChange", TableChangeKind::DataChanged),
        ("tableDeletion", TableChangeKind::Deleted),
    ];
    let Some((key, kind)) = KINDS.into_iter().find(|(key, _)| metadata.has(key)) else {
        return Ok(None);
    };
    let Some(table) = BigQueryTable::from_resource_name(resource_name) else {
        return Ok(None);
    };
    let change = metadata.object(key)?;
    Ok(Some(BigQueryTableChange {
        table,
        kind,
        job_name: change.opt_string("jobName")?,
        reason: change.opt_string("reason")?,
    }))
}
