//! What the console shows, read from the records: per region its role, the
//! workloads it serves and any open incident; per workload its routing now
//! and over the last day, RPO exposure per asset and region now and over
//! time, model parity per standby, open and recent incidents, drills, the
//! plan, and the one answer that matters first: could it survive losing a
//! region right now ([`Readiness`]).

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use lifeboat_plan::WorkloadPlan;
use lifeboat_plan::measured::Measured;
use lifeboat_plan::prices::PriceBook;
use lifeboat_shared::records::drill_run::{self, DrillOverview};
use lifeboat_shared::records::incident::{self, IncidentRecord};
use lifeboat_shared::records::parity::{self, ParityRow};
use lifeboat_shared::records::{checkpoint_rpo, data_rpo};
use lifeboat_shared::routing::{self, RoutingError, RoutingTable};
use lifeboat_shared::state::{StateError, StateStore};
use lifeboat_shared::topology::Topology;
use serde::Serialize;

/// How long a closed incident stays on the page.
pub const RECENT: TimeDelta = TimeDelta::hours(24);

/// The most incidents shown per workload (open ones first).
const MAX_INCIDENTS: usize = 5;

/// Why the records could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OverviewError {
    /// The state store failed or holds an unreadable record.
    #[error("reading the records: {0}")]
    State(#[from] StateError),
    /// A routing table could not be read.
    #[error(transparent)]
    Routing(#[from] RoutingError),
}

/// Everything on the page (also served as JSON).
#[derive(Clone, Debug, Serialize)]
pub struct Overview {
    /// The topology's project.
    pub project: String,
    /// When the records were read.
    pub generated_at: DateTime<Utc>,
    /// Every region of the topology, in its order.
    pub regions: Vec<RegionView>,
    /// Every workload of the topology, in its order.
    pub workloads: Vec<WorkloadView>,
}

/// One region.
#[derive(Clone, Debug, Serialize)]
pub struct RegionView {
    /// The region id.
    pub id: String,
    /// Its role as the topology declares it (`primary`, `standby`,
    /// `pilot-light`).
    pub role: String,
    /// The workloads whose traffic it takes now (weight above zero).
    pub serving: Vec<String>,
    /// The open incidents about it: `workload: since`.
    pub incidents: Vec<String>,
}

impl RegionView {
    /// Whether no incident about the region is open.
    pub fn healthy(&self) -> bool {
        self.incidents.is_empty()
    }
}

/// Whether a workload could survive losing a region right now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// Every region it serves from has another region ready to take over.
    pub ready: bool,
    /// Why not, one line per problem; for a ready workload, which region
    /// would take each serving region's traffic.
    pub reasons: Vec<String>,
}

/// One workload.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadView {
    /// The workload id.
    pub id: String,
    /// Its pattern's name.
    pub pattern: String,
    /// Its RPO target, in seconds.
    pub rpo_target_seconds: u64,
    /// Its RTO target, in seconds.
    pub rto_target_seconds: u64,
    /// The answer that matters first.
    pub readiness: Readiness,
    /// Its routing table: the stored one, or the weights its pattern
    /// implies before any is written (revision 0).
    pub routing: RoutingTable,
    /// Checkpoint RPO per location and target region, with history.
    pub checkpoints: Vec<checkpoint_rpo::Exposure>,
    /// Bucket and dataset RPO per asset and replica region, with history.
    pub data: Vec<data_rpo::Exposure>,
    /// Model parity per model and standby region.
    pub parity: Vec<ParityRow>,
    /// Open incidents, then those closed in the last [`RECENT`], newest
    /// first.
    pub incidents: Vec<IncidentRecord>,
    /// Its declared drills and their last runs.
    pub drills: Vec<DrillOverview>,
    /// What each pattern would cost and promise, when it could be planned.
    pub plan: Option<WorkloadPlan>,
}

/// Reads everything the page shows from `store` at `now`.
pub async fn read(
    topology: &Topology,
    store: &dyn StateStore,
    now: DateTime<Utc>,
) -> Result<Overview, OverviewError> {
    let checkpoints = checkpoint_rpo::report(topology, store, now).await?;
    let data = data_rpo::report(topology, store, now).await?;
    let parity = parity::report(topology, store).await?;
    let tables = routing::read_all(store).await?;
    let incidents = incident::read_all(store).await?;
    let drills = drill_run::overview(topology, store, now).await?;
    let plans = match PriceBook::configured() {
        Ok(prices) => {
            let measured = Measured::from_records(&checkpoints, &data, &drills);
            lifeboat_plan::plan(topology, &prices, &measured, now).workloads
        }
        Err(error) => {
            tracing::warn!(%error, "the console shows no plan");
            Vec::new()
        }
    };
    let open: Vec<&IncidentRecord> = incidents.iter().filter(|r| r.is_open()).collect();

    let mut workloads = Vec::new();
    for workload in topology.workloads() {
        let id = workload.id.to_string();
        let routing = tables
            .iter()
            .find(|table| table.workload == id)
            .cloned()
            .unwrap_or_else(|| RoutingTable {
                workload: id.clone(),
                weights: routing::implied_weights(topology, workload),
                revision: 0,
                updated_at: now,
                reason: "implied by the pattern: no table written yet".to_string(),
                history: Vec::new(),
            });
        let mine = |w: &str| w == id;
        let mut view = WorkloadView {
            id: id.clone(),
            pattern: workload.pattern.name().to_string(),
            rpo_target_seconds: workload.target_rpo().as_secs(),
            rto_target_seconds: workload.target_rto().as_secs(),
            readiness: Readiness {
                ready: false,
                reasons: Vec::new(),
            },
            routing,
            checkpoints: checkpoints
                .iter()
                .filter(|r| mine(&r.workload))
                .cloned()
                .collect(),
            data: data.iter().filter(|r| mine(&r.workload)).cloned().collect(),
            parity: parity
                .iter()
                .filter(|r| mine(&r.workload))
                .cloned()
                .collect(),
            incidents: recent_incidents(&incidents, &id, now),
            drills: drills
                .iter()
                .filter(|d| mine(&d.workload))
                .cloned()
                .collect(),
            plan: plans.iter().find(|p| p.workload == id).cloned(),
        };
        let regions: Vec<String> = topology
            .regions()
            .iter()
            .map(|r| r.id.to_string())
            .collect();
        view.readiness = readiness(&view, &regions, &open);
        workloads.push(view);
    }

    let regions = topology
        .regions()
        .iter()
        .map(|region| {
            let id = region.id.to_string();
            RegionView {
                role: region.role.as_str().to_string(),
                serving: workloads
                    .iter()
                    .filter(|w| w.routing.weights.get(&id).is_some_and(|weight| *weight > 0))
                    .map(|w| w.id.clone())
                    .collect(),
                incidents: open
                    .iter()
                    .filter(|record| record.region == id)
                    .map(|record| match record.started_at {
                        Some(at) => {
                            format!("{} since {}", record.workload, at.format("%H:%M:%S UTC"))
                        }
                        None => record.workload.clone(),
                    })
                    .collect(),
                id,
            }
        })
        .collect();
    Ok(Overview {
        project: topology.project().to_string(),
        generated_at: now,
        regions,
        workloads,
    })
}

