//! The assets a workload protects: Vertex AI models, GCS buckets, BigQuery
//! datasets and training checkpoint locations.

use std::collections::BTreeMap;
use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};

use serde::{Deserialize, de};

use super::yaml::Parsed;
use super::{BucketName, ByteSize, DatasetId, Duration, Id, ObjectPrefix, RegionId};

/// A Vertex AI model served by the workload.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Model {
    /// The asset id, unique across the file.
    pub id: Id,
    /// The Vertex AI model id (`4512398712`) in the primary's registry.
    pub model_id: String,
    /// The model's display name in Vertex AI.
    pub display_name: Option<String>,
    /// A pinned model version; without it the newest version is served.
    pub version: Option<String>,
    /// Replicas serving in the primary (and in every region when active-active).
    pub serving_replicas: NonZeroU32,
    /// The machine type each replica runs on (`n1-standard-4`), recorded
    /// here so a standby is deployed without asking the primary, which may
    /// be gone; required for pilot-light.
    pub machine_type: Option<String>,
    /// The accelerator attached to each replica (`nvidia-tesla-t4`), as
    /// Vertex AI names it in lower case, when the machine type does not
    /// come with one (`g2`, `a2` machine types do).
    pub accelerator_type: Option<String>,
    /// Accelerators per replica, with `accelerator-type` (default 1).
    pub accelerator_count: Option<NonZeroU32>,
    /// Replicas kept deployed in each warm standby (active-passive only).
    #[serde(default)]
    pub standby_replicas: u32,
    /// Predictions per second at the daily peak, across all regions.
    pub peak_rps: Option<NonZeroU32>,
    /// Predictions per second averaged over a month.
    pub mean_rps: Option<u32>,
    /// Predictions per second one replica serves within its latency
    /// objective, as the team measured it; without it the primary's
    /// `serving-replicas` are taken to carry the peak.
    pub replica_rps: Option<NonZeroU32>,
    /// How long Vertex AI takes to add replicas to a deployed model in a
    /// region (autoscaling up to `serving-replicas`).
    pub scale_up_time: Option<Duration>,
    /// How long a deployment of the model on an empty endpoint takes to
    /// serve (what a pilot-light failover waits for).
    pub deploy_time: Option<Duration>,
    /// The Vertex AI endpoint id per region; the primary's is required.
    pub endpoints: BTreeMap<RegionId, String>,
    /// Per standby region, the Artifact Registry repository
    /// (`us-east1-docker.pkg.dev/acme/serving`) that model-copy mirrors the
    /// serving image into, for an image that lives only in the primary's
    /// regional repository.
    #[serde(default)]
    pub image_mirrors: BTreeMap<RegionId, String>,
    /// Requests with known answers: a region is healthy for this model only
    /// when it answers them right (see `docs/golden-requests.md`).
    #[serde(default)]
    pub golden_requests: Vec<GoldenRequest>,
}

impl Model {
    /// Whether `name` names this model: its asset id, Vertex AI model id or
    /// display name.
    pub fn is_named(&self, name: &str) -> bool {
        self.id.as_str() == name
            || self.model_id == name
            || self.display_name.as_deref() == Some(name)
    }
}

/// One golden request of a model: instances as Vertex AI's `:predict` takes
/// them, and the predictions a healthy region answers, one per instance.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GoldenRequest {
    /// The instances sent, as JSON values.
    pub instances: Vec<serde_json::Value>,
    /// The expected prediction of each instance, in order.
    pub predictions: Vec<serde_json::Value>,
    /// How far a number in an answer may be from the expected one.
    #[serde(default)]
    pub tolerance: Tolerance,
}

/// The absolute difference allowed between an expected and an answered
/// number: 0 (the default) asks for exact answers. A validated topology's
/// tolerances are finite and at least 0.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct Tolerance(f64);

impl Tolerance {
    /// The allowed difference.
    pub fn get(self) -> f64 {
        self.0
    }

    /// Whether the tolerance means something: finite and at least 0.
    pub(super) fn is_usable(self) -> bool {
        self.0.is_finite() && self.0 >= 0.0
    }
}

// Compared by total order, so equality is an equivalence even for NaN.
impl PartialEq for Tolerance {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}

impl Eq for Tolerance {}

impl fmt::Display for Tolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Cloud Storage storage classes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum StorageClass {
    /// Standard storage (the default).
    #[default]
    Standard,
    /// Nearline storage (30-day minimum).
    Nearline,
    /// Coldline storage (90-day minimum).
    Coldline,
    /// Archive storage (365-day minimum).
    Archive,
}

impl StorageClass {
    /// The name as written in topology and price files.
    pub const fn name(self) -> &'static str {
        match self {
            StorageClass::Standard => "standard",
            StorageClass::Nearline => "nearline",
            StorageClass::Coldline => "coldline",
            StorageClass::Archive => "archive",
        }
    }
}

