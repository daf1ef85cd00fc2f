//! What data-sync must do, as plain async functions that panic with a
//! precise message when it does not: run by this crate's tests on the local
//! backends and by `lifeboat-tests` against fake-gcs-server and the
//! Firestore emulator, so both prove the same behaviour.
//!
//! [`Fixture::create`] writes a topology with two bucket assets whose bucket
//! names start with a caller-chosen prefix (unique per run on a shared
//! emulator): `mirrored` (delete policy mirror, replicas in two regions) and
//! `kept` (delete policy keep 1 h, one replica), and one dataset asset
//! `events` with replica datasets in both standby regions.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use lifeboat_shared::events::StorageObject;
use lifeboat_shared::metrics::state::StateMetrics;
use lifeboat_shared::pause::{self, Pause};
use lifeboat_shared::state::StateStore;
use lifeboat_shared::storage::{
    ObjectMeta, ObjectRef, ObjectStore, PutOptions, StorageError, bytes_stream,
};
use lifeboat_shared::topology::{BucketAsset, Topology};
use lifeboat_shared::warehouse::{Column, TableRef, Warehouse};

use crate::DataSync;
use crate::bucket_sync::{Change, Converged, Outcome, on_object_event};
use crate::ledger::{self, Observation};
use crate::reconcile::{RegionReport, reconcile_all};
use crate::tables::{self, TableSync};
use lifeboat_shared::records::data_rpo as rpo;

pub mod bulk;
pub mod racing;

use racing::RacingWriter;

/// The topology [`Fixture::create`] serves, for bucket names starting with
/// `prefix`: also what a test running the service's binary writes to a file.
pub fn topology_yaml(prefix: &str) -> String {
    let datasets = prefix.replace('-', "_");
    format!(
        "project: lifeboat-test
regions:
  - id: us-central1
    role: primary
  - id: us-east1
    role: standby
  - id: europe-west1
    role: pilot-light
workloads:
  - id: training-data
    class: research-training
    pattern: pilot-light
    assets:
      buckets:
        - id: mirrored
          source: {prefix}-src
          replicas:
            us-east1: {prefix}-use1
            europe-west1: {prefix}-euw1
        - id: kept
          source: {prefix}-ksrc
          replicas:
            us-east1: {prefix}-kuse1
          delete-policy:
            keep: 1h
      datasets:
        - id: events
          source: {datasets}_src
          replicas:
            us-east1: {datasets}_use1
            europe-west1: {datasets}_euw1
"
    )
}

/// A data-sync context on a topology of its own, its buckets created.
#[derive(Debug)]
pub struct Fixture {
    /// The context under test.
    pub sync: DataSync,
}

impl Fixture {
    /// Writes the topology for bucket names starting with `prefix` (at most
    /// 50 lowercase characters), creates its buckets and returns the context.
    pub async fn create(
        prefix: &str,
        storage: Arc<dyn ObjectStore>,
        state: Arc<dyn StateStore>,
        warehouse: Arc<dyn Warehouse>,
    ) -> Fixture {
        let yaml = topology_yaml(prefix);
        let topology = Topology::parse(&yaml, "scenario.yaml")
            .unwrap_or_else(|problems| panic!("scenario topology: {problems}"));
        for (bucket, region) in topology.buckets() {
            storage
                .create_bucket(bucket.as_str(), region.as_str())
                .await
                .unwrap_or_else(|error| panic!("create bucket {bucket}: {error}"));
        }
        let project = topology.project().as_str().to_string();
        let primary = topology.primary().to_string();
        for asset in topology.workloads().iter().flat_map(|w| &w.assets.datasets) {
            let mut datasets = vec![(asset.source.as_str(), primary.as_str())];
            datasets.extend(asset.replicas.iter().map(|(r, d)| (d.as_str(), r.as_str())));
            for (dataset, location) in datasets {
                warehouse
                    .create_dataset(&project, dataset, location)
                    .await
                    .unwrap_or_else(|error| panic!("create dataset {dataset}: {error}"));
            }
        }
        Fixture {
            sync: DataSync {
                topology: Arc::new(topology),
                storage,
                metrics: Arc::new(StateMetrics::new(state.clone())),
                state,
                warehouse,
                bulk: None,
            },
        }
    }

    /// The bucket asset with `id` (`mirrored` or `kept`).
    pub fn asset(&self, id: &str) -> BucketAsset {
        self.sync
            .topology
            .workloads()
            .iter()
            .flat_map(|w| w.assets.buckets.iter())
            .find(|asset| asset.id.as_str() == id)
            .cloned()
            .unwrap_or_else(|| panic!("no bucket asset {id}"))
    }