/// `workload`'s open incidents, then those closed within [`RECENT`] of
/// `now`, newest first, at most [`MAX_INCIDENTS`].
fn recent_incidents(
    all: &[IncidentRecord],
    workload: &str,
    now: DateTime<Utc>,
) -> Vec<IncidentRecord> {
    let started = |record: &IncidentRecord| {
        record
            .started_at
            .or_else(|| record.steps.first().map(|step| step.at))
    };
    let mut picked: Vec<IncidentRecord> = all
        .iter()
        .filter(|record| record.workload == workload)
        .filter(|record| record.is_open() || record.ended_at().is_some_and(|at| now - at <= RECENT))
        .cloned()
        .collect();
    picked.sort_by(|a, b| {
        b.is_open()
            .cmp(&a.is_open())
            .then(started(b).cmp(&started(a)))
    });
    picked.truncate(MAX_INCIDENTS);
    picked
}

/// Whether each region serving `view`'s traffic has another region ready
/// to take it: no open incident there, every model in parity there, and
/// every checkpoint, bucket and dataset copy there within the RPO target.
fn readiness(view: &WorkloadView, regions: &[String], open: &[&IncidentRecord]) -> Readiness {
    let problems = |region: &str| -> Vec<String> {
        let mut found = Vec::new();
        if let Some(record) = open.iter().find(|record| record.region == region) {
            found.push(format!("an incident is open ({})", record.incident_id));
        }
        for row in view
            .parity
            .iter()
            .filter(|r| r.region == region && !r.parity)
        {
            let why = match (&row.source_version, &row.error) {
                (_, Some(error)) => error.clone(),
                (Some(version), None) => format!("lacks version {version}"),
                (None, None) => "no version verified".to_string(),
            };
            found.push(format!("model {}: {why}", row.model));
        }
        for row in view
            .checkpoints
            .iter()
            .filter(|r| r.region == region && !r.meets_target)
        {
            found.push(match row.exposure_seconds {
                Some(seconds) => format!(
                    "checkpoints {} are {} behind (target {})",
                    row.location,
                    lifeboat_pages::text::duration_text(seconds as f64),
                    lifeboat_pages::text::duration_text(row.target_rpo_seconds as f64)
                ),
                None => format!("checkpoints {}: no complete checkpoint yet", row.location),
            });
        }
        for row in view
            .data
            .iter()
            .filter(|r| r.region == region && !r.meets_target)
        {
            found.push(match row.exposure_seconds {
                Some(seconds) => format!(
                    "{} is {} behind (target {})",
                    row.asset,
                    lifeboat_pages::text::duration_text(seconds as f64),
                    lifeboat_pages::text::duration_text(row.target_rpo_seconds as f64)
                ),
                None => format!("{}: never checked", row.asset),
            });
        }
        found
    };
    let serving: BTreeSet<&str> = view
        .routing
        .weights
        .iter()
        .filter(|(_, weight)| **weight > 0)
        .map(|(region, _)| region.as_str())
        .collect();
    let mut ready = true;
    let mut reasons = Vec::new();
    for lost in &serving {
        let mut why_not = Vec::new();
        let mut takes_over = None;
        for candidate in regions.iter().filter(|r| r.as_str() != *lost) {
            let found = problems(candidate);
            if found.is_empty() {
                takes_over = Some(candidate.clone());
                break;
            }
            why_not.push(format!("{candidate}: {}", found.join("; ")));
        }
        match takes_over {
            Some(region) => reasons.push(format!(
                "losing {lost}: {region} is ready to take its traffic"
            )),
            None => {
                ready = false;
                reasons.push(format!(
                    "losing {lost}: no region is ready to take its traffic — {}",
                    if why_not.is_empty() {
                        "there is no other region".to_string()
                    } else {
                        why_not.join(" · ")
                    }
                ));
            }
        }
        if let Some(record) = open
            .iter()
            .find(|record| record.region == *lost && record.workload == view.id)
        {
            ready = false;
            reasons.push(format!(
                "{lost} still takes traffic with incident {} open",
                record.incident_id
            ));
        }
    }
    Readiness { ready, reasons }
}
