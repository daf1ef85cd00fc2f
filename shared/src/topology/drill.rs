//! Drills: game days declared in the topology (`drills:`), each failing or
//! exercising one region of one workload on a Cloud Scheduler schedule,
//! inside a daily window, for at most a set time, within guardrails.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize, de};

use super::{Duration, Id, RegionId};

/// What a drill does to its target region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrillKind {
    /// Fails the region in Lifeboat's own front door, so that detection,
    /// failover, verification and failback run as in an outage.
    RegionOutage,
    /// Reads the newest checkpoint and samples the replicas in the region:
    /// can training resume and data be served there?
    Restore,
    /// Deploys the copied model on the pilot-light region's endpoint,
    /// measures the time to serve, and undeploys it.
    PilotLightDeploy,
    /// Pauses replication into the region for `isolate-for` and checks that
    /// the RPO exposure and its alert cross the target when they should.
    ReplicationIsolation,
}

impl DrillKind {
    /// The kind as written in the file.
    pub const fn name(self) -> &'static str {
        match self {
            DrillKind::RegionOutage => "region-outage",
            DrillKind::Restore => "restore",
            DrillKind::PilotLightDeploy => "pilot-light-deploy",
            DrillKind::ReplicationIsolation => "replication-isolation",
        }
    }
}

/// A schedule in unix-cron format (five fields: minute, hour, day of month,
/// month, day of week), the format Cloud Scheduler takes, read in UTC.
#[derive(Clone, Debug)]
pub struct Schedule {
    text: String,
    cron: croner::Cron,
}

impl Schedule {
    /// The schedule as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first time the schedule fires after `after`, if it ever does.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Schedule {}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let fields = text.split_whitespace().count();
        if fields != 5 {
            return Err(format!(
                "`{text}` has {fields} fields; a Cloud Scheduler schedule has 5 \
                 (minute hour day-of-month month day-of-week), e.g. `0 10 * * TUE`"
            ));
        }
        let cron = croner::Cron::from_str(text)
            .map_err(|error| format!("`{text}` is not a unix-cron schedule: {error}"))?;
        Ok(Self {
            text: text.to_string(),
            cron,
        })
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScheduleVisitor;

        impl de::Visitor<'_> for ScheduleVisitor {
            type Value = Schedule;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a unix-cron schedule such as `0 10 * * TUE`")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Schedule, E> {
                text.parse().map_err(E::custom)
            }
        }

        // Checked inside the visitor, so the problem points at the value.
        deserializer.deserialize_string(ScheduleVisitor)
    }
}

/// The daily time of day, in UTC, when a drill may start and run
/// (`HH:MM-HH:MM`); a window whose end is before its start runs past
/// midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// When it opens.
    pub start: NaiveTime,
    /// When it closes.
    pub end: NaiveTime,
}

impl Window {
    /// How long the window stays open each day.
    pub fn length(&self) -> chrono::TimeDelta {
        let length = self.end - self.start;
        if length < chrono::TimeDelta::zero() {
            length + chrono::TimeDelta::days(1)
        } else {
            length
        }
    }

    /// Whether `at` falls inside the window.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let time = at.time();
        if self.start <= self.end {
            self.start <= time && time < self.end
        } else {
            time >= self.start || time < self.end
        }
    }
}

impl fmt::Display for Window {
    /// As written in the file: `HH:MM-HH:MM`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.start.format("%H:%M"),
            self.end.format("%H:%M")
        )
    }
}

impl FromStr for Window {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let shape =
            || format!("`{text}` is not a window of the form HH:MM-HH:MM (UTC), e.g. 09:00-17:00");
        let (start, end) = text.split_once('-').ok_or_else(shape)?;
        let time =
            |part: &str| NaiveTime::parse_from_str(part.trim(), "%H:%M").map_err(|_| shape());
        let window = Self {
            start: time(start)?,
            end: time(end)?,
        };
        if window.start == window.end {
            return Err(format!("`{text}` opens and closes at the same time"));
        }
        Ok(window)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WindowVisitor;

        impl de::Visitor<'_> for WindowVisitor {
            type Value = Window;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a window such as `09:00-17:00`")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Window, E> {
                text.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_string(WindowVisitor)
    }
}

/// The limits a drill keeps; past any of them it stops and cleans up.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Guardrails {
    /// Real traffic's error ratio (0 to 1) past which the drill aborts.
    #[serde(default = "default_max_error_ratio")]
    pub max_error_ratio: f64,
    /// The share of predictions (0 to 1) that may fail during the drill
    /// for it to pass.
    #[serde(default = "default_failed_prediction_budget")]
    pub failed_prediction_budget: f64,
}

impl Default for Guardrails {
    fn default() -> Self {
        Self {
            max_error_ratio: default_max_error_ratio(),
            failed_prediction_budget: default_failed_prediction_budget(),
        }
    }
}

fn default_max_error_ratio() -> f64 {
    0.05
}

fn default_failed_prediction_budget() -> f64 {
    0.01
}

/// The longest a drill runs when the file names no `max-duration`.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_mins(30);

/// The longest `max-duration` a drill may have: a fault must end within
/// hours, never be left in place.
pub const LONGEST_MAX_DURATION: Duration = Duration::from_hours(6);

fn default_max_duration() -> Duration {
    DEFAULT_MAX_DURATION
}

/// A drill as written in the file; checked by the rules of
/// [`super::validate`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Drill {
    /// Unique among the drills; names the Cloud Scheduler job.
    pub id: Id,
    /// What it does.
    pub kind: DrillKind,
    /// The workload it exercises.
    pub workload: Id,
    /// The region it fails, restores into or isolates.
    pub target_region: RegionId,
    /// When Cloud Scheduler fires it.
    pub schedule: Schedule,
    /// When in the day it may run; any time when absent.
    pub window: Option<Window>,
    /// The longest it may run before it aborts itself.
    #[serde(default = "default_max_duration")]
    pub max_duration: Duration,
    /// How long replication is paused (`replication-isolation` only).
    pub isolate_for: Option<Duration>,
    /// Its limits.
    #[serde(default)]
    pub guardrails: Guardrails,
}
