//! Settling copies: a copy of a source generation counts only once the
//! source is seen still holding that generation *after* the copy. A writer
//! that replaced the object while the copy ran may have had its own, newer
//! copy overwritten by ours; reading the source afterwards is what catches
//! it (and [`crate::bucket_sync::converge`] then copies the newer one).
//!
//! Copies are settled in batches: with a listing of the name range the batch
//! covers when the copies are dense in it, or one metadata read per copy
//! when they are sparse. A reconcile settles the copies of one batch of its
//! walk ([`Spread::Among`]); the finalizes in flight share their reads
//! through a [`Settler`] ([`Spread::Unknown`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use lifeboat_shared::storage::{ObjectRef, ObjectStore, StorageError};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

/// How many names a listing page holds.
const PAGE_NAMES: u64 = 1_000;

/// A listing page costs about what this many metadata reads cost.
const READS_PER_PAGE: u64 = 10;

/// A listing reads the batch's name range when it holds at most this many
/// names per copy to settle.
const NAMES_PER_READ: u64 = PAGE_NAMES / READS_PER_PAGE;

/// How many metadata reads run at once.
const READS_IN_FLIGHT: usize = 32;

/// One copy to settle: the object's name and the source generation copied.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Copy {
    /// The object's name.
    pub name: String,
    /// The source generation that was copied.
    pub generation: i64,
}

/// How the copies to settle lie among the source's names, which decides how
/// they are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spread {
    /// They were found among this many source names (a reconcile's batch):
    /// listed when dense, read one by one when sparse.
    Among(u64),
    /// Not known (finalizes in flight): read one by one when there are too
    /// few to pay for a listing page; otherwise listed page by page, until a
    /// page settles fewer copies than it costs reads, then read one by one.
    Unknown,
}

/// The copies whose source in `bucket` no longer holds the copied
/// generation (replaced or deleted).
pub async fn moved_on(
    store: &dyn ObjectStore,
    bucket: &str,
    mut copies: Vec<Copy>,
    spread: Spread,
) -> Result<Vec<Copy>, StorageError> {
    copies.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let (Some(first), Some(last)) = (copies.first(), copies.last()) else {
        return Ok(Vec::new());
    };
    let count = copies.len() as u64;
    let sparse = match spread {
        Spread::Among(span) => span > NAMES_PER_READ.saturating_mul(count),
        Spread::Unknown => count < READS_PER_PAGE,
    };
    if sparse {
        return read_each(store, bucket, copies).await;
    }
    let (first, last) = (first.name.clone(), last.name.clone());
    let mut moved = Vec::new();
    let mut pending = copies.into_iter().peekable();
    let mut token: Option<String> = None;
    loop {
        let page = store
            .list_range(bucket, &first, &last, token.as_deref())
            .await?;
        let mut settled = 0;
        for live in page.objects {
            // Copies listed before this name are gone from the source.
            while let Some(copy) = pending.next_if(|copy| copy.name < live.object.name) {
                settled += 1;
                moved.push(copy);
            }
            while let Some(copy) = pending.next_if(|copy| copy.name == live.object.name) {
                settled += 1;
                if copy.generation != live.generation {
                    moved.push(copy);
                }
            }
        }
        token = page.next_page_token;
        if token.is_none() || pending.peek().is_none() {
            break;
        }
        if spread == Spread::Unknown && settled < READS_PER_PAGE {
            moved.extend(read_each(store, bucket, pending.collect()).await?);
            return Ok(moved);
        }
    }
    if token.is_none() {
        // The range is listed to its end: what was not listed is gone.
        moved.extend(pending);
    }
    Ok(moved)
}

/// [`moved_on`] with one metadata read per copy.
async fn read_each(
    store: &dyn ObjectStore,
    bucket: &str,
    copies: Vec<Copy>,
) -> Result<Vec<Copy>, StorageError> {
    let reads = futures::stream::iter(copies).map(|copy| async move {
        let source = ObjectRef::new(bucket, copy.name.as_str());
        match store.head(&source).await {
            Ok(live) if live.generation == copy.generation => Ok(None),
            Ok(_) | Err(StorageError::NotFound { .. }) => Ok(Some(copy)),
            Err(error) => Err(error),
        }
    });
    let mut moved = Vec::new();
    let mut reads = reads.buffer_unordered(READS_IN_FLIGHT);
    while let Some(read) = reads.next().await {
        moved.extend(read?);
    }
    Ok(moved)
}

