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

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The version of a stored document: opaque, changes on every write
/// (Firestore's `updateTime`, a counter locally).
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
}