    /// Writes `bytes` as `name` in the source bucket of `asset`.
    pub async fn write(
        &self,
        asset: &BucketAsset,
        name: &str,
        bytes: &[u8],
        options: PutOptions,
    ) -> ObjectMeta {
        let object = ObjectRef::new(asset.source.as_str(), name);
        self.sync
            .storage
            .put(
                &object,
                bytes_stream(Bytes::copy_from_slice(bytes)),
                options,
            )
            .await
            .unwrap_or_else(|error| panic!("put {object}: {error}"))
    }

    /// Deletes `name` from the source bucket of `asset`.
    pub async fn remove(&self, asset: &BucketAsset, name: &str) {
        let object = ObjectRef::new(asset.source.as_str(), name);
        self.sync
            .storage
            .delete(&object, None)
            .await
            .unwrap_or_else(|error| panic!("delete {object}: {error}"));
    }

    /// Delivers a finalize or delete event of `meta` and returns its outcome.
    pub async fn deliver(&self, asset: &BucketAsset, change: Change, meta: &ObjectMeta) -> Outcome {
        on_object_event(&self.sync, asset, change, &event_object(meta), Utc::now())
            .await
            .unwrap_or_else(|error| panic!("{change:?} of {}: {error}", meta.object))
    }

    /// The content of `name` in the replica of `asset` in `region`, `None`
    /// when it does not exist.
    pub async fn replica(
        &self,
        asset: &BucketAsset,
        region: &str,
        name: &str,
    ) -> Option<(ObjectMeta, Vec<u8>)> {
        let bucket = asset
            .replica_bucket(region)
            .unwrap_or_else(|| panic!("asset {} has no replica in {region}", asset.id));
        let object = ObjectRef::new(bucket, name);
        match self.sync.storage.get(&object).await {
            Ok((meta, mut body)) => {
                let mut bytes = Vec::new();
                while let Some(chunk) = body.next().await {
                    bytes.extend_from_slice(
                        &chunk.unwrap_or_else(|error| panic!("read {object}: {error}")),
                    );
                }
                Some((meta, bytes))
            }
            Err(StorageError::NotFound { .. }) => None,
            Err(error) => panic!("get {object}: {error}"),
        }
    }

    /// Asserts that every replica of `asset` holds exactly `bytes` as `name`.
    pub async fn assert_replicated(&self, asset: &BucketAsset, name: &str, bytes: &[u8]) {
        for region in asset.replicas.keys() {
            let (_, content) = self
                .replica(asset, region.as_str(), name)
                .await
                .unwrap_or_else(|| {
                    panic!("{name:?} missing in the {region} replica of {}", asset.id)
                });
            assert_eq!(
                content, bytes,
                "content of {name:?} in the {region} replica of {}",
                asset.id
            );
        }
    }

    /// Asserts that no replica of `asset` holds `name`.
    pub async fn assert_absent(&self, asset: &BucketAsset, name: &str) {
        for region in asset.replicas.keys() {
            assert!(
                self.replica(asset, region.as_str(), name).await.is_none(),
                "{name:?} still in the {region} replica of {}",
                asset.id
            );
        }
    }
}

/// The event data a finalize or delete of `meta` carries.
pub fn event_object(meta: &ObjectMeta) -> StorageObject {
    StorageObject {
        bucket: meta.object.bucket.clone(),
        name: meta.object.name.clone(),
        generation: meta.generation,
        metageneration: Some(1),
        size: meta.size,
        crc32c: meta.crc32c,
        content_type: meta.content_type.clone(),
        metadata: meta.metadata.clone(),
        storage_class: None,
        time_created: Some(meta.updated),
        updated: Some(meta.updated),
    }
}

/// A binary-mode CloudEvent as Eventarc sends it for `meta` (`kind`
/// `finalized` or `deleted`), to POST to [`crate::router`].
pub fn storage_event(
    id: &str,
    kind: &str,
    meta: &ObjectMeta,
) -> axum::http::Request<axum::body::Body> {
    let crc = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        meta.crc32c.to_be_bytes(),
    );
    let body = serde_json::json!({
        "bucket": meta.object.bucket,
        "name": meta.object.name,
        "generation": meta.generation.to_string(),
        "size": meta.size.to_string(),
        "crc32c": crc,
    });
    axum::http::Request::post("/")
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header(
            "ce-source",
            format!(
                "//storage.googleapis.com/projects/_/buckets/{}",
                meta.object.bucket
            ),
        )
        .header("ce-type", format!("google.cloud.storage.object.v1.{kind}"))
        .header("ce-time", "2026-11-25T16:00:00Z")
        .body(axum::body::Body::from(body.to_string()))
        .expect("request")
}

