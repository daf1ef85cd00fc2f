//! The model registry and endpoints, as model-copy and failover need them:
//! read a model's versions in a region, copy a version from the primary to
//! another region, deploy and undeploy versions on an endpoint, set their
//! replica counts and the endpoint's traffic split. Slow changes are
//! long-running operations, followed to their end by [`wait`].
//!
//! Implemented by Vertex AI ([`vertex`]) and by a registry kept in the state
//! store for the local cloud ([`local`]); [`conformance`] is the suite both
//! must pass. [`standby`] keeps a warm standby endpoint serving a version
//! (model-copy after a copy, failover and the local cloud before a move).

pub mod conformance;
pub mod local;
pub mod standby;
pub mod vertex;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::topology::RegionId;

/// A model in one region's registry: `projects/P/locations/R/models/M`.
/// Lifeboat keeps the same model id in every region, so a model is traced
/// across regions by its id alone.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelRef {
    /// The project.
    pub project: String,
    /// The region whose registry holds it.
    pub region: RegionId,
    /// The model id.
    pub model_id: String,
}

impl ModelRef {
    /// Model `model_id` of `project` in `region`.
    pub fn new(project: impl Into<String>, region: RegionId, model_id: impl Into<String>) -> Self {
        Self {
            project: project.into(),
            region,
            model_id: model_id.into(),
        }
    }

    /// The model as Lifeboat copies it to `region`: itself in its own
    /// region; elsewhere the same id, or [`copy_model_id`] of an id a copy
    /// cannot be given.
    pub fn in_region(&self, region: &RegionId) -> Self {
        if *region == self.region {
            return self.clone();
        }
        Self {
            project: self.project.clone(),
            region: region.clone(),
            model_id: copy_model_id(&self.model_id),
        }
    }

    /// The region's parent path, `projects/P/locations/R`.
    pub fn parent(&self) -> String {
        format!("projects/{}/locations/{}", self.project, self.region)
    }
}

/// What a copy made by caller-chosen id may be called: Vertex AI takes up
/// to 63 of `[a-z0-9_-]`, not starting with a digit or hyphen.
const COPY_ID_MAX_LEN: usize = 63;

/// The id Lifeboat gives a model's copies in other regions: the model's
/// own id when Vertex AI lets a caller choose it, so ids line up across
/// regions; for an id Vertex AI generated at upload (digits only, which a
/// caller may not choose), `lifeboat-` and that id.
pub fn copy_model_id(model_id: &str) -> String {
    if is_choosable_model_id(model_id) {
        model_id.to_string()
    } else {
        format!("lifeboat-{model_id}")
    }
}

/// Whether a caller may give a model `model_id` (Vertex AI's rule).
pub fn is_choosable_model_id(model_id: &str) -> bool {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    model_id.len() <= COPY_ID_MAX_LEN
        && model_id.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && model_id.chars().all(allowed)
}

/// Whether `model_id` can name a model in Vertex AI: one it generated
/// (digits) or one a caller chose.
pub fn is_model_id(model_id: &str) -> bool {
    let generated = !model_id.is_empty() && model_id.chars().all(|c| c.is_ascii_digit());
    generated || is_choosable_model_id(model_id)
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/models/{}", self.parent(), self.model_id)
    }
}

/// An endpoint in one region: `projects/P/locations/R/endpoints/E`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EndpointRef {
    /// The project.
    pub project: String,
    /// The region serving it.
    pub region: RegionId,
    /// The endpoint id.
    pub endpoint_id: String,
}

impl EndpointRef {
    /// Endpoint `endpoint_id` of `project` in `region`.
    pub fn new(
        project: impl Into<String>,
        region: RegionId,
        endpoint_id: impl Into<String>,
    ) -> Self {
        Self {
            project: project.into(),
            region,
            endpoint_id: endpoint_id.into(),
        }
    }
}

impl fmt::Display for EndpointRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "projects/{}/locations/{}/endpoints/{}",
            self.project, self.region, self.endpoint_id
        )
    }
}

