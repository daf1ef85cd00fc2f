//! `lifeboat sync status`: the RPO exposure of every replicated bucket and
//! dataset in every region, against its workload's target, as data-sync
//! recorded it.

use std::path::Path;

use anyhow::Context;
use chrono::Utc;
use lifeboat_data_sync::rpo::{self, AssetKind};
use lifeboat_shared::topology::Topology;

use crate::sync::backends;

/// Prints the RPO table of the deployment at `topology_file`; `local`: the
/// local cloud's data directory instead of Google Cloud. Returns whether
/// every target is met.
pub fn run(topology_file: &Path, local: Option<&Path>) -> anyhow::Result<bool> {
    let topology =
        Topology::load(topology_file).map_err(|problems| anyhow::anyhow!("{problems}"))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let sync = backends(topology, local).await?;
        let records = rpo::read_all(sync.state.as_ref())
            .await
            .context("reading the RPO records")?;
        let now = Utc::now();
        println!(
            "{:<8} {:<24} {:<16} {:>12} {:>12} {:<4} last checked",
            "kind", "asset", "region", "exposure", "target", "met"
        );
        for record in &records {
            let kind = match record.kind {
                AssetKind::Bucket => "bucket",
                AssetKind::Dataset => "dataset",
            };
            println!(
                "{:<8} {:<24} {:<16} {:>11}s {:>11}s {:<4} {}",
                kind,
                record.asset,
                record.region,
                record.exposure_seconds(now),
                record.target_seconds,
                if record.met(now) { "yes" } else { "NO" },
                record
                    .checked_at
                    .map_or_else(|| "never".to_string(), |at| at.to_rfc3339())
            );
        }
        if records.is_empty() {
            println!("no replication recorded yet: run `lifeboat sync reconcile`");
        }
        Ok(records.iter().all(|record| record.met(now)))
    })
}
