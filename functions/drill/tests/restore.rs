//! The `restore` drill against the local backends: a fully replicated
//! workload passes; a corrupted shard, an object missing from a replica
//! and a replica table short of rows each fail it, named; abort stops it.

use std::sync::Arc;

use chrono::Utc;
use lifeboat_drill::restore::{RestoreContext, RestoreError, restore};
use lifeboat_shared::records::drill_run::{DrillRun, Trigger};
use lifeboat_shared::server::Shutdown;
use lifeboat_shared::state::local::LocalStateStore;
use lifeboat_shared::storage::local::LocalStore;
use lifeboat_shared::storage::replica::replicate;
use lifeboat_shared::storage::{ObjectRef, ObjectStore, PutOptions, bytes_stream};
use lifeboat_shared::topology::{Drill, Topology};
use lifeboat_shared::warehouse::local::LocalWarehouse;
use lifeboat_shared::warehouse::{Column, TableRef, Warehouse};
use serde_json::json;

const TOPOLOGY: &str = r#"
project: acme-ml-prod
regions:
  - id: us-central1
    role: primary
  - id: us-east1
    role: standby
workloads:
  - id: ranker
    class: research-training
    pattern: active-passive
    assets:
      buckets:
        - id: features
          source: features-usc1
          replicas:
            us-east1: features-use1
      datasets:
        - id: events
          source: acme-ml-prod.events
          replicas:
            us-east1: acme-ml-prod.events_use1
      checkpoints:
        - id: ranker-ckpt
          bucket: ckpt-usc1
          prefix: runs/v7/
          marker: orbax
          replicas:
            us-east1: ckpt-use1
          interval-steps: 100
          keep-newest: 2
drills:
  - id: nightly-restore
    kind: restore
    workload: ranker
    target-region: us-east1
    schedule: "0 3 * * *"
"#;

const SHARDS: usize = 4;

struct World {
    context: RestoreContext,
    drill: Drill,
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

async fn put(store: &LocalStore, bucket: &str, name: &str, body: Vec<u8>) {
    store
        .put(
            &ObjectRef::new(bucket, name),
            bytes_stream(body),
            PutOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("put {bucket}/{name}: {e}"));
}

async fn copy(store: &LocalStore, source: &str, replica: &str, name: &str) {
    let meta = store
        .head(&ObjectRef::new(source, name))
        .await
        .expect("source");
    replicate(store, &meta, &ObjectRef::new(replica, name))
        .await
        .expect("replicated");
}

/// A workload fully replicated into us-east1: two checkpoints (the newest
/// complete), eight objects, one table of three rows.
async fn world() -> World {
    world_of(TOPOLOGY).await
}

/// The same workload with an RPO of 1 s: once [`past_the_rpo`], a replica
/// may lack nothing written before.
async fn strict_world() -> World {
    let strict = TOPOLOGY.replace(
        "class: research-training",
        "class: research-training\n    rpo: 1s",
    );
    world_of(&strict).await
}

async fn past_the_rpo() {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
}

async fn world_of(topology: &str) -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let topology = Topology::parse(topology, "restore.yaml").expect("valid topology");
    let drill = topology.drill("nightly-restore").expect("drill").clone();
    let store = LocalStore::open(dir.path().join("storage"))
        .await
        .expect("store");
    for (bucket, region) in [
        ("ckpt-usc1", "us-central1"),
        ("ckpt-use1", "us-east1"),
        ("features-usc1", "us-central1"),
        ("features-use1", "us-east1"),
    ] {
        store.create_bucket(bucket, region).await.expect("bucket");
    }
    for step in [100, 200] {
        let directory = format!("runs/v7/step_{step}/");
        for shard in 0..SHARDS {
            let name = format!("{directory}shard-{shard}");
            put(
                &store,
                "ckpt-usc1",
                &name,
                vec![shard as u8 + step as u8; 4096],
            )
            .await;
            copy(&store, "ckpt-usc1", "ckpt-use1", &name).await;
        }
        let marker = format!("{directory}commit_success.txt");
        put(&store, "ckpt-usc1", &marker, b"ok".to_vec()).await;
        copy(&store, "ckpt-usc1", "ckpt-use1", &marker).await;
    }
    for n in 0..8 {
        let name = format!("features/part {n}.parquet");
        put(
            &store,
            "features-usc1",
            &name,
            format!("rows {n}").into_bytes(),
        )
        .await;
        copy(&store, "features-usc1", "features-use1", &name).await;
    }
    let warehouse = LocalWarehouse::open(dir.path().join("warehouse"))
        .await
        .expect("warehouse");
    let columns = [Column {
        name: "id".into(),
        kind: "INTEGER".into(),
    }];
    for dataset in ["events", "events_use1"] {
        warehouse
            .create_dataset("acme-ml-prod", dataset, "us-central1")
            .await
            .expect("dataset");
        let table = TableRef::new("acme-ml-prod", dataset, "clicks");
        warehouse
            .create_table(&table, &columns)
            .await
            .expect("table");
        let rows = [json!({"id": 1}), json!({"id": 2}), json!({"id": 3})];
        warehouse.insert_rows(&table, &rows).await.expect("rows");
    }
    let state = LocalStateStore::open(dir.path().join("state"))
        .await
        .expect("state");
    World {
        context: RestoreContext {
            topology: Arc::new(topology),
            storage: Arc::new(store),
            warehouse: Arc::new(warehouse),
            state: Arc::new(state),
        },
        drill,
        _dir: dir,
    }
}

