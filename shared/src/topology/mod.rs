//! The topology of a deployment: one YAML file naming the Google Cloud project,
//! its regions and their roles, and the workloads with their recovery targets,
//! deployment pattern and the assets (models, buckets, datasets, checkpoints)
//! each one protects, and the drills that prove each can survive losing a
//! region.
//!
//! [`Topology::load`] reads and validates the file and reports every problem
//! it finds, each with `file:line:column` and the field path. The rules are in
//! [`validate`]. A [`Topology`] value therefore always describes a deployment
//! that Lifeboat can run.

mod assets;
mod drill;
mod duration;
mod names;
mod problem;
mod size;
#[cfg(test)]
mod tests;
pub mod validate;
mod workload;
mod yaml;

use std::path::Path;

use serde::Deserialize;

pub use assets::{
    ASSUMED_FANOUT_BYTES_PER_SECOND, Assets, BucketAsset, CheckpointLocation, CommitMarker,
    DatasetAsset, DeletePolicy, GoldenRequest, Model, Retention, StorageClass, Tolerance,
};
pub use drill::{
    DEFAULT_MAX_DURATION, Drill, DrillKind, Guardrails, LONGEST_MAX_DURATION, Schedule, Window,
};
pub use duration::{Duration, DurationError};
pub use names::{BucketName, DatasetId, Id, ObjectPrefix, ProjectId, RegionId};
pub use problem::{Problem, TopologyErrors};
pub use size::{ByteSize, ByteSizeError};
pub use workload::{Failback, Pattern, Workload, WorkloadClass};

use yaml::Parsed;

/// The role a region plays in the deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegionRole {
    /// Serves traffic and holds the source of every asset; exactly one.
    Primary,
    /// Holds replicas and, for warm standbys, a deployed model at low scale.
    Standby,
    /// Holds only replicated data and models; nothing is deployed until failover.
    PilotLight,
}

impl RegionRole {
    /// The role as written in the topology file.
    pub fn as_str(self) -> &'static str {
        match self {
            RegionRole::Primary => "primary",
            RegionRole::Standby => "standby",
            RegionRole::PilotLight => "pilot-light",
        }
    }
}

impl std::fmt::Display for RegionRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A region of the deployment and its role.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Region {
    /// The Google Cloud region.
    pub id: RegionId,
    /// What the region is for.
    pub role: RegionRole,
}

/// The file as written, before the cross-field checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TopologyFile {
    project: ProjectId,
    regions: Vec<Parsed<Region>>,
    #[serde(default)]
    workloads: Vec<Parsed<workload::WorkloadSpec>>,
    #[serde(default)]
    drills: Vec<Parsed<Drill>>,
}

/// A validated deployment topology.
#[derive(Clone, Debug)]
pub struct Topology {
    project: ProjectId,
    regions: Vec<Region>,
    primary: RegionId,
    workloads: Vec<Workload>,
    drills: Vec<Drill>,
    warnings: Vec<Problem>,
}

