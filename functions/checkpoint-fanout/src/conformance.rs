//! The behaviour of checkpoint fan-out as plain async functions, run against
//! every pair of backends: the local filesystem and embedded state (this
//! crate's tests), fake-gcs-server and the Firestore emulator (the
//! cross-crate tests). Each scenario takes a fresh [`Rig`].

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use lifeboat_shared::events::{EventContext, StorageObject};
use lifeboat_shared::metrics::CHECKPOINT_REPLICATION_LAG;
use lifeboat_shared::metrics::state::StateMetrics;
use lifeboat_shared::pause::{self, Pause};
use lifeboat_shared::state::StateStore;
use lifeboat_shared::storage::conformance::generated_body;
use lifeboat_shared::storage::{ObjectMeta, ObjectRef, ObjectStore, PutOptions, StorageError};
use lifeboat_shared::topology::Topology;

use crate::checkpoint::list_all;
use crate::{FanoutContext, FanoutOptions, Outcome, handle_finalized};
use lifeboat_shared::records::checkpoint_rpo::{self as rpo, NewestCheckpoint};

/// The checkpoint location's id in every scenario.
pub const ASSET: &str = "ranker-ckpt";
/// The prefix checkpoints are written under.
pub const PREFIX: &str = "runs/v7/";
/// How many checkpoints each region keeps.
pub const KEEP_NEWEST: usize = 2;

/// A topology with one checkpoint location whose buckets are named after
/// `tag` (unique per test on a shared emulator), a source in us-central1,
/// replicas in us-east1 and europe-west1, and the given marker
/// (`orbax`, `{manifest: manifest.json}`...).
pub fn topology(tag: &str, marker: &str) -> Topology {
    Topology::parse(&topology_yaml(tag, marker), "conformance.yaml")
        .expect("the conformance topology is valid")
}

/// The text of [`topology`], for a test that runs the service's binary.
pub fn topology_yaml(tag: &str, marker: &str) -> String {
    format!(
        r#"
project: acme-ml-prod
regions:
  - id: us-central1
    role: primary
  - id: us-east1
    role: standby
  - id: europe-west1
    role: standby
workloads:
  - id: ranker
    class: production-training
    pattern: active-passive
    assets:
      checkpoints:
        - id: {ASSET}
          bucket: {tag}-usc1
          prefix: {PREFIX}
          marker: {marker}
          replicas:
            us-east1: {tag}-use1
            europe-west1: {tag}-euw1
          interval-steps: 100
          keep-newest: {KEEP_NEWEST}
          step-duration: 2s
"#
    )
}

/// One scenario's world: the context the function runs with, and its buckets.
#[derive(Debug)]
pub struct Rig {
    /// What the function runs with.
    pub context: FanoutContext,
    /// The source bucket.
    pub source: String,
    /// Replica bucket per region id.
    pub replicas: BTreeMap<String, String>,
}

impl Rig {
    /// Creates every bucket of `topology` (the source in the primary) and
    /// returns the rig.
    pub async fn new(
        topology: Topology,
        storage: Arc<dyn ObjectStore>,
        state: Arc<dyn StateStore>,
    ) -> Self {
        Self::without_bucket(topology, storage, state, None).await
    }

    /// Like [`Rig::new`], leaving the bucket `missing` uncreated.
    pub async fn without_bucket(
        topology: Topology,
        storage: Arc<dyn ObjectStore>,
        state: Arc<dyn StateStore>,
        missing: Option<&str>,
    ) -> Self {
        for (bucket, region) in topology.buckets() {
            if Some(bucket.as_str()) == missing {
                continue;
            }
            storage
                .create_bucket(bucket.as_str(), region.as_str())
                .await
                .expect("create bucket");
        }
        let location = &topology.workloads()[0].assets.checkpoints[0];
        let source = location.bucket.to_string();
        let replicas = location
            .replicas
            .iter()
            .map(|(region, bucket)| (region.to_string(), bucket.to_string()))
            .collect();
        Self {
            context: FanoutContext {
                topology: Arc::new(topology),
                storage,
                metrics: Arc::new(StateMetrics::new(state.clone())),
                state,
                options: FanoutOptions {
                    parallelism: 8,
                    ..FanoutOptions::default()
                },
            },
            source,
            replicas,
        }
    }

    /// The store.
    pub fn store(&self) -> &dyn ObjectStore {
        self.context.storage.as_ref()
    }

