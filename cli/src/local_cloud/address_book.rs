//! Where a running local cloud listens, written to its data directory so that
//! other `lifeboat` commands and tests can find it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The file name of the address book inside the data directory.
const FILE_NAME: &str = "local-cloud.json";

/// The addresses of one running local cloud.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressBook {
    /// The topology's project.
    pub project: String,
    /// Where the functions' routers are served.
    pub functions: SocketAddr,
    /// The gateway's base URL: predictions go to
    /// `{gateway}/predict/{workload}/{model}`.
    pub gateway: String,
    /// Where each region answers, by region id.
    pub regions: BTreeMap<String, SocketAddr>,
}

impl AddressBook {
    /// The path of the address book of the cloud kept in `data_dir`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE_NAME)
    }

    /// The address book of the cloud that last ran in `data_dir`.
    pub fn load(data_dir: &Path) -> anyhow::Result<Self> {
        let path = Self::path(data_dir);
        let text = std::fs::read(&path).with_context(|| {
            format!(
                "no local cloud has run in {} (start `lifeboat local up`)",
                data_dir.display()
            )
        })?;
        serde_json::from_slice(&text).with_context(|| format!("reading {}", path.display()))
    }

    /// Writes the address book into `data_dir`, replacing it atomically.
    pub fn save(&self, data_dir: &Path) -> anyhow::Result<()> {
        let path = Self::path(data_dir);
        let temporary = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self)?;
        std::fs::write(&temporary, text)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .with_context(|| format!("writing {}", path.display()))
    }
}
