//! `lifeboat status`: the RPO exposure of everything Lifeboat replicates,
//! against each workload's target. Per checkpoint location and target
//! region: the newest complete step and the exposure now, in time and in
//! steps; per bucket and dataset and replica region: the age of the oldest
//! change not verified there. With `--models`, per model and standby region:
//! the versions present, the version deployed, how long the newest took to
//! arrive and whether the region is in parity with the primary. Read from
//! Firestore (`--firestore`), from a running local cloud (through its
//! functions listener, which holds the state; RPO only, as the local cloud
//! runs no model-copy yet), or from a stopped local cloud's state directly.

use std::path::Path;

use anyhow::Context;
use chrono::Utc;
use lifeboat_shared::records::checkpoint_rpo;
use lifeboat_shared::records::data_rpo::{self, AssetKind};
use lifeboat_shared::records::drill_run::{self, DrillOverview};
use lifeboat_shared::records::incident::{self as incident_record, IncidentRecord, Outcome};
use lifeboat_shared::records::parity::{self, ParityRow};
use lifeboat_shared::routing::{self, RoutingTable};
use lifeboat_shared::state::StateStore;
use lifeboat_shared::state::firestore::{DEFAULT_DATABASE, FirestoreStore};
use lifeboat_shared::state::local::LocalStateStore;
use lifeboat_shared::topology::Topology;
use serde::{Deserialize, Serialize};

use crate::local_cloud::{
    AddressBook, CHECKPOINT_FANOUT_PATH, DATA_SYNC_PATH, DRILL_PATH, FAILOVER_PATH, MODEL_COPY_PATH,
};

/// Where the RPO records are read from.
#[derive(Debug)]
pub enum Source<'a> {
    /// Firestore of the topology's project (or `$FIRESTORE_EMULATOR_HOST`).
    Firestore,
    /// The local cloud kept in this data directory.
    Local(&'a Path),
}

/// Everything `lifeboat status` reports (its `--json` form).
#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    /// Per checkpoint location and target region.
    pub checkpoints: Vec<checkpoint_rpo::Exposure>,
    /// Per bucket or dataset and replica region.
    pub data: Vec<data_rpo::Exposure>,
    /// The routing table of every workload that has one.
    pub routing: Vec<RoutingTable>,
    /// Every incident not closed yet, with what failover did about it.
    pub open_incidents: Vec<IncidentRecord>,
    /// Every declared drill: its last run (when, result, RTO measured),
    /// when it is next due, and whether a due time passed without a run.
    #[serde(default)]
    pub drills: Vec<DrillOverview>,
}

impl Status {
    /// Whether every row meets its target.
    pub fn meets_targets(&self) -> bool {
        self.checkpoints.iter().all(|row| row.meets_target)
            && self.data.iter().all(|row| row.meets_target)
    }
}

/// What `lifeboat status` reports on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// RPO exposure of checkpoints, buckets and datasets.
    Rpo,
    /// Model version parity per model and standby region (`--models`).
    Models,
}

/// Prints the status; returns whether every row meets its target (RPO) or
/// is in parity (models).
pub async fn run(
    topology: &Topology,
    source: Source<'_>,
    report: Report,
    json: bool,
) -> anyhow::Result<bool> {
    if report == Report::Models {
        let rows = parity_rows(topology, source).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else {
            print!("{}", model_table(&rows));
        }
        return Ok(rows.iter().all(|row| row.parity));
    }
    let status = read(topology, source).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", checkpoint_table(&status.checkpoints));
        if !status.data.is_empty() {
            println!();
            print!("{}", data_table(&status.data));
        }
        println!();
        print!("{}", routing_table(&status.routing));
        if !status.open_incidents.is_empty() {
            println!();
            print!("{}", incident_table(&status.open_incidents));
        }
        if !status.drills.is_empty() {
            println!();
            print!("{}", drill_table(&status.drills));
        }
    }
    Ok(status.meets_targets())
}

