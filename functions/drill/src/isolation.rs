//! The `replication-isolation` drill: replication of the workload's assets
//! into the target region is paused (a [`lifeboat_shared::pause`] record,
//! which checkpoint-fanout and data-sync obey) for `isolate-for`, and the
//! RPO exposure there is read every [`IsolationContext::poll`] from the
//! records `lifeboat status` reads. Each asset should cross the workload's
//! RPO target when its newest replicated version (a checkpoint's source
//! write time, a bucket's or dataset's oldest unreplicated change) becomes
//! older than the target, no sooner and no later; after the pause, the
//! exposure should come back under the target once replication catches up.
//!
//! A crossing is seen at the first reading past it, so it is judged
//! against the expected time with a tolerance of one poll (the reading
//! comes up to one poll late) plus one second (data-sync's exposure is
//! kept in whole seconds).
//!
//! The alert part: Lifeboat's RPO alert watches the checkpoint replication
//! lag metric ([`CHECKPOINT_REPLICATION_LAG`]), which checkpoint-fanout
//! writes when a checkpoint commits in a region. The drill reads it back
//! from the metrics backend every poll and checks that a point written
//! since the pause passes the RPO target. What that does not prove is said
//! in a finding ([`ALERT_NOT_VERIFIED`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lifeboat_shared::metrics::{CHECKPOINT_REPLICATION_LAG, GaugePoint, MetricSink};
use lifeboat_shared::pause::{self, Pause, PauseError};
use lifeboat_shared::records::checkpoint_rpo;
use lifeboat_shared::records::data_rpo::{self, AssetKind};
use lifeboat_shared::records::drill_run::{DrillRun, ExposurePoint, TargetCheck};
use lifeboat_shared::server::Shutdown;
use lifeboat_shared::state::{StateError, StateStore};
use lifeboat_shared::topology::{Drill, DrillKind, Topology, Workload};

/// What the drill says about the alert that it cannot check from the
/// metric alone.
pub const ALERT_NOT_VERIFIED: &str = "verified: a replication lag point written since the pause passes the RPO target (the threshold an RPO alert on this metric uses). Not verified: that a Monitoring alert policy on the metric exists and opened an incident (infra/ declares none, and the drill does not read alert policies or incidents); that an alert fires during the pause (the metric gets a point only when a checkpoint commits in the region, so it has none while replication is paused); bucket and dataset exposure (no metric is written for them).";

/// What an isolation drill acts through.
#[derive(Clone, Debug)]
pub struct IsolationContext {
    /// The deployment: the workload's assets and its RPO target.
    pub topology: Arc<Topology>,
    /// Where the pause and the RPO records live.
    pub state: Arc<dyn StateStore>,
    /// Where checkpoint-fanout writes the replication lag metric, read back
    /// for the alert check.
    pub metrics: Arc<dyn MetricSink>,
    /// How often the exposure is read.
    pub poll: Duration,
}

/// Why an isolation could not be run to its end.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// The drill is not a `replication-isolation` with an `isolate-for`.
    #[error("drill {drill}: not a replication-isolation drill with isolate-for")]
    NotAnIsolation {
        /// The drill's id.
        drill: String,
    },
    /// The drill's workload is not in the topology.
    #[error("drill {drill}: workload {workload} is not in the topology")]
    UnknownWorkload {
        /// The drill's id.
        drill: String,
        /// The missing workload.
        workload: String,
    },
    /// The pause could not be written or removed.
    #[error("run {run}: replication of {workload} into {region}: {source}")]
    Pause {
        /// The run.
        run: String,
        /// The workload.
        workload: String,
        /// The target region.
        region: String,
        /// The failure.
        #[source]
        source: PauseError,
    },
    /// The RPO records could not be read (replication was resumed).
    #[error("run {run}: reading the RPO exposure in {region}: {source}")]
    Exposure {
        /// The run.
        run: String,
        /// The target region.
        region: String,
        /// The failure.
        #[source]
        source: StateError,
    },
    /// Aborted: replication was resumed.
    #[error("run {run}: aborted; replication into {region} resumed")]
    Aborted {
        /// The run.
        run: String,
        /// The target region.
        region: String,
    },
}

