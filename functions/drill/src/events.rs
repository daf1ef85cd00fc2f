//! The drill's CloudEvents: the start, finish and abort of every run,
//! published on [`DRILL_EVENTS_TOPIC`] for paging and audit. An event's id
//! is the run's id and what happened, so a publication retried after a
//! crash carries the same id and subscribers can drop the duplicate.

use cloudevents::{Event, EventBuilder, EventBuilderV10};
use lifeboat_shared::bus::{BusError, DRILL_EVENTS_TOPIC, EventBus};
use lifeboat_shared::records::drill_run::{DrillRun, RunState};
use serde::Serialize;

/// The CloudEvent source of every drill event.
pub const EVENT_SOURCE: &str = "//lifeboat/drill";

/// What happened to a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Happening {
    /// It started: a fault may be in place from now on.
    Started,
    /// It finished, passed or failed, and cleaned up.
    Finished,
    /// It stopped early (guardrail, abort, crash) and cleaned up.
    Aborted,
}

impl Happening {
    /// The CloudEvent type.
    pub const fn event_type(self) -> &'static str {
        match self {
            Happening::Started => "dev.lifeboat.drill.started",
            Happening::Finished => "dev.lifeboat.drill.finished",
            Happening::Aborted => "dev.lifeboat.drill.aborted",
        }
    }

    /// What a finished run's state says happened at its end.
    pub fn of_end(state: RunState) -> Self {
        if state == RunState::Aborted {
            Happening::Aborted
        } else {
            Happening::Finished
        }
    }
}

/// The event's data: the run in brief; the full record is at the drill
/// service's `/runs/{run}`.
#[derive(Debug, Serialize)]
struct Brief<'a> {
    run: &'a str,
    drill: &'a str,
    kind: &'a str,
    workload: &'a str,
    target_region: &'a str,
    state: RunState,
    reasons: &'a [String],
    rto_seconds: Option<f64>,
    report: Option<&'a str>,
}

/// The event for `happening` of `run`.
pub fn event(run: &DrillRun, happening: Happening) -> Result<Event, BusError> {
    let suffix = match happening {
        Happening::Started => "started",
        Happening::Finished => "finished",
        Happening::Aborted => "aborted",
    };
    let id = format!("{}/{suffix}", run.id);
    let invalid = |reason: String| BusError::InvalidEvent {
        topic: DRILL_EVENTS_TOPIC.to_string(),
        event_id: id.clone(),
        reason,
    };
    let brief = Brief {
        run: &run.id,
        drill: &run.drill,
        kind: run.kind.name(),
        workload: &run.workload,
        target_region: &run.target_region,
        state: run.state,
        reasons: &run.reasons,
        rto_seconds: run.measurements.rto_seconds,
        report: run.report.as_deref(),
    };
    let data = serde_json::to_value(&brief).map_err(|e| invalid(e.to_string()))?;
    EventBuilderV10::new()
        .id(id.as_str())
        .source(EVENT_SOURCE)
        .ty(happening.event_type())
        .subject(run.workload.as_str())
        .time(chrono::Utc::now())
        .data("application/json", data)
        .build()
        .map_err(|e| invalid(e.to_string()))
}

/// Publishes `happening` of `run`; a failure is logged, never fatal: the
/// record in the state store is the run's truth, the event only its news.
pub async fn publish(bus: &dyn EventBus, run: &DrillRun, happening: Happening) {
    let published = match event(run, happening) {
        Ok(event) => bus.publish(DRILL_EVENTS_TOPIC, &event).await,
        Err(error) => Err(error),
    };
    match published {
        Ok(message) => {
            tracing::info!(run = %run.id, event = happening.event_type(), message, "drill event published");
        }
        Err(error) => {
            tracing::warn!(run = %run.id, event = happening.event_type(), %error, "drill event not published");
        }
    }
}
