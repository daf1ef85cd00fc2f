//! `lifeboat local demo`: the whole recovery path on the local cloud,
//! measured, as the game days a team would run. It starts a fresh local
//! cloud from a topology, writes a training checkpoint and waits for it to
//! fan out, drives predictions through the gateway, and runs the
//! topology's `region-outage` drill of the workload: the region fails in
//! the front door, the prober, failover and gateway move traffic by
//! themselves (the new region verified with the topology's golden
//! requests), the fault is removed and traffic fails back. It prints the
//! RTO with its parts (detection, decision, execution, verification), the
//! predictions that failed, and the RPO at the moment of failure, against
//! the workload's targets; then runs the workload's `restore` drill, if the
//! topology declares one, and prints where each drill's HTML report is.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use lifeboat_gateway::{ATTEMPTS_HEADER, REGION_HEADER};
use lifeboat_shared::records::drill_run::{DrillRun, RunState};
use lifeboat_shared::records::parity::ParityRow;
use lifeboat_shared::server::Shutdown;
use lifeboat_shared::topology::{Drill, DrillKind, Topology, Workload};

use crate::drill::{self, DrillService};
use crate::local_cloud::{AddressBook, CHECKPOINT_FANOUT_PATH, LocalCloud, MODEL_COPY_PATH};
use crate::write_checkpoint::{self, Shape};

/// Time between two predictions of the demo's traffic.
const TRAFFIC_INTERVAL: Duration = Duration::from_millis(20);

/// How long to wait for any stage before giving up.
const STAGE_LIMIT: Duration = Duration::from_secs(120);

/// One prediction sent through the gateway.
#[derive(Clone, Debug)]
struct Sent {
    at: DateTime<Utc>,
    /// The region that answered, when the answer was a success.
    answered_by: Option<String>,
    /// Whether the gateway had to retry it in another region (the region
    /// the routing table chose failed it).
    retried: bool,
}

/// Sends a prediction every [`TRAFFIC_INTERVAL`] until `stop`, recording each.
async fn traffic(url: String, log: Arc<Mutex<Vec<Sent>>>, stop: Shutdown) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    loop {
        let at = Utc::now();
        let (answered_by, retried) = match client
            .post(&url)
            .json(&serde_json::json!({"instances": [[1.0, 2.0, 3.0, 4.0]]}))
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => {
                let header = |name| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let retried = header(ATTEMPTS_HEADER).is_some_and(|n| n != "1");
                (header(REGION_HEADER), retried)
            }
            _ => (None, false),
        };
        log.lock().unwrap_or_else(|e| e.into_inner()).push(Sent {
            at,
            answered_by,
            retried,
        });
        tokio::select! {
            () = stop.triggered() => return,
            () = tokio::time::sleep(TRAFFIC_INTERVAL) => {}
        }
    }
}

