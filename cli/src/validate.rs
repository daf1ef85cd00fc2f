//! `lifeboat validate FILE`: checks a topology file and reports every problem.

use std::path::Path;

use lifeboat_shared::topology::Topology;

/// Validates the topology at `path`: prints each problem to stderr, or a
/// one-line summary to stdout. Returns whether the file is valid.
pub fn run(path: &Path) -> anyhow::Result<bool> {
    match Topology::load(path) {
        Ok(topology) => {
            println!(
                "{}: OK ({} regions, {} workloads, {} assets)",
                path.display(),
                topology.regions().len(),
                topology.workloads().len(),
                topology.asset_count()
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
