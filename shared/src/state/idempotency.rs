//! Idempotency records: how an at-least-once handler does its work once per
//! event id, built only on [`StateStore`] compare-and-set.
//!
//! [`begin`] claims an event for a while (the processing TTL); the handler
//! does the work and calls [`complete`], which keeps the record as done for
//! the retention TTL so later duplicates are answered without work. If the
//! worker crashes between the two, the claim lapses at its processing
//! deadline and the next delivery claims it again. Records past their
//! deadline or retention count as absent; [`purge_expired`] deletes them.
//!
//! [`once`] puts these together the way handlers use them: the claim is held
//! like a lease — short ([`ClaimOptions::ttl`], a minute by default) and
//! renewed while the work runs — then completed on success or abandoned on
//! failure. A worker that dies mid-work stops renewing, so a redelivery
//! takes the event over within one TTL instead of waiting out a deadline
//! sized for the longest work.
//!
//! Event ids may hold any characters, so the document id is `e` followed by
//! the URL-safe, unpadded base64 of the key's UTF-8 bytes: no `/`, never
//! `.`, `..` or `__…__`, and distinct keys never share a document. Keys
//! longer than about 1100 bytes exceed Firestore's id limit and are rejected
//! as [`StateError::InvalidId`]. Callers that share one store between
//! functions should prefix keys with the function's name.

use std::future::Future;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Precondition, StateError, StateStore, Version, after};

/// The collection every idempotency record lives in.
pub const COLLECTION: &str = "idempotency";

/// How many times [`begin`] re-reads after losing a race.
const BEGIN_ATTEMPTS: usize = 3;

/// How [`once`] claims an event: the claim lapses [`ClaimOptions::ttl`]
/// after its last renewal, is renewed every [`ClaimOptions::renew_every`]
/// while the work runs, and a finished event is remembered for
/// [`ClaimOptions::retention`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimOptions {
    /// How long a claim lasts unless renewed: how long a redelivery waits
    /// after its worker died.
    pub ttl: Duration,
    /// How often a held claim is renewed; well under `ttl`, so a renewal
    /// that fails once can be tried again before the claim lapses.
    pub renew_every: Duration,
    /// How long a finished event is remembered, to answer duplicates.
    pub retention: Duration,
}

impl Default for ClaimOptions {
    /// Claims of a minute renewed every 20 s (the failover lease's rhythm),
    /// finished events remembered for a week.
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(60),
            renew_every: Duration::from_secs(20),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// What became of one delivery run by [`once`].
#[derive(Debug)]
pub enum Once<T> {
    /// This delivery owned the event and the work ran to its end; the claim
    /// was completed if the work finished the event, abandoned otherwise.
    Ran(T),
    /// The event was finished before: nothing was done.
    Done,
    /// Another delivery holds the event now: answer so that this one is
    /// retried later, in case that worker dies.
    InProgress,
    /// The event could not be claimed, the claim was lost mid-work (the work
    /// was stopped where it stood), or finished work could not be recorded.
    /// Worth a retry: every piece of work is idempotent.
    Failed(IdempotencyError),
}

/// The outcome of [`begin`] for one delivery of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This delivery owns the event: do the work, then [`complete`].
    First(ClaimToken),
    /// Another delivery is working on it now: answer so that this one is
    /// retried later (429 or 5xx), in case that worker dies.
    InProgress,
    /// The work is already done: a duplicate, do nothing and answer 2xx.
    Done,
}

/// Proof of a claim, to pass to [`complete`] or [`abandon`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimToken {
    /// The event id claimed.
    pub key: String,
    /// Unique to this claim; a later claim of the same key gets another.
    pub claim_id: String,
    /// The version of the record this claim wrote.
    pub version: Version,
    /// How long the record is kept once done.
    pub retention_ttl: Duration,
}

/// What can go wrong with an idempotency record.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The claim lapsed and another delivery claimed the event since (the
    /// work may now be done twice, which handlers must tolerate).
    #[error("event {key}: claim {claim_id} was lost to another delivery")]
    ClaimLost {
        /// The event id.
        key: String,
        /// The lost claim.
        claim_id: String,
    },
    /// The record is not one this module wrote.
    #[error("event {key}: unreadable idempotency record: {reason}")]
    Corrupt {
        /// The event id.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
}

impl IdempotencyError {
    /// True when retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, IdempotencyError::State(e) if e.is_transient())
    }
}

/// Where an event is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Stage {
    Processing,
    Done,
}

/// The record as stored.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// The event id, for people reading the store.
    key: String,
    stage: Stage,
    claim_id: String,
    /// Processing: the claim's deadline. Done: the end of retention.
    expires_at: DateTime<Utc>,
}

/// The document id of the record for `key`.
pub fn document_id(key: &str) -> String {
    format!("e{}", URL_SAFE_NO_PAD.encode(key.as_bytes()))
}