impl Topology {
    /// Reads and validates the topology file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Topology, TopologyErrors> {
        let path = path.as_ref();
        let file_name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Topology::parse(&text, &file_name),
            Err(error) => Err(TopologyErrors::new(vec![Problem {
                file: file_name,
                line: 0,
                column: 0,
                path: String::new(),
                message: format!("cannot read: {error}"),
            }])),
        }
    }

    /// Validates topology `text`; problems are reported against `file_name`.
    pub fn parse(text: &str, file_name: &str) -> Result<Topology, TopologyErrors> {
        let located = |l: yaml::Located| Problem {
            file: file_name.to_owned(),
            line: l.position.line,
            column: l.position.column,
            path: l.path,
            message: l.message,
        };
        let root = yaml::load(text).map_err(|l| TopologyErrors::new(vec![located(l)]))?;
        let recorder = yaml::Recorder::default();
        let file: Option<TopologyFile> = yaml::deserialize(&root, &recorder);
        let mut problems: Vec<Problem> =
            recorder.into_problems().into_iter().map(located).collect();
        let Some(file) = file else {
            return Err(TopologyErrors::new(problems));
        };
        let index = yaml::PositionIndex::build(&root);
        let checked = validate::check(&file);
        let locate = |(path, message): (String, String)| {
            let position = index.find(&path);
            Problem {
                file: file_name.to_owned(),
                line: position.line,
                column: position.column,
                path,
                message,
            }
        };
        problems.extend(checked.problems.into_iter().map(locate));
        let mut warnings: Vec<Problem> = checked.warnings.into_iter().map(locate).collect();
        warnings.sort_by_key(|p| (p.line, p.column));
        if !problems.is_empty() {
            problems.sort_by_key(|p| (p.line, p.column));
            return Err(TopologyErrors::new(problems));
        }
        Topology::from_checked(file, warnings).ok_or_else(|| {
            TopologyErrors::new(vec![Problem {
                file: file_name.to_owned(),
                line: 1,
                column: 1,
                path: "regions".into(),
                message: "the topology has no primary region".into(),
            }])
        })
    }

    /// Builds the topology from a file that passed every check.
    fn from_checked(file: TopologyFile, warnings: Vec<Problem>) -> Option<Topology> {
        let regions: Vec<Region> = file
            .regions
            .into_iter()
            .filter_map(|r| r.into_option())
            .collect();
        let primary = regions
            .iter()
            .find(|r| r.role == RegionRole::Primary)?
            .id
            .clone();
        let workloads = file
            .workloads
            .into_iter()
            .filter_map(|w| w.into_option())
            .map(workload::WorkloadSpec::into_workload)
            .collect();
        let drills = file
            .drills
            .into_iter()
            .filter_map(|d| d.into_option())
            .collect();
        Some(Topology {
            project: file.project,
            regions,
            primary,
            workloads,
            drills,
            warnings,
        })
    }

    /// What validation found allowed but likely wrong, in file order.
    pub fn warnings(&self) -> &[Problem] {
        &self.warnings
    }

    /// The Google Cloud project.
    pub fn project(&self) -> &ProjectId {
        &self.project
    }

    /// Every region, in file order.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The region with `id`, if the topology has it.
    pub fn region(&self, id: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.id.as_str() == id)
    }

    /// The primary region: it serves and holds the source of every asset.
    pub fn primary(&self) -> &RegionId {
        &self.primary
    }

    /// Every region a workload can fail over to (warm standbys and pilot
    /// lights), in file order.
    pub fn standby_regions(&self) -> impl Iterator<Item = &Region> {
        self.regions
            .iter()
            .filter(|r| r.role != RegionRole::Primary)
    }

    /// Every workload, in file order.
    pub fn workloads(&self) -> &[Workload] {
        &self.workloads
    }

    /// The workload with `id`.
    pub fn workload(&self, id: &str) -> Option<&Workload> {
        self.workloads.iter().find(|w| w.id.as_str() == id)
    }

    /// Every drill, in file order.
    pub fn drills(&self) -> &[Drill] {
        &self.drills
    }

    /// The drill with `id`.
    pub fn drill(&self, id: &str) -> Option<&Drill> {
        self.drills.iter().find(|d| d.id.as_str() == id)
    }

    /// The workloads that protect `bucket`, as a bucket asset or as the
    /// bucket of a checkpoint location, in the primary or as a replica.
    pub fn workloads_for_bucket(&self, bucket: &str) -> Vec<&Workload> {
        self.workloads
            .iter()
            .filter(|w| {
                w.assets.buckets.iter().any(|b| b.holds_bucket(bucket))
                    || w.assets.checkpoints.iter().any(|c| c.holds_bucket(bucket))
            })
            .collect()
    }

    /// The checkpoint location (and its workload) whose bucket, in any region,
    /// and prefix hold `object`: how a commit marker is traced to its training
    /// run. Locations never overlap, so there is at most one.
    pub fn checkpoint_for_object(
        &self,
        bucket: &str,
        object: &str,
    ) -> Option<(&Workload, &CheckpointLocation)> {
        self.workloads.iter().find_map(|w| {
            w.assets
                .checkpoints
                .iter()
                .find(|c| c.holds_bucket(bucket) && c.prefix.contains(object))
                .map(|c| (w, c))
        })
    }

    /// The workloads that serve `model`, matched against the asset id, the
    /// Vertex AI model id and the display name.
    pub fn workloads_using_model(&self, model: &str) -> Vec<&Workload> {
        self.workloads
            .iter()
            .filter(|w| w.assets.models.iter().any(|m| m.is_named(model)))
            .collect()
    }

    /// Every bucket the topology names, once, with the region it lives in:
    /// sources and checkpoint buckets in the primary, replicas in theirs.
    pub fn buckets(&self) -> Vec<(&BucketName, &RegionId)> {
        let primary = self.primary();
        let mut buckets = Vec::new();
        for assets in self.workloads.iter().map(|w| &w.assets) {
            for bucket in &assets.buckets {
                buckets.push((&bucket.source, primary));
                buckets.extend(bucket.replicas.iter().map(|(region, name)| (name, region)));
            }
            for location in &assets.checkpoints {
                buckets.push((&location.bucket, primary));
                buckets.extend(
                    location
                        .replicas
                        .iter()
                        .map(|(region, name)| (name, region)),
                );
            }
        }
        buckets.sort();
        buckets.dedup();
        buckets
    }

    /// How many assets of every kind the workloads protect together.
    pub fn asset_count(&self) -> usize {
        self.workloads.iter().map(|w| w.assets.len()).sum()
    }
}
