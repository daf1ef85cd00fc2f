//! `lifeboat local write-checkpoint`: writes a checkpoint into the primary's
//! local bucket the way a training job does (every shard, then the commit
//! marker last), for trying the fan-out and for drills.

use std::path::Path;

use anyhow::Context;
use lifeboat_shared::storage::conformance::generated_body;
use lifeboat_shared::storage::local::LocalStore;
use lifeboat_shared::storage::{ObjectRef, ObjectStore, PutOptions, bytes_stream};
use lifeboat_shared::topology::{CheckpointLocation, CommitMarker, Topology};

/// The largest piece a shard is written in.
const CHUNK_BYTES: u64 = 1 << 20;

/// What to write.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// The training step.
    pub step: u64,
    /// How many shards.
    pub shards: u32,
    /// The checkpoint's total size in bytes, split evenly over the shards.
    pub size: u64,
}

/// Writes the checkpoint of `shape` for `location` (the topology's first
/// checkpoint location when `None`) into the local cloud in `data_dir`.
pub async fn run(
    topology: &Topology,
    data_dir: &Path,
    location: Option<&str>,
    shape: Shape,
) -> anyhow::Result<()> {
    let location = find(topology, location)?;
    let storage = LocalStore::open(data_dir.join(topology.project().as_str()).join("storage"))
        .await
        .context("opening the local object store")?;
    let bucket = location.bucket.as_str();
    let directory = format!("{}step_{}/", prefix(location), shape.step);
    let shards = shape.shards.max(1);
    let shard_size = shape.size / u64::from(shards);
    let pieces = shard_size.div_ceil(CHUNK_BYTES).max(1);
    let piece = shard_size / pieces;
    let mut names = Vec::new();
    for index in 0..shards {
        let name = format!("shard-{index:05}-of-{shards:05}");
        let object = ObjectRef::new(bucket, format!("{directory}{name}"));
        let seed = shape
            .step
            .wrapping_mul(100_000)
            .wrapping_add(u64::from(index));
        let body = generated_body(seed, usize::try_from(pieces)?, usize::try_from(piece)?);
        storage
            .put(&object, body, PutOptions::default())
            .await
            .with_context(|| format!("writing {object}"))?;
        names.push(name);
    }
    let marker_body = match &location.marker {
        CommitMarker::Manifest(_) => serde_json::to_vec(&serde_json::json!({ "shards": names }))?,
        _ => b"committed\n".to_vec(),
    };
    let marker = ObjectRef::new(
        bucket,
        format!("{directory}{}", location.marker.object_name()),
    );
    storage
        .put(&marker, bytes_stream(marker_body), PutOptions::default())
        .await
        .with_context(|| format!("writing {marker}"))?;
    println!(
        "wrote {} step {}: {shards} shards of {} bytes, then {marker}",
        location.id,
        shape.step,
        pieces * piece
    );
    Ok(())
}

/// The location named `id`, or the first one.
fn find<'t>(topology: &'t Topology, id: Option<&str>) -> anyhow::Result<&'t CheckpointLocation> {
    let mut locations = topology
        .workloads()
        .iter()
        .flat_map(|w| &w.assets.checkpoints);
    match id {
        Some(id) => locations
            .find(|l| l.id.as_str() == id)
            .with_context(|| format!("the topology has no checkpoint location {id}")),
        None => locations
            .next()
            .context("the topology protects no checkpoint location"),
    }
}

/// The location's prefix as a directory (`runs/x/`; empty for the bucket root).
fn prefix(location: &CheckpointLocation) -> String {
    let prefix = location.prefix.as_str();
    if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    }
}
