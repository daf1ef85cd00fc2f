//! The behaviour every [`StateStore`] must show, as plain async functions
//! that each backend's tests call with a store and a collection prefix no
//! other test uses (so the suite can share one emulator with other tests).
//! Leases and idempotency records are tested here too: they are built only
//! on the trait, so they must work on every backend.
//!
//! Each function panics with a message naming what went wrong.

use std::time::Duration;

use futures::future::join_all;
use serde_json::json;

use super::idempotency::{self, Claim, ClaimOptions, IdempotencyError, Once};
use super::lease::{self, Lease, LeaseError};
use super::{MAX_ID_BYTES, Precondition, StateError, StateStore};
use crate::fault::{self, Fault, FaultError, FaultKind, FaultWatch};
use crate::poison::{self, Poison, Reason};
use crate::traffic::{self, Outcome, SecondCount, TrafficCounter};

/// Ids a backend must store and return unchanged: spaces, percent signs,
/// URL delimiters, markup characters and non-ASCII text.
const UNUSUAL_IDS: &[&str] = &[
    "plain",
    "with space",
    "percent %2F%41%",
    "query?and#fragment",
    "<&'\">",
    "emoji 🚀",
    "événement",
    "日本語",
    "dots.in.the.middle",
    "a+b=c;d,e",
];

/// Runs every test of the suite.
pub async fn run_all(store: &dyn StateStore, prefix: &str) {
    put_get_list_delete(store, prefix).await;
    get_many_answers_in_the_order_asked(store, prefix).await;
    must_not_exist_precondition(store, prefix).await;
    version_precondition_compare_and_set(store, prefix).await;
    concurrent_compare_and_set_has_one_winner(store, prefix).await;
    json_values_round_trip(store, prefix).await;
    invalid_ids_and_values_are_rejected(store, prefix).await;
    lease_only_one_of_two_concurrent_holders_gets_it(store, prefix).await;
    lease_held_while_renewed_lapses_without_its_holder(store, prefix).await;
    idempotency_duplicate_is_a_no_op(store, prefix).await;
    idempotency_claim_is_held_while_renewed_and_lapses_without_its_holder(store, prefix).await;
    poison_records_count_deliveries(store, prefix).await;
    drill_faults_obey_ownership_and_expiry(store, prefix).await;
    gateway_traffic_is_summed_over_instances(store, prefix).await;
}

fn is_conflict<T: std::fmt::Debug>(result: &Result<T, StateError>) -> bool {
    matches!(result, Err(StateError::Conflict { .. }))
}

/// Reads a document that must exist.
async fn must_get(store: &dyn StateStore, collection: &str, id: &str) -> super::Document {
    store
        .get(collection, id)
        .await
        .unwrap_or_else(|e| panic!("get {collection}/{id}: {e}"))
        .unwrap_or_else(|| panic!("{collection}/{id} should exist"))
}

/// Writes, reads, lists and deletes documents with unusual ids, and keeps
/// collections apart.
pub async fn put_get_list_delete(store: &dyn StateStore, prefix: &str) {
    let collection = format!("{prefix}-docs");
    let neighbour = format!("{prefix}-docs2");
    assert!(
        store
            .list(&collection)
            .await
            .expect("list empty")
            .is_empty(),
        "a new collection lists nothing"
    );
    assert!(
        store
            .get(&collection, "plain")
            .await
            .expect("get")
            .is_none()
    );

    let mut versions = Vec::new();
    for (n, id) in UNUSUAL_IDS.iter().enumerate() {
        let value = json!({ "n": n, "id": id });
        let version = store
            .put(&collection, id, &value, Precondition::None)
            .await
            .unwrap_or_else(|e| panic!("put {id:?}: {e}"));
        versions.push((id.to_string(), version));
        let doc = must_get(store, &collection, id).await;
        assert_eq!(doc.id, *id);
        assert_eq!(doc.value, value, "value of {id:?}");
        assert_eq!(doc.version, versions[n].1, "version of {id:?}");
    }
    store
        .put(
            &neighbour,
            "plain",
            &json!({ "other": true }),
            Precondition::None,
        )
        .await
        .expect("put in the neighbouring collection");

    let listed = store.list(&collection).await.expect("list");
    let listed_ids: Vec<&str> = listed.iter().map(|d| d.id.as_str()).collect();
    let mut expected: Vec<&str> = UNUSUAL_IDS.to_vec();
    expected.sort_unstable();
    assert_eq!(listed_ids, expected, "list returns every id, in id order");
    for doc in &listed {
        let (_, version) = versions
            .iter()
            .find(|(id, _)| *id == doc.id)
            .expect("listed id was written");
        assert_eq!(&doc.version, version, "listed version of {:?}", doc.id);
        assert_eq!(
            doc.value["id"],
            json!(doc.id),
            "listed value of {:?}",
            doc.id
        );
    }

    // Overwriting without a precondition replaces the whole document.
    let replaced = json!({ "replaced": [1, 2] });
    let new_version = store
        .put(&collection, "plain", &replaced, Precondition::None)
        .await
        .expect("overwrite");
    assert_ne!(
        new_version, versions[0].1,
        "a changing write changes the version"
    );
    assert_eq!(must_get(store, &collection, "plain").await.value, replaced);

    for id in UNUSUAL_IDS {
        store
            .delete(&collection, id, Precondition::None)
            .await
            .unwrap_or_else(|e| panic!("delete {id:?}: {e}"));
        assert!(
            store.get(&collection, id).await.expect("get").is_none(),
            "{id:?} is gone after delete"
        );
    }
    store
        .delete(&collection, "never-existed", Precondition::None)
        .await
        .expect("deleting a missing document without a precondition succeeds");
    assert!(store.list(&collection).await.expect("list").is_empty());
    let neighbours = store.list(&neighbour).await.expect("list neighbour");
    assert_eq!(
        neighbours.len(),
        1,
        "the neighbouring collection is untouched"
    );
    assert_eq!(neighbours[0].value, json!({ "other": true }));
}