/// One version of a model as a region's registry holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelVersion {
    /// The version id (`1`, `2`...), the same in every region for a copy.
    pub version_id: String,
    /// When this version was created in this region.
    pub created_at: Option<DateTime<Utc>>,
    /// Where its artifacts are (`gs://...`), empty for none.
    pub artifact_uri: String,
    /// The serving container image, empty for none.
    pub image_uri: String,
    /// For a copy, the version id of the model it was copied from (ids are
    /// given in order of arrival in each region, so they may differ).
    pub source_version: Option<String>,
}

/// A model in one region with every version it holds there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredModel {
    /// The model.
    pub model: ModelRef,
    /// Its display name.
    pub display_name: String,
    /// Its versions, oldest (lowest id) first.
    pub versions: Vec<ModelVersion>,
}

impl RegisteredModel {
    /// The version with id `version_id`, if this region holds it.
    pub fn version(&self, version_id: &str) -> Option<&ModelVersion> {
        self.versions.iter().find(|v| v.version_id == version_id)
    }

    /// The version copied from version `source_version` of the source
    /// model, if this region holds one.
    pub fn copy_of(&self, source_version: &str) -> Option<&ModelVersion> {
        self.versions
            .iter()
            .find(|v| v.source_version.as_deref() == Some(source_version))
    }

    /// The id a new version gets here: one more than the highest.
    pub fn next_version_id(&self) -> String {
        let highest = self
            .versions
            .iter()
            .filter_map(|v| v.version_id.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        (highest + 1).to_string()
    }
}

/// Orders version ids numerically when both are numbers (Vertex's are),
/// else as text: `9` < `10`.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        _ => a.cmp(b),
    }
}

/// A model version deployed on an endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployedModel {
    /// The deployed model's id on its endpoint (what traffic is split by).
    pub id: String,
    /// The model id.
    pub model_id: String,
    /// The version deployed.
    pub version_id: String,
    /// The machine type it runs on (`n1-standard-4`), empty for none.
    pub machine_type: String,
    /// How many replicas serve it (minimum and maximum alike).
    pub replicas: u32,
}

/// An endpoint with what it serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The endpoint.
    pub endpoint: EndpointRef,
    /// The models deployed on it, by deployed model id.
    pub deployed: Vec<DeployedModel>,
    /// Percent of traffic per deployed model id; sums to 100 when set.
    pub traffic: BTreeMap<String, u32>,
}

impl Endpoint {
    /// The deployed model with `id`, if any.
    pub fn deployed_model(&self, id: &str) -> Option<&DeployedModel> {
        self.deployed.iter().find(|d| d.id == id)
    }

    /// The deployed model taking the largest share of traffic (the lowest
    /// id among equals): the version the endpoint serves.
    pub fn serving(&self) -> Option<&DeployedModel> {
        self.traffic
            .iter()
            .filter(|(_, share)| **share > 0)
            .max_by(|(a_id, a), (b_id, b)| a.cmp(b).then(b_id.cmp(a_id)))
            .and_then(|(id, _)| self.deployed_model(id))
    }
}

/// What to deploy: a version of a model, on which machine, at how many
/// replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployment {
    /// The model, in the endpoint's region.
    pub model: ModelRef,
    /// The version to deploy.
    pub version_id: String,
    /// The machine type; empty lets the backend choose (local only).
    pub machine_type: String,
    /// The replica count (minimum and maximum).
    pub replicas: u32,
}

/// A long-running operation, as started or as last polled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Its full name (`projects/P/locations/R/.../operations/O`).
    pub name: String,
    /// Where it stands.
    pub state: OperationState,
}

/// Where a long-running operation stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationState {
    /// Not done yet.
    Running,
    /// Done and succeeded, with what it produced.
    Succeeded(Completed),
    /// Done and failed, with the operation's error.
    Failed(String),
}

/// What a successful operation produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Completed {
    /// A copy: the model and version now in the target region.
    Copied {
        /// The model id in the target region.
        model_id: String,
        /// The version id created there.
        version_id: String,
    },
    /// A deployment: the new deployed model's id.
    Deployed {
        /// The deployed model id on the endpoint.
        deployed_model_id: String,
    },
    /// Anything else (undeploy, replica change): nothing to report.
    Done,
}

/// The region an operation name belongs to:
/// `projects/P/locations/R/...` → `R`.
pub fn operation_region(name: &str) -> Option<&str> {
    let mut parts = name.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("projects"), Some(_), Some("locations"), Some(region)) if !region.is_empty() => {
            Some(region)
        }
        _ => None,
    }
}

