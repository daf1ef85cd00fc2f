//! What a running drill watches, beside its own work: its guardrails
//! ([`guardrails::during`]) and the series its report draws. An
//! [`Observer`] looks every [`DrillOptions::poll`](crate::DrillOptions):
//! it reads the run's stored record (an abort asked for there), the
//! incident records, the gateway's own prediction counts, the routing
//! table and, every few looks, the RPO exposure of the workload's copies;
//! when a guardrail trips it says why and triggers the run's abort.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lifeboat_shared::records::checkpoint_rpo;
use lifeboat_shared::records::data_rpo;
use lifeboat_shared::records::drill_run::{self, DrillRun, ExposurePoint, Series};
use lifeboat_shared::records::incident::{self as incidents, IncidentRecord};
use lifeboat_shared::routing;
use lifeboat_shared::server::Shutdown;
use lifeboat_shared::traffic::{self, SecondCount};

use crate::DrillContext;
use crate::guardrails;

/// How many looks pass between two readings of the RPO exposure (they read
/// every replication record of the deployment).
const EXPOSURE_EVERY: u32 = 8;

/// How far before the run's start traffic is read, so the report shows
/// the traffic the fault interrupted.
const TRAFFIC_LEAD: TimeDelta = TimeDelta::seconds(5);

/// What the observer has seen so far.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The gateway's counts for the workload since just before the start,
    /// per second and region (the latest reading: counts of a second grow
    /// while gateways flush).
    pub traffic: Vec<SecondCount>,
    /// Every incident record, as last read.
    pub incidents: Vec<IncidentRecord>,
    /// The workload's routing weights as last read (none before a table is
    /// written).
    pub weights: Option<BTreeMap<String, u32>>,
    /// Routing and exposure over time.
    pub series: Series,
    /// Why a guardrail stopped the run, once one has.
    pub stopped_because: Option<String>,
}

impl Observed {
    /// The series the report draws: routing and exposure as seen, traffic
    /// from the latest counts (merged into wider buckets when long).
    pub fn series(&self) -> Series {
        let mut series = Series {
            traffic: Vec::new(),
            ..self.series.clone()
        };
        for count in &self.traffic {
            series.add_traffic(
                count.at,
                &count.region,
                count.ok + count.retried,
                count.failed,
            );
        }
        series
    }
}

/// A running observer of one run.
#[derive(Debug)]
pub struct Observer {
    seen: Arc<Mutex<Observed>>,
    stop: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    /// Starts watching `run`, triggering `abort` when a guardrail trips.
    pub fn start(
        context: &DrillContext,
        run: &DrillRun,
        max_error_ratio: f64,
        abort: Shutdown,
    ) -> Self {
        let seen = Arc::new(Mutex::new(Observed::default()));
        let stop = Shutdown::new();
        let task = tokio::spawn(watch(
            context.clone(),
            run.clone(),
            max_error_ratio,
            seen.clone(),
            abort,
            stop.clone(),
        ));
        Self { seen, stop, task }
    }

    /// What it has seen so far.
    pub fn seen(&self) -> Observed {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Looks once more, stops, and answers everything it saw.
    pub async fn stop(self) -> Observed {
        self.stop.trigger();
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "the drill's observer ended abnormally");
        }
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Looks until `stop`, and once more after it.
async fn watch(
    context: DrillContext,
    run: DrillRun,
    max_error_ratio: f64,
    seen: Arc<Mutex<Observed>>,
    abort: Shutdown,
    stop: Shutdown,
) {
    let mut looks = 0u32;
    loop {
        let last = stop.is_triggered();
        look(
            &context,
            &run,
            max_error_ratio,
            &seen,
            &abort,
            looks.is_multiple_of(EXPOSURE_EVERY),
        )
        .await;
        looks = looks.wrapping_add(1);
        if last {
            return;
        }
        tokio::select! {
            () = stop.triggered() => {}
            () = tokio::time::sleep(context.options.poll) => {}
        }
    }
}

/// One look: what could be read is kept, what could not is logged and
/// read again at the next look.
async fn look(
    context: &DrillContext,
    run: &DrillRun,
    max_error_ratio: f64,
    seen: &Mutex<Observed>,
    abort: &Shutdown,
    with_exposure: bool,
) {
    let state = context.state();
    let now = Utc::now();
    let stored = drill_run::read(state, &run.id).await;
    let records = incidents::read_all(state).await;
    let counts = traffic::read(state, &run.workload, run.started_at - TRAFFIC_LEAD, now).await;
    let tables = routing::read_all(state).await;
    let exposure = if with_exposure {
        Some(exposure(context, &run.workload, now).await)
    } else {
        None
    };
    let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
    let mut current = run.clone();
    match stored {
        Ok(Some(stored)) => current.abort = stored.abort,
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, "run record not read; looking again"),
    }
    match records {
        Ok(records) => seen.incidents = records,
        Err(error) => tracing::warn!(%error, "incident records not read; looking again"),
    }
    match counts {
        Ok(counts) => seen.traffic = counts,
        Err(error) => tracing::warn!(%error, "gateway counts not read; looking again"),
    }
    match tables {
        Ok(tables) => {
            if let Some(table) = tables.into_iter().find(|t| t.workload == run.workload) {
                seen.series.add_routing(now, table.weights.clone());
                seen.weights = Some(table.weights);
            }
        }
        Err(error) => tracing::warn!(%error, "routing tables not read; looking again"),
    }
    for point in exposure.into_iter().flatten() {
        seen.series.add_exposure(point);
    }
    if seen.stopped_because.is_none()
        && let Some(reason) = guardrails::during(
            &current,
            &seen.incidents,
            &seen.traffic,
            max_error_ratio,
            now,
        )
    {
        tracing::warn!(run = %run.id, %reason, "guardrail tripped; the drill stops");
        seen.stopped_because = Some(reason);
        abort.trigger();
    }
}

/// The RPO exposure of every copy of `workload`'s data at `now`; what could
/// not be read is logged and left out of this reading.
pub async fn exposure(
    context: &DrillContext,
    workload: &str,
    now: DateTime<Utc>,
) -> Vec<ExposurePoint> {
    let (topology, state) = (context.topology(), context.state());
    let mut points = Vec::new();
    match checkpoint_rpo::report(topology, state, now).await {
        Ok(rows) => points.extend(
            rows.into_iter()
                .filter(|r| r.workload == workload)
                .filter_map(|r| {
                    Some(ExposurePoint {
                        at: now,
                        asset: r.location,
                        region: r.region,
                        seconds: r.exposure_seconds?,
                        target_seconds: r.target_rpo_seconds,
                    })
                }),
        ),
        Err(error) => tracing::warn!(%error, "checkpoint exposure not read"),
    }
    match data_rpo::report(topology, state, now).await {
        Ok(rows) => points.extend(
            rows.into_iter()
                .filter(|r| r.workload == workload)
                .filter_map(|r| {
                    Some(ExposurePoint {
                        at: now,
                        asset: r.asset,
                        region: r.region,
                        seconds: i64::try_from(r.exposure_seconds?).unwrap_or(i64::MAX),
                        target_seconds: r.target_rpo_seconds,
                    })
                }),
        ),
        Err(error) => tracing::warn!(%error, "data exposure not read"),
    }
    points
}

/// Waits `poll`, or less when `abort` fires first; whether it fired.
pub async fn pause(poll: Duration, abort: &Shutdown) -> bool {
    tokio::select! {
        () = abort.triggered() => true,
        () = tokio::time::sleep(poll) => abort.is_triggered(),
    }
}
