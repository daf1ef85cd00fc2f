//! The `pilot-light-deploy` drill against the local registry: it deploys,
//! measures and undeploys, leaving nothing of its own; a model deployed
//! before the drill is left alone; a run cut off mid-deploy is cleaned up
//! from its record.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lifeboat_drill::pilot_light::{DeployContext, deploy, undeploy};
use lifeboat_shared::models::local::LocalRegistry;
use lifeboat_shared::models::{
    Backoff, Completed, Deployment, EndpointRef, ModelRef, ModelVersion, wait,
};
use lifeboat_shared::records::drill_run::{DrillRun, Trigger};
use lifeboat_shared::server::Shutdown;
use lifeboat_shared::state::local::LocalStateStore;
use lifeboat_shared::topology::{Drill, RegionId, Topology};

const TOPOLOGY: &str = r#"
project: acme-ml-prod
regions:
  - id: us-central1
    role: primary
  - id: us-east1
    role: pilot-light
workloads:
  - id: ranker
    class: production-training
    pattern: pilot-light
    assets:
      models:
        - id: ranker-model
          model-id: ranker
          serving-replicas: 2
          machine-type: n1-standard-4
          endpoints:
            us-central1: "100"
            us-east1: "200"
drills:
  - id: weekly-pilot-light
    kind: pilot-light-deploy
    workload: ranker
    target-region: us-east1
    schedule: "0 3 * * MON"
"#;

const BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(10),
    max: Duration::from_millis(50),
    limit: Duration::from_secs(5),
};

struct World {
    context: DeployContext,
    drill: Drill,
    endpoint: EndpointRef,
    _dir: tempfile::TempDir,
}

fn new_run(drill: &Drill) -> DrillRun {
    DrillRun::new(
        drill,
        format!("{}--test", drill.id),
        Trigger::Manual,
        Utc::now(),
    )
}

/// Version 3 of the model copied into us-east1, whose endpoint is empty.
async fn world() -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let topology = Topology::parse(TOPOLOGY, "pilot.yaml").expect("valid topology");
    let drill = topology.drill("weekly-pilot-light").expect("drill").clone();
    let state = Arc::new(LocalStateStore::open(dir.path()).await.expect("state"));
    let registry = LocalRegistry::new(state.clone());
    let region = RegionId::new("us-east1").expect("region");
    let copy = ModelRef::new("acme-ml-prod", region.clone(), "ranker");
    registry
        .upload(
            &copy,
            "ranker",
            ModelVersion {
                version_id: "1".into(),
                created_at: None,
                artifact_uri: String::new(),
                image_uri: String::new(),
                source_version: Some("3".into()),
            },
        )
        .await
        .expect("upload");
    let endpoint = EndpointRef::new("acme-ml-prod", region, "200");
    registry.create_endpoint(&endpoint).await.expect("endpoint");
    World {
        context: DeployContext {
            topology: Arc::new(topology),
            registry: Arc::new(registry),
            state,
            golden: None,
            backoff: BACKOFF,
        },
        drill,
        endpoint,
        _dir: dir,
    }
}

async fn deployed_ids(world: &World) -> Vec<String> {
    let endpoint = world
        .context
        .registry
        .endpoint(&world.endpoint)
        .await
        .expect("endpoint");
    endpoint.deployed.iter().map(|d| d.id.clone()).collect()
}

#[tokio::test]
async fn deploys_measures_and_leaves_nothing_behind() {
    let world = world().await;
    let mut run = new_run(&world.drill);
    deploy(&world.context, &world.drill, &mut run, &Shutdown::new())
        .await
        .expect("the drill runs");
    assert!(run.measurements.time_to_serve_seconds.is_some(), "{run:#?}");
    let check = run
        .checks
        .iter()
        .find(|c| c.name == "time to serve")
        .expect("a time-to-serve check");
    assert!(check.held, "{check:?}");
    for phase in ["deploy", "serve"] {
        assert!(
            run.phases.iter().any(|p| p.name == phase),
            "no {phase} phase"
        );
    }
    let finding = &run.findings[0];
    assert!(
        finding.ok && finding.detail.contains("version 3") && finding.detail.contains("no golden"),
        "{finding:?}"
    );
    assert_eq!(run.cleanup.deployments.len(), 1);
    assert!(run.cleanup.deployments[0].undeployed_at.is_some());
    assert!(run.cleanup.undeployed_at.is_some());
    assert!(
        deployed_ids(&world).await.is_empty(),
        "the endpoint is empty again"
    );
}

#[tokio::test]
async fn a_model_deployed_before_the_drill_is_left_alone() {
    let world = world().await;
    let registry = world.context.registry.as_ref();
    let deployment = Deployment {
        model: ModelRef::new("acme-ml-prod", world.endpoint.region.clone(), "ranker"),
        version_id: "1".into(),
        machine_type: "n1-standard-4".into(),
        replicas: 1,
    };
    let operation = registry
        .start_deploy(&world.endpoint, &deployment)
        .await
        .expect("deploy");
    let Completed::Deployed { deployed_model_id } = wait(registry, operation, &BACKOFF, "deploy")
        .await
        .expect("deployed")
    else {
        panic!("not a deployment");
    };
    let mut run = new_run(&world.drill);
    deploy(&world.context, &world.drill, &mut run, &Shutdown::new())
        .await
        .expect("the drill runs");
    assert_eq!(deployed_ids(&world).await, [deployed_model_id]);
    assert!(run.cleanup.deployments.is_empty());
    assert!(
        run.findings[0].detail.contains("left alone"),
        "{:?}",
        run.findings
    );
}

#[tokio::test]
async fn a_crashed_run_is_cleaned_up_from_its_record() {
    let world = world().await;
    let mut run = new_run(&world.drill);
    deploy(&world.context, &world.drill, &mut run, &Shutdown::new())
        .await
        .expect("the drill runs");
    // The record as saved before the deploy was waited for: the operation
    // is known, the deployed model's id is not; and the deployment is
    // still there.
    let mut crashed = new_run(&world.drill);
    let mut started = run.cleanup.deployments[0].clone();
    started.deployed_model_id = None;
    started.undeployed_at = None;
    crashed.cleanup.deployments.push(started);
    let again = world
        .context
        .registry
        .start_deploy(
            &world.endpoint,
            &Deployment {
                model: ModelRef::new("acme-ml-prod", world.endpoint.region.clone(), "ranker"),
                version_id: "1".into(),
                machine_type: "n1-standard-4".into(),
                replicas: 2,
            },
        )
        .await
        .expect("deploy");
    crashed.cleanup.deployments[0].operation = again.name;
    assert_eq!(deployed_ids(&world).await.len(), 1);
    undeploy(&world.context, &mut crashed)
        .await
        .expect("cleanup");
    assert!(deployed_ids(&world).await.is_empty());
    assert!(crashed.cleanup.undeployed_at.is_some());
    // Idempotent.
    undeploy(&world.context, &mut crashed)
        .await
        .expect("cleanup again");
}
