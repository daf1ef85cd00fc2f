//! The data-sync benchmark driver (bench/data-sync.sh runs it): writes a
//! source bucket's objects as files for fake-gcs-server to load, then syncs
//! the bucket to its replicas either through the event
//! path (one finalize CloudEvent per object POSTed to the data-sync router,
//! served on a loopback port, retried on 5xx as Eventarc does) or through
//! the reconcile. Prints the elapsed seconds of the sync alone.
//!
//! ```text
//! sync_bench seed BUCKET_DIR SMALL_COUNT SMALL_BYTES LARGE_COUNT LARGE_BYTES
//! sync_bench events TOPOLOGY CONCURRENCY
//! sync_bench reconcile TOPOLOGY CONCURRENCY
//! ```
//! Cloud Storage and Firestore are the emulators named by
//! `STORAGE_EMULATOR_HOST` and `FIRESTORE_EMULATOR_HOST`. The event path
//! lists the objects to send events for (not timed) from
//! `SOURCE_LISTING_HOST` if set, so its calls through a shaping proxy are
//! only those the events cause.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use lifeboat_data_sync::{DataSync, reconcile, router};
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::metrics::state::StateMetrics;
use lifeboat_shared::server::{Service, Shutdown, serve_router};
use lifeboat_shared::state::firestore::{DEFAULT_DATABASE, FirestoreStore};
use lifeboat_shared::storage::gcs::GcsStore;
use lifeboat_shared::storage::{ObjectMeta, ObjectStore};
use lifeboat_shared::topology::Topology;
use lifeboat_shared::warehouse::local::LocalWarehouse;

fn gcs(variable: &str) -> anyhow::Result<GcsStore> {
    let host = std::env::var(variable).context(variable.to_string())?;
    Ok(GcsStore::new(
        ApiEndpoint::emulator(&host),
        "lifeboat-bench",
    ))
}

async fn context(topology: &str) -> anyhow::Result<DataSync> {
    let topology = Topology::load(topology).map_err(|p| anyhow::anyhow!("{p}"))?;
    let firestore = std::env::var("FIRESTORE_EMULATOR_HOST").context("FIRESTORE_EMULATOR_HOST")?;
    let state = FirestoreStore::new(
        ApiEndpoint::emulator(&firestore),
        topology.project().as_str(),
        DEFAULT_DATABASE,
    )?;
    let warehouse =
        LocalWarehouse::open(std::env::temp_dir().join("lifeboat-bench-warehouse")).await?;
    let state = Arc::new(state);
    Ok(DataSync {
        topology: Arc::new(topology),
        storage: Arc::new(gcs("STORAGE_EMULATOR_HOST")?),
        metrics: Arc::new(StateMetrics::new(state.clone())),
        state,
        warehouse: Arc::new(warehouse),
        bulk: None,
    })
}

/// Writes the source bucket as a folder of files, the layout
/// fake-gcs-server loads with `-data`: each tool then starts from a fresh
/// server holding the same objects.
fn seed(args: &[String]) -> anyhow::Result<()> {
    let [dir, small_count, small_bytes, large_count, large_bytes] = args else {
        bail!("seed BUCKET_DIR SMALL_COUNT SMALL_BYTES LARGE_COUNT LARGE_BYTES");
    };
    let dir = std::path::Path::new(dir);
    let (small_bytes, large_bytes): (usize, usize) = (small_bytes.parse()?, large_bytes.parse()?);
    let mut files: Vec<(String, usize)> = (0..small_count.parse::<usize>()?)
        .map(|i| {
            (
                format!("small/{:03}/object {i:06}.json", i % 100),
                small_bytes,
            )
        })
        .collect();
    files.extend(
        (0..large_count.parse::<usize>()?)
            .map(|i| (format!("large/shard-{i:02}.bin"), large_bytes)),
    );
    for (name, size) in files {
        let path = dir.join(&name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let body: Vec<u8> = (0..size).map(|i| (i * 31 + name.len()) as u8).collect();
        std::fs::write(&path, body).with_context(|| path.display().to_string())?;
    }
    Ok(())
}

/// The binary-mode CloudEvent Eventarc sends for a finalized object.
fn finalize_event(
    client: &reqwest::Client,
    url: &str,
    meta: &ObjectMeta,
) -> reqwest::RequestBuilder {
    let crc = base64::engine::general_purpose::STANDARD.encode(meta.crc32c.to_be_bytes());
    client
        .post(url)
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header(
            "ce-id",
            format!(
                "{}/{}#{}",
                meta.object.bucket, meta.object.name, meta.generation
            ),
        )
        .header(
            "ce-source",
            format!(
                "//storage.googleapis.com/projects/_/buckets/{}",
                meta.object.bucket
            ),
        )
        .header("ce-type", "google.cloud.storage.object.v1.finalized")
        .header("ce-time", meta.updated.to_rfc3339())
        .body(
            serde_json::json!({
                "bucket": meta.object.bucket, "name": meta.object.name,
                "generation": meta.generation.to_string(), "size": meta.size.to_string(),
                "crc32c": crc, "timeCreated": meta.updated.to_rfc3339(),
            })
            .to_string(),
        )
}

async fn events(sync: DataSync, concurrency: usize) -> anyhow::Result<()> {
    let lister = match std::env::var_os("SOURCE_LISTING_HOST") {
        Some(_) => gcs("SOURCE_LISTING_HOST")?,
        None => gcs("STORAGE_EMULATOR_HOST")?,
    };
    let mut objects = Vec::new();
    for asset in sync
        .topology
        .workloads()
        .iter()
        .flat_map(|w| &w.assets.buckets)
    {
        let mut token: Option<String> = None;
        loop {
            let page = lister
                .list(asset.source.as_str(), "", token.as_deref())
                .await?;
            objects.extend(page.objects);
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let shutdown = Shutdown::new();
    let service =
        Service::new("data-sync", router(sync)).with_request_timeout(Duration::from_secs(600));
    let server = tokio::spawn(serve_router(
        service.into_router(),
        listener,
        shutdown.clone(),
        Duration::from_secs(1),
    ));
    let client = reqwest::Client::new();
    let started = Instant::now();
    futures::stream::iter(&objects)
        .map(|meta| {
            let client = &client;
            let url = url.as_str();
            async move {
                loop {
                    let answer = finalize_event(client, url, meta).send().await?;
                    if answer.status().is_success() {
                        return anyhow::Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
        .buffer_unordered(concurrency)
        .try_for_each(|()| async { Ok(()) })
        .await?;
    println!(
        "events: {} objects synced in {:.2} s",
        objects.len(),
        started.elapsed().as_secs_f64()
    );
    shutdown.trigger();
    server.await??;
    Ok(())
}

async fn reconcile_now(sync: DataSync, concurrency: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let reports = reconcile::reconcile_all(&sync, concurrency, &|_| {}).await?;
    let copied: u64 = reports.iter().map(|r| r.copied_missing).sum();
    let failed: u64 = reports.iter().map(|r| r.failed).sum();
    println!(
        "reconcile: {copied} copies, {failed} failed, in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.split_first() {
        Some((mode, rest)) if mode == "seed" => seed(rest),
        Some((mode, [topology, concurrency])) if mode == "events" => {
            events(context(topology).await?, concurrency.parse()?).await
        }
        Some((mode, [topology, concurrency])) if mode == "reconcile" => {
            reconcile_now(context(topology).await?, concurrency.parse()?).await
        }
        _ => bail!("usage: sync_bench seed|events|reconcile ..."),
    }
}
