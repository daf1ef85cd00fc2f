//! Settling copies: a copy of a source generation counts only once the
//! source is seen still holding that generation *after* the copy. A writer
//! that replaced the object while the copy ran may have had its own, newer
//! copy overwritten by ours; reading the source afterwards is what catches
//! it (and [`crate::bucket_sync::converge`] then copies the newer one).
//!
//! A reconcile settles a whole batch of copies at once, either by listing
//! the name range the batch covers or by one metadata read per copy. Which
//! is cheaper depends on the server: on Cloud Storage a page of 1,000 names
//! costs about what a few reads cost, while a server that scans the bucket
//! on every call (as some emulators do) makes each page far dearer. So the
//! batch measures both with reads that count anyway (one wave of single
//! reads settles the last copies, the first listing page the first ones)
//! and settles the rest the way that measured cheaper.

use std::time::{Duration, Instant};

use futures::StreamExt;
use lifeboat_shared::storage::replica::holds_generation;
use lifeboat_shared::storage::{ObjectRef, ObjectStore, StorageError};

/// How many metadata reads run at once: one wave of single reads.
const READS_IN_FLIGHT: usize = 32;

/// One copy to settle: the object's name and the source generation copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copy {
    /// The object's name.
    pub name: String,
    /// The source generation that was copied.
    pub generation: i64,
}

/// A way of reading the source to settle copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// Page through the listing of the copies' name range.
    Listing,
    /// Read each copy's source metadata, [`READS_IN_FLIGHT`] at a time.
    SingleReads,
}

/// What settling the rest of a batch would cost either way, from the time
/// the first listing page and the first wave of single reads took.
#[derive(Clone, Copy, Debug)]
struct Estimate {
    /// How long the first listing page took.
    page: Duration,
    /// How many more pages the name range holds, at the first page's size.
    pages_left: u64,
    /// How long the first wave of single reads took.
    wave: Duration,
    /// How many more waves the copies left need.
    waves_left: u64,
}

