//! The behaviour every [`ObjectStore`] must have, as plain async functions
//! that panic with a precise message when a store departs from it.
//!
//! Each implementation's tests create two buckets in two locations and call
//! [`run_all`] (or the functions one by one). The store must be built with a
//! listing page size of [`LIST_PAGE_SIZE`], so that paging is exercised with
//! a handful of objects. Every function works under its own name prefix, so
//! they can share buckets and run in any order.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::StreamExt;

use super::{
    ByteStream, CopyOptions, ObjectMeta, ObjectRef, ObjectStore, PutOptions, StorageError,
    bytes_stream,
};

/// The listing page size the store under test must be built with.
pub const LIST_PAGE_SIZE: usize = 3;

/// Runs every check of the suite. `bucket_a` and `bucket_b` must exist, in
/// two different locations.
pub async fn run_all(store: &dyn ObjectStore, bucket_a: &str, bucket_b: &str) {
    put_get_head_delete(store, bucket_a).await;
    list_with_prefix_and_pages(store, bucket_a).await;
    list_a_name_range(store, bucket_a).await;
    generations_increase_and_preconditions(store, bucket_a).await;
    delete_with_stale_generation_fails(store, bucket_a).await;
    server_side_copy_verified_by_crc32c(store, bucket_a, bucket_b).await;
    copy_with_stale_source_generation_fails(store, bucket_a, bucket_b).await;
    metadata_and_content_type_carry_over_on_copy(store, bucket_a, bucket_b).await;
    unusual_names(store, bucket_a, bucket_b).await;
    names_no_filesystem_holds(store, bucket_a, bucket_b).await;
    names_cloud_storage_refuses(store, bucket_a).await;
    large_object_streams(store, bucket_a).await;
    missing_object_errors(store, bucket_a).await;
    bucket_location_is_reported(store, bucket_a).await;
}

async fn put(store: &dyn ObjectStore, object: &ObjectRef, bytes: &[u8]) -> ObjectMeta {
    put_with(store, object, bytes, PutOptions::default()).await
}

async fn put_with(
    store: &dyn ObjectStore,
    object: &ObjectRef,
    bytes: &[u8],
    options: PutOptions,
) -> ObjectMeta {
    store
        .put(object, bytes_stream(Bytes::copy_from_slice(bytes)), options)
        .await
        .unwrap_or_else(|error| panic!("put {object}: {error}"))
}

async fn read(store: &dyn ObjectStore, object: &ObjectRef) -> (ObjectMeta, Vec<u8>) {
    let (meta, mut body) = store
        .get(object)
        .await
        .unwrap_or_else(|error| panic!("get {object}: {error}"));
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.unwrap_or_else(|error| panic!("read {object}: {error}")));
    }
    (meta, bytes)
}

async fn head(store: &dyn ObjectStore, object: &ObjectRef) -> ObjectMeta {
    store
        .head(object)
        .await
        .unwrap_or_else(|error| panic!("head {object}: {error}"))
}

/// Asserts that two descriptions of one object version agree on everything
/// but the write time (whose precision differs between answers).
fn assert_same_version(left: &ObjectMeta, right: &ObjectMeta) {
    assert_eq!(left.object, right.object, "object");
    assert_eq!(
        left.generation, right.generation,
        "generation of {}",
        left.object
    );
    assert_eq!(left.size, right.size, "size of {}", left.object);
    assert_eq!(left.crc32c, right.crc32c, "crc32c of {}", left.object);
    assert_eq!(
        left.content_type, right.content_type,
        "content type of {}",
        left.object
    );
    assert_eq!(left.metadata, right.metadata, "metadata of {}", left.object);
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StorageError>, object: &ObjectRef) {
    match result {
        Err(StorageError::NotFound { object: missing }) => assert_eq!(&missing, object),
        other => panic!("{object}: expected NotFound, got {other:?}"),
    }
}

