//! A Vertex AI stand-in: the REST methods Lifeboat calls (models get,
//! listVersions and copy; operations get; endpoints get, deployModel,
//! undeployModel, mutateDeployedModel, patch of the traffic split; predict),
//! every region on one server (the region is in each path), built on the
//! official `google-cloud-aiplatform-v1` request and response types so its
//! JSON cannot drift from the client's.
//!
//! It keeps Vertex AI's rules that matter to Lifeboat: a copy gets the
//! region's next version id and remembers its source, caller-chosen model
//! ids start with a letter, a model taking traffic cannot be undeployed
//! unless it is the last one on its endpoint, a traffic split sums to 100
//! over deployed models, and changes happen when their operation is done.
//! Version listings page two at a time. It can be told to fail calls, to
//! finish operations only after some polls or some time, to fail
//! operations, or to lose them, and can make regions dark
//! ([`VertexStandIn::dark_regions`]).
//!
//! A dark region's calls answer 503 UNAVAILABLE, with Google's error body:
//! `REGION-aiplatform.googleapis.com` is served by Google's global front
//! ends, which still accept the connection when the region behind them is
//! gone and answer that the service is unavailable (the status Google's
//! API design guide gives to "the service is currently unavailable", to be
//! retried). A dropped connection, what a dead host would give, reaches the
//! client as the same transient error, so 503 loses nothing and keeps the
//! answer readable in logs. Every path naming `locations/R` is refused, and
//! so is a copy whose source model is in a dark region (the target region
//! cannot read it).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Json, Response};
use google_cloud_aiplatform_v1::model;
use google_cloud_longrunning::model::Operation;
use google_cloud_wkt::{Any, Timestamp};
use lifeboat_shared::outage::DarkRegions;
use serde::de::DeserializeOwned;

use crate::standin_server::{LoopbackServer, Refusal, Reply, invalid, not_found, refuse};

/// Versions per listing page.
const PAGE_SIZE: usize = 2;

/// A change that happens when its operation is done.
#[derive(Clone, Debug)]
enum Change {
    Copy {
        region: String,
        model_id: String,
        version: Box<model::Model>,
    },
    Deploy {
        endpoint: String,
        deployed: Box<model::DeployedModel>,
    },
    Undeploy {
        endpoint: String,
        deployed_model_id: String,
    },
    Scale {
        endpoint: String,
        deployed_model_id: String,
        replicas: i32,
    },
}

/// An operation not yet reported done.
#[derive(Debug)]
struct Pending {
    change: Change,
    polls_left: u32,
    ready_at: Instant,
    failure: Option<String>,
}

/// How operations started from now on behave.
#[derive(Clone, Debug, Default)]
struct Faults {
    fail_calls: usize,
    polls: u32,
    delay: Duration,
    fail_operations: usize,
    failure_message: String,
    lose_operations: usize,
}

#[derive(Debug, Default)]
struct Registry {
    /// Versions per model name (`projects/P/locations/R/models/M`), in order.
    models: BTreeMap<String, Vec<model::Model>>,
    /// Endpoints by name.
    endpoints: BTreeMap<String, model::Endpoint>,
    pending: HashMap<String, Pending>,
    done: HashMap<String, Operation>,
    faults: Faults,
    next_id: u64,
    copy_calls: usize,
    most_pending: usize,
    /// The serving image of versions uploaded from now on, when set.
    serving_image: Option<String>,
}

type Shared = Arc<Mutex<Registry>>;

/// What every request reaches: the registry and the dark regions.
#[derive(Clone, Debug, Default)]
struct Served {
    registry: Shared,
    dark: DarkRegions,
}

/// The serving image of uploaded versions unless told otherwise.
const DEFAULT_SERVING_IMAGE: &str = "us-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.1-3:latest";

/// The stand-in, serving on a loopback port until dropped.
pub struct VertexStandIn {
    shared: Shared,
    dark: DarkRegions,
    server: LoopbackServer,
}

