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
pub(crate) const JOB_NAME_HEADER: &str = "x-cloudscheduler-jobname";
/// The header with the time the run was scheduled for. Google sets it for
/// jobs on a unix-cron schedule; a run started by hand ("force run") may come
/// without it.
pub(crate) const SCHEDULE_TIME_HEADER: &str = "x-cloudscheduler-scheduletime";

/// One run of a Cloud Scheduler job.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerTick {
    /// The job's name.
    pub job: String,
    /// The time this run was scheduled for (not when it was sent); `None`
    /// when the request did not say, as for a run started by hand.
    pub schedule_time: Option<DateTime<Utc>>,
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
/// retry of one scheduled run. A run without a schedule time (started by
/// hand) is timed, and its id made, from the time it is read: each such
/// request is a run of its own.
pub(crate) fn parse(
    headers: &HeaderMap,
    body: &[u8],
    trace: Option<TraceContext>,
) -> Result<InboundEvent, EventError> {
    let header = |name: &'static str| -> Result<Option<String>, EventError> {
        let Some(value) = headers.get(name) else {
            return Ok(None);
        };
        let text = value
            .to_str()
            .map_err(|_| EventError::invalid(name, "not valid text"))?
            .trim();
        if text.is_empty() {
            return Err(EventError::invalid(name, "must not be empty"));
        }
        Ok(Some(text.to_owned()))
    };
    let job =
        header(JOB_NAME_HEADER)?.ok_or_else(|| EventError::invalid(JOB_NAME_HEADER, "missing"))?;
    let schedule_time = header(SCHEDULE_TIME_HEADER)?
        .map(|text| parse_timestamp(SCHEDULE_TIME_HEADER, &text))
        .transpose()?;
    let time = schedule_time.unwrap_or_else(Utc::now);
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(body)
            .map_err(|e| EventError::invalid("body", format!("invalid JSON ({e})")))?
    };
    let context = EventContext {
        id: format!(
            "{job}@{}",
            time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        ),
        source: format!("//cloudscheduler.googleapis.com/jobs/{job}"),
        time,
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
