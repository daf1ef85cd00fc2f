//! The alarm raised when a failover is refused: the failed region keeps its
//! traffic because every candidate region failed a safety rule. The
//! incident's record says so; this event, published on
//! [`FAILOVER_REFUSED_TOPIC`], tells whoever must act (heal the region, fix
//! a standby, or force a move with `lifeboat failover --force`).
//!
//! The event's id is derived from the incident, so a retried publication
//! (the record is finished only once the event is published) carries the
//! same id and subscribers can drop the duplicate.

use cloudevents::{Event, EventBuilder, EventBuilderV10};
use lifeboat_shared::bus::{BusError, EventBus, FAILOVER_REFUSED_TOPIC};
use lifeboat_shared::records::incident::Refused;
use serde::{Deserialize, Serialize};

/// The CloudEvent type of a refusal.
pub const EVENT_TYPE: &str = "dev.lifeboat.failover.refused";

/// The CloudEvent source of a refusal.
pub const EVENT_SOURCE: &str = "//lifeboat/failover";

/// The event's data: what was not moved, and why not, region by region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRefused {
    /// The workload whose traffic stays.
    pub workload: String,
    /// The region the incident is about, which keeps its traffic.
    pub failed_region: String,
    /// Monitoring's incident id.
    pub incident_id: String,
    /// Every candidate region and the safety rule it failed.
    pub candidates: Vec<Refused>,
    /// The decision's reasons in full, as recorded.
    pub reasons: Vec<String>,
}

impl FailoverRefused {
    /// The refusal as a CloudEvent whose subject is the workload.
    pub fn to_event(&self) -> Result<Event, BusError> {
        let id = format!("{}/failover-refused", self.incident_id);
        let invalid = |reason: String| BusError::InvalidEvent {
            topic: FAILOVER_REFUSED_TOPIC.to_string(),
            event_id: id.clone(),
            reason,
        };
        let data = serde_json::to_value(self).map_err(|e| invalid(e.to_string()))?;
        EventBuilderV10::new()
            .id(id.as_str())
            .source(EVENT_SOURCE)
            .ty(EVENT_TYPE)
            .subject(self.workload.as_str())
            .time(chrono::Utc::now())
            .data("application/json", data)
            .build()
            .map_err(|e| invalid(e.to_string()))
    }

    /// Publishes the refusal; returns the bus's message id.
    pub async fn publish(&self, bus: &dyn EventBus) -> Result<String, BusError> {
        bus.publish(FAILOVER_REFUSED_TOPIC, &self.to_event()?).await
    }
}
