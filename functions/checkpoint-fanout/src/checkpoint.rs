//! What a finalized object is to this function: the commit marker of a
//! checkpoint under a protected location, or anything else (a shard, a
//! replica, an object no topology protects), which shards a committed
//! checkpoint is made of (listed from its directory, or read from its
//! manifest, in the source or a replica), and which checkpoints a bucket
//! holds complete.

use futures::{StreamExt, TryStreamExt};
use lifeboat_shared::storage::{ObjectMeta, ObjectRef, ObjectStore, StorageError};
use lifeboat_shared::topology::{CheckpointLocation, CommitMarker, Topology, Workload};
use serde::Deserialize;

/// The largest manifest read, so a wrong object cannot exhaust memory.
pub const MAX_MANIFEST_BYTES: usize = 16 * 1024 * 1024;

/// One committed checkpoint in the source bucket.
#[derive(Clone, Debug)]
pub struct Checkpoint<'t> {
    /// The workload that trains it.
    pub workload: &'t Workload,
    /// Where it is written and where it is copied.
    pub location: &'t CheckpointLocation,
    /// The checkpoint's directory, ending in `/` (`runs/x/step_100/`).
    pub directory: String,
    /// The training step, from the trailing digits of the directory's name.
    pub step: u64,
}

impl Checkpoint<'_> {
    /// The marker object's name.
    pub fn marker_name(&self) -> String {
        format!("{}{}", self.directory, self.location.marker.object_name())
    }
}

/// What a finalized object is, as far as checkpoint fan-out goes.
#[derive(Debug)]
pub enum Recognised<'t> {
    /// The commit marker of a checkpoint in its source bucket: fan it out.
    Marker(Checkpoint<'t>),
    /// An object of a protected location that is not a source marker (a
    /// shard, or a replica the fan-out wrote): nothing to do.
    NotAMarker,
    /// An object no checkpoint location protects.
    Unprotected,
}

/// Why a marker cannot be fanned out however often it is delivered.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The directory of the marker does not end in a step number.
    #[error(
        "{asset}: marker {object} is not in a checkpoint directory named after its step (like step_100/)"
    )]
    NoStep {
        /// The checkpoint location's id.
        asset: String,
        /// The marker.
        object: ObjectRef,
    },
    /// The manifest is not one this function reads.
    #[error("{asset}: manifest {object} is unreadable: {reason}")]
    BadManifest {
        /// The checkpoint location's id.
        asset: String,
        /// The manifest.
        object: ObjectRef,
        /// What is wrong with it.
        reason: String,
    },
    /// The manifest names a shard that does not exist.
    #[error("{asset}: manifest {manifest} lists {shard}, which does not exist")]
    MissingShard {
        /// The checkpoint location's id.
        asset: String,
        /// The manifest.
        manifest: ObjectRef,
        /// The missing shard.
        shard: ObjectRef,
    },
    /// Reading the source failed.
    #[error("{asset}: reading the source: {source}")]
    Storage {
        /// The checkpoint location's id.
        asset: String,
        /// The storage failure.
        #[source]
        source: StorageError,
    },
}

impl CheckpointError {
    /// True when a later delivery may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, CheckpointError::Storage { source, .. } if source.is_transient())
    }
}

/// Tells what `name` in `bucket` is: a source marker (with its checkpoint),
/// another object of a protected location, or unprotected.
pub fn recognise<'t>(
    topology: &'t Topology,
    bucket: &str,
    name: &str,
) -> Result<Recognised<'t>, CheckpointError> {
    let Some((workload, location)) = topology.checkpoint_for_object(bucket, name) else {
        return Ok(Recognised::Unprotected);
    };
    if location.bucket.as_str() != bucket {
        return Ok(Recognised::NotAMarker);
    }
    let marker = location.marker.object_name();
    let Some(directory) = name.strip_suffix(marker) else {
        return Ok(Recognised::NotAMarker);
    };
    if !(directory.is_empty() || directory.ends_with('/')) {
        return Ok(Recognised::NotAMarker);
    }
    let step = step_of(directory).ok_or_else(|| CheckpointError::NoStep {
        asset: location.id.to_string(),
        object: ObjectRef::new(bucket, name),
    })?;
    Ok(Recognised::Marker(Checkpoint {
        workload,
        location,
        directory: directory.to_string(),
        step,
    }))
}

/// The step a checkpoint directory is named after: the trailing digits of
/// its last segment (`step_100/`, `checkpoint-100/`, `100/`).
pub fn step_of(directory: &str) -> Option<u64> {
    let last = directory.trim_end_matches('/').rsplit('/').next()?;
    let digits = &last[last.trim_end_matches(|c: char| c.is_ascii_digit()).len()..];
    digits.parse().ok()
}

