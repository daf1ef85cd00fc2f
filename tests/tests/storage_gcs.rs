//! `GcsStore` against fake-gcs-server: the object storage conformance suite,
//! and what happens when the server dies in the middle of an upload.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::storage::conformance;
use lifeboat_shared::storage::gcs::GcsStore;
use lifeboat_shared::storage::{ByteStream, ObjectRef, ObjectStore, PutOptions, StorageError};
use lifeboat_tests::{PROJECT, emulator_host, unique_name};

fn store_at(host: &str) -> GcsStore {
    GcsStore::new(ApiEndpoint::emulator(host), PROJECT)
        .with_list_page_size(conformance::LIST_PAGE_SIZE as u32)
}

#[tokio::test]
async fn gcs_store_passes_the_conformance_suite() {
    let store = store_at(&emulator_host("STORAGE_EMULATOR_HOST"));
    let (a, b) = (unique_name("conf-eu"), unique_name("conf-us"));
    store
        .create_bucket(&a, "europe-west4")
        .await
        .expect("bucket a");
    store
        .create_bucket(&b, "us-central1")
        .await
        .expect("bucket b");
    store
        .create_bucket(&a, "europe-west4")
        .await
        .expect("creating an existing bucket is fine");
    let store: &dyn ObjectStore = &store;
    conformance::put_get_head_delete(store, &a).await;
    conformance::list_with_prefix_and_pages(store, &a).await;
    conformance::generations_increase_and_preconditions(store, &a).await;
    // Not `delete_with_stale_generation_fails`: fake-gcs-server ignores
    // ifGenerationMatch on delete (Cloud Storage enforces it; GcsStore
    // sends it). Everything else of `run_all` runs here.
    conformance::server_side_copy_verified_by_crc32c(store, &a, &b).await;
    conformance::copy_with_stale_source_generation_fails(store, &a, &b).await;
    conformance::metadata_and_content_type_carry_over_on_copy(store, &a, &b).await;
    conformance::unusual_names(store, &a, &b).await;
    conformance::large_object_streams(store, &a).await;
    conformance::missing_object_errors(store, &a).await;
}

/// The fake-gcs-server binary: `$FAKE_GCS_SERVER`, else the one
/// scripts/emulators.sh installed under the target folder this test was
/// built in.
fn fake_gcs_server_binary() -> PathBuf {
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
struct OwnServer {
    child: Child,
    host: String,
}

impl OwnServer {
    fn start(root: &Path) -> Self {
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

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn killing_the_server_mid_upload_is_transient_and_leaves_no_object() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut server = OwnServer::start(root.path());
    let store = store_at(&server.host);
    let bucket = unique_name("fault");
    store
        .create_bucket(&bucket, "europe-west4")
        .await
        .expect("bucket");
    let object = ObjectRef::new(bucket.as_str(), "checkpoint/shard-0");

    // 1 GiB generated as it is sent; the server is killed after 64 MiB.
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    let body: ByteStream = Box::pin(
        conformance::generated_body(1, 16 * 1024, 64 * 1024).inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }),
    );
    let upload = {
        let store = store.clone();
        let object = object.clone();
        tokio::spawn(async move { store.put(&object, body, PutOptions::default()).await })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while sent.load(Ordering::Relaxed) < 64 << 20 {
        assert!(Instant::now() < deadline, "the upload did not progress");
        assert!(!upload.is_finished(), "the upload ended early");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    let outcome = upload.await.expect("upload task");
    match outcome {
        Err(error) => {
            assert!(error.is_transient(), "not transient: {error:?}");
            assert!(
                error.to_string().contains("checkpoint/shard-0"),
                "the error does not name the object: {error}"
            );
        }
        Ok(meta) => panic!("the upload succeeded against a dead server: {meta:?}"),
    }
    assert!(
        sent.load(Ordering::Relaxed) < 1 << 30,
        "everything was sent"
    );

    // The same data folder, served again: no partial object.
    let restarted = OwnServer::start(root.path());
    let store = store_at(&restarted.host);
    match store.head(&object).await {
        Err(StorageError::NotFound { .. }) => {}
        other => panic!("after the crash {object} is {other:?}"),
    }
    let page = store.list(&bucket, "", None).await.expect("list");
    assert!(page.objects.is_empty(), "left behind: {:?}", page.objects);

    // And the restarted server works: the retry succeeds.
    let retried = store
        .put(
            &object,
            conformance::generated_body(1, 16, 64 * 1024),
            PutOptions::default(),
        )
        .await
        .expect("retry");
    assert_eq!(retried.size, 16 * 64 * 1024);
}
