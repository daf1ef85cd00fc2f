//! [`ModelRegistry`] for the local cloud: every region's models, endpoints
//! and operations are documents in the state store (so they survive a
//! restart and any process sharing the store sees them). Operations finish
//! when they start: the change is applied, and the operation is recorded as
//! done for [`ModelRegistry::operation`] to report.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use serde::de::DeserializeOwned;

use super::{
    Completed, DeployedModel, Deployment, Endpoint, EndpointRef, ModelError, ModelRef,
    ModelRegistry, ModelVersion, Operation, OperationState, RegisteredModel, compare_versions,
    operation_region,
};
use crate::outage::DarkRegions;
use crate::state::{Precondition, StateError, StateStore, update};
use crate::topology::RegionId;

/// The collection of models, one document per model and region.
pub const MODELS: &str = "local-models";
/// The collection of endpoints, one document per endpoint.
pub const ENDPOINTS: &str = "local-endpoints";
/// The collection of finished operations.
pub const OPERATIONS: &str = "local-operations";

/// How many times a read-modify-write is retried after losing a race.
const UPDATE_ATTEMPTS: usize = 16;

/// Models and endpoints of every region, kept in a state store.
#[derive(Clone, Debug)]
pub struct LocalRegistry {
    state: Arc<dyn StateStore>,
    /// Regions whose registry is unreachable (a regional outage).
    dark: DarkRegions,
}

fn backend(context: String, source: StateError) -> ModelError {
    ModelError::Backend {
        context,
        source: Box::new(source),
    }
}

fn model_doc(model: &ModelRef) -> String {
    format!("{}:{}:{}", model.project, model.region, model.model_id)
}

fn endpoint_doc(endpoint: &EndpointRef) -> String {
    format!(
        "{}:{}:{}",
        endpoint.project, endpoint.region, endpoint.endpoint_id
    )
}

/// A fresh numeric id, as Vertex gives deployed models and operations.
fn numeric_id() -> String {
    (uuid::Uuid::new_v4().as_u64_pair().0 >> 1).to_string()
}

impl LocalRegistry {
    /// A registry kept in `state`.
    pub fn new(state: Arc<dyn StateStore>) -> Self {
        Self {
            state,
            dark: DarkRegions::default(),
        }
    }

    /// The same registry, failing every call addressed to a region of
    /// `dark` as an unreachable regional endpoint would (transiently).
    pub fn with_dark_regions(self, dark: DarkRegions) -> Self {
        Self { dark, ..self }
    }

    /// Fails with a transient error when `region` is dark.
    fn reach(&self, region: &str, call: impl FnOnce() -> String) -> Result<(), ModelError> {
        self.dark.reach(region, call).map_err(|unreachable| {
            let context = unreachable.call.clone();
            ModelError::Backend {
                context,
                source: Box::new(unreachable),
            }
        })
    }

    /// Adds `version` to `model` (creating the model with `display_name`),
    /// as an upload to the registry does; replaces a version of the same id.
    pub async fn upload(
        &self,
        model: &ModelRef,
        display_name: &str,
        version: ModelVersion,
    ) -> Result<(), ModelError> {
        self.reach(model.region.as_str(), || format!("upload to {model}"))?;
        let display_name = display_name.to_string();
        update(
            self.state.as_ref(),
            MODELS,
            &model_doc(model),
            UPDATE_ATTEMPTS,
            |stored| {
                let mut registered = stored.unwrap_or_else(|| RegisteredModel {
                    model: model.clone(),
                    display_name: display_name.clone(),
                    versions: Vec::new(),
                });
                registered
                    .versions
                    .retain(|v| v.version_id != version.version_id);
                registered.versions.push(version.clone());
                registered
                    .versions
                    .sort_by(|a, b| compare_versions(&a.version_id, &b.version_id));
                Ok(registered)
            },
        )
        .await
        .map(drop)
    }

    /// Creates `endpoint` with nothing deployed; does nothing if it exists.
    pub async fn create_endpoint(&self, endpoint: &EndpointRef) -> Result<(), ModelError> {
        self.reach(endpoint.region.as_str(), || format!("create {endpoint}"))?;
        let id = endpoint_doc(endpoint);
        update(
            self.state.as_ref(),
            ENDPOINTS,
            &id,
            UPDATE_ATTEMPTS,
            |stored| {
                Ok::<_, ModelError>(stored.unwrap_or_else(|| Endpoint {
                    endpoint: endpoint.clone(),
                    deployed: Vec::new(),
                    traffic: BTreeMap::new(),
                }))
            },
        )
        .await
        .map(drop)
    }