fn lock(shared: &Shared) -> MutexGuard<'_, Registry> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl VertexStandIn {
    /// Starts the stand-in on a free loopback port.
    pub async fn start() -> Self {
        let served = Served::default();
        let (shared, dark) = (served.registry.clone(), served.dark.clone());
        let router = Router::new().fallback(serve).with_state(served);
        let server = LoopbackServer::start(router).await;
        Self {
            shared,
            dark,
            server,
        }
    }

    /// The regions whose calls answer 503 UNAVAILABLE: darken one to make
    /// it unreachable (see the module's doc).
    pub fn dark_regions(&self) -> &DarkRegions {
        &self.dark
    }

    /// The `host:port` to give a client as its endpoint.
    pub fn host(&self) -> String {
        self.server.host()
    }

    /// Uploads a version of model `model_id` to `region` of `project`, as
    /// `UploadModel` does: the model's next version id, created at
    /// `created_at`, with its artifacts under `artifact_uri`. Returns the
    /// version id.
    pub fn upload(
        &self,
        project: &str,
        region: &str,
        model_id: &str,
        display_name: &str,
        artifact_uri: &str,
        created_at: Timestamp,
    ) -> String {
        let name = format!("projects/{project}/locations/{region}/models/{model_id}");
        let mut registry = lock(&self.shared);
        let image = registry
            .serving_image
            .clone()
            .unwrap_or_else(|| DEFAULT_SERVING_IMAGE.to_string());
        let version = model::Model::new()
            .set_display_name(display_name)
            .set_artifact_uri(artifact_uri)
            .set_version_create_time(created_at)
            .set_container_spec(model::ModelContainerSpec::new().set_image_uri(image));
        add_version(&mut registry, &name, version)
    }

    /// Versions uploaded from now on are served by `image_uri` (by default
    /// a prebuilt Vertex AI image in a multi-regional repository).
    pub fn set_serving_image(&self, image_uri: &str) {
        lock(&self.shared).serving_image = Some(image_uri.to_string());
    }

    /// Creates an endpoint with nothing deployed.
    pub fn create_endpoint(&self, project: &str, region: &str, endpoint_id: &str) {
        let name = format!("projects/{project}/locations/{region}/endpoints/{endpoint_id}");
        lock(&self.shared)
            .endpoints
            .insert(name.clone(), model::Endpoint::new().set_name(name));
    }

    /// Makes the next `count` calls fail with 503 UNAVAILABLE.
    pub fn fail_next_calls(&self, count: usize) {
        lock(&self.shared).faults.fail_calls = count;
    }

    /// Operations started from now on are done only after `polls` polls
    /// and `delay` (both 0 by default: done at the first poll).
    pub fn slow_operations(&self, polls: u32, delay: Duration) {
        let mut registry = lock(&self.shared);
        registry.faults.polls = polls;
        registry.faults.delay = delay;
    }

    /// The next `count` operations started finish with an INTERNAL error
    /// saying `message`, changing nothing.
    pub fn fail_next_operations(&self, count: usize, message: &str) {
        let mut registry = lock(&self.shared);
        registry.faults.fail_operations = count;
        registry.faults.failure_message = message.to_string();
    }

    /// The next `count` operations started are forgotten at once: polling
    /// them answers 404, and their change never happens.
    pub fn lose_next_operations(&self, count: usize) {
        lock(&self.shared).faults.lose_operations = count;
    }

    /// How many `models:copy` calls arrived (failed ones included).
    pub fn copy_calls(&self) -> usize {
        lock(&self.shared).copy_calls
    }

    /// The most operations that were ever running at once: what shows
    /// that a client runs its operations in parallel.
    pub fn most_operations_at_once(&self) -> usize {
        lock(&self.shared).most_pending
    }

    /// The version ids of a model in a region, in order (empty if absent).
    pub fn versions(&self, project: &str, region: &str, model_id: &str) -> Vec<String> {
        let name = format!("projects/{project}/locations/{region}/models/{model_id}");
        lock(&self.shared)
            .models
            .get(&name)
            .map(|versions| versions.iter().map(|v| v.version_id.clone()).collect())
            .unwrap_or_default()
    }

    /// An endpoint as it is now.
    pub fn endpoint(&self, project: &str, region: &str, endpoint_id: &str) -> model::Endpoint {
        let name = format!("projects/{project}/locations/{region}/endpoints/{endpoint_id}");
        lock(&self.shared)
            .endpoints
            .get(&name)
            .cloned()
            .unwrap_or_else(|| panic!("no endpoint {name} in the stand-in"))
    }
}

