//! `lifeboat local up` as a user runs it: a real process, real sockets.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The three-region production example shipped with the repository.
fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/production-three-region.yaml")
}

/// A running `lifeboat local up`, stopped with SIGTERM when dropped.
struct LocalCloud {
    child: Child,
    book: serde_json::Value,
}

impl LocalCloud {
    /// Starts the local cloud on free ports and waits until it says it is ready.
    fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &example())
    }

    /// Starts the local cloud of `topology` (a variant of the production
    /// example: same project and regions).
    fn start_with(data_dir: &Path, topology: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
            .args(["local", "up", "--port", "0", "--topology"])
            .arg(topology)
            .arg("--data-dir")
            .arg(data_dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("lifeboat starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut printed = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("stdout is text");
            printed.push_str(&line);
            printed.push('\n');
            if line.starts_with("ready") {
                break;
            }
        }
        assert!(
            printed.contains("ready"),
            "local cloud never got ready:\n{printed}"
        );
        for region in ["us-central1", "us-east1", "europe-west1"] {
            assert!(
                printed.contains(region),
                "{region} missing from:\n{printed}"
            );
        }
        let book_path = data_dir.join("acme-ml-prod/local-cloud.json");
        let book =
            serde_json::from_slice(&std::fs::read(&book_path).expect("address book written"))
                .expect("address book is JSON");
        Self { child, book }
    }

    fn region_url(&self, region: &str) -> String {
        let address = self.book["regions"][region]
            .as_str()
            .expect("region listed");
        format!("http://{address}")
    }

    /// Sends SIGTERM and returns how the process ended and how long it took.
    fn stop(mut self) -> (std::process::ExitStatus, Duration) {
        let started = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exit = self.child.wait().expect("lifeboat exits");
        (exit, started.elapsed())
    }
}

#[tokio::test]
async fn regions_answer_serve_their_own_buckets_and_survive_a_restart() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let cloud = LocalCloud::start(data_dir.path());
    let http = reqwest::Client::new();

    let health: serde_json::Value = http
        .get(format!("{}/healthz", cloud.region_url("us-east1")))
        .send()
        .await
        .expect("us-east1 answers")
        .json()
        .await
        .expect("health is JSON");
    assert_eq!(health["region"], "us-east1");
    assert_eq!(health["role"], "standby");

    // A process writing a file into the primary's bucket folder makes an object.
    let object = data_dir
        .path()
        .join("acme-ml-prod/storage/acme-recsys-ckpt-usc1/runs/ranker-v7/step_100/shard-0");
    std::fs::create_dir_all(object.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(&object, b"weights").expect("write shard");

    let primary = cloud.region_url("us-central1");
    let listing: serde_json::Value = http
        .get(format!(
            "{primary}/storage/acme-recsys-ckpt-usc1?prefix=runs/"
        ))
        .send()
        .await
        .expect("listing answers")
        .json()
        .await
        .expect("listing is JSON");
    assert_eq!(
        listing["items"][0]["name"],
        "runs/ranker-v7/step_100/shard-0"
    );
    assert_eq!(listing["items"][0]["size"], 7);

    // The bucket lives in us-central1: another region does not serve it.
    let elsewhere = http
        .get(format!(
            "{}/storage/acme-recsys-ckpt-usc1/runs/ranker-v7/step_100/shard-0",
            cloud.region_url("us-east1")
        ))
        .send()
        .await
        .expect("us-east1 answers");
    assert_eq!(elsewhere.status(), 404);
    assert!(
        elsewhere
            .text()
            .await
            .expect("text")
            .contains("is in us-central1")
    );

    let (status, took) = cloud.stop();
    assert!(
        status.success(),
        "SIGTERM ends the local cloud cleanly: {status}"
    );
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");

    let cloud = LocalCloud::start(data_dir.path());
    let bytes = http
        .get(format!(
            "{}/storage/acme-recsys-ckpt-usc1/runs/ranker-v7/step_100/shard-0",
            cloud.region_url("us-central1")
        ))
        .send()
        .await
        .expect("object answers after restart")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(&bytes[..], b"weights");
    let (status, _) = cloud.stop();
    assert!(status.success());
}

