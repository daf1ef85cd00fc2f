//! A warm standby's endpoint kept serving the newest version: deploy it at
//! the standby replica count, move all traffic to it, then undeploy the
//! versions it replaces. A newer version already deployed is never
//! replaced by an older one.

use std::collections::BTreeMap;

use crate::models::{
    Backoff, Completed, Deployment, EndpointRef, ModelError, ModelRegistry, RegisteredModel,
    compare_versions, copy_model_id, wait,
};

/// What the standby endpoint serves after [`keep_serving`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Serving {
    /// The version asked for (deployed now, or already).
    Version(String),
    /// A newer version already deployed, kept.
    Newer(String),
    /// What the endpoint was found serving, left as it is: the topology
    /// pins the version, or the pattern keeps no warm standby there.
    Found(String),
}

impl Serving {
    /// The source version the endpoint serves.
    pub fn source_version(&self) -> &str {
        match self {
            Serving::Version(v) | Serving::Newer(v) | Serving::Found(v) => v,
        }
    }
}

/// What to keep serving where.
#[derive(Debug)]
pub struct WarmStandby<'a> {
    /// The standby's endpoint.
    pub endpoint: EndpointRef,
    /// The model in the standby region (read after the copy).
    pub model: &'a RegisteredModel,
    /// The source version to serve.
    pub source_version: &'a str,
    /// Replicas to deploy it at.
    pub replicas: u32,
    /// The machine type the topology records for the model, used first.
    pub machine_type: Option<&'a str>,
    /// The primary's endpoint, whose machine type is used when neither the
    /// topology nor the standby's own deployment gives one. Only for
    /// normal times: the recovery path leaves it `None`, since the primary
    /// may be gone (static stability).
    pub primary_endpoint: Option<EndpointRef>,
}

/// The source version of a version id of `model` (the id itself when the
/// version is not a copy).
fn source_of(model: &RegisteredModel, version_id: &str) -> String {
    model
        .version(version_id)
        .and_then(|v| v.source_version.clone())
        .unwrap_or_else(|| version_id.to_string())
}

/// The source version of `model` that `endpoint` serves (its deployment
/// taking the most traffic), if it serves one; `None` as well when the
/// endpoint does not exist.
pub async fn served(
    registry: &dyn ModelRegistry,
    endpoint: &EndpointRef,
    model: &RegisteredModel,
) -> Result<Option<String>, ModelError> {
    let current = match registry.endpoint(endpoint).await {
        Ok(current) => current,
        Err(ModelError::NotFound { .. }) => return Ok(None),
        Err(error) => return Err(error),
    };
    Ok(current
        .serving()
        .filter(|deployed| deployed.model_id == model.model.model_id)
        .map(|deployed| source_of(model, &deployed.version_id)))
}

/// Makes the standby endpoint serve `standby.source_version`, unless it
/// serves a newer one. The endpoint is the model's own (the topology gives
/// each model an endpoint per region), so all of its traffic moves to the
/// new version.
pub async fn keep_serving(
    registry: &dyn ModelRegistry,
    standby: &WarmStandby<'_>,
    backoff: &Backoff,
) -> Result<Serving, ModelError> {
    let endpoint = &standby.endpoint;
    let model = standby.model;
    let wanted = standby.source_version;
    let current = registry.endpoint(endpoint).await?;
    let ours: Vec<_> = current
        .deployed
        .iter()
        .filter(|d| d.model_id == model.model.model_id)
        .map(|d| (d, source_of(model, &d.version_id)))
        .collect();
    if let Some((_, newer)) = ours
        .iter()
        .filter(|(_, source)| compare_versions(source, wanted).is_gt())
        .max_by(|(_, a), (_, b)| compare_versions(a, b))
    {
        tracing::info!(deployed = %newer, version = %wanted, "a newer version is deployed; kept");
        return Ok(Serving::Newer(newer.clone()));
    }
    let version_id = model
        .copy_of(wanted)
        .or_else(|| model.version(wanted))
        .map(|v| v.version_id.clone())
        .ok_or_else(|| ModelError::NotFound {
            what: format!("{} version {wanted}", model.model),
        })?;
    let deployed_id = match ours.iter().find(|(_, source)| source == wanted) {
        Some((deployed, _)) => deployed.id.clone(),
        None => {
            let machine_type = machine_type(registry, standby, &ours).await?;
            let deployment = Deployment {
                model: model.model.clone(),
                version_id,
                machine_type,
                replicas: standby.replicas,
            };
            let context = format!("deploy version {wanted} on {endpoint}");
            let operation = registry.start_deploy(endpoint, &deployment).await?;
            match wait(registry, operation, backoff, &context).await? {
                Completed::Deployed { deployed_model_id } => deployed_model_id,
                other => {
                    return Err(ModelError::Rejected {
                        context,
                        message: format!("the operation reported {other:?}, not a deployment"),
                    });
                }
            }
        }
    };
    if current.traffic.get(&deployed_id) != Some(&100) {
        registry
            .set_traffic(endpoint, &BTreeMap::from([(deployed_id.clone(), 100)]))
            .await?;
    }
    for (old, _) in ours.iter().filter(|(d, _)| d.id != deployed_id) {
        let context = format!("undeploy {} from {endpoint}", old.id);
        let operation = registry.start_undeploy(endpoint, &old.id).await?;
        wait(registry, operation, backoff, &context).await?;
    }
    Ok(Serving::Version(wanted.to_string()))
}

/// The machine type to deploy on: the topology's, else the standby's
/// current one, else (only when given a primary endpoint) that of the
/// primary's deployment of the model it is a copy of.
async fn machine_type(
    registry: &dyn ModelRegistry,
    standby: &WarmStandby<'_>,
    ours: &[(&crate::models::DeployedModel, String)],
) -> Result<String, ModelError> {
    if let Some(recorded) = standby.machine_type {
        return Ok(recorded.to_string());
    }
    if let Some((deployed, _)) = ours.iter().find(|(d, _)| !d.machine_type.is_empty()) {
        return Ok(deployed.machine_type.clone());
    }
    if let Some(primary) = &standby.primary_endpoint {
        let serving = registry.endpoint(primary).await?;
        if let Some(deployed) = serving.deployed.iter().find(|d| {
            copy_model_id(&d.model_id) == standby.model.model.model_id && !d.machine_type.is_empty()
        }) {
            return Ok(deployed.machine_type.clone());
        }
    }
    Err(ModelError::Rejected {
        context: format!("deploy on {}", standby.endpoint),
        message: "no machine type: the topology records none (`machine-type`) and the model \
                  is not deployed on the standby"
            .to_string(),
    })
}