/// `get_many` answers each id asked, in order, as `get` would: present
/// documents with their versions, `None` for absent ones, a repeated id
/// twice, nothing for no ids.
pub async fn get_many_answers_in_the_order_asked(store: &dyn StateStore, prefix: &str) {
    let collection = format!("{prefix}-many");
    for (n, id) in UNUSUAL_IDS.iter().enumerate() {
        store
            .put(&collection, id, &json!({ "n": n }), Precondition::None)
            .await
            .unwrap_or_else(|e| panic!("put {id}: {e}"));
    }
    let mut asked: Vec<String> = UNUSUAL_IDS.iter().rev().map(|id| id.to_string()).collect();
    asked.insert(1, "absent".to_string());
    asked.push(UNUSUAL_IDS[0].to_string());
    let answers = store.get_many(&collection, &asked).await.expect("get_many");
    assert_eq!(answers.len(), asked.len(), "one answer per id asked");
    for (id, answer) in asked.iter().zip(&answers) {
        let single = store.get(&collection, id).await.expect("get");
        assert_eq!(answer, &single, "get_many and get disagree on {id:?}");
    }
    assert_eq!(answers[1], None, "an absent document is None");
    assert!(
        store
            .get_many(&collection, &[])
            .await
            .expect("no ids")
            .is_empty()
    );
}

/// `MustNotExist` creates once, and only while the document is absent.
pub async fn must_not_exist_precondition(store: &dyn StateStore, prefix: &str) {
    let collection = format!("{prefix}-create");
    let first = json!({ "writer": "first" });
    store
        .put(&collection, "doc", &first, Precondition::MustNotExist)
        .await
        .expect("create");
    let again = store
        .put(
            &collection,
            "doc",
            &json!({ "writer": "second" }),
            Precondition::MustNotExist,
        )
        .await;
    assert!(
        is_conflict(&again),
        "second create must conflict: {again:?}"
    );
    assert_eq!(must_get(store, &collection, "doc").await.value, first);

    let delete = store
        .delete(&collection, "doc", Precondition::MustNotExist)
        .await;
    assert!(
        is_conflict(&delete),
        "delete-if-absent of a present doc: {delete:?}"
    );
    assert_eq!(must_get(store, &collection, "doc").await.value, first);

    store
        .delete(&collection, "doc", Precondition::None)
        .await
        .expect("delete");
    store
        .put(
            &collection,
            "doc",
            &json!({ "writer": "third" }),
            Precondition::MustNotExist,
        )
        .await
        .expect("create again after delete");
}

/// `Version` writes and deletes apply only at the version read.
pub async fn version_precondition_compare_and_set(store: &dyn StateStore, prefix: &str) {
    let collection = format!("{prefix}-cas");
    let v1 = store
        .put(
            &collection,
            "doc",
            &json!({ "step": 1 }),
            Precondition::None,
        )
        .await
        .expect("put v1");
    let v2 = store
        .put(
            &collection,
            "doc",
            &json!({ "step": 2 }),
            Precondition::Version(v1.clone()),
        )
        .await
        .expect("compare-and-set at the current version");
    assert_ne!(v1, v2, "the version changes");

    let stale = store
        .put(
            &collection,
            "doc",
            &json!({ "step": 99 }),
            Precondition::Version(v1.clone()),
        )
        .await;
    assert!(is_conflict(&stale), "write at a stale version: {stale:?}");
    let doc = must_get(store, &collection, "doc").await;
    assert_eq!(
        doc.value,
        json!({ "step": 2 }),
        "a failed write changes nothing"
    );
    assert_eq!(doc.version, v2);

    let stale_delete = store
        .delete(&collection, "doc", Precondition::Version(v1))
        .await;
    assert!(
        is_conflict(&stale_delete),
        "delete at a stale version: {stale_delete:?}"
    );
    assert!(store.get(&collection, "doc").await.expect("get").is_some());

    store
        .delete(&collection, "doc", Precondition::Version(v2.clone()))
        .await
        .expect("delete at the current version");
    let gone = store
        .put(
            &collection,
            "doc",
            &json!({ "step": 3 }),
            Precondition::Version(v2),
        )
        .await;
    assert!(
        is_conflict(&gone),
        "write at a version of a deleted doc: {gone:?}"
    );
    assert!(store.get(&collection, "doc").await.expect("get").is_none());
}

