//! Settling copies: a copy of a source generation counts only once the
//! source is seen still holding that generation *after* the copy. A writer
//! that replaced the object while the copy ran may have had its own, newer
//! copy overwritten by ours; reading the source afterwards is what catches
//! it (and [`crate::bucket_sync::converge`] then copies the newer one).
//!
//! A reconcile settles a group of copies at once, either by listing the
//! name range they cover or by one metadata read per copy. Which is cheaper
//! depends on the server: on Cloud Storage a page of 1,000 names costs about
//! what a few reads cost, while a server that scans the bucket on every call
//! (as some emulators do) makes each page far dearer. So the group's last
//! copies are settled by one wave of single reads, timed, and the rest the
//! way that this and the walk's own listing pages say is cheaper.
//!
//! The event path settles through a [`SettleQueue`]: each event's copies
//! wait for the next settling round of their source bucket, so a burst of
//! events is settled in a few rounds instead of one read per event, and a
//! lone event waits for no one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lifeboat_shared::storage::replica::holds_generation;
use lifeboat_shared::storage::{ObjectRef, ObjectStore, StorageError};
use tokio::sync::oneshot;
use tracing::Instrument as _;

use crate::lock;

/// How many metadata reads run at once: one wave of single reads.
const READS_IN_FLIGHT: usize = 32;

/// One copy to settle: the object's name and the source generation copied.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Copy {
    /// The object's name.
    pub name: String,
    /// The source generation that was copied.
    pub generation: i64,
}

/// What one page of the source listing cost, as the reconcile's walk of it
/// measured. A range listing's page costs no more: it covers a part of the
/// same names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageCost {
    /// How long the page took.
    pub time: Duration,
    /// How many names it held.
    pub names: u64,
}

/// A way of reading the source to settle copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// Page through the listing of the copies' name range.
    Listing,
    /// Read each copy's source metadata, [`READS_IN_FLIGHT`] at a time.
    SingleReads,
}

/// What settling the rest of a group would cost either way.
#[derive(Clone, Copy, Debug)]
struct Estimate {
    /// What a listing page costs.
    page: PageCost,
    /// How many source names the group's copies lie among.
    span: u64,
    /// How long the first wave of single reads took.
    wave: Duration,
    /// How many more waves the copies left need.
    waves_left: u64,
}

impl Estimate {
    /// The way that would take less time for the rest of the group.
    fn cheaper(&self) -> Way {
        let pages = self.span.div_ceil(self.page.names.max(1));
        let listing = self.page.time.as_secs_f64() * pages as f64;
        let reads = self.wave.as_secs_f64() * self.waves_left as f64;
        if listing <= reads {
            Way::Listing
        } else {
            Way::SingleReads
        }
    }
}

/// The names among `copies` whose source in `bucket` no longer holds the
/// copied generation (replaced or deleted). `span` is how many source names
/// the copies were found among, and `page` what a page of the source
/// listing costs: together they tell what listing their range would cost.
pub async fn moved_on(
    store: &dyn ObjectStore,
    bucket: &str,
    copies: Vec<Copy>,
    span: u64,
    page: PageCost,
) -> Result<Vec<String>, StorageError> {
    settle(store, bucket, copies, span, page, Estimate::cheaper).await
}

/// [`moved_on`], with `choose` picking the way for what the first wave of
/// single reads leaves.
async fn settle(
    store: &dyn ObjectStore,
    bucket: &str,
    mut copies: Vec<Copy>,
    span: u64,
    page: PageCost,
    choose: fn(&Estimate) -> Way,
) -> Result<Vec<String>, StorageError> {
    if copies.len() <= READS_IN_FLIGHT {
        return Ok(names(read_each(store, bucket, copies).await?));
    }
    copies.sort_unstable();
    let last_wave = copies.split_off(copies.len() - READS_IN_FLIGHT);
    let timer = Instant::now();
    let mut moved = read_each(store, bucket, last_wave).await?;
    let estimate = Estimate {
        page,
        span,
        wave: timer.elapsed(),
        waves_left: copies.len().div_ceil(READS_IN_FLIGHT) as u64,
    };
    let way = choose(&estimate);
    tracing::debug!(?way, ?estimate, "settling the rest of the copies");
    moved.extend(match way {
        Way::Listing => list_range(store, bucket, copies).await?.0,
        Way::SingleReads => read_each(store, bucket, copies).await?,
    });
    Ok(names(moved))
}

