//! [`ModelRegistry`] on Vertex AI, through Google's official client
//! (`google-cloud-aiplatform-v1`, REST): a `ModelService` and an
//! `EndpointService` per region, each talking to that region's endpoint
//! (`https://{region}-aiplatform.googleapis.com`), or all to one server
//! (a stand-in) when [`VERTEX_EMULATOR_VAR`] names one.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use google_cloud_aiplatform_v1::client::{EndpointService, ModelService};
use google_cloud_aiplatform_v1::model;
use google_cloud_gax::error::rpc::Code;
use google_cloud_longrunning::model::Operation as LongRunning;
use google_cloud_longrunning::model::operation::Result as LongRunningResult;

use super::{
    Completed, DeployedModel, Deployment, Endpoint, EndpointRef, ModelError, ModelRef,
    ModelRegistry, ModelVersion, Operation, OperationState, RegisteredModel, compare_versions,
    operation_region,
};
use crate::gcp::{ApiEndpoint, Credentials};
use crate::topology::RegionId;

/// The variable naming a Vertex AI stand-in (`host:port` or URL) that
/// serves every region; unset, each region's production endpoint is used.
pub const VERTEX_EMULATOR_VAR: &str = "VERTEX_AI_EMULATOR_HOST";

/// Where the regions' Vertex AI APIs are.
#[derive(Clone, Debug)]
pub enum VertexEndpoints {
    /// Each region's production endpoint, with Application Default
    /// Credentials (found by the client itself).
    Regional,
    /// One server for every region (the region is in each request's path).
    Single(ApiEndpoint),
}

impl VertexEndpoints {
    /// A stand-in if [`VERTEX_EMULATOR_VAR`] is set, else production.
    pub fn from_env() -> Self {
        match std::env::var(VERTEX_EMULATOR_VAR) {
            Ok(host) if !host.is_empty() => Self::Single(ApiEndpoint::emulator(&host)),
            _ => Self::Regional,
        }
    }

    fn url(&self, region: &str) -> String {
        match self {
            Self::Regional => format!("https://{region}-aiplatform.googleapis.com"),
            Self::Single(endpoint) => endpoint.base_url.clone(),
        }
    }

    fn anonymous(&self) -> bool {
        matches!(
            self,
            Self::Single(ApiEndpoint {
                credentials: Credentials::Anonymous,
                ..
            })
        )
    }
}

/// The two clients of one region.
#[derive(Clone, Debug)]
struct RegionClients {
    models: ModelService,
    endpoints: EndpointService,
}

/// Models and endpoints on Vertex AI. Build once per process and share: the
/// clients of a region are built on its first use and kept.
#[derive(Debug)]
pub struct VertexRegistry {
    endpoints: VertexEndpoints,
    clients: Mutex<HashMap<String, RegionClients>>,
}

fn backend(context: String, source: google_cloud_gax::error::Error) -> ModelError {
    ModelError::Backend {
        context,
        source: Box::new(source),
    }
}

/// Sorts a call's failure: not found, refused for good, or worth a retry.
fn classify(
    context: String,
    what: &dyn std::fmt::Display,
    error: google_cloud_gax::error::Error,
) -> ModelError {
    match error.status().map(|s| (s.code, s.message.clone())) {
        Some((Code::NotFound, _)) => ModelError::NotFound {
            what: what.to_string(),
        },
        Some((
            Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::PermissionDenied
            | Code::AlreadyExists
            | Code::OutOfRange
            | Code::Unimplemented,
            message,
        )) => ModelError::Rejected { context, message },
        _ => backend(context, error),
    }
}

fn timestamp(at: Option<&google_cloud_wkt::Timestamp>) -> Option<DateTime<Utc>> {
    at.and_then(|t| DateTime::from_timestamp(t.seconds(), u32::try_from(t.nanos()).ok()?))
}

/// A count or share as the API's `int32`, saturating.
fn as_i32(count: u32) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
}

