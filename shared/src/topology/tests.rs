//! Tests of loading and validating topology files: every example loads, and
//! broken files report each problem at its line:column and field path.

use std::path::PathBuf;

use super::*;

fn workspace_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// The problems of `text`, as `line:column path: message` strings.
fn problems(text: &str) -> Vec<String> {
    match Topology::parse(text, "t.yaml") {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .problems()
            .iter()
            .map(|p| format!("{}:{} {}: {}", p.line, p.column, p.path, p.message))
            .collect(),
    }
}

/// Asserts that a problem at `at` (`line:column path`) mentions `words`.
fn assert_has(found: &[String], at: &str, words: &str) {
    assert!(
        found
            .iter()
            .any(|p| p.starts_with(&format!("{at}: ")) && p.contains(words)),
        "expected `{at}: ...{words}...` among:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_example_loads_without_a_warning() {
    let dir = workspace_file("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            match Topology::load(&path) {
                Err(errors) => panic!("{errors}"),
                Ok(topology) => {
                    assert!(topology.warnings().is_empty(), "{:?}", topology.warnings())
                }
            }
            seen += 1;
        }
    }
    assert!(seen >= 4, "only {seen} examples in {}", dir.display());
}

#[test]
fn production_three_region_accessors() {
    let t = Topology::load(workspace_file("examples/production-three-region.yaml")).unwrap();
    assert_eq!(t.primary().as_str(), "us-central1");
    let standbys: Vec<_> = t.standby_regions().map(|r| r.id.as_str()).collect();
    assert_eq!(standbys, ["us-east1", "europe-west1"]);
    let w = t.workload("recommendations").unwrap();
    assert_eq!(w.target_rpo(), Duration::from_mins(5));
    assert_eq!(w.target_rto(), Duration::from_mins(5));
    assert_eq!(w.pattern, Pattern::ActivePassive);
    assert_eq!(w.hold_down, Duration::from_mins(15));
    assert_eq!(w.assets.models[0].serving_replicas.get(), 3);
    assert_eq!(t.asset_count(), 4);

    let (owner, location) = t
        .checkpoint_for_object(
            "acme-recsys-ckpt-use1",
            "runs/ranker-v7/step_1200/commit_success.txt",
        )
        .unwrap();
    assert_eq!(owner.id.as_str(), "recommendations");
    assert_eq!(location.marker.object_name(), "commit_success.txt");
    assert_eq!(location.keep_newest.count(), 5);
    assert_eq!(location.steps_in(Duration::from_mins(5)), Some(150));
    assert_eq!(location.gpu_hours_in(Duration::from_mins(30)), Some(8.0));
    assert!(
        t.checkpoint_for_object("acme-recsys-ckpt-use1", "runs/other/x")
            .is_none()
    );

    assert_eq!(t.workloads_for_bucket("acme-recsys-features-euw1").len(), 1);
    assert!(t.workloads_for_bucket("someone-elses-bucket").is_empty());
    assert_eq!(t.workloads_using_model("4512398712").len(), 1);
    assert_eq!(t.workloads_using_model("recsys-ranker-v7").len(), 1);

    let buckets: Vec<(&str, &str)> = t
        .buckets()
        .into_iter()
        .map(|(bucket, region)| (bucket.as_str(), region.as_str()))
        .collect();
    assert_eq!(buckets.len(), 6);
    assert!(buckets.contains(&("acme-recsys-ckpt-usc1", "us-central1")));
    assert!(buckets.contains(&("acme-recsys-ckpt-euw1", "europe-west1")));
    assert!(buckets.contains(&("acme-recsys-features-use1", "us-east1")));
}

#[test]
fn defaults_come_from_the_class() {
    let t = Topology::load(workspace_file("examples/active-active.yaml")).unwrap();
    let w = t.workload("fraud-scoring").unwrap();
    assert_eq!(w.target_rpo(), Duration::ZERO);
    assert_eq!(w.target_rto(), Duration::ZERO);
    assert_eq!(
        w.failback,
        Failback::Automatic {
            stable_for: Duration::from_mins(30)
        }
    );
    let p = Topology::load(workspace_file("examples/pilot-light.yaml")).unwrap();
    let w = p.workload("llm-pretraining").unwrap();
    assert_eq!(w.failback, Failback::Manual);
    assert_eq!(w.assets.checkpoints[0].marker.object_name(), ".metadata");
}