fn assert_precondition_failed<T: std::fmt::Debug>(
    result: Result<T, StorageError>,
    object: &ObjectRef,
) {
    match result {
        Err(StorageError::PreconditionFailed { object: about, .. }) => assert_eq!(&about, object),
        other => panic!("{object}: expected PreconditionFailed, got {other:?}"),
    }
}

/// Deterministic pseudo-random bytes (xorshift), so content is not
/// compressible or periodic.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A write, read back, described and removed.
pub async fn put_get_head_delete(store: &dyn ObjectStore, bucket: &str) {
    let object = ObjectRef::new(bucket, "pghd/hello.txt");
    let options = PutOptions {
        content_type: Some("text/plain".to_string()),
        metadata: BTreeMap::from([("owner".to_string(), "team-a".to_string())]),
        if_generation_match: None,
    };
    let written = put_with(store, &object, b"hello world", options.clone()).await;
    assert_eq!(written.object, object);
    assert_eq!(written.size, 11);
    assert_eq!(written.crc32c, crc32c::crc32c(b"hello world"));
    assert_eq!(written.content_type, options.content_type);
    assert_eq!(written.metadata, options.metadata);
    assert!(written.generation > 0, "generation {}", written.generation);

    assert_same_version(&head(store, &object).await, &written);
    let (meta, bytes) = read(store, &object).await;
    assert_same_version(&meta, &written);
    assert_eq!(bytes, b"hello world");

    let empty = ObjectRef::new(bucket, "pghd/empty");
    let stored = put(store, &empty, b"").await;
    assert_eq!((stored.size, stored.crc32c), (0, 0));
    assert_eq!(read(store, &empty).await.1, b"");

    for gone in [&object, &empty] {
        store
            .delete(gone, None)
            .await
            .unwrap_or_else(|error| panic!("delete {gone}: {error}"));
        assert_not_found(store.head(gone).await, gone);
        assert_not_found(store.get(gone).await.map(|(meta, _)| meta), gone);
        assert_not_found(store.delete(gone, None).await, gone);
    }
}

/// Listing returns exactly the objects under a prefix, in name order, in
/// pages no larger than [`LIST_PAGE_SIZE`], and the page tokens chain.
pub async fn list_with_prefix_and_pages(store: &dyn ObjectStore, bucket: &str) {
    let inside = [
        "list/p/a",
        "list/p/b",
        "list/p/c/d",
        "list/p/c/e",
        "list/p/f g",
        "list/p/z",
        "list/p/é",
    ];
    let outside = ["list/pother", "list/q/a", "lis"];
    for name in inside.iter().chain(&outside) {
        put(store, &ObjectRef::new(bucket, *name), name.as_bytes()).await;
    }

    let mut names = Vec::new();
    let mut pages = 0;
    let mut token: Option<String> = None;
    loop {
        let page = store
            .list(bucket, "list/p/", token.as_deref())
            .await
            .unwrap_or_else(|error| panic!("list gs://{bucket}/list/p/ page {pages}: {error}"));
        pages += 1;
        assert!(
            page.objects.len() <= LIST_PAGE_SIZE,
            "page {pages} has {} objects, more than {LIST_PAGE_SIZE}",
            page.objects.len()
        );
        for meta in &page.objects {
            assert_eq!(meta.object.bucket, bucket);
            assert_eq!(meta.size, meta.object.name.len() as u64, "{}", meta.object);
            assert_eq!(meta.crc32c, crc32c::crc32c(meta.object.name.as_bytes()));
            names.push(meta.object.name.clone());
        }
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
        assert!(pages < 100, "the page tokens never end");
    }
    assert_eq!(names, inside, "names under list/p/, in order");
    assert!(
        pages >= inside.len().div_ceil(LIST_PAGE_SIZE),
        "{} objects came in {pages} pages of at most {LIST_PAGE_SIZE}",
        inside.len()
    );

    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store
            .list(bucket, "list/p", token.as_deref())
            .await
            .unwrap_or_else(|error| panic!("list gs://{bucket}/list/p: {error}"));
        all.extend(page.objects.into_iter().map(|meta| meta.object.name));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    let mut expected: Vec<&str> = inside.to_vec();
    expected.push("list/pother");
    expected.sort_unstable();
    assert_eq!(
        all, expected,
        "a prefix is not a folder: list/p matches list/pother"
    );

    let none = store
        .list(bucket, "list/nothing/", None)
        .await
        .unwrap_or_else(|error| panic!("list an empty prefix: {error}"));
    assert!(
        none.objects.is_empty() && none.next_page_token.is_none(),
        "{none:?}"
    );

    for name in inside.iter().chain(&outside) {
        let object = ObjectRef::new(bucket, *name);
        store
            .delete(&object, None)
            .await
            .unwrap_or_else(|error| panic!("delete {object}: {error}"));
    }
}

