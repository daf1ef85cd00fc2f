//! Static stability: each pattern's example with its primary region fully
//! dark (probes, predictions and every registry call addressed to it fail)
//! still fails over, on the local registry and on Vertex AI's stand-in over
//! a socket; the gateway then serves from the new region; a failback to the
//! still-dark primary is refused and recorded, traffic staying where it is.
//! Whatever the recovery path needs from the primary comes from the
//! topology or from records kept in the state store beforehand.

mod common;

use chrono::DateTime;
use common::{Backend, body, example_rig, workload_incident};
use lifeboat_failover::handle_incident;
use lifeboat_gateway::{Gateway, GatewayOptions, Upstreams};
use lifeboat_shared::events::IncidentState;
use lifeboat_shared::gcp::Credentials;
use lifeboat_shared::models::{EndpointRef, ModelRef};
use lifeboat_shared::records::incident as record;
use lifeboat_shared::routing::{self, RoutingTable};
use lifeboat_shared::topology::Pattern;

/// The example of each pattern.
const EXAMPLES: [(Pattern, &str); 3] = [
    (Pattern::ActiveActive, "examples/active-active.yaml"),
    (
        Pattern::ActivePassive,
        "examples/production-three-region.yaml",
    ),
    (Pattern::PilotLight, "examples/pilot-light.yaml"),
];

/// The recorded time of the step `what` of a failover record.
fn step_at(record: &serde_json::Value, what: &str) -> DateTime<chrono::Utc> {
    let step = record["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["what"] == what)
        .unwrap_or_else(|| panic!("no step {what}: {record:#}"));
    step["at"]
        .as_str()
        .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
        .unwrap_or_else(|| panic!("step {what} has no time: {step}"))
        .to_utc()
}

/// One pattern's outage with the primary dark, on `backend`.
async fn primary_dark_fails_over(pattern: Pattern, example: &str, backend: Backend) {
    let rig = example_rig(example, backend).await;
    let topology = rig.context.topology.clone();
    let workload = rig.workload();
    assert_eq!(workload.pattern, pattern, "{example}");
    let primary = topology.primary().to_string();
    let standby_id = topology
        .regions()
        .iter()
        .map(|r| r.id.clone())
        .find(|r| r != topology.primary())
        .expect("a second region");
    let standby = standby_id.to_string();
    let context = format!("{} on {backend:?}", pattern.name());

    rig.fail(&primary);
    let open = workload_incident(
        "dark-1",
        workload.id.as_str(),
        &primary,
        IncidentState::Open,
    );
    let (status, moved) = body(handle_incident(&rig.context, &open).await).await;
    assert!(status.is_success(), "{context}: {status} {moved:#}");
    assert_eq!(moved["outcome"], "moved", "{context}: {moved:#}");
    // Received to verified, as the record measures it (the RTO's
    // decision, execution and verification parts), within the target
    // where the pattern has one; active-active's RTO 0 is the gateway's
    // retry, checked below.
    let took = step_at(&moved, "verified") - step_at(&moved, "received");
    let target = workload.target_rto().get();
    if !target.is_zero() {
        assert!(
            took.to_std().expect("forward in time") < target,
            "{context}: failover took {took}, over the RTO target {target:?}"
        );
    }

    let table = routing::read_all(rig.state.as_ref())
        .await
        .expect("tables")
        .into_iter()
        .find(|t| t.workload == workload.id.as_str())
        .expect("the workload's table");
    assert_eq!(table.weights[&primary], 0, "{context}: {table:?}");
    // Weights are shares: the standby takes all the traffic.
    assert!(table.weights[&standby] > 0, "{context}: {table:?}");
    // The standby serves at serving size (a pilot light got the model
    // deployed, on the machine type the topology records).
    let model = &workload.assets.models[0];
    let endpoint = EndpointRef::new(
        topology.project().as_str(),
        standby_id.clone(),
        &model.endpoints[&standby_id],
    );
    let serving = rig.registry.endpoint(&endpoint).await.expect("endpoint");
    let copy = ModelRef::new(
        topology.project().as_str(),
        topology.primary().clone(),
        model.model_id.clone(),
    )
    .in_region(&standby_id);
    let deployed = serving
        .deployed
        .iter()
        .find(|d| d.model_id == copy.model_id)
        .unwrap_or_else(|| panic!("{context}: nothing deployed on {endpoint}: {serving:?}"));
    assert_eq!(
        deployed.replicas,
        model.serving_replicas.get(),
        "{context}: {deployed:?}"
    );
    if let Some(machine_type) = &model.machine_type {
        assert_eq!(&deployed.machine_type, machine_type, "{context}");
    }

    // Predictions through the gateway reach the standby, never the primary.
    let mut upstreams = Upstreams::new();
    for region in topology.regions() {
        let url = rig
            .context
            .probes
            .get(workload.id.as_str(), region.id.as_str())
            .expect("a region URL");
        upstreams.insert(
            workload.id.as_str(),
            model.id.as_str(),
            region.id.as_str(),
            url,
        );
    }
    let gateway = Gateway::new(
        upstreams,
        rig.state.clone(),
        Credentials::Anonymous,
        GatewayOptions::default(),
    )
    .with_tables([table.clone()]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/predict/{}/{}",
        listener.local_addr().expect("address"),
        workload.id,
        model.id
    );
    let app = lifeboat_gateway::router(gateway);
    let server = tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let answer = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"instances":[[1,2,3,4]]}"#)
        .send()
        .await
        .expect("the gateway answers");
    assert!(answer.status().is_success(), "{context}: {answer:?}");
    server.abort();

    // A failback to the primary, still dark: refused, recorded, traffic
    // stays on the standby.
    let refused = lifeboat_failover::failback::fail_back(
        &rig.context,
        &workload,
        &primary,
        &rig.context.options.failback,
    )
    .await
    .expect("recorded");
    assert_eq!(
        refused.outcome,
        Some(record::Outcome::Stayed),
        "{context}: {refused:?}"
    );
    let after = routing::read_all(rig.state.as_ref()).await.expect("tables");
    let after: &RoutingTable = after
        .iter()
        .find(|t| t.workload == workload.id.as_str())
        .expect("table");
    assert_eq!(after.weights, table.weights, "{context}: {after:?}");
    let records = record::read_all(rig.state.as_ref()).await.expect("records");
    assert!(
        records.len() >= 2,
        "{context}: the failover and the refused failback are recorded: {records:?}"
    );
}

#[tokio::test]
async fn every_pattern_fails_over_with_the_primary_dark_on_the_local_registry() {
    for (pattern, example) in EXAMPLES {
        primary_dark_fails_over(pattern, example, Backend::Local).await;
    }
}

#[tokio::test]
async fn every_pattern_fails_over_with_the_primary_dark_on_the_vertex_standin() {
    for (pattern, example) in EXAMPLES {
        primary_dark_fails_over(pattern, example, Backend::VertexStandIn).await;
    }
}