/// One asset's exposure in the target region, as read once.
#[derive(Clone, Debug)]
struct Reading {
    /// The asset's id.
    asset: String,
    /// Whether it is a checkpoint location (the metric exists only for
    /// those).
    checkpoint: bool,
    /// The workload's RPO target.
    target: TimeDelta,
    /// Since when the region is exposed (`None` with `known`: nothing
    /// unreplicated).
    exposed_since: Option<DateTime<Utc>>,
    /// Whether any record says anything about the asset there.
    known: bool,
}

impl Reading {
    /// The exposure at `at`, when known.
    fn exposure(&self, at: DateTime<Utc>) -> Option<TimeDelta> {
        match self.exposed_since {
            Some(since) => Some((at - since).max(TimeDelta::zero())),
            None => self.known.then(TimeDelta::zero),
        }
    }

    /// When the exposure passes the target if nothing reaches the region.
    fn crosses_at(&self) -> Option<DateTime<Utc>> {
        self.exposed_since.map(|since| since + self.target)
    }
}

/// What the drill followed of one asset.
#[derive(Clone, Debug)]
struct Track {
    /// The last reading.
    reading: Reading,
    /// The exposure's origin when the pause began.
    since_at_start: Option<DateTime<Utc>>,
    /// The exposure's origin at the last reading during the pause: what
    /// the crossing is expected from.
    since_in_pause: Option<DateTime<Utc>>,
    /// When a reading first showed it past the target.
    crossed_at: Option<DateTime<Utc>>,
    /// When a reading after the resume first showed it back under.
    back_at: Option<DateTime<Utc>>,
    /// Whether a copy reached the region during the pause (the origin
    /// moved forward).
    leaked: bool,
    /// The highest replication lag point written since the pause began,
    /// in seconds (checkpoint locations only).
    highest_lag: Option<f64>,
}

/// The tolerance of a crossing's time: one poll plus one second.
fn tolerance(poll: Duration) -> TimeDelta {
    TimeDelta::from_std(poll).unwrap_or(TimeDelta::MAX) + TimeDelta::seconds(1)
}

fn seconds(delta: TimeDelta) -> f64 {
    delta.as_seconds_f64()
}

