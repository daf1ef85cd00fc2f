//! `lifeboat validate FILE`: checks a topology file and reports every
//! problem, and every warning (allowed, but likely wrong).

use std::path::Path;

use lifeboat_shared::topology::Topology;

/// Validates the topology at `path`: prints each problem to stderr, or a
/// one-line summary to stdout after the warnings (stderr). Returns whether
/// the file is valid.
pub fn run(path: &Path) -> anyhow::Result<bool> {
    match Topology::load(path) {
        Ok(topology) => {
            for warning in topology.warnings() {
                eprintln!("warning: {warning}");
            }
            println!(
                "{}: OK ({}, {}, {}, {})",
                path.display(),
                count(topology.regions().len(), "region"),
                count(topology.workloads().len(), "workload"),
                count(topology.asset_count(), "asset"),
                count(topology.drills().len(), "drill")
            );
            Ok(true)
        }
        Err(errors) => {
            for problem in errors.problems() {
                eprintln!("{problem}");
            }
            Ok(false)
        }
    }
}

/// `1 region`, `3 regions`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