/// Runs every scenario on one fixture.
pub async fn run_all(fixture: &Fixture) {
    finalize_copies_content_and_metadata(fixture).await;
    late_and_duplicate_finalizes_never_go_back(fixture).await;
    a_finalize_settles_on_a_generation_written_during_its_copy(fixture).await;
    delete_then_recreate_ends_present(fixture).await;
    mirror_policy_deletes_replicas(fixture).await;
    keep_policy_keeps_replicas(fixture).await;
    unusual_names_replicate(fixture).await;
    names_no_filesystem_holds_replicate(fixture).await;
    reconcile_repairs_what_events_missed(fixture).await;
    reconcile_deletes_once_the_keep_period_ends(fixture).await;
    reconcile_settles_on_a_generation_written_during_its_copy(fixture).await;
    table_changes_are_copied_and_verified(fixture).await;
}

/// A finalize copies the object to every replica, with its content type and
/// custom metadata.
pub async fn finalize_copies_content_and_metadata(fixture: &Fixture) {
    let asset = fixture.asset("mirrored");
    let options = PutOptions {
        content_type: Some("application/x-parquet".to_string()),
        metadata: BTreeMap::from([("owner".to_string(), "team-ml".to_string())]),
        if_generation_match: None,
    };
    let written = fixture
        .write(&asset, "features/part-0.parquet", b"columns", options)
        .await;
    let outcome = fixture.deliver(&asset, Change::Finalized, &written).await;
    assert!(
        matches!(outcome, Outcome::Synced(ref regions) if regions.len() == 2),
        "{outcome:?}"
    );
    fixture
        .assert_replicated(&asset, "features/part-0.parquet", b"columns")
        .await;
    for region in ["us-east1", "europe-west1"] {
        let (meta, _) = fixture
            .replica(&asset, region, "features/part-0.parquet")
            .await
            .expect("replica");
        assert_eq!(
            meta.content_type.as_deref(),
            Some("application/x-parquet"),
            "content type in {region}"
        );
        assert_eq!(
            meta.metadata.get("owner").map(String::as_str),
            Some("team-ml"),
            "metadata in {region}"
        );
        assert!(written.verifies(&meta), "size and CRC32C in {region}");
    }
    let again = fixture.deliver(&asset, Change::Finalized, &written).await;
    assert!(
        matches!(&again, Outcome::Synced(regions) if regions.len() == 2),
        "a duplicate finalize converges on the same replicas: {again:?}"
    );
    fixture
        .assert_replicated(&asset, "features/part-0.parquet", b"columns")
        .await;
}

/// A late finalize of an old generation never overwrites a newer replica,
/// whether it arrives before or after the newer one's.
pub async fn late_and_duplicate_finalizes_never_go_back(fixture: &Fixture) {
    let asset = fixture.asset("mirrored");
    let name = "reordered/model.bin";
    let old = fixture
        .write(&asset, name, b"old generation", PutOptions::default())
        .await;
    let new = fixture
        .write(&asset, name, b"new generation!", PutOptions::default())
        .await;
    assert!(new.generation > old.generation);

    // The old generation's event arrives first, after the new one exists:
    // the newest is what gets copied.
    fixture.deliver(&asset, Change::Finalized, &old).await;
    fixture
        .assert_replicated(&asset, name, b"new generation!")
        .await;
    fixture.deliver(&asset, Change::Finalized, &new).await;
    fixture.deliver(&asset, Change::Finalized, &new).await;
    let late = fixture.deliver(&asset, Change::Finalized, &old).await;
    let Outcome::Synced(regions) = &late else {
        panic!("a late finalize converges: {late:?}");
    };
    for (region, state) in regions {
        assert!(
            matches!(state, Converged::Replicated { generation, .. } if *generation == new.generation),
            "a late finalize leaves the newest generation in {region}: {state:?}"
        );
    }
    fixture
        .assert_replicated(&asset, name, b"new generation!")
        .await;
}

/// A producer overwrites an object right after a finalize's copy to one
/// replica: the finalize reads the source once after its copies, sees the
/// newer generation and brings every replica to it, even before that
/// generation's own event arrives.
pub async fn a_finalize_settles_on_a_generation_written_during_its_copy(fixture: &Fixture) {
    let asset = fixture.asset("mirrored");
    let racing = Arc::new(RacingWriter::new(Arc::clone(&fixture.sync.storage)));
    let sync = DataSync {
        storage: racing.clone(),
        ..fixture.sync.clone()
    };
    let name = "settle/during the copy.bin";
    let first = fixture
        .write(&asset, name, b"first", PutOptions::default())
        .await;
    let east_bucket = asset
        .replica_bucket("us-east1")
        .expect("a us-east1 replica");
    racing.arm(
        first.object.clone(),
        ObjectRef::new(east_bucket, name),
        b"written during the copy",
    );
    let outcome = on_object_event(
        &sync,
        &asset,
        Change::Finalized,
        &event_object(&first),
        Utc::now(),
    )
    .await
    .unwrap_or_else(|error| panic!("finalize of {name}: {error}"));
    assert!(!racing.is_armed(), "the copy to us-east1 was never made");
    assert!(matches!(outcome, Outcome::Synced(_)), "{outcome:?}");
    fixture
        .assert_replicated(&asset, name, b"written during the copy")
        .await;
}