/// What can go wrong with the registry. Every variant names the model,
/// endpoint or operation, and so its region.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model, version or endpoint does not exist in that region.
    #[error("{what}: not found")]
    NotFound {
        /// The missing model, version or endpoint.
        what: String,
    },
    /// The request was refused for a reason a retry cannot fix.
    #[error("{context}: rejected: {message}")]
    Rejected {
        /// The operation and resource.
        context: String,
        /// The server's explanation.
        message: String,
    },
    /// A long-running operation finished with an error.
    #[error("{context}: operation {operation} failed: {message}")]
    OperationFailed {
        /// What the operation was doing.
        context: String,
        /// The operation's name.
        operation: String,
        /// The operation's error.
        message: String,
    },
    /// A long-running operation is no longer known to the service.
    #[error("{context}: operation {operation} was lost (no longer known to the service)")]
    OperationLost {
        /// What the operation was doing.
        context: String,
        /// The operation's name.
        operation: String,
    },
    /// A long-running operation did not finish within the polling bound.
    #[error("{context}: operation {operation} still running after {polls} polls over {waited:?}")]
    Unfinished {
        /// What the operation was doing.
        context: String,
        /// The operation's name.
        operation: String,
        /// How many times it was polled.
        polls: u32,
        /// How long it was waited for.
        waited: Duration,
    },
    /// The backend could not be reached or failed; worth a retry.
    #[error("{context}: {source}")]
    Backend {
        /// The operation and resource.
        context: String,
        /// The underlying failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ModelError {
    /// True when retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ModelError::Backend { .. }
                | ModelError::OperationLost { .. }
                | ModelError::Unfinished { .. }
        )
    }
}

impl From<crate::state::StateError> for ModelError {
    /// A state store failure under a registry kept there (the local one).
    fn from(error: crate::state::StateError) -> Self {
        ModelError::Backend {
            context: "the registry's state".to_string(),
            source: Box::new(error),
        }
    }
}

/// The registry and endpoints as Lifeboat uses them. Implemented by Vertex
/// AI ([`vertex::VertexRegistry`]) and locally ([`local::LocalRegistry`]).
#[async_trait]
pub trait ModelRegistry: Send + Sync + fmt::Debug {
    /// The model with every version its region holds; `None` if the region
    /// has no model with that id.
    async fn model(&self, model: &ModelRef) -> Result<Option<RegisteredModel>, ModelError>;

    /// Starts copying version `version_id` of `source` into `region`: as a
    /// new version of the model there if the region has it, else as a new
    /// model with the same id. The copy gets the region's next version id
    /// and remembers `version_id` as its [`ModelVersion::source_version`].
    async fn start_copy(
        &self,
        source: &ModelRef,
        version_id: &str,
        region: &RegionId,
    ) -> Result<Operation, ModelError>;

    /// Polls the operation named `name`; [`ModelError::NotFound`] if the
    /// service no longer knows it.
    async fn operation(&self, name: &str) -> Result<Operation, ModelError>;

    /// The endpoint with its deployed models and traffic split.
    async fn endpoint(&self, endpoint: &EndpointRef) -> Result<Endpoint, ModelError>;

    /// Starts deploying a model version on `endpoint`, with no traffic
    /// unless the endpoint serves nothing else.
    async fn start_deploy(
        &self,
        endpoint: &EndpointRef,
        deployment: &Deployment,
    ) -> Result<Operation, ModelError>;

    /// Starts undeploying `deployed_model_id`, which must take no traffic.
    async fn start_undeploy(
        &self,
        endpoint: &EndpointRef,
        deployed_model_id: &str,
    ) -> Result<Operation, ModelError>;

    /// Starts changing the replica count of `deployed_model_id`.
    async fn start_set_replicas(
        &self,
        endpoint: &EndpointRef,
        deployed_model_id: &str,
        replicas: u32,
    ) -> Result<Operation, ModelError>;

    /// Replaces the endpoint's traffic split (percent per deployed model id,
    /// summing to 100) and returns the endpoint as it now is.
    async fn set_traffic(
        &self,
        endpoint: &EndpointRef,
        split: &BTreeMap<String, u32>,
    ) -> Result<Endpoint, ModelError>;
}