/// Adds `version` to the model `name` under its next version id.
fn add_version(registry: &mut Registry, name: &str, version: model::Model) -> String {
    let versions = registry.models.entry(name.to_string()).or_default();
    let id = (versions.len() + 1).to_string();
    let now = now();
    versions.push(
        version
            .set_name(name)
            .set_version_id(&id)
            .set_create_time(now)
            .set_update_time(now),
    );
    id
}

fn now() -> Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::new(
        i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        i32::try_from(since.subsec_nanos()).unwrap_or(0),
    )
    .unwrap_or_default()
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| invalid(format!("bad request body: {e}")))
}

/// Every request: the path names the method.
async fn serve(State(served): State<Served>, method: Method, uri: Uri, body: Bytes) -> Response {
    if let Some(region) = dark_region(&served.dark, uri.path(), &body) {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            format!("The service is currently unavailable in {region}."),
        )
        .into_response();
    }
    let mut registry = lock(&served.registry);
    if registry.faults.fail_calls > 0 {
        registry.faults.fail_calls -= 1;
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "the stand-in was told to fail".into(),
        )
        .into_response();
    }
    let path = uri.path();
    let Some(name) = path
        .strip_prefix("/v1/")
        .or_else(|| path.strip_prefix("/ui/"))
    else {
        return not_found(path).into_response();
    };
    let parts: Vec<&str> = name.split('/').collect();
    let result = match (method.clone(), parts.as_slice()) {
        (Method::GET, ["projects", _, "locations", _, "operations", _])
        | (Method::GET, ["projects", _, "locations", _, _, _, "operations", _]) => {
            get_operation(&mut registry, name)
        }
        (Method::POST, ["projects", project, "locations", region, "models:copy"]) => {
            copy(&mut registry, project, region, &body)
        }
        (Method::GET, ["projects", _, "locations", _, "models", model]) => {
            match model.split_once(':') {
                Some((_, "listVersions")) => list_versions(&registry, name, &uri),
                _ => get_model(&registry, name),
            }
        }
        (_, ["projects", _, "locations", _, "endpoints", endpoint]) => {
            let (endpoint_name, verb) = match endpoint.split_once(':') {
                Some((_, verb)) => (&name[..name.len() - verb.len() - 1], verb),
                None => (name, ""),
            };
            endpoint_call(&mut registry, &method, endpoint_name, verb, &body)
        }
        _ => Err(not_found(&format!("{method} {path}"))),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The dark region a request needs, if any: the one its path names, or
/// the region of a copy's source model.
fn dark_region(dark: &DarkRegions, path: &str, body: &Bytes) -> Option<String> {
    let region_after_locations = |text: &str| {
        let mut parts = text.split('/').skip_while(|part| *part != "locations");
        parts.nth(1).map(str::to_string)
    };
    let mut regions: Vec<String> = region_after_locations(path).into_iter().collect();
    if path.ends_with("models:copy")
        && let Ok(request) = serde_json::from_slice::<model::CopyModelRequest>(body)
    {
        regions.extend(region_after_locations(&request.source_model));
    }
    regions.into_iter().find(|region| dark.is_dark(region))
}

fn get_model(registry: &Registry, name: &str) -> Reply {
    let (model, version) = match name.split_once('@') {
        Some((model, version)) => (model, Some(version)),
        None => (name, None),
    };
    let versions = registry.models.get(model).ok_or_else(|| not_found(name))?;
    let found = match version {
        Some(id) => versions.iter().find(|v| v.version_id == id),
        None => versions.last(),
    };
    found
        .map(|v| Json(v.clone()).into_response())
        .ok_or_else(|| not_found(name))
}

fn list_versions(registry: &Registry, name: &str, uri: &Uri) -> Reply {
    let model = name.trim_end_matches(":listVersions");
    let versions = registry.models.get(model).ok_or_else(|| not_found(model))?;
    let offset: usize = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("pageToken="))
        .and_then(|token| token.parse().ok())
        .unwrap_or(0);
    let page: Vec<model::Model> = versions
        .iter()
        .skip(offset)
        .take(PAGE_SIZE)
        .cloned()
        .collect();
    let next = offset + page.len();
    let response = model::ListModelVersionsResponse::new()
        .set_models(page)
        .set_next_page_token(if next < versions.len() {
            next.to_string()
        } else {
            String::new()
        });
    Ok(Json(response).into_response())
}

