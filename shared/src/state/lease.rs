//! Leases with expiry, built only on [`StateStore`] compare-and-set, so they
//! work on every backend: one failover at a time per workload, one drill at a
//! time per deployment.
//!
//! A lease is one document in [`COLLECTION`] named after the lease. Taking it,
//! taking over an expired one, renewing and releasing are each a single
//! compare-and-set against the version last read, so of two racing holders
//! exactly one wins. Expiry is judged by the caller's clock: holders should
//! renew well before `expires_at` and stop acting once a renewal fails.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Precondition, StateError, StateStore, Version, after};

/// The collection every lease document lives in.
pub const COLLECTION: &str = "leases";

/// How many times [`acquire`] re-reads after losing a race before it gives
/// the lease up as taken.
const ACQUIRE_ATTEMPTS: usize = 3;

/// A lease as held: whose it is, until when, and the version that proves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The lease's name (its document id).
    pub name: String,
    /// Who holds it.
    pub holder: String,
    /// When it lapses unless renewed.
    pub expires_at: DateTime<Utc>,
    /// The version of the lease document this holder wrote.
    pub version: Version,
}

/// What can go wrong with a lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The caller no longer holds the lease: it was taken over, released or
    /// renewed by someone else since.
    #[error("lease {name}: not held by {holder}")]
    NotHeld {
        /// The lease's name.
        name: String,
        /// Who thought they held it.
        holder: String,
    },
    /// The lease document is not one this module wrote.
    #[error("lease {name}: unreadable lease document: {reason}")]
    Corrupt {
        /// The lease's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
}

impl LeaseError {
    /// True when retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, LeaseError::State(e) if e.is_transient())
    }
}

/// The lease document as stored.
#[derive(Debug, Serialize, Deserialize)]
struct LeaseRecord {
    holder: String,
    expires_at: DateTime<Utc>,
}

/// Reads the lease document, if any.
async fn read(store: &dyn StateStore, name: &str) -> Result<Option<Lease>, LeaseError> {
    let Some(doc) = store.get(COLLECTION, name).await? else {
        return Ok(None);
    };
    let record: LeaseRecord =
        serde_json::from_value(doc.value).map_err(|e| LeaseError::Corrupt {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
    Ok(Some(Lease {
        name: name.to_string(),
        holder: record.holder,
        expires_at: record.expires_at,
        version: doc.version,
    }))
}

/// Writes the lease for `holder` until `expires_at` if `precondition` holds.
async fn write(
    store: &dyn StateStore,
    name: &str,
    holder: &str,
    expires_at: DateTime<Utc>,
    precondition: Precondition,
) -> Result<Lease, StateError> {
    let record = LeaseRecord {
        holder: holder.to_string(),
        expires_at,
    };
    let value = serde_json::to_value(&record).map_err(|e| StateError::InvalidValue {
        collection: COLLECTION.to_string(),
        id: name.to_string(),
        reason: e.to_string(),
    })?;
    let version = store.put(COLLECTION, name, &value, precondition).await?;
    Ok(Lease {
        name: name.to_string(),
        holder: holder.to_string(),
        expires_at,
        version,
    })
}

/// Takes the lease `name` for `holder` for `ttl`. Returns `None` when another
/// holder's unexpired lease exists (or another holder won a race for it);
/// an expired lease is taken over, and `holder`'s own unexpired lease is
/// extended.
pub async fn acquire(
    store: &dyn StateStore,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<Option<Lease>, LeaseError> {
    // A free lease is usually absent (released by deletion): creating it is
    // one write. Only when it exists is it read and judged.
    let now = Utc::now();
    match write(
        store,
        name,
        holder,
        after(now, ttl),
        Precondition::MustNotExist,
    )
    .await
    {
        Ok(lease) => return Ok(Some(lease)),
        Err(StateError::Conflict { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    for _ in 0..ACQUIRE_ATTEMPTS {
        let now = Utc::now();
        let precondition = match read(store, name).await? {
            None => Precondition::MustNotExist,
            Some(current) if current.holder != holder && current.expires_at > now => {
                return Ok(None);
            }
            Some(current) => Precondition::Version(current.version),
        };
        match write(store, name, holder, after(now, ttl), precondition).await {
            Ok(lease) => return Ok(Some(lease)),
            // Someone wrote between our read and our write: look again.
            Err(StateError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// Extends a held lease to `ttl` from now. Fails with
/// [`LeaseError::NotHeld`] if anyone wrote the lease since `lease` was
/// obtained (it was taken over after expiring, or released).
pub async fn renew(
    store: &dyn StateStore,
    lease: &Lease,
    ttl: Duration,
) -> Result<Lease, LeaseError> {
    let precondition = Precondition::Version(lease.version.clone());
    match write(
        store,
        &lease.name,
        &lease.holder,
        after(Utc::now(), ttl),
        precondition,
    )
    .await
    {
        Ok(renewed) => Ok(renewed),
        Err(StateError::Conflict { .. }) => Err(not_held(lease)),
        Err(e) => Err(e.into()),
    }
}

/// Runs `work` while holding `lease`, renewing it for `ttl` every third of
/// `ttl`, and returns the work's output with the lease as last renewed (to
/// [`release`]). A holder that loses its lease — a renewal finds it taken
/// over, or the store failed until it lapsed — stops acting: `work` is
/// dropped where it stands and the error says why.
pub async fn hold<T>(
    store: &dyn StateStore,
    lease: Lease,
    ttl: Duration,
    work: impl Future<Output = T>,
) -> Result<(T, Lease), LeaseError> {
    let mut current = lease;
    let renewing = async {
        loop {
            tokio::time::sleep(ttl / 3).await;
            match renew(store, &current, ttl).await {
                Ok(renewed) => current = renewed,
                Err(error) if error.is_transient() && Utc::now() < current.expires_at => {
                    tracing::warn!(%error, lease = %current.name, "lease not renewed; trying again");
                }
                Err(error) => return error,
            }
        }
    };
    let output = tokio::select! {
        output = work => output,
        lost = renewing => return Err(lost),
    };
    Ok((output, current))
}

/// Gives a held lease back so the next holder need not wait for it to
/// expire. Only the holder can: fails with [`LeaseError::NotHeld`] if the
/// stored lease names another holder. The stored lease may be newer than
/// `lease` and still the holder's own: [`hold`] stops renewing when the
/// work ends, and a renewal already sent may land after its answer is
/// dropped.
pub async fn release(store: &dyn StateStore, lease: &Lease) -> Result<(), LeaseError> {
    let current = match read(store, &lease.name).await? {
        Some(current) if current.holder == lease.holder => current,
        _ => return Err(not_held(lease)),
    };
    let precondition = Precondition::Version(current.version.clone());
    match store.delete(COLLECTION, &lease.name, precondition).await {
        Ok(()) => Ok(()),
        Err(StateError::Conflict { .. }) => Err(not_held(lease)),
        Err(e) => Err(e.into()),
    }
}

/// Reads the current holder of the lease `name`, expired or not.
pub async fn current(store: &dyn StateStore, name: &str) -> Result<Option<Lease>, LeaseError> {
    read(store, name).await
}

fn not_held(lease: &Lease) -> LeaseError {
    LeaseError::NotHeld {
        name: lease.name.clone(),
        holder: lease.holder.clone(),
    }
}
