//! The behaviour every [`ModelRegistry`] must have, as plain async functions
//! that panic with a precise message when a registry departs from it.
//!
//! Each implementation's test seeds the registry as [`Fixture`] describes
//! (model [`Fixture::source`] with versions `1` and `2` in the primary,
//! nothing of it in the standby, and the empty endpoint
//! [`Fixture::endpoint`] in the standby) and calls [`run_all`].

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::DateTime;

use super::{
    Backoff, Completed, Deployment, EndpointRef, ModelError, ModelRef, ModelRegistry, ModelVersion,
    wait,
};
use crate::outage::DarkRegions;
use crate::topology::RegionId;

/// The display name of the fixture's model.
pub const DISPLAY_NAME: &str = "fraud scorer (v7)";

/// The machine type the suite deploys on.
pub const MACHINE_TYPE: &str = "n1-standard-2";

/// Where the suite's model and endpoint are.
#[derive(Clone, Debug)]
pub struct Fixture {
    /// The project.
    pub project: String,
    /// The region the model is uploaded to.
    pub primary: RegionId,
    /// The region it is copied to, holding the endpoint.
    pub standby: RegionId,
    /// The model id.
    pub model_id: String,
    /// The standby's endpoint id.
    pub endpoint_id: String,
}

impl Fixture {
    /// The suite's names in `project`: model `fraud-scorer` from
    /// `us-central1` to `us-east1`, endpoint `8812345002` there.
    pub fn new(project: &str) -> Self {
        let region = |name: &str| RegionId::new(name).expect("a valid region");
        Self {
            project: project.to_string(),
            primary: region("us-central1"),
            standby: region("us-east1"),
            model_id: "fraud-scorer".to_string(),
            endpoint_id: "8812345002".to_string(),
        }
    }

    /// The model in the primary.
    pub fn source(&self) -> ModelRef {
        ModelRef::new(&self.project, self.primary.clone(), &self.model_id)
    }

    /// The model in the standby.
    pub fn copy(&self) -> ModelRef {
        self.source().in_region(&self.standby)
    }

    /// The standby's endpoint.
    pub fn endpoint(&self) -> EndpointRef {
        EndpointRef::new(&self.project, self.standby.clone(), &self.endpoint_id)
    }
}

/// Version `id` of the fixture's model, created at `created` (RFC 3339).
pub fn version(id: &str, created: &str) -> ModelVersion {
    ModelVersion {
        version_id: id.to_string(),
        created_at: Some(
            DateTime::parse_from_rfc3339(created)
                .expect("an RFC 3339 time")
                .to_utc(),
        ),
        artifact_uri: format!("gs://models-us/fraud-scorer/v{id}/"),
        image_uri: "us-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.1-3:latest".to_string(),
        source_version: None,
    }
}

/// Quick polling for tests: 10 ms doubling to 100 ms, for 10 s.
pub const TEST_BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(10),
    max: Duration::from_millis(100),
    limit: Duration::from_secs(10),
};

/// Runs every check of the suite, in order (each builds on the last).
pub async fn run_all(registry: &dyn ModelRegistry, fixture: &Fixture) {
    versions_are_read_per_region(registry, fixture).await;
    copies_create_the_model_then_add_versions(registry, fixture).await;
    deploy_shift_traffic_and_undeploy(registry, fixture).await;
    missing_things_are_not_found(registry, fixture).await;
}

/// The primary holds versions `1` and `2` in order; the standby has no such
/// model yet.
pub async fn versions_are_read_per_region(registry: &dyn ModelRegistry, fixture: &Fixture) {
    let source = registry
        .model(&fixture.source())
        .await
        .unwrap_or_else(|e| panic!("get {}: {e}", fixture.source()))
        .unwrap_or_else(|| panic!("{} is not there", fixture.source()));
    let ids: Vec<&str> = source
        .versions
        .iter()
        .map(|v| v.version_id.as_str())
        .collect();
    assert_eq!(ids, ["1", "2"], "versions of {}", fixture.source());
    assert_eq!(source.display_name, DISPLAY_NAME);
    assert_eq!(
        source.version("2"),
        Some(&version("2", "2026-01-02T00:00:00Z"))
    );
    let copy = registry
        .model(&fixture.copy())
        .await
        .unwrap_or_else(|e| panic!("get {}: {e}", fixture.copy()));
    assert_eq!(copy, None, "{} before any copy", fixture.copy());
}

async fn copy(registry: &dyn ModelRegistry, fixture: &Fixture, version_id: &str) -> Completed {
    let context = format!("copy {} version {version_id}", fixture.source());
    let operation = registry
        .start_copy(&fixture.source(), version_id, &fixture.standby)
        .await
        .unwrap_or_else(|e| panic!("{context}: {e}"));
    wait(registry, operation, &TEST_BACKOFF, &context)
        .await
        .unwrap_or_else(|e| panic!("{context}: {e}"))
}