/// Many writers increment one counter with compare-and-set retry loops; no
/// increment is lost and none is counted twice.
pub async fn concurrent_compare_and_set_has_one_winner(store: &dyn StateStore, prefix: &str) {
    const WORKERS: u64 = 10;
    const INCREMENTS: u64 = 5;
    let collection = format!("{prefix}-counter");
    store
        .put(
            &collection,
            "counter",
            &json!({ "n": 0 }),
            Precondition::MustNotExist,
        )
        .await
        .expect("create counter");

    let workers = (0..WORKERS).map(|worker| {
        let collection = collection.clone();
        async move {
            let mut conflicts = 0u64;
            for _ in 0..INCREMENTS {
                loop {
                    let doc = must_get(store, &collection, "counter").await;
                    let n = doc.value["n"].as_u64().expect("counter is a number");
                    let next = json!({ "n": n + 1, "by": worker });
                    match store
                        .put(
                            &collection,
                            "counter",
                            &next,
                            Precondition::Version(doc.version),
                        )
                        .await
                    {
                        Ok(_) => break,
                        Err(StateError::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("worker {worker}: {e}"),
                    }
                }
            }
            conflicts
        }
    });
    let conflicts: u64 = join_all(workers).await.into_iter().sum();
    let doc = must_get(store, &collection, "counter").await;
    assert_eq!(
        doc.value["n"],
        json!(WORKERS * INCREMENTS),
        "every increment counted exactly once ({conflicts} conflicts retried)"
    );
}

/// JSON values come back exactly as written: nesting, integer extremes,
/// doubles, unicode keys and values, empty containers.
pub async fn json_values_round_trip(store: &dyn StateStore, prefix: &str) {
    let collection = format!("{prefix}-values");
    let value = json!({
        "null": null,
        "true": true,
        "false": false,
        "zero": 0,
        "i64_max": i64::MAX,
        "i64_min": i64::MIN,
        "negative": -42,
        "double": 0.30000000000000004,
        "whole_double": 2.0,
        "tiny_double": 5e-324,
        "huge_double": 1.7976931348623157e308,
        "negative_double": -0.5,
        "string": "plain",
        "unicode": "héllo wörld 🚀 日本語 \u{0001}\n\t\"quoted\"",
        "empty_string": "",
        "clé 🔑": "unicode key",
        "dotted.key": "a key with a dot",
        "empty_array": [],
        "empty_object": {},
        "array": [1, "two", 3.5, null, true, {"in": "array"}],
        "nested": {"level1": {"level2": {"level3": [{"level4": {"deep": i64::MIN}}]}}}
    });
    let version = store
        .put(&collection, "doc", &value, Precondition::None)
        .await
        .expect("put");
    let doc = must_get(store, &collection, "doc").await;
    assert_eq!(doc.value, value, "value read back");
    assert_eq!(doc.version, version);
    assert!(doc.value["whole_double"].is_f64(), "2.0 stays a double");
    assert!(doc.value["i64_max"].is_i64(), "integers stay integers");
    let listed = store.list(&collection).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].value, value, "value listed");
}

/// Ids with `/` or reserved forms, non-objects, integers beyond 64 signed
/// bits, nested arrays and empty or reserved keys are refused up front, the
/// same way by every backend.
pub async fn invalid_ids_and_values_are_rejected(store: &dyn StateStore, prefix: &str) {
    let collection = format!("{prefix}-invalid");
    let ok = json!({ "fine": true });
    let long = "x".repeat(MAX_ID_BYTES + 1);
    for id in ["a/b", "", ".", "..", "__reserved__", long.as_str()] {
        let put = store.put(&collection, id, &ok, Precondition::None).await;
        assert!(
            matches!(put, Err(StateError::InvalidId { .. })),
            "put {id:?}: {put:?}"
        );
        let get = store.get(&collection, id).await;
        assert!(
            matches!(get, Err(StateError::InvalidId { .. })),
            "get {id:?}: {get:?}"
        );
        let delete = store.delete(&collection, id, Precondition::None).await;
        assert!(
            matches!(delete, Err(StateError::InvalidId { .. })),
            "delete {id:?}: {delete:?}"
        );
    }
    let bad_collection = store.list("a/b").await;
    assert!(
        matches!(bad_collection, Err(StateError::InvalidId { .. })),
        "list a/b: {bad_collection:?}"
    );
    let bad_values = [
        json!([1, 2]),
        json!("text"),
        json!({ "big": u64::MAX }),
        json!({ "nested": [[1]] }),
        json!({ "": 1 }),
        json!({ "deep": { "__reserved__": 1 } }),
    ];
    for value in bad_values {
        let put = store
            .put(&collection, "doc", &value, Precondition::None)
            .await;
        assert!(
            matches!(put, Err(StateError::InvalidValue { .. })),
            "put {value}: {put:?}"
        );
    }
    assert!(
        store.list(&collection).await.expect("list").is_empty(),
        "nothing was written"
    );
}