/// A delete followed by a re-create ends with the object present, in every
/// order of delivery.
pub async fn delete_then_recreate_ends_present(fixture: &Fixture) {
    let asset = fixture.asset("mirrored");
    for (case, delete_first) in [("in-order", true), ("delete-late", false)] {
        let name = format!("recreated/{case}");
        let first = fixture
            .write(&asset, &name, b"first", PutOptions::default())
            .await;
        fixture.deliver(&asset, Change::Finalized, &first).await;
        fixture.remove(&asset, &name).await;
        let second = fixture
            .write(&asset, &name, b"second", PutOptions::default())
            .await;
        if delete_first {
            fixture.deliver(&asset, Change::Deleted, &first).await;
            fixture.deliver(&asset, Change::Finalized, &second).await;
        } else {
            fixture.deliver(&asset, Change::Finalized, &second).await;
            let late = fixture.deliver(&asset, Change::Deleted, &first).await;
            let kept = match &late {
                Outcome::Stale => true,
                Outcome::Synced(regions) => regions
                    .iter()
                    .all(|(_, state)| matches!(state, Converged::Replicated { .. })),
            };
            assert!(
                kept,
                "{case}: a delete of a generation already replaced: {late:?}"
            );
        }
        fixture.assert_replicated(&asset, &name, b"second").await;
    }
}

/// Under `delete-policy: mirror` a delete removes every replica; a duplicate
/// delete is harmless.
pub async fn mirror_policy_deletes_replicas(fixture: &Fixture) {
    let asset = fixture.asset("mirrored");
    let name = "deleted/old-features.csv";
    let written = fixture
        .write(&asset, name, b"a,b\n1,2\n", PutOptions::default())
        .await;
    fixture.deliver(&asset, Change::Finalized, &written).await;
    fixture.assert_replicated(&asset, name, b"a,b\n1,2\n").await;
    fixture.remove(&asset, name).await;
    fixture.deliver(&asset, Change::Deleted, &written).await;
    fixture.assert_absent(&asset, name).await;
    fixture.deliver(&asset, Change::Deleted, &written).await;
    // A finalize delivered after the delete finds nothing to copy.
    fixture.deliver(&asset, Change::Finalized, &written).await;
    fixture.assert_absent(&asset, name).await;
}

/// Under `delete-policy: {keep: …}` a delete keeps the replica and records
/// when the delete was seen, for the reconcile to act on once the period
/// ends.
pub async fn keep_policy_keeps_replicas(fixture: &Fixture) {
    let asset = fixture.asset("kept");
    let name = "kept/important.json";
    let written = fixture
        .write(&asset, name, b"{}", PutOptions::default())
        .await;
    fixture.deliver(&asset, Change::Finalized, &written).await;
    fixture.remove(&asset, name).await;
    let before = Utc::now();
    fixture.deliver(&asset, Change::Deleted, &written).await;
    fixture.assert_replicated(&asset, name, b"{}").await;
    let known = ledger::read(fixture.sync.state.as_ref(), asset.source.as_str(), name)
        .await
        .expect("ledger")
        .ledger;
    assert!(!known.live, "the ledger knows the source is gone");
    assert!(known.deleted_at.is_some_and(|at| at >= before), "{known:?}");
}

/// Names with spaces, unicode, `#`, `?`, `%` and about 1000 bytes replicate
/// under the same name with the same bytes.
pub async fn unusual_names_replicate(fixture: &Fixture) {
    let asset = fixture.asset("mirrored");
    let names = [
        "odd/with space".to_string(),
        "odd/ünïcödé 日本 🚀".to_string(),
        "odd/hash#fragment".to_string(),
        "odd/question?x=1&y".to_string(),
        "odd/percent%20%2F%".to_string(),
        "odd/plus+;:@<>'\"".to_string(),
        // 998 bytes; segments stay under the 255 bytes a filesystem allows.
        format!("odd/{}", vec!["é".repeat(99); 5].join("/")),
    ];
    for name in &names {
        let written = fixture
            .write(&asset, name, name.as_bytes(), PutOptions::default())
            .await;
        fixture.deliver(&asset, Change::Finalized, &written).await;
        fixture
            .assert_replicated(&asset, name, name.as_bytes())
            .await;
    }
}

