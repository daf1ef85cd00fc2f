//! `lifeboat local release-model`: releases a new version of a protected
//! model in the running local cloud's primary, then follows it to every
//! standby region through model-copy's parity records and asks each
//! region's endpoint which version it answers with.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use lifeboat_shared::records::parity::ParityRow;
use lifeboat_shared::topology::Topology;

use crate::local_cloud::releases::RELEASE_PATH;
use crate::local_cloud::{AddressBook, MODEL_COPY_PATH};
use crate::status::model_table;

/// How often the parity records are read while the copies run.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Releases `version` (the next when `None`) of `model` in the local cloud
/// running on `data_dir`, waits up to `timeout` for every standby region to
/// hold it, and prints parity and what each endpoint answers. Returns
/// whether every region reached parity.
pub async fn run(
    topology: &Topology,
    data_dir: &Path,
    model: &str,
    version: Option<String>,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let asset = topology
        .workloads()
        .iter()
        .flat_map(|w| w.assets.models.iter().map(move |m| (w, m)))
        .find(|(_, m)| m.is_named(model));
    let Some((workload, asset)) = asset else {
        anyhow::bail!("no workload of the topology protects a model named {model:?}");
    };
    let book = AddressBook::load(&data_dir.join(topology.project().as_str()))?;
    let client = reqwest::Client::new();
    let url = format!(
        "http://{}{}",
        book.functions,
        RELEASE_PATH.replace("{model}", asset.id.as_str())
    );
    let started = Instant::now();
    let response = client
        .post(&url)
        .json(&serde_json::json!({ "version": version }))
        .send()
        .await
        .with_context(|| format!("the local cloud at {url} does not answer"))?;
    let status = response.status();
    let body = response.text().await.context("reading the release")?;
    if !status.is_success() {
        anyhow::bail!("the release answered {status}: {body}");
    }
    let released: serde_json::Value = serde_json::from_str(&body).context("reading the release")?;
    let version = released["version"].as_str().unwrap_or_default().to_string();
    println!(
        "released version {version} of {} in {}{}",
        asset.id,
        topology.primary(),
        if asset.version.is_some() {
            " (the topology pins the served version: endpoints keep it)"
        } else {
            ", now served there"
        }
    );

    let parity_url = format!("http://{}{MODEL_COPY_PATH}/parity", book.functions);
    let rows = loop {
        let rows: Vec<ParityRow> = client
            .get(&parity_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("reading parity at {parity_url}"))?
            .json()
            .await
            .context("reading parity")?;
        let rows: Vec<ParityRow> = rows
            .into_iter()
            .filter(|r| r.model == asset.id.as_str())
            .collect();
        let arrived = rows
            .iter()
            .all(|r| r.versions_present.contains(&version) && (r.parity || r.error.is_some()));
        if arrived || started.elapsed() > timeout {
            break rows;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    print!("{}", model_table(&rows));
    for (region, address) in &book.regions {
        if !asset.endpoints.keys().any(|r| r.as_str() == region) {
            continue;
        }
        let answer = client
            .post(format!(
                "http://{address}/predict/{}/{}",
                workload.id, asset.id
            ))
            .json(&serde_json::json!({"instances": [[1.0]]}))
            .send()
            .await;
        let served = match answer {
            Ok(response) if response.status().is_success() => {
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                format!("version {}", body["version"].as_str().unwrap_or("?"))
            }
            Ok(response) => format!("answers {}", response.status()),
            Err(error) => format!("does not answer: {error}"),
        };
        println!("{region} endpoint serves {served}");
    }
    Ok(rows.iter().all(|r| r.parity))
}
