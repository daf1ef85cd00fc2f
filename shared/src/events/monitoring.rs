//! Cloud Monitoring incident notifications (schema version 1.2), received by
//! webhook (the JSON is the body) or through a Pub/Sub channel (the JSON is
//! the message data).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::field::{JsonObject, quote};
use super::{EventContext, EventError, InboundEvent, TraceContext};

/// The only notification schema version read here.
const SCHEMA_VERSION: &str = "1.2";

/// Whether an incident is still going on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentState {
    /// The condition is met: something is wrong.
    Open,
    /// The condition is no longer met.
    Closed,
}

impl IncidentState {
    /// The state as Monitoring spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// A Monitoring incident, as its notification describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// Monitoring's id of the incident; the open and the closed
    /// notifications share it.
    pub incident_id: String,
    /// Open or closed.
    pub state: IncidentState,
    /// When the condition started being met: the start of an outage's RTO.
    pub started_at: DateTime<Utc>,
    /// When it stopped, for a closed incident.
    pub ended_at: Option<DateTime<Utc>>,
    /// The project whose metrics scope holds the policy.
    pub scoping_project_id: Option<String>,
    /// The incident's page in the console.
    pub url: Option<String>,
    /// Monitoring's one-line description.
    pub summary: Option<String>,
    /// The alerting policy's display name.
    pub policy_name: Option<String>,
    /// The condition's display name.
    pub condition_name: Option<String>,
    /// The user labels of the policy (Lifeboat's policies name the workload
    /// and region there).
    pub policy_user_labels: BTreeMap<String, String>,
    /// The monitored resource type (`aiplatform.googleapis.com/Endpoint`).
    pub resource_type: Option<String>,
    /// The monitored resource labels (`location`, `endpoint_id`...).
    pub resource_labels: BTreeMap<String, String>,
    /// The resource type's display name.
    pub resource_type_display_name: Option<String>,
    /// The metric type.
    pub metric_type: Option<String>,
    /// The metric's display name.
    pub metric_display_name: Option<String>,
    /// The metric labels.
    pub metric_labels: BTreeMap<String, String>,
    /// The condition's threshold, as Monitoring wrote it.
    pub threshold_value: Option<String>,
    /// The observed value that crossed it.
    pub observed_value: Option<String>,
}

/// Reads a notification `{"version": "1.2", "incident": {...}}`. Its id is
/// `incident_id/state`, so the open and the close of one incident are two
/// events and a redelivery of either is the same event.
pub(crate) fn parse_notification(
    root: &JsonObject<'_>,
    trace: Option<TraceContext>,
) -> Result<InboundEvent, EventError> {
    let version = root.string("version")?;
    if version != SCHEMA_VERSION {
        return Err(EventError::invalid(
            root.path_of("version"),
            format!(
                "expected notification schema {}, got {}",
                quote(SCHEMA_VERSION),
                quote(&version)
            ),
        ));
    }
    let incident = Incident::from_json(&root.object("incident")?)?;
    let context = EventContext {
        id: format!("{}/{}", incident.incident_id, incident.state.as_str()),
        source: format!(
            "//monitoring.googleapis.com/projects/{}",
            incident.scoping_project_id.as_deref().unwrap_or("_")
        ),
        time: match incident.state {
            IncidentState::Open => incident.started_at,
            IncidentState::Closed => incident.ended_at.unwrap_or(incident.started_at),
        },
        trace,
    };
    Ok(InboundEvent::Incident {
        context,
        incident: Box::new(incident),
    })
}

impl Incident {
    /// Reads the `incident` object.
    fn from_json(incident: &JsonObject<'_>) -> Result<Self, EventError> {
        let state = incident.string("state")?;
        let state = match state.to_ascii_lowercase().as_str() {
            "open" => IncidentState::Open,
            "closed" => IncidentState::Closed,
            _ => {
                return Err(EventError::invalid(
                    incident.path_of("state"),
                    format!("expected \"open\" or \"closed\", got {}", quote(&state)),
                ));
            }
        };
        let unix_seconds = |name: &str| -> Result<Option<DateTime<Utc>>, EventError> {
            incident
                .opt_integer(name)?
                .map(|seconds| {
                    DateTime::from_timestamp(seconds, 0).ok_or_else(|| {
                        EventError::invalid(
                            incident.path_of(name),
                            format!("{seconds} is not a valid time in Unix seconds"),
                        )
                    })
                })
                .transpose()
        };
        let started_at = unix_seconds("started_at")?
            .ok_or_else(|| EventError::invalid(incident.path_of("started_at"), "missing"))?;
        let (resource_type, resource_labels) = incident.monitored_resource("resource")?;
        let metric = incident.opt_object("metric")?;
        Ok(Self {
            incident_id: incident.non_empty_string("incident_id")?,
            state,
            started_at,
            ended_at: unix_seconds("ended_at")?,
            scoping_project_id: incident.opt_string("scoping_project_id")?,
            url: incident.opt_string("url")?,
            summary: incident.opt_string("summary")?,
            policy_name: incident.opt_string("policy_name")?,
            condition_name: incident.opt_string("condition_name")?,
            policy_user_labels: incident.string_map("policy_user_labels")?,
            resource_type,
            resource_labels,
            resource_type_display_name: incident.opt_string("resource_type_display_name")?,
            metric_type: metric
                .as_ref()
                .map(|m| m.opt_string("type"))
                .transpose()?
                .flatten(),
            metric_display_name: metric
                .as_ref()
                .map(|m| m.opt_string("displayName"))
                .transpose()?
                .flatten(),
            metric_labels: metric
                .as_ref()
                .map(|m| m.string_map("labels"))
                .transpose()?
                .unwrap_or_default(),
            threshold_value: incident.opt_scalar_text("threshold_value")?,
            observed_value: incident.opt_scalar_text("observed_value")?,
        })
    }
}
