//! `lifeboat plan` as a person runs it: on the production example with the
//! shipped prices, with prices refreshed from a Cloud Billing Catalog
//! stand-in (and the catalog out of reach), with a Cloud Quotas stand-in
//! whose quota cannot cover a standby, and on a topology without usage
//! figures.

use std::path::{Path, PathBuf};

use lifeboat_plan::prices::PriceBook;
use lifeboat_plan::quota::{SERVICE, ServingResource};
use lifeboat_tests::billing_standin::{BillingStandIn, seed_from};
use lifeboat_tests::quotas_standin::QuotasStandIn;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/production-three-region.yaml")
}

/// Runs `lifeboat plan ARGS` with `env`; returns (exit success, stdout, stderr).
async fn plan(args: &[&str], env: &[(&str, String)]) -> (bool, String, String) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .arg("plan")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir.path())
        .env_remove("LIFEBOAT_PRICES")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .expect("lifeboat runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_production_example_is_planned_from_the_shipped_prices() {
    let topology = example();
    let topology = topology.to_str().expect("utf-8 path");
    let (ok, out, err) = plan(&["--topology", topology], &[]).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("prices: Transcribed by hand"), "{out}");
    for pattern in [
        "single-region",
        "pilot-light",
        "active-passive",
        "active-active",
    ] {
        assert!(out.contains(pattern), "{pattern} missing:\n{out}");
    }
    assert!(out.contains("← recommended"), "{out}");
    assert!(out.contains("standby quotas: not checked"), "{out}");
    // The README shows this very table.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let table: Vec<&str> = out
        .lines()
        .skip_while(|line| !line.starts_with("workload recommendations"))
        .take(6)
        .collect();
    assert!(
        readme.contains(&table.join("\n")),
        "README.md's plan table is not what `lifeboat plan` prints now:\n{}",
        table.join("\n")
    );

    let (ok, json, err) = plan(&["--topology", topology, "--json"], &[]).await;
    assert!(ok, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let workload = &plan["workloads"][0];
    assert_eq!(workload["workload"], "recommendations");
    assert_eq!(workload["patterns"].as_array().map(Vec::len), Some(4));
    let line = &workload["patterns"][2]["cost"]["lines"][0];
    assert!(
        line["sku"].is_string() && line["usd_per_unit"].is_number(),
        "{line}"
    );
}

#[tokio::test]
async fn refreshed_prices_come_from_the_catalog_and_an_unreachable_one_falls_back_saying_so() {
    let catalog = BillingStandIn::start(seed_from(&PriceBook::snapshot())).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("prices.json");
    let topology = example();
    let args = [
        "--topology",
        topology.to_str().expect("utf-8 path"),
        "--refresh-prices",
        "--prices",
        file.to_str().expect("utf-8 path"),
    ];
    let env = [("LIFEBOAT_CLOUDBILLING_HOST", catalog.host())];
    let (ok, out, err) = plan(&args, &env).await;
    assert!(ok, "{out}\n{err}");
    assert!(
        err.contains("wrote") && err.contains("prices.json"),
        "{err}"
    );
    let refreshed = PriceBook::load(&file).expect("the price file loads");
    assert!(
        refreshed.source.origin.contains("Cloud Billing Catalog"),
        "{}",
        refreshed.source.origin
    );
    assert!(
        out.contains("STANDIN-"),
        "the lines name the catalog's SKUs:\n{out}"
    );

    catalog.set_failing(true);
    let stale = dir.path().join("never-written.json");
    let args = [
        "--topology",
        topology.to_str().expect("utf-8 path"),
        "--refresh-prices",
        "--prices",
        stale.to_str().expect("utf-8 path"),
    ];
    let (ok, out, err) = plan(&args, &env).await;
    assert!(ok, "{out}\n{err}");
    assert!(err.contains("could not be refreshed"), "{err}");
    assert!(err.contains("using the snapshot"), "{err}");
    assert!(out.contains("prices: Transcribed by hand"), "{out}");
    assert!(!stale.exists());
}

#[tokio::test]
async fn a_standby_whose_quota_cannot_cover_the_peak_is_named_and_fails_the_plan() {
    let quotas = QuotasStandIn::start("acme-ml-prod").await;
    let cpus = ServingResource::Vcpus {
        family: "n1".into(),
    }
    .quota()
    .expect("n1 has a serving CPU quota");
    // us-east1 needs 3 × n1-standard-8 = 24 vCPUs; its quota is 16.
    quotas.set_value(SERVICE, cpus.quota_id, cpus.metric, None, 64);
    quotas.set_value(SERVICE, cpus.quota_id, cpus.metric, Some("us-east1"), 16);
    let topology = example();
    let args = [
        "--topology",
        topology.to_str().expect("utf-8 path"),
        "--check-quotas",
    ];
    let env = [("LIFEBOAT_CLOUDQUOTAS_HOST", quotas.host())];
    let (ok, out, err) = plan(&args, &env).await;
    assert!(!ok, "a short quota fails the plan:\n{out}\n{err}");
    assert!(
        out.contains("NOT ENOUGH: us-east1 needs 24")
            && out.contains("the quota is 16: it could not scale during an outage"),
        "{out}"
    );
    assert!(out.contains("ok: europe-west1 needs 24"), "{out}");

    quotas.refuse();
    let (_, out, _) = plan(&args, &env).await;
    assert!(out.contains("unknown: us-east1 needs 24"), "{out}");
    assert!(out.contains("cloudquotas.quotas.get"), "{out}");
}

#[tokio::test]
async fn a_topology_without_usage_figures_is_planned_as_far_as_it_goes_and_fails() {
    let text = std::fs::read_to_string(example()).expect("example");
    let bare: String = text
        .lines()
        .filter(|line| {
            let line = line.trim_start();
            !(line.starts_with("size:") || line.starts_with("mean-rps:"))
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bare.yaml");
    std::fs::write(&path, bare).expect("written");
    let (ok, out, _) = plan(&["--topology", path.to_str().expect("utf-8 path")], &[]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("missing figure: recsys-features: size"),
        "{out}"
    );
    assert!(
        out.contains("missing figure: recsys-ranker: mean-rps"),
        "{out}"
    );
    assert!(out.contains("INCOMPLETE"), "{out}");
    assert!(
        out.contains("active-passive"),
        "what can be priced still is:\n{out}"
    );
}