/// A manifest: the shards' names, relative to the checkpoint directory,
/// either as plain strings or as objects with a `name`.
#[derive(Debug, Deserialize)]
struct Manifest {
    shards: Vec<ManifestEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ManifestEntry {
    Name(String),
    Described { name: String },
}

impl ManifestEntry {
    fn name(&self) -> &str {
        match self {
            ManifestEntry::Name(name) | ManifestEntry::Described { name } => name,
        }
    }
}

/// The shards of `checkpoint` in the source bucket, as they are now: every
/// object of its directory but the marker, or the objects its manifest lists
/// (read with at most `parallelism` requests at a time).
pub async fn shards(
    store: &dyn ObjectStore,
    checkpoint: &Checkpoint<'_>,
    parallelism: usize,
) -> Result<Vec<ObjectMeta>, CheckpointError> {
    shards_in(
        store,
        checkpoint,
        checkpoint.location.bucket.as_str(),
        parallelism,
    )
    .await
}

/// The shards of `checkpoint` as `bucket` (its source or one of its
/// replicas) holds them: every object of its directory there but the
/// marker, or the objects the manifest there lists.
pub async fn shards_in(
    store: &dyn ObjectStore,
    checkpoint: &Checkpoint<'_>,
    bucket: &str,
    parallelism: usize,
) -> Result<Vec<ObjectMeta>, CheckpointError> {
    let asset = || checkpoint.location.id.to_string();
    let storage = |source| CheckpointError::Storage {
        asset: asset(),
        source,
    };
    let marker = ObjectRef::new(bucket, checkpoint.marker_name());
    let CommitMarker::Manifest(_) = checkpoint.location.marker else {
        let mut listed = list_all(store, bucket, &checkpoint.directory)
            .await
            .map_err(storage)?;
        listed.retain(|meta| meta.object != marker);
        return Ok(listed);
    };
    let names = read_manifest(store, &marker, &asset()).await?;
    futures::stream::iter(names)
        .map(|name| {
            let shard = ObjectRef::new(bucket, format!("{}{name}", checkpoint.directory));
            let marker = &marker;
            async move {
                store.head(&shard).await.map_err(|source| match source {
                    StorageError::NotFound { .. } => CheckpointError::MissingShard {
                        asset: asset(),
                        manifest: marker.clone(),
                        shard: shard.clone(),
                    },
                    source => storage(source),
                })
            }
        })
        .buffered(parallelism.max(1))
        .try_collect()
        .await
}

/// One complete checkpoint found in a bucket: its marker is there.
#[derive(Clone, Debug)]
pub struct Committed {
    /// The training step.
    pub step: u64,
    /// The checkpoint's directory, ending in `/` (or empty).
    pub directory: String,
    /// Its commit marker.
    pub marker: ObjectMeta,
}

/// The complete checkpoints of `location` in `bucket` (its source or a
/// replica), newest step first: those whose commit marker is there. The
/// marker is written last, so a checkpoint still being copied is not among
/// them.
pub async fn committed(
    store: &dyn ObjectStore,
    location: &CheckpointLocation,
    bucket: &str,
) -> Result<Vec<Committed>, StorageError> {
    let marker = location.marker.object_name();
    // Only the markers are kept: the location holds every shard of every
    // kept checkpoint, far more than its markers.
    let mut complete = list_kept(store, bucket, location.prefix.as_str(), |meta| {
        let directory = meta.object.name.strip_suffix(marker)?.to_string();
        let in_directory = directory.is_empty() || directory.ends_with('/');
        let step = step_of(&directory).filter(|_| in_directory)?;
        Some(Committed {
            step,
            directory,
            marker: meta,
        })
    })
    .await?;
    complete.sort_by_key(|c| std::cmp::Reverse(c.step));
    Ok(complete)
}

/// Every object under `prefix` in `bucket`, all pages.
pub async fn list_all(
    store: &dyn ObjectStore,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<ObjectMeta>, StorageError> {
    list_kept(store, bucket, prefix, Some).await
}

/// What `keep` makes of each object under `prefix` in `bucket`, all
/// pages, skipping the objects it maps to `None`; one page is held at a
/// time.
pub async fn list_kept<T>(
    store: &dyn ObjectStore,
    bucket: &str,
    prefix: &str,
    mut keep: impl FnMut(ObjectMeta) -> Option<T>,
) -> Result<Vec<T>, StorageError> {
    let mut kept = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store.list(bucket, prefix, token.as_deref()).await?;
        kept.extend(page.objects.into_iter().filter_map(&mut keep));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => return Ok(kept),
        }
    }
}