/// The names of `copies`.
fn names(copies: Vec<Copy>) -> Vec<String> {
    copies.into_iter().map(|copy| copy.name).collect()
}

/// What a range listing read.
#[derive(Clone, Copy, Debug)]
struct Listed {
    /// How long its pages took, all together.
    time: Duration,
    /// How many pages it read.
    pages: u32,
    /// How many names its pages held.
    names: u64,
}

impl Listed {
    /// What one of its pages cost, on average.
    fn page_cost(&self) -> PageCost {
        let pages = self.pages.max(1);
        PageCost {
            time: self.time / pages,
            names: self.names.div_ceil(u64::from(pages)),
        }
    }
}

/// The copies among `copies` (sorted) whose source moved on, found by
/// paging through the listing of their name range, and what it read.
async fn list_range(
    store: &dyn ObjectStore,
    bucket: &str,
    copies: Vec<Copy>,
) -> Result<(Vec<Copy>, Listed), StorageError> {
    let mut listed = Listed {
        time: Duration::ZERO,
        pages: 0,
        names: 0,
    };
    let (Some(first), Some(last)) = (copies.first(), copies.last()) else {
        return Ok((Vec::new(), listed));
    };
    let (first, last) = (first.name.clone(), last.name.clone());
    let mut moved = Vec::new();
    let mut pending = copies.into_iter().peekable();
    let mut token: Option<String> = None;
    let timer = Instant::now();
    loop {
        let page = store
            .list_range(bucket, &first, &last, token.as_deref())
            .await?;
        listed.pages += 1;
        listed.names += page.objects.len() as u64;
        for live in page.objects {
            // Copies listed before this name are gone from the source.
            while let Some(copy) = pending.next_if(|copy| copy.name < live.object.name) {
                moved.push(copy);
            }
            while let Some(copy) = pending.next_if(|copy| copy.name == live.object.name) {
                if copy.generation != live.generation {
                    moved.push(copy);
                }
            }
        }
        token = page.next_page_token;
        if token.is_none() {
            break;
        }
    }
    listed.time = timer.elapsed();
    // Copies the listing never showed are gone from the source.
    moved.extend(pending);
    Ok((moved, listed))
}

/// The copies among `copies` whose source moved on, found by one metadata
/// read per copy.
async fn read_each(
    store: &dyn ObjectStore,
    bucket: &str,
    copies: Vec<Copy>,
) -> Result<Vec<Copy>, StorageError> {
    let reads = futures::stream::iter(copies).map(|copy| async move {
        let source = ObjectRef::new(bucket, copy.name.as_str());
        let held = holds_generation(store, &source, copy.generation).await?;
        Ok((!held).then_some(copy))
    });
    let mut moved = Vec::new();
    let mut reads = reads.buffer_unordered(READS_IN_FLIGHT);
    while let Some(read) = reads.next().await {
        moved.extend(read?);
    }
    Ok(moved)
}

/// Settles the copies that concurrent events made, together. Each event
/// queues its copy and waits for its answer; the first copy queued to an
/// idle bucket starts a settling round at once, and the copies queued while
/// a round reads the source wait for the next, so a burst of events costs a
/// few rounds, not one read each. A round reads its copies one by one or
/// lists their name range, whichever the bucket's earlier rounds measured
/// cheaper (single reads first, then one listing to learn its cost).
#[derive(Debug)]
pub struct SettleQueue {
    /// Where the source buckets are.
    store: Arc<dyn ObjectStore>,
    buckets: Mutex<HashMap<String, BucketQueue>>,
}

