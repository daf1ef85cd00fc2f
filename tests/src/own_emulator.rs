//! A Google Cloud emulator of one test's own (Pub/Sub or Firestore), for
//! faults the shared emulators must not suffer: killed (a crash) or frozen
//! with SIGSTOP (a backend that holds connections open and never answers).

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::PROJECT;

/// Which emulator `gcloud` starts.
#[derive(Clone, Copy, Debug)]
pub enum EmulatorKind {
    /// `gcloud beta emulators pubsub`.
    PubSub,
    /// `gcloud emulators firestore`.
    Firestore,
}

/// The emulator, in its own process group so that the Java child dies (or
/// freezes) with it; killed when dropped.
pub struct OwnEmulator {
    child: Child,
    port: u16,
}

impl OwnEmulator {
    /// Starts the emulator on a free port and waits (up to 90 s: a JVM
    /// starting beside the shared emulators on 2 cores) until it accepts
    /// connections.
    pub fn start(kind: EmulatorKind) -> Self {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let host_port = format!("--host-port=127.0.0.1:{port}");
        let args: Vec<String> = match kind {
            EmulatorKind::PubSub => ["gcloud", "beta", "emulators", "pubsub", "start"]
                .into_iter()
                .map(String::from)
                .chain([host_port, format!("--project={PROJECT}"), "--quiet".into()])
                .collect(),
            EmulatorKind::Firestore => ["gcloud", "emulators", "firestore", "start"]
                .into_iter()
                .map(String::from)
                .chain([host_port, "--quiet".into()])
                .collect(),
        };
        let child = Command::new("setsid")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", args.join(" ")));
        let emulator = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(90);
        while !emulator.accepts_connections() {
            assert!(
                Instant::now() < deadline,
                "own {kind:?} emulator on port {port} did not start in 90 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        emulator
    }

    /// Its `host:port`, for `ApiEndpoint::emulator`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn accepts_connections(&self) -> bool {
        TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok()
    }

    /// Sends `signal` to the whole process group (`setsid` made the child
    /// its leader).
    fn signal_group(&self, signal: &str) {
        let group = format!("-{}", self.child.id());
        let status = Command::new("kill")
            .args([signal, "--", &group])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {group} failed");
    }

    /// Freezes every process of the emulator (SIGSTOP): connections still
    /// open (the kernel accepts them) but nothing is ever answered.
    pub fn freeze(&self) {
        self.signal_group("-STOP");
    }

    /// Lets a frozen emulator run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal_group("-CONT");
    }

    /// Kills the whole process group and waits until the port is closed.
    pub fn kill(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.accepts_connections() {
            assert!(
                Instant::now() < deadline,
                "emulator port {} still open",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for OwnEmulator {
    fn drop(&mut self) {
        if self.accepts_connections() {
            self.kill();
        }
    }
}