/// Starts an operation in `region` whose change happens when it is done.
fn start(registry: &mut Registry, project: &str, region: &str, change: Change) -> Response {
    registry.next_id += 1;
    let name = format!(
        "projects/{project}/locations/{region}/operations/{}",
        registry.next_id
    );
    let faults = &mut registry.faults;
    let failure = (faults.fail_operations > 0).then(|| {
        faults.fail_operations -= 1;
        faults.failure_message.clone()
    });
    let lost = faults.lose_operations > 0;
    if lost {
        faults.lose_operations -= 1;
    } else {
        let pending = Pending {
            change,
            polls_left: faults.polls,
            ready_at: Instant::now() + faults.delay,
            failure,
        };
        registry.pending.insert(name.clone(), pending);
        registry.most_pending = registry.most_pending.max(registry.pending.len());
    }
    Json(Operation::new().set_name(name)).into_response()
}

fn get_operation(registry: &mut Registry, name: &str) -> Reply {
    if let Some(done) = registry.done.get(name) {
        return Ok(Json(done.clone()).into_response());
    }
    let pending = registry
        .pending
        .get_mut(name)
        .ok_or_else(|| not_found(&format!("operation {name}")))?;
    if pending.polls_left > 0 || Instant::now() < pending.ready_at {
        pending.polls_left = pending.polls_left.saturating_sub(1);
        return Ok(Json(Operation::new().set_name(name)).into_response());
    }
    let pending = registry.pending.remove(name).expect("checked above");
    let operation = Operation::new().set_name(name).set_done(true);
    let operation = match pending.failure {
        Some(message) => operation.set_error(
            google_cloud_rpc::model::Status::default()
                .set_code(13)
                .set_message(message),
        ),
        None => match apply(registry, pending.change) {
            Ok(response) => operation.set_response(response),
            Err(message) => operation.set_error(
                google_cloud_rpc::model::Status::default()
                    .set_code(9)
                    .set_message(message),
            ),
        },
    };
    registry.done.insert(name.to_string(), operation.clone());
    Ok(Json(operation).into_response())
}

/// Makes a done operation's change, and returns its response.
fn apply(registry: &mut Registry, change: Change) -> Result<Any, String> {
    let any = |r: Result<Any, google_cloud_wkt::AnyError>| r.map_err(|e| e.to_string());
    match change {
        Change::Copy {
            region,
            model_id,
            version,
        } => {
            let project = version
                .name
                .split('/')
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let name = format!("projects/{project}/locations/{region}/models/{model_id}");
            let version_id = add_version(registry, &name, *version);
            any(Any::from_msg(
                &model::CopyModelResponse::new()
                    .set_model(name)
                    .set_model_version_id(version_id),
            ))
        }
        Change::Deploy { endpoint, deployed } => {
            let current = registry
                .endpoints
                .get_mut(&endpoint)
                .ok_or("endpoint deleted")?;
            if current.traffic_split.values().all(|share| *share == 0) {
                current.traffic_split = HashMap::from([(deployed.id.clone(), 100)]);
            }
            current.deployed_models.push((*deployed).clone());
            any(Any::from_msg(
                &model::DeployModelResponse::new().set_deployed_model(*deployed),
            ))
        }
        Change::Undeploy {
            endpoint,
            deployed_model_id,
        } => {
            let current = registry
                .endpoints
                .get_mut(&endpoint)
                .ok_or("endpoint deleted")?;
            current
                .deployed_models
                .retain(|d| d.id != deployed_model_id);
            current.traffic_split.remove(&deployed_model_id);
            any(Any::from_msg(&model::UndeployModelResponse::new()))
        }
        Change::Scale {
            endpoint,
            deployed_model_id,
            replicas,
        } => {
            let current = registry
                .endpoints
                .get_mut(&endpoint)
                .ok_or("endpoint deleted")?;
            let deployed = current
                .deployed_models
                .iter_mut()
                .find(|d| d.id == deployed_model_id)
                .ok_or("deployed model undeployed meanwhile")?;
            let resources = deployed
                .dedicated_resources()
                .cloned()
                .unwrap_or_default()
                .set_min_replica_count(replicas)
                .set_max_replica_count(replicas);
            *deployed = deployed.clone().set_dedicated_resources(resources);
            any(Any::from_msg(
                &model::MutateDeployedModelResponse::new().set_deployed_model(deployed.clone()),
            ))
        }
    }
}