/// Listing a name range returns exactly the names from its first to its
/// last, both included, in order, over chained pages; a folder is not a
/// boundary and an empty range lists nothing.
pub async fn list_a_name_range(store: &dyn ObjectStore, bucket: &str) {
    let names = [
        "range/a",
        "range/b#d",
        "range/b/c",
        "range/b0",
        "range/c d",
        "range/c/e",
        "range/é",
    ];
    for name in names {
        put(store, &ObjectRef::new(bucket, name), name.as_bytes()).await;
    }
    let listed = |first: &'static str, last: &'static str| async move {
        let mut got = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..100 {
            let page = store
                .list_range(bucket, first, last, token.as_deref())
                .await
                .unwrap_or_else(|error| panic!("list gs://{bucket} {first}..={last}: {error}"));
            got.extend(page.objects.into_iter().map(|meta| meta.object.name));
            token = page.next_page_token;
            if token.is_none() {
                return got;
            }
        }
        panic!("the page tokens of {first}..={last} never end");
    };
    assert_eq!(
        listed("range/b", "range/c d").await,
        ["range/b#d", "range/b/c", "range/b0", "range/c d"],
        "from range/b (not an object) to range/c d"
    );
    assert_eq!(
        listed("range/b#d", "range/b0").await,
        ["range/b#d", "range/b/c", "range/b0"],
        "ends sharing a longer start (range/b) than their neighbours"
    );
    assert_eq!(
        listed("range/a", "range/a").await,
        ["range/a"],
        "a range of one name"
    );
    assert_eq!(
        listed("range/c/", "range/ê").await,
        ["range/c/e", "range/é"],
        "from a name that is not an object, in byte order"
    );
    assert!(
        listed("range/d", "range/z").await.is_empty(),
        "no name inside"
    );
    for name in names {
        let object = ObjectRef::new(bucket, name);
        store
            .delete(&object, None)
            .await
            .unwrap_or_else(|error| panic!("delete {object}: {error}"));
    }
}

/// Every write makes a larger generation, and `if_generation_match` guards
/// writes (0: only when absent).
pub async fn generations_increase_and_preconditions(store: &dyn ObjectStore, bucket: &str) {
    let object = ObjectRef::new(bucket, "generations/object");
    let only_new = PutOptions {
        if_generation_match: Some(0),
        ..PutOptions::default()
    };
    let first = put_with(store, &object, b"one", only_new.clone()).await;
    assert_precondition_failed(
        store
            .put(&object, bytes_stream("two"), only_new.clone())
            .await,
        &object,
    );
    let stale = PutOptions {
        if_generation_match: Some(first.generation - 1),
        ..PutOptions::default()
    };
    assert_precondition_failed(
        store.put(&object, bytes_stream("two"), stale).await,
        &object,
    );
    assert_eq!(
        read(store, &object).await.1,
        b"one",
        "a failed precondition wrote"
    );

    let matching = PutOptions {
        if_generation_match: Some(first.generation),
        ..PutOptions::default()
    };
    let second = put_with(store, &object, b"two", matching).await;
    assert!(
        second.generation > first.generation,
        "generation {} after {}",
        second.generation,
        first.generation
    );
    let third = put(store, &object, b"three").await;
    assert!(third.generation > second.generation);
    assert_eq!(head(store, &object).await.generation, third.generation);
    let (meta, bytes) = read(store, &object).await;
    assert_eq!(
        (meta.generation, bytes.as_slice()),
        (third.generation, &b"three"[..])
    );

    store
        .delete(&object, Some(third.generation))
        .await
        .unwrap_or_else(|error| panic!("delete {object} at its live generation: {error}"));
    assert_not_found(store.head(&object).await, &object);
}

