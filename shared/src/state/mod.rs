//! State: small JSON documents with compare-and-set, the one primitive that
//! leases ([`lease`]) and idempotency records ([`idempotency`]) are built on.
//! Implemented by Firestore ([`firestore`]) and by an embedded database
//! ([`local`]); [`conformance`] is the suite both must pass.

pub mod conformance;
pub mod firestore;
pub mod idempotency;
pub mod lease;
pub mod local;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The version of a stored document: opaque, changes on every write that
/// changes the document (Firestore's `updateTime`, a counter locally).
///
/// Firestore keeps the old `updateTime` when a write leaves the document
/// exactly as it was, so two compare-and-sets from the same version that
/// write the *same* value may both succeed; the stored value is then the same
/// either way, which is all compare-and-set promises.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Version(pub String);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A document as read: its JSON value and the version it was read at.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// The document's id within its collection.
    pub id: String,
    /// The stored value (always a JSON object).
    pub value: serde_json::Value,
    /// The version to pass back as [`Precondition::Version`] to update it
    /// only if nobody else did since.
    pub version: Version,
}

/// The condition under which a write or delete applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Always.
    None,
    /// Only if no document has this id yet.
    MustNotExist,
    /// Only if the document is still at this version.
    Version(Version),
}

/// What can go wrong with state. Every variant names the document.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The precondition of a write did not hold: someone else wrote first.
    #[error("{collection}/{id}: conflict: {detail}")]
    Conflict {
        /// The document's collection.
        collection: String,
        /// The document's id.
        id: String,
        /// What was expected.
        detail: String,
    },
    /// A collection or document id the store cannot hold.
    #[error("{collection}/{id}: invalid id: {reason}")]
    InvalidId {
        /// The document's collection.
        collection: String,
        /// The rejected id.
        id: String,
        /// Why it is rejected.
        reason: String,
    },
    /// The value is not a JSON object, or cannot be (de)serialized.
    #[error("{collection}/{id}: invalid value: {reason}")]
    InvalidValue {
        /// The document's collection.
        collection: String,
        /// The document's id.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The backend could not be reached or failed; worth a retry.
    #[error("{context}: {source}")]
    Backend {
        /// The operation and document.
        context: String,
        /// The underlying failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StateError {
    /// True when retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StateError::Backend { .. })
    }
}

/// The longest prefix of `text` of at most `limit` bytes that ends on a
/// character boundary: how a record keeps free text (an error, a payload)
/// within its stated size bound.
pub fn text_prefix(text: &str, limit: usize) -> &str {
    let mut end = text.len().min(limit);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The longest document or collection id, in bytes (Firestore's limit).
pub const MAX_ID_BYTES: usize = 1500;

/// Checks that `collection` and `id` can name a document in every backend:
/// each non-empty, at most [`MAX_ID_BYTES`], without `/`, not `.` or `..`,
/// and not of the reserved form `__…__`. Any other character (spaces, `%`,
/// `?`, `#`, unicode) is allowed; backends encode it where they need to.
///
/// Ids are rejected rather than escaped so that the id a caller reads back in
/// [`Document::id`] and sees in the Firestore console is the id it wrote.
pub fn check_id(collection: &str, id: &str) -> Result<(), StateError> {
    check_collection(collection)?;
    name_problem(id).map_or(Ok(()), |reason| {
        Err(StateError::InvalidId {
            collection: collection.to_string(),
            id: id.to_string(),
            reason: format!("document id {reason}"),
        })
    })
}

/// Checks a collection name by the rules of [`check_id`].
pub fn check_collection(collection: &str) -> Result<(), StateError> {
    name_problem(collection).map_or(Ok(()), |reason| {
        Err(StateError::InvalidId {
            collection: collection.to_string(),
            id: String::new(),
            reason: format!("collection {reason}"),
        })
    })
}

/// What makes `name` unusable as a collection or document id, if anything.
fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("is empty".to_string())
    } else if name.len() > MAX_ID_BYTES {
        Some(format!("is longer than {MAX_ID_BYTES} bytes"))
    } else if name.contains('/') {
        Some("contains '/'".to_string())
    } else if name == "." || name == ".." {
        Some("is '.' or '..'".to_string())
    } else if is_reserved(name) {
        Some("has the reserved form __name__".to_string())
    } else {
        None
    }
}