/// Two holders race for one lease: exactly one gets it; the other gets it
/// only after it expires; only the holder can renew or release it.
pub async fn lease_only_one_of_two_concurrent_holders_gets_it(
    store: &dyn StateStore,
    prefix: &str,
) {
    let ttl = Duration::from_millis(1500);
    let name = format!("{prefix}-failover-lease");
    let (a, b) = futures::join!(
        lease::acquire(store, &name, "alpha", ttl),
        lease::acquire(store, &name, "beta", ttl)
    );
    let (a, b) = (a.expect("acquire alpha"), b.expect("acquire beta"));
    let (winner, loser_name) = match (a, b) {
        (Some(lease), None) => (lease, "beta"),
        (None, Some(lease)) => (lease, "alpha"),
        (a, b) => panic!("exactly one holder must get the lease: alpha {a:?}, beta {b:?}"),
    };
    assert!(
        lease::acquire(store, &name, loser_name, ttl)
            .await
            .expect("acquire again")
            .is_none(),
        "an unexpired lease is not taken over"
    );

    let forged = Lease {
        holder: loser_name.to_string(),
        ..winner.clone()
    };
    let release = lease::release(store, &forged).await;
    assert!(
        matches!(release, Err(LeaseError::NotHeld { .. })),
        "release by a non-holder: {release:?}"
    );
    let current = lease::current(store, &name)
        .await
        .expect("current")
        .expect("still held");
    assert_eq!(
        current.holder, winner.holder,
        "the lease survived the forged release"
    );

    let renewed = lease::renew(store, &winner, ttl)
        .await
        .expect("holder renews");
    assert_ne!(renewed.version, winner.version);
    let stale = lease::renew(store, &winner, ttl).await;
    assert!(
        matches!(stale, Err(LeaseError::NotHeld { .. })),
        "renewing with a superseded lease: {stale:?}"
    );

    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    let taken = lease::acquire(store, &name, loser_name, ttl)
        .await
        .expect("acquire after expiry")
        .expect("an expired lease can be taken over");
    assert_eq!(taken.holder, loser_name);
    for old in [&winner, &renewed] {
        let renew = lease::renew(store, old, ttl).await;
        assert!(
            matches!(renew, Err(LeaseError::NotHeld { .. })),
            "the previous holder cannot renew: {renew:?}"
        );
        let release = lease::release(store, old).await;
        assert!(
            matches!(release, Err(LeaseError::NotHeld { .. })),
            "the previous holder cannot release: {release:?}"
        );
    }
    lease::release(store, &taken)
        .await
        .expect("holder releases");
    assert!(
        lease::current(store, &name)
            .await
            .expect("current")
            .is_none()
    );
    let again = lease::acquire(store, &name, &winner.holder, ttl)
        .await
        .expect("acquire after release")
        .expect("a released lease is free at once");
    // A renewal that landed after its holder stopped waiting for it: the
    // holder still releases with the lease it knows.
    lease::renew(store, &again, ttl)
        .await
        .expect("holder renews");
    lease::release(store, &again)
        .await
        .expect("the holder releases over its own later renewal");
    assert!(
        lease::current(store, &name)
            .await
            .expect("current")
            .is_none()
    );
}

/// A lease held by [`lease::hold`] outlives its TTL while the work runs,
/// and lapses within one TTL once its holder is gone (the work dropped
/// mid-way, as a killed process drops it).
pub async fn lease_held_while_renewed_lapses_without_its_holder(
    store: &dyn StateStore,
    prefix: &str,
) {
    let ttl = Duration::from_millis(900);
    let name = format!("{prefix}-held-lease");
    let taken = |holder: &'static str| {
        let name = name.clone();
        async move {
            lease::acquire(store, &name, holder, ttl)
                .await
                .expect("acquire")
        }
    };
    let held = taken("a").await.expect("a free lease");
    let rival = async {
        tokio::time::sleep(ttl * 3 / 2).await;
        taken("b").await
    };
    let (kept, rival) = futures::join!(
        lease::hold(store, held, ttl, tokio::time::sleep(ttl * 5 / 2)),
        rival
    );
    let ((), renewed) = kept.expect("the lease is kept while renewed");
    assert!(rival.is_none(), "another holder took a renewed lease");
    lease::release(store, &renewed)
        .await
        .expect("release after renewals");

    let held = taken("a").await.expect("a released lease");
    let gone = tokio::time::timeout(
        ttl,
        lease::hold(store, held, ttl, std::future::pending::<()>()),
    )
    .await;
    assert!(gone.is_err(), "the pending work ended: {gone:?}");
    assert!(taken("b").await.is_none(), "right after its holder is gone");
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    assert!(
        taken("b").await.is_some(),
        "one TTL after its holder is gone"
    );
}