/// One source bucket's copies waiting to be settled, and what its rounds
/// measured.
#[derive(Debug, Default)]
struct BucketQueue {
    /// Each copy and where its answer goes: whether the source still holds
    /// it, or why the source could not be read.
    waiting: Vec<(Copy, oneshot::Sender<Result<bool, String>>)>,
    /// Whether a task is running the bucket's rounds.
    settling: bool,
    /// What the bucket's rounds measured.
    measured: Measured,
}

/// What a bucket's settling rounds measured, the latest of each.
#[derive(Clone, Copy, Debug, Default)]
struct Measured {
    /// How long a wave of single reads took.
    wave: Option<Duration>,
    /// What a page of a range listing cost.
    page: Option<PageCost>,
    /// How many source names a range listing held per copy it settled.
    names_per_copy: f64,
}

impl Measured {
    /// How to settle `copies` copies: the way measured cheaper, or the way
    /// not measured yet (single reads first; one listing once there is a
    /// range to list).
    fn way(&self, copies: usize) -> Way {
        match (self.wave, self.page) {
            (None, _) => Way::SingleReads,
            (Some(_), None) if copies > 1 => Way::Listing,
            (Some(_), None) => Way::SingleReads,
            (Some(wave), Some(page)) => Estimate {
                page,
                span: (copies as f64 * self.names_per_copy).ceil() as u64,
                wave,
                waves_left: copies.div_ceil(READS_IN_FLIGHT) as u64,
            }
            .cheaper(),
        }
    }
}

impl SettleQueue {
    /// A queue settling copies from source buckets in `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            buckets: Mutex::default(),
        }
    }

    /// Whether the source `bucket` still holds `copy`'s generation, read
    /// after the copy was queued: true settles the copy, false means the
    /// source moved on (replaced or deleted). Fails with the reason when the
    /// source could not be read.
    pub async fn holds(self: &Arc<Self>, bucket: &str, copy: Copy) -> Result<bool, String> {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut buckets = lock(&self.buckets);
            let queue = buckets.entry(bucket.to_string()).or_default();
            queue.waiting.push((copy, answer));
            !std::mem::replace(&mut queue.settling, true)
        };
        if start {
            let rounds = RoundsRunning {
                queue: Arc::clone(self),
                bucket: bucket.to_string(),
                done: false,
            };
            tokio::spawn(rounds.run());
        }
        answered
            .await
            .unwrap_or_else(|_| Err("the settling round stopped".to_string()))
    }
}

/// The task running one bucket's settling rounds until no copy waits. If
/// it stops any other way (a panic), dropping it lets the next copy queued
/// start a new one.
struct RoundsRunning {
    queue: Arc<SettleQueue>,
    bucket: String,
    /// Set once the bucket was seen idle, under the same lock.
    done: bool,
}

impl RoundsRunning {
    async fn run(mut self) {
        let store = Arc::clone(&self.queue.store);
        loop {
            let (mut round, mut measured) = {
                let mut buckets = lock(&self.queue.buckets);
                let queue = buckets.entry(self.bucket.clone()).or_default();
                if queue.waiting.is_empty() {
                    queue.settling = false;
                    self.done = true;
                    return;
                }
                (std::mem::take(&mut queue.waiting), queue.measured)
            };
            round.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            let copies: Vec<Copy> = round.iter().map(|(copy, _)| copy.clone()).collect();
            let way = measured.way(copies.len());
            let span = tracing::debug_span!("settling_round", bucket = %self.bucket, copies = copies.len(), ?way);
            let moved = settle_round(store.as_ref(), &self.bucket, copies, way, &mut measured)
                .instrument(span)
                .await;
            lock(&self.queue.buckets)
                .entry(self.bucket.clone())
                .or_default()
                .measured = measured;
            for (copy, answer) in round {
                let held = match &moved {
                    Ok(moved) => Ok(moved.binary_search(&copy).is_err()),
                    Err(error) => Err(error.to_string()),
                };
                // The event that queued it may have given up waiting.
                let _ = answer.send(held);
            }
        }
    }
}

impl Drop for RoundsRunning {
    fn drop(&mut self) {
        if !self.done
            && let Some(queue) = lock(&self.queue.buckets).get_mut(&self.bucket)
        {
            queue.settling = false;
        }
    }
}