    /// Writes `shards` shards of `chunks` × 1 KiB for `step` into the source,
    /// without the marker; returns their metadata.
    pub async fn write_shards(&self, step: u64, shards: usize, chunks: usize) -> Vec<ObjectMeta> {
        let mut written = Vec::new();
        for index in 0..shards {
            let object = ObjectRef::new(
                self.source.as_str(),
                format!("{PREFIX}step_{step}/shard-{index:04}"),
            );
            let seed = step * 1000 + index as u64;
            written.push(
                self.store()
                    .put(
                        &object,
                        generated_body(seed, chunks, 1024),
                        PutOptions::default(),
                    )
                    .await
                    .expect("write shard"),
            );
        }
        written
    }

    /// Writes the object `name` (relative to step's directory) with `body`.
    pub async fn write(&self, step: u64, name: &str, body: &[u8]) -> ObjectMeta {
        let object = ObjectRef::new(self.source.as_str(), format!("{PREFIX}step_{step}/{name}"));
        self.store()
            .put(
                &object,
                lifeboat_shared::storage::bytes_stream(body.to_vec()),
                PutOptions::default(),
            )
            .await
            .expect("write object")
    }

    /// The finalize event of `object`, with event id `id`.
    pub fn event(id: &str, object: &ObjectMeta) -> (EventContext, StorageObject) {
        let context = EventContext {
            id: id.to_string(),
            source: format!(
                "//storage.googleapis.com/projects/_/buckets/{}",
                object.object.bucket
            ),
            time: Utc::now(),
            trace: None,
        };
        let object = StorageObject {
            bucket: object.object.bucket.clone(),
            name: object.object.name.clone(),
            generation: object.generation,
            metageneration: Some(1),
            size: object.size,
            crc32c: object.crc32c,
            content_type: object.content_type.clone(),
            metadata: object.metadata.clone(),
            storage_class: None,
            time_created: Some(object.updated),
            updated: Some(object.updated),
        };
        (context, object)
    }

    /// Delivers the finalize event of `object` with id `id`.
    pub async fn deliver(&self, id: &str, object: &ObjectMeta) -> Outcome {
        let (context, object) = Self::event(id, object);
        handle_finalized(&self.context, &context, &object).await
    }

    /// Writes the Orbax marker of `step` and delivers its event.
    pub async fn commit(&self, step: u64) -> Outcome {
        let marker = self.write(step, "commit_success.txt", b"ok").await;
        self.deliver(&format!("marker-{step}-{}", marker.generation), &marker)
            .await
    }

    /// Every object of `bucket` under the prefix, by name.
    pub async fn objects(&self, bucket: &str) -> BTreeMap<String, ObjectMeta> {
        list_all(self.store(), bucket, PREFIX)
            .await
            .expect("list")
            .into_iter()
            .map(|meta| (meta.object.name.clone(), meta))
            .collect()
    }

    /// Asserts that every region holds `step` committed: each source object
    /// of its directory present there with the same size and CRC32C.
    pub async fn assert_committed(&self, step: u64) {
        let directory = format!("{PREFIX}step_{step}/");
        let source: BTreeMap<_, _> = self
            .objects(&self.source)
            .await
            .into_iter()
            .filter(|(name, _)| name.starts_with(&directory))
            .collect();
        assert!(!source.is_empty(), "step {step} has nothing at the source");
        for (region, bucket) in &self.replicas {
            let there = self.objects(bucket).await;
            for (name, meta) in &source {
                let replica = there
                    .get(name)
                    .unwrap_or_else(|| panic!("{region}: {name} missing"));
                assert!(meta.verifies(replica), "{region}: {name} differs");
            }
        }
    }

    /// Asserts the invariant: in every region, every marker's checkpoint has
    /// every source shard verified next to it.
    pub async fn assert_no_half_visible_checkpoint(&self) {
        let source = self.objects(&self.source).await;
        for (region, bucket) in &self.replicas {
            let there = self.objects(bucket).await;
            for marker in there.keys().filter(|n| n.ends_with("/commit_success.txt")) {
                let directory = marker.trim_end_matches("commit_success.txt");
                for (name, meta) in source.iter().filter(|(n, _)| n.starts_with(directory)) {
                    let replica = there.get(name);
                    assert!(
                        replica.is_some_and(|r| meta.verifies(r)),
                        "{region}: marker {marker} is visible but {name} is not verified there"
                    );
                }
            }
        }
    }