/// Claims the event `key` for `processing_ttl`; see [`Claim`]. A record
/// whose processing deadline or retention has passed counts as absent and is
/// claimed again.
pub async fn begin(
    store: &dyn StateStore,
    key: &str,
    processing_ttl: Duration,
    retention_ttl: Duration,
) -> Result<Claim, IdempotencyError> {
    let id = document_id(key);
    for _ in 0..BEGIN_ATTEMPTS {
        let now = Utc::now();
        let precondition = match store.get(COLLECTION, &id).await? {
            None => Precondition::MustNotExist,
            Some(doc) => {
                let record = parse(key, doc.value)?;
                match record.stage {
                    _ if record.expires_at <= now => Precondition::Version(doc.version),
                    Stage::Processing => return Ok(Claim::InProgress),
                    Stage::Done => return Ok(Claim::Done),
                }
            }
        };
        let record = Record {
            key: key.to_string(),
            stage: Stage::Processing,
            claim_id: uuid::Uuid::new_v4().to_string(),
            expires_at: after(now, processing_ttl),
        };
        match store
            .put(COLLECTION, &id, &encode(key, &record)?, precondition)
            .await
        {
            Ok(version) => {
                return Ok(Claim::First(ClaimToken {
                    key: key.to_string(),
                    claim_id: record.claim_id,
                    version,
                    retention_ttl,
                }));
            }
            // Another delivery wrote between our read and our write.
            Err(StateError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    // Lost every race: someone else is working on it right now.
    Ok(Claim::InProgress)
}

/// Marks the claimed event done; duplicates get [`Claim::Done`] for the
/// retention TTL from now. Works whatever renewals of the claim happened
/// since `token` was obtained (a renewal cut short may have landed unseen);
/// fails with [`IdempotencyError::ClaimLost`] if the claim lapsed and
/// another delivery claimed the event since.
pub async fn complete(store: &dyn StateStore, token: &ClaimToken) -> Result<(), IdempotencyError> {
    let record = Record {
        key: token.key.clone(),
        stage: Stage::Done,
        claim_id: token.claim_id.clone(),
        expires_at: after(Utc::now(), token.retention_ttl),
    };
    let value = encode(&token.key, &record)?;
    let id = document_id(&token.key);
    let mut version = token.version.clone();
    loop {
        let precondition = Precondition::Version(version.clone());
        match store.put(COLLECTION, &id, &value, precondition).await {
            Ok(_) => return Ok(()),
            Err(StateError::Conflict { .. }) => {
                version = still_held(store, token, &version).await?
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Gives a claim up after the work failed, so the next delivery can claim
/// the event at once instead of waiting for the processing deadline. Like
/// [`complete`], works whatever renewals happened; fails with
/// [`IdempotencyError::ClaimLost`] if another delivery claimed it since.
pub async fn abandon(store: &dyn StateStore, token: &ClaimToken) -> Result<(), IdempotencyError> {
    let id = document_id(&token.key);
    let mut version = token.version.clone();
    loop {
        let precondition = Precondition::Version(version.clone());
        match store.delete(COLLECTION, &id, precondition).await {
            Ok(()) => return Ok(()),
            Err(StateError::Conflict { .. }) => {
                version = still_held(store, token, &version).await?
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// After a write conditioned on `tried` conflicted: the record's version
/// now if it still holds `token`'s claim, processing, at another version
/// (the claim was renewed since); [`IdempotencyError::ClaimLost`] otherwise.
/// Claim ids are never reused, so a record holding ours is ours.
async fn still_held(
    store: &dyn StateStore,
    token: &ClaimToken,
    tried: &Version,
) -> Result<Version, IdempotencyError> {
    let Some(doc) = store.get(COLLECTION, &document_id(&token.key)).await? else {
        return Err(claim_lost(token));
    };
    let version = doc.version;
    let record = parse(&token.key, doc.value)?;
    if record.claim_id == token.claim_id && record.stage == Stage::Processing && version != *tried {
        Ok(version)
    } else {
        Err(claim_lost(token))
    }
}

/// Runs `work` for the event `key` at most once at a time and, once it
/// finished the event (as `finished` judges its output), not again: claims
/// the event, holds the claim while `work` runs (renewing it every
/// [`ClaimOptions::renew_every`] for [`ClaimOptions::ttl`]), then completes
/// the claim or, when `finished` says no, abandons it so a retry need not
/// wait.
///
/// A holder that loses its claim — a renewal finds another delivery took
/// the event over, or the store failed until the claim lapsed — stops:
/// `work` is dropped where it stands and [`Once::Failed`] says why, so it
/// never completes over another delivery's claim.
pub async fn once<T>(
    store: &dyn StateStore,
    key: &str,
    options: &ClaimOptions,
    work: impl Future<Output = T>,
    finished: impl FnOnce(&T) -> bool,
) -> Once<T> {
    let token = match begin(store, key, options.ttl, options.retention).await {
        Ok(Claim::First(token)) => token,
        Ok(Claim::Done) => return Once::Done,
        Ok(Claim::InProgress) => return Once::InProgress,
        Err(error) => return Once::Failed(error),
    };
    let (output, token) = match hold(store, token, options, work).await {
        Ok(held) => held,
        Err(error) => {
            tracing::error!(%error, key, "claim lost; work stopped");
            return Once::Failed(error);
        }
    };
    if finished(&output) {
        if let Err(error) = complete(store, &token).await {
            tracing::error!(%error, key, "work done but not recorded");
            return Once::Failed(error);
        }
    } else if let Err(error) = abandon(store, &token).await {
        tracing::warn!(%error, key, "could not give up the claim; it lapses on its own");
    }
    Once::Ran(output)
}

/// Runs `work` while renewing the claim `token`; returns its output and the
/// claim as last renewed (each renewal changes its version), or the reason
/// the claim was lost, with `work` dropped.
async fn hold<T>(
    store: &dyn StateStore,
    token: ClaimToken,
    options: &ClaimOptions,
    work: impl Future<Output = T>,
) -> Result<(T, ClaimToken), IdempotencyError> {
    let mut current = token;
    let renewing = async {
        // Judged by this process's monotonic clock from just after the claim
        // was written: never later than the deadline the record holds.
        let mut lapses_at = tokio::time::Instant::now() + options.ttl;
        loop {
            tokio::time::sleep(options.renew_every).await;
            let asked_at = tokio::time::Instant::now();
            match renew(store, &current, options.ttl).await {
                Ok(renewed) => {
                    current = renewed;
                    lapses_at = asked_at + options.ttl;
                }
                Err(error) if error.is_transient() && tokio::time::Instant::now() < lapses_at => {
                    tracing::warn!(%error, key = %current.key, "claim not renewed; trying again");
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

/// Extends a held claim to `ttl` from now. Fails with
/// [`IdempotencyError::ClaimLost`] if anyone wrote the record since `token`
/// was obtained.
async fn renew(
    store: &dyn StateStore,
    token: &ClaimToken,
    ttl: Duration,
) -> Result<ClaimToken, IdempotencyError> {
    let record = Record {
        key: token.key.clone(),
        stage: Stage::Processing,
        claim_id: token.claim_id.clone(),
        expires_at: after(Utc::now(), ttl),
    };
    let precondition = Precondition::Version(token.version.clone());
    let value = encode(&token.key, &record)?;
    match store
        .put(COLLECTION, &document_id(&token.key), &value, precondition)
        .await
    {
        Ok(version) => Ok(ClaimToken {
            version,
            ..token.clone()
        }),
        Err(StateError::Conflict { .. }) => Err(claim_lost(token)),
        Err(e) => Err(e.into()),
    }
}

/// Deletes every record whose processing deadline or retention has passed,
/// and returns how many it deleted. A record rewritten meanwhile is kept.
pub async fn purge_expired(store: &dyn StateStore) -> Result<usize, IdempotencyError> {
    let now = Utc::now();
    let mut purged = 0;
    for doc in store.list(COLLECTION).await? {
        let expired = serde_json::from_value::<Record>(doc.value)
            .map(|record| record.expires_at <= now)
            .map_err(|e| IdempotencyError::Corrupt {
                key: doc.id.clone(),
                reason: e.to_string(),
            })?;
        if !expired {
            continue;
        }
        match store
            .delete(COLLECTION, &doc.id, Precondition::Version(doc.version))
            .await
        {
            Ok(()) => purged += 1,
            Err(StateError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(purged)
}

fn parse(key: &str, value: serde_json::Value) -> Result<Record, IdempotencyError> {
    serde_json::from_value(value).map_err(|e| IdempotencyError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

fn encode(key: &str, record: &Record) -> Result<serde_json::Value, IdempotencyError> {
    serde_json::to_value(record).map_err(|e| IdempotencyError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

fn claim_lost(token: &ClaimToken) -> IdempotencyError {
    IdempotencyError::ClaimLost {
        key: token.key.clone(),
        claim_id: token.claim_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_ids_are_safe_and_distinct() {
        let keys = [
            "",
            "a/b",
            ".",
            "..",
            "__x__",
            "événement 🚀 %2F?#",
            "a",
            "b",
        ];
        let ids: Vec<String> = keys.iter().map(|k| document_id(k)).collect();
        for (key, id) in keys.iter().zip(&ids) {
            assert!(
                crate::state::check_id(COLLECTION, id).is_ok(),
                "{key:?} -> {id:?}"
            );
        }
        let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }
}
