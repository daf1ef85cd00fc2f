//! The behaviour every [`BulkCopier`] must have, as plain async functions
//! that panic with a precise message when an engine departs from it.
//!
//! Each implementation's tests call [`run_all`] with the engine and the
//! [`ObjectStore`] holding the buckets it copies between (the suite writes
//! the objects through it and reads the replicas back). Every function
//! creates its own buckets, so they run in any order.

use std::sync::Mutex;

use bytes::Bytes;

use super::{BulkCopier, BulkCopy, TransferCounters, TransferError};
use crate::storage::{ObjectRef, ObjectStore, PutOptions, bytes_stream};

/// Source names: more than a listing page of the storage suite, with the
/// names that break naive encodings.
const NAMES: [&str; 7] = [
    "plain",
    "nested/a/b/c.bin",
    "with space",
    "emoji 🚀 ünïcödé",
    "percent%20%2F%",
    "<&'\">",
    "plus+sign",
];

/// Runs every check of the suite.
pub async fn run_all(copier: &dyn BulkCopier, store: &dyn ObjectStore) {
    copies_missing_and_different_and_deletes_nothing(copier, store).await;
    a_second_run_copies_nothing(copier, store).await;
    an_empty_source_copies_nothing(copier, store).await;
    a_missing_source_fails_naming_the_copy(copier, store).await;
}

/// Two new buckets, in two regions, named after `test`.
async fn buckets(store: &dyn ObjectStore, test: &str) -> BulkCopy {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let copy = BulkCopy {
        asset: format!("bulk-{test}"),
        region: "europe-west4".into(),
        source_bucket: format!("bulk-{test}-{}-src", &unique[..8]),
        replica_bucket: format!("bulk-{test}-{}-dst", &unique[..8]),
    };
    for (bucket, location) in [
        (&copy.source_bucket, "us-central1"),
        (&copy.replica_bucket, "europe-west4"),
    ] {
        store
            .create_bucket(bucket, location)
            .await
            .unwrap_or_else(|error| panic!("create bucket {bucket}: {error}"));
    }
    copy
}

async fn put(store: &dyn ObjectStore, bucket: &str, name: &str, bytes: &[u8]) -> u64 {
    let object = ObjectRef::new(bucket, name);
    store
        .put(
            &object,
            bytes_stream(Bytes::copy_from_slice(bytes)),
            PutOptions::default(),
        )
        .await
        .unwrap_or_else(|error| panic!("put {object}: {error}"))
        .size
}

/// Runs `copy` and checks that the last counters `progress` saw are the
/// final ones.
async fn run(copier: &dyn BulkCopier, copy: &BulkCopy) -> Result<TransferCounters, TransferError> {
    let seen: Mutex<Vec<TransferCounters>> = Mutex::new(Vec::new());
    let progress = |counters: &TransferCounters| {
        seen.lock().expect("progress lock").push(*counters);
    };
    let result = copier.copy_bucket(copy, &progress).await;
    let seen = seen.into_inner().expect("progress lock");
    for pair in seen.windows(2) {
        assert!(
            pair[1].objects_found >= pair[0].objects_found,
            "{copy}: progress went back: {pair:?}"
        );
    }
    if let Ok(counters) = &result {
        assert_eq!(
            seen.last(),
            Some(counters),
            "{copy}: the last progress must be the final counters"
        );
    }
    result
}

/// Missing and different objects are copied, identical ones skipped, and
/// an object only the replica holds stays.
pub async fn copies_missing_and_different_and_deletes_nothing(
    copier: &dyn BulkCopier,
    store: &dyn ObjectStore,
) {
    let copy = buckets(store, "copies").await;
    let (mut copied_bytes, mut copied) = (0, 0);
    for (index, name) in NAMES.iter().enumerate() {
        let body = format!("source {name}");
        let size = put(store, &copy.source_bucket, name, body.as_bytes()).await;
        match index % 3 {
            // Already there, same bytes.
            0 => {
                put(store, &copy.replica_bucket, name, body.as_bytes()).await;
            }
            // There with other bytes.
            1 => {
                put(store, &copy.replica_bucket, name, b"stale bytes").await;
                copied += 1;
                copied_bytes += size;
            }
            // Missing.
            _ => {
                copied += 1;
                copied_bytes += size;
            }
        }
    }
    put(
        store,
        &copy.replica_bucket,
        "only in the replica",
        b"orphan",
    )
    .await;
    let counters = run(copier, &copy)
        .await
        .unwrap_or_else(|error| panic!("{copy}: {error}"));
    let expected = TransferCounters {
        objects_found: NAMES.len() as u64,
        objects_copied: copied,
        objects_skipped: NAMES.len() as u64 - copied,
        objects_failed: 0,
        bytes_copied: copied_bytes,
    };
    assert_eq!(counters, expected, "{copy}: counters");
    for name in NAMES {
        let source = store
            .head(&ObjectRef::new(&copy.source_bucket, name))
            .await
            .unwrap_or_else(|error| panic!("head source {name}: {error}"));
        let replica = ObjectRef::new(&copy.replica_bucket, name);
        let meta = store
            .head(&replica)
            .await
            .unwrap_or_else(|error| panic!("{copy}: {replica} after the copy: {error}"));
        assert!(source.verifies(&meta), "{copy}: {replica} differs");
    }
    let orphan = ObjectRef::new(&copy.replica_bucket, "only in the replica");
    store
        .head(&orphan)
        .await
        .unwrap_or_else(|error| panic!("{copy}: {orphan} must stay: {error}"));
}

/// Once the replica is complete, a run copies nothing and skips everything.
pub async fn a_second_run_copies_nothing(copier: &dyn BulkCopier, store: &dyn ObjectStore) {
    let copy = buckets(store, "again").await;
    for name in NAMES {
        put(store, &copy.source_bucket, name, name.as_bytes()).await;
    }
    let first = run(copier, &copy)
        .await
        .unwrap_or_else(|error| panic!("{copy}: first run: {error}"));
    assert_eq!(
        first.objects_copied,
        NAMES.len() as u64,
        "{copy}: first run"
    );
    let second = run(copier, &copy)
        .await
        .unwrap_or_else(|error| panic!("{copy}: second run: {error}"));
    assert_eq!(
        second,
        TransferCounters {
            objects_found: NAMES.len() as u64,
            objects_skipped: NAMES.len() as u64,
            ..TransferCounters::default()
        },
        "{copy}: second run"
    );
}

/// An empty source ends at once with nothing counted.
pub async fn an_empty_source_copies_nothing(copier: &dyn BulkCopier, store: &dyn ObjectStore) {
    let copy = buckets(store, "empty").await;
    let counters = run(copier, &copy)
        .await
        .unwrap_or_else(|error| panic!("{copy}: {error}"));
    assert_eq!(counters, TransferCounters::default(), "{copy}");
}

/// A source bucket that does not exist fails the run, and the error names
/// the copy.
pub async fn a_missing_source_fails_naming_the_copy(
    copier: &dyn BulkCopier,
    store: &dyn ObjectStore,
) {
    let mut copy = buckets(store, "nosource").await;
    copy.source_bucket = format!("{}-absent", copy.source_bucket);
    match run(copier, &copy).await {
        Err(error @ TransferError::Failed { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains(&copy.source_bucket) && message.contains(&copy.asset),
                "the error must name the copy: {message}"
            );
        }
        other => panic!("{copy}: a missing source must fail the run, got {other:?}"),
    }
}