/// Names Cloud Storage accepts and a filesystem cannot hold as a path
/// (`../x`, `a//b`, `./x`, `..` segments, 1000 bytes without `/`, a tab, a
/// NUL...) replicate byte for byte under the same name: half by their
/// finalize events, half by the reconcile (which lists them); their deletes
/// remove the replicas.
pub async fn names_no_filesystem_holds_replicate(fixture: &Fixture) {
    let asset = fixture.asset("mirrored");
    let names = lifeboat_shared::storage::conformance::names_no_filesystem_holds_list();
    let mut written = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let meta = fixture
            .write(&asset, name, name.as_bytes(), PutOptions::default())
            .await;
        if index % 2 == 0 {
            fixture.deliver(&asset, Change::Finalized, &meta).await;
        }
        written.push(meta);
    }
    let reports = reconcile(fixture).await;
    assert!(reports.values().all(|r| r.failed == 0), "{reports:#?}");
    for name in &names {
        fixture
            .assert_replicated(&asset, name, name.as_bytes())
            .await;
    }
    for meta in &written {
        fixture.remove(&asset, &meta.object.name).await;
        fixture.deliver(&asset, Change::Deleted, meta).await;
        fixture.assert_absent(&asset, &meta.object.name).await;
    }
}

/// Reconciles every asset and returns the reports by `asset/region`.
pub async fn reconcile(fixture: &Fixture) -> BTreeMap<String, RegionReport> {
    let reports = reconcile_all(&fixture.sync, 4, &|_: &RegionReport| {})
        .await
        .unwrap_or_else(|error| panic!("reconcile: {error}"));
    reports
        .into_iter()
        .map(|report| (format!("{}/{}", report.asset, report.region), report))
        .collect()
}

/// Writes `bytes` as `name` straight into the replica of `asset` in
/// `region`, as if something else had written there.
async fn write_replica(
    fixture: &Fixture,
    asset: &BucketAsset,
    region: &str,
    name: &str,
    bytes: &[u8],
) {
    let bucket = asset.replica_bucket(region).expect("replica region");
    let object = ObjectRef::new(bucket, name);
    fixture
        .sync
        .storage
        .put(
            &object,
            bytes_stream(Bytes::copy_from_slice(bytes)),
            PutOptions::default(),
        )
        .await
        .unwrap_or_else(|error| panic!("put {object}: {error}"));
}

/// Objects whose events were lost (new, changed, deleted) are found and
/// repaired by the reconcile, reported as drift, and a second reconcile
/// finds nothing left.
pub async fn reconcile_repairs_what_events_missed(fixture: &Fixture) {
    let mirrored = fixture.asset("mirrored");
    let kept = fixture.asset("kept");
    let settled = reconcile(fixture).await;
    assert!(settled.values().all(|r| r.failed == 0), "{settled:#?}");

    for name in ["missed/a", "missed/b c", "missed/日本#?%"] {
        fixture
            .write(&mirrored, name, name.as_bytes(), PutOptions::default())
            .await;
    }
    let changed = fixture
        .write(
            &mirrored,
            "missed/changed",
            b"version 1",
            PutOptions::default(),
        )
        .await;
    fixture
        .deliver(&mirrored, Change::Finalized, &changed)
        .await;
    write_replica(
        fixture,
        &mirrored,
        "us-east1",
        "missed/changed",
        b"tampered",
    )
    .await;
    write_replica(
        fixture,
        &mirrored,
        "europe-west1",
        "missed/deleted",
        b"stale",
    )
    .await;
    write_replica(fixture, &kept, "us-east1", "missed/kept", b"kept").await;

    let reports = reconcile(fixture).await;
    let east = &reports["mirrored/us-east1"];
    assert_eq!(
        (
            east.copied_missing,
            east.repaired_different,
            east.missed_deletes,
            east.failed
        ),
        (3, 1, 0, 0),
        "{east:#?}"
    );
    let west = &reports["mirrored/europe-west1"];
    assert_eq!(
        (
            west.copied_missing,
            west.repaired_different,
            west.missed_deletes,
            west.deleted
        ),
        (3, 0, 1, 1),
        "{west:#?}"
    );
    assert_eq!(west.drift(), 4);
    let kept_east = &reports["kept/us-east1"];
    assert_eq!(
        (kept_east.missed_deletes, kept_east.deleted),
        (1, 0),
        "{kept_east:#?}"
    );
    for name in ["missed/a", "missed/b c", "missed/日本#?%"] {
        fixture
            .assert_replicated(&mirrored, name, name.as_bytes())
            .await;
    }
    fixture
        .assert_replicated(&mirrored, "missed/changed", b"version 1")
        .await;
    fixture.assert_absent(&mirrored, "missed/deleted").await;
    fixture
        .assert_replicated(&kept, "missed/kept", b"kept")
        .await;

    let again = reconcile(fixture).await;
    for (key, report) in &again {
        assert_eq!(
            (report.drift(), report.failed),
            (0, 0),
            "{key}: {report:#?}"
        );
        assert_eq!(
            report.source_objects + report.kept,
            report.replica_objects,
            "{key}: {report:#?}"
        );
    }
    // Each copy's exposure went to the metrics with the check: nothing
    // left behind, 0 s.
    let points = fixture
        .sync
        .metrics
        .latest(lifeboat_shared::metrics::DATA_RPO_EXPOSURE)
        .await
        .expect("metrics read");
    let mirrored_points: Vec<_> = points
        .iter()
        .filter(|p| p.labels.get("asset").map(String::as_str) == Some(mirrored.id.as_str()))
        .collect();
    assert_eq!(
        mirrored_points.len(),
        2,
        "one per replica region: {points:?}"
    );
    for point in mirrored_points {
        assert_eq!(point.value, 0.0, "{point:?}");
        assert_eq!(point.labels["kind"], "bucket", "{point:?}");
    }
}