fn expect_first(claim: Result<Claim, IdempotencyError>, what: &str) -> idempotency::ClaimToken {
    match claim {
        Ok(Claim::First(token)) => token,
        other => panic!("{what}: expected Claim::First, got {other:?}"),
    }
}

/// A duplicate delivery does nothing once the first completed, is told
/// `InProgress` while it runs, and takes over a claim whose processing
/// deadline passed; expired records count as absent and can be purged.
pub async fn idempotency_duplicate_is_a_no_op(store: &dyn StateStore, prefix: &str) {
    let processing = Duration::from_millis(1000);
    let retention = Duration::from_secs(600);
    // Event ids may hold any character, '/' included.
    let event = |n: u32| format!("{prefix}/event {n}: é🚀 %2F?#__");

    let key = event(1);
    let first = expect_first(
        idempotency::begin(store, &key, processing, retention).await,
        "first delivery",
    );
    let during = idempotency::begin(store, &key, processing, retention)
        .await
        .expect("duplicate during processing");
    assert_eq!(
        during,
        Claim::InProgress,
        "a duplicate while the first works"
    );
    idempotency::complete(store, &first)
        .await
        .expect("complete");
    let after = idempotency::begin(store, &key, processing, retention)
        .await
        .expect("duplicate after completion");
    assert_eq!(
        after,
        Claim::Done,
        "a duplicate after completion is a no-op"
    );

    // Two deliveries at once: one works, the other is told to come back.
    let key = event(2);
    let (x, y) = futures::join!(
        idempotency::begin(store, &key, processing, retention),
        idempotency::begin(store, &key, processing, retention)
    );
    let claims = [x.expect("begin x"), y.expect("begin y")];
    let firsts = claims
        .iter()
        .filter(|c| matches!(c, Claim::First(_)))
        .count();
    let waiting = claims.iter().filter(|c| **c == Claim::InProgress).count();
    assert_eq!(
        (firsts, waiting),
        (1, 1),
        "concurrent deliveries: {claims:?}"
    );

    // The worker crashes between begin and complete: after the processing
    // deadline the next delivery claims the event again.
    let key = event(3);
    let crashed = expect_first(
        idempotency::begin(store, &key, processing, retention).await,
        "delivery that will crash",
    );
    tokio::time::sleep(processing + Duration::from_millis(300)).await;
    let retry = expect_first(
        idempotency::begin(store, &key, processing, retention).await,
        "retry after the processing deadline",
    );
    assert_ne!(retry.claim_id, crashed.claim_id);
    let late = idempotency::complete(store, &crashed).await;
    assert!(
        matches!(late, Err(IdempotencyError::ClaimLost { .. })),
        "the crashed claim cannot complete: {late:?}"
    );
    idempotency::complete(store, &retry)
        .await
        .expect("retry completes");
    assert_eq!(
        idempotency::begin(store, &key, processing, retention)
            .await
            .expect("begin"),
        Claim::Done
    );

    // A failed worker abandons its claim: the next delivery need not wait.
    let key = event(4);
    let failed = expect_first(
        idempotency::begin(store, &key, processing, retention).await,
        "delivery that fails",
    );
    idempotency::abandon(store, &failed).await.expect("abandon");
    expect_first(
        idempotency::begin(store, &key, processing, retention).await,
        "delivery after an abandoned claim",
    );

    // Past its retention a record counts as absent, and purging deletes it.
    let short = Duration::from_millis(200);
    let (purged_key, retaken_key) = (event(5), event(6));
    for key in [&purged_key, &retaken_key] {
        let token = expect_first(
            idempotency::begin(store, key, processing, short).await,
            "short-lived event",
        );
        idempotency::complete(store, &token)
            .await
            .expect("complete");
    }
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    expect_first(
        idempotency::begin(store, &retaken_key, processing, retention).await,
        "delivery after retention",
    );
    let purged = idempotency::purge_expired(store).await.expect("purge");
    assert!(
        purged >= 1,
        "the expired record is purged (purged {purged})"
    );
    for (key, kept) in [
        (&purged_key, false),
        (&retaken_key, true),
        (&event(1), true),
    ] {
        let id = idempotency::document_id(key);
        let found = store.get(idempotency::COLLECTION, &id).await.expect("get");
        assert_eq!(found.is_some(), kept, "record of {key:?} kept: {kept}");
    }
}

