//! The local cloud's models: at startup every model of the topology is put
//! into the local registry as a team would have it on Vertex AI (registered
//! in the primary and copied to every standby, deployed in the primary at
//! serving size and in warm standbys at standby size, only registered in
//! pilot-light regions), and what a region's endpoint serves now.

use lifeboat_shared::models::local::LocalRegistry;
use lifeboat_shared::models::standby::{WarmStandby, keep_serving};
use lifeboat_shared::models::{
    Backoff, Deployment, EndpointRef, ModelError, ModelRef, ModelRegistry, ModelVersion,
    RegisteredModel, wait,
};
use lifeboat_shared::topology::{Model, Pattern, RegionId, RegionRole, Topology, Workload};
use tracing::Instrument;

/// The machine type the local registry records for deployments of a model
/// whose topology records none.
const LOCAL_MACHINE_TYPE: &str = "n1-standard-4";

/// The version a model gets when the topology pins none.
const FIRST_VERSION: &str = "1";

/// Registers and deploys every model of `topology`; what is already there
/// is kept, so a restart changes nothing (a standby scaled up by a failover
/// stays scaled up).
pub async fn seed(topology: &Topology, registry: &LocalRegistry) -> Result<(), ModelError> {
    let backoff = Backoff::default();
    for workload in topology.workloads() {
        for model in &workload.assets.models {
            let span = tracing::info_span!("seed", workload = %workload.id, model = %model.id);
            seed_model(topology, registry, workload, model, &backoff)
                .instrument(span)
                .await?;
        }
    }
    Ok(())
}

async fn seed_model(
    topology: &Topology,
    registry: &LocalRegistry,
    workload: &Workload,
    model: &Model,
    backoff: &Backoff,
) -> Result<(), ModelError> {
    let project = topology.project().as_str();
    let primary = topology.primary();
    let version = model.version.as_deref().unwrap_or(FIRST_VERSION);
    let source = ModelRef::new(project, primary.clone(), model.model_id.clone());
    let display_name = model.display_name.as_deref().unwrap_or(model.id.as_str());
    if registry
        .model(&source)
        .await?
        .is_none_or(|m| m.version(version).is_none())
    {
        let uploaded = ModelVersion {
            version_id: version.to_string(),
            created_at: Some(chrono::Utc::now()),
            artifact_uri: String::new(),
            image_uri: String::new(),
            source_version: None,
        };
        registry.upload(&source, display_name, uploaded).await?;
    }
    let primary_endpoint = model
        .endpoints
        .get(primary)
        .map(|id| EndpointRef::new(project, primary.clone(), id.clone()));
    if let Some(endpoint) = &primary_endpoint {
        registry.create_endpoint(endpoint).await?;
        let current = registry.endpoint(endpoint).await?;
        if !current
            .deployed
            .iter()
            .any(|d| d.model_id == model.model_id)
        {
            let deployment = Deployment {
                model: source.clone(),
                version_id: version.to_string(),
                machine_type: model
                    .machine_type
                    .clone()
                    .unwrap_or_else(|| LOCAL_MACHINE_TYPE.to_string()),
                replicas: model.serving_replicas.get(),
            };
            let operation = registry.start_deploy(endpoint, &deployment).await?;
            wait(registry, operation, backoff, "deploy in the primary").await?;
            tracing::info!(%endpoint, version, "deployed in the primary");
        }
    }
    for region in topology.regions().iter().filter(|r| &r.id != primary) {
        let Some(endpoint_id) = model.endpoints.get(&region.id) else {
            continue;
        };
        let here = copy_into(registry, &source, version, &region.id, backoff).await?;
        let endpoint = EndpointRef::new(project, region.id.clone(), endpoint_id.clone());
        registry.create_endpoint(&endpoint).await?;
        let replicas = match (workload.pattern, region.role) {
            (_, RegionRole::PilotLight) | (Pattern::PilotLight, _) => 0,
            (Pattern::ActiveActive, _) => model.serving_replicas.get(),
            (Pattern::ActivePassive, _) => model.standby_replicas,
        };
        if replicas == 0 {
            continue;
        }
        let standby = WarmStandby {
            endpoint,
            model: &here,
            source_version: version,
            replicas,
            machine_type: model.machine_type.as_deref(),
            primary_endpoint: primary_endpoint.clone(),
        };
        let serving = keep_serving(registry, &standby, backoff).await?;
        tracing::info!(region = %region.id, serves = serving.source_version(), "standby serves");
    }
    Ok(())
}

/// The model in `region` holding a copy of `version` of `source`, copied
/// now if it is not there yet.
async fn copy_into(
    registry: &LocalRegistry,
    source: &ModelRef,
    version: &str,
    region: &RegionId,
    backoff: &Backoff,
) -> Result<RegisteredModel, ModelError> {
    let target = source.in_region(region);
    if let Some(present) = registry
        .model(&target)
        .await?
        .filter(|m| m.copy_of(version).is_some())
    {
        return Ok(present);
    }
    let operation = registry.start_copy(source, version, region).await?;
    wait(registry, operation, backoff, "copy to a standby").await?;
    registry
        .model(&target)
        .await?
        .ok_or_else(|| ModelError::NotFound {
            what: format!("{target} after its copy"),
        })
}