    /// Reads one document as `T`.
    async fn read<T: DeserializeOwned>(
        &self,
        collection: &str,
        id: &str,
        what: &str,
    ) -> Result<Option<T>, ModelError> {
        let Some(document) = self
            .state
            .get(collection, id)
            .await
            .map_err(|e| backend(format!("read {what}"), e))?
        else {
            return Ok(None);
        };
        serde_json::from_value(document.value)
            .map(Some)
            .map_err(|e| ModelError::Backend {
                context: format!("read {what}"),
                source: Box::new(e),
            })
    }

    /// Records a finished operation in `region` and returns it.
    async fn finished(
        &self,
        project: &str,
        region: &RegionId,
        completed: Completed,
    ) -> Result<Operation, ModelError> {
        let id = numeric_id();
        let operation = Operation {
            name: format!("projects/{project}/locations/{region}/operations/{id}"),
            state: OperationState::Succeeded(completed),
        };
        let value = serde_json::to_value(&operation).map_err(|e| ModelError::Backend {
            context: format!("record operation {}", operation.name),
            source: Box::new(e),
        })?;
        self.state
            .put(
                OPERATIONS,
                &format!("{project}:{region}:{id}"),
                &value,
                Precondition::MustNotExist,
            )
            .await
            .map_err(|e| backend(format!("record operation {}", operation.name), e))?;
        Ok(operation)
    }

    /// Applies `change` to an existing endpoint.
    async fn change_endpoint<F>(
        &self,
        endpoint: &EndpointRef,
        mut change: F,
    ) -> Result<Endpoint, ModelError>
    where
        F: FnMut(&mut Endpoint) -> Result<(), ModelError> + Send,
    {
        let what = endpoint.to_string();
        update(
            self.state.as_ref(),
            ENDPOINTS,
            &endpoint_doc(endpoint),
            UPDATE_ATTEMPTS,
            |stored| {
                let mut current: Endpoint =
                    stored.ok_or_else(|| ModelError::NotFound { what: what.clone() })?;
                change(&mut current)?;
                Ok(current)
            },
        )
        .await
    }
}

#[async_trait]
impl ModelRegistry for LocalRegistry {
    async fn model(&self, model: &ModelRef) -> Result<Option<RegisteredModel>, ModelError> {
        self.reach(model.region.as_str(), || format!("get {model}"))?;
        self.read(MODELS, &model_doc(model), &model.to_string())
            .await
    }

    async fn start_copy(
        &self,
        source: &ModelRef,
        version_id: &str,
        region: &RegionId,
    ) -> Result<Operation, ModelError> {
        // The copy is asked of the target region, which reads the source.
        self.reach(region.as_str(), || {
            format!("copy {source} version {version_id} to {region}")
        })?;
        let not_found = || ModelError::NotFound {
            what: format!("{source} version {version_id}"),
        };
        let registered = self.model(source).await?.ok_or_else(not_found)?;
        let version = registered.version(version_id).ok_or_else(not_found)?;
        let target = source.in_region(region);
        let display_name = registered.display_name.clone();
        let id = model_doc(&target);
        let copied = update(
            self.state.as_ref(),
            MODELS,
            &id,
            UPDATE_ATTEMPTS,
            |stored| {
                let mut copy = stored.unwrap_or_else(|| RegisteredModel {
                    model: target.clone(),
                    display_name: display_name.clone(),
                    versions: Vec::new(),
                });
                copy.versions.push(ModelVersion {
                    version_id: copy.next_version_id(),
                    created_at: Some(Utc::now()),
                    source_version: Some(version_id.to_string()),
                    ..version.clone()
                });
                Ok::<_, ModelError>(copy)
            },
        )
        .await?;
        let created = copied.versions.last().map(|v| v.version_id.clone());
        let completed = Completed::Copied {
            model_id: target.model_id,
            version_id: created.unwrap_or_default(),
        };
        self.finished(&source.project, region, completed).await
    }

    async fn operation(&self, name: &str) -> Result<Operation, ModelError> {
        let not_found = || ModelError::NotFound {
            what: format!("operation {name}"),
        };
        let parts: Vec<&str> = name.split('/').collect();
        let (Some(region), [_, project, _, _, _, id]) = (operation_region(name), parts.as_slice())
        else {
            return Err(not_found());
        };
        self.reach(region, || format!("get operation {name}"))?;
        self.read(OPERATIONS, &format!("{project}:{region}:{id}"), name)
            .await?
            .ok_or_else(not_found)
    }

    async fn endpoint(&self, endpoint: &EndpointRef) -> Result<Endpoint, ModelError> {
        self.reach(endpoint.region.as_str(), || format!("get {endpoint}"))?;
        self.read(ENDPOINTS, &endpoint_doc(endpoint), &endpoint.to_string())
            .await?
            .ok_or_else(|| ModelError::NotFound {
                what: endpoint.to_string(),
            })
    }