/// How long an operation is polled: exponential waits from `initial`,
/// doubling up to `max`, for at most `limit` in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
    /// The total time after which waiting stops.
    pub limit: Duration,
}

impl Default for Backoff {
    /// 1 s doubling to 30 s, for 20 minutes (a copy of a large model takes
    /// minutes; a deployment up to about 15).
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            limit: Duration::from_secs(20 * 60),
        }
    }
}

impl Backoff {
    /// The wait after `wait`: doubled, capped at `max`.
    pub fn next(&self, wait: Duration) -> Duration {
        wait.saturating_mul(2).min(self.max)
    }
}

/// Follows `operation` until it is done and returns what it produced: a
/// failed operation becomes [`ModelError::OperationFailed`] with its error,
/// one the service forgot [`ModelError::OperationLost`], one still running
/// at the bound [`ModelError::Unfinished`]. `context` says what it does.
pub async fn wait(
    registry: &dyn ModelRegistry,
    operation: Operation,
    backoff: &Backoff,
    context: &str,
) -> Result<Completed, ModelError> {
    let started = tokio::time::Instant::now();
    let mut current = operation;
    let mut delay = backoff.initial;
    let mut polls = 0;
    loop {
        match current.state {
            OperationState::Succeeded(completed) => return Ok(completed),
            OperationState::Failed(message) => {
                return Err(ModelError::OperationFailed {
                    context: context.to_string(),
                    operation: current.name,
                    message,
                });
            }
            OperationState::Running => {}
        }
        let waited = started.elapsed();
        if waited >= backoff.limit {
            return Err(ModelError::Unfinished {
                context: context.to_string(),
                operation: current.name,
                polls,
                waited,
            });
        }
        tokio::time::sleep(delay.min(backoff.limit - waited)).await;
        delay = backoff.next(delay);
        polls += 1;
        current = match registry.operation(&current.name).await {
            Ok(polled) => polled,
            Err(ModelError::NotFound { .. }) => {
                return Err(ModelError::OperationLost {
                    context: context.to_string(),
                    operation: current.name,
                });
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, operation = %current.name, "polling failed; polling again");
                current
            }
            Err(error) => return Err(error),
        };
    }
}

/// Checks a traffic split for `endpoint` as Vertex AI does: every key is a
/// model deployed there and the shares sum to 100.
pub(crate) fn check_traffic(
    endpoint: &Endpoint,
    split: &BTreeMap<String, u32>,
) -> Result<(), ModelError> {
    let context = || format!("set the traffic split of {}", endpoint.endpoint);
    if let Some(unknown) = split
        .keys()
        .find(|id| endpoint.deployed_model(id).is_none())
    {
        return Err(ModelError::Rejected {
            context: context(),
            message: format!("deployed model {unknown} is not deployed on the endpoint"),
        });
    }
    let total: u32 = split.values().sum();
    if total != 100 {
        return Err(ModelError::Rejected {
            context: context(),
            message: format!("the shares sum to {total}, not 100"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_keep_choosable_ids_and_rename_generated_ones() {
        let primary = RegionId::new("us-central1").expect("region");
        let standby = RegionId::new("us-east1").expect("region");
        let custom = ModelRef::new("p", primary.clone(), "recsys-ranker");
        assert_eq!(custom.in_region(&standby).model_id, "recsys-ranker");
        let generated = ModelRef::new("p", primary.clone(), "4512398712");
        let copy = generated.in_region(&standby);
        assert_eq!(copy.model_id, "lifeboat-4512398712");
        assert_eq!(copy.region, standby);
        assert_eq!(generated.in_region(&primary), generated, "its own region");
        assert_eq!(
            copy.in_region(&RegionId::new("europe-west1").expect("region"))
                .model_id,
            "lifeboat-4512398712",
            "a copy's id is kept"
        );
        assert_eq!(copy_model_id("_x"), "_x");
        for id in ["4512398712", "recsys-ranker", "_x", &"a".repeat(63)] {
            assert!(is_model_id(id), "{id}");
        }
        for id in ["", "-x", "Ranker", "ranker v7", "9a", &"a".repeat(64)] {
            assert!(!is_model_id(id), "{id}");
        }
    }
}
