//! `lifeboat sync reconcile` and `lifeboat sync status` as a user runs them, on a local cloud's data
//! directory whose replicas lag behind their sources.

use std::path::Path;
use std::process::Command;

use lifeboat_shared::storage::local::LocalStore;
use lifeboat_shared::storage::{ObjectRef, ObjectStore, PutOptions, bytes_stream};
use lifeboat_shared::topology::Topology;

const EXAMPLE: &str = "examples/pilot-light.yaml";

fn repository_file(relative: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

#[tokio::test]
async fn reconcile_copies_what_the_replicas_lack_and_reports_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let topology_file = repository_file(EXAMPLE);
    let topology = Topology::load(&topology_file).expect("example topology");
    let store = LocalStore::open(dir.path().join(topology.project().as_str()).join("storage"))
        .await
        .expect("store");
    for (bucket, region) in topology.buckets() {
        store
            .create_bucket(bucket.as_str(), region.as_str())
            .await
            .expect("bucket");
    }
    let names = ["corpus/shard 1.jsonl", "corpus/ünï#?%.jsonl"];
    for name in names {
        store
            .put(
                &ObjectRef::new("acme-research-corpus-usc1", name),
                bytes_stream(name.as_bytes().to_vec()),
                PutOptions::default(),
            )
            .await
            .expect("put");
    }

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
    assert!(
        stderr.contains("2 source objects checked"),
        "progress on stderr:\n{stderr}"
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
    let status = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(["sync", "status", "--topology"])
        .arg(&topology_file)
        .arg("--local")
        .arg(dir.path())
        .output()
        .expect("lifeboat runs");
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{shown}");
    let row = shown
        .lines()
        .find(|line| line.starts_with("bucket") && line.contains("pretraining-corpus"))
        .unwrap_or_else(|| panic!("no RPO row for the bucket:\n{shown}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        columns[..6],
        [
            "bucket",
            "pretraining-corpus",
            "us-west1",
            "0s",
            "21600s",
            "yes"
        ],
        "{shown}"
    );
    for name in names {
        let replica = store
            .head(&ObjectRef::new("acme-research-corpus-usw1", name))
            .await
            .expect("replicated");
        assert_eq!(replica.size, name.len() as u64);
    }
}
