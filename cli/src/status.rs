//! `lifeboat status`: per checkpoint location and target region, the newest
//! complete step, the RPO exposure now (time and steps) and whether it meets
//! the workload's target. Read from Firestore (`--firestore`), from a running
//! local cloud (through its functions listener, which holds the state), or
//! from a stopped local cloud's state directly.

use std::path::Path;

use anyhow::Context;
use chrono::Utc;
use lifeboat_checkpoint_fanout::rpo::{self, Exposure};
use lifeboat_shared::state::firestore::{DEFAULT_DATABASE, FirestoreStore};
use lifeboat_shared::state::local::LocalStateStore;
use lifeboat_shared::topology::Topology;

use crate::local_cloud::AddressBook;

/// Where the RPO records are read from.
#[derive(Debug)]
pub enum Source<'a> {
    /// Firestore of the topology's project (or `$FIRESTORE_EMULATOR_HOST`).
    Firestore,
    /// The local cloud kept in this data directory.
    Local(&'a Path),
}

/// Prints the status; returns whether every region meets its target.
pub async fn run(topology: &Topology, source: Source<'_>, json: bool) -> anyhow::Result<bool> {
    let rows = exposure(topology, source).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", table(&rows));
    }
    Ok(rows.iter().all(|row| row.meets_target))
}

/// The exposure rows, from wherever the state is.
async fn exposure(topology: &Topology, source: Source<'_>) -> anyhow::Result<Vec<Exposure>> {
    let project = topology.project().as_str();
    match source {
        Source::Firestore => {
            let store = FirestoreStore::from_env(project, DEFAULT_DATABASE).await?;
            Ok(rpo::report(topology, &store, Utc::now()).await?)
        }
        Source::Local(data_dir) => {
            let dir = data_dir.join(project);
            if let Some(rows) = from_running_cloud(&dir).await {
                return Ok(rows);
            }
            let store = LocalStateStore::open(dir.join("state"))
                .await
                .with_context(|| format!("opening the local state in {}", dir.display()))?;
            Ok(rpo::report(topology, &store, Utc::now()).await?)
        }
    }
}

/// The rows from the local cloud running on `dir`, if one answers.
async fn from_running_cloud(dir: &Path) -> Option<Vec<Exposure>> {
    let book: AddressBook =
        serde_json::from_slice(&std::fs::read(AddressBook::path(dir)).ok()?).ok()?;
    let url = format!(
        "http://{}{}/rpo",
        book.functions,
        crate::local_cloud::CHECKPOINT_FANOUT_PATH
    );
    let response = reqwest::get(url).await.ok()?;
    response.error_for_status().ok()?.json().await.ok()
}

/// The rows as an aligned text table.
pub fn table(rows: &[Exposure]) -> String {
    let mut lines = vec![
        [
            "WORKLOAD",
            "CHECKPOINTS",
            "REGION",
            "NEWEST STEP",
            "SOURCE STEP",
            "RPO EXPOSURE",
            "IN STEPS",
            "TARGET",
            "MEETS",
        ]
        .map(String::from),
    ];
    for row in rows {
        let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_string());
        lines.push([
            row.workload.clone(),
            row.location.clone(),
            row.region.clone(),
            or_dash(row.newest_step.map(|s| s.to_string())),
            or_dash(row.source_step.map(|s| s.to_string())),
            or_dash(row.exposure_seconds.map(human)),
            or_dash(row.exposure_steps.map(|s| s.to_string())),
            human(i64::try_from(row.target_rpo_seconds).unwrap_or(i64::MAX)),
            if row.meets_target { "yes" } else { "NO" }.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..9)
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
fn human(seconds: i64) -> String {
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
    fn durations_read_like_a_clock() {
        assert_eq!(human(6), "6s");
        assert_eq!(human(245), "4m05s");
        assert_eq!(human(3723), "1h02m03s");
    }
}