/// How long the copies waiting for a read wait for more copies in flight
/// to join them, at most.
const LINGER: Duration = Duration::from_millis(250);

/// Settles the copies of the finalizes in flight together, per source
/// bucket. A finalize announces its copies before making them
/// ([`Settler::expect`]) and asks for the read once they are made
/// ([`Expected::moved_on`]). A read starts as soon as every copy announced
/// waits for it, or enough wait to pay for a listing page, or the first of
/// them has waited [`LINGER`]; the copies that finish while it runs wait
/// for the next one. A lone finalize is read at once; a burst of uploads is
/// settled by range listings instead of one read per object ([`moved_on`]
/// with [`Spread::Unknown`]). Every read starts after the copies it settles
/// were made, as settling requires.
#[derive(Debug)]
pub struct Settler {
    store: Arc<dyn ObjectStore>,
    buckets: Mutex<HashMap<String, BucketReads>>,
    /// Woken when a copy starts waiting or an announced one will not come.
    changed: Notify,
}

/// The copies of one source bucket to settle.
#[derive(Debug, Default)]
struct BucketReads {
    /// Copies announced and not yet taken into a read.
    expected: usize,
    /// Copies made, waiting for a read.
    waiting: Vec<Waiter>,
    /// When the first of `waiting` started waiting.
    waiting_since: Option<Instant>,
    /// Whether a task reads for this bucket.
    reading: bool,
}

impl BucketReads {
    /// The copies a read should take now, if any: when no other announced
    /// copy is to come, or enough wait to pay for a page, or they waited
    /// long enough. Otherwise, until when to wait at most.
    fn batch(&mut self, now: Instant) -> Result<Vec<Waiter>, Option<Instant>> {
        let since = match self.waiting_since {
            Some(since) if !self.waiting.is_empty() => since,
            _ => return Err(None),
        };
        let full = self.waiting.len() as u64 >= READS_PER_PAGE;
        if full || self.waiting.len() >= self.expected || now >= since + LINGER {
            self.expected -= self.waiting.len();
            self.waiting_since = None;
            Ok(std::mem::take(&mut self.waiting))
        } else {
            Err(Some(since + LINGER))
        }
    }
}

/// A copy waiting to be settled, and where to send the answer.
#[derive(Debug)]
struct Waiter {
    copy: Copy,
    answer: oneshot::Sender<Result<bool, String>>,
}

/// A finalize's copies announced to a [`Settler`]: ask for their read with
/// [`Expected::moved_on`]; dropping it says they will not come.
#[derive(Debug)]
pub struct Expected {
    settler: Arc<Settler>,
    bucket: String,
    announced: bool,
}

impl Settler {
    /// A settler reading the source buckets in `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Arc<Self> {
        Arc::new(Self {
            store,
            buckets: Mutex::new(HashMap::new()),
            changed: Notify::new(),
        })
    }

    /// Announces a finalize's copies of an object of `bucket`, before they
    /// are made, so that the reads wait for them.
    pub fn expect(self: &Arc<Self>, bucket: &str) -> Expected {
        self.buckets()
            .entry(bucket.to_string())
            .or_default()
            .expected += 1;
        Expected {
            settler: Arc::clone(self),
            bucket: bucket.to_string(),
            announced: true,
        }
    }

    fn buckets(&self) -> std::sync::MutexGuard<'_, HashMap<String, BucketReads>> {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads for `bucket` until no copy waits.
    async fn read(self: Arc<Self>, bucket: String) {
        let mut reading = Reading {
            settler: Arc::clone(&self),
            bucket: bucket.clone(),
            finished: false,
        };
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = {
                let mut buckets = self.buckets();
                let reads = buckets.entry(bucket.clone()).or_default();
                match reads.batch(Instant::now()) {
                    Err(None) => {
                        reads.reading = false;
                        if reads.expected == 0 {
                            buckets.remove(&bucket);
                        }
                        reading.finished = true;
                        return;
                    }
                    other => other,
                }
            };
            let batch = match next {
                Ok(batch) => batch,
                Err(until) => {
                    let until = until.unwrap_or_else(Instant::now);
                    let _ = tokio::time::timeout_at(until, notified).await;
                    continue;
                }
            };
            let copies = batch.iter().map(|waiter| waiter.copy.clone()).collect();
            match moved_on(self.store.as_ref(), &bucket, copies, Spread::Unknown).await {
                Ok(moved) => {
                    let moved: HashSet<Copy> = moved.into_iter().collect();
                    for waiter in batch {
                        let gone = moved.contains(&waiter.copy);
                        let _ = waiter.answer.send(Ok(gone));
                    }
                }
                Err(error) => {
                    for waiter in batch {
                        let _ = waiter.answer.send(Err(error.to_string()));
                    }
                }
            }
        }
    }
}