/// A delete guarded by a generation that is no longer live fails and
/// leaves the object.
pub async fn delete_with_stale_generation_fails(store: &dyn ObjectStore, bucket: &str) {
    let object = ObjectRef::new(bucket, "stale-delete/object");
    let first = put(store, &object, b"one").await;
    let second = put(store, &object, b"two").await;
    assert_precondition_failed(store.delete(&object, Some(first.generation)).await, &object);
    assert_eq!(head(store, &object).await.generation, second.generation);
    store
        .delete(&object, Some(second.generation))
        .await
        .unwrap_or_else(|error| panic!("delete {object}: {error}"));
}

/// A copy to another bucket (another location) has the source's size and
/// CRC32C and its bytes, and a copy over an existing object is a new
/// generation.
pub async fn server_side_copy_verified_by_crc32c(
    store: &dyn ObjectStore,
    bucket_a: &str,
    bucket_b: &str,
) {
    let source = ObjectRef::new(bucket_a, "copy/source.bin");
    let content = pattern(42, 300 * 1024 + 7);
    let original = put(store, &source, &content).await;
    for destination in [
        ObjectRef::new(bucket_b, "copy/source.bin"),
        ObjectRef::new(bucket_b, "copy/renamed/replica.bin"),
        ObjectRef::new(bucket_a, "copy/same-bucket.bin"),
    ] {
        let copied = store
            .copy(&source, &destination, CopyOptions::default())
            .await
            .unwrap_or_else(|error| panic!("copy {source} -> {destination}: {error}"));
        assert_eq!(copied.object, destination);
        let replica = head(store, &destination).await;
        assert_same_version(&replica, &copied);
        assert!(original.verifies(&replica), "{original:?} vs {replica:?}");
        assert_eq!(replica.crc32c, crc32c::crc32c(&content));
        assert_eq!(read(store, &destination).await.1, content, "{destination}");
    }
    let destination = ObjectRef::new(bucket_b, "copy/source.bin");
    let before = head(store, &destination).await;
    let changed = put(store, &source, b"changed").await;
    let after = store
        .copy(&source, &destination, CopyOptions::default())
        .await
        .unwrap_or_else(|error| panic!("copy over {destination}: {error}"));
    assert!(after.generation > before.generation);
    assert!(changed.verifies(&after) && !original.verifies(&after));
    assert_eq!(read(store, &destination).await.1, b"changed");
    assert_same_version(&head(store, &source).await, &changed);
}

/// A copy pinned to a generation that was replaced fails and creates
/// nothing; pinned to the live one it copies that version.
pub async fn copy_with_stale_source_generation_fails(
    store: &dyn ObjectStore,
    bucket_a: &str,
    bucket_b: &str,
) {
    let source = ObjectRef::new(bucket_a, "stale-copy/source");
    let destination = ObjectRef::new(bucket_b, "stale-copy/destination");
    let first = put(store, &source, b"version one").await;
    let second = put(store, &source, b"version two").await;
    let pinned = |generation| CopyOptions {
        if_source_generation_match: Some(generation),
    };
    assert_precondition_failed(
        store
            .copy(&source, &destination, pinned(first.generation))
            .await,
        &source,
    );
    assert_not_found(store.head(&destination).await, &destination);
    let copied = store
        .copy(&source, &destination, pinned(second.generation))
        .await
        .unwrap_or_else(|error| panic!("copy pinned to the live generation: {error}"));
    assert!(second.verifies(&copied));
    assert_eq!(read(store, &destination).await.1, b"version two");
}