impl Estimate {
    /// The way that would take less time for the rest of the batch.
    fn cheaper(&self) -> Way {
        let listing = self.page.as_secs_f64() * self.pages_left as f64;
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
/// the copies were found among: it tells how many listing pages their name
/// range holds.
pub async fn moved_on(
    store: &dyn ObjectStore,
    bucket: &str,
    copies: Vec<Copy>,
    span: u64,
) -> Result<Vec<String>, StorageError> {
    settle(store, bucket, copies, span, Estimate::cheaper).await
}

/// [`moved_on`], with `choose` picking the way for what the first page and
/// wave leave.
async fn settle(
    store: &dyn ObjectStore,
    bucket: &str,
    mut copies: Vec<Copy>,
    span: u64,
    choose: fn(&Estimate) -> Way,
) -> Result<Vec<String>, StorageError> {
    if copies.len() <= READS_IN_FLIGHT {
        return read_each(store, bucket, copies).await;
    }
    copies.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let last_wave = copies.split_off(copies.len() - READS_IN_FLIGHT);
    let timer = Instant::now();
    let mut moved = read_each(store, bucket, last_wave).await?;
    let wave = timer.elapsed();

    let mut range = RangeListing::new(copies);
    let timer = Instant::now();
    range.next_page(store, bucket, &mut moved).await?;
    let page = timer.elapsed();
    if range.ended {
        return Ok(moved);
    }
    let estimate = Estimate {
        page,
        pages_left: span
            .saturating_sub(range.listed)
            .div_ceil(range.listed.max(1)),
        wave,
        waves_left: range.pending.len().div_ceil(READS_IN_FLIGHT) as u64,
    };
    let way = choose(&estimate);
    tracing::debug!(?way, ?estimate, "settling the rest of the batch");
    match way {
        Way::Listing => {
            while !range.ended {
                range.next_page(store, bucket, &mut moved).await?;
            }
        }
        Way::SingleReads => {
            let rest = range.pending.into_iter().collect();
            moved.extend(read_each(store, bucket, rest).await?);
        }
    }
    Ok(moved)
}

/// A listing of the name range from the first to the last of some copies,
/// read a page at a time, with the copies its pages have not reached yet.
struct RangeListing {
    first: String,
    last: String,
    /// The copies not settled yet, in name order.
    pending: std::collections::VecDeque<Copy>,
    token: Option<String>,
    /// Whether the last page has been read, settling every copy.
    ended: bool,
    /// How many names the pages so far held.
    listed: u64,
}

impl RangeListing {
    /// A listing of `copies`' range; they must be sorted by name.
    fn new(copies: Vec<Copy>) -> Self {
        let first = copies.first().map(|c| c.name.clone()).unwrap_or_default();
        let last = copies.last().map(|c| c.name.clone()).unwrap_or_default();
        RangeListing {
            first,
            last,
            ended: copies.is_empty(),
            pending: copies.into(),
            token: None,
            listed: 0,
        }
    }

    /// Reads the next page, settling the copies it reaches, and pushes the
    /// names of those whose source moved on to `moved`.
    async fn next_page(
        &mut self,
        store: &dyn ObjectStore,
        bucket: &str,
        moved: &mut Vec<String>,
    ) -> Result<(), StorageError> {
        let page = store
            .list_range(bucket, &self.first, &self.last, self.token.as_deref())
            .await?;
        self.listed += page.objects.len() as u64;
        for live in page.objects {
            // Copies before this name are gone from the source.
            while self
                .pending
                .front()
                .is_some_and(|copy| copy.name < live.object.name)
            {
                moved.extend(self.pending.pop_front().map(|copy| copy.name));
            }
            if self
                .pending
                .front()
                .is_some_and(|copy| copy.name == live.object.name)
                && let Some(copy) = self.pending.pop_front()
                && copy.generation != live.generation
            {
                moved.push(copy.name);
            }
        }
        self.token = page.next_page_token;
        if self.token.is_none() {
            // Copies the listing never showed are gone from the source.
            moved.extend(self.pending.drain(..).map(|copy| copy.name));
            self.ended = true;
        }
        Ok(())
    }
}

/// [`moved_on`] with one metadata read per copy.
async fn read_each(
    store: &dyn ObjectStore,
    bucket: &str,
    copies: Vec<Copy>,
) -> Result<Vec<String>, StorageError> {
    let reads = futures::stream::iter(copies).map(|copy| async move {
        let source = ObjectRef::new(bucket, copy.name.as_str());
        let held = holds_generation(store, &source, copy.generation).await?;
        Ok((!held).then_some(copy.name))
    });
    let mut moved = Vec::new();
    let mut reads = reads.buffer_unordered(READS_IN_FLIGHT);
    while let Some(read) = reads.next().await {
        moved.extend(read?);
    }
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
                let mut moved = settle(&store, BUCKET, copies, span, choose)
                    .await
                    .expect("settle");
                moved.sort_unstable();
                assert_eq!(moved, expected, "{count} copies, {way:?}");
            }
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalStore::open(dir.path()).await.expect("store");
        let none = moved_on(&store, BUCKET, Vec::new(), 0).await;
        assert!(none.expect("nothing to settle").is_empty());
    }

    /// The estimate picks whichever way would take less time for the rest.
    #[test]
    fn the_estimate_picks_the_way_that_costs_less_time() {
        let ms = Duration::from_millis;
        let estimate = |page, pages_left, wave, waves_left| Estimate {
            page: ms(page),
            pages_left,
            wave: ms(wave),
            waves_left,
        };
        // Cloud Storage: a page costs a few reads, the copies are dense.
        assert_eq!(estimate(80, 4, 25, 120).cheaper(), Way::Listing);
        // A server that scans the bucket on every page.
        assert_eq!(estimate(900, 4, 30, 120).cheaper(), Way::SingleReads);
        // Few copies among many names.
        assert_eq!(estimate(80, 1000, 25, 2).cheaper(), Way::SingleReads);
    }
}