/// Waits until `done` holds of the traffic log; the time it first did.
async fn wait_for(
    log: &Mutex<Vec<Sent>>,
    what: &str,
    done: impl Fn(&[Sent]) -> Option<DateTime<Utc>>,
) -> anyhow::Result<DateTime<Utc>> {
    let deadline = tokio::time::Instant::now() + STAGE_LIMIT;
    loop {
        if let Some(at) = done(&log.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(at);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {STAGE_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first success after `since` that the routing table sent to a region
/// `wanted` accepts (not one the gateway's retry took there).
fn first_answer(
    sent: &[Sent],
    since: DateTime<Utc>,
    wanted: impl Fn(&str) -> bool,
) -> Option<DateTime<Utc>> {
    sent.iter()
        .find(|s| s.at >= since && !s.retried && s.answered_by.as_deref().is_some_and(&wanted))
        .map(|s| s.at)
}

/// The workload the demo fails over: the first with a model served in the
/// primary.
fn workload(topology: &Topology) -> anyhow::Result<(&Workload, String)> {
    topology
        .workloads()
        .iter()
        .find_map(|w| {
            let model = w
                .assets
                .models
                .iter()
                .find(|m| m.endpoints.contains_key(topology.primary()))?;
            Some((w, model.id.to_string()))
        })
        .context("the topology has no workload with a model served in the primary")
}

/// Runs the demo on a fresh local cloud under `data_dir`; returns whether
/// the workload's RTO and RPO targets held.
pub async fn run(topology: Topology, data_dir: &Path) -> anyhow::Result<bool> {
    let (workload, model) = workload(&topology)?;
    let (workload, primary) = (workload.clone(), topology.primary().to_string());
    let declared = |kind: DrillKind| -> Option<Drill> {
        topology
            .drills()
            .iter()
            .find(|d| d.kind == kind && d.workload == workload.id)
            .cloned()
    };
    let outage_drill = declared(DrillKind::RegionOutage).with_context(|| {
        format!(
            "the demo runs a region-outage drill of workload {}: declare one under `drills:` (see docs/drills.md)",
            workload.id
        )
    })?;
    let restore_drill = declared(DrillKind::Restore);
    let dir = data_dir.join(topology.project().as_str());
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let cloud = LocalCloud::open(topology.clone(), &dir).await?;
    let bound = cloud.bind(0).await?;
    let book: AddressBook = bound.address_book().clone();
    let shutdown = Shutdown::new();
    let server = tokio::spawn(bound.serve(shutdown.clone()));
    let http = reqwest::Client::new();
    println!(
        "lifeboat local demo: workload {} ({}), model {model}, primary {primary}",
        workload.id,
        workload.pattern.name()
    );

    // A checkpoint, so that the RPO at failure is a real measurement.
    if !workload.assets.checkpoints.is_empty() {
        let location = workload.assets.checkpoints[0].id.to_string();
        let shape = Shape {
            step: 100,
            shards: 4,
            size: 1 << 20,
        };
        write_checkpoint::run(&topology, data_dir, Some(&location), shape).await?;
        let rpo_url = format!("http://{}{CHECKPOINT_FANOUT_PATH}/rpo", book.functions);
        let deadline = tokio::time::Instant::now() + STAGE_LIMIT;
        loop {
            let rows: Vec<serde_json::Value> = http.get(&rpo_url).send().await?.json().await?;
            let ours: Vec<&serde_json::Value> = rows
                .iter()
                .filter(|r| r["location"] == location.as_str())
                .collect();
            if !ours.is_empty() && ours.iter().all(|r| r["newest_step"] == 100) {
                println!("  checkpoint step 100 of {location} verified in every target region");
                break;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the checkpoint did not fan out"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // The drills refuse to run before every standby holds the model.
    let parity_url = format!("http://{}{MODEL_COPY_PATH}/parity", book.functions);
    let deadline = tokio::time::Instant::now() + STAGE_LIMIT;
    loop {
        let rows: Vec<ParityRow> = http.get(&parity_url).send().await?.json().await?;
        let ours: Vec<&ParityRow> = rows
            .iter()
            .filter(|row| row.workload == workload.id.as_str())
            .collect();
        if !ours.is_empty() && ours.iter().all(|row| row.parity) {
            println!("  model {model} in parity in every standby region");
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the standbys never reached model parity"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let drills = DrillService::local(&topology, data_dir)?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let stop_traffic = Shutdown::new();
    let url = format!("{}/predict/{}/{model}", book.gateway, workload.id);
    let sender = tokio::spawn(traffic(url, log.clone(), stop_traffic.clone()));
    let started = Utc::now();
    wait_for(&log, "a prediction from the primary", |sent| {
        first_answer(sent, started, |region| region == primary)
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The outage, as a drill: the fault in the front door, and the real
    // detection, failover, verification and failback.
    println!(
        "  drill {} ({} of {})",
        outage_drill.id,
        outage_drill.kind.name(),
        outage_drill.target_region
    );
    let outage = drills.start(outage_drill.id.as_str(), true).await?;
    let outage = drills.follow(&outage.id, true).await?;
    let held = print_outage(&outage, &workload);
    let sent = log.lock().unwrap_or_else(|e| e.into_inner()).len();
    println!("  predictions the demo's own clients sent through the gateway: {sent}");
    if outage.report.is_some() {
        println!(
            "  report: {}",
            drills.report_file(&outage.id).await?.display()
        );
    }

    // The standby proven able to resume training and serve data.
    let mut restored = true;
    if let Some(restore) = restore_drill {
        println!(
            "  drill {} ({} of {})",
            restore.id,
            restore.kind.name(),
            restore.target_region
        );
        let run = drills.start(restore.id.as_str(), true).await?;
        let run = drills.follow(&run.id, true).await?;
        print!("{}", drill::summary(&run));
        if run.report.is_some() {
            println!("  report: {}", drills.report_file(&run.id).await?.display());
        }
        restored = run.state == RunState::Passed;
    }
    stop_traffic.trigger();
    sender.await.context("the traffic task failed")?;
    shutdown.trigger();
    server.await.context("the local cloud failed")??;
    let held = held && restored;
    println!("  targets held: {}", if held { "yes" } else { "NO" });
    Ok(held)
}

/// Prints what a region-outage drill measured, as the demo always has;
/// whether it passed.
fn print_outage(run: &DrillRun, workload: &Workload) -> bool {
    let target = &run.target_region;
    if let Some(at) = run.cleanup.fault_injected_at {
        println!(
            "  {target} failed at {} (every connection dropped in the front door)",
            at.format("%H:%M:%S%.3f")
        );
    }
    let m = &run.measurements;
    let target_rto = workload.target_rto().get().as_secs_f64();
    let target_rpo = workload.target_rpo().get().as_secs();
    if let Some(rto) = m.rto_seconds {
        println!(
            "  RTO {rto:.2} s (target {target_rto:.0} s): detection {:.2} s, decision {:.2} s, execution {:.2} s, verification {:.2} s",
            m.detection_seconds.unwrap_or(0.0),
            m.decision_seconds.unwrap_or(0.0),
            m.execution_seconds.unwrap_or(0.0),
            m.verification_seconds.unwrap_or(0.0)
        );
        println!(
            "  predictions that failed during the outage: {} of {} (the gateway's own counts)",
            m.predictions_failed, m.predictions
        );
    }
    let verified = run
        .steps
        .iter()
        .find(|step| step.what == "incident-verified")
        .map_or("not recorded", |step| step.detail.as_str());
    println!("  verified after the move: {verified}");
    match m.rpo_at_failure_seconds {
        Some(seconds) => println!("  RPO at the failure: {seconds} s (target {target_rpo} s)"),
        None => println!("  RPO at the failure: no replicated data recorded for this workload"),
    }
    if let Some(seconds) = m.failback_seconds {
        println!("  failback: {target} answered again {seconds:.2} s after healing");
    }
    print!("{}", drill::summary(run));
    run.state == RunState::Passed
}