impl Expected {
    /// Whether the source of `copy` moved on from the copied generation
    /// (replaced or deleted), read after this call; the error says why the
    /// source could not be read.
    pub async fn moved_on(mut self, copy: Copy) -> Result<bool, String> {
        let (answer, answered) = oneshot::channel();
        let start_reading = {
            let mut buckets = self.settler.buckets();
            let reads = buckets.entry(self.bucket.clone()).or_default();
            reads.waiting.push(Waiter { copy, answer });
            reads.waiting_since.get_or_insert_with(Instant::now);
            !std::mem::replace(&mut reads.reading, true)
        };
        // Now counted as waiting, no longer as announced only.
        self.announced = false;
        if start_reading {
            let settler = Arc::clone(&self.settler);
            tokio::spawn(settler.read(self.bucket.clone()));
        } else {
            self.settler.changed.notify_waiters();
        }
        answered
            .await
            .unwrap_or_else(|_| Err("the read settling the copy stopped".to_string()))
    }
}

impl Drop for Expected {
    fn drop(&mut self) {
        if self.announced {
            let mut buckets = self.settler.buckets();
            if let Some(reads) = buckets.get_mut(&self.bucket) {
                reads.expected -= 1;
                if reads.expected == 0 && !reads.reading {
                    buckets.remove(&self.bucket);
                }
            }
            drop(buckets);
            self.settler.changed.notify_waiters();
        }
    }
}

/// A task reading for one bucket. If it stops early (a panic), dropping it
/// lets the next copy start a new one, and the copies it left waiting are
/// answered with an error (their events are redelivered).
struct Reading {
    settler: Arc<Settler>,
    bucket: String,
    finished: bool,
}

impl Drop for Reading {
    fn drop(&mut self) {
        if !self.finished {
            let mut buckets = self.settler.buckets();
            if let Some(reads) = buckets.get_mut(&self.bucket) {
                reads.expected -= reads.waiting.len();
                reads.waiting.clear();
                reads.waiting_since = None;
                reads.reading = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_shared::storage::local::LocalStore;
    use lifeboat_shared::storage::{PutOptions, bytes_stream};

    async fn put(store: &LocalStore, name: &str, body: &'static [u8]) -> i64 {
        store
            .put(
                &ObjectRef::new("settle-src", name),
                bytes_stream(body),
                PutOptions::default(),
            )
            .await
            .expect("put")
            .generation
    }

    /// Both ways of reading find the same copies moved on: one replaced,
    /// one deleted, one whose name no longer lists, and one still live.
    #[tokio::test]
    async fn a_listing_and_single_reads_find_the_same_copies_moved_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalStore::open(dir.path()).await.expect("store");
        store
            .create_bucket("settle-src", "us-central1")
            .await
            .expect("bucket");
        let kept = put(&store, "a/kept", b"1").await;
        let replaced = put(&store, "a/replaced", b"1").await;
        put(&store, "a/replaced", b"2").await;
        let deleted = put(&store, "b deleted", b"1").await;
        store
            .delete(&ObjectRef::new("settle-src", "b deleted"), None)
            .await
            .expect("delete");
        let last = put(&store, "z/last", b"1").await;
        put(&store, "a/other", b"1").await;
        let copies = vec![
            Copy {
                name: "z/last".into(),
                generation: last,
            },
            Copy {
                name: "a/kept".into(),
                generation: kept,
            },
            Copy {
                name: "b deleted".into(),
                generation: deleted,
            },
            Copy {
                name: "a/replaced".into(),
                generation: replaced,
            },
        ];
        for spread in [Spread::Among(4), Spread::Among(1_000_000), Spread::Unknown] {
            let moved = moved_on(&store, "settle-src", copies.clone(), spread)
                .await
                .expect("settle");
            let mut moved: Vec<String> = moved.into_iter().map(|copy| copy.name).collect();
            moved.sort_unstable();
            assert_eq!(moved, ["a/replaced", "b deleted"], "{spread:?}");
        }
        let none = moved_on(&store, "settle-src", Vec::new(), Spread::Unknown).await;
        assert!(none.expect("nothing to settle").is_empty());
    }

    /// Copies spread over a bucket listed 20 names a page: the first page
    /// settles enough copies to go on listing, the second too few, so the
    /// rest are read one by one. Every way finds the same copies moved on,
    /// among them the older of two copies of one name.
    #[tokio::test]
    async fn an_unknown_spread_lists_while_pages_pay_then_reads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalStore::open(dir.path())
            .await
            .expect("store")
            .with_list_page_size(20);
        store
            .create_bucket("settle-src", "us-central1")
            .await
            .expect("bucket");
        let name = |i: usize| format!("n/{i:02}");
        let mut first = Vec::new();
        for i in 0..60 {
            first.push(put(&store, &name(i), b"1").await);
        }
        let mut copies: Vec<Copy> = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 25, 30, 45, 50, 59]
            .into_iter()
            .map(|i| Copy {
                name: name(i),
                generation: first[i],
            })
            .collect();
        for i in [3, 7, 30, 59] {
            put(&store, &name(i), b"2").await;
        }
        for i in [5, 50] {
            let object = ObjectRef::new("settle-src", name(i).as_str());
            store.delete(&object, None).await.expect("delete");
        }
        let live_7 = store
            .head(&ObjectRef::new("settle-src", name(7).as_str()))
            .await
            .expect("head");
        copies.push(Copy {
            name: name(7),
            generation: live_7.generation,
        });
        let expected = [(3, first[3]), (5, first[5]), (7, first[7])]
            .into_iter()
            .chain([(30, first[30]), (50, first[50]), (59, first[59])])
            .map(|(i, generation)| Copy {
                name: name(i),
                generation,
            })
            .collect::<HashSet<_>>();
        for spread in [Spread::Unknown, Spread::Among(60), Spread::Among(u64::MAX)] {
            let moved = moved_on(&store, "settle-src", copies.clone(), spread)
                .await
                .expect("settle");
            assert_eq!(moved.len(), expected.len(), "{spread:?}: {moved:?}");
            assert_eq!(
                moved.into_iter().collect::<HashSet<_>>(),
                expected,
                "{spread:?}"
            );
        }
    }