/// Content type and user metadata survive a copy across buckets.
pub async fn metadata_and_content_type_carry_over_on_copy(
    store: &dyn ObjectStore,
    bucket_a: &str,
    bucket_b: &str,
) {
    let source = ObjectRef::new(bucket_a, "carry/checkpoint");
    let destination = ObjectRef::new(bucket_b, "carry/checkpoint");
    let options = PutOptions {
        content_type: Some("application/x-lifeboat-checkpoint".to_string()),
        metadata: BTreeMap::from([
            ("step".to_string(), "1200".to_string()),
            ("source-region".to_string(), "europe-west4".to_string()),
            ("note".to_string(), "with spaces & unicode é".to_string()),
        ]),
        if_generation_match: None,
    };
    put_with(store, &source, b"weights", options.clone()).await;
    store
        .copy(&source, &destination, CopyOptions::default())
        .await
        .unwrap_or_else(|error| panic!("copy {source} -> {destination}: {error}"));
    let replica = head(store, &destination).await;
    assert_eq!(replica.content_type, options.content_type);
    assert_eq!(replica.metadata, options.metadata);
}

/// A name of exactly 1000 bytes, in segments short enough to be files.
fn thousand_byte_name() -> String {
    let mut name = String::from("unusual/long");
    while name.len() < 1000 {
        let room = 1000 - name.len() - 1;
        name.push('/');
        name.push_str(&"L".repeat(room.min(200)));
    }
    name
}

/// Names with spaces, unicode, URL syntax, markup and great length are
/// stored, read, listed, copied and deleted under exactly that name.
pub async fn unusual_names(store: &dyn ObjectStore, bucket_a: &str, bucket_b: &str) {
    let long = thousand_byte_name();
    assert_eq!(long.len(), 1000);
    let mut names = vec![
        "unusual/with space".to_string(),
        "unusual/emoji 🚀 ünïcödé 日本".to_string(),
        "unusual/hash#fragment".to_string(),
        "unusual/question?query=1&x".to_string(),
        "unusual/percent%20%2F%".to_string(),
        "unusual/<&'\">".to_string(),
        "unusual/plus+sign".to_string(),
        "unusual/a/b/c".to_string(),
        "unusual/tilde~semicolon;colon:at@".to_string(),
        long,
    ];
    for name in &names {
        let object = ObjectRef::new(bucket_a, name.as_str());
        let written = put(store, &object, name.as_bytes()).await;
        assert_eq!(written.object.name, *name);
        let (meta, bytes) = read(store, &object).await;
        assert_eq!(meta.object.name, *name);
        assert_eq!(bytes, name.as_bytes(), "content of {object}");
        let page = store
            .list(bucket_a, name, None)
            .await
            .unwrap_or_else(|error| panic!("list prefix {name:?}: {error}"));
        let listed: Vec<&str> = page
            .objects
            .iter()
            .map(|m| m.object.name.as_str())
            .collect();
        assert_eq!(
            listed,
            vec![name.as_str()],
            "listing with the name as prefix"
        );
        let destination = ObjectRef::new(bucket_b, name.as_str());
        let copied = store
            .copy(&object, &destination, CopyOptions::default())
            .await
            .unwrap_or_else(|error| panic!("copy {object}: {error}"));
        assert!(written.verifies(&copied));
        assert_eq!(read(store, &destination).await.1, name.as_bytes());
    }

    names.sort_unstable();
    let mut listed = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store
            .list(bucket_a, "unusual/", token.as_deref())
            .await
            .unwrap_or_else(|error| panic!("list unusual/: {error}"));
        listed.extend(page.objects.into_iter().map(|meta| meta.object.name));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(listed, names, "all unusual names, in byte order");

    for name in &names {
        for bucket in [bucket_a, bucket_b] {
            let object = ObjectRef::new(bucket, name.as_str());
            store
                .delete(&object, None)
                .await
                .unwrap_or_else(|error| panic!("delete {object}: {error}"));
            assert_not_found(store.head(&object).await, &object);
        }
    }
}