    /// The RPO record of `region`.
    pub async fn newest(&self, region: &str) -> Option<NewestCheckpoint> {
        let id = NewestCheckpoint::document_id(ASSET, region);
        self.context
            .state
            .get(rpo::COLLECTION, &id)
            .await
            .expect("read RPO record")
            .map(|doc| serde_json::from_value(doc.value).expect("RPO record"))
    }
}

fn fanned_out(outcome: Outcome) -> crate::fanout::FanoutReport {
    match outcome {
        Outcome::FannedOut(report) => report,
        other => panic!("expected a fan-out, got {other:?}"),
    }
}

/// A committed checkpoint reaches every region, marker included, and the
/// RPO records say which step each region holds.
pub async fn marker_fans_out_every_shard_to_every_region(rig: &Rig) {
    rig.write_shards(100, 5, 3).await;
    let report = fanned_out(rig.commit(100).await);
    assert!(report.is_complete(), "{}", report.to_json());
    assert_eq!(report.shards, 5);
    for commit in report.regions.iter().flatten() {
        assert_eq!(commit.shards_copied, 5);
        assert_eq!(commit.bytes_copied, 5 * 3 * 1024);
    }
    rig.assert_committed(100).await;
    for region in rig.replicas.keys() {
        let newest = rig.newest(region).await.expect("RPO record");
        assert_eq!(newest.step, 100);
        assert!(newest.committed_at >= newest.source_written_at);
    }
    assert_eq!(rig.newest("us-central1").await.map(|n| n.step), Some(100));
    let lag = rig
        .context
        .metrics
        .latest(CHECKPOINT_REPLICATION_LAG)
        .await
        .expect("read the replication lag metric");
    for region in rig.replicas.keys() {
        assert!(
            lag.iter()
                .any(|point| point.labels.get("region") == Some(region)
                    && point.labels.get("location").map(String::as_str) == Some(ASSET)
                    && point.value >= 0.0),
            "no replication lag point for {region}: {lag:?}"
        );
    }
}

/// The same event twice, then the same marker under another event id: no
/// work is done again.
pub async fn duplicates_do_no_work(rig: &Rig) {
    rig.write_shards(100, 3, 1).await;
    let marker = rig.write(100, "commit_success.txt", b"ok").await;
    assert!(fanned_out(rig.deliver("dup-1", &marker).await).is_complete());
    let before = rig.objects(&rig.replicas["us-east1"]).await;
    assert!(matches!(
        rig.deliver("dup-1", &marker).await,
        Outcome::Duplicate
    ));
    let again = fanned_out(rig.deliver("dup-2", &marker).await);
    assert!(
        again
            .regions
            .iter()
            .flatten()
            .all(|c| c.already_committed && c.shards_copied == 0)
    );
    let after = rig.objects(&rig.replicas["us-east1"]).await;
    let generations = |objects: &BTreeMap<String, ObjectMeta>| -> Vec<i64> {
        objects.values().map(|m| m.generation).collect()
    };
    assert_eq!(
        generations(&before),
        generations(&after),
        "objects were rewritten"
    );
}

/// Markers delivered newest first: the older checkpoint is copied but never
/// recorded as the newest.
pub async fn out_of_order_markers_never_mark_an_older_checkpoint_newer(rig: &Rig) {
    rig.write_shards(100, 2, 1).await;
    rig.write_shards(200, 2, 1).await;
    let old = rig.write(100, "commit_success.txt", b"ok").await;
    let new = rig.write(200, "commit_success.txt", b"ok").await;
    assert!(fanned_out(rig.deliver("late-200", &new).await).is_complete());
    assert!(fanned_out(rig.deliver("late-100", &old).await).is_complete());
    for region in rig.replicas.keys() {
        assert_eq!(
            rig.newest(region).await.map(|n| n.step),
            Some(200),
            "{region}"
        );
    }
    assert_eq!(rig.newest("us-central1").await.map(|n| n.step), Some(200));
    rig.assert_committed(100).await;
    rig.assert_committed(200).await;
}

