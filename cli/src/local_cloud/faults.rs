//! Injected region failures: `lifeboat local fail-region` writes the fault
//! into a small file of the data directory, `heal-region` removes it, and a
//! running local cloud looks at the file on every request to a region, so a
//! fault takes effect at once without talking to the running process (whose
//! state database is locked). Looking costs one `stat`: the file is read
//! again only when it has been replaced ([`current`]), since every registry
//! and bucket call of the local cloud asks too.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use anyhow::Context;
use axum::response::Response;
use lifeboat_shared::fault::{self, FaultKind};
use lifeboat_shared::outage::DarkRegions;
use serde::{Deserialize, Serialize};

/// The file of injected faults inside the data directory.
const FILE_NAME: &str = "faults.json";

/// How a failed region misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Drops every connection without an answer, like a stopped server.
    Stop,
    /// Answers every request with 503.
    Error,
    /// Answers every request, but only after [`fault::SLOW_DELAY`].
    Slow,
    /// Answers every request as usual, except that every prediction is off
    /// by [`WRONG_ANSWER_OFFSET`]: a region whose health checks pass and
    /// whose answers are wrong, as only golden requests can tell.
    WrongAnswers,
}

/// How far off a region failed with [`Fault::WrongAnswers`] predicts.
pub const WRONG_ANSWER_OFFSET: f64 = 1.0;

/// The path of the faults file of the cloud kept in `data_dir`.
fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// The fault injected into each region, by region id; empty when the file
/// does not exist.
pub fn read(data_dir: &Path) -> anyhow::Result<BTreeMap<String, Fault>> {
    let path = path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a faults file", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// Injects `fault` into `region` (or, with `None`, heals it), replacing the
/// file atomically.
pub fn set(data_dir: &Path, region: &str, fault: Option<Fault>) -> anyhow::Result<()> {
    let mut faults = read(data_dir)?;
    match fault {
        Some(fault) => faults.insert(region.to_string(), fault),
        None => faults.remove(region),
    };
    let path = path(data_dir);
    let temporary = path.with_extension("json.tmp");
    std::fs::create_dir_all(data_dir)
        .and_then(|()| std::fs::write(&temporary, serde_json::to_vec_pretty(&faults)?))
        .and_then(|()| std::fs::rename(&temporary, &path))
        .with_context(|| format!("writing {}", path.display()))
}

/// What identifies one version of the faults file: [`set`] replaces it by
/// a rename, so a change gives a new inode (and modification time).
type FileVersion = (u64, SystemTime, u64);

/// The faults of one file, by region, as read at one version of it.
type ReadAt = (FileVersion, BTreeMap<String, Fault>);

/// Each faults file as last read, by path.
static LAST_READ: Mutex<BTreeMap<PathBuf, ReadAt>> = Mutex::new(BTreeMap::new());

/// The fault injected into `region` now; an unreadable file counts as no
/// fault, and says so in the log. The file is read again only when it is
/// not the version last read.
pub fn current(data_dir: &Path, region: &str) -> Option<Fault> {
    let path = path(data_dir);
    let version = match std::fs::metadata(&path) {
        Ok(meta) => (
            meta.ino(),
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            tracing::warn!(error = %error, path = %path.display(), "faults ignored");
            return None;
        }
    };
    let mut last_read = LAST_READ.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((seen, faults)) = last_read.get(&path)
        && *seen == version
    {
        return faults.get(region).copied();
    }
    match read(data_dir) {
        Ok(faults) => {
            let fault = faults.get(region).copied();
            last_read.insert(path, (version, faults));
            fault
        }
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "faults ignored");
            None
        }
    }
}

/// The regions a running local cloud treats as dark beyond their front
/// door: those failed with [`Fault::Stop`] or [`Fault::Error`] (a slow
/// region still answers). Their registry calls and buckets fail too, so a
/// failed region is gone as a whole, as in a real regional outage.
pub fn dark_regions(data_dir: &Path) -> DarkRegions {
    let data_dir = data_dir.to_path_buf();
    DarkRegions::following(move |region| {
        matches!(current(&data_dir, region), Some(Fault::Stop | Fault::Error))
    })
}

impl Fault {
    /// How the region's front door misbehaves, as a drill fault of that
    /// kind would make it: `None` for wrong answers, which are the
    /// inference server's to give.
    fn front_door(self) -> Option<FaultKind> {
        match self {
            Fault::Stop => Some(FaultKind::Stop),
            Fault::Error => Some(FaultKind::Error),
            Fault::Slow => Some(FaultKind::Slow),
            Fault::WrongAnswers => None,
        }
    }
}

/// Applies `region`'s fault to one request ([`fault::intercept`]): a
/// response to give instead of the real one (a dropped connection or a
/// 503), or, slow, a delay before the real one is made.
pub async fn intercept(data_dir: &Path, region: &str) -> Option<Response> {
    let kind = current(data_dir, region)?.front_door()?;
    fault::intercept(kind, &format!("{region} is failed (injected)")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_set_and_healed_per_region() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(current(dir.path(), "us-central1"), None);
        set(dir.path(), "us-central1", Some(Fault::Stop)).expect("fail");
        set(dir.path(), "us-east1", Some(Fault::Slow)).expect("fail");
        assert_eq!(current(dir.path(), "us-central1"), Some(Fault::Stop));
        set(dir.path(), "us-central1", None).expect("heal");
        assert_eq!(current(dir.path(), "us-central1"), None);
        assert_eq!(current(dir.path(), "us-east1"), Some(Fault::Slow));
        let dark = dark_regions(dir.path());
        assert!(!dark.is_dark("us-east1"), "a slow region still answers");
        set(dir.path(), "us-central1", Some(Fault::Error)).expect("fail");
        assert!(dark.is_dark("us-central1"));
        // A change that keeps the file's length is seen too (the file read
        // last is kept only while it is the same version).
        set(dir.path(), "us-central1", Some(Fault::Stop)).expect("fail");
        assert_eq!(current(dir.path(), "us-central1"), Some(Fault::Stop));
        set(dir.path(), "us-central1", Some(Fault::Slow)).expect("fail");
        assert_eq!(current(dir.path(), "us-central1"), Some(Fault::Slow));
        assert!(!dark.is_dark("us-central1"));
    }
}