/// The status, from wherever the state is.
pub(crate) async fn read(topology: &Topology, source: Source<'_>) -> anyhow::Result<Status> {
    let project = topology.project().as_str();
    match source {
        Source::Firestore => {
            let store = FirestoreStore::from_env(project, DEFAULT_DATABASE).await?;
            from_store(topology, &store).await
        }
        Source::Local(data_dir) => {
            let dir = data_dir.join(project);
            if let Some(status) = from_running_cloud(&dir).await {
                return Ok(status);
            }
            from_store(topology, &local_state(&dir).await?).await
        }
    }
}

/// The parity rows, from Firestore, a running local cloud's model-copy, or
/// a stopped local cloud's state.
async fn parity_rows(topology: &Topology, source: Source<'_>) -> anyhow::Result<Vec<ParityRow>> {
    let project = topology.project().as_str();
    match source {
        Source::Firestore => {
            let store = FirestoreStore::from_env(project, DEFAULT_DATABASE).await?;
            Ok(parity::report(topology, &store).await?)
        }
        Source::Local(data_dir) => {
            let dir = data_dir.join(project);
            if let Ok(book) = AddressBook::load(&dir)
                && let Some(rows) = rows(&book, MODEL_COPY_PATH, "parity").await
            {
                return Ok(rows);
            }
            Ok(parity::report(topology, &local_state(&dir).await?).await?)
        }
    }
}

async fn local_state(dir: &Path) -> anyhow::Result<LocalStateStore> {
    LocalStateStore::open(dir.join("state"))
        .await
        .with_context(|| format!("opening the local state in {}", dir.display()))
}

async fn from_store(topology: &Topology, store: &dyn StateStore) -> anyhow::Result<Status> {
    let now = Utc::now();
    Ok(Status {
        checkpoints: checkpoint_rpo::report(topology, store, now).await?,
        data: data_rpo::report(topology, store, now).await?,
        routing: routing::read_all(store).await?,
        open_incidents: open(incident_record::read_all(store).await?),
        drills: drill_run::overview(topology, store, now).await?,
    })
}

/// The status from the local cloud running on `dir`, if one answers.
async fn from_running_cloud(dir: &Path) -> Option<Status> {
    let book = AddressBook::load(dir).ok()?;
    Some(Status {
        checkpoints: rows(&book, CHECKPOINT_FANOUT_PATH, "rpo").await?,
        data: rows(&book, DATA_SYNC_PATH, "rpo").await?,
        routing: rows(&book, FAILOVER_PATH, "routing").await?,
        open_incidents: open(rows(&book, FAILOVER_PATH, "incidents").await?),
        drills: rows(&book, DRILL_PATH, "drills").await?,
    })
}

/// The incidents of `records` still open ([`IncidentRecord::is_open`]).
fn open(records: Vec<IncidentRecord>) -> Vec<IncidentRecord> {
    records
        .into_iter()
        .filter(IncidentRecord::is_open)
        .collect()
}

/// The rows a running local cloud's function mounted at `path` answers at
/// `route`.
async fn rows<T: serde::de::DeserializeOwned>(
    book: &AddressBook,
    path: &str,
    route: &str,
) -> Option<Vec<T>> {
    let response = reqwest::get(format!("http://{}{path}/{route}", book.functions))
        .await
        .ok()?;
    response.error_for_status().ok()?.json().await.ok()
}

/// The checkpoint rows as an aligned text table.
pub fn checkpoint_table(rows: &[checkpoint_rpo::Exposure]) -> String {
    let header = [
        "WORKLOAD",
        "CHECKPOINTS",
        "REGION",
        "NEWEST STEP",
        "SOURCE STEP",
        "RPO EXPOSURE",
        "IN STEPS",
        "TARGET",
        "MEETS",
    ];
    let lines = rows.iter().map(|row| {
        vec![
            row.workload.clone(),
            row.location.clone(),
            row.region.clone(),
            or_dash(row.newest_step.map(|s| s.to_string())),
            or_dash(row.source_step.map(|s| s.to_string())),
            or_dash(row.exposure_seconds.map(human)),
            or_dash(row.exposure_steps.map(|s| s.to_string())),
            human(i64::try_from(row.target_rpo_seconds).unwrap_or(i64::MAX)),
            yes_no(row.meets_target),
        ]
    });
    aligned(&header, lines)
}