/// A claim held by [`idempotency::once`] outlives its TTL while the work
/// runs and is completed whatever renewals happened; once its holder is gone
/// (the work dropped mid-way, as a killed process drops it) it lapses within
/// one TTL; a holder whose claim was taken over stops its work and does not
/// complete; failed work gives the claim up at once.
pub async fn idempotency_claim_is_held_while_renewed_and_lapses_without_its_holder(
    store: &dyn StateStore,
    prefix: &str,
) {
    let options = ClaimOptions {
        ttl: Duration::from_millis(1000),
        renew_every: Duration::from_millis(250),
        retention: Duration::from_secs(600),
    };
    let key = |n: u32| format!("{prefix}/held {n}");
    let begin = |key: String| async move {
        idempotency::begin(store, &key, options.ttl, options.retention)
            .await
            .expect("begin")
    };

    // Work that runs 2.5 TTLs: a duplicate past the first TTL still finds
    // the claim held, and the work's end completes it.
    let held = key(1);
    let work = async {
        tokio::time::sleep(options.ttl * 5 / 2).await;
        7
    };
    let duplicate = async {
        tokio::time::sleep(options.ttl * 3 / 2).await;
        begin(held.clone()).await
    };
    let (ran, during) = futures::join!(
        idempotency::once(store, &held, &options, work, |_| true),
        duplicate
    );
    assert!(matches!(ran, Once::Ran(7)), "renewed work: {ran:?}");
    assert_eq!(during, Claim::InProgress, "a duplicate past the first TTL");
    assert_eq!(begin(held).await, Claim::Done, "completed after renewals");

    // The holder is gone mid-work: the claim is still held right after, and
    // lapses within one TTL.
    let orphaned = key(2);
    let gone = tokio::time::timeout(
        options.renew_every * 3,
        idempotency::once(
            store,
            &orphaned,
            &options,
            std::future::pending::<()>(),
            |_| true,
        ),
    )
    .await;
    assert!(gone.is_err(), "the pending work ended: {gone:?}");
    assert_eq!(
        begin(orphaned.clone()).await,
        Claim::InProgress,
        "right after its holder is gone"
    );
    tokio::time::sleep(options.ttl + Duration::from_millis(300)).await;
    expect_first(
        idempotency::begin(store, &orphaned, options.ttl, options.retention).await,
        "one TTL after the holder is gone",
    );

    // Another delivery takes the event over (as after a lapse): the first
    // holder's next renewal finds it lost, its work stops, and it does not
    // complete over the other claim.
    let stolen = key(3);
    let finished = std::sync::atomic::AtomicBool::new(false);
    let work = async {
        tokio::time::sleep(options.ttl * 3).await;
        finished.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let thief = async {
        tokio::time::sleep(options.renew_every / 2).await;
        let id = idempotency::document_id(&stolen);
        store
            .delete(idempotency::COLLECTION, &id, Precondition::None)
            .await
            .expect("delete the claim");
        expect_first(Ok(begin(stolen.clone()).await), "taking the event over")
    };
    let (lost, thief) = futures::join!(
        idempotency::once(store, &stolen, &options, work, |_| true),
        thief
    );
    assert!(
        matches!(lost, Once::Failed(IdempotencyError::ClaimLost { .. })),
        "the holder whose claim was taken: {lost:?}"
    );
    assert!(
        !finished.load(std::sync::atomic::Ordering::SeqCst),
        "the work went on after the claim was lost"
    );
    assert_eq!(
        begin(stolen.clone()).await,
        Claim::InProgress,
        "the other delivery's claim stands"
    );
    idempotency::complete(store, &thief)
        .await
        .expect("the other delivery completes");

    // Work that did not finish the event gives the claim up at once.
    let failed = key(4);
    let ran = idempotency::once(store, &failed, &options, async { false }, |done| *done).await;
    assert!(matches!(ran, Once::Ran(false)), "failed work: {ran:?}");
    expect_first(Ok(begin(failed).await), "a retry after failed work");
}

/// One delivery of a poison event as the suite sends it.
fn poisoned<'a>(function: &'a str, event_id: &'a str, payload: &'a [u8]) -> Poison<'a> {
    Poison {
        function,
        event_id,
        event_type: "google.cloud.storage.object.v1.finalized",
        source: "//storage.googleapis.com/projects/_/buckets/b",
        reason: Reason::new("data.name", "is '..', which Cloud Storage refuses"),
        payload,
    }
}

