//! Test support shared by the cross-crate tests: where the emulators listen.
//!
//! `scripts/test.sh` starts every emulator and exports the variables below.
//! A test never skips silently when one is missing: it fails and says what to
//! start.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The project id every emulator is started with.
pub const PROJECT: &str = "lifeboat-test";

/// The `host:port` (or URL) of an emulator, read from `var`; panics with a
/// message naming the variable and the script that sets it.
pub fn emulator_host(var: &str) -> String {
    match std::env::var(var) {
        Ok(host) if !host.is_empty() => host,
        _ => panic!(
            "{var} is not set: this test needs its Google Cloud emulator. \
             Run the tests with scripts/test.sh, which installs and starts every emulator."
        ),
    }
}

/// A name no other test uses, for buckets, collections and topics on a shared
/// emulator: `prefix` followed by a random suffix, lowercase, 3-63 characters.
pub fn unique_name(prefix: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &suffix[..12])
}

/// The fake-gcs-server binary: `$FAKE_GCS_SERVER`, else the one
/// scripts/emulators.sh installed under the target folder this test was
/// built in.
pub fn fake_gcs_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FAKE_GCS_SERVER") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let venv = exe
        .ancestors()
        .map(|dir| dir.join("emulators/venv"))
        .find(|venv| venv.is_dir())
        .unwrap_or_else(|| {
            panic!(
                "no emulators/venv above {}: run scripts/emulators.sh or set FAKE_GCS_SERVER",
                exe.display()
            )
        });
    find_file(&venv, "fake-gcs-server-linux-amd64")
        .unwrap_or_else(|| panic!("fake-gcs-server-linux-amd64 not under {}", venv.display()))
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if entry.file_name() == name {
            return Some(path);
        }
    }
    None
}

/// A fake-gcs-server of this test's own, storing objects under `root`;
/// killed when dropped.
pub struct OwnFakeGcs {
    child: Child,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub host: String,
}

impl OwnFakeGcs {
    /// Starts a server storing its objects under `root`, and waits until it listens.
    pub fn start(root: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(fake_gcs_server_binary())
            .args(["-scheme", "http", "-host", "127.0.0.1", "-port"])
            .arg(port.to_string())
            .args(["-backend", "filesystem", "-filesystem-root"])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fake-gcs-server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "fake-gcs-server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            host: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Kills the server at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnFakeGcs {
    fn drop(&mut self) {
        self.kill();
    }
}