#[test]
fn fixture_reports_every_problem_with_position() {
    let path = workspace_file("tests/fixtures/topology/bad.yaml");
    let errors = Topology::load(&path).unwrap_err();
    let text = errors.to_string();
    let lines: Vec<&str> = text.lines().collect();
    let file = path.display().to_string();
    let expected = [
        ":11:5: workloads[0].rto: rto 5m is looser than the online-inference floor of 2m",
        ":11:5: workloads[0].rto: rto 5m is impossible for pilot-light",
        ":17:13: workloads[0].assets.buckets[0].replicas.us-central1: replica in the primary's own region us-central1",
        ":18:13: workloads[0].assets.buckets[0].replicas.asia-east9: unknown region `asia-east9`",
        ":19:11: workloads[0].assets.buckets[1].id: duplicate asset id `features` (first used at workloads[0].assets.buckets[0])",
        ":20:11: workloads[0].assets.buckets[1].source: duplicate bucket `acme-features-usc1`",
        ":24:19: workloads[0].assets.buckets[2].source: invalid bucket name `Acme_Labels`",
        ":34:24: workloads[0].assets.checkpoints[0].keep-newest: retention of 0 would delete every checkpoint",
        ":38:11: workloads[0].assets.checkpoints[1].colour: unknown field `colour`",
    ];
    for want in expected {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{file}{want}"))
                    || l.contains(&format!("{file}{want}"))),
            "missing `{want}` in:\n{text}"
        );
    }
}

#[test]
fn residency_fixture_names_every_region_outside_the_allowed_ones() {
    let path = workspace_file("tests/fixtures/topology/bad-residency.yaml");
    let errors = Topology::load(&path).unwrap_err();
    let text = errors.to_string();
    let file = path.display().to_string();
    let outside = "is outside the workload's allowed-regions (europe-west1, europe-west4)";
    let expected = [
        format!(":25:13: workloads[0].assets.models[0].endpoints.us-east1: region us-east1 {outside}"),
        format!(":31:13: workloads[0].assets.buckets[0].replicas.us-east1: region us-east1 {outside}"),
        format!(":36:13: workloads[0].assets.datasets[0].replicas.us-east1: region us-east1 {outside}"),
        format!(":42:13: workloads[0].assets.checkpoints[0].replicas.us-east1: region us-east1 {outside}"),
        ":48:5: workloads[1].allowed-regions: the primary region europe-west1 must be among the allowed regions".to_string(),
        ":50:9: workloads[1].allowed-regions[1]: unknown region `asia-east9` (not declared under `regions`)".to_string(),
    ];
    for want in &expected {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{file}{want}"))),
            "missing `{want}` in:\n{text}"
        );
    }
    assert_eq!(text.lines().count(), expected.len(), "{text}");
}

#[test]
fn allowed_regions_restrict_failover_targets() {
    let text = BASE.replace(
        "    pattern: active-passive\n",
        "    pattern: active-passive\n    allowed-regions: [us-central1, us-east1]\n",
    );
    let t = Topology::parse(&text, "t.yaml").unwrap();
    let w = &t.workloads()[0];
    assert!(w.allows_region("us-east1"));
    assert!(!w.allows_region("europe-west1"));
    let unrestricted = Topology::parse(BASE, "t.yaml").unwrap();
    assert!(unrestricted.workloads()[0].allows_region("europe-west1"));
    assert!(unrestricted.workloads()[0].allowed_regions.is_none());
    let twice = problems(&BASE.replace(
        "    pattern: active-passive\n",
        "    pattern: active-passive\n    allowed-regions: [us-central1, us-east1, us-east1]\n",
    ));
    assert_has(
        &twice,
        "11:46 workloads[0].allowed-regions[2]",
        "listed twice",
    );
}

/// A valid two-region active-passive file to break one piece at a time.
const BASE: &str = "\
project: acme-ml-prod
regions:
  - id: us-central1
    role: primary
  - id: us-east1
    role: standby
workloads:
  - id: ranker
    class: online-inference
    pattern: active-passive
    assets:
      models:
        - id: ranker-model
          model-id: 4512398712
          serving-replicas: 3
          standby-replicas: 1
          endpoints:
            us-central1: 111
            us-east1: 222
      buckets:
        - id: features
          source: acme-features-usc1
          replicas:
            us-east1: acme-features-use1
