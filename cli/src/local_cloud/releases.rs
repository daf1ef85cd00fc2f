//! The local cloud's model releases: what a team's release pipeline and
//! Cloud Audit Logs do on Google Cloud. `POST /local/models/{model}/versions`
//! uploads a new version of a protected model into the primary's registry,
//! deploys it on the primary's endpoint in place of the old one (unless the
//! topology pins the served version), and publishes the `UploadModel` audit
//! log entry on the events topic as a `google.cloud.audit.log.v1.written`
//! CloudEvent, so model-copy receives it exactly as through Eventarc.
//! Only callers on this machine may release (loopback peers).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use chrono::Utc;
use cloudevents::{Event, EventBuilder, EventBuilderV10};
use lifeboat_model_copy::request::UPLOAD_MODEL_METHOD;
use lifeboat_shared::bus::{EVENTS_TOPIC, EventBus};
use lifeboat_shared::events::cloud_event::AUDIT_LOG_WRITTEN;
use lifeboat_shared::models::local::LocalRegistry;
use lifeboat_shared::models::standby::{WarmStandby, keep_serving};
use lifeboat_shared::models::{
    Backoff, EndpointRef, ModelError, ModelRef, ModelRegistry, ModelVersion,
};
use lifeboat_shared::server::callers::{CallerPolicy, require_caller};
use lifeboat_shared::topology::{Model, Topology};
use serde::Deserialize;
use serde_json::json;

/// Where a release is posted on the functions listener: `{model}` is the
/// model's asset id, Vertex AI model id or display name.
pub const RELEASE_PATH: &str = "/local/models/{model}/versions";

/// What releasing needs.
#[derive(Clone, Debug)]
pub struct Releases {
    /// The deployment.
    pub topology: Arc<Topology>,
    /// Every region's models and endpoints.
    pub registry: Arc<LocalRegistry>,
    /// Where the audit log entry is published.
    pub bus: Arc<dyn EventBus>,
}

/// The route that releases a version, for callers on this machine only.
pub fn router(releases: Releases) -> Router {
    Router::new()
        .route(RELEASE_PATH, post(release_version))
        .route_layer(middleware::from_fn_with_state(
            CallerPolicy::Loopback,
            require_caller,
        ))
        .with_state(releases)
}

/// The body of a release: the version id to give, else the next one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseRequest {
    version: Option<String>,
}

async fn release_version(
    State(releases): State<Releases>,
    Path(name): Path<String>,
    body: Option<Json<ReleaseRequest>>,
) -> Response {
    let asked = body.map(|Json(b)| b).unwrap_or_default();
    let topology = releases.topology.as_ref();
    let Some(model) = topology
        .workloads()
        .iter()
        .flat_map(|w| &w.assets.models)
        .find(|m| m.is_named(&name))
    else {
        return (
            StatusCode::NOT_FOUND,
            format!("no workload of the topology protects a model named {name:?}"),
        )
            .into_response();
    };
    let released = match release(topology, &releases.registry, model, asked.version).await {
        Ok(released) => released,
        Err(error) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("releasing {name}: {error}"),
            )
                .into_response();
        }
    };
    let source = ModelRef::new(
        topology.project().as_str(),
        topology.primary().clone(),
        model.model_id.clone(),
    );
    let published = match upload_audit_log(&source, &released) {
        Ok(event) => releases
            .bus
            .publish(EVENTS_TOPIC, &event)
            .await
            .map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    if let Err(error) = published {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "version {} of {source} was uploaded but its audit log entry not published \
                 (model-copy's scheduled reconcile will copy it): {error}",
                released.version_id
            ),
        )
            .into_response();
    }
    tracing::info!(model = %model.id, version = %released.version_id, "released in the primary");
    Json(json!({
        "model": model.id.as_str(),
        "version": released.version_id,
        "deployed_in_primary": model.version.is_none(),
    }))
    .into_response()
}

/// Uploads version `version` (the next when `None`) of `model` into the
/// primary's registry and, unless the topology pins the served version,
/// makes the primary's endpoint serve it at serving size.
pub async fn release(
    topology: &Topology,
    registry: &LocalRegistry,
    model: &Model,
    version: Option<String>,
) -> Result<ModelVersion, ModelError> {
    let project = topology.project().as_str();
    let primary = topology.primary();
    let source = ModelRef::new(project, primary.clone(), model.model_id.clone());
    let registered = registry.model(&source).await?;
    let version_id = match (version, &registered) {
        (Some(version), _) => version,
        (None, Some(registered)) => registered.next_version_id(),
        (None, None) => "1".to_string(),
    };
    let uploaded = ModelVersion {
        version_id: version_id.clone(),
        created_at: Some(Utc::now()),
        artifact_uri: String::new(),
        image_uri: String::new(),
        source_version: None,
    };
    let display_name = model.display_name.as_deref().unwrap_or(model.id.as_str());
    registry
        .upload(&source, display_name, uploaded.clone())
        .await?;
    let endpoint = model.endpoints.get(primary);
    if let (None, Some(endpoint_id)) = (&model.version, endpoint) {
        let registered = registry
            .model(&source)
            .await?
            .ok_or_else(|| ModelError::NotFound {
                what: format!("{source} after its upload"),
            })?;
        let serving = WarmStandby {
            endpoint: EndpointRef::new(project, primary.clone(), endpoint_id.clone()),
            model: &registered,
            source_version: &version_id,
            replicas: model.serving_replicas.get(),
            machine_type: model.machine_type.as_deref(),
            primary_endpoint: None,
        };
        keep_serving(registry, &serving, &Backoff::default()).await?;
    }
    Ok(uploaded)
}

