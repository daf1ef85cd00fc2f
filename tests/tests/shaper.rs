//! The benches' shaping proxy (bench/shaper) in front of a real
//! fake-gcs-server: a large rewrite through it takes several calls with a
//! rewrite token at the set rate, as on Cloud Storage across regions, and
//! Lifeboat's store follows them to an intact copy; the calls are counted.

use std::time::{Duration, Instant};

use lifeboat_shaper::{Shaper, Shaping, rewrite_all};
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::storage::gcs::GcsStore;
use lifeboat_shared::storage::{CopyOptions, ObjectRef, ObjectStore, PutOptions, bytes_stream};
use lifeboat_tests::{FakeGcsServer, PROJECT, unique_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_rewrite_takes_several_calls_at_the_set_rate_and_copies_intact() {
    let root = tempfile::tempdir().expect("temp dir");
    let server = FakeGcsServer::start(root.path());
    let shaping = Shaping {
        delay: Duration::from_millis(25),
        rewrite_bytes_per_second: 1 << 20,
        rewrite_call: Duration::from_millis(300),
    };
    let shaper = Shaper::new(server.host(), shaping);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(axum::serve(listener, shaper.clone().router()).into_future());
    let store = GcsStore::new(ApiEndpoint::emulator(&address.to_string()), PROJECT);

    let (source, target) = (unique_name("shp-src"), unique_name("shp-dst"));
    store
        .create_bucket(&source, "us-central1")
        .await
        .expect("source bucket");
    store
        .create_bucket(&target, "europe-west1")
        .await
        .expect("target bucket");
    let content: Vec<u8> = (0..2u32 << 20).map(|i| (i % 251) as u8).collect();
    let object = ObjectRef::new(source.as_str(), "ckpt/shard-0");
    store
        .put(
            &object,
            bytes_stream(content.clone()),
            PutOptions::default(),
        )
        .await
        .expect("put");

    let before = shaper.counts();
    let started = Instant::now();
    let copy = ObjectRef::new(target.as_str(), "ckpt/shard-0");
    let copied = store
        .copy(&object, &copy, CopyOptions::default())
        .await
        .expect("copy through the shaper");
    let took = started.elapsed();
    let counts = shaper.counts();
    assert_eq!(copied.size, content.len() as u64);
    assert!(
        took >= Duration::from_secs(2),
        "2 MiB at 1 MiB/s took {took:?}"
    );
    assert_eq!(counts.rewrites - before.rewrites, 1, "{counts:?}");
    let calls = counts.by_kind["rewrite"] - before.by_kind.get("rewrite").copied().unwrap_or(0);
    assert!(
        (6..=9).contains(&calls),
        "2 s of copying in calls of 300 ms: {calls} calls ({counts:?})"
    );
    let (_, stream) = store.get(&copy).await.expect("read the copy");
    let read: Vec<u8> =
        futures::TryStreamExt::try_concat(futures::TryStreamExt::map_ok(stream, |chunk| {
            chunk.to_vec()
        }))
        .await
        .expect("the copy reads");
    assert_eq!(read, content, "the copy is the object");

    // The floor follows the tokens too.
    let pairs = vec![(
        format!("/storage/v1/b/{source}/o/ckpt%2Fshard-0"),
        format!("/b/{target}/o/floor%2Fshard-0"),
    )];
    rewrite_all(&format!("http://{address}"), &pairs, 4)
        .await
        .expect("the bare rewrite");
    let floor = store
        .head(&ObjectRef::new(target.as_str(), "floor/shard-0"))
        .await
        .expect("the floor's copy");
    assert_eq!(floor.size, content.len() as u64);
}
