//! `lifeboat failover` and `lifeboat failback`: a person moving a
//! workload's traffic, through the running local cloud's failover service
//! (the same safety rules, lease and record as an incident's failover).

use std::path::Path;

use anyhow::Context;
use lifeboat_failover::ManualMove;
use lifeboat_shared::topology::Topology;

use crate::local_cloud::{AddressBook, FAILOVER_PATH};

/// What to ask the failover service.
#[derive(Debug)]
pub enum Ask<'a> {
    /// Move the workload's traffic to a region.
    Move(&'a ManualMove),
    /// Return it to the primary, step by step.
    Failback,
}

/// Asks the failover service of the local cloud running on `data_dir` for
/// `workload`, prints the record, and returns whether traffic moved.
pub async fn run(
    topology: &Topology,
    data_dir: &Path,
    workload: &str,
    ask: Ask<'_>,
) -> anyhow::Result<bool> {
    let dir = data_dir.join(topology.project().as_str());
    let book = AddressBook::load(&dir)?;
    let base = format!("http://{}{FAILOVER_PATH}", book.functions);
    let client = reqwest::Client::new();
    let request = match ask {
        Ask::Move(asked) => client.post(format!("{base}/move/{workload}")).json(asked),
        Ask::Failback => client.post(format!("{base}/failback/{workload}")),
    };
    let response = request.send().await.with_context(|| {
        format!(
            "the local cloud's failover at {base} does not answer (is `lifeboat local up` running?)"
        )
    })?;
    let status = response.status();
    let body: serde_json::Value = match response.text().await {
        Ok(text) => serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        Err(error) => anyhow::bail!("reading the failover's answer: {error}"),
    };
    if !status.is_success() {
        anyhow::bail!(
            "failover answered {status}: {}",
            body.as_str()
                .map_or_else(|| body.to_string(), str::to_string)
        );
    }
    if let Some(unchanged) = body["unchanged"].as_str() {
        println!("{unchanged}");
        return Ok(true);
    }
    for step in body["steps"].as_array().into_iter().flatten() {
        println!(
            "{}  {:<12} {}",
            step["at"].as_str().unwrap_or_default(),
            step["what"].as_str().unwrap_or_default(),
            step["detail"].as_str().unwrap_or_default()
        );
    }
    for reason in body["decision"]["reasons"].as_array().into_iter().flatten() {
        println!("  because: {}", reason.as_str().unwrap_or_default());
    }
    let outcome = body["outcome"].as_str().unwrap_or("unknown");
    println!("outcome: {outcome}");
    Ok(outcome == "moved")
}