/// What to do in the replicas when an object is deleted in the source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeletePolicy {
    /// Delete it in the replicas too (`delete-policy: mirror`, the default).
    #[default]
    Mirror,
    /// Keep it in the replicas for this long (`delete-policy: {keep: 30d}`),
    /// a defence against a mistaken or malicious delete.
    Keep(Duration),
}

/// A GCS bucket in the primary and its replica bucket in each target region.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BucketAsset {
    /// The asset id, unique across the file.
    pub id: Id,
    /// The bucket in the primary region.
    pub source: BucketName,
    /// The replica bucket per target region.
    pub replicas: BTreeMap<RegionId, BucketName>,
    /// What a delete in the source does to the replicas.
    #[serde(default)]
    pub delete_policy: DeletePolicy,
    /// The data the source bucket holds.
    pub size: Option<ByteSize>,
    /// The data written into the source bucket per day, which replication
    /// copies to every replica.
    pub written_per_day: Option<ByteSize>,
    /// The storage class of the replica buckets.
    #[serde(default)]
    pub storage_class: StorageClass,
}

impl BucketAsset {
    /// The replica bucket in `region`, if the asset has one there.
    pub fn replica_bucket(&self, region: &str) -> Option<&str> {
        self.replicas
            .iter()
            .find(|(r, _)| r.as_str() == region)
            .map(|(_, bucket)| bucket.as_str())
    }

    pub(super) fn holds_bucket(&self, bucket: &str) -> bool {
        self.source.as_str() == bucket || self.replicas.values().any(|b| b.as_str() == bucket)
    }
}

/// A BigQuery dataset in the primary and its replica dataset per region.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DatasetAsset {
    /// The asset id, unique across the file.
    pub id: Id,
    /// The dataset in the primary region.
    pub source: DatasetId,
    /// The replica dataset per target region.
    pub replicas: BTreeMap<RegionId, DatasetId>,
    /// The logical bytes the source dataset holds.
    pub size: Option<ByteSize>,
    /// The data written into the source dataset per day, which replication
    /// copies to every replica.
    pub written_per_day: Option<ByteSize>,
}

/// How a training job marks a checkpoint as complete; the marker is copied
/// last, so a checkpoint is visible in a region only once all of it is there.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommitMarker {
    /// Orbax: `commit_success.txt` in the checkpoint directory.
    Orbax,
    /// PyTorch distributed checkpoint: the `.metadata` file.
    PytorchDcp,
    /// A custom marker object with this name (`marker: {custom: DONE}`).
    Custom(String),
    /// A manifest object with this name that lists every shard
    /// (`marker: {manifest: manifest.json}`).
    Manifest(String),
}

impl CommitMarker {
    /// The name of the object that marks a checkpoint as committed.
    pub fn object_name(&self) -> &str {
        match self {
            CommitMarker::Orbax => "commit_success.txt",
            CommitMarker::PytorchDcp => ".metadata",
            CommitMarker::Custom(name) | CommitMarker::Manifest(name) => name,
        }
    }

    /// Whether the marker lists the checkpoint's shards.
    pub fn is_manifest(&self) -> bool {
        matches!(self, CommitMarker::Manifest(_))
    }
}

/// How many checkpoints to keep: the newest K, at least one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Retention(NonZeroU32);

impl Retention {
    /// The number of newest checkpoints kept.
    pub fn count(self) -> u32 {
        self.0.get()
    }
}

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RetentionVisitor;

        impl de::Visitor<'_> for RetentionVisitor {
            type Value = Retention;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the number of newest checkpoints to keep, at least 1")
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Retention, E> {
                if n == 0 {
                    return Err(E::custom(
                        "retention of 0 would delete every checkpoint: keep at least 1",
                    ));
                }
                u32::try_from(n)
                    .ok()
                    .and_then(NonZeroU32::new)
                    .map(Retention)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Signed(n), &self))
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Retention, E> {
                match i64::try_from(n) {
                    Ok(n) => self.visit_i64(n),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Unsigned(n), &self)),
                }
            }
        }

        // Checked inside the visitor, so the problem points at the value.
        deserializer.deserialize_u32(RetentionVisitor)
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "newest {}", self.0)
    }
}