/// The bucket and dataset rows as an aligned text table.
pub fn data_table(rows: &[data_rpo::Exposure]) -> String {
    let header = [
        "WORKLOAD",
        "KIND",
        "ASSET",
        "REGION",
        "RPO EXPOSURE",
        "TARGET",
        "LAST RECONCILE",
        "MEETS",
    ];
    let lines = rows.iter().map(|row| {
        vec![
            row.workload.clone(),
            match row.kind {
                AssetKind::Bucket => "bucket",
                AssetKind::Dataset => "dataset",
            }
            .to_string(),
            row.asset.clone(),
            row.region.clone(),
            or_dash(
                row.exposure_seconds
                    .map(|e| human(i64::try_from(e).unwrap_or(i64::MAX))),
            ),
            human(i64::try_from(row.target_rpo_seconds).unwrap_or(i64::MAX)),
            row.checked_at.map_or_else(
                || "never".to_string(),
                |at| at.format("%Y-%m-%d %H:%M:%S").to_string(),
            ),
            yes_no(row.meets_target),
        ]
    });
    aligned(&header, lines)
}

/// The model rows as an aligned text table.
pub fn model_table(rows: &[ParityRow]) -> String {
    let header = [
        "WORKLOAD",
        "MODEL",
        "REGION",
        "VERSIONS",
        "DEPLOYED",
        "SOURCE VERSION",
        "NEWEST REACHED IN",
        "PARITY",
    ];
    let lines = rows.iter().map(|row| {
        let parity = match (&row.error, row.parity) {
            (_, true) => "yes".to_string(),
            (Some(error), false) => format!("NO: {error}"),
            (None, false) => "NO".to_string(),
        };
        vec![
            row.workload.clone(),
            row.model.clone(),
            row.region.clone(),
            or_dash(Some(row.versions_present.join(",")).filter(|v| !v.is_empty())),
            or_dash(row.deployed_version.clone()),
            or_dash(row.source_version.clone()),
            or_dash(row.newest_reach_millis.map(reach_time)),
            parity,
        ]
    });
    aligned(&header, lines)
}

/// How long a version took to arrive: to the hundredth of a second under
/// a minute (copies within a region's registry are quick), else as
/// [`human`] says.
fn reach_time(millis: u64) -> String {
    if millis < 60_000 {
        format!("{:.2}s", millis as f64 / 1000.0)
    } else {
        human(i64::try_from(millis / 1000).unwrap_or(i64::MAX))
    }
}

/// The routing tables as an aligned text table.
pub fn routing_table(tables: &[RoutingTable]) -> String {
    if tables.is_empty() {
        return "ROUTING: no table written yet; each workload's primary takes its traffic\n"
            .to_string();
    }
    let header = ["WORKLOAD", "ROUTING WEIGHTS", "REVISION", "SINCE", "WHY"];
    let lines = tables.iter().map(|table| {
        let weights: Vec<String> = table
            .weights
            .iter()
            .map(|(region, weight)| format!("{region}={weight}"))
            .collect();
        vec![
            table.workload.clone(),
            weights.join(" "),
            table.revision.to_string(),
            table.updated_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            table.reason.clone(),
        ]
    });
    aligned(&header, lines)
}

