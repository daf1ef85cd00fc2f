//! `lifeboat sync reconcile` and `lifeboat status` as a user runs them, on a
//! local cloud's data directory whose replicas lag behind their sources.

use std::path::Path;
use std::process::Command;

use lifeboat_shared::storage::local::LocalStore;
use lifeboat_shared::storage::{ObjectRef, ObjectStore, PutOptions, bytes_stream};
use lifeboat_shared::topology::Topology;
use lifeboat_shared::warehouse::local::LocalWarehouse;
use lifeboat_shared::warehouse::{Column, TableRef, Warehouse};

const EXAMPLE: &str = "examples/pilot-light.yaml";

fn repository_file(relative: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// The example's local cloud in `dir`, as `lifeboat local up` creates it:
/// every bucket, and the source and replica datasets.
async fn local_cloud(dir: &Path) -> (Topology, LocalStore, LocalWarehouse) {
    let topology = Topology::load(repository_file(EXAMPLE)).expect("example topology");
    let project = topology.project().as_str().to_string();
    let store = LocalStore::open(dir.join(&project).join("storage"))
        .await
        .expect("store");
    for (bucket, region) in topology.buckets() {
        store
            .create_bucket(bucket.as_str(), region.as_str())
            .await
            .expect("bucket");
    }
    let warehouse = LocalWarehouse::open(dir.join(&project).join("warehouse"))
        .await
        .expect("warehouse");
    for (dataset, region) in [
        ("eval_results", "us-central1"),
        ("eval_results_usw1", "us-west1"),
    ] {
        warehouse
            .create_dataset(&project, dataset, region)
            .await
            .expect("dataset");
    }
    (topology, store, warehouse)
}

/// Writes each of `names` into the corpus's source bucket, its name as its
/// content.
async fn write_sources(store: &LocalStore, names: &[&str]) {
    for name in names {
        store
            .put(
                &ObjectRef::new("acme-research-corpus-usc1", *name),
                bytes_stream(name.as_bytes().to_vec()),
                PutOptions::default(),
            )
            .await
            .expect("put");
    }
}

#[tokio::test]
async fn reconcile_copies_what_the_replicas_lack_and_reports_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let topology_file = repository_file(EXAMPLE);
    // One table with rows in the source.
    let (topology, store, warehouse) = local_cloud(dir.path()).await;
    let project = topology.project().as_str();
    let scores = TableRef::new(project, "eval_results", "scores");
    let columns = [Column {
        name: "score".to_string(),
        kind: "FLOAT64".to_string(),
    }];
    warehouse
        .create_table(&scores, &columns)
        .await
        .expect("table");
    let rows = [
        serde_json::json!({"score": 0.5}),
        serde_json::json!({"score": 0.75}),
    ];
    warehouse.insert_rows(&scores, &rows).await.expect("rows");
    drop(warehouse);

    let names = ["corpus/shard 1.jsonl", "corpus/ünï#?%.jsonl"];
    write_sources(&store, &names).await;

    let output = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(["sync", "reconcile", "--topology"])
        .arg(&topology_file)
        .arg("--local")
        .arg(dir.path())
        .output()
        .expect("lifeboat runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // Progress is drawn only on a terminal; here only the results remain.
    assert!(
        !stderr.contains("source objects checked"),
        "progress drawn off a terminal:\n{stderr}"
    );
    let row = stdout
        .lines()
        .find(|line| line.starts_with("pretraining-corpus"))
        .unwrap_or_else(|| panic!("no row for the bucket asset:\n{stdout}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        columns,
        [
            "pretraining-corpus",
            "us-west1",
            "2",
            "2",
            "0",
            "0",
            "0",
            "2",
            "0"
        ],
        "{stdout}"
    );
    let copied = stdout
        .lines()
        .find(|line| line.starts_with("eval-results"))
        .unwrap_or_else(|| panic!("no copy of the table:\n{stdout}"));
    assert_eq!(
        copied.split_whitespace().take(4).collect::<Vec<_>>(),
        ["eval-results", "us-west1", "scores", "2"],
        "{stdout}"
    );

    let status = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(["status", "--json", "--topology"])
        .arg(&topology_file)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("lifeboat runs");
    let shown = String::from_utf8_lossy(&status.stdout);
    let status: serde_json::Value = serde_json::from_str(&shown).expect("status JSON");
    let data = status["data"].as_array().expect("data rows");
    assert_eq!(data.len(), 2, "{shown}");
    for (row, (kind, asset)) in data.iter().zip([
        ("bucket", "pretraining-corpus"),
        ("dataset", "eval-results"),
    ]) {
        assert_eq!(row["kind"], kind, "{shown}");
        assert_eq!(row["asset"], asset, "{shown}");
        assert_eq!(row["region"], "us-west1", "{shown}");
        assert_eq!(row["exposure_seconds"], 0, "{shown}");
        assert_eq!(row["target_rpo_seconds"], 21600, "{shown}");
        assert_eq!(row["meets_target"], true, "{shown}");
    }
    for name in names {
        let replica = store
            .head(&ObjectRef::new("acme-research-corpus-usw1", name))
            .await
            .expect("replicated");
        assert_eq!(replica.size, name.len() as u64);
    }
}

#[tokio::test]
async fn a_replica_past_the_bulk_threshold_is_copied_in_bulk_and_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let topology_file = repository_file(EXAMPLE);
    let (_, store, warehouse) = local_cloud(dir.path()).await;
    drop(warehouse);
    write_sources(&store, &["bulk/a", "bulk/b", "bulk/c"]).await;

    let output = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(["sync", "reconcile", "--bulk-threshold", "2", "--topology"])
        .arg(&topology_file)
        .arg("--local")
        .arg(dir.path())
        .output()
        .expect("lifeboat runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The first missing object is repaired on its own; the threshold hands
    // the other two to the bulk copy, which finds the first already there.
    let row = stdout
        .lines()
        .find(|line| line.starts_with("pretraining-corpus"))
        .unwrap_or_else(|| panic!("no row for the bucket asset:\n{stdout}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        columns,
        [
            "pretraining-corpus",
            "us-west1",
            "3",
            "1",
            "0",
            "0",
            "0",
            "3",
            "0"
        ],
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "bulk copy transferJobs/lifeboat-pretraining-corpus-us-west1 (2 objects handed over): \
             2 copied (12 bytes), 1 already there, 0 failed\n"
        ),
        "{stdout}"
    );
    for name in ["bulk/a", "bulk/b", "bulk/c"] {
        store
            .head(&ObjectRef::new("acme-research-corpus-usw1", name))
            .await
            .unwrap_or_else(|error| panic!("{name} not replicated: {error}"));
    }
}