/// A poison record is written once per function and event: later
/// deliveries, one after the other or at once, bump its count and keep its
/// first sighting; a payload past the bound is stored cut to it; another
/// event or another function gets its own record.
pub async fn poison_records_count_deliveries(store: &dyn StateStore, prefix: &str) {
    let function = format!("{prefix}-function");
    let other_function = format!("{prefix}-other");
    let payload = format!("{{\"data\":\"{}\"}}", "é".repeat(poison::MAX_PAYLOAD_BYTES));
    let id = "event 1/é🚀 %2F?#__";
    let first = poison::keep(store, &poisoned(&function, id, payload.as_bytes()))
        .await
        .expect("first delivery kept");
    assert_eq!(first.deliveries, 1);
    assert!(first.payload.len() <= poison::MAX_PAYLOAD_BYTES && first.payload_truncated);
    assert_eq!(first.payload_bytes, payload.len() as u64);

    let second = poison::keep(store, &poisoned(&function, id, payload.as_bytes()))
        .await
        .expect("second delivery kept");
    assert_eq!(second.deliveries, 2, "a redelivery bumps the count");
    assert_eq!(second.first_seen, first.first_seen, "first sighting kept");
    assert!(second.last_seen >= first.last_seen);

    let again = poisoned(&function, id, payload.as_bytes());
    let (x, y) = futures::join!(poison::keep(store, &again), poison::keep(store, &again));
    x.expect("concurrent delivery x");
    y.expect("concurrent delivery y");
    poison::keep(store, &poisoned(&function, "event 2", payload.as_bytes()))
        .await
        .expect("another event");
    poison::keep(store, &poisoned(&other_function, id, payload.as_bytes()))
        .await
        .expect("another function");

    let records = poison::records(store, &function).await.expect("list");
    let summary: Vec<(&str, u64)> = records
        .iter()
        .map(|r| (r.event_id.as_str(), r.deliveries))
        .collect();
    assert_eq!(
        summary,
        vec![(id, 4), ("event 2", 1)],
        "one record per event, concurrent deliveries all counted"
    );
    assert_eq!(
        records[0].reason,
        Reason::new("data.name", "is '..', which Cloud Storage refuses")
    );
    assert_eq!(
        records[0].payload, first.payload,
        "the stored payload reads back"
    );
    let others = poison::records(store, &other_function).await.expect("list");
    assert_eq!(others.len(), 1, "another function's record is its own");
}

/// A fault of `workload` in us-east1 owned by `run`, expiring `ttl` from now.
fn drill_fault(workload: &str, run: &str, kind: FaultKind, ttl: Duration) -> Fault {
    let now = chrono::Utc::now();
    Fault {
        workload: workload.to_string(),
        region: "us-east1".to_string(),
        kind,
        run: run.to_string(),
        injected_at: now,
        expires_at: now + chrono::TimeDelta::from_std(ttl).expect("ttl"),
    }
}

/// The faults of `workload` active now.
async fn active_faults(store: &dyn StateStore, workload: &str) -> Vec<Fault> {
    fault::active(store, chrono::Utc::now())
        .await
        .expect("active faults")
        .into_iter()
        .filter(|f| f.workload == workload)
        .collect()
}

