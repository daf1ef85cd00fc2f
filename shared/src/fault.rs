//! Drill faults in the front door: a `region-outage` drill fails a region
//! for one workload by writing a fault record here, and the gateway and the
//! region's health endpoint obey it, so the real uptime check, alert,
//! incident, failover and failback run as in an outage while nothing behind
//! the front door (the Vertex AI endpoints, the buckets) is touched.
//!
//! A fault expires by itself ([`Fault::expires_at`], at most
//! [`LONGEST_FAULT_TTL`] ahead): the drill that owns it renews it every so
//! often ([`renew`], by [`FAULT_TTL`]), so a drill service that dies leaves
//! the region failed for at most [`FAULT_TTL`]. An expired record is ignored
//! by every reader; it is deleted by its own run's [`remove`] (a restarted
//! drill service finishing its cleanup) or replaced by the next [`inject`]
//! on the same workload and region. [`active`] never deletes, since every
//! gateway calls it on its refresh.
//!
//! Front doors read the records through a [`FaultWatch`] refreshed in the
//! background, never per request, and apply a fault with [`intercept`].
//!
//! Size bound: one record per workload and region, each a few hundred
//! bytes (two ids, a run id, two times).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::server::Shutdown;
use crate::state::{self, Precondition, StateError, StateStore};

/// The state collection of drill faults, one document per workload and
/// region (id `{workload}--{region}`, [`record_id`]).
pub const COLLECTION: &str = "drill-faults";

/// How far ahead a drill sets a fault's expiry when it injects or renews
/// it: a drill service that dies leaves a region failed for at most this.
pub const FAULT_TTL: Duration = Duration::from_secs(2 * 60);

/// The furthest ahead a fault may expire: [`inject`] and [`renew`] refuse
/// a later expiry, so no record can fail a region for long.
pub const LONGEST_FAULT_TTL: Duration = Duration::from_secs(10 * 60);

/// How long a front door failed with [`FaultKind::Slow`] waits before
/// answering: longer than any probe or gateway attempt waits.
pub const SLOW_DELAY: Duration = Duration::from_secs(5);

/// How many compare-and-set races a write may lose before it gives up.
const ATTEMPTS: usize = 5;

/// How a failed front door misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Drops the connection without an answer, like a stopped server.
    Stop,
    /// Answers 503.
    Error,
    /// Answers, but only after [`SLOW_DELAY`].
    Slow,
}

/// One drill fault: `workload` fails in `region` in the way `kind` says
/// until `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// The workload whose front door fails.
    pub workload: String,
    /// The region it fails in.
    pub region: String,
    /// How it fails.
    pub kind: FaultKind,
    /// The drill run that owns the fault: only it renews or removes it.
    pub run: String,
    /// When the fault went in.
    pub injected_at: DateTime<Utc>,
    /// When it stops applying, renewed or not.
    pub expires_at: DateTime<Utc>,
}

impl Fault {
    /// Whether the fault applies at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }
}

/// What can go wrong with a fault record. Every variant names the workload
/// and region (or the record, whose id holds both).
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// The state store failed, or lost too many compare-and-set races.
    #[error("drill fault {id}: {source}")]
    State {
        /// The document id ([`record_id`]: workload and region).
        id: String,
        /// The failure.
        #[source]
        source: StateError,
    },
    /// Another run's fault is in place and has not expired.
    #[error("drill fault of {workload} in {region}: held by drill run {run} until {expires_at}")]
    Held {
        /// The workload.
        workload: String,
        /// The region.
        region: String,
        /// The run holding it.
        run: String,
        /// When its fault expires.
        expires_at: DateTime<Utc>,
    },
    /// The expiry asked for is past, or further ahead than
    /// [`LONGEST_FAULT_TTL`].
    #[error(
        "drill fault of {workload} in {region}: expiry {expires_at} is not within the next {}s",
        LONGEST_FAULT_TTL.as_secs()
    )]
    Expiry {
        /// The workload.
        workload: String,
        /// The region.
        region: String,
        /// The expiry refused.
        expires_at: DateTime<Utc>,
    },
    /// A stored record cannot be read as a [`Fault`].
    #[error("drill fault {id} is unreadable: {detail}")]
    Unreadable {
        /// The document id.
        id: String,
        /// What is wrong.
        detail: String,
    },
}

/// The document id of the fault of `workload` in `region`.
pub fn record_id(workload: &str, region: &str) -> String {
    format!("{workload}--{region}")
}