/// A replica kept under `delete-policy: {keep: 1h}` is deleted by the first
/// reconcile after the hour since the delete was seen.
pub async fn reconcile_deletes_once_the_keep_period_ends(fixture: &Fixture) {
    let kept = fixture.asset("kept");
    let name = "expired/old.bin";
    write_replica(fixture, &kept, "us-east1", name, b"old").await;
    let seen = Utc::now() - chrono::TimeDelta::hours(2);
    ledger::record(
        fixture.sync.state.as_ref(),
        kept.source.as_str(),
        name,
        &[Observation::Deleted {
            region: "us-east1".to_string(),
            generation: 1,
            at: seen,
            replica_deleted: false,
        }],
        None,
    )
    .await
    .expect("ledger");
    let reports = reconcile(fixture).await;
    let report = &reports["kept/us-east1"];
    assert_eq!(
        (report.deleted, report.missed_deletes, report.failed),
        (1, 0, 0),
        "{report:#?}"
    );
    fixture.assert_absent(&kept, name).await;
}

/// A producer overwrites an object right after the reconcile copied it to
/// one replica: the reconcile reads the source after its copies and ends
/// with the newest generation in that replica (the other one may have
/// settled before the write, which the write's own event then syncs),
/// among a few copies and among many (which the reconcile may settle by
/// listing; `settle`'s tests prove both ways find the same copies).
pub async fn reconcile_settles_on_a_generation_written_during_its_copy(fixture: &Fixture) {
    let mirrored = fixture.asset("mirrored");
    let racing = Arc::new(RacingWriter::new(Arc::clone(&fixture.sync.storage)));
    let sync = DataSync {
        storage: racing.clone(),
        ..fixture.sync.clone()
    };
    let reconcile_racing = || async {
        reconcile_all(&sync, 4, &|_: &RegionReport| {})
            .await
            .unwrap_or_else(|error| panic!("reconcile: {error}"))
    };
    let source = |name: &str| ObjectRef::new(mirrored.source.as_str(), name);
    let east_bucket = mirrored
        .replica_bucket("us-east1")
        .expect("a us-east1 replica");
    let east = |name: &str| ObjectRef::new(east_bucket, name);
    let east_holds = |name: &'static str, bytes: &'static [u8]| async move {
        let (_, content) = fixture
            .replica(&fixture.asset("mirrored"), "us-east1", name)
            .await
            .unwrap_or_else(|| panic!("{name} missing in the us-east1 replica"));
        assert_eq!(content, bytes, "{name} in the us-east1 replica");
    };

    // A few copies.
    for name in ["race/a", "race/b", "race/c"] {
        fixture
            .write(&mirrored, name, b"first", PutOptions::default())
            .await;
    }
    racing.arm(source("race/b"), east("race/b"), b"written during the copy");
    let reports = reconcile_racing().await;
    assert!(!racing.is_armed(), "the copy of race/b was never made");
    assert!(reports.iter().all(|r| r.failed == 0), "{reports:#?}");
    east_holds("race/b", b"written during the copy").await;
    fixture
        .assert_replicated(&mirrored, "race/a", b"first")
        .await;

    // Many copies, the raced one first in name order.
    let mirrored_ref = &mirrored;
    futures::stream::iter(0..60)
        .for_each_concurrent(8, |i| async move {
            let name = format!("race/many/{i:03}");
            fixture
                .write(mirrored_ref, &name, name.as_bytes(), PutOptions::default())
                .await;
        })
        .await;
    fixture
        .write(&mirrored, "race/a", b"second", PutOptions::default())
        .await;
    racing.arm(source("race/a"), east("race/a"), b"third, during the copy");
    let reports = reconcile_racing().await;
    assert!(!racing.is_armed(), "the copy of race/a was never made");
    assert!(reports.iter().all(|r| r.failed == 0), "{reports:#?}");
    east_holds("race/a", b"third, during the copy").await;
}

