//! Settling copies: a copy of a source generation counts only once the
//! source is seen still holding that generation *after* the copy. A writer
//! that replaced the object while the copy ran may have had its own, newer
//! copy overwritten by ours; reading the source afterwards is what catches
//! it (and [`crate::bucket_sync::converge`] then copies the newer one).
//!
//! A reconcile settles a whole batch of copies at once: with one listing of
//! the name range the batch covers when the copies are dense in it, or one
//! metadata read per copy when they are sparse.

use futures::StreamExt;
use lifeboat_shared::storage::replica::holds_generation;
use lifeboat_shared::storage::{ObjectRef, ObjectStore, StorageError};

/// A listing reads the batch's name range when it holds at most this many
/// names per copy to settle: a page of 1,000 names costs about what ten
/// metadata reads cost.
const NAMES_PER_READ: u64 = 100;

/// How many metadata reads run at once.
const READS_IN_FLIGHT: usize = 32;

/// One copy to settle: the object's name and the source generation copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copy {
    /// The object's name.
    pub name: String,
    /// The source generation that was copied.
    pub generation: i64,
}

/// The names among `copies` whose source in `bucket` no longer holds the
/// copied generation (replaced or deleted). `span` is how many source names
/// the copies were found among, which decides how they are read.
pub async fn moved_on(
    store: &dyn ObjectStore,
    bucket: &str,
    mut copies: Vec<Copy>,
    span: u64,
) -> Result<Vec<String>, StorageError> {
    copies.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let (Some(first), Some(last)) = (copies.first(), copies.last()) else {
        return Ok(Vec::new());
    };
    if span > NAMES_PER_READ.saturating_mul(copies.len() as u64) {
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
        for span in [4, 1_000_000] {
            let mut moved = moved_on(&store, "settle-src", copies.clone(), span)
                .await
                .expect("settle");
            moved.sort_unstable();
            assert_eq!(moved, ["a/replaced", "b deleted"], "span {span}");
        }
        let none = moved_on(&store, "settle-src", Vec::new(), 0).await;
        assert!(none.expect("nothing to settle").is_empty());
    }
}