/// Runs `lifeboat ARGS` on the production example to completion and
/// returns its exit success and stdout.
fn lifeboat(args: &[&str], data_dir: &Path) -> (bool, String) {
    lifeboat_with(args, &example(), data_dir)
}

#[tokio::test]
async fn a_checkpoint_written_into_the_primary_fans_out_by_itself_and_status_reports_it() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let cloud = LocalCloud::start(data_dir.path());

    let (before, _) = lifeboat(&["status"], data_dir.path());
    assert!(
        !before,
        "no checkpoint yet, yet status says every target is met"
    );

    let (wrote, printed) = lifeboat(
        &[
            "local",
            "write-checkpoint",
            "--step",
            "300",
            "--shards",
            "8",
            "--size",
            "800000",
        ],
        data_dir.path(),
    );
    assert!(wrote, "write-checkpoint failed: {printed}");

    // The marker appears in every standby region, after every shard.
    let marker = "runs/ranker-v7/step_300/commit_success.txt";
    for (region, bucket) in [
        ("us-east1", "acme-recsys-ckpt-use1"),
        ("europe-west1", "acme-recsys-ckpt-euw1"),
    ] {
        let items = wait_for_object(&cloud, region, bucket, marker, true).await;
        assert_eq!(items.len(), 9, "{region}: {items:?}");
    }

    let (met, json) = lifeboat(&["status", "--json"], data_dir.path());
    assert!(met, "status says a target is missed: {json}");
    let status: serde_json::Value = serde_json::from_str(&json).expect("status JSON");
    let rows = status["checkpoints"].as_array().expect("checkpoint rows");
    assert_eq!(rows.len(), 2, "{json}");
    for row in rows {
        assert_eq!(row["newest_step"], 300, "{json}");
        assert_eq!(row["meets_target"], true, "{json}");
        assert_eq!(row["target_rpo_seconds"], 300, "{json}");
    }
    let (_, table) = lifeboat(&["status"], data_dir.path());
    assert!(
        table.contains("europe-west1") && table.contains("300"),
        "{table}"
    );

    let (status, _) = cloud.stop();
    assert!(status.success());
    // Stopped: status reads the state directly.
    let (met, json) = lifeboat(&["status", "--json"], data_dir.path());
    assert!(met, "{json}");
}

