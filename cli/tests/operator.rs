//! What spares an operator typing: the topology found without `--topology`
//! (`$LIFEBOAT_TOPOLOGY`, then `./lifeboat.yaml`), and shell completions.
//! Each runs the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The three-region production example shipped with the repository.
fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/production-three-region.yaml")
}

/// `lifeboat ARGS` run in `dir` with `$LIFEBOAT_TOPOLOGY` as given (unset
/// when `None`).
fn lifeboat_in(dir: &Path, topology_variable: Option<&Path>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lifeboat"));
    command.args(args).current_dir(dir);
    match topology_variable {
        Some(path) => command.env("LIFEBOAT_TOPOLOGY", path),
        None => command.env_remove("LIFEBOAT_TOPOLOGY"),
    };
    command.output().expect("lifeboat runs")
}

/// `lifeboat local fail-region us-east1` (a command that reads the
/// topology and needs no running cloud) in `dir`.
fn fail_region(dir: &Path, topology_variable: Option<&Path>, extra: &[&str]) -> Output {
    let mut args = vec!["local", "fail-region", "us-east1", "--data-dir", "data"];
    args.extend_from_slice(extra);
    lifeboat_in(dir, topology_variable, &args)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_topology_comes_from_the_variable_when_not_given() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = fail_region(dir.path(), Some(&example()), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("us-east1 failed"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn the_option_wins_over_the_variable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.yaml");
    let example = example();
    let given = example.to_str().expect("UTF-8 path");
    let output = fail_region(dir.path(), Some(&missing), &["--topology", given]);
    assert!(output.status.success(), "{}", stderr(&output));

    let output = fail_region(dir.path(), Some(&missing), &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("missing.yaml"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn lifeboat_yaml_in_the_working_directory_is_the_topology_last() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(example(), dir.path().join("lifeboat.yaml")).expect("copy");
    let output = fail_region(dir.path(), None, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("us-east1 failed"),
        "{}",
        stdout(&output)
    );
    let output = lifeboat_in(
        dir.path(),
        None,
        &["local", "heal-region", "us-east1", "--data-dir", "data"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn with_no_topology_anywhere_the_error_names_the_three_places() {
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [
        &["local", "fail-region", "us-east1"][..],
        &["status"],
        &["plan"],
        &["drill", "list"],
        &["sync", "reconcile"],
        &["failback", "recommendations"],
    ] {
        let output = lifeboat_in(dir.path(), None, args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let error = stderr(&output);
        for place in ["--topology", "$LIFEBOAT_TOPOLOGY", "lifeboat.yaml"] {
            assert!(error.contains(place), "{args:?}: {error} names {place}");
        }
    }
}

#[test]
fn the_bash_completions_name_every_subcommand() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = lifeboat_in(dir.path(), None, &["completions", "bash"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let script = stdout(&output);
    assert!(
        script.contains("complete -F _lifeboat"),
        "a bash completion script"
    );
    for subcommand in [
        "validate",
        "local",
        "status",
        "plan",
        "sync",
        "failover",
        "drill",
        "failback",
        "completions",
        "fail-region",
        "release-model",
        "reconcile",
    ] {
        assert!(
            script.contains(subcommand),
            "{subcommand} missing from the bash completions"
        );
    }
    assert!(script.contains("--topology"), "options are completed too");

    let output = lifeboat_in(dir.path(), None, &["completions", "tcsh"]);
    assert_eq!(output.status.code(), Some(2), "an unknown shell is refused");
    assert!(stderr(&output).contains("bash"), "{}", stderr(&output));
}
