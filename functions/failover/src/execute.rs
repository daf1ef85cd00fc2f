//! Readying a region to take a workload's traffic, by its pattern: an
//! active-active region already serves; a warm standby (active-passive) has
//! its deployed model scaled to serving size, and waited for; a pilot-light
//! region gets the model deployed first, at serving size, on the machine
//! type the topology records. Nothing here calls the failed region. Every
//! action is idempotent: a retried event finds the work done and moves on.

use lifeboat_shared::models::standby::{WarmStandby, keep_serving};
use lifeboat_shared::models::{
    Backoff, EndpointRef, ModelError, ModelRef, ModelRegistry, RegisteredModel, compare_versions,
    wait,
};
use lifeboat_shared::topology::{Model, Pattern, RegionId, Topology, Workload};

/// Readies `region` to serve every model of `workload` at serving size;
/// returns what was done, one line per model.
pub async fn ready_region(
    registry: &dyn ModelRegistry,
    topology: &Topology,
    workload: &Workload,
    region: &RegionId,
    backoff: &Backoff,
) -> Result<Vec<String>, ModelError> {
    let project = topology.project().as_str();
    let mut done = Vec::new();
    for model in &workload.assets.models {
        let Some(endpoint_id) = model.endpoints.get(region) else {
            done.push(format!(
                "{}: no endpoint in {region}; nothing to ready",
                model.id
            ));
            continue;
        };
        if workload.pattern == Pattern::ActiveActive {
            done.push(format!(
                "{}: {region} serves already (active-active)",
                model.id
            ));
            continue;
        }
        let serving = model.serving_replicas.get();
        let endpoint = EndpointRef::new(project, region.clone(), endpoint_id.clone());
        let current = registry.endpoint(&endpoint).await?;
        let copy = copy_in(topology, model, region);
        let ours: Vec<_> = current
            .deployed
            .iter()
            .filter(|d| d.model_id == copy.model_id)
            .collect();
        if ours.is_empty() {
            // Pilot light (or a standby that lost its deployment): deploy.
            let (registered, wanted) = version_to_deploy(registry, topology, model, region).await?;
            // Nothing is asked of the primary, which may be gone: the
            // machine type comes from the topology.
            let standby = WarmStandby {
                endpoint: endpoint.clone(),
                model: &registered,
                source_version: &wanted,
                replicas: serving,
                machine_type: model.machine_type.as_deref(),
                primary_endpoint: None,
            };
            let serves = keep_serving(registry, &standby, backoff).await?;
            done.push(format!(
                "{}: deployed version {} on {endpoint} at {serving} replicas",
                model.id,
                serves.source_version()
            ));
            continue;
        }
        for deployed in ours {
            if deployed.replicas >= serving {
                done.push(format!(
                    "{}: {} already at {} replicas",
                    model.id, deployed.id, deployed.replicas
                ));
                continue;
            }
            let context = format!("scale {} on {endpoint} to {serving}", deployed.id);
            let operation = registry
                .start_set_replicas(&endpoint, &deployed.id, serving)
                .await?;
            wait(registry, operation, backoff, &context).await?;
            done.push(format!(
                "{}: scaled {} from {} to {serving} replicas",
                model.id, deployed.id, deployed.replicas
            ));
        }
    }
    Ok(done)
}

/// The copy of `model` in `region`'s registry.
fn copy_in(topology: &Topology, model: &Model, region: &RegionId) -> ModelRef {
    ModelRef::new(
        topology.project().as_str(),
        topology.primary().clone(),
        model.model_id.clone(),
    )
    .in_region(region)
}

/// The copy of `model` in `region` and the source version a deployment
/// there serves: the topology's pinned version, else the newest version
/// copied there. Only `region`'s registry is asked, never the primary's,
/// which may be gone.
pub async fn version_to_deploy(
    registry: &dyn ModelRegistry,
    topology: &Topology,
    model: &Model,
    region: &RegionId,
) -> Result<(RegisteredModel, String), ModelError> {
    let copy = copy_in(topology, model, region);
    let registered = registry
        .model(&copy)
        .await?
        .ok_or_else(|| ModelError::NotFound {
            what: format!("model {copy}"),
        })?;
    let newest = registered
        .versions
        .iter()
        .map(|v| {
            v.source_version
                .clone()
                .unwrap_or_else(|| v.version_id.clone())
        })
        .max_by(|a, b| compare_versions(a, b))
        .ok_or_else(|| ModelError::NotFound {
            what: format!("a version of model {} in {region}", model.model_id),
        })?;
    let wanted = model.version.clone().unwrap_or(newest);
    Ok((registered, wanted))
}