fn copy(registry: &mut Registry, project: &str, region: &str, body: &Bytes) -> Reply {
    registry.copy_calls += 1;
    let request: model::CopyModelRequest = parse(body)?;
    let source = registry.models.get(
        request
            .source_model
            .split_once('@')
            .map_or(request.source_model.as_str(), |(model, _)| model),
    );
    let version = request.source_model.split_once('@').map(|(_, v)| v);
    let found = source.and_then(|versions| match version {
        Some(id) => versions.iter().find(|v| v.version_id == id),
        None => versions.last(),
    });
    let found = found.ok_or_else(|| not_found(&request.source_model))?;
    let parent = format!("projects/{project}/locations/{region}");
    let model_id = match (request.model_id(), request.parent_model()) {
        (Some(id), None) => {
            if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
                return Err(invalid(format!(
                    "model id {id:?}: the first character must be a lowercase letter"
                )));
            }
            if registry
                .models
                .contains_key(&format!("{parent}/models/{id}"))
            {
                return Err(refuse(
                    StatusCode::CONFLICT,
                    "ALREADY_EXISTS",
                    format!("{parent}/models/{id} already exists"),
                ));
            }
            id.clone()
        }
        (None, Some(parent_model)) => {
            let Some(id) = parent_model.strip_prefix(&format!("{parent}/models/")) else {
                return Err(invalid(format!(
                    "parent model {parent_model} is not in {parent}"
                )));
            };
            if !registry.models.contains_key(parent_model) {
                return Err(not_found(parent_model));
            }
            id.to_string()
        }
        _ => return Err(invalid("exactly one of modelId and parentModel".into())),
    };
    let source_name = format!("{}@{}", found.name, found.version_id);
    let version = found
        .clone()
        .set_original_model_info(model::model::OriginalModelInfo::new().set_model(source_name))
        .set_version_create_time(now());
    let change = Change::Copy {
        region: region.to_string(),
        model_id,
        version: Box::new(version),
    };
    Ok(start(registry, project, region, change))
}