/// Waits until `bucket` in `region` lists `name` (or, with `present` false,
/// no longer does) and returns the listing's items; fails after 60 s.
async fn wait_for_object(
    cloud: &LocalCloud,
    region: &str,
    bucket: &str,
    name: &str,
    present: bool,
) -> Vec<serde_json::Value> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listing: serde_json::Value = http
            .get(format!("{}/storage/{bucket}", cloud.region_url(region)))
            .send()
            .await
            .expect("listing answers")
            .json()
            .await
            .expect("listing is JSON");
        let items = listing["items"].as_array().cloned().unwrap_or_default();
        if items.iter().any(|item| item["name"] == name) == present {
            return items;
        }
        assert!(
            Instant::now() < deadline,
            "{region}: {bucket}/{name} present={} after 60 s",
            !present
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_object_written_into_a_protected_bucket_reaches_every_replica_by_itself() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let cloud = LocalCloud::start(data_dir.path());
    // Any process writing a file into the source bucket's folder, with an
    // unusual name.
    let name = "features/day 2026-11-25/#part 1 ?%.parquet";
    let file = data_dir
        .path()
        .join("acme-ml-prod/storage/acme-recsys-features-usc1")
        .join(name);
    std::fs::create_dir_all(file.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(&file, b"feature rows").expect("write object");
    for (region, bucket) in [
        ("us-east1", "acme-recsys-features-use1"),
        ("europe-west1", "acme-recsys-features-euw1"),
    ] {
        let items = wait_for_object(&cloud, region, bucket, name, true).await;
        let replica = items.iter().find(|item| item["name"] == name);
        assert_eq!(
            replica.map(|r| &r["size"]),
            Some(&12.into()),
            "{region}: {items:?}"
        );
    }

    // The asset keeps replicas 30 days after a delete at the source.
    std::fs::remove_file(&file).expect("delete at the source");
    wait_for_object(
        &cloud,
        "us-central1",
        "acme-recsys-features-usc1",
        name,
        false,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_for_object(&cloud, "us-east1", "acme-recsys-features-use1", name, true).await;

    // The startup reconcile has checked every bucket and dataset.
    let (_, json) = lifeboat(&["status", "--json"], data_dir.path());
    let status: serde_json::Value = serde_json::from_str(&json).expect("status JSON");
    let data = status["data"].as_array().expect("data rows");
    assert_eq!(data.len(), 4, "a bucket and a dataset in 2 regions: {json}");
    for row in data {
        assert_eq!(row["exposure_seconds"], 0, "{json}");
        assert_eq!(row["meets_target"], true, "{json}");
    }
    let (status, _) = cloud.stop();
    assert!(status.success());
}

#[tokio::test]
async fn an_incident_posted_to_the_local_failover_is_recorded_and_shown_by_status() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let cloud = LocalCloud::start(data_dir.path());
    let functions = cloud.book["functions"].as_str().expect("functions address");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/events/monitoring_incident_webhook.json");
    let mut incident: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture).expect("fixture")).expect("JSON");
    incident["incident"]["incident_id"] = "local-1".into();
    incident["incident"]["policy_user_labels"] = serde_json::json!({"lifeboat-workload": "recommendations", "lifeboat-region": "us-central1"});
    let answer = reqwest::Client::new()
        .post(format!("http://{functions}/failover"))
        .json(&incident)
        .send()
        .await
        .expect("failover answers");
    assert_eq!(answer.status(), 200);
    let record: serde_json::Value = answer.json().await.expect("the record");
    // The region answers its probes: the alert is not confirmed, so
    // traffic stays, and the record says why.
    assert_eq!(record["outcome"], "stayed", "{record:#}");
    assert!(
        record["decision"]["reasons"][0]
            .as_str()
            .is_some_and(|reason| reason.contains("not confirmed") && reason.contains("3 of 3")),
        "{record:#}"
    );

    let (_, json) = lifeboat(&["status", "--json"], data_dir.path());
    let status: serde_json::Value = serde_json::from_str(&json).expect("status JSON");
    assert_eq!(
        status["open_incidents"][0]["incident_id"], "local-1",
        "{json}"
    );
    let (_, table) = lifeboat(&["status"], data_dir.path());
    assert!(
        table.contains("local-1") && table.contains("STAYED"),
        "{table}"
    );

    // A person's move goes through the same rules: to an unhealthy region
    // it is refused, to a healthy one it scales the standby and routes.
    assert!(
        lifeboat(
            &["local", "fail-region", "europe-west1", "--mode", "error"],
            data_dir.path()
        )
        .0
    );
    let (moved, printed) = lifeboat(
        &[
            "failover",
            "recommendations",
            "--to",
            "europe-west1",
            "--force",
        ],
        data_dir.path(),
    );
    assert!(!moved, "{printed}");
    assert!(
        printed.contains("europe-west1 not eligible: unhealthy")
            && printed.contains("outcome: stayed"),
        "{printed}"
    );
    let (moved, printed) = lifeboat(
        &["failover", "recommendations", "--to", "us-east1"],
        data_dir.path(),
    );
    assert!(moved, "{printed}");
    assert!(
        printed.contains("scaled") && printed.contains("outcome: moved"),
        "{printed}"
    );
    // And back, step by step (2 s a step in the local cloud).
    let (back, printed) = lifeboat(&["failback", "recommendations"], data_dir.path());
    assert!(back, "{printed}");
    for step in [
        "10% to us-central1",
        "50% to us-central1",
        "100% to us-central1",
    ] {
        assert!(printed.contains(step), "{step} missing:\n{printed}");
    }
    let (status, _) = cloud.stop();
    assert!(status.success());
}