/// Every name of the listing of `prefix` in `bucket`, over all its pages.
async fn list_all(store: &dyn ObjectStore, bucket: &str, prefix: &str) -> Vec<String> {
    let mut listed = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..1000 {
        let page = store
            .list(bucket, prefix, token.as_deref())
            .await
            .unwrap_or_else(|error| panic!("list gs://{bucket}/{prefix:?}: {error}"));
        listed.extend(page.objects.into_iter().map(|meta| meta.object.name));
        token = page.next_page_token;
        if token.is_none() {
            return listed;
        }
    }
    panic!("the page tokens of gs://{bucket}/{prefix:?} never end");
}

/// Names Cloud Storage accepts that a filesystem cannot hold as a path:
/// `.` and `..` segments, empty segments, a leading or trailing `/`, a
/// 1000-byte name without `/`, a 600-byte segment, control characters (tab,
/// NUL, DEL, C1), an object named like the folder of another. All but three
/// start with `hostile/`; those three (`../hostile-x`, `./hostile-x` and
/// the 1000-byte one) start with no common prefix.
pub fn names_no_filesystem_holds_list() -> Vec<String> {
    let mut names: Vec<String> = [
        "hostile/../x",
        "hostile/./x",
        "hostile/..",
        "hostile/.",
        "hostile/a//b",
        "hostile//lead",
        "hostile/trailing/",
        "hostile/a/../b",
        "hostile/a",
        "hostile/a/b",
        "hostile/tab\there",
        "hostile/nul\0byte",
        "hostile/controls \u{1}\u{1f}\u{7f}\u{85}\u{9f}",
        "hostile/ends with a dot.",
        "../hostile-x",
        "./hostile-x",
    ]
    .map(str::to_string)
    .to_vec();
    names.push(format!("hostile/{}", "S".repeat(600)));
    names.push("N".repeat(1000));
    names
}

/// The names of [`names_no_filesystem_holds_list`] are stored, read,
/// copied, listed in byte order (alone by their own name, and among the
/// others) and deleted under exactly their name.
pub async fn names_no_filesystem_holds(store: &dyn ObjectStore, bucket_a: &str, bucket_b: &str) {
    let all = names_no_filesystem_holds_list();
    let top_level: Vec<&String> = all
        .iter()
        .filter(|name| !name.starts_with("hostile/"))
        .collect();
    for name in &all {
        let object = ObjectRef::new(bucket_a, name.as_str());
        let written = put(store, &object, name.as_bytes()).await;
        assert_eq!(written.object, object, "{name:?}");
    }
    for name in &all {
        let object = ObjectRef::new(bucket_a, name.as_str());
        let (meta, bytes) = read(store, &object).await;
        assert_eq!(meta.object, object, "{name:?}");
        assert_eq!(bytes, name.as_bytes(), "content of {name:?}");
        let destination = ObjectRef::new(bucket_b, name.as_str());
        let copied = store
            .copy(&object, &destination, CopyOptions::default())
            .await
            .unwrap_or_else(|error| panic!("copy {name:?}: {error}"));
        assert_eq!(copied.object, destination);
        assert_eq!(read(store, &destination).await.1, name.as_bytes());
    }

    let mut expected: Vec<String> = all
        .iter()
        .filter(|name| name.starts_with("hostile/"))
        .cloned()
        .collect();
    expected.sort_unstable();
    assert_eq!(
        list_all(store, bucket_a, "hostile/").await,
        expected,
        "hostile/ in byte order, over pages"
    );
    assert_eq!(
        list_all(store, bucket_a, "hostile/a").await,
        ["hostile/a", "hostile/a/../b", "hostile/a//b", "hostile/a/b"],
        "an object beside the folder of its name"
    );
    assert_eq!(
        list_all(store, bucket_a, "hostile/.").await,
        ["hostile/.", "hostile/..", "hostile/../x", "hostile/./x"],
        "dot segments are names"
    );
    for name in top_level {
        assert_eq!(
            list_all(store, bucket_b, name).await,
            [name.as_str()],
            "listed alone by its own name"
        );
    }
    assert_eq!(
        list_all(store, bucket_a, "../").await,
        ["../hostile-x"],
        "a prefix that leaves the bucket on a filesystem"
    );

    for name in &all {
        for bucket in [bucket_a, bucket_b] {
            let object = ObjectRef::new(bucket, name.as_str());
            store
                .delete(&object, None)
                .await
                .unwrap_or_else(|error| panic!("delete {name:?}: {error}"));
            assert_not_found(store.head(&object).await, &object);
        }
    }
    assert!(list_all(store, bucket_a, "hostile/").await.is_empty());
}