async fn run(world: &World) -> DrillRun {
    let mut run = new_run(&world.drill);
    restore(&world.context, &world.drill, &mut run, &Shutdown::new())
        .await
        .expect("the restore runs");
    run
}

fn check<'r>(
    run: &'r DrillRun,
    name: &str,
) -> &'r lifeboat_shared::records::drill_run::TargetCheck {
    run.checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}: {:?}", run.checks))
}

#[tokio::test]
async fn a_fully_replicated_workload_restores() {
    let world = world().await;
    let run = run(&world).await;
    assert!(run.checks.iter().all(|c| c.held), "{:#?}", run.checks);
    let shards = check(&run, "checkpoint shards verified");
    assert_eq!(shards.measured, format!("{SHARDS} of {SHARDS}"));
    assert_eq!(check(&run, "sampled objects matched").measured, "8 of 8");
    assert_eq!(check(&run, "table row counts equal").measured, "1 of 1");
    assert!(check(&run, "checkpoint read time").held);
    assert!(run.measurements.checkpoint_read_seconds.is_some());
    assert!(run.phases.iter().any(|p| p.name == "checkpoint-read"));
    let read = run
        .findings
        .iter()
        .find(|f| f.asset == "ranker-ckpt")
        .expect("a checkpoint finding");
    assert!(
        read.ok && read.detail.contains("step 200") && read.detail.contains("MB/s"),
        "{read:?}"
    );
    assert!(run.findings.iter().all(|f| f.ok), "{:#?}", run.findings);
}

#[tokio::test]
async fn a_corrupted_shard_fails_the_restore_and_is_named() {
    let world = world().await;
    // The replica's shard is rewritten with other bytes: its CRC32C no
    // longer matches the source's.
    put_in(
        &world,
        "ckpt-use1",
        "runs/v7/step_200/shard-2",
        vec![0; 4096],
    )
    .await;
    let run = run(&world).await;
    let shards = check(&run, "checkpoint shards verified");
    assert!(!shards.held, "{shards:?}");
    assert_eq!(shards.measured, format!("{} of {SHARDS}", SHARDS - 1));
    let bad = run
        .findings
        .iter()
        .find(|f| !f.ok && f.detail.contains("shard-2"))
        .unwrap_or_else(|| panic!("no finding names shard-2: {:#?}", run.findings));
    assert!(bad.detail.contains("CRC32C mismatch"), "{bad:?}");
}

#[tokio::test]
async fn an_object_missing_from_the_replica_fails_the_restore_and_is_named() {
    let world = strict_world().await;
    // Written before the RPO allows: the replica must hold it.
    world
        .context
        .storage
        .delete(
            &ObjectRef::new("features-use1", "features/part 0.parquet"),
            None,
        )
        .await
        .expect("delete");
    past_the_rpo().await;
    let run = run(&world).await;
    let sampled = check(&run, "sampled objects matched");
    assert!(!sampled.held && sampled.measured == "7 of 8", "{sampled:?}");
    let finding = run
        .findings
        .iter()
        .find(|f| f.asset == "features")
        .expect("a bucket finding");
    assert!(
        !finding.ok && finding.detail.contains("missing: features/part 0.parquet"),
        "{finding:?}"
    );
}

#[tokio::test]
async fn a_replica_table_short_of_rows_fails_the_restore_and_is_named() {
    let world = world().await;
    let source = TableRef::new("acme-ml-prod", "events", "clicks");
    world
        .context
        .warehouse
        .insert_rows(&source, &[json!({"id": 4})])
        .await
        .expect("rows");
    // Research training: RPO 24 h, so a change now is within it and
    // tolerated...
    let run_now = run(&world).await;
    assert!(check(&run_now, "table row counts equal").held);
    // ...but not under a workload whose RPO it exceeds.
    let world = strict_world().await;
    let source = TableRef::new("acme-ml-prod", "events", "clicks");
    world
        .context
        .warehouse
        .insert_rows(&source, &[json!({"id": 4})])
        .await
        .expect("rows");
    past_the_rpo().await;
    let run = run(&world).await;
    let tables = check(&run, "table row counts equal");
    assert!(!tables.held && tables.measured == "0 of 1", "{tables:?}");
    let finding = run
        .findings
        .iter()
        .find(|f| f.asset == "events/clicks")
        .expect("a table finding");
    assert!(
        !finding.ok && finding.detail.contains("3 rows, but") && finding.detail.contains("has 4"),
        "{finding:?}"
    );
}

#[tokio::test]
async fn abort_stops_the_restore() {
    let world = world().await;
    let abort = Shutdown::new();
    abort.trigger();
    let mut run = new_run(&world.drill);
    let stopped = restore(&world.context, &world.drill, &mut run, &abort).await;
    assert!(
        matches!(stopped, Err(RestoreError::Aborted { .. })),
        "{stopped:?}"
    );
    assert!(run.checks.is_empty(), "nothing judged: {:?}", run.checks);
}

async fn put_in(world: &World, bucket: &str, name: &str, body: Vec<u8>) {
    world
        .context
        .storage
        .put(
            &ObjectRef::new(bucket, name),
            bytes_stream(body),
            PutOptions::default(),
        )
        .await
        .expect("put");
}