/// The audit log entry Vertex AI writes when an upload is done, as
/// Eventarc delivers it.
fn upload_audit_log(
    source: &ModelRef,
    version: &ModelVersion,
) -> Result<Event, cloudevents::event::EventBuilderError> {
    let now = Utc::now();
    let resource = source.to_string();
    let log_name = format!(
        "projects/{}/logs/cloudaudit.googleapis.com%2Factivity",
        source.project
    );
    let insert_id = format!("{resource}@{}", version.version_id);
    let data = json!({
        "logName": log_name,
        "insertId": insert_id,
        "timestamp": now,
        "severity": "NOTICE",
        "resource": {
            "type": "audited_resource",
            "labels": {"service": "aiplatform.googleapis.com", "location": source.region.as_str()},
        },
        "operation": {"id": insert_id, "producer": "aiplatform.googleapis.com", "last": true},
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "serviceName": "aiplatform.googleapis.com",
            "methodName": UPLOAD_MODEL_METHOD,
            "resourceName": resource,
            "response": {
                "@type": "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse",
                "model": resource,
                "modelVersionId": version.version_id,
            },
        },
    });
    EventBuilderV10::new()
        .id(format!("{log_name}/{insert_id}"))
        .ty(AUDIT_LOG_WRITTEN)
        .source(format!(
            "//cloudaudit.googleapis.com/projects/{}/logs/activity",
            source.project
        ))
        .subject(format!("aiplatform.googleapis.com/{resource}"))
        .time(now)
        .data("application/json", data)
        .build()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use axum::extract::connect_info::MockConnectInfo;
    use lifeboat_shared::bus::local::{LocalBus, LocalBusOptions};
    use lifeboat_shared::server::{Shutdown, serve_router};
    use lifeboat_shared::state::local::LocalStateStore;
    use tokio::net::TcpListener;

    use super::*;

    /// The production example's releases, its models seeded.
    async fn releases(dir: &std::path::Path) -> Releases {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/production-three-region.yaml");
        let topology = Topology::load(&file).expect("example");
        let state = LocalStateStore::open(dir.join("state"))
            .await
            .expect("state");
        let registry = LocalRegistry::new(Arc::new(state));
        super::super::models::seed(&topology, &registry)
            .await
            .expect("seed");
        let bus = LocalBus::open(dir.join("bus"), LocalBusOptions::default())
            .await
            .expect("bus");
        bus.create_topic(EVENTS_TOPIC).await.expect("topic");
        Releases {
            topology: Arc::new(topology),
            registry: Arc::new(registry),
            bus: Arc::new(bus),
        }
    }

    /// Releases the example's model through `router` served on loopback,
    /// seen as coming from `peer` when given, else from its real address.
    async fn release_through(router: Router, peer: Option<SocketAddr>) -> (u16, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "http://{}{}",
            listener.local_addr().expect("address"),
            RELEASE_PATH.replace("{model}", "recsys-ranker")
        );
        match peer {
            None => drop(tokio::spawn(serve_router(
                router,
                listener,
                Shutdown::new(),
                Duration::from_secs(1),
            ))),
            Some(peer) => drop(tokio::spawn(async move {
                axum::serve(listener, router.layer(MockConnectInfo(peer))).await
            })),
        }
        let answer = reqwest::Client::new()
            .post(url)
            .send()
            .await
            .expect("an answer");
        let status = answer.status().as_u16();
        (status, answer.text().await.expect("text"))
    }

    #[tokio::test]
    async fn only_callers_on_this_machine_release() {
        let dir = tempfile::tempdir().expect("temp dir");
        let releases = releases(dir.path()).await;
        let source = ModelRef::new(
            releases.topology.project().as_str(),
            releases.topology.primary().clone(),
            "4512398712",
        );
        let versions = |releases: &Releases| {
            let (registry, source) = (releases.registry.clone(), source.clone());
            async move {
                registry
                    .model(&source)
                    .await
                    .expect("registry read")
                    .map_or(0, |model| model.versions.len())
            }
        };
        let before = versions(&releases).await;

        let remote: SocketAddr = "198.51.100.4:50000".parse().expect("address");
        let (status, text) = release_through(router(releases.clone()), Some(remote)).await;
        assert_eq!(status, 403, "{text}");
        assert!(text.contains("198.51.100.4:50000 is not"), "{text}");
        assert_eq!(versions(&releases).await, before, "nothing was released");

        let (status, text) = release_through(router(releases.clone()), None).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(versions(&releases).await, before + 1);
    }
}
