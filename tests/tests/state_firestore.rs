//! `FirestoreStore` against the Firestore emulator: the state conformance
//! suite on the shared emulator, and a fault test that kills an emulator of
//! its own between two steps of an idempotent handler.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::state::conformance;
use lifeboat_shared::state::firestore::{DEFAULT_DATABASE, FirestoreStore};
use lifeboat_shared::state::idempotency::{self, Claim, ClaimToken};

fn shared_emulator_store() -> FirestoreStore {
    let host = lifeboat_tests::emulator_host("FIRESTORE_EMULATOR_HOST");
    FirestoreStore::new(
        ApiEndpoint::emulator(&host),
        lifeboat_tests::PROJECT,
        DEFAULT_DATABASE,
    )
    .expect("Firestore client")
}

#[tokio::test]
async fn firestore_passes_the_state_conformance_suite() {
    let store = shared_emulator_store();
    conformance::run_all(&store, &lifeboat_tests::unique_name("state")).await;
}

/// A Firestore emulator of this test's own, in its own process group so the
/// whole group (the gcloud wrapper and its Java child) can be killed.
struct OwnEmulator {
    child: Child,
    host: String,
    killed: bool,
}

impl OwnEmulator {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let host = format!("127.0.0.1:{port}");
        let child = std::os::unix::process::CommandExt::process_group(
            Command::new("gcloud").args([
                "emulators",
                "firestore",
                "start",
                &format!("--host-port={host}"),
                "--quiet",
            ]),
            0,
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start gcloud emulators firestore");
        let emulator = Self {
            child,
            host,
            killed: false,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while TcpStream::connect(&emulator.host).is_err() {
            assert!(
                Instant::now() < deadline,
                "own Firestore emulator did not listen on {} within 90 s",
                emulator.host
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        emulator
    }

    /// Kills the whole process group and waits for the wrapper to exit.
    fn kill(&mut self) {
        if std::mem::replace(&mut self.killed, true) {
            return;
        }
        let group = format!("-{}", self.child.id());
        // Best effort: the caller checks that the port is closed.
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

impl Drop for OwnEmulator {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn emulator_killed_between_begin_and_complete_is_a_transient_error() {
    let processing = Duration::from_secs(2);
    let retention = Duration::from_secs(600);
    let key = lifeboat_tests::unique_name("fault-event");

    let mut emulator = OwnEmulator::start();
    let doomed = FirestoreStore::new(
        ApiEndpoint::emulator(&emulator.host),
        lifeboat_tests::PROJECT,
        DEFAULT_DATABASE,
    )
    .expect("Firestore client");
    let token: ClaimToken = match idempotency::begin(&doomed, &key, processing, retention).await {
        Ok(Claim::First(token)) => token,
        other => panic!("first delivery on the own emulator: {other:?}"),
    };

    // The state store dies while the handler works.
    emulator.kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&emulator.host).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the killed emulator still listens"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let completed = idempotency::complete(&doomed, &token).await;
    let error = completed.expect_err("complete cannot succeed with the store gone");
    assert!(
        error.is_transient(),
        "a dead store is a transient error: {error}"
    );
    let message = error.to_string();
    eprintln!("complete on the killed emulator: {message}");
    assert!(
        message.contains("put") && message.contains(&idempotency::document_id(&key)),
        "the error names the operation and the document: {message}"
    );
    let again = idempotency::begin(&doomed, &key, processing, retention).await;
    let error = again.expect_err("begin cannot succeed with the store gone");
    assert!(error.is_transient(), "begin on a dead store: {error}");

    // The emulator keeps its state in memory, so the claim died with it. On
    // a live store the same crash leaves the claim behind: the redelivered
    // event is told to come back while it runs, and claims it again once
    // the processing deadline has passed.
    let live = shared_emulator_store();
    let crashed = match idempotency::begin(&live, &key, processing, retention).await {
        Ok(Claim::First(token)) => token,
        other => panic!("first delivery on the live store: {other:?}"),
    };
    assert_eq!(
        idempotency::begin(&live, &key, processing, retention)
            .await
            .expect("redelivery before the deadline"),
        Claim::InProgress
    );
    tokio::time::sleep(processing + Duration::from_millis(300)).await;
    let retried = match idempotency::begin(&live, &key, processing, retention).await {
        Ok(Claim::First(token)) => token,
        other => panic!("redelivery after the deadline: {other:?}"),
    };
    assert_ne!(retried.claim_id, crashed.claim_id);
    idempotency::complete(&live, &retried)
        .await
        .expect("the retry completes");
    assert_eq!(
        idempotency::begin(&live, &key, processing, retention)
            .await
            .expect("a later duplicate"),
        Claim::Done
    );
}