/// What an endpoint serves: the deployed model taking the most traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Serving {
    /// The deployed model's id on the endpoint.
    pub deployed_model_id: String,
    /// The version id in the endpoint's region.
    pub version_id: String,
    /// The primary's version it is a copy of (the same as `version_id` in
    /// the primary): the version to compare across regions.
    pub source_version: String,
    /// Its replica count.
    pub replicas: u32,
}

/// What `model`'s endpoint in `region` serves now; `None` when the model has
/// no endpoint there or nothing takes its traffic.
pub async fn serving(
    topology: &Topology,
    registry: &dyn ModelRegistry,
    model: &Model,
    region: &RegionId,
) -> Result<Option<Serving>, ModelError> {
    let project = topology.project().as_str();
    let Some(endpoint_id) = model.endpoints.get(region) else {
        return Ok(None);
    };
    let endpoint = EndpointRef::new(project, region.clone(), endpoint_id.clone());
    let current = match registry.endpoint(&endpoint).await {
        Ok(current) => current,
        Err(ModelError::NotFound { .. }) => return Ok(None),
        Err(error) => return Err(error),
    };
    let Some(deployed) = current.serving() else {
        return Ok(None);
    };
    let registered = registry
        .model(&ModelRef::new(
            project,
            region.clone(),
            deployed.model_id.clone(),
        ))
        .await?;
    let source_version = registered
        .as_ref()
        .and_then(|m| m.version(&deployed.version_id))
        .and_then(|v| v.source_version.clone())
        .unwrap_or_else(|| deployed.version_id.clone());
    Ok(Some(Serving {
        deployed_model_id: deployed.id.clone(),
        version_id: deployed.version_id.clone(),
        source_version,
        replicas: deployed.replicas,
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use lifeboat_shared::state::local::LocalStateStore;

    use super::*;

    fn example(name: &str) -> Topology {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples")
            .join(name);
        Topology::load(&file).expect("example")
    }

    async fn serving_in(
        topology: &Topology,
        registry: &LocalRegistry,
        region: &str,
    ) -> Option<Serving> {
        let model = &topology.workloads()[0].assets.models[0];
        let region = topology.region(region).expect("region").id.clone();
        serving(topology, registry, model, &region)
            .await
            .expect("endpoint read")
    }

    #[tokio::test]
    async fn the_primary_serves_at_serving_size_and_warm_standbys_at_standby_size_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = LocalStateStore::open(dir.path()).await.expect("state");
        let registry = LocalRegistry::new(Arc::new(state));
        let topology = example("production-three-region.yaml");
        seed(&topology, &registry).await.expect("seed");
        seed(&topology, &registry).await.expect("seed again");
        let primary = serving_in(&topology, &registry, "us-central1")
            .await
            .expect("the primary serves");
        assert_eq!(
            (primary.source_version.as_str(), primary.replicas),
            ("7", 3)
        );
        for standby in ["us-east1", "europe-west1"] {
            let serving = serving_in(&topology, &registry, standby)
                .await
                .expect("a warm standby serves");
            assert_eq!(
                (serving.source_version.as_str(), serving.replicas),
                ("7", 1),
                "{standby}"
            );
        }
        let model = &topology.workloads()[0].assets.models[0];
        for region in topology.regions() {
            let endpoint = EndpointRef::new(
                "acme-ml-prod",
                region.id.clone(),
                model.endpoints[&region.id].clone(),
            );
            let deployed = registry
                .endpoint(&endpoint)
                .await
                .expect("endpoint")
                .deployed;
            assert_eq!(
                deployed.len(),
                1,
                "seeding twice deploys once in {}",
                region.id
            );
        }
    }

    #[tokio::test]
    async fn a_pilot_light_region_holds_the_model_but_serves_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = LocalStateStore::open(dir.path()).await.expect("state");
        let registry = LocalRegistry::new(Arc::new(state));
        let topology = example("pilot-light.yaml");
        seed(&topology, &registry).await.expect("seed");
        let primary = serving_in(&topology, &registry, "us-central1")
            .await
            .expect("the primary serves");
        assert_eq!(primary.source_version, "1");
        assert_eq!(serving_in(&topology, &registry, "us-west1").await, None);
        let copy = registry
            .model(&ModelRef::new(
                "acme-research",
                topology.region("us-west1").expect("region").id.clone(),
                "lifeboat-1209384756",
            ))
            .await
            .expect("read")
            .expect("registered in the pilot-light region");
        assert!(copy.copy_of("1").is_some(), "{copy:?}");
    }
}