fn endpoint_call(
    registry: &mut Registry,
    method: &Method,
    name: &str,
    verb: &str,
    body: &Bytes,
) -> Reply {
    let current = registry
        .endpoints
        .get(name)
        .cloned()
        .ok_or_else(|| not_found(name))?;
    let parts: Vec<&str> = name.split('/').collect();
    let (project, region) = (parts[1], parts[3]);
    let deployed = |id: &str| current.deployed_models.iter().find(|d| d.id == id);
    match (method, verb) {
        (&Method::GET, "") => Ok(Json(current).into_response()),
        (&Method::PATCH, "") => {
            let changed: model::Endpoint = parse(body)?;
            if let Some(unknown) = changed
                .traffic_split
                .keys()
                .find(|id| deployed(id).is_none())
            {
                return Err(invalid(format!(
                    "deployed model {unknown} is not on {name}"
                )));
            }
            let total: i32 = changed.traffic_split.values().sum();
            if total != 100 {
                return Err(invalid(format!("traffic split sums to {total}, not 100")));
            }
            let updated = current.set_traffic_split(changed.traffic_split);
            registry.endpoints.insert(name.to_string(), updated.clone());
            Ok(Json(updated).into_response())
        }
        (&Method::POST, "deployModel") => {
            let request: model::DeployModelRequest = parse(body)?;
            let wanted = request.deployed_model.unwrap_or_default();
            let (model_name, version) = wanted
                .model
                .split_once('@')
                .unwrap_or((wanted.model.as_str(), ""));
            let versions = registry.models.get(model_name);
            let found = versions
                .and_then(|v| v.iter().find(|m| m.version_id == version))
                .ok_or_else(|| not_found(&wanted.model))?;
            if wanted
                .dedicated_resources()
                .is_none_or(|r| r.machine_spec.is_none())
            {
                return Err(invalid("dedicatedResources.machineSpec is required".into()));
            }
            registry.next_id += 1;
            let deployed = wanted
                .clone()
                .set_id(registry.next_id.to_string())
                .set_model(model_name)
                .set_model_version_id(&found.version_id)
                .set_display_name(&found.display_name);
            let change = Change::Deploy {
                endpoint: name.to_string(),
                deployed: Box::new(deployed),
            };
            Ok(start(registry, project, region, change))
        }
        (&Method::POST, "undeployModel") => {
            let request: model::UndeployModelRequest = parse(body)?;
            let id = request.deployed_model_id;
            deployed(&id).ok_or_else(|| not_found(&format!("{name} deployed model {id}")))?;
            // The last deployed model may go whatever its share (Vertex
            // AI leaves the traffic split empty).
            let last = current.deployed_models.len() == 1;
            if !last
                && current
                    .traffic_split
                    .get(&id)
                    .is_some_and(|share| *share > 0)
            {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "FAILED_PRECONDITION",
                    format!("deployed model {id} still takes traffic on {name}"),
                ));
            }
            let change = Change::Undeploy {
                endpoint: name.to_string(),
                deployed_model_id: id,
            };
            Ok(start(registry, project, region, change))
        }
        (&Method::POST, "mutateDeployedModel") => {
            let request: model::MutateDeployedModelRequest = parse(body)?;
            let wanted = request.deployed_model.unwrap_or_default();
            deployed(&wanted.id)
                .ok_or_else(|| not_found(&format!("{name} deployed model {}", wanted.id)))?;
            let replicas = wanted
                .dedicated_resources()
                .map(|r| r.min_replica_count)
                .ok_or_else(|| invalid("dedicatedResources is required".into()))?;
            let change = Change::Scale {
                endpoint: name.to_string(),
                deployed_model_id: wanted.id,
                replicas,
            };
            Ok(start(registry, project, region, change))
        }
        (&Method::POST, "predict") => predict(&current, body),
        _ => Err(not_found(&format!("{method} {name}:{verb}"))),
    }
}

/// Answers with the version taking the most traffic: one prediction per
/// instance, each naming that version.
fn predict(endpoint: &model::Endpoint, body: &Bytes) -> Reply {
    let request: model::PredictRequest = parse(body)?;
    let serving = endpoint
        .traffic_split
        .iter()
        .filter(|(_, share)| **share > 0)
        .max_by(|(a_id, a), (b_id, b)| a.cmp(b).then(b_id.cmp(a_id)))
        .and_then(|(id, _)| endpoint.deployed_models.iter().find(|d| &d.id == id))
        .ok_or_else(|| {
            refuse(
                StatusCode::BAD_REQUEST,
                "FAILED_PRECONDITION",
                format!("{} serves no model", endpoint.name),
            )
        })?;
    let predictions = request
        .instances
        .iter()
        .map(|_| serde_json::json!({"modelVersion": serving.model_version_id}))
        .collect::<Vec<_>>();
    let response = model::PredictResponse::new()
        .set_predictions(predictions)
        .set_deployed_model_id(&serving.id)
        .set_model(&serving.model)
        .set_model_version_id(&serving.model_version_id);
    Ok(Json(response).into_response())
}