/// Names Cloud Storage refuses (empty, over 1024 bytes, with a carriage
/// return or a line feed, `.`, `..`, under `.well-known/acme-challenge/`)
/// are refused by every operation with [`StorageError::InvalidName`] naming
/// the rule, before anything is written.
pub async fn names_cloud_storage_refuses(store: &dyn ObjectStore, bucket: &str) {
    let too_long = "x".repeat(1025);
    let refused = [
        ("", "empty"),
        (too_long.as_str(), "1024"),
        ("refused/line\nfeed", "line feed"),
        ("refused/carriage\rreturn", "carriage return"),
        (".", "`.`"),
        ("..", "`..`"),
        (".well-known/acme-challenge/token", "acme-challenge"),
    ];
    let valid = ObjectRef::new(bucket, "refused/valid");
    put(store, &valid, b"x").await;
    for (name, rule) in refused {
        let object = ObjectRef::new(bucket, name);
        let invalid = |result: Result<(), StorageError>, operation: &str| match result {
            Err(StorageError::InvalidName {
                object: named,
                reason,
            }) => {
                assert_eq!(named, object, "{operation} {name:?}");
                assert!(reason.contains(rule), "{operation} {name:?}: {reason}");
            }
            other => panic!("{operation} {name:?}: expected InvalidName, got {other:?}"),
        };
        let put = store
            .put(&object, bytes_stream("x"), PutOptions::default())
            .await;
        invalid(put.map(drop), "put");
        invalid(store.head(&object).await.map(drop), "head");
        invalid(store.get(&object).await.map(drop), "get");
        invalid(store.delete(&object, None).await, "delete");
        let copy = store.copy(&valid, &object, CopyOptions::default()).await;
        invalid(copy.map(drop), "copy to");
        let error = store.head(&object).await.expect_err("refused");
        assert!(!error.is_transient(), "{name:?}: {error}");
    }
    store
        .delete(&valid, None)
        .await
        .unwrap_or_else(|error| panic!("delete {valid}: {error}"));
}

/// Size of the object [`large_object_streams`] writes.
const LARGE_OBJECT_BYTES: usize = 24 * 1024 * 1024;

/// A body of `chunks` pseudo-random chunks of `chunk` bytes, generated as
/// it is read (never held in memory at once).
pub fn generated_body(seed: u64, chunks: usize, chunk: usize) -> ByteStream {
    Box::pin(
        futures::stream::iter(0..chunks)
            .map(move |index| Ok(Bytes::from(pattern(seed.wrapping_add(index as u64), chunk)))),
    )
}