/// The shard names a manifest lists, each checked to stay inside the
/// checkpoint directory.
async fn read_manifest(
    store: &dyn ObjectStore,
    manifest: &ObjectRef,
    asset: &str,
) -> Result<Vec<String>, CheckpointError> {
    let bad = |reason: String| CheckpointError::BadManifest {
        asset: asset.to_string(),
        object: manifest.clone(),
        reason,
    };
    let (_, mut body) = store
        .get(manifest)
        .await
        .map_err(|source| CheckpointError::Storage {
            asset: asset.to_string(),
            source,
        })?;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|source| CheckpointError::Storage {
            asset: asset.to_string(),
            source,
        })?;
        if bytes.len() + chunk.len() > MAX_MANIFEST_BYTES {
            return Err(bad(format!("larger than {MAX_MANIFEST_BYTES} bytes")));
        }
        bytes.extend_from_slice(&chunk);
    }
    let parsed: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        bad(format!(
            "expected {{\"shards\": [\"name\" or {{\"name\": ...}}, ...]}}: {e}"
        ))
    })?;
    let names: Vec<String> = parsed
        .shards
        .iter()
        .map(|entry| entry.name().to_string())
        .collect();
    if let Some(name) = names
        .iter()
        .find(|name| name.is_empty() || name.split('/').any(|part| part == ".."))
    {
        return Err(bad(format!(
            "shard name {name:?} is empty or leaves the checkpoint directory"
        )));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPOLOGY: &str = r#"
project: acme-ml-prod
regions:
  - id: us-central1
    role: primary
  - id: us-east1
    role: standby
workloads:
  - id: ranker
    class: production-training
    pattern: active-passive
    assets:
      checkpoints:
        - id: ranker-ckpt
          bucket: ckpt-usc1
          prefix: runs/v7/
          marker: orbax
          replicas:
            us-east1: ckpt-use1
          interval-steps: 100
          keep-newest: 2
"#;

    fn topology() -> Topology {
        Topology::parse(TOPOLOGY, "test.yaml").expect("valid topology")
    }

    #[test]
    fn a_marker_in_the_source_is_recognised_with_its_step() {
        let topology = topology();
        let found = recognise(
            &topology,
            "ckpt-usc1",
            "runs/v7/step_200/commit_success.txt",
        )
        .expect("recognised");
        let Recognised::Marker(checkpoint) = found else {
            panic!("not a marker: {found:?}");
        };
        assert_eq!(checkpoint.step, 200);
        assert_eq!(checkpoint.directory, "runs/v7/step_200/");
        assert_eq!(
            checkpoint.marker_name(),
            "runs/v7/step_200/commit_success.txt"
        );
    }

    #[test]
    fn shards_replicas_and_strangers_are_told_apart() {
        let topology = topology();
        let what = |bucket: &str, name: &str| recognise(&topology, bucket, name).expect("ok");
        assert!(matches!(
            what("ckpt-usc1", "runs/v7/step_200/shard-0"),
            Recognised::NotAMarker
        ));
        assert!(matches!(
            what("ckpt-usc1", "runs/v7/step_200/not_commit_success.txt"),
            Recognised::NotAMarker
        ));
        assert!(matches!(
            what("ckpt-use1", "runs/v7/step_200/commit_success.txt"),
            Recognised::NotAMarker
        ));
        assert!(matches!(
            what("ckpt-usc1", "runs/v8/step_200/commit_success.txt"),
            Recognised::Unprotected
        ));
        assert!(matches!(
            what("elsewhere", "runs/v7/step_200/commit_success.txt"),
            Recognised::Unprotected
        ));
    }

    #[test]
    fn a_marker_without_a_step_is_refused_with_its_name() {
        let topology = topology();
        let error = recognise(&topology, "ckpt-usc1", "runs/v7/latest/commit_success.txt")
            .expect_err("no step");
        let message = error.to_string();
        assert!(message.contains("ranker-ckpt"), "{message}");
        assert!(
            message.contains("runs/v7/latest/commit_success.txt"),
            "{message}"
        );
    }

    #[test]
    fn steps_are_the_trailing_digits_of_the_directory() {
        assert_eq!(step_of("runs/v7/step_100/"), Some(100));
        assert_eq!(step_of("runs/v7/checkpoint-7/"), Some(7));
        assert_eq!(step_of("42/"), Some(42));
        assert_eq!(step_of("runs/v7/final/"), None);
        assert_eq!(step_of(""), None);
    }
}