/// The open incidents as an aligned text table.
pub fn incident_table(records: &[IncidentRecord]) -> String {
    let header = [
        "INCIDENT",
        "WORKLOAD",
        "REGION",
        "STARTED",
        "OUTCOME",
        "LAST STEP",
    ];
    let lines = records.iter().map(|record| {
        let last = record.latest_step().map_or_else(String::new, |step| {
            format!("{}: {}", step.what, step.detail)
        });
        vec![
            record.incident_id.clone(),
            record.workload.clone(),
            record.region.clone(),
            record.started_at.map_or_else(
                || "-".to_string(),
                |at| at.format("%Y-%m-%d %H:%M:%S").to_string(),
            ),
            match &record.outcome {
                Some(Outcome::Moved) => "moved",
                Some(Outcome::Stayed) => "STAYED",
                Some(Outcome::Closed) => "closed",
                None => "in progress",
            }
            .to_string(),
            last,
        ]
    });
    aligned(&header, lines)
}

/// The declared drills, each with its last run and next due time, as an
/// aligned text table; an overdue drill says so.
pub fn drill_table(drills: &[DrillOverview]) -> String {
    let header = [
        "DRILL", "KIND", "WORKLOAD", "TARGET", "LAST RUN", "RESULT", "RTO", "NEXT DUE",
    ];
    let lines = drills.iter().map(|drill| {
        let last = drill.last_run.as_ref();
        let mut next = drill.next_due.map_or_else(
            || "never".to_string(),
            |at| at.format("%Y-%m-%d %H:%M").to_string(),
        );
        if drill.overdue {
            next = format!("{next}  OVERDUE: a due run was missed");
        }
        vec![
            drill.id.clone(),
            drill.kind.name().to_string(),
            drill.workload.clone(),
            drill.target_region.clone(),
            last.map_or_else(
                || "never".to_string(),
                |r| r.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            ),
            last.map_or_else(|| "-".to_string(), |r| r.state.verdict().to_string()),
            or_dash(last.and_then(|r| r.rto_seconds).map(|s| format!("{s:.2}s"))),
            next,
        ]
    });
    aligned(&header, lines)
}

pub(crate) fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".to_string())
}

pub(crate) fn yes_no(meets: bool) -> String {
    if meets { "yes" } else { "NO" }.to_string()
}

/// `header` and `rows` as columns padded to their widest cell.
pub(crate) fn aligned(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut lines = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    lines.extend(rows);
    let widths: Vec<usize> = (0..header.len())
        .map(|i| lines.iter().map(|line| line[i].len()).max().unwrap_or(0))
        .collect();
    lines
        .iter()
        .map(|line| {
            let cells: Vec<String> = line
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            format!("{}\n", cells.join("  ").trim_end())
        })
        .collect()
}

/// Seconds as `1h02m03s`, `4m05s` or `6s`.
pub(crate) fn human(seconds: i64) -> String {
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s:02}s"),
        _ => format!("{h}h{m:02}m{s:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_rows_say_what_each_region_holds_and_why_not_in_parity() {
        let row = |region: &str, parity: bool, error: Option<&str>| ParityRow {
            workload: "scoring".to_string(),
            model: "fraud".to_string(),
            region: region.to_string(),
            versions_present: vec!["1".to_string(), "2".to_string()],
            deployed_version: Some("2".to_string()),
            source_version: Some(if parity { "2" } else { "3" }.to_string()),
            newest_reach_millis: Some(245_000),
            parity,
            error: error.map(str::to_string),
        };
        let printed = model_table(&[
            row("us-east1", true, None),
            row("europe-west1", false, Some("Quota exceeded")),
        ]);
        let lines: Vec<&str> = printed.lines().collect();
        assert_eq!(
            lines,
            [
                "WORKLOAD  MODEL  REGION        VERSIONS  DEPLOYED  SOURCE VERSION  NEWEST REACHED IN  PARITY",
                "scoring   fraud  us-east1      1,2       2         2               4m05s              yes",
                "scoring   fraud  europe-west1  1,2       2         3               4m05s              NO: Quota exceeded",
            ]
        );
    }

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(human(6), "6s");
        assert_eq!(human(245), "4m05s");
        assert_eq!(human(3723), "1h02m03s");
    }
}