/// Checks that `expires_at` is ahead of `now` by at most
/// [`LONGEST_FAULT_TTL`].
fn check_expiry(
    workload: &str,
    region: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), FaultError> {
    if expires_at <= now || expires_at > state::after(now, LONGEST_FAULT_TTL) {
        return Err(FaultError::Expiry {
            workload: workload.to_string(),
            region: region.to_string(),
            expires_at,
        });
    }
    Ok(())
}

/// The stored fault of `workload` in `region`, with its version.
async fn read(
    store: &dyn StateStore,
    workload: &str,
    region: &str,
) -> Result<Option<(Fault, state::Version)>, FaultError> {
    let id = record_id(workload, region);
    let Some(document) = store
        .get(COLLECTION, &id)
        .await
        .map_err(|source| state_error(workload, region, source))?
    else {
        return Ok(None);
    };
    let fault = serde_json::from_value(document.value).map_err(|error| FaultError::Unreadable {
        id,
        detail: error.to_string(),
    })?;
    Ok(Some((fault, document.version)))
}

fn state_error(workload: &str, region: &str, source: StateError) -> FaultError {
    FaultError::State {
        id: record_id(workload, region),
        source,
    }
}

fn lost_races(workload: &str, region: &str) -> FaultError {
    state_error(
        workload,
        region,
        StateError::Conflict {
            collection: COLLECTION.to_string(),
            id: record_id(workload, region),
            detail: format!("lost {ATTEMPTS} compare-and-set races in a row"),
        },
    )
}

/// Puts `fault` in place: creates its record, or replaces one that has
/// expired or that belongs to the same run (compare-and-set). Refuses with
/// [`FaultError::Held`] while another run's fault is active there, and
/// with [`FaultError::Expiry`] an expiry that is past or further ahead
/// than [`LONGEST_FAULT_TTL`].
pub async fn inject(store: &dyn StateStore, fault: &Fault) -> Result<(), FaultError> {
    let (workload, region) = (fault.workload.as_str(), fault.region.as_str());
    let now = Utc::now();
    check_expiry(workload, region, fault.expires_at, now)?;
    let value = serde_json::to_value(fault).map_err(|error| FaultError::Unreadable {
        id: record_id(workload, region),
        detail: error.to_string(),
    })?;
    for _ in 0..ATTEMPTS {
        let precondition = match read(store, workload, region).await? {
            None => Precondition::MustNotExist,
            Some((held, _)) if held.run != fault.run && held.is_active(Utc::now()) => {
                return Err(FaultError::Held {
                    workload: workload.to_string(),
                    region: region.to_string(),
                    run: held.run,
                    expires_at: held.expires_at,
                });
            }
            Some((_, version)) => Precondition::Version(version),
        };
        match store
            .put(
                COLLECTION,
                &record_id(workload, region),
                &value,
                precondition,
            )
            .await
        {
            Ok(_) => {
                tracing::info!(workload, region, run = %fault.run, kind = ?fault.kind, expires_at = %fault.expires_at, "drill fault injected");
                return Ok(());
            }
            Err(StateError::Conflict { .. }) => continue,
            Err(source) => return Err(state_error(workload, region, source)),
        }
    }
    Err(lost_races(workload, region))
}

/// Moves the expiry of `run`'s fault of `workload` in `region` to
/// `expires_at` (compare-and-set). False when the record is gone, has
/// already expired (the region has been serving since: the fault is not
/// brought back) or belongs to another run.
pub async fn renew(
    store: &dyn StateStore,
    workload: &str,
    region: &str,
    run: &str,
    expires_at: DateTime<Utc>,
) -> Result<bool, FaultError> {
    check_expiry(workload, region, expires_at, Utc::now())?;
    for _ in 0..ATTEMPTS {
        let Some((mut fault, version)) = read(store, workload, region).await? else {
            return Ok(false);
        };
        if fault.run != run || !fault.is_active(Utc::now()) {
            return Ok(false);
        }
        fault.expires_at = expires_at;
        let value = serde_json::to_value(&fault).map_err(|error| FaultError::Unreadable {
            id: record_id(workload, region),
            detail: error.to_string(),
        })?;
        match store
            .put(
                COLLECTION,
                &record_id(workload, region),
                &value,
                Precondition::Version(version),
            )
            .await
        {
            Ok(_) => return Ok(true),
            Err(StateError::Conflict { .. }) => continue,
            Err(source) => return Err(state_error(workload, region, source)),
        }
    }
    Err(lost_races(workload, region))
}