/// A multi-megabyte object written from a generated stream and read back
/// as a stream of several chunks, with the right size and CRC32C.
pub async fn large_object_streams(store: &dyn ObjectStore, bucket: &str) {
    const CHUNK: usize = 64 * 1024;
    let chunks = LARGE_OBJECT_BYTES / CHUNK;
    let mut expected_crc = 0;
    for index in 0..chunks {
        expected_crc = crc32c::crc32c_append(expected_crc, &pattern(7 + index as u64, CHUNK));
    }
    let object = ObjectRef::new(bucket, "large/object.bin");
    let written = store
        .put(
            &object,
            generated_body(7, chunks, CHUNK),
            PutOptions::default(),
        )
        .await
        .unwrap_or_else(|error| panic!("put {object}: {error}"));
    assert_eq!(written.size, LARGE_OBJECT_BYTES as u64);
    assert_eq!(written.crc32c, expected_crc, "crc32c of {object}");

    let (meta, mut body) = store
        .get(&object)
        .await
        .unwrap_or_else(|error| panic!("get {object}: {error}"));
    assert_same_version(&meta, &written);
    let (mut size, mut crc, mut pieces) = (0u64, 0u32, 0usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap_or_else(|error| panic!("read {object}: {error}"));
        size += chunk.len() as u64;
        crc = crc32c::crc32c_append(crc, &chunk);
        pieces += 1;
    }
    assert_eq!((size, crc), (written.size, written.crc32c));
    assert!(pieces > 1, "{size} bytes came in one piece: not streamed");
    store
        .delete(&object, None)
        .await
        .unwrap_or_else(|error| panic!("delete {object}: {error}"));
}

fn bucket_missing<T: std::fmt::Debug>(result: Result<T, StorageError>, bucket: &str, what: &str) {
    match result {
        Err(StorageError::BucketNotFound { bucket: named }) => assert_eq!(named, bucket),
        other => {
            panic!("{what} in missing bucket {bucket}: expected BucketNotFound, got {other:?}")
        }
    }
}

/// Missing objects and buckets are reported as such, naming them, and are
/// not worth a retry.
pub async fn missing_object_errors(store: &dyn ObjectStore, bucket: &str) {
    let missing = ObjectRef::new(bucket, "missing/nothing here");
    assert_not_found(store.head(&missing).await, &missing);
    assert_not_found(store.get(&missing).await.map(|(meta, _)| meta), &missing);
    assert_not_found(store.delete(&missing, None).await, &missing);
    let elsewhere = ObjectRef::new(bucket, "missing/destination");
    assert_not_found(
        store
            .copy(&missing, &elsewhere, CopyOptions::default())
            .await,
        &missing,
    );
    assert_not_found(store.head(&elsewhere).await, &elsewhere);
    let error = store
        .head(&missing)
        .await
        .expect_err("head of a missing object");
    assert!(!error.is_transient());
    assert!(error.to_string().contains("nothing here"), "{error}");

    let no_bucket = format!("{bucket}-none");
    let in_no_bucket = ObjectRef::new(no_bucket.as_str(), "object");
    bucket_missing(
        store
            .put(&in_no_bucket, bytes_stream("x"), PutOptions::default())
            .await,
        &no_bucket,
        "put",
    );
    bucket_missing(store.list(&no_bucket, "", None).await, &no_bucket, "list");
    let source = ObjectRef::new(bucket, "missing/source");
    put(store, &source, b"x").await;
    bucket_missing(
        store
            .copy(&source, &in_no_bucket, CopyOptions::default())
            .await,
        &no_bucket,
        "copy",
    );
    // Cloud Storage says which is missing; its emulator answers a bare 404.
    match store.head(&in_no_bucket).await {
        Err(StorageError::BucketNotFound { .. } | StorageError::NotFound { .. }) => {}
        other => panic!("head in missing bucket {no_bucket}: {other:?}"),
    }
    store
        .delete(&source, None)
        .await
        .unwrap_or_else(|error| panic!("delete {source}: {error}"));
}

/// A bucket reports a location (the local store the one it was created in;
/// fake-gcs-server puts every bucket in `US-CENTRAL1`, so the suite only
/// asks for one); a missing bucket is an error naming it.
pub async fn bucket_location_is_reported(store: &dyn ObjectStore, bucket: &str) {
    let location = store
        .bucket_location(bucket)
        .await
        .unwrap_or_else(|error| panic!("location of {bucket}: {error}"));
    assert!(
        location.is_some_and(|l| !l.is_empty()),
        "{bucket} reports no location"
    );
    let missing = store.bucket_location("lifeboat-no-such-bucket").await;
    assert!(
        matches!(&missing, Err(StorageError::BucketNotFound { bucket }) if bucket == "lifeboat-no-such-bucket"),
        "{missing:?}"
    );
}
