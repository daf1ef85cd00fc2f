//! Cloud Scheduler HTTP targets: a POST with the job's configured body and
//! `X-CloudScheduler*` headers.

use chrono::{DateTime, SecondsFormat, Utc};
use http::HeaderMap;
use serde_json::Value;

use super::field::parse_timestamp;
use super::{EventContext, EventError, InboundEvent, TraceContext};

/// The header Cloud Scheduler sets to `true` on every request.
const SCHEDULER_HEADER: &str = "x-cloudscheduler";
/// The header naming the job.
const JOB_NAME_HEADER: &str = "x-cloudscheduler-jobname";
/// The header with the time the run was scheduled for.
const SCHEDULE_TIME_HEADER: &str = "x-cloudscheduler-scheduletime";

/// One run of a Cloud Scheduler job.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerTick {
    /// The job's name.
    pub job: String,
    /// The time this run was scheduled for (not when it was sent).
    pub schedule_time: DateTime<Utc>,
    /// The job's JSON body (`{"job": "reconcile"}`); `null` when empty.
    pub body: Value,
}

/// Whether the request comes from Cloud Scheduler.
pub(crate) fn is_scheduler(headers: &HeaderMap) -> bool {
    headers
        .get(SCHEDULER_HEADER)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"))
}

/// Reads a scheduler tick. Its id is `job@schedule_time`, the same for every
/// retry of one run.
pub(crate) fn parse(
    headers: &HeaderMap,
    body: &[u8],
    trace: Option<TraceContext>,
) -> Result<InboundEvent, EventError> {
    let header = |name: &'static str| -> Result<String, EventError> {
        let value = headers
            .get(name)
            .ok_or_else(|| EventError::invalid(name, "missing"))?;
        let text = value
            .to_str()
            .map_err(|_| EventError::invalid(name, "not valid text"))?
            .trim();
        if text.is_empty() {
            return Err(EventError::invalid(name, "must not be empty"));
        }
        Ok(text.to_owned())
    };
    let job = header(JOB_NAME_HEADER)?;
    let schedule_time = parse_timestamp(SCHEDULE_TIME_HEADER, &header(SCHEDULE_TIME_HEADER)?)?;
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(body)
            .map_err(|e| EventError::invalid("body", format!("invalid JSON ({e})")))?
    };
    let context = EventContext {
        id: format!(
            "{job}@{}",
            schedule_time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        ),
        source: format!("//cloudscheduler.googleapis.com/jobs/{job}"),
        time: schedule_time,
        trace,
    };
    Ok(InboundEvent::SchedulerTick {
        context,
        tick: SchedulerTick {
            job,
            schedule_time,
            body,
        },
    })
}