/// Deletes `run`'s fault of `workload` in `region`, expired or not
/// (compare-and-set, so another run's fault written meanwhile stays).
/// True when it removed one; false when there was none or it is another
/// run's.
pub async fn remove(
    store: &dyn StateStore,
    workload: &str,
    region: &str,
    run: &str,
) -> Result<bool, FaultError> {
    for _ in 0..ATTEMPTS {
        let Some((fault, version)) = read(store, workload, region).await? else {
            return Ok(false);
        };
        if fault.run != run {
            return Ok(false);
        }
        match store
            .delete(
                COLLECTION,
                &record_id(workload, region),
                Precondition::Version(version),
            )
            .await
        {
            Ok(()) => {
                tracing::info!(workload, region, run, "drill fault removed");
                return Ok(true);
            }
            Err(StateError::Conflict { .. }) => continue,
            Err(source) => return Err(state_error(workload, region, source)),
        }
    }
    Err(lost_races(workload, region))
}

/// Every fault active at `now`, by workload then region. Expired records
/// are left alone (see the module's doc); an unreadable one is skipped with
/// a warning, so it cannot hide the others.
pub async fn active(store: &dyn StateStore, now: DateTime<Utc>) -> Result<Vec<Fault>, FaultError> {
    let documents = store
        .list(COLLECTION)
        .await
        .map_err(|source| FaultError::State {
            id: "*".to_string(),
            source,
        })?;
    let mut faults: Vec<Fault> = documents
        .into_iter()
        .filter_map(
            |document| match serde_json::from_value::<Fault>(document.value) {
                Ok(fault) => Some(fault),
                Err(error) => {
                    tracing::warn!(id = %document.id, %error, "unreadable drill fault ignored");
                    None
                }
            },
        )
        .filter(|fault| fault.is_active(now))
        .collect();
    faults.sort_by(|a, b| (&a.workload, &a.region).cmp(&(&b.workload, &b.region)));
    Ok(faults)
}

/// The faults as last read, for a front door that must not read the state
/// store per request. Cheap to clone: clones share what was read.
#[derive(Clone, Debug, Default)]
pub struct FaultWatch {
    faults: Arc<RwLock<BTreeMap<(String, String), Fault>>>,
}

impl FaultWatch {
    /// A watch that has read nothing yet (no fault applies).
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the active faults once, replacing those read before; returns
    /// how many are active.
    pub async fn refresh(&self, store: &dyn StateStore) -> Result<usize, FaultError> {
        let faults = active(store, Utc::now()).await?;
        let count = faults.len();
        let faults = faults
            .into_iter()
            .map(|fault| ((fault.workload.clone(), fault.region.clone()), fault))
            .collect();
        *self.faults.write().unwrap_or_else(|e| e.into_inner()) = faults;
        Ok(count)
    }

    /// The fault of `workload` in `region` as last read, if it is still
    /// active at `now` (an expiry is honoured without a refresh).
    pub fn fault(&self, workload: &str, region: &str, now: DateTime<Utc>) -> Option<Fault> {
        let faults = self.faults.read().unwrap_or_else(|e| e.into_inner());
        faults
            .get(&(workload.to_string(), region.to_string()))
            .filter(|fault| fault.is_active(now))
            .cloned()
    }

    /// How `workload` fails in `region` at `now`, if it does.
    pub fn current(&self, workload: &str, region: &str, now: DateTime<Utc>) -> Option<FaultKind> {
        self.fault(workload, region, now).map(|fault| fault.kind)
    }

    /// Refreshes every `every` until `shutdown`; a failed read keeps the
    /// faults as they were (their expiries still apply).
    pub async fn keep_refreshed(
        self,
        store: Arc<dyn StateStore>,
        every: Duration,
        shutdown: Shutdown,
    ) {
        loop {
            if let Err(error) = self.refresh(store.as_ref()).await {
                tracing::warn!(%error, "drill faults not refreshed; keeping the last ones");
            }
            tokio::select! {
                () = shutdown.triggered() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// Applies a fault of `kind` to one request of a front door: the response
/// to give instead of the real one (a dropped connection, or a 503 whose
/// body is `cause`), or `None` once the request may proceed (at once, or,
/// slow, after [`SLOW_DELAY`]).
pub async fn intercept(kind: FaultKind, cause: &str) -> Option<Response> {
    match kind {
        FaultKind::Stop => {
            // A body that fails before its first byte makes the server drop
            // the connection without an answer.
            let cause = cause.to_string();
            let broken =
                futures::stream::once(async move { Err::<Bytes, _>(std::io::Error::other(cause)) });
            Some(Body::from_stream(broken).into_response())
        }
        FaultKind::Error => {
            Some((StatusCode::SERVICE_UNAVAILABLE, cause.to_string()).into_response())
        }
        FaultKind::Slow => {
            tokio::time::sleep(SLOW_DELAY).await;
            None
        }
    }
}