/// Settles `copies` (sorted) the given way, noting what it measured; the
/// copies whose source moved on, sorted.
async fn settle_round(
    store: &dyn ObjectStore,
    bucket: &str,
    copies: Vec<Copy>,
    way: Way,
    measured: &mut Measured,
) -> Result<Vec<Copy>, StorageError> {
    let count = copies.len();
    let mut moved = match way {
        Way::SingleReads => {
            let timer = Instant::now();
            let moved = read_each(store, bucket, copies).await?;
            let waves = count.div_ceil(READS_IN_FLIGHT).max(1);
            measured.wave = Some(timer.elapsed() / waves as u32);
            moved
        }
        Way::Listing => {
            let (moved, listed) = list_range(store, bucket, copies).await?;
            measured.page = Some(listed.page_cost());
            measured.names_per_copy = listed.names as f64 / count.max(1) as f64;
            moved
        }
    };
    moved.sort_unstable();
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_shared::storage::local::LocalStore;
    use lifeboat_shared::storage::{PutOptions, bytes_stream};

    const BUCKET: &str = "settle-src";

    async fn put(store: &LocalStore, name: &str, body: &'static [u8]) -> i64 {
        store
            .put(
                &ObjectRef::new(BUCKET, name),
                bytes_stream(body),
                PutOptions::default(),
            )
            .await
            .expect("put")
            .generation
    }

    /// A source with `count` copied objects, every third replaced after its
    /// copy and every fifth deleted, among names that were not copied; the
    /// copies and the names that moved on, sorted.
    async fn source(store: &LocalStore, count: usize) -> (Vec<Copy>, Vec<String>) {
        store
            .create_bucket(BUCKET, "us-central1")
            .await
            .expect("bucket");
        let (mut copies, mut moved) = (Vec::new(), Vec::new());
        for i in 0..count {
            let name = format!("obj {i:03}");
            let generation = put(store, &name, b"1").await;
            put(store, &format!("obj {i:03} not copied"), b"1").await;
            if i % 3 == 1 {
                put(store, &name, b"2").await;
                moved.push(name.clone());
            } else if i % 5 == 2 {
                store
                    .delete(&ObjectRef::new(BUCKET, name.as_str()), None)
                    .await
                    .expect("delete");
                moved.push(name.clone());
            }
            copies.push(Copy { name, generation });
        }
        copies.reverse();
        (copies, moved)
    }

    /// Every way of settling finds the same copies moved on (replaced or
    /// deleted), on a batch of one wave and on one that spans many pages.
    #[tokio::test]
    async fn every_way_finds_the_same_copies_moved_on() {
        for count in [READS_IN_FLIGHT, 100] {
            for way in [Way::Listing, Way::SingleReads] {
                let dir = tempfile::tempdir().expect("temp dir");
                let store = LocalStore::open(dir.path())
                    .await
                    .expect("store")
                    .with_list_page_size(7);
                let (copies, expected) = source(&store, count).await;
                let choose = match way {
                    Way::Listing => (|_: &Estimate| Way::Listing) as fn(&Estimate) -> Way,
                    Way::SingleReads => |_: &Estimate| Way::SingleReads,
                };
                let span = 2 * count as u64;
                let page = PageCost {
                    time: Duration::from_millis(1),
                    names: 7,
                };
                let mut moved = settle(&store, BUCKET, copies, span, page, choose)
                    .await
                    .expect("settle");
                moved.sort_unstable();
                assert_eq!(moved, expected, "{count} copies, {way:?}");
            }
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalStore::open(dir.path()).await.expect("store");
        let page = PageCost {
            time: Duration::ZERO,
            names: 1000,
        };
        let none = moved_on(&store, BUCKET, Vec::new(), 0, page).await;
        assert!(none.expect("nothing to settle").is_empty());
    }

    /// Copies queued by concurrent events are settled in shared rounds, the
    /// first by single reads and the next by a listing (of several pages
    /// here), and each event gets the answer for its own copy, even two
    /// events copying two generations of one name.
    #[tokio::test]
    async fn queued_copies_each_get_their_own_answer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalStore::open(dir.path())
            .await
            .expect("store")
            .with_list_page_size(7);
        let (mut copies, mut expected) = source(&store, 100).await;
        // A late event for the first generation of a replaced name, and
        // one for the generation that replaced it.
        let replaced = ObjectRef::new(BUCKET, "obj 001");
        let live = store.head(&replaced).await.expect("head").generation;
        copies.push(Copy {
            name: replaced.name.clone(),
            generation: live,
        });
        expected.sort_unstable();
        let queue = Arc::new(SettleQueue::new(Arc::new(store)));
        for burst in ["single reads", "a listing"] {
            let answers = futures::future::join_all(copies.iter().map(|copy| {
                let queue = &queue;
                async move { (copy, queue.holds(BUCKET, copy.clone()).await) }
            }))
            .await;
            let mut moved = Vec::new();
            for (copy, held) in answers {
                match held {
                    Ok(true) => {}
                    Ok(false) => moved.push(copy.name.clone()),
                    Err(error) => panic!("{burst}: {}: {error}", copy.name),
                }
            }
            moved.sort_unstable();
            assert_eq!(moved, expected, "settled by {burst}");
        }
        let measured = lock(&queue.buckets)[BUCKET].measured;
        assert!(
            measured.wave.is_some() && measured.page.is_some(),
            "{measured:?}"
        );
    }

    /// A round that cannot read the source answers every copy in it with
    /// the reason, and the bucket's next copy starts a new round.
    #[tokio::test]
    async fn a_source_that_cannot_be_read_is_the_answer_and_rounds_go_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalStore::open(dir.path()).await.expect("store");
        let queue = Arc::new(SettleQueue::new(Arc::new(store)));
        let copy = Copy {
            name: "step_1/shard-0".to_string(),
            generation: 1,
        };
        for attempt in 0..2 {
            let answer = tokio::time::timeout(
                Duration::from_secs(10),
                queue.holds("no-such-bucket", copy.clone()),
            )
            .await
            .unwrap_or_else(|_| panic!("attempt {attempt}: no answer"));
            let error = answer.expect_err("the bucket does not exist");
            assert!(error.contains("no-such-bucket"), "{error}");
        }
    }

    /// The way a round takes: single reads until a wave was measured, then
    /// one listing to measure a page, then the one measured cheaper.
    #[test]
    fn a_round_measures_each_way_before_it_compares_them() {
        let ms = Duration::from_millis;
        let mut measured = Measured::default();
        assert_eq!(measured.way(50), Way::SingleReads);
        measured.wave = Some(ms(20));
        assert_eq!(measured.way(1), Way::SingleReads);
        assert_eq!(measured.way(50), Way::Listing);
        // Dense copies: one page of 1,000 names covers 50 copies.
        measured.page = Some(PageCost {
            time: ms(30),
            names: 1000,
        });
        measured.names_per_copy = 1.0;
        assert_eq!(measured.way(50), Way::Listing);
        // Sparse copies: their range holds 400 names per copy.
        measured.names_per_copy = 400.0;
        assert_eq!(measured.way(50), Way::SingleReads);
    }

    /// The estimate picks whichever way would take less time for the rest.
    #[test]
    fn the_estimate_picks_the_way_that_costs_less_time() {
        let ms = Duration::from_millis;
        let estimate = |page, span, wave, waves_left| Estimate {
            page: PageCost {
                time: ms(page),
                names: 1000,
            },
            span,
            wave: ms(wave),
            waves_left,
        };
        // Cloud Storage: a page costs a few reads, the copies are dense.
        assert_eq!(estimate(80, 4000, 25, 120).cheaper(), Way::Listing);
        // A server that reads the whole bucket for every page.
        assert_eq!(estimate(420, 4000, 3, 120).cheaper(), Way::SingleReads);
        // Few copies among many names.
        assert_eq!(estimate(80, 1_000_000, 25, 2).cheaper(), Way::SingleReads);
    }
}