/// Reads the exposure of every asset of `workload` replicated into
/// `region`: checkpoint locations from checkpoint-fanout's records, buckets
/// and datasets from data-sync's (their records give the exact time of the
/// oldest unreplicated change).
async fn read(
    topology: &Topology,
    state: &dyn StateStore,
    workload: &Workload,
    region: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Reading>, StateError> {
    let target = TimeDelta::from_std(workload.target_rpo().get()).unwrap_or(TimeDelta::MAX);
    let mut readings: Vec<Reading> = checkpoint_rpo::report(topology, state, now)
        .await?
        .into_iter()
        .filter(|row| row.workload == workload.id.as_str() && row.region == region)
        .map(|row| Reading {
            asset: row.location,
            checkpoint: true,
            target,
            exposed_since: row.source_written_at,
            known: row.source_written_at.is_some(),
        })
        .collect();
    let records = data_rpo::read_all(state).await?;
    let assets = workload
        .assets
        .buckets
        .iter()
        .filter(|b| b.replicas.keys().any(|r| r.as_str() == region))
        .map(|b| (AssetKind::Bucket, b.id.as_str()))
        .chain(
            workload
                .assets
                .datasets
                .iter()
                .filter(|d| d.replicas.keys().any(|r| r.as_str() == region))
                .map(|d| (AssetKind::Dataset, d.id.as_str())),
        );
    for (kind, asset) in assets {
        let record = records
            .iter()
            .find(|r| r.kind == kind && r.asset == asset && r.region == region);
        readings.push(Reading {
            asset: asset.to_string(),
            checkpoint: false,
            target,
            exposed_since: record.and_then(|r| r.oldest_unreplicated),
            known: record.is_some(),
        });
    }
    Ok(readings)
}

/// Waits one `poll` from `now`, but not past `until`, or until `abort`
/// fires; returns whether it fired.
async fn aborted_before(
    abort: &Shutdown,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    poll: Duration,
) -> bool {
    let wait = (until - now).to_std().unwrap_or_default().min(poll);
    tokio::select! {
        () = abort.triggered() => true,
        () = tokio::time::sleep(wait) => false,
    }
}

/// Runs the isolation of `drill` as `run`: pauses replication into the
/// target region for `isolate-for`, follows each asset's exposure against
/// the RPO target, resumes, follows the catch-up, and records the steps,
/// phases `isolation` and `catch-up`, the series, the checks and a finding
/// per asset in `run`. On `abort` it resumes replication and returns
/// [`IsolationError::Aborted`]; on any other error it resumes too.
pub async fn isolate(
    context: &IsolationContext,
    drill: &Drill,
    run: &mut DrillRun,
    abort: &Shutdown,
) -> Result<(), IsolationError> {
    let isolate_for = match (drill.kind, drill.isolate_for) {
        (DrillKind::ReplicationIsolation, Some(isolate_for)) => isolate_for,
        _ => {
            return Err(IsolationError::NotAnIsolation {
                drill: drill.id.to_string(),
            });
        }
    };
    let topology = context.topology.clone();
    let Some(workload) = topology.workload(drill.workload.as_str()) else {
        return Err(IsolationError::UnknownWorkload {
            drill: drill.id.to_string(),
            workload: drill.workload.to_string(),
        });
    };
    let region = drill.target_region.to_string();
    let exposure_error = |run: &DrillRun, source| IsolationError::Exposure {
        run: run.id.clone(),
        region: region.clone(),
        source,
    };

    let start = Utc::now();
    let initial = read(&topology, context.state.as_ref(), workload, &region, start)
        .await
        .map_err(|e| exposure_error(run, e))?;
    let resume_at = start + TimeDelta::from_std(isolate_for.get()).unwrap_or(TimeDelta::MAX);
    for reading in &initial {
        let expected = match reading.crosses_at() {
            Some(at) if at <= start => format!("already past the target at the start ({at})"),
            Some(at) if at <= resume_at => format!(
                "should cross the target {:.1} s into the pause, at {at}",
                seconds(at - start)
            ),
            Some(at) => format!("should not cross within the pause (it would at {at})"),
            None if reading.known => {
                "nothing unreplicated: crosses only if a change is written during the pause"
                    .to_string()
            }
            None => "no record of it in the region yet".to_string(),
        };
        run.step_at(
            start,
            "exposure-read",
            format!("{}: {expected}", reading.asset),
        );
    }

    run.cleanup.paused_at = Some(start);
    let paused = Pause {
        workload: workload.id.to_string(),
        region: region.clone(),
        run: run.id.clone(),
        paused_at: start,
        until: resume_at,
    };
    if let Err(source) = pause::pause(context.state.as_ref(), &paused).await {
        // `paused_at` stays: a write that failed on its way back may have
        // landed, and resuming a pause that is not there does nothing.
        return Err(IsolationError::Pause {
            run: run.id.clone(),
            workload: paused.workload,
            region: region.clone(),
            source,
        });
    }
    tracing::info!(run = %run.id, workload = %workload.id, %region, until = %resume_at, "replication paused");
    run.step_at(
        start,
        "replication-paused",
        format!(
            "replication of {} into {region} paused until {resume_at}",
            workload.id
        ),
    );

    let mut tracks: Vec<Track> = initial
        .into_iter()
        .map(|reading| Track {
            since_at_start: reading.exposed_since,
            since_in_pause: reading.exposed_since,
            reading,
            crossed_at: None,
            back_at: None,
            leaked: false,
            highest_lag: None,
        })
        .collect();
    let mut metric_error = None;
    let mut look = async |run: &mut DrillRun, tracks: &mut Vec<Track>, paused: bool| {
        let now = Utc::now();
        let readings = read(&topology, context.state.as_ref(), workload, &region, now).await?;
        observe(run, &region, tracks, readings, now, paused);
        watch_lag(
            context,
            &region,
            workload.id.as_str(),
            start,
            tracks,
            &mut metric_error,
        )
        .await;
        Ok::<_, StateError>(now)
    };

    // The isolation: read every poll until the pause ends.
    loop {
        let now = match look(run, &mut tracks, true).await {
            Ok(now) => now,
            Err(source) => {
                resume(context, run).await?;
                return Err(exposure_error(run, source));
            }
        };
        if now >= resume_at {
            break;
        }
        if aborted_before(abort, now, resume_at, context.poll).await {
            return abandon(context, run, &region).await;
        }
    }
    resume(context, run).await?;
    let resumed_at = run.cleanup.resumed_at.unwrap_or_else(Utc::now);
    run.phase("isolation", start, resumed_at);

    // The catch-up: until every asset that crossed is back under, for at
    // most the workload's RPO target or the pause's length, whichever is
    // longer (the backlog is at most that much), and never past the run's
    // deadline.
    let target = TimeDelta::from_std(workload.target_rpo().get()).unwrap_or(TimeDelta::MAX);
    let catch_up_by = (resumed_at + target.max(resume_at - start)).min(run.deadline);
    loop {
        let now = match look(run, &mut tracks, false).await {
            Ok(now) => now,
            Err(source) => return Err(exposure_error(run, source)),
        };
        let waiting = tracks
            .iter()
            .any(|t| t.crossed_at.is_some() && t.back_at.is_none());
        if !waiting || now >= catch_up_by {
            break;
        }
        if aborted_before(abort, now, catch_up_by, context.poll).await {
            return abandon(context, run, &region).await;
        }
    }
    let caught_up = tracks.iter().filter_map(|t| t.back_at).max();
    run.phase("catch-up", resumed_at, caught_up.unwrap_or_else(Utc::now));

    judge(run, &tracks, start, resume_at, resumed_at, context.poll);
    check_alert(run, &tracks, metric_error);
    Ok(())
}

/// Resumes after an abort and says so.
async fn abandon(
    context: &IsolationContext,
    run: &mut DrillRun,
    region: &str,
) -> Result<(), IsolationError> {
    tracing::warn!(run = %run.id, region, "isolation aborted; resuming replication");
    resume(context, run).await?;
    Err(IsolationError::Aborted {
        run: run.id.clone(),
        region: region.to_string(),
    })
}

/// Takes one round of `readings` at `now` into `tracks` and the run's
/// series; `paused`: the pause holds (crossings are looked for), else the
/// catch-up (returns under the target are).
fn observe(
    run: &mut DrillRun,
    region: &str,
    tracks: &mut Vec<Track>,
    readings: Vec<Reading>,
    now: DateTime<Utc>,
    paused: bool,
) {
    for reading in readings {
        let index = match tracks.iter().position(|t| t.reading.asset == reading.asset) {
            Some(index) => index,
            None => {
                tracks.push(Track {
                    since_at_start: None,
                    since_in_pause: None,
                    reading: reading.clone(),
                    crossed_at: None,
                    back_at: None,
                    leaked: false,
                    highest_lag: None,
                });
                tracks.len() - 1
            }
        };
        let track = &mut tracks[index];
        if let Some(exposure) = reading.exposure(now) {
            run.series.add_exposure(ExposurePoint {
                at: now,
                asset: reading.asset.clone(),
                region: region.to_string(),
                seconds: exposure.num_seconds(),
                target_seconds: u64::try_from(reading.target.num_seconds()).unwrap_or(0),
            });
            let over = exposure > reading.target;
            if paused {
                // A checkpoint whose newest replicated version moved forward
                // got a copy despite the pause (one in flight when it began).
                if reading.checkpoint
                    && reading.exposed_since > track.reading.exposed_since
                    && track.reading.exposed_since.is_some()
                {
                    track.leaked = true;
                }
                track.since_in_pause = reading.exposed_since;
                if over && track.crossed_at.is_none() {
                    track.crossed_at = Some(now);
                    run.step_at(
                        now,
                        "exposure-crossed",
                        format!(
                            "{}: {} s exposed in {region}, past the {} s target",
                            reading.asset,
                            exposure.num_seconds(),
                            reading.target.num_seconds()
                        ),
                    );
                }
            } else if !over && track.crossed_at.is_some() && track.back_at.is_none() {
                track.back_at = Some(now);
                run.step_at(
                    now,
                    "exposure-back",
                    format!(
                        "{}: {} s exposed in {region}, back under the target",
                        reading.asset,
                        exposure.num_seconds()
                    ),
                );
            }
        }
        track.reading = reading;
    }
}

/// The checks and a finding per asset, from what `tracks` saw.
fn judge(
    run: &mut DrillRun,
    tracks: &[Track],
    start: DateTime<Utc>,
    resume_at: DateTime<Utc>,
    resumed_at: DateTime<Utc>,
    poll: Duration,
) {
    let tolerance = tolerance(poll);
    let mut on_time = 0;
    let mut crossed = 0;
    for track in tracks {
        let target = track.reading.target;
        let expected = track
            .since_in_pause
            .map(|since| since + target)
            .filter(|at| *at <= resume_at);
        let asset = track.reading.asset.as_str();
        let (ok, detail) = match (expected, track.crossed_at) {
            _ if track.since_at_start.is_some_and(|since| since + track.reading.target <= start) => (
                false,
                "already past its RPO target when the pause began: the isolation could not show a crossing".to_string(),
            ),
            (Some(expected), Some(seen)) => {
                let off = seen - expected;
                (
                    off.abs() <= tolerance,
                    format!(
                        "crossed {:.1} s into the pause; expected {:.1} s ({:+.1} s, tolerance {:.1} s)",
                        seconds(seen - start),
                        seconds(expected - start),
                        seconds(off),
                        seconds(tolerance)
                    ),
                )
            }
            (Some(expected), None) => (
                false,
                format!(
                    "did not cross, though it should have {:.1} s into the pause",
                    seconds(expected - start)
                ),
            ),
            (None, Some(seen)) => (
                false,
                format!(
                    "crossed {:.1} s into the pause, though it should not have within it",
                    seconds(seen - start)
                ),
            ),
            (None, None) if !track.reading.known => (
                true,
                "not exercised: no record of it in the region, so no exposure to follow".to_string(),
            ),
            (None, None) if track.since_in_pause.is_none() => (
                true,
                "not exercised: no change was written at the source during the pause, so nothing was unreplicated and the exposure stayed at zero (an asset with no new writes never crosses)".to_string(),
            ),
            (None, None) => (
                true,
                "did not cross within the pause, as expected: its newest replicated version is younger than the target at the resume".to_string(),
            ),
        };
        let caught_up = match (track.crossed_at, track.back_at) {
            (Some(_), Some(back)) => format!(
                "; back under the target {:.1} s after resuming",
                seconds(back - resumed_at)
            ),
            (Some(_), None) => "; not back under the target after resuming".to_string(),
            _ => String::new(),
        };
        let leaked = if track.leaked {
            "; a copy reached the region during the pause (one in flight when it began)"
        } else {
            ""
        };
        run.find(asset, ok, format!("{detail}{caught_up}{leaked}"));
        on_time += usize::from(ok);
        crossed += usize::from(track.crossed_at.is_some());
    }
    let first = tracks.iter().filter_map(|t| t.crossed_at).min();
    run.measurements.exposure_crossed_after_seconds = first.map(|at| seconds(at - start));
    run.checks.push(TargetCheck {
        name: "exposure crosses the RPO when it should".to_string(),
        target: format!(
            "each asset crosses at its expected time ± {:.1} s, none otherwise",
            seconds(tolerance)
        ),
        measured: format!(
            "{on_time} of {} assets as expected; {crossed} crossed",
            tracks.len()
        ),
        held: on_time == tracks.len(),
    });
    let back = tracks
        .iter()
        .filter(|t| t.crossed_at.is_some() && t.back_at.is_some())
        .count();
    let slowest = tracks
        .iter()
        .filter_map(|t| t.back_at)
        .max()
        .map(|at| {
            format!(
                ", the last {:.1} s after resuming",
                seconds(at - resumed_at)
            )
        })
        .unwrap_or_default();
    run.checks.push(TargetCheck {
        name: "exposure back under the RPO after resuming".to_string(),
        target: "every asset that crossed is back under its target".to_string(),
        measured: format!("{back} of {crossed} back under{slowest}"),
        held: back == crossed,
    });
}

/// Reads the replication lag metric back from the metrics backend and
/// keeps, per checkpoint location of `tracks`, the highest point of
/// `workload` in `region` written since `start`. Read every poll, since the
/// backend keeps only the newest point of a series and a later commit's
/// small lag would hide the late one; a failed read is kept in `error`.
async fn watch_lag(
    context: &IsolationContext,
    region: &str,
    workload: &str,
    start: DateTime<Utc>,
    tracks: &mut [Track],
    error: &mut Option<String>,
) {
    let points = match context.metrics.latest(CHECKPOINT_REPLICATION_LAG).await {
        Ok(points) => points,
        Err(failure) => {
            tracing::warn!(error = %failure, "replication lag metric not read back");
            *error = Some(failure.to_string());
            return;
        }
    };
    let label = |point: &GaugePoint, key: &str| point.labels.get(key).cloned().unwrap_or_default();
    for point in points.iter().filter(|p| {
        p.at >= start && label(p, "workload") == workload && label(p, "region") == region
    }) {
        let location = label(point, "location");
        if let Some(track) = tracks
            .iter_mut()
            .find(|t| t.reading.checkpoint && t.reading.asset == location)
        {
            track.highest_lag = Some(
                track
                    .highest_lag
                    .map_or(point.value, |h| h.max(point.value)),
            );
        }
    }
}

/// The alert check: for each checkpoint location that crossed its target,
/// a replication lag point written since the pause passes the target; and
/// a finding saying what that does and does not prove.
fn check_alert(run: &mut DrillRun, tracks: &[Track], metric_error: Option<String>) {
    let crossed: Vec<&Track> = tracks
        .iter()
        .filter(|t| t.reading.checkpoint && t.crossed_at.is_some())
        .collect();
    if crossed.is_empty() {
        run.find(
            CHECKPOINT_REPLICATION_LAG,
            true,
            format!("no checkpoint location crossed its target, so the RPO alert had nothing to show; {ALERT_NOT_VERIFIED}"),
        );
        return;
    }
    let passed = crossed
        .iter()
        .filter(|t| {
            t.highest_lag
                .is_some_and(|lag| lag > seconds(t.reading.target))
        })
        .count();
    let highest = crossed
        .iter()
        .filter_map(|t| t.highest_lag)
        .reduce(f64::max);
    let target_seconds = crossed[0].reading.target.num_seconds();
    let unread = metric_error
        .map(|error| format!("; a read of the metric failed: {error}"))
        .unwrap_or_default();
    run.checks.push(TargetCheck {
        name: "RPO alert metric passes the target".to_string(),
        target: format!("a lag point since the pause above {target_seconds} s"),
        measured: match highest {
            Some(value) => format!(
                "{passed} of {} locations; highest {value:.1} s{unread}",
                crossed.len()
            ),
            None => format!("no point written since the pause{unread}"),
        },
        held: passed == crossed.len(),
    });
    run.find(
        CHECKPOINT_REPLICATION_LAG,
        passed == crossed.len(),
        ALERT_NOT_VERIFIED,
    );
}

/// Ends the pause `run` made, if it made one: used at the end of an
/// isolation, by an abort, by the runner's cleanup and by the recovery of
/// a crashed run. Idempotent: a pause already ended (or expired, or never
/// made) leaves nothing to do; `run.cleanup.resumed_at` is set once.
pub async fn resume(context: &IsolationContext, run: &mut DrillRun) -> Result<(), IsolationError> {
    if run.cleanup.paused_at.is_none() || run.cleanup.resumed_at.is_some() {
        return Ok(());
    }
    let ended = pause::resume(
        context.state.as_ref(),
        &run.workload,
        &run.target_region,
        &run.id,
    )
    .await
    .map_err(|source| IsolationError::Pause {
        run: run.id.clone(),
        workload: run.workload.clone(),
        region: run.target_region.clone(),
        source,
    })?;
    let now = Utc::now();
    run.cleanup.resumed_at = Some(now);
    tracing::info!(run = %run.id, region = %run.target_region, ended, "replication resumed");
    run.step_at(
        now,
        "replication-resumed",
        if ended {
            format!("replication into {} resumed", run.target_region)
        } else {
            format!(
                "replication into {} was no longer paused (the pause had expired or was already ended)",
                run.target_region
            )
        },
    );
    Ok(())
}