/// The first copy creates the model under the same id in the standby; the
/// second adds a version to it. Versions are numbered in order of arrival
/// (version 2 copied first becomes version 1 there) and each remembers its
/// source version. A missing version is not copied.
pub async fn copies_create_the_model_then_add_versions(
    registry: &dyn ModelRegistry,
    fixture: &Fixture,
) {
    for (source_version, created, expected) in [("2", "1", vec!["1"]), ("1", "2", vec!["1", "2"])] {
        let completed = copy(registry, fixture, source_version).await;
        assert_eq!(
            completed,
            Completed::Copied {
                model_id: fixture.model_id.clone(),
                version_id: created.to_string(),
            },
            "what the copy of version {source_version} reports"
        );
        let copied = registry
            .model(&fixture.copy())
            .await
            .unwrap_or_else(|e| panic!("get {}: {e}", fixture.copy()))
            .unwrap_or_else(|| panic!("{} not created by the copy", fixture.copy()));
        let ids: Vec<&str> = copied
            .versions
            .iter()
            .map(|v| v.version_id.as_str())
            .collect();
        assert_eq!(
            ids,
            expected,
            "versions of {} after copying {source_version}",
            fixture.copy()
        );
        let version = copied
            .copy_of(source_version)
            .unwrap_or_else(|| panic!("no copy of version {source_version}: {copied:?}"));
        assert_eq!(version.version_id, created, "the copy of {source_version}");
        assert!(
            version
                .artifact_uri
                .contains(&format!("/v{source_version}/")),
            "artifacts of the copy: {}",
            version.artifact_uri
        );
        assert_eq!(copied.display_name, DISPLAY_NAME);
    }
    let missing = async {
        let operation = registry
            .start_copy(&fixture.source(), "99", &fixture.standby)
            .await?;
        wait(registry, operation, &TEST_BACKOFF, "copy version 99").await
    }
    .await;
    assert!(
        matches!(
            missing,
            Err(ModelError::NotFound { .. } | ModelError::OperationFailed { .. })
        ),
        "copy of a missing version: {missing:?}"
    );
}

async fn deploy(registry: &dyn ModelRegistry, fixture: &Fixture, version_id: &str) -> String {
    let context = format!("deploy version {version_id} on {}", fixture.endpoint());
    let deployment = Deployment {
        model: fixture.copy(),
        version_id: version_id.to_string(),
        machine_type: MACHINE_TYPE.to_string(),
        replicas: 1,
    };
    let operation = registry
        .start_deploy(&fixture.endpoint(), &deployment)
        .await
        .unwrap_or_else(|e| panic!("{context}: {e}"));
    match wait(registry, operation, &TEST_BACKOFF, &context).await {
        Ok(Completed::Deployed { deployed_model_id }) => deployed_model_id,
        other => panic!("{context}: {other:?}"),
    }
}

async fn finish(
    registry: &dyn ModelRegistry,
    context: &str,
    started: Result<super::Operation, ModelError>,
) {
    let operation = started.unwrap_or_else(|e| panic!("{context}: {e}"));
    let completed = wait(registry, operation, &TEST_BACKOFF, context)
        .await
        .unwrap_or_else(|e| panic!("{context}: {e}"));
    assert_eq!(completed, Completed::Done, "{context}");
}

/// A warm standby's version change: the first deployment takes all the
/// traffic; a second takes none until the split moves it; a model with
/// traffic cannot be undeployed, one without can; replicas change; a split
/// that does not sum to 100 is refused; the last model goes whatever its
/// share.
pub async fn deploy_shift_traffic_and_undeploy(registry: &dyn ModelRegistry, fixture: &Fixture) {
    let endpoint = fixture.endpoint();
    let get = || async {
        registry
            .endpoint(&endpoint)
            .await
            .unwrap_or_else(|e| panic!("get {endpoint}: {e}"))
    };
    let empty = get().await;
    assert!(
        empty.deployed.is_empty(),
        "{endpoint} before deploying: {empty:?}"
    );

    let old = deploy(registry, fixture, "1").await;
    let current = get().await;
    let deployed = current.deployed_model(&old).expect("version 1 deployed");
    assert_eq!(
        (
            deployed.model_id.as_str(),
            deployed.version_id.as_str(),
            deployed.replicas
        ),
        (fixture.model_id.as_str(), "1", 1),
        "version 1 on {endpoint}"
    );
    assert_eq!(deployed.machine_type, MACHINE_TYPE);
    assert_eq!(current.traffic, BTreeMap::from([(old.clone(), 100)]));

    let new = deploy(registry, fixture, "2").await;
    assert_ne!(new, old, "deployed model ids are unique");
    let current = get().await;
    assert_eq!(
        current.deployed.len(),
        2,
        "both versions deployed: {current:?}"
    );
    assert_eq!(current.serving().map(|d| d.version_id.as_str()), Some("1"));

    let refused = registry
        .set_traffic(&endpoint, &BTreeMap::from([(new.clone(), 60)]))
        .await;
    assert!(
        matches!(refused, Err(ModelError::Rejected { .. })),
        "a split summing to 60: {refused:?}"
    );
    let refused = registry.start_undeploy(&endpoint, &old).await;
    let refused = match refused {
        Ok(operation) => wait(registry, operation, &TEST_BACKOFF, "undeploy with traffic").await,
        Err(error) => Err(error),
    };
    assert!(
        refused.is_err(),
        "undeploying the model taking all traffic: {refused:?}"
    );

    let shifted = registry
        .set_traffic(&endpoint, &BTreeMap::from([(new.clone(), 100)]))
        .await
        .unwrap_or_else(|e| panic!("shift traffic on {endpoint}: {e}"));
    assert_eq!(shifted.serving().map(|d| d.version_id.as_str()), Some("2"));
    finish(
        registry,
        &format!("undeploy {old} from {endpoint}"),
        registry.start_undeploy(&endpoint, &old).await,
    )
    .await;
    finish(
        registry,
        &format!("scale {new} on {endpoint} to 3"),
        registry.start_set_replicas(&endpoint, &new, 3).await,
    )
    .await;
    let current = get().await;
    let ids: Vec<&str> = current.deployed.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, [new.as_str()], "only version 2 left on {endpoint}");
    assert_eq!(current.deployed[0].replicas, 3, "replicas after scaling");
    assert_eq!(current.traffic, BTreeMap::from([(new.clone(), 100)]));

    // The last deployed model goes whatever its share, as in Vertex AI:
    // a pilot-light endpoint is left serving nothing.
    finish(
        registry,
        &format!("undeploy the last model {new} from {endpoint}"),
        registry.start_undeploy(&endpoint, &new).await,
    )
    .await;
    let current = get().await;
    assert!(
        current.deployed.is_empty() && current.traffic.values().all(|s| *s == 0),
        "nothing left on {endpoint}: {current:?}"
    );
}