    /// Copies settled at once through a settler, more than one read takes:
    /// each is answered, and right.
    #[tokio::test]
    async fn a_settler_answers_every_copy_in_flight() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(LocalStore::open(dir.path()).await.expect("store"));
        store
            .create_bucket("settle-src", "us-central1")
            .await
            .expect("bucket");
        let mut copies = Vec::new();
        for i in 0..40 {
            let name = format!("burst/{i:02}");
            let generation = put(&store, &name, b"1").await;
            copies.push(Copy { name, generation });
        }
        for copy in copies.iter().step_by(3) {
            put(&store, &copy.name, b"2").await;
        }
        let settler = Settler::new(store);
        let answers = futures::future::join_all(copies.iter().map(|copy| {
            let expected = settler.expect("settle-src");
            async move { expected.moved_on(copy.clone()).await }
        }))
        .await;
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer, Ok(i % 3 == 0), "copy {i}");
        }
        assert!(settler.buckets().is_empty(), "{:?}", settler.buckets());
    }

    /// A lone copy is read at once; a copy announced beside another holds
    /// the read until it is made or will not come (dropped), never longer
    /// than the linger. Time is paused: only timers move it.
    #[tokio::test(start_paused = true)]
    async fn a_read_waits_for_announced_copies_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(LocalStore::open(dir.path()).await.expect("store"));
        store
            .create_bucket("settle-src", "us-central1")
            .await
            .expect("bucket");
        let generation = put(&store, "lone", b"1").await;
        let copy = Copy {
            name: "lone".into(),
            generation,
        };
        let settler = Settler::new(store);

        let started = Instant::now();
        let answer = settler.expect("settle-src").moved_on(copy.clone()).await;
        assert_eq!(answer, Ok(false));
        assert_eq!(started.elapsed(), Duration::ZERO, "a lone copy waited");

        let started = Instant::now();
        let first = settler.expect("settle-src");
        let second = settler.expect("settle-src");
        let answer = tokio::spawn(first.moved_on(copy.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(second);
        assert_eq!(answer.await.expect("answer"), Ok(false));
        assert_eq!(started.elapsed(), Duration::from_millis(100));

        let started = Instant::now();
        let _never_made = settler.expect("settle-src");
        let answer = settler.expect("settle-src").moved_on(copy).await;
        assert_eq!(answer, Ok(false));
        assert_eq!(started.elapsed(), LINGER, "the linger bounds the wait");
    }
}