/// A drill fault belongs to its run: another run can neither replace it
/// while it is active, nor renew nor remove it; its own run can. An expired
/// fault is ignored by readers, cannot be renewed back, and is replaced by
/// another run's; an expiry past [`fault::LONGEST_FAULT_TTL`] is refused.
pub async fn drill_faults_obey_ownership_and_expiry(store: &dyn StateStore, prefix: &str) {
    let workload = format!("{prefix}-fault ranking");
    let first = drill_fault(&workload, "run-1", FaultKind::Stop, fault::FAULT_TTL);
    fault::inject(store, &first).await.expect("inject");
    assert_eq!(active_faults(store, &workload).await, vec![first.clone()]);
    let watch = FaultWatch::new();
    watch.refresh(store).await.expect("refresh");
    let now = chrono::Utc::now();
    assert_eq!(
        watch.current(&workload, "us-east1", now),
        Some(FaultKind::Stop)
    );
    assert_eq!(watch.current(&workload, "us-central1", now), None);
    assert_eq!(watch.current("another workload", "us-east1", now), None);
    let after_expiry = first.expires_at + chrono::TimeDelta::seconds(1);
    assert_eq!(
        watch.current(&workload, "us-east1", after_expiry),
        None,
        "the expiry is honoured without a refresh"
    );

    let rival = drill_fault(&workload, "run-2", FaultKind::Error, fault::FAULT_TTL);
    match fault::inject(store, &rival).await {
        Err(FaultError::Held { run, .. }) => assert_eq!(run, "run-1"),
        other => panic!("another run's active fault must hold: {other:?}"),
    }
    let later = first.expires_at + chrono::TimeDelta::seconds(30);
    assert!(
        !fault::renew(store, &workload, "us-east1", "run-2", later)
            .await
            .expect("renew")
    );
    assert!(
        !fault::remove(store, &workload, "us-east1", "run-2")
            .await
            .expect("remove")
    );
    assert!(
        fault::renew(store, &workload, "us-east1", "run-1", later)
            .await
            .expect("renew")
    );
    assert_eq!(active_faults(store, &workload).await[0].expires_at, later);
    let too_late = chrono::Utc::now()
        + chrono::TimeDelta::from_std(fault::LONGEST_FAULT_TTL).expect("ttl")
        + chrono::TimeDelta::minutes(1);
    assert!(
        matches!(
            fault::renew(store, &workload, "us-east1", "run-1", too_late).await,
            Err(FaultError::Expiry { .. })
        ),
        "an expiry past the longest is refused"
    );
    assert!(
        fault::remove(store, &workload, "us-east1", "run-1")
            .await
            .expect("remove")
    );
    assert!(active_faults(store, &workload).await.is_empty());
    assert!(
        !fault::remove(store, &workload, "us-east1", "run-1")
            .await
            .expect("again")
    );
    assert!(
        !fault::renew(store, &workload, "us-east1", "run-1", later)
            .await
            .expect("renew gone"),
        "a removed fault is not renewed"
    );

    // A fault left to expire: ignored, not renewable, replaced by another
    // run's, and its own run's remove no longer touches the new one.
    let short = drill_fault(
        &workload,
        "run-3",
        FaultKind::Slow,
        Duration::from_millis(600),
    );
    fault::inject(store, &short).await.expect("inject short");
    assert_eq!(active_faults(store, &workload).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        active_faults(store, &workload).await.is_empty(),
        "expired is ignored"
    );
    assert!(
        store
            .get(fault::COLLECTION, &fault::record_id(&workload, "us-east1"))
            .await
            .expect("get")
            .is_some(),
        "active never deletes an expired record"
    );
    let soon = chrono::Utc::now() + chrono::TimeDelta::seconds(60);
    assert!(
        !fault::renew(store, &workload, "us-east1", "run-3", soon)
            .await
            .expect("renew expired")
    );
    fault::inject(store, &rival)
        .await
        .expect("an expired fault is replaced");
    assert!(
        !fault::remove(store, &workload, "us-east1", "run-3")
            .await
            .expect("remove")
    );
    assert_eq!(active_faults(store, &workload).await, vec![rival.clone()]);
    assert!(
        fault::remove(store, &workload, "us-east1", "run-2")
            .await
            .expect("remove")
    );
}

/// Counts flushed by two gateway instances, one of them twice, read back
/// summed per second and region, in time order.
pub async fn gateway_traffic_is_summed_over_instances(store: &dyn StateStore, prefix: &str) {
    let workload = format!("{prefix}-traffic");
    let from = chrono::Utc::now() - chrono::TimeDelta::minutes(2);
    let (a, b) = (TrafficCounter::new(), TrafficCounter::new());
    a.count(&workload, "us-central1", Outcome::Ok);
    a.count(&workload, "us-central1", Outcome::Retried);
    a.count("another workload", "us-central1", Outcome::Ok);
    b.count(&workload, "us-central1", Outcome::Failed);
    b.count(&workload, "us-east1", Outcome::Ok);
    a.flush(store, "instance-a").await.expect("flush a");
    b.flush(store, "instance-b").await.expect("flush b");
    a.count(&workload, "us-central1", Outcome::Ok);
    a.flush(store, "instance-a").await.expect("flush a again");
    a.flush(store, "instance-a").await.expect("an empty flush");
    let to = chrono::Utc::now() + chrono::TimeDelta::minutes(2);
    let seconds = traffic::read(store, &workload, from, to)
        .await
        .expect("read");
    let sum = |region: &str| {
        seconds
            .iter()
            .filter(|s| s.region == region)
            .fold((0, 0, 0), |(o, r, f), s| {
                (o + s.ok, r + s.retried, f + s.failed)
            })
    };
    assert_eq!(sum("us-central1"), (2, 1, 1), "{seconds:?}");
    assert_eq!(sum("us-east1"), (1, 0, 0), "{seconds:?}");
    assert_eq!(seconds.len() as u64, {
        let mut keys: Vec<_> = seconds.iter().map(|s| (s.at, s.region.clone())).collect();
        keys.dedup();
        keys.len() as u64
    });
    let mut sorted: Vec<SecondCount> = seconds.clone();
    sorted.sort_by(|x, y| (x.at, &x.region).cmp(&(y.at, &y.region)));
    assert_eq!(seconds, sorted, "sorted by time, then region");
    assert!(seconds.iter().all(|s| s.at.timestamp_subsec_nanos() == 0));
    let before = traffic::read(store, &workload, from - chrono::TimeDelta::hours(1), from)
        .await
        .expect("read before");
    assert!(before.is_empty(), "nothing before the counts: {before:?}");
}