";

#[test]
fn base_is_valid() {
    assert_eq!(problems(BASE), Vec::<String>::new());
    let t = Topology::parse(BASE, "t.yaml").unwrap();
    // Plain numbers are read as written when a string is expected.
    assert_eq!(t.workloads()[0].assets.models[0].model_id, "4512398712");
}

#[test]
fn syntax_error_has_position() {
    let found = problems("project: acme-ml-prod\nregions: [us-central1\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("3:1 : YAML syntax error"), "{found:?}");
}

#[test]
fn duplicate_yaml_key_is_a_syntax_error() {
    let found = problems(&BASE.replace(
        "    pattern: active-passive\n",
        "    pattern: active-passive\n    pattern: pilot-light\n",
    ));
    assert!(found[0].contains("duplicated key"), "{found:?}");
}

#[test]
fn empty_file() {
    assert_has(&problems(""), "1:1 ", "empty");
}

#[test]
fn wrong_types_and_unknown_fields_in_several_elements() {
    let text = BASE
        .replace("serving-replicas: 3", "serving-replicas: three")
        .replace("    role: standby", "    role: standby\n    zone: b")
        .replace("source: acme-features-usc1", "source: [acme]");
    let found = problems(&text);
    assert_has(&found, "7:5 regions[1].zone", "unknown field `zone`");
    assert_has(
        &found,
        "16:29 workloads[0].assets.models[0].serving-replicas",
        "invalid type: string \"three\"",
    );
    assert_has(
        &found,
        "23:19 workloads[0].assets.buckets[0].source",
        "invalid type: sequence",
    );
    assert_eq!(found.len(), 3, "{found:#?}");
}

#[test]
fn missing_field_points_at_its_parent() {
    let found = problems(&BASE.replace("          model-id: 4512398712\n", ""));
    assert_has(
        &found,
        "13:11 workloads[0].assets.models[0]",
        "missing field `model-id`",
    );
}

#[test]
fn model_ids_vertex_ai_cannot_hold_are_refused() {
    let found = problems(&BASE.replace("model-id: 4512398712", "model-id: Ranker V7"));
    assert_has(
        &found,
        "14:11 workloads[0].assets.models[0].model-id",
        "\"Ranker V7\" is not a Vertex AI model id",
    );
    assert_eq!(found.len(), 1, "{found:#?}");
    let custom = BASE.replace("model-id: 4512398712", "model-id: ranker-v7");
    assert_eq!(problems(&custom), Vec::<String>::new());
}

#[test]
fn image_mirrors_name_a_standby_and_a_repository() {
    let with = |mirrors: &str| {
        BASE.replace(
            "          endpoints:\n",
            &format!("          image-mirrors:\n{mirrors}          endpoints:\n"),
        )
    };
    let good = with("            us-east1: us-east1-docker.pkg.dev/acme/serving\n");
    assert_eq!(problems(&good), Vec::<String>::new());
    let t = Topology::parse(&good, "t.yaml").unwrap();
    assert_eq!(
        t.workloads()[0].assets.models[0].image_mirrors[&RegionId::new("us-east1").unwrap()],
        "us-east1-docker.pkg.dev/acme/serving"
    );
    let found = problems(&with(
        "            us-central1: us-central1-docker.pkg.dev/acme/serving\n            \
         us-east1: us-east1-docker.pkg.dev/acme/serving/ranker:7\n",
    ));
    assert_has(
        &found,
        "18:13 workloads[0].assets.models[0].image-mirrors.us-central1",
        "primary's own region",
    );
    assert_has(
        &found,
        "19:13 workloads[0].assets.models[0].image-mirrors.us-east1",
        "not a registry repository",
    );
    assert_eq!(found.len(), 2, "{found:#?}");
}

#[test]
fn primaries_and_duplicate_regions() {
    let none = problems(&BASE.replace("role: primary", "role: standby"));
    assert_has(&none, "2:1 regions", "no primary region");
    let two = BASE.replace("role: standby", "role: primary");
    assert_has(
        &problems(&two),
        "6:5 regions[1].role",
        "more than one primary",
    );
    let dup = BASE.replace(
        "id: us-east1\n    role: standby",
        "id: us-central1\n    role: standby",
    );
    assert_has(
        &problems(&dup),
        "5:5 regions[1].id",
        "duplicate region `us-central1`",
    );
    let bad = BASE.replace("id: us-east1", "id: US-East");
    assert_has(
        &problems(&bad),
        "5:9 regions[1].id",
        "not a Google Cloud region",
    );
}

#[test]
fn rto_impossible_by_pattern() {
    let zero = BASE.replace(
        "    pattern: active-passive\n",
        "    pattern: active-passive\n    rto: 0\n",
    );
    assert_has(
        &problems(&zero),
        "11:5 workloads[0].rto",
        "impossible for active-passive",
    );
    let critical = BASE.replace("online-inference", "critical-inference");
    let found = problems(&critical);
    assert_has(
        &found,
        "9:5 workloads[0].class",
        "rto 0s is impossible for active-passive",
    );
    assert_has(
        &found,
        "9:5 workloads[0].class",
        "rpo 0 needs synchronous replication",
    );
    let pilot = BASE
        .replace("active-passive", "pilot-light")
        .replace("          standby-replicas: 1\n", "")
        .replace(
            "    class: online-inference",
            "    class: production-training\n    rto: 10m",
        );
    assert_has(
        &problems(&pilot),
        "10:5 workloads[0].rto",
        "impossible for pilot-light",
    );
}

#[test]
fn rpo_zero_needs_data_everywhere() {
    let text = "\
project: acme-ml-prod
regions:
  - {id: us-central1, role: primary}
  - {id: us-east1, role: standby}
  - {id: us-west1, role: standby}
workloads:
  - id: fraud
    class: critical-inference
    pattern: active-active
    assets:
      models:
        - id: fraud-model
          model-id: m1
          serving-replicas: 2
          endpoints: {us-central1: e1, us-east1: e2, us-west1: e3}
      buckets:
        - id: cache
          source: acme-cache-usc1
          replicas: {us-east1: acme-cache-use1}
";
    assert_has(
        &problems(text),
        "19:11 workloads[0].assets.buckets[0].replicas",
        "missing us-west1",
    );
}

#[test]
fn durations_and_targets() {
    let text = BASE.replace(
        "    pattern: active-passive\n",
        "    pattern: active-passive\n    rpo: 5 minutes\n",
    );
    assert_has(
        &problems(&text),
        "11:10 workloads[0].rpo",
        "invalid duration `5 minutes`",
    );
    let text = BASE.replace(
        "    pattern: active-passive\n",
        "    pattern: active-passive\n    hold-down: 10\n",
    );
    assert_has(
        &problems(&text),
        "11:16 workloads[0].hold-down",
        "needs a unit",
    );
    let loose = BASE.replace(
        "    pattern: active-passive\n",
        "    pattern: active-passive\n    rpo: 1h\n",
    );
    assert_has(
        &problems(&loose),
        "11:5 workloads[0].rpo",
        "looser than the online-inference floor of 5m",
    );
}

#[test]
fn model_replicas_follow_the_pattern() {
    let text = BASE.replace("          standby-replicas: 1\n", "");
    assert_has(
        &problems(&text),
        "13:11 workloads[0].assets.models[0].standby-replicas",
        "at least 1",
    );
    let no_primary = BASE.replace("            us-central1: 111\n", "");
    assert_has(
        &problems(&no_primary),
        "17:11 workloads[0].assets.models[0].endpoints",
        "no endpoint in the primary region us-central1",
    );
}

#[test]
fn checkpoints_overlap_and_period() {
    let text = BASE.replace(
        "      buckets:",
        "      checkpoints:
        - id: a
          bucket: acme-ckpt-usc1
          prefix: runs/
          marker: {manifest: manifest.json}
          replicas: {us-east1: acme-ckpt-use1}
          interval-steps: 100
          keep-newest: 2
          step-duration: 10s
        - id: b
          bucket: acme-ckpt-usc1
          prefix: runs/llm
          marker: {custom: DONE}
          replicas: {us-east1: acme-ckpt-use1}
          interval-steps: 10
          keep-newest: 2
      buckets:",
    );
    let found = problems(&text);
    assert_has(
        &found,
        "26:11 workloads[0].assets.checkpoints[0].interval-steps",
        "one every 16m40s, longer than the workload's RPO 5m",
    );
    assert_has(
        &found,
        "30:11 workloads[0].assets.checkpoints[1].bucket",
        "overlaps the one at workloads[0].assets.checkpoints[0].bucket",
    );
    assert_has(
        &found,
        "33:22 workloads[0].assets.checkpoints[1].replicas.us-east1",
        "overlaps",
    );
}

#[test]
fn load_reports_unreadable_file() {
    let errors = Topology::load("/nonexistent/topology.yaml").unwrap_err();
    let io = std::fs::read_to_string("/nonexistent/topology.yaml").unwrap_err();
    // No position: nothing in the file was read.
    assert_eq!(
        errors.to_string(),
        format!("/nonexistent/topology.yaml: cannot read: {io}")
    );
}

#[test]
fn nothing_panics_on_odd_input() {
    for text in [
        "---\n...\n---\n",
        "project: [",
        "*a",
        "&a [*a]",
        "project: !!int abc",
        "regions: {}",
        "? [a]\n: b",
        "workloads:\n  - !custom {id: x}\n",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        "\u{feff}project: acme-ml-prod\nregions: []\n",
        "project: acme-ml-prod\nregions:\n  - id: us-central1\n    role: primary\nworkloads:\n  - id: w\n    class: research-training\n    pattern: pilot-light\n    failback: {automatic: {stable-for: 0}, manual: ~}\n",
    ] {
        let _ = Topology::parse(text, "odd.yaml");
    }
}

#[test]
fn golden_requests_are_read_as_json_with_their_tolerance() {
    let text = BASE.replace(
        "          endpoints:\n",
        "          golden-requests:
            - instances: [[1.0, 2, -3.5], {user: \"u-1\", history: [4, 5]}, \"7\", 7]
              predictions: [0.5, {score: 0.25, label: top}, 1, 2]
              tolerance: 0.001
            - instances: [2.0]
              predictions: [1.25]
          endpoints:\n",
    );
    assert_eq!(problems(&text), Vec::<String>::new());
    let t = Topology::parse(&text, "t.yaml").unwrap();
    let golden = &t.workloads()[0].assets.models[0].golden_requests;
    assert_eq!(golden.len(), 2);
    assert_eq!(
        serde_json::Value::Array(golden[0].instances.clone()),
        serde_json::json!([[1.0, 2, -3.5], {"user": "u-1", "history": [4, 5]}, "7", 7])
    );
    assert_eq!(
        golden[0].predictions[1],
        serde_json::json!({"score": 0.25, "label": "top"})
    );
    assert_eq!(golden[0].tolerance.get(), 0.001);
    assert_eq!(golden[1].tolerance.get(), 0.0, "exact unless told");
    let whole = BASE.replace(
        "          endpoints:\n",
        "          golden-requests: [{instances: [1], predictions: [0.75], tolerance: 1}]\n          endpoints:\n",
    );
    let t = Topology::parse(&whole, "t.yaml").unwrap();
    assert_eq!(
        t.workloads()[0].assets.models[0].golden_requests[0]
            .tolerance
            .get(),
        1.0
    );
    let unknown = BASE.replace(
        "          endpoints:\n",
        "          golden-requests:\n            - {instances: [1], predictions: [0.75], seed: 7}\n          endpoints:\n",
    );
    assert_has(
        &problems(&unknown),
        "18:53 workloads[0].assets.models[0].golden-requests[0].seed",
        "unknown field `seed`",
    );
}

#[test]
fn golden_fixture_reports_exactly_its_problems() {
    let path = workspace_file("tests/fixtures/topology/bad-golden.yaml");
    let errors = Topology::load(&path).unwrap_err();
    let file = path.display().to_string();
    let base = "workloads[0].assets.models[0].golden-requests";
    let expected = [
        format!(
            "{file}:21:15: {base}[0].instances: no instances: a golden request sends at least one"
        ),
        format!(
            "{file}:24:15: {base}[1].predictions: 1 predictions for 2 instances: give the expected prediction of each instance, in order"
        ),
        format!(
            "{file}:27:15: {base}[2].tolerance: tolerance -0.1 is not a finite number of at least 0 (the absolute difference allowed, e.g. 0.001)"
        ),
        format!(
            "{file}:30:15: {base}[3].tolerance: tolerance NaN is not a finite number of at least 0 (the absolute difference allowed, e.g. 0.001)"
        ),
        format!(
            "{file}:33:15: {base}[4].tolerance: tolerance inf is not a finite number of at least 0 (the absolute difference allowed, e.g. 0.001)"
        ),
    ];
    assert_eq!(
        errors.to_string().lines().collect::<Vec<_>>(),
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
}

#[test]
fn machine_types_are_checked_and_pilot_light_needs_one() {
    let with = |machine_type: &str| {
        BASE.replace(
            "          serving-replicas: 3\n",
            &format!("          serving-replicas: 3\n          machine-type: {machine_type}\n"),
        )
    };
    for good in [
        "n1-standard-4",
        "a2-highgpu-1g",
        "ct5lp-hightpu-4t",
        "g2-standard-8",
    ] {
        assert_eq!(problems(&with(good)), Vec::<String>::new(), "{good}");
    }
    let t = Topology::parse(&with("n1-standard-4"), "t.yaml").unwrap();
    assert_eq!(
        t.workloads()[0].assets.models[0].machine_type.as_deref(),
        Some("n1-standard-4")
    );
    for bad in [
        "\"\"",
        "N1-standard-4",
        "n1-standard",
        "standard-4-n1",
        "n1-standard-4-x",
    ] {
        assert_has(
            &problems(&with(bad)),
            "16:11 workloads[0].assets.models[0].machine-type",
            "is not a machine type",
        );
    }
    let pilot = BASE
        .replace("active-passive", "pilot-light")
        .replace("          standby-replicas: 1\n", "")
        .replace("class: online-inference", "class: research-training");
    assert_has(
        &problems(&pilot),
        "13:11 workloads[0].assets.models[0].machine-type",
        "a pilot-light model needs `machine-type`",
    );
    let pilot = pilot.replace(
        "          serving-replicas: 3\n",
        "          serving-replicas: 3\n          machine-type: a2-highgpu-1g\n",
    );
    assert_eq!(problems(&pilot), Vec::<String>::new());
}

/// [`BASE`] with `drills` (its first element on line 23).
fn with_drills(drills: &str) -> String {
    format!("{BASE}drills:\n{drills}")
}

/// One drill of [`BASE`]'s workload, with `extra` lines appended.
fn drill(kind: &str, target: &str, extra: &str) -> String {
    format!(
        "  - id: d\n    kind: {kind}\n    workload: ranker\n    target-region: {target}\n    \
         schedule: 0 10 * * TUE\n{extra}"
    )
}

#[test]
fn drills_are_read_with_their_defaults() {
    let text = with_drills(&format!(
        "{}{}",
        drill("region-outage", "us-central1", "    window: 09:00-17:00\n"),
        "  - id: nightly-restore\n    kind: restore\n    workload: ranker\n    \
         target-region: us-east1\n    schedule: 30 3 * * *\n    max-duration: 1h\n    \
         window: 22:00-02:00\n    guardrails: {max-error-ratio: 0.1}\n",
    ));
    let t = Topology::parse(&text, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    let outage = t.drill("d").expect("the outage drill");
    assert_eq!(outage.kind, DrillKind::RegionOutage);
    assert_eq!(outage.max_duration, DEFAULT_MAX_DURATION);
    assert_eq!(outage.guardrails, Guardrails::default());
    // 2026-12-01 is a Tuesday.
    let at = |text: &str| text.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert_eq!(
        outage.schedule.next_after(at("2026-12-01T09:00:00Z")),
        Some(at("2026-12-01T10:00:00Z"))
    );
    assert_eq!(
        outage.schedule.next_after(at("2026-12-01T10:00:00Z")),
        Some(at("2026-12-08T10:00:00Z"))
    );
    let window = outage.window.expect("a window");
    assert!(window.contains(at("2026-12-01T16:59:00Z")));
    assert!(!window.contains(at("2026-12-01T17:00:00Z")));
    assert!(!window.contains(at("2026-12-01T08:59:00Z")));

    let restore = t.drill("nightly-restore").expect("the restore drill");
    assert_eq!(restore.max_duration, Duration::from_hours(1));
    assert_eq!(restore.guardrails.max_error_ratio, 0.1);
    assert_eq!(restore.guardrails.failed_prediction_budget, 0.01);
    let night = restore.window.expect("a window");
    assert_eq!(night.length(), chrono::TimeDelta::hours(4));
    assert!(night.contains(at("2026-12-02T01:00:00Z")));
    assert!(!night.contains(at("2026-12-02T12:00:00Z")));
}

#[test]
fn drill_problems_name_the_field_and_why() {
    let cases = [
        (
            drill("region-outage", "us-central1", "").replace("0 10 * * TUE", "0 10 * *"),
            "30:15 drills[0].schedule",
            "has 4 fields",
        ),
        (
            drill("region-outage", "us-central1", "").replace("0 10 * * TUE", "0 25 * * *"),
            "30:15 drills[0].schedule",
            "not a unix-cron schedule",
        ),
        (
            drill("region-outage", "us-central1", "    window: 9am-5pm\n"),
            "31:13 drills[0].window",
            "HH:MM-HH:MM",
        ),
        (
            drill("region-outage", "us-central1", "    window: 09:00-09:20\n"),
            "31:5 drills[0].window",
            "open 20 min a day, shorter than the drill's max-duration (30m)",
        ),
        (
            drill("region-outage", "us-central1", "    max-duration: 7h\n"),
            "31:5 drills[0].max-duration",
            "at most 6h",
        ),
        (
            drill("region-outage", "asia-east9", ""),
            "29:5 drills[0].target-region",
            "unknown region `asia-east9`",
        ),
        (
            drill("region-outage", "us-central1", "").replace("workload: ranker", "workload: nope"),
            "28:5 drills[0].workload",
            "unknown workload `nope`",
        ),
        (
            drill("restore", "us-central1", ""),
            "29:5 drills[0].target-region",
            "us-central1 holds none",
        ),
        (
            drill("pilot-light-deploy", "us-east1", ""),
            "29:5 drills[0].target-region",
            "not pilot-light",
        ),
        (
            drill("replication-isolation", "us-east1", ""),
            "26:5 drills[0]",
            "needs `isolate-for`",
        ),
        (
            drill(
                "replication-isolation",
                "us-east1",
                "    isolate-for: 45m\n",
            ),
            "31:5 drills[0].isolate-for",
            "less than the drill's max-duration (30m)",
        ),
        (
            drill("restore", "us-east1", "    isolate-for: 5m\n"),
            "31:5 drills[0].isolate-for",
            "not restore",
        ),
        (
            drill(
                "restore",
                "us-east1",
                "    guardrails: {max-error-ratio: 1.5}\n",
            ),
            "31:18 drills[0].guardrails.max-error-ratio",
            "between 0 and 1, got 1.5",
        ),
        (
            drill("restore", "us-east1", "    kind: restore\n"),
            "31:5 ",
            "duplicated key",
        ),
        (
            format!(
                "{}{}",
                drill("restore", "us-east1", ""),
                drill("restore", "us-east1", "")
            ),
            "31:5 drills[1].id",
            "duplicate drill id `d` (first used by drills[0])",
        ),
    ];
    for (drills, at, words) in &cases {
        assert_has(&problems(&with_drills(drills)), at, words);
    }
}

#[test]
fn a_region_outage_never_fails_the_only_serving_region() {
    let single = BASE.replace("            us-east1: 222\n", "");
    let text = format!(
        "{single}drills:\n{}",
        drill("region-outage", "us-central1", "")
    );
    assert_has(
        &problems(&text),
        "28:5 drills[0].target-region",
        "the only region serving workload ranker",
    );
    let text = with_drills(&drill("region-outage", "us-east1", ""));
    assert_eq!(
        problems(&text),
        Vec::<String>::new(),
        "a standby may be failed too"
    );
}

/// The warnings of a valid `text`, as `line:column path: message` strings.
fn warnings(text: &str) -> Vec<String> {
    let topology = Topology::parse(text, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    topology
        .warnings()
        .iter()
        .map(|p| format!("{}:{} {}: {}", p.line, p.column, p.path, p.message))
        .collect()
}

#[test]
fn usage_figures_are_read_and_checked() {
    let usage = BASE
        .replace(
            "          standby-replicas: 1\n",
            "          standby-replicas: 1
          machine-type: n1-standard-8
          accelerator-type: nvidia-tesla-t4
          accelerator-count: 2
          peak-rps: 400
          mean-rps: 120
          replica-rps: 150
          scale-up-time: 6m
          deploy-time: 20m
",
        )
        .replace(
            "            us-east1: acme-features-use1\n",
            "            us-east1: acme-features-use1
          size: 2TiB
          written-per-day: 50GiB
          storage-class: nearline
",
        );
    let t = Topology::parse(&usage, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    let model = &t.workloads()[0].assets.models[0];
    assert_eq!(model.accelerator_type.as_deref(), Some("nvidia-tesla-t4"));
    assert_eq!(model.accelerator_count.map(|n| n.get()), Some(2));
    assert_eq!(model.peak_rps.map(|n| n.get()), Some(400));
    assert_eq!(model.mean_rps, Some(120));
    assert_eq!(model.scale_up_time, Some(Duration::from_mins(6)));
    let bucket = &t.workloads()[0].assets.buckets[0];
    assert_eq!(bucket.size, Some(ByteSize::from_gib(2048)));
    assert_eq!(bucket.written_per_day, Some(ByteSize::from_gib(50)));
    assert_eq!(bucket.storage_class, StorageClass::Nearline);
    assert_eq!(warnings(&usage), Vec::<String>::new());

    // 3 replicas of 100 carry 300 < 400: allowed, but said.
    let short = usage.replace("replica-rps: 150", "replica-rps: 100");
    assert_eq!(
        warnings(&short),
        [
            "15:11 workloads[0].assets.models[0].serving-replicas: 3 replicas of 100 \
          predictions per second carry 300, less than peak-rps 400"
        ]
    );

    let found = problems(
        &usage
            .replace("mean-rps: 120", "mean-rps: 500")
            .replace("nvidia-tesla-t4", "NVIDIA_TESLA_T4")
            .replace("scale-up-time: 6m", "scale-up-time: 0")
            .replace("size: 2TiB", "size: lots"),
    );
    assert_has(
        &found,
        "18:11 workloads[0].assets.models[0].accelerator-type",
        "is not an accelerator type",
    );
    assert_has(
        &found,
        "21:11 workloads[0].assets.models[0].mean-rps",
        "mean-rps 500 is above peak-rps 400",
    );
    assert_has(
        &found,
        "23:11 workloads[0].assets.models[0].scale-up-time",
        "scale-up-time is zero",
    );
    assert_has(
        &found,
        "33:17 workloads[0].assets.buckets[0].size",
        "invalid size `lots`",
    );
    let countless = usage.replace("          accelerator-type: nvidia-tesla-t4\n", "");
    assert_has(
        &problems(&countless),
        "18:11 workloads[0].assets.models[0].accelerator-count",
        "accelerator-count without accelerator-type",
    );
}

#[test]
fn a_checkpoint_whose_copy_passes_the_rpo_is_warned_with_the_interval_that_keeps_it() {
    let text = BASE.replace(
        "      buckets:",
        "      checkpoints:
        - id: a
          bucket: acme-ckpt-usc1
          marker: orbax
          replicas: {us-east1: acme-ckpt-use1}
          interval-steps: 20
          keep-newest: 2
          step-duration: 10s
          gpus: 16
          checkpoint-size: 15000MiB
      buckets:",
    );
    // A checkpoint every 200 s, and 15,000 MiB at 100 MiB/s take 150 s:
    // 350 s can be lost, beyond the 300 s RPO; (300 - 150) / 10 = 15 steps.
    assert_eq!(
        warnings(&text),
        [
            "25:11 workloads[0].assets.checkpoints[0].interval-steps: a 14.6 GiB checkpoint \
          takes about 2m30s to reach each region at the assumed 100 MiB/s, so an outage can \
          lose 5m50s of training (1.6 GPU-hours), beyond the RPO 5m: interval-steps 15 or \
          fewer keeps it (`lifeboat plan` uses the measured fan-out)"
        ]
    );
    let topology = Topology::parse(&text, "t.yaml").unwrap();
    let location = &topology.workloads()[0].assets.checkpoints[0];
    let copy = location.copy_time(ASSUMED_FANOUT_BYTES_PER_SECOND).unwrap();
    assert_eq!(copy.as_secs(), 150);
    assert_eq!(
        location.largest_interval_steps(Duration::from_mins(5), copy),
        Some(15)
    );
    // The copy alone longer than the RPO: no interval keeps it.
    let huge = text.replace("15000MiB", "40000MiB");
    assert!(
        warnings(&huge)[0].contains("no interval keeps it"),
        "{:?}",
        warnings(&huge)
    );
    // Within the RPO: nothing said.
    assert_eq!(
        warnings(&text.replace("interval-steps: 20", "interval-steps: 15")),
        Vec::<String>::new()
    );
}