/// Checks that `value` is a JSON object every backend stores faithfully:
/// integers fit in 64 signed bits, no array directly holds another array,
/// and no object key is empty or of the reserved form `__…__` (all three are
/// Firestore's rules, enforced for every backend so they behave alike).
pub fn check_value(
    collection: &str,
    id: &str,
    value: &serde_json::Value,
) -> Result<(), StateError> {
    let invalid = |reason: String| StateError::InvalidValue {
        collection: collection.to_string(),
        id: id.to_string(),
        reason,
    };
    if !value.is_object() {
        return Err(invalid("a document must be a JSON object".to_string()));
    }
    check_nested(value, false).map_err(invalid)
}

/// The recursive part of [`check_value`]; `in_array`: `value` is an
/// element of an array.
fn check_nested(value: &serde_json::Value, in_array: bool) -> Result<(), String> {
    match value {
        serde_json::Value::Number(n) if !n.is_f64() && n.as_i64().is_none() => {
            Err(format!("integer {n} does not fit in 64 signed bits"))
        }
        serde_json::Value::Array(_) if in_array => {
            Err("an array cannot directly contain another array".to_string())
        }
        serde_json::Value::Array(items) => items.iter().try_for_each(|v| check_nested(v, true)),
        serde_json::Value::Object(fields) => fields.iter().try_for_each(|(key, v)| {
            if key.is_empty() {
                Err("an object key is empty".to_string())
            } else if is_reserved(key) {
                Err(format!("object key {key:?} has the reserved form __name__"))
            } else {
                check_nested(v, false)
            }
        }),
        _ => Ok(()),
    }
}