/// A changed table is copied to every replica dataset and verified by row
/// count, its copy recorded per region; the reconcile copies a table no
/// event announced and leaves current tables alone.
pub async fn table_changes_are_copied_and_verified(fixture: &Fixture) {
    let sync = &fixture.sync;
    let asset = sync
        .topology
        .workloads()
        .iter()
        .flat_map(|w| w.assets.datasets.iter())
        .find(|asset| asset.id.as_str() == "events")
        .cloned()
        .expect("dataset asset");
    let project = sync.topology.project().as_str();
    let source_table = |table: &str| TableRef::new(project, asset.source.as_str(), table);
    let columns = [
        Column {
            name: "id".to_string(),
            kind: "INTEGER".to_string(),
        },
        Column {
            name: "page".to_string(),
            kind: "STRING".to_string(),
        },
    ];
    let clicks = source_table("clicks");
    sync.warehouse
        .create_table(&clicks, &columns)
        .await
        .expect("create clicks");
    let rows = |from: i64, to: i64| -> Vec<serde_json::Value> {
        (from..to)
            .map(|i| serde_json::json!({"id": i, "page": format!("/p/{i}")}))
            .collect()
    };
    sync.warehouse
        .insert_rows(&clicks, &rows(0, 2))
        .await
        .expect("insert");

    for expected in [2, 3] {
        if expected == 3 {
            sync.warehouse
                .insert_rows(&clicks, &rows(2, 3))
                .await
                .expect("insert");
        }
        let done = tables::sync_table(sync, &asset, "clicks", true)
            .await
            .unwrap_or_else(|error| panic!("sync clicks: {error}"));
        assert_eq!(done.len(), 2, "{done:?}");
        for (region, replica) in &asset.replicas {
            let table = TableRef::new(project, replica.as_str(), "clicks");
            let counted = sync
                .warehouse
                .row_count(&table)
                .await
                .unwrap_or_else(|e| panic!("{table}: {e}"));
            assert_eq!(counted, expected, "rows of {table}");
            let copy = tables::last_copy(sync, &asset, region.as_str(), "clicks")
                .await
                .expect("copy record")
                .unwrap_or_else(|| panic!("no copy record for {region}"));
            assert_eq!(copy.rows, expected, "recorded rows in {region}");
        }
    }

    let views = source_table("views");
    sync.warehouse
        .create_table(&views, &columns)
        .await
        .expect("create views");
    sync.warehouse
        .insert_rows(&views, &rows(0, 5))
        .await
        .expect("insert");
    let copies = tables::reconcile_tables(sync)
        .await
        .expect("reconcile tables");
    let copied: Vec<(&str, &str, u64)> = copies
        .iter()
        .map(|c| (c.table.as_str(), c.region.as_str(), c.rows))
        .collect();
    assert_eq!(
        copied,
        [("views", "europe-west1", 5), ("views", "us-east1", 5)],
        "{copies:#?}"
    );
    let again = tables::reconcile_tables(sync)
        .await
        .expect("reconcile tables");
    assert!(again.is_empty(), "current tables copied again: {again:#?}");
    let current = tables::sync_table(sync, &asset, "views", false)
        .await
        .expect("sync views");
    assert!(
        current.iter().all(|(_, done)| *done == TableSync::Current),
        "{current:?}"
    );

    let checked = Utc::now() - chrono::TimeDelta::minutes(5);
    let records = rpo::read_all(sync.state.as_ref())
        .await
        .expect("RPO records");
    for region in ["us-east1", "europe-west1"] {
        let record = records
            .iter()
            .find(|r| {
                r.kind == rpo::AssetKind::Dataset && r.asset == "events" && r.region == region
            })
            .unwrap_or_else(|| panic!("no RPO record for events in {region}: {records:#?}"));
        assert!(
            record.checked_at.is_some_and(|at| at >= checked),
            "{record:?}"
        );
        assert_eq!(record.target_seconds, 24 * 3600, "research training's RPO");
    }
}