/// Runs `lifeboat ARGS --topology TOPOLOGY --data-dir DATA_DIR` to completion
/// and returns its exit success and stdout.
fn lifeboat_with(args: &[&str], topology: &Path, data_dir: &Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .arg("--topology")
        .arg(topology)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("lifeboat runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// The production example with no pinned model version (so version 1 is
/// registered), written into `dir`.
fn unpinned_example(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(example()).expect("example");
    assert!(
        text.contains("version: \"7\"\n"),
        "the example pins version 7"
    );
    let path = dir.join("unpinned.yaml");
    std::fs::write(&path, text.replace("          version: \"7\"\n", "")).expect("write topology");
    path
}

/// The console at `url` as headless Chromium renders it, once `ready`
/// holds of its DOM; fails after 60 s.
fn wait_for_console(url: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let dom = lifeboat_tests::browser::dom(url);
        if ready(&dom) {
            return dom;
        }
        assert!(
            Instant::now() < deadline,
            "the console never showed it: {dom}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One prediction through `url`: status, answering region (gateway header)
/// and body.
async fn predict(url: &str) -> (u16, Option<String>, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(url)
        .json(&serde_json::json!({"instances": [[1.0, 2.0, 3.0, 4.0], 2.0]}))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the gateway answers");
    let status = response.status().as_u16();
    let region = response
        .headers()
        .get("x-lifeboat-region")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, region, body)
}

#[tokio::test]
async fn a_failed_primary_is_detected_failed_over_and_predictions_come_from_the_standby() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let topology = unpinned_example(data_dir.path());
    let cloud = LocalCloud::start_with(data_dir.path(), &topology);
    let gateway = cloud.book["gateway"]
        .as_str()
        .expect("gateway in the address book");
    let url = format!("{gateway}/predict/recommendations/recsys-ranker");

    let (status, region, body) = predict(&url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(region.as_deref(), Some("us-central1"), "{body}");
    assert_eq!(body["version"], "1", "{body}");
    assert_eq!(body["replicas"], 3, "{body}");
    // 0.25 + 1*0.5 - 2*0.25 + 3*0.125 + 4*1.0, and 0.25 + 2*0.5.
    assert_eq!(
        body["predictions"],
        serde_json::json!([4.625, 1.25]),
        "{body}"
    );

    // The warm standby serves the same version at standby size.
    let (status, _, standby) = predict(&format!(
        "{}/predict/recommendations/recsys-ranker",
        cloud.region_url("us-east1")
    ))
    .await;
    assert_eq!(status, 200, "{standby}");
    assert_eq!(
        (standby["version"].clone(), standby["replicas"].clone()),
        ("1".into(), 1.into()),
        "{standby}"
    );

    // The console, as Chromium renders it: us-central1 healthy and taking
    // every prediction, no incident, the copies replicating.
    let console = format!(
        "http://{}/",
        cloud.book["functions"].as_str().expect("functions")
    );
    let before = wait_for_console(&console, |dom| dom.contains(r#"data-state="met""#));
    assert!(
        before.contains(r#"id="region-us-central1" data-health="healthy""#),
        "{before}"
    );
    assert!(
        before.contains(r#"data-region="us-central1" data-weight="100""#),
        "{before}"
    );
    assert!(!before.contains(r#"class="incident""#), "{before}");
    assert!(!before.contains(r#"data-state="source-down""#), "{before}");

    let (failed, printed) = lifeboat_with(
        &["local", "fail-region", "us-central1", "--mode", "stop"],
        &topology,
        data_dir.path(),
    );
    assert!(failed, "{printed}");
    let health = reqwest::Client::new()
        .get(format!("{}/healthz", cloud.region_url("us-central1")))
        .send()
        .await;
    assert!(
        health.is_err(),
        "a stopped region answers its health check: {health:?}"
    );

    // The prober notices, failover confirms and moves traffic, the gateway
    // follows: predictions come from the standby, scaled to serving size.
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let (status, region, body) = predict(&url).await;
        if status == 200 && region.as_deref() == Some("us-east1") {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no failover after 60 s: {status} {region:?} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(body["version"], "1", "{body}");
    assert_eq!(body["replicas"], 3, "{body}");

    // The console follows: the routing, the incident and the RPO rows change.
    let after = wait_for_console(&console, |dom| {
        dom.contains(r#"data-region="us-east1" data-weight="100""#)
    });
    assert!(
        after.contains(r#"data-region="us-central1" data-weight="0""#),
        "{after}"
    );
    assert!(
        after.contains(r#"id="region-us-central1" data-health="incident""#),
        "{after}"
    );
    assert!(
        after.contains(r#"data-state="open" data-region="us-central1" open="""#),
        "an open incident, expanded, with its steps: {after}"
    );
    assert!(after.contains("<strong>received</strong>"), "{after}");
    assert!(
        after.contains(r#"data-region="us-east1" data-state="source-down""#),
        "the copies say their source is down: {after}"
    );
    assert!(
        after.contains(r#"id="chart-routing-recommendations""#),
        "the routing chart: {after}"
    );

    let (_, json) = lifeboat_with(&["status", "--json"], &topology, data_dir.path());
    let status: serde_json::Value = serde_json::from_str(&json).expect("status JSON");
    let table = &status["routing"][0];
    assert_eq!(table["workload"], "recommendations", "{json}");
    assert_eq!(table["weights"]["us-central1"], 0, "{json}");
    assert_eq!(table["weights"]["us-east1"], 100, "{json}");
    let incident = &status["open_incidents"][0];
    assert_eq!(incident["outcome"], "moved", "{json}");
    assert!(
        incident["incident_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("local-recommendations-us-central1-")),
        "{json}"
    );

    // Healed, the region answers again and the prober closes the incident.
    let (healed, printed) = lifeboat_with(
        &["local", "heal-region", "us-central1"],
        &topology,
        data_dir.path(),
    );
    assert!(healed, "{printed}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, json) = lifeboat_with(&["status", "--json"], &topology, data_dir.path());
        let status: serde_json::Value = serde_json::from_str(&json).expect("status JSON");
        if status["open_incidents"]
            .as_array()
            .is_some_and(Vec::is_empty)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the incident never closed: {json}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (status, _) = cloud.stop();
    assert!(status.success());
}

#[tokio::test]
async fn a_region_failed_with_errors_or_slowness_fails_its_checks_until_healed() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let cloud = LocalCloud::start(data_dir.path());
    let health = format!("{}/healthz", cloud.region_url("europe-west1"));
    let predict_url = format!(
        "{}/predict/recommendations/recsys-ranker",
        cloud.region_url("europe-west1")
    );
    let http = reqwest::Client::new();

    let (refused, _) = lifeboat(&["local", "fail-region", "mars-north1"], data_dir.path());
    assert!(!refused, "an unknown region is refused");

    let (failed, printed) = lifeboat(
        &["local", "fail-region", "europe-west1", "--mode", "error"],
        data_dir.path(),
    );
    assert!(failed, "{printed}");
    let answer = http.get(&health).send().await.expect("answers");
    assert_eq!(answer.status(), 503);
    let (status, _, _) = predict(&predict_url).await;
    assert_eq!(status, 503);
    // Other regions are untouched.
    let answer = http
        .get(format!("{}/healthz", cloud.region_url("us-east1")))
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status(), 200);

    let (failed, printed) = lifeboat(
        &["local", "fail-region", "europe-west1", "--mode", "slow"],
        data_dir.path(),
    );
    assert!(failed, "{printed}");
    let started = Instant::now();
    let answer = http.get(&health).send().await.expect("answers, late");
    assert_eq!(answer.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "a slow region answered in {:?}",
        started.elapsed()
    );

    let (healed, printed) = lifeboat(&["local", "heal-region", "europe-west1"], data_dir.path());
    assert!(healed, "{printed}");
    let started = Instant::now();
    let answer = http.get(&health).send().await.expect("answers");
    assert_eq!(answer.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    let (status, _, body) = predict(&predict_url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], "7", "the example pins version 7: {body}");
    let (status, _) = cloud.stop();
    assert!(status.success());
}

#[tokio::test]
async fn a_released_model_version_reaches_both_standbys_whose_endpoints_answer_with_it() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let topology = unpinned_example(data_dir.path());
    let cloud = LocalCloud::start_with(data_dir.path(), &topology);

    let (released, printed) = lifeboat_with(
        &["local", "release-model", "recsys-ranker"],
        &topology,
        data_dir.path(),
    );
    assert!(released, "{printed}");
    assert!(printed.contains("released version 2"), "{printed}");
    for region in ["us-central1", "us-east1", "europe-west1"] {
        let (status, _, body) = predict(&format!(
            "{}/predict/recommendations/recsys-ranker",
            cloud.region_url(region)
        ))
        .await;
        assert_eq!(status, 200, "{region}: {body}");
        assert_eq!(
            body["version"], "2",
            "{region} serves the new version: {body}"
        );
        let replicas = if region == "us-central1" { 3 } else { 1 };
        assert_eq!(body["replicas"], replicas, "{region}: {body}");
    }
    let (in_parity, table) = lifeboat_with(&["status", "--models"], &topology, data_dir.path());
    assert!(in_parity, "{table}");
    for region in ["us-east1", "europe-west1"] {
        let row = table
            .lines()
            .find(|line| line.contains(region))
            .unwrap_or_else(|| panic!("{region} missing from:\n{table}"));
        let columns: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(columns[3..6], ["1,2", "2", "2"], "{row}");
        assert_eq!(columns.last(), Some(&"yes"), "{row}");
    }

    // A release of an older id than the one served changes no endpoint.
    let (released, printed) = lifeboat_with(
        &["local", "release-model", "recsys-ranker", "--version", "1"],
        &topology,
        data_dir.path(),
    );
    assert!(released, "{printed}");
    let (_, _, body) = predict(&format!(
        "{}/predict/recommendations/recsys-ranker",
        cloud.region_url("us-east1")
    ))
    .await;
    assert_eq!(
        body["version"], "2",
        "never back to an older version: {body}"
    );
    let (status, _) = cloud.stop();
    assert!(status.success());
}

/// With no topology given or found, the demo runs on the built-in
/// production example.
#[test]
fn the_demo_runs_the_outage_and_restore_drills_and_reports_the_rto_against_the_targets() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(["local", "demo", "--data-dir"])
        .arg(data_dir.path())
        .current_dir(data_dir.path())
        .env_remove("LIFEBOAT_TOPOLOGY")
        .output()
        .expect("lifeboat runs");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written = data_dir.path().join("production-three-region.yaml");
    assert_eq!(
        std::fs::read_to_string(&written).expect("the example, written"),
        std::fs::read_to_string(example()).expect("the example")
    );
    for line in [
        "no topology given: the built-in production example, written to",
        "checkpoint step 100 of recsys-ranker-training verified in every target region",
        "us-central1 failed at",
        "RTO ",
        "detection ",
        "predictions that failed during the outage:",
        "answered 2 golden requests right (3 predictions)",
        "RPO at the failure:",
        "failback: us-central1 answered again",
        "✓ RTO",
        "report: ",
        "drill nightly-restore-us-east1 (restore of us-east1)",
        "targets held: yes",
    ] {
        assert!(printed.contains(line), "{line:?} missing from:\n{printed}");
    }
}

#[tokio::test]
async fn a_region_answering_wrong_passes_its_health_check_but_a_move_to_it_is_refused() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let cloud = LocalCloud::start(data_dir.path());
    let functions = cloud.book["functions"].as_str().expect("functions address");
    let gateway = cloud.book["gateway"].as_str().expect("gateway address");
    let (failed, printed) = lifeboat(
        &[
            "local",
            "fail-region",
            "us-east1",
            "--mode",
            "wrong-answers",
        ],
        data_dir.path(),
    );
    assert!(failed, "{printed}");

    // Healthy by its health check, wrong by its answers (the gateway's
    // pinned route asks that region only).
    let health = reqwest::get(format!("{}/healthz", cloud.region_url("us-east1")))
        .await
        .expect("answers");
    assert_eq!(health.status(), 200);
    let (status, region, body) = predict(&format!(
        "{gateway}/regions/us-east1/predict/recommendations/recsys-ranker"
    ))
    .await;
    assert_eq!(
        (status, region.as_deref()),
        (200, Some("us-east1")),
        "{body}"
    );
    assert_eq!(
        body["predictions"],
        serde_json::json!([5.625, 2.25]),
        "{body}"
    );

    // A move there is refused: the region is not healthy by its answers,
    // and the record says why.
    let answer = reqwest::Client::new()
        .post(format!("http://{functions}/failover/move/recommendations"))
        .json(&serde_json::json!({"to": "us-east1", "by": "a test"}))
        .send()
        .await
        .expect("failover answers");
    assert_eq!(answer.status(), 200);
    let record: serde_json::Value = answer.json().await.expect("JSON");
    assert_eq!(record["outcome"], "stayed", "{record:#}");
    assert!(
        record["decision"].to_string().contains(
            "us-east1 answered golden request 0 of model recsys-ranker wrong: instance 0 \
             [1.0,2.0,3.0,4.0]: expected 4.625, got 5.625"
        ),
        "{record:#}"
    );
    let (status, _) = cloud.stop();
    assert!(status.success());
}

impl LocalCloud {
    /// The drill service's base URL.
    fn drill_url(&self) -> String {
        let functions = self.book["functions"].as_str().expect("functions address");
        format!("http://{functions}/drill")
    }

    /// Kills the process at once (SIGKILL): nothing is cleaned up.
    fn kill(mut self) {
        self.child.kill().expect("lifeboat is killed");
        self.child.wait().expect("lifeboat exits");
    }
}

/// Waits until run `id` satisfies `done`, answering it; panics after `limit`.
async fn wait_run(
    drill_url: &str,
    id: &str,
    limit: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let run: serde_json::Value = reqwest::get(format!("{drill_url}/runs/{id}"))
            .await
            .expect("the drill service answers")
            .json()
            .await
            .expect("a run is JSON");
        if done(&run) {
            return run;
        }
        assert!(
            started.elapsed() < limit,
            "run {id} never got there: {run:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The region failover moved the run's workload to (its `incident-decided`
/// step says `move to REGION`), once it has.
fn decided_move(run: &serde_json::Value) -> Option<String> {
    run["steps"].as_array()?.iter().find_map(|step| {
        (step["what"] == "incident-decided")
            .then(|| {
                step["detail"]
                    .as_str()?
                    .strip_prefix("move to ")
                    .map(str::to_string)
            })
            .flatten()
    })
}

fn has_step(run: &serde_json::Value, what: &str) -> bool {
    run["steps"]
        .as_array()
        .is_some_and(|steps| steps.iter().any(|s| s["what"] == what))
}

/// Fires the Scheduler job of `drill` as Cloud Scheduler does.
async fn tick(drill_url: &str, drill: &str, scheduled: &str) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(drill_url)
        .header("x-cloudscheduler", "true")
        .header(
            "x-cloudscheduler-jobname",
            format!("lifeboat-drill-{drill}"),
        )
        .header("x-cloudscheduler-scheduletime", scheduled)
        .json(&serde_json::json!({ "drill": drill }))
        .send()
        .await
        .expect("the drill service answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// The production example with no drill window, so that a Scheduler tick
/// sent by a test at any hour may run.
fn windowless_example(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(example()).expect("example");
    let windowless: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("window:"))
        .map(|line| format!("{line}\n"))
        .collect();
    let path = dir.join("windowless.yaml");
    std::fs::write(&path, windowless).expect("write topology");
    path
}

/// Waits until every standby holds the topology's model versions (the
/// drills' parity guardrail refuses a run before then); panics after a minute.
fn wait_for_model_parity(topology: &Path, data_dir: &Path) {
    let started = Instant::now();
    loop {
        let (in_parity, table) = lifeboat_with(&["status", "--models"], topology, data_dir);
        if in_parity {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the standbys never reached model parity:\n{table}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[tokio::test]
async fn a_drill_whose_service_is_killed_mid_run_is_cleaned_up_after_a_restart() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let topology = windowless_example(data_dir.path());
    let cloud = LocalCloud::start_with(data_dir.path(), &topology);
    wait_for_model_parity(&topology, data_dir.path());
    let drills = cloud.drill_url();
    // Two deliveries of the same tick at once: one run.
    let scheduled = "2026-12-08T10:00:00Z";
    let (first, second) = tokio::join!(
        tick(&drills, "weekly-region-outage", scheduled),
        tick(&drills, "weekly-region-outage", scheduled)
    );
    let statuses = [first.0, second.0];
    assert!(
        statuses.contains(&202),
        "one delivery starts the run: {first:?} {second:?}"
    );
    let duplicate = if first.0 == 202 { &second.1 } else { &first.1 };
    assert_eq!(duplicate["duplicate"], true, "{duplicate}");
    let id = "weekly-region-outage--20261208T100000Z";
    let runs: Vec<serde_json::Value> = reqwest::get(format!("{drills}/runs"))
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(runs.len(), 1, "{runs:#?}");

    // The run fails us-central1 in the front door; the process dies there.
    let run = wait_run(&drills, id, Duration::from_secs(60), |run| {
        has_step(run, "fault-injected")
    })
    .await;
    assert_eq!(run["state"], "running");
    cloud.kill();

    // Restarted, the local cloud finds the run unfinished once its lease
    // lapses, removes the fault, restores the routing, and says why.
    let cloud = LocalCloud::start_with(data_dir.path(), &topology);
    let run = wait_run(&cloud.drill_url(), id, Duration::from_secs(60), |run| {
        run["state"] != "running"
    })
    .await;
    assert_eq!(run["state"], "aborted", "{run:#}");
    assert!(
        run["reasons"][0]
            .as_str()
            .unwrap_or_default()
            .contains("the drill service stopped mid-run"),
        "{run:#}"
    );
    assert!(run["cleanup"]["fault_removed_at"].is_string(), "{run:#}");
    // The region's front door reads the faults every 250 ms.
    let health = format!(
        "{}/healthz?workload=recommendations",
        cloud.region_url("us-central1")
    );
    let started = Instant::now();
    loop {
        match reqwest::get(&health).await {
            Ok(answer) if answer.status() == 200 => break,
            answered => assert!(
                started.elapsed() < Duration::from_secs(5),
                "us-central1 does not serve again: {answered:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = run["report"].as_str().expect("a report");
    assert!(Path::new(report).exists(), "{report}");
    let (status, _) = cloud.stop();
    assert!(status.success());
}

#[tokio::test]
async fn a_real_outage_during_a_drill_aborts_it_and_leaves_the_routing_to_the_real_failover() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let cloud = LocalCloud::start(data_dir.path());
    wait_for_model_parity(&example(), data_dir.path());
    let drills = cloud.drill_url();
    let (started, printed) = lifeboat(
        &[
            "drill",
            "run",
            "weekly-region-outage",
            "--ignore-window",
            "--detach",
        ],
        data_dir.path(),
    );
    assert!(started, "{printed}");
    let id = printed
        .split_whitespace()
        .find(|word| word.starts_with("weekly-region-outage--"))
        .expect("the run's id is printed")
        .to_string();
    // Once the drill's outage of us-central1 has moved the traffic, the
    // standby that took it (failover's choice: us-east1 or europe-west1)
    // really fails, as a whole.
    let run = wait_run(&drills, &id, Duration::from_secs(60), |run| {
        decided_move(run).is_some()
    })
    .await;
    let real = decided_move(&run).expect("a move was decided");
    let (failed, printed) = lifeboat(&["local", "fail-region", &real], data_dir.path());
    assert!(failed, "{printed}");
    let run = wait_run(&drills, &id, Duration::from_secs(90), |run| {
        run["state"] != "running"
    })
    .await;
    assert_eq!(run["state"], "aborted", "{run:#}");
    let why = run["reasons"][0].as_str().unwrap_or_default();
    assert!(
        why.contains(&format!(
            "a real incident opened on recommendations in {real}"
        )),
        "{why}"
    );
    assert!(has_step(&run, "routing-left"), "{run:#}");
    assert!(
        run["cleanup"]["fault_removed_at"].is_string(),
        "the drill's own fault is removed: {run:#}"
    );
    let (status, _) = cloud.stop();
    assert!(status.success());
}