/// Unknown endpoints, operations and deployed models are not found.
pub async fn missing_things_are_not_found(registry: &dyn ModelRegistry, fixture: &Fixture) {
    let nowhere = EndpointRef::new(&fixture.project, fixture.standby.clone(), "404");
    let missing = registry.endpoint(&nowhere).await;
    assert!(
        matches!(missing, Err(ModelError::NotFound { .. })),
        "endpoint {nowhere}: {missing:?}"
    );
    let name = format!(
        "projects/{}/locations/{}/operations/404",
        fixture.project, fixture.standby
    );
    let missing = registry.operation(&name).await;
    assert!(
        matches!(missing, Err(ModelError::NotFound { .. })),
        "operation {name}: {missing:?}"
    );
    let missing = registry
        .start_set_replicas(&fixture.endpoint(), "404", 2)
        .await;
    let missing = match missing {
        Ok(operation) => wait(registry, operation, &TEST_BACKOFF, "scale 404").await,
        Err(error) => Err(error),
    };
    assert!(missing.is_err(), "scaling an undeployed model: {missing:?}");
}

/// With a region dark ([`DarkRegions`], shared with the registry), every
/// call addressed to it fails transiently, and a call that needs it (a
/// copy out of a dark primary) too, while the other region keeps
/// answering. Runs after [`run_all`]; leaves every region reachable.
pub async fn a_dark_region_is_unreachable(
    registry: &dyn ModelRegistry,
    fixture: &Fixture,
    dark: &DarkRegions,
) {
    let transient = |call: &str, result: Result<(), ModelError>| match result {
        Err(error) if error.is_transient() => {}
        other => panic!("{call} with its region dark: {other:?}, not a transient error"),
    };
    dark.darken(fixture.primary.as_str());
    transient(
        "get the model in the primary",
        registry.model(&fixture.source()).await.map(drop),
    );
    transient(
        "copy out of the primary",
        registry
            .start_copy(&fixture.source(), "1", &fixture.standby)
            .await
            .map(drop),
    );
    let standby = registry
        .endpoint(&fixture.endpoint())
        .await
        .unwrap_or_else(|e| panic!("the standby answers while the primary is dark: {e}"));
    registry
        .model(&fixture.copy())
        .await
        .unwrap_or_else(|e| panic!("the standby's model while the primary is dark: {e}"))
        .unwrap_or_else(|| panic!("{} is there", fixture.copy()));
    dark.restore(fixture.primary.as_str());

    dark.darken(fixture.standby.as_str());
    transient(
        "get the standby's endpoint",
        registry.endpoint(&fixture.endpoint()).await.map(drop),
    );
    transient(
        "set the standby's traffic",
        registry
            .set_traffic(&fixture.endpoint(), &standby.traffic)
            .await
            .map(drop),
    );
    if let Some(deployed) = standby.deployed.first() {
        transient(
            "scale on the standby",
            registry
                .start_set_replicas(&fixture.endpoint(), &deployed.id, 2)
                .await
                .map(drop),
        );
    }
    dark.restore(fixture.standby.as_str());
    registry
        .model(&fixture.source())
        .await
        .unwrap_or_else(|e| panic!("the primary answers once it is back: {e}"));
}