/// Replication into us-east1 paused by a drill: a finalize and a table
/// change reach the other region only, each change is noted as
/// unreplicated in us-east1 (its exposure grows), reconciles during the
/// pause leave us-east1 alone, and the first reconciles after the pause
/// copy the object and the table and clear the exposure.
pub async fn a_paused_region_catches_up_at_the_first_reconcile_after_the_pause(fixture: &Fixture) {
    let sync = &fixture.sync;
    let asset = fixture.asset("mirrored");
    let now = Utc::now();
    let run = "isolation--data-sync";
    pause::pause(
        sync.state.as_ref(),
        &Pause {
            workload: "training-data".into(),
            region: "us-east1".into(),
            run: run.into(),
            paused_at: now,
            until: now + chrono::TimeDelta::minutes(5),
        },
    )
    .await
    .expect("pause");
    let name = "paused/during.bin";
    let written = fixture
        .write(&asset, name, b"while paused", PutOptions::default())
        .await;
    match fixture.deliver(&asset, Change::Finalized, &written).await {
        Outcome::Synced(regions) => {
            let regions: Vec<&str> = regions.iter().map(|(r, _)| r.as_str()).collect();
            assert_eq!(regions, ["europe-west1"], "only the unpaused region");
        }
        other => panic!("expected a sync, got {other:?}"),
    }
    assert!(fixture.replica(&asset, "us-east1", name).await.is_none());
    assert!(
        fixture
            .replica(&asset, "europe-west1", name)
            .await
            .is_some()
    );
    let exposure = |rows: &[rpo::Exposure]| {
        rows.iter()
            .find(|r| r.asset == "mirrored" && r.region == "us-east1")
            .and_then(|r| r.exposure_seconds)
    };
    let later = Utc::now() + chrono::TimeDelta::hours(30);
    let rows = rpo::report(&sync.topology, sync.state.as_ref(), later)
        .await
        .expect("report");
    let grown = exposure(&rows).expect("us-east1 exposure recorded");
    assert!(grown > 29 * 3600, "{grown} s");
    assert!(
        !rows
            .iter()
            .find(|r| r.asset == "mirrored" && r.region == "us-east1")
            .is_some_and(|r| r.meets_target),
        "30 h exposure against a 24 h target"
    );

    // A table change while paused: copied to europe-west1 only, noted in
    // us-east1.
    let dataset = sync
        .topology
        .workloads()
        .iter()
        .flat_map(|w| w.assets.datasets.iter())
        .find(|asset| asset.id.as_str() == "events")
        .cloned()
        .expect("dataset asset");
    let project = sync.topology.project().as_str();
    let table = TableRef::new(project, dataset.source.as_str(), "paused_views");
    let columns = [Column {
        name: "id".to_string(),
        kind: "INTEGER".to_string(),
    }];
    sync.warehouse
        .create_table(&table, &columns)
        .await
        .expect("create table");
    sync.warehouse
        .insert_rows(&table, &[serde_json::json!({"id": 1})])
        .await
        .expect("insert");
    let done = tables::sync_table(sync, &dataset, "paused_views", true)
        .await
        .unwrap_or_else(|error| panic!("sync paused_views: {error}"));
    let paused_table = done
        .iter()
        .find(|(region, _)| region == "us-east1")
        .map(|(_, done)| done);
    assert_eq!(paused_table, Some(&TableSync::Paused), "{done:?}");
    assert!(
        done.iter()
            .any(|(region, done)| region == "europe-west1" && matches!(done, TableSync::Copied(_))),
        "{done:?}"
    );
    let table_exposure = |rows: &[rpo::Exposure]| {
        rows.iter()
            .find(|r| r.asset == "events" && r.region == "us-east1")
            .and_then(|r| r.exposure_seconds)
    };
    let rows = rpo::report(&sync.topology, sync.state.as_ref(), later)
        .await
        .expect("report");
    assert!(
        table_exposure(&rows).is_some_and(|e| e > 29 * 3600),
        "{rows:?}"
    );
    tables::reconcile_tables(sync)
        .await
        .unwrap_or_else(|error| panic!("reconcile tables: {error}"));
    let rows = rpo::report(&sync.topology, sync.state.as_ref(), later)
        .await
        .expect("report");
    assert!(
        table_exposure(&rows).is_some_and(|e| e > 29 * 3600),
        "a table reconcile during the pause keeps the note"
    );

    let during = reconcile(fixture).await;
    assert!(!during.contains_key("mirrored/us-east1"), "{during:?}");
    assert!(fixture.replica(&asset, "us-east1", name).await.is_none());
    let rows = rpo::report(&sync.topology, sync.state.as_ref(), later)
        .await
        .expect("report");
    assert_eq!(
        exposure(&rows),
        Some(grown),
        "the note survives the reconcile"
    );

    assert!(
        pause::resume(sync.state.as_ref(), "training-data", "us-east1", run)
            .await
            .expect("resume")
    );
    let after = reconcile(fixture).await;
    assert!(after.contains_key("mirrored/us-east1"), "{after:?}");
    fixture
        .assert_replicated(&asset, name, b"while paused")
        .await;
    tables::reconcile_tables(sync)
        .await
        .unwrap_or_else(|error| panic!("reconcile tables: {error}"));
    let replica = dataset
        .replicas
        .iter()
        .find(|(r, _)| r.as_str() == "us-east1");
    let (_, replica) = replica.expect("us-east1 replica dataset");
    let copied = sync
        .warehouse
        .row_count(&TableRef::new(project, replica.as_str(), "paused_views"))
        .await
        .expect("replica table after the pause");
    assert_eq!(copied, 1);
    let rows = rpo::report(&sync.topology, sync.state.as_ref(), later)
        .await
        .expect("report");
    assert_eq!(exposure(&rows), Some(0), "caught up");
    assert_eq!(table_exposure(&rows), Some(0), "table caught up");
}