    async fn start_deploy(
        &self,
        endpoint: &EndpointRef,
        deployment: &Deployment,
    ) -> Result<Operation, ModelError> {
        self.reach(endpoint.region.as_str(), || format!("deploy on {endpoint}"))?;
        let model = &deployment.model;
        let present = self
            .model(model)
            .await?
            .is_some_and(|m| m.version(&deployment.version_id).is_some());
        if !present {
            return Err(ModelError::NotFound {
                what: format!("{model} version {}", deployment.version_id),
            });
        }
        let id = numeric_id();
        self.change_endpoint(endpoint, |current| {
            current.deployed.push(DeployedModel {
                id: id.clone(),
                model_id: model.model_id.clone(),
                version_id: deployment.version_id.clone(),
                machine_type: deployment.machine_type.clone(),
                replicas: deployment.replicas,
            });
            if current.traffic.values().all(|share| *share == 0) {
                current.traffic = BTreeMap::from([(id.clone(), 100)]);
            }
            Ok(())
        })
        .await?;
        let completed = Completed::Deployed {
            deployed_model_id: id,
        };
        self.finished(&endpoint.project, &endpoint.region, completed)
            .await
    }

    async fn start_undeploy(
        &self,
        endpoint: &EndpointRef,
        deployed_model_id: &str,
    ) -> Result<Operation, ModelError> {
        self.reach(endpoint.region.as_str(), || {
            format!("undeploy {deployed_model_id} from {endpoint}")
        })?;
        self.change_endpoint(endpoint, |current| {
            if current.deployed_model(deployed_model_id).is_none() {
                return Err(ModelError::NotFound {
                    what: format!("{endpoint} deployed model {deployed_model_id}"),
                });
            }
            // As in Vertex AI, the last deployed model may go whatever its
            // share: the endpoint is left serving nothing.
            let last = current.deployed.len() == 1;
            if !last
                && current
                    .traffic
                    .get(deployed_model_id)
                    .is_some_and(|s| *s > 0)
            {
                return Err(ModelError::Rejected {
                    context: format!("undeploy {deployed_model_id} from {endpoint}"),
                    message: "it still takes traffic; move its traffic first".to_string(),
                });
            }
            current.deployed.retain(|d| d.id != deployed_model_id);
            current.traffic.remove(deployed_model_id);
            Ok(())
        })
        .await?;
        self.finished(&endpoint.project, &endpoint.region, Completed::Done)
            .await
    }

    async fn start_set_replicas(
        &self,
        endpoint: &EndpointRef,
        deployed_model_id: &str,
        replicas: u32,
    ) -> Result<Operation, ModelError> {
        self.reach(endpoint.region.as_str(), || {
            format!("scale {deployed_model_id} on {endpoint}")
        })?;
        self.change_endpoint(endpoint, |current| {
            let deployed = current
                .deployed
                .iter_mut()
                .find(|d| d.id == deployed_model_id)
                .ok_or_else(|| ModelError::NotFound {
                    what: format!("{endpoint} deployed model {deployed_model_id}"),
                })?;
            deployed.replicas = replicas;
            Ok(())
        })
        .await?;
        self.finished(&endpoint.project, &endpoint.region, Completed::Done)
            .await
    }

    async fn set_traffic(
        &self,
        endpoint: &EndpointRef,
        split: &BTreeMap<String, u32>,
    ) -> Result<Endpoint, ModelError> {
        self.reach(endpoint.region.as_str(), || {
            format!("set the traffic of {endpoint}")
        })?;
        self.change_endpoint(endpoint, |current| {
            super::check_traffic(current, split)?;
            current.traffic = split.clone();
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::conformance;
    use crate::state::local::LocalStateStore;

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = LocalStateStore::open(dir.path()).await.expect("open");
        let dark = DarkRegions::default();
        let registry = LocalRegistry::new(Arc::new(state)).with_dark_regions(dark.clone());
        let fixture = conformance::Fixture::new("local-project");
        for (version, created) in [("1", "2026-01-01T00:00:00Z"), ("2", "2026-01-02T00:00:00Z")] {
            registry
                .upload(
                    &fixture.source(),
                    conformance::DISPLAY_NAME,
                    conformance::version(version, created),
                )
                .await
                .expect("upload");
        }
        registry
            .create_endpoint(&fixture.endpoint())
            .await
            .expect("create endpoint");
        conformance::run_all(&registry, &fixture).await;
        conformance::a_dark_region_is_unreachable(&registry, &fixture, &dark).await;
    }
}
