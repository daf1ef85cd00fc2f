//! Test support shared by the cross-crate tests: where the emulators listen.
//!
//! `scripts/test.sh` starts every emulator and exports the variables below.
//! A test never skips silently when one is missing: it fails and says what to
//! start.

pub mod billing_standin;
pub mod browser;
pub mod monitoring_standin;
pub mod own_emulator;
pub mod quotas_standin;
pub mod registry;
pub mod standin_server;
pub mod transfer_standin;
pub mod vertex_standin;

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

/// Peak resident set of this process since the last [`reset_peak_rss`], in
/// KiB (Linux `VmHWM`; 0 where it cannot be read).
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Resets the peak resident set to the current one (Linux: `5` written to
/// clear_refs), so each step of a benchmark reports its own peak.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A fake-gcs-server process of a test's (or benchmark's) own, for faults
/// that must not touch the shared emulator: it can be killed and restarted.
/// Killed when dropped.
pub struct FakeGcsServer {
    child: std::process::Child,
    host: String,
}

impl FakeGcsServer {
    /// Starts fake-gcs-server on a free port, storing objects in files under
    /// `root` (so a restart on the same root sees what was stored), and
    /// waits until it accepts connections.
    pub fn start(root: &std::path::Path) -> Self {
        // A free port can be taken by another process between the probe
        // and the server's bind; the server then exits, while the port
        // still answers (for the other process). So the server must still
        // be running well after the port answers, else it starts again on
        // another port.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("a free port")
                .port();
            let mut child = std::process::Command::new(fake_gcs_server_binary())
                .args(["-scheme", "http", "-host", "127.0.0.1", "-port"])
                .arg(port.to_string())
                .args(["-backend", "filesystem", "-filesystem-root"])
                .arg(root)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start fake-gcs-server");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "fake-gcs-server did not listen on port {port} within 20 s"
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
            if child.try_wait().expect("fake-gcs-server's state").is_none() {
                return Self {
                    child,
                    host: format!("http://127.0.0.1:{port}"),
                };
            }
        }
        panic!(
            "fake-gcs-server exited after starting, five times (its port taken by another process?)"
        );
    }

    /// Its URL, for `ApiEndpoint::emulator`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Freezes it (SIGSTOP): connections are still accepted by the kernel
    /// but never answered, like a backend that hangs.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} fake-gcs-server failed");
    }

    /// Kills it (SIGKILL, like a crash) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for FakeGcsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Lifeboat service binary running as a process of a test's own, on a
/// free port: what a crash test kills with SIGKILL. Killed when dropped.
pub struct ServiceProcess {
    child: std::process::Child,
    url: String,
}

impl ServiceProcess {
    /// Starts `binary` with `env` (its topology, the emulators' hosts) on a
    /// free port and waits until its `/readyz` answers 200; panics with the
    /// binary's name if it exits or is not ready within 60 s.
    pub async fn start(binary: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut child = std::process::Command::new(binary)
            .envs(env.iter().copied())
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{} exited before it was ready: {status}", binary.display());
            }
            let ready = client.get(format!("{url}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} was not ready on port {port} within 60 s",
                binary.display()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Self { child, url }
    }

    /// Its base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills it with SIGKILL (nothing runs after: no abandon, no cleanup)
    /// and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The fake-gcs-server binary: `$FAKE_GCS_SERVER`, else the one
/// scripts/emulators.sh installed under `$EMULATORS_ROOT` when that is set,
/// else under the target folder the running test was built in
/// (`target/emulators/venv`).
pub fn fake_gcs_server_binary() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("FAKE_GCS_SERVER") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("the running binary's path");
    let root = std::env::var_os("EMULATORS_ROOT").map(std::path::PathBuf::from);
    let venv = root
        .map(|root| root.join("venv"))
        .into_iter()
        .chain(exe.ancestors().map(|dir| dir.join("emulators/venv")))
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

fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
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