/// Shard events, replica markers and markers outside every protected
/// location are acknowledged and change nothing.
pub async fn shards_replicas_and_unprotected_markers_do_nothing(rig: &Rig) {
    let shards = rig.write_shards(100, 1, 1).await;
    assert!(matches!(
        rig.deliver("shard", &shards[0]).await,
        Outcome::Ignored(_)
    ));
    let stranger = rig
        .store()
        .put(
            &ObjectRef::new(rig.source.as_str(), "elsewhere/step_1/commit_success.txt"),
            lifeboat_shared::storage::bytes_stream(&b"ok"[..]),
            PutOptions::default(),
        )
        .await
        .expect("put");
    assert!(matches!(
        rig.deliver("stranger", &stranger).await,
        Outcome::Ignored(_)
    ));
    for bucket in rig.replicas.values() {
        assert!(rig.objects(bucket).await.is_empty(), "{bucket} got objects");
    }
    assert_eq!(rig.newest("us-east1").await, None);
}

/// A shard rewritten after it was listed: no region commits, and the error
/// names the shard and the cause.
pub async fn a_changed_shard_is_not_committed_and_named(rig: &Rig) {
    let shards = rig.write_shards(100, 3, 1).await;
    let marker = rig.write(100, "commit_success.txt", b"ok").await;
    rig.write(100, "shard-0001", b"rewritten").await;
    let stale = &shards[1];
    let checkpoint = match crate::checkpoint::recognise(
        &rig.context.topology,
        &marker.object.bucket,
        &marker.object.name,
    ) {
        Ok(crate::checkpoint::Recognised::Marker(checkpoint)) => checkpoint,
        other => panic!("not a marker: {other:?}"),
    };
    // The listing as it was before the rewrite.
    let report = crate::fanout::fan_out(rig.store(), &checkpoint, &marker, &shards, 4, &[]).await;
    assert!(!report.is_complete());
    for outcome in &report.regions {
        let error = outcome.as_ref().expect_err("not committed");
        let message = error.to_string();
        assert!(message.contains(&stale.object.name), "{message}");
        assert!(message.contains("changed while it was copied"), "{message}");
        assert!(message.contains(ASSET), "{message}");
    }
    for bucket in rig.replicas.values() {
        let there = rig.objects(bucket).await;
        assert!(
            !there.keys().any(|n| n.ends_with("commit_success.txt")),
            "{bucket} shows the marker"
        );
    }
}

/// One region's bucket is missing: the other regions commit, the outcome
/// says which region failed, and a retry once it exists completes it.
pub async fn a_failing_region_does_not_hold_back_the_others(rig: &Rig, missing_bucket: &str) {
    rig.write_shards(100, 2, 1).await;
    let report = fanned_out(rig.commit(100).await);
    let failed: Vec<String> = report
        .regions
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.region.to_string()))
        .collect();
    assert_eq!(failed, vec!["us-east1".to_string()], "{}", report.to_json());
    assert_eq!(
        report.to_json()["complete"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(rig.newest("europe-west1").await.map(|n| n.step), Some(100));
    assert_eq!(rig.newest("us-east1").await, None);
    rig.store()
        .create_bucket(missing_bucket, "us-east1")
        .await
        .expect("bucket");
    let marker = rig
        .store()
        .head(&ObjectRef::new(
            rig.source.as_str(),
            format!("{PREFIX}step_100/commit_success.txt"),
        ))
        .await
        .expect("marker");
    let retried = fanned_out(
        rig.deliver(&format!("marker-100-{}", marker.generation), &marker)
            .await,
    );
    assert!(retried.is_complete(), "{}", retried.to_json());
    rig.assert_committed(100).await;
}

/// Replication into us-east1 paused for the workload: a checkpoint reaches
/// the other region only, us-east1's newest step (so its exposure) stays
/// where it was, the event is not done; once the pause is resumed, the
/// redelivery of the same event copies it there.
pub async fn a_paused_region_gets_nothing_until_the_pause_ends(rig: &Rig) {
    rig.write_shards(100, 2, 1).await;
    let _ = fanned_out(rig.commit(100).await);
    let now = Utc::now();
    let paused = Pause {
        workload: "ranker".into(),
        region: "us-east1".into(),
        run: "isolation--1".into(),
        paused_at: now,
        until: now + chrono::TimeDelta::minutes(5),
    };
    pause::pause(rig.context.state.as_ref(), &paused)
        .await
        .expect("pause");
    rig.write_shards(200, 2, 1).await;
    let marker = rig.write(200, "commit_success.txt", b"ok").await;
    let id = format!("marker-200-{}", marker.generation);
    let report = fanned_out(rig.deliver(&id, &marker).await);
    assert!(!report.is_complete(), "{}", report.to_json());
    let failed: Vec<String> = report
        .regions
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|e| {
            assert!(
                e.to_string().contains("paused by drill run isolation--1"),
                "{e}"
            );
            e.region.to_string()
        })
        .collect();
    assert_eq!(failed, vec!["us-east1".to_string()]);
    assert_eq!(rig.newest("europe-west1").await.map(|n| n.step), Some(200));
    assert_eq!(rig.newest("us-east1").await.map(|n| n.step), Some(100));
    let east = &rig.replicas["us-east1"];
    assert!(
        !rig.objects(east)
            .await
            .keys()
            .any(|n| n.contains("step_200")),
        "a paused region got a copy"
    );
    let exposure = rpo::report(
        &rig.context.topology,
        rig.context.state.as_ref(),
        Utc::now() + chrono::TimeDelta::hours(2),
    )
    .await
    .expect("report");
    let east_row = exposure
        .iter()
        .find(|r| r.region == "us-east1")
        .expect("us-east1 row");
    assert_eq!(east_row.newest_step, Some(100));
    assert!(!east_row.meets_target, "{east_row:?}");

    assert!(
        pause::resume(
            rig.context.state.as_ref(),
            "ranker",
            "us-east1",
            "isolation--1"
        )
        .await
        .expect("resume")
    );
    let retried = fanned_out(rig.deliver(&id, &marker).await);
    assert!(retried.is_complete(), "{}", retried.to_json());
    rig.assert_committed(200).await;
    assert_eq!(rig.newest("us-east1").await.map(|n| n.step), Some(200));
}