/// `now + ttl`, saturating instead of overflowing: the deadline of a lease
/// or an idempotency record.
pub(crate) fn after(
    now: chrono::DateTime<chrono::Utc>,
    ttl: std::time::Duration,
) -> chrono::DateTime<chrono::Utc> {
    chrono::TimeDelta::from_std(ttl)
        .ok()
        .and_then(|delta| now.checked_add_signed(delta))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

/// Firestore reserves ids and field names that start and end with `__`.
fn is_reserved(name: &str) -> bool {
    name.len() >= 4 && name.starts_with("__") && name.ends_with("__")
}

/// Document storage with compare-and-set, as the functions use it.
#[async_trait]
pub trait StateStore: Send + Sync + fmt::Debug {
    /// Reads one document; `None` if it does not exist.
    async fn get(&self, collection: &str, id: &str) -> Result<Option<Document>, StateError>;

    /// Writes a whole document if `precondition` holds, and returns its new
    /// version; [`StateError::Conflict`] otherwise.
    async fn put(
        &self,
        collection: &str,
        id: &str,
        value: &serde_json::Value,
        precondition: Precondition,
    ) -> Result<Version, StateError>;

    /// Deletes a document if `precondition` holds; deleting a missing document
    /// with [`Precondition::None`] succeeds.
    async fn delete(
        &self,
        collection: &str,
        id: &str,
        precondition: Precondition,
    ) -> Result<(), StateError>;

    /// Lists every document of a collection, in id order.
    async fn list(&self, collection: &str) -> Result<Vec<Document>, StateError>;

    /// Reads the documents `ids` of one collection, answered in the order of
    /// `ids` (`None` for each that does not exist): in one round trip where
    /// the store has a batch read (Firestore's `batchGet`), else every
    /// [`StateStore::get`] at once.
    async fn get_many(
        &self,
        collection: &str,
        ids: &[String],
    ) -> Result<Vec<Option<Document>>, StateError> {
        futures::future::try_join_all(ids.iter().map(|id| self.get(collection, id))).await
    }
}

/// How long [`answers`] waits for the store by default: well within the
/// seconds a health probe gives a service.
pub const READINESS_DEADLINE: Duration = Duration::from_secs(2);

/// Whether `store` answers a cheap read (one document that need not exist)
/// within `deadline`: what a service's `/readyz` asks of its state store.
pub async fn answers(store: &dyn StateStore, deadline: Duration) -> bool {
    match tokio::time::timeout(deadline, store.get("lifeboat-readiness", "probe")).await {
        Ok(Ok(_)) => true,
        Ok(Err(error)) => {
            tracing::warn!(%error, "state store unreachable; not ready");
            false
        }
        Err(_) => {
            tracing::warn!(?deadline, "state store did not answer in time; not ready");
            false
        }
    }
}

/// Reads the document `collection/id` as a `T` (`None` when absent), lets
/// `change` compute its next value, and writes that with compare-and-set;
/// when another writer came first, reads and computes again, up to
/// `attempts` times. Returns the value written. The read-merge-write of
/// records that only move forward.
pub async fn update<T, E, F>(
    store: &dyn StateStore,
    collection: &str,
    id: &str,
    attempts: usize,
    change: F,
) -> Result<T, E>
where
    T: Serialize + DeserializeOwned + Clone,
    E: From<StateError>,
    F: FnMut(Option<T>) -> Result<T, E>,
{
    Tracked::new(collection, id)
        .update(store, attempts, change)
        .await
}

/// A document its writer keeps updating: the value it last read or wrote
/// and the version that was, so that each [`Tracked::update`] costs one
/// write instead of a read and a write. When another writer came between,
/// the write's compare-and-set fails and the update reads and computes
/// again, as [`update`] does.
#[derive(Clone, Debug)]
pub struct Tracked<T> {
    /// The document's collection.
    collection: String,
    /// The document's id.
    id: String,
    /// The value as last read or written (`None`: absent) and the
    /// precondition of writing over it; `None` until read or written.
    known: Option<(Option<T>, Precondition)>,
}

impl<T> Tracked<T>
where
    T: Serialize + DeserializeOwned + Clone,
{
    /// The document `collection/id`, not read yet: the first update reads it.
    pub fn new(collection: &str, id: &str) -> Self {
        Self {
            collection: collection.to_string(),
            id: id.to_string(),
            known: None,
        }
    }

    /// Reads the document `collection/id` now.
    pub async fn read(
        store: &dyn StateStore,
        collection: &str,
        id: &str,
    ) -> Result<Self, StateError> {
        let mut tracked = Self::new(collection, id);
        tracked.known = Some(tracked.fetch(store).await?);
        Ok(tracked)
    }

    /// The value as last read or written; `None` when absent or not read yet.
    pub fn value(&self) -> Option<&T> {
        self.known.as_ref().and_then(|(value, _)| value.as_ref())
    }

    /// Lets `change` compute the next value from the one last read or
    /// written and writes it with compare-and-set; when another writer came
    /// first, reads and computes again, up to `attempts` times. Returns the
    /// value written.
    pub async fn update<E, F>(
        &mut self,
        store: &dyn StateStore,
        attempts: usize,
        mut change: F,
    ) -> Result<T, E>
    where
        E: From<StateError>,
        F: FnMut(Option<T>) -> Result<T, E>,
    {
        for _ in 0..attempts {
            let (current, precondition) = match self.known.take() {
                Some(known) => known,
                None => self.fetch(store).await?,
            };
            let next = change(current)?;
            let value = serde_json::to_value(&next).map_err(|e| self.invalid(e.to_string()))?;
            match store
                .put(&self.collection, &self.id, &value, precondition)
                .await
            {
                Ok(version) => {
                    self.known = Some((Some(next.clone()), Precondition::Version(version)));
                    return Ok(next);
                }
                Err(StateError::Conflict { .. }) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(StateError::Conflict {
            collection: self.collection.clone(),
            id: self.id.clone(),
            detail: format!("lost {attempts} compare-and-set races in a row"),
        }
        .into())
    }

    /// Reads the stored value and the precondition of writing over it.
    async fn fetch(&self, store: &dyn StateStore) -> Result<(Option<T>, Precondition), StateError> {
        Ok(match store.get(&self.collection, &self.id).await? {
            Some(document) => (
                Some(
                    serde_json::from_value(document.value)
                        .map_err(|e| self.invalid(e.to_string()))?,
                ),
                Precondition::Version(document.version),
            ),
            None => (None, Precondition::MustNotExist),
        })
    }

    fn invalid(&self, reason: String) -> StateError {
        StateError::InvalidValue {
            collection: self.collection.clone(),
            id: self.id.clone(),
            reason,
        }
    }
}
