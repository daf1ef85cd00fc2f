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
        return read_each(store, bucket, copies).await;
    }
    copies.sort_unstable_by(|a, b| a.name.cmp(&b.name));
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
        Way::Listing => list_range(store, bucket, copies).await?,
        Way::SingleReads => read_each(store, bucket, copies).await?,
    });
    Ok(moved)
}

/// [`moved_on`] by paging through the listing of the name range from the
/// first to the last of `copies`, which are sorted by name.
async fn list_range(
    store: &dyn ObjectStore,
    bucket: &str,
    copies: Vec<Copy>,
) -> Result<Vec<String>, StorageError> {
    let (Some(first), Some(last)) = (copies.first(), copies.last()) else {
        return Ok(Vec::new());
    };
    let (first, last) = (first.name.clone(), last.name.clone());
    let mut moved = Vec::new();
    let mut pending = copies.into_iter().peekable();
    let mut token: Option<String> = None;
    loop {
        let page = store
            .list_range(bucket, &first, &last, token.as_deref())
            .await?;
        for live in page.objects {
            // Copies listed before this name are gone from the source.
            while let Some(copy) = pending.next_if(|copy| copy.name < live.object.name) {
                moved.push(copy.name);
            }
            if let Some(copy) = pending.next_if(|copy| copy.name == live.object.name)
                && copy.generation != live.generation
            {
                moved.push(copy.name);
            }
        }
        token = page.next_page_token;
        if token.is_none() {
            break;
        }
    }
    // Copies the listing never showed are gone from the source.
    moved.extend(pending.map(|copy| copy.name));
    Ok(moved)
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
