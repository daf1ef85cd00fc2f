//! Where a command finds its topology file, so it need not be typed every
//! time: `--topology`, else `$LIFEBOAT_TOPOLOGY`, else `./lifeboat.yaml`.
//! `lifeboat local demo` with none of them runs on the production example
//! built into the binary.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The variable naming the topology file when `--topology` is not given
/// (the deployed services read the same one).
pub const TOPOLOGY_VARIABLE: &str = "LIFEBOAT_TOPOLOGY";

/// The file looked for in the working directory last.
pub const DEFAULT_FILE: &str = "lifeboat.yaml";

/// The name the built-in example is written under.
const EXAMPLE_FILE: &str = "production-three-region.yaml";

/// The production example (three regions, every pattern), as shipped in
/// `examples/`.
const EXAMPLE: &str = include_str!("../../examples/production-three-region.yaml");

/// The `--topology` option of every command that reads a topology.
#[derive(Debug, Clone, clap::Args)]
pub struct TopologyFile {
    /// The topology YAML file [default: ./lifeboat.yaml].
    #[arg(long = "topology", value_name = "FILE", env = TOPOLOGY_VARIABLE)]
    given: Option<PathBuf>,
}

/// No topology file was given and none was found.
#[derive(Debug, thiserror::Error)]
#[error(
    "no topology file: --topology was not given, ${TOPOLOGY_VARIABLE} is not set, and there is no {DEFAULT_FILE} in {}",
    dir.display()
)]
pub struct NoTopology {
    /// The directory searched for [`DEFAULT_FILE`].
    pub dir: PathBuf,
}

impl TopologyFile {
    /// The topology file to read: the one given (by `--topology` or
    /// [`TOPOLOGY_VARIABLE`]), else [`DEFAULT_FILE`] in the working
    /// directory.
    pub fn path(&self) -> Result<PathBuf, NoTopology> {
        find(self.given.as_deref(), Path::new("."))
    }

    /// Like [`Self::path`], but with no topology anywhere, the built-in
    /// production example, written into `data_dir` (and said so), so what
    /// follows reads a file like any other.
    pub fn path_or_example(&self, data_dir: &Path) -> anyhow::Result<PathBuf> {
        match self.path() {
            Ok(path) => Ok(path),
            Err(NoTopology { .. }) => {
                let path = write_example(data_dir)?;
                println!(
                    "no topology given: the built-in production example, written to {}",
                    path.display()
                );
                Ok(path)
            }
        }
    }
}

/// The topology file: `given`, else [`DEFAULT_FILE`] in `dir` when it
/// exists.
fn find(given: Option<&Path>, dir: &Path) -> Result<PathBuf, NoTopology> {
    if let Some(given) = given {
        return Ok(given.to_path_buf());
    }
    let default = dir.join(DEFAULT_FILE);
    if default.is_file() {
        return Ok(default);
    }
    Err(NoTopology {
        dir: std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()),
    })
}

/// Writes the built-in example into `data_dir`; returns its path.
fn write_example(data_dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let path = data_dir.join(EXAMPLE_FILE);
    std::fs::write(&path, EXAMPLE).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use lifeboat_shared::topology::Topology;

    use super::*;

    #[test]
    fn the_given_file_comes_first_then_lifeboat_yaml_in_the_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let given = Path::new("elsewhere/topology.yaml");
        assert_eq!(find(Some(given), dir.path()).expect("given"), given);

        let error = find(None, dir.path()).expect_err("nothing there");
        let message = error.to_string();
        for place in ["--topology", "$LIFEBOAT_TOPOLOGY", "lifeboat.yaml"] {
            assert!(message.contains(place), "{message} names {place}");
        }
        assert!(
            message.contains(&*dir.path().to_string_lossy()),
            "{message}"
        );

        std::fs::write(dir.path().join(DEFAULT_FILE), "project: p\n").expect("write");
        assert_eq!(
            find(None, dir.path()).expect("found"),
            dir.path().join(DEFAULT_FILE)
        );
        assert_eq!(find(Some(given), dir.path()).expect("given"), given);
    }

    #[test]
    fn the_built_in_example_is_the_shipped_one_and_valid() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("demo");
        let path = write_example(&data_dir).expect("written");
        assert_eq!(path, data_dir.join(EXAMPLE_FILE));
        let shipped = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/production-three-region.yaml"
        );
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            std::fs::read_to_string(shipped).expect("shipped")
        );
        Topology::load(&path).expect("the example is valid");
    }
}