/// With a manifest marker, exactly the listed shards are copied (a stray
/// object in the directory is not), and a manifest naming a missing shard
/// is refused with its name.
pub async fn a_manifest_names_the_shards(rig: &Rig) {
    rig.write_shards(100, 2, 1).await;
    rig.write(100, "scratch.tmp", b"not part of it").await;
    let manifest = rig
        .write(
            100,
            "manifest.json",
            br#"{"shards": ["shard-0000", {"name": "shard-0001", "size": 1024}]}"#,
        )
        .await;
    assert!(fanned_out(rig.deliver("manifest-100", &manifest).await).is_complete());
    for bucket in rig.replicas.values() {
        let names: Vec<String> = rig.objects(bucket).await.into_keys().collect();
        assert_eq!(
            names,
            vec![
                format!("{PREFIX}step_100/manifest.json"),
                format!("{PREFIX}step_100/shard-0000"),
                format!("{PREFIX}step_100/shard-0001"),
            ]
        );
    }
    let broken = rig
        .write(200, "manifest.json", br#"{"shards": ["shard-0000"]}"#)
        .await;
    match rig.deliver("manifest-200", &broken).await {
        Outcome::Refused(reason) => assert!(
            reason.field == "manifest.shards"
                && reason
                    .problem
                    .contains(&format!("{PREFIX}step_200/shard-0000")),
            "{reason:?}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Retention keeps the newest K complete checkpoints in every region and
/// never touches one still being copied (no marker yet).
pub async fn retention_keeps_the_newest_complete_checkpoints(rig: &Rig) {
    let east = &rig.replicas["us-east1"];
    // A checkpoint being copied into the region right now: shards, no marker.
    let partial = ObjectRef::new(east.as_str(), format!("{PREFIX}step_50/shard-0000"));
    rig.store()
        .put(
            &partial,
            lifeboat_shared::storage::bytes_stream(&b"x"[..]),
            PutOptions::default(),
        )
        .await
        .expect("put");
    for step in [100, 200, 300, 400] {
        rig.write_shards(step, 2, 1).await;
        assert!(fanned_out(rig.commit(step).await).is_complete());
    }
    for bucket in rig.replicas.values() {
        let names: Vec<String> = rig.objects(bucket).await.into_keys().collect();
        let steps: std::collections::BTreeSet<&str> = names
            .iter()
            .filter_map(|n| n.strip_prefix(PREFIX)?.split('/').next())
            .collect();
        let expected: Vec<&str> = if bucket == east {
            vec!["step_300", "step_400", "step_50"]
        } else {
            vec!["step_300", "step_400"]
        };
        assert_eq!(steps.into_iter().collect::<Vec<_>>(), expected, "{bucket}");
    }
    match rig.store().head(&partial).await {
        Ok(_) => {}
        Err(StorageError::NotFound { .. }) => panic!("a checkpoint being copied was deleted"),
        Err(error) => panic!("{error}"),
    }
}