/// Where a training job writes its checkpoints and where they are copied.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CheckpointLocation {
    /// The asset id, unique across the file.
    pub id: Id,
    /// The bucket the job writes to, in the primary region.
    pub bucket: BucketName,
    /// The prefix under which each checkpoint is a directory; the same prefix
    /// is used in every replica bucket.
    #[serde(default)]
    pub prefix: ObjectPrefix,
    /// How a checkpoint is marked complete.
    pub marker: CommitMarker,
    /// The replica bucket per target region.
    pub replicas: BTreeMap<RegionId, BucketName>,
    /// Steps between two checkpoints.
    pub interval_steps: NonZeroU64,
    /// How many checkpoints to keep in every region (`keep-newest: 5`).
    pub keep_newest: Retention,
    /// How long one training step takes, to express RPO in steps.
    pub step_duration: Option<Duration>,
    /// GPUs the job runs on, to express RPO in GPU-hours.
    pub gpus: Option<NonZeroU32>,
    /// The size of one checkpoint (all its shards).
    pub checkpoint_size: Option<ByteSize>,
}

impl CheckpointLocation {
    pub(super) fn holds_bucket(&self, bucket: &str) -> bool {
        self.bucket.as_str() == bucket || self.replicas.values().any(|b| b.as_str() == bucket)
    }

    /// The training time between two checkpoints, when the step duration is known.
    pub fn checkpoint_period(&self) -> Option<Duration> {
        let step = self.step_duration?;
        let seconds = step.as_secs().checked_mul(self.interval_steps.get())?;
        Some(Duration::from_secs(seconds))
    }

    /// `lost` expressed in training steps, when the step duration is known.
    pub fn steps_in(&self, lost: Duration) -> Option<u64> {
        let step = self.step_duration?.get();
        if step.is_zero() {
            return None;
        }
        u64::try_from(lost.get().as_nanos() / step.as_nanos()).ok()
    }

    /// How long one checkpoint takes to reach a region at `bytes_per_second`,
    /// when its size is known.
    pub fn copy_time(&self, bytes_per_second: u64) -> Option<std::time::Duration> {
        let size = self.checkpoint_size?.bytes();
        (bytes_per_second > 0)
            .then(|| std::time::Duration::from_secs_f64(size as f64 / bytes_per_second as f64))
    }

    /// The most training an outage can lose when each checkpoint takes
    /// `bytes_per_second` to copy: a whole checkpoint period (the primary
    /// fails just before the next checkpoint) plus the copy of the newest.
    pub fn worst_loss(&self, bytes_per_second: u64) -> Option<std::time::Duration> {
        Some(self.checkpoint_period()?.get() + self.copy_time(bytes_per_second)?)
    }

    /// The largest `interval-steps` whose period plus `copy` keeps within
    /// `rpo` (0 when the copy alone takes longer), when the step duration
    /// is known.
    pub fn largest_interval_steps(&self, rpo: Duration, copy: std::time::Duration) -> Option<u64> {
        let step = self.step_duration?.get();
        if step.is_zero() {
            return None;
        }
        let room = rpo.get().saturating_sub(copy);
        u64::try_from(room.as_nanos() / step.as_nanos()).ok()
    }

    /// `lost` expressed in GPU-hours, when the GPU count is known.
    pub fn gpu_hours_in(&self, lost: Duration) -> Option<f64> {
        let gpus = self.gpus?.get();
        Some(lost.get().as_secs_f64() / 3600.0 * f64::from(gpus))
    }
}

/// The fan-out throughput to one region assumed for a checkpoint until one
/// is measured: 100 MiB/s. `lifeboat validate` judges checkpoint intervals
/// with it; `lifeboat plan` uses the measured copy times where they exist.
pub const ASSUMED_FANOUT_BYTES_PER_SECOND: u64 = 100 << 20;

/// Assets as written, before the cross-field checks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct AssetsSpec {
    #[serde(default)]
    pub models: Vec<Parsed<Model>>,
    #[serde(default)]
    pub buckets: Vec<Parsed<BucketAsset>>,
    #[serde(default)]
    pub datasets: Vec<Parsed<DatasetAsset>>,
    #[serde(default)]
    pub checkpoints: Vec<Parsed<CheckpointLocation>>,
}

impl AssetsSpec {
    pub fn into_assets(self) -> Assets {
        fn keep<T>(list: Vec<Parsed<T>>) -> Vec<T> {
            list.into_iter().filter_map(Parsed::into_option).collect()
        }
        Assets {
            models: keep(self.models),
            buckets: keep(self.buckets),
            datasets: keep(self.datasets),
            checkpoints: keep(self.checkpoints),
        }
    }
}

/// Everything a workload protects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assets {
    /// Vertex AI models.
    pub models: Vec<Model>,
    /// GCS buckets.
    pub buckets: Vec<BucketAsset>,
    /// BigQuery datasets.
    pub datasets: Vec<DatasetAsset>,
    /// Training checkpoint locations.
    pub checkpoints: Vec<CheckpointLocation>,
}

impl Assets {
    /// The number of assets of every kind.
    pub fn len(&self) -> usize {
        self.models.len() + self.buckets.len() + self.datasets.len() + self.checkpoints.len()
    }

    /// Whether the workload protects nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
