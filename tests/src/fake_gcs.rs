//! A fake-gcs-server of a test's own, for fault tests that kill and restart
//! it (the shared emulator is never killed).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
pub struct OwnServer {
    child: Child,
    /// Its URL, `http://127.0.0.1:PORT`.
    pub host: String,
}

impl OwnServer {
    /// Starts a server on a free port, serving the objects kept under `root`.
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

    /// Kills the server (its objects stay under `root`).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
    }
}