/// The last segment of a resource name: `.../models/M` → `M`.
fn last_segment(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

impl VertexRegistry {
    /// A registry reaching Vertex AI at `endpoints`.
    pub fn new(endpoints: VertexEndpoints) -> Self {
        Self {
            endpoints,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The clients of `region`, built on first use.
    async fn clients(&self, region: &str) -> Result<RegionClients, ModelError> {
        if let Some(clients) = self
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(region)
        {
            return Ok(clients.clone());
        }
        let url = self.endpoints.url(region);
        let context = || format!("connect to Vertex AI for {region} at {url}");
        let credentials = || google_cloud_auth::credentials::anonymous::Builder::new().build();
        let mut models = ModelService::builder().with_endpoint(&url);
        let mut endpoints = EndpointService::builder().with_endpoint(&url);
        if self.endpoints.anonymous() {
            models = models.with_credentials(credentials());
            endpoints = endpoints.with_credentials(credentials());
        }
        let clients = RegionClients {
            models: models.build().await.map_err(|e| ModelError::Backend {
                context: context(),
                source: Box::new(e),
            })?,
            endpoints: endpoints.build().await.map_err(|e| ModelError::Backend {
                context: context(),
                source: Box::new(e),
            })?,
        };
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(region.to_string(), clients.clone());
        Ok(clients)
    }
}

/// A long-running operation as Lifeboat sees it.
fn operation(long_running: LongRunning, context: &str) -> Result<Operation, ModelError> {
    let state = match long_running.result {
        _ if !long_running.done => OperationState::Running,
        None => OperationState::Succeeded(Completed::Done),
        Some(LongRunningResult::Error(status)) => {
            OperationState::Failed(format!("{:?}: {}", status.code, status.message))
        }
        Some(LongRunningResult::Response(any)) => {
            let decode = |e: google_cloud_wkt::AnyError| ModelError::Backend {
                context: format!("{context}: operation {}", long_running.name),
                source: Box::new(e),
            };
            let type_url = any.type_url().unwrap_or_default();
            if type_url.ends_with(".CopyModelResponse") {
                let response: model::CopyModelResponse = any.to_msg().map_err(decode)?;
                OperationState::Succeeded(Completed::Copied {
                    model_id: last_segment(&response.model).to_string(),
                    version_id: response.model_version_id,
                })
            } else if type_url.ends_with(".DeployModelResponse") {
                let response: model::DeployModelResponse = any.to_msg().map_err(decode)?;
                OperationState::Succeeded(Completed::Deployed {
                    deployed_model_id: response.deployed_model.map(|d| d.id).unwrap_or_default(),
                })
            } else {
                OperationState::Succeeded(Completed::Done)
            }
        }
        Some(_) => OperationState::Succeeded(Completed::Done),
    };
    Ok(Operation {
        name: long_running.name,
        state,
    })
}

fn deployed_model(deployed: model::DeployedModel) -> DeployedModel {
    let resources = deployed.dedicated_resources();
    let machine_type = resources
        .and_then(|r| r.machine_spec.as_ref())
        .map(|m| m.machine_type.clone())
        .unwrap_or_default();
    let replicas = resources
        .map(|r| u32::try_from(r.min_replica_count).unwrap_or(0))
        .unwrap_or(0);
    DeployedModel {
        model_id: last_segment(&deployed.model).to_string(),
        version_id: deployed.model_version_id,
        id: deployed.id,
        machine_type,
        replicas,
    }
}

fn resources(machine_type: &str, replicas: u32) -> model::DedicatedResources {
    model::DedicatedResources::new()
        .set_machine_spec(model::MachineSpec::new().set_machine_type(machine_type))
        .set_min_replica_count(as_i32(replicas))
        .set_max_replica_count(as_i32(replicas))
}

#[async_trait]
impl ModelRegistry for VertexRegistry {
    async fn model(&self, model: &ModelRef) -> Result<Option<RegisteredModel>, ModelError> {
        let clients = self.clients(model.region.as_str()).await?;
        let context = format!("list the versions of {model}");
        let mut versions = Vec::new();
        let mut display_name = String::new();
        let mut page_token = String::new();
        loop {
            let page = match clients
                .models
                .list_model_versions()
                .set_name(model.to_string())
                .set_page_token(page_token)
                .send()
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    return match classify(context.clone(), model, error) {
                        ModelError::NotFound { .. } => Ok(None),
                        other => Err(other),
                    };
                }
            };
            for version in page.models {
                display_name.clone_from(&version.display_name);
                versions.push(ModelVersion {
                    created_at: timestamp(version.version_create_time.as_ref()),
                    artifact_uri: version.artifact_uri,
                    image_uri: version
                        .container_spec
                        .map(|c| c.image_uri)
                        .unwrap_or_default(),
                    source_version: version
                        .original_model_info
                        .and_then(|o| o.model.split_once('@').map(|(_, v)| v.to_string())),
                    version_id: version.version_id,
                });
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        versions.sort_by(|a, b| compare_versions(&a.version_id, &b.version_id));
        Ok(Some(RegisteredModel {
            model: model.clone(),
            display_name,
            versions,
        }))
    }

    async fn start_copy(
        &self,
        source: &ModelRef,
        version_id: &str,
        region: &RegionId,
    ) -> Result<Operation, ModelError> {
        let target = source.in_region(region);
        let context = format!("copy {source} version {version_id} to {region}");
        let exists = self.model(&target).await?.is_some();
        let clients = self.clients(region.as_str()).await?;
        let request = clients
            .models
            .copy_model()
            .set_parent(target.parent())
            .set_source_model(format!("{source}@{version_id}"));
        // The first copy creates the model under the copy id (the source's
        // own when a caller may choose it), so every region's copy has the
        // same id; later ones add versions to it.
        let request = if exists {
            request.set_parent_model(target.to_string())
        } else {
            request.set_model_id(&target.model_id)
        };
        let what = format!("{source} version {version_id}");
        let started = request
            .send()
            .await
            .map_err(|e| classify(context.clone(), &what, e))?;
        operation(started, &context)
    }

    async fn operation(&self, name: &str) -> Result<Operation, ModelError> {
        let context = format!("poll operation {name}");
        let region = operation_region(name).ok_or_else(|| ModelError::Rejected {
            context: context.clone(),
            message: "not an operation name of the form projects/P/locations/R/...".to_string(),
        })?;
        let clients = self.clients(region).await?;
        let what = format!("operation {name}");
        let polled = clients
            .models
            .get_operation()
            .set_name(name)
            .send()
            .await
            .map_err(|e| classify(context.clone(), &what, e))?;
        operation(polled, &context)
    }

    async fn endpoint(&self, endpoint: &EndpointRef) -> Result<Endpoint, ModelError> {
        let clients = self.clients(endpoint.region.as_str()).await?;
        let found = clients
            .endpoints
            .get_endpoint()
            .set_name(endpoint.to_string())
            .send()
            .await
            .map_err(|e| classify(format!("get {endpoint}"), endpoint, e))?;
        let mut deployed: Vec<DeployedModel> = found
            .deployed_models
            .into_iter()
            .map(deployed_model)
            .collect();
        deployed.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Endpoint {
            endpoint: endpoint.clone(),
            deployed,
            traffic: found
                .traffic_split
                .into_iter()
                .map(|(id, share)| (id, u32::try_from(share).unwrap_or(0)))
                .collect(),
        })
    }

    async fn start_deploy(
        &self,
        endpoint: &EndpointRef,
        deployment: &Deployment,
    ) -> Result<Operation, ModelError> {
        let clients = self.clients(endpoint.region.as_str()).await?;
        let context = format!(
            "deploy {} version {} on {endpoint}",
            deployment.model, deployment.version_id
        );
        let deployed = model::DeployedModel::new()
            .set_model(format!("{}@{}", deployment.model, deployment.version_id))
            .set_dedicated_resources(resources(&deployment.machine_type, deployment.replicas));
        let started = clients
            .endpoints
            .deploy_model()
            .set_endpoint(endpoint.to_string())
            .set_deployed_model(deployed)
            .send()
            .await
            .map_err(|e| classify(context.clone(), endpoint, e))?;
        operation(started, &context)
    }

    async fn start_undeploy(
        &self,
        endpoint: &EndpointRef,
        deployed_model_id: &str,
    ) -> Result<Operation, ModelError> {
        let clients = self.clients(endpoint.region.as_str()).await?;
        let context = format!("undeploy {deployed_model_id} from {endpoint}");
        let what = format!("{endpoint} deployed model {deployed_model_id}");
        let started = clients
            .endpoints
            .undeploy_model()
            .set_endpoint(endpoint.to_string())
            .set_deployed_model_id(deployed_model_id)
            .send()
            .await
            .map_err(|e| classify(context.clone(), &what, e))?;
        operation(started, &context)
    }

    async fn start_set_replicas(
        &self,
        endpoint: &EndpointRef,
        deployed_model_id: &str,
        replicas: u32,
    ) -> Result<Operation, ModelError> {
        let clients = self.clients(endpoint.region.as_str()).await?;
        let context = format!("scale {deployed_model_id} on {endpoint} to {replicas}");
        let what = format!("{endpoint} deployed model {deployed_model_id}");
        let deployed = model::DeployedModel::new()
            .set_id(deployed_model_id)
            .set_dedicated_resources(
                model::DedicatedResources::new()
                    .set_min_replica_count(as_i32(replicas))
                    .set_max_replica_count(as_i32(replicas)),
            );
        let mask = google_cloud_wkt::FieldMask::default().set_paths([
            "dedicated_resources.min_replica_count",
            "dedicated_resources.max_replica_count",
        ]);
        let started = clients
            .endpoints
            .mutate_deployed_model()
            .set_endpoint(endpoint.to_string())
            .set_deployed_model(deployed)
            .set_update_mask(mask)
            .send()
            .await
            .map_err(|e| classify(context.clone(), &what, e))?;
        operation(started, &context)
    }

    async fn set_traffic(
        &self,
        endpoint: &EndpointRef,
        split: &BTreeMap<String, u32>,
    ) -> Result<Endpoint, ModelError> {
        let clients = self.clients(endpoint.region.as_str()).await?;
        let context = format!("set the traffic split of {endpoint}");
        let changed = model::Endpoint::new()
            .set_name(endpoint.to_string())
            .set_traffic_split(split.iter().map(|(id, share)| (id.clone(), as_i32(*share))));
        clients
            .endpoints
            .update_endpoint()
            .set_endpoint(changed)
            .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["traffic_split"]))
            .send()
            .await
            .map_err(|e| classify(context, endpoint, e))?;
        self.endpoint(endpoint).await
    }
}
