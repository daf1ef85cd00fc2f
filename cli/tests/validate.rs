//! `lifeboat validate FILE` as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repository_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn validate(file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .arg("validate")
        .arg(file)
        .output()
        .expect("lifeboat runs")
}

#[test]
fn every_example_is_valid() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repository_file("examples")).expect("examples/ exists") {
        let path = entry.expect("readable entry").path();
        if path
            .extension()
            .is_some_and(|extension| extension == "yaml")
        {
            let output = validate(&path);
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(stdout.contains(": OK ("), "{stdout}");
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} examples");
}

#[test]
fn a_broken_file_names_file_line_column_and_field_and_fails() {
    let bad = repository_file("tests/fixtures/topology/bad.yaml");
    let output = validate(&bad);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.yaml:17:13: workloads[0].assets.buckets[0].replicas.us-central1: replica in the primary's own region"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "bad.yaml:18:13: workloads[0].assets.buckets[0].replicas.asia-east9: unknown region"
        ),
        "{stderr}"
    );
    assert!(
        stderr.lines().count() >= 5,
        "every problem is reported: {stderr}"
    );
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let output = validate(Path::new("/nonexistent/topology.yaml"));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/topology.yaml: cannot read: No such file or directory"),
        "{stderr}"
    );
    assert!(!stderr.contains(":0:0"), "no made-up position: {stderr}");
}

#[test]
fn a_pilot_light_model_without_its_machine_type_is_refused_saying_why() {
    let example = std::fs::read_to_string(repository_file("examples/pilot-light.yaml"))
        .expect("the pilot-light example");
    let without = example.replace("          machine-type: a2-highgpu-1g\n", "");
    assert_ne!(without, example, "the example records a machine type");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("pilot-light.yaml");
    std::fs::write(&file, without).expect("write");
    let output = validate(&file);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "pilot-light.yaml:19:11: workloads[0].assets.models[0].machine-type: \
             a pilot-light model needs `machine-type`"
        ),
        "{stderr}"
    );
}

#[test]
fn a_checkpoint_whose_copy_passes_the_rpo_is_warned_but_valid() {
    let text = std::fs::read_to_string(repository_file("examples/production-three-region.yaml"))
        .expect("example");
    let dir = tempfile::tempdir().expect("temp dir");
    let big = dir.path().join("big.yaml");
    std::fs::write(
        &big,
        text.replace("checkpoint-size: 8GiB", "checkpoint-size: 40GiB"),
    )
    .expect("written");
    let output = validate(&big);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: ")
            && stderr.contains("workloads[0].assets.checkpoints[0].interval-steps")
            && stderr.contains("beyond the RPO 5m"),
        "{stderr}"
    );
}
