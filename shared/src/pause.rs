//! Replication pauses: a `replication-isolation` drill stops replication of
//! one workload's assets into one region for a set time, so that the RPO
//! exposure grows there exactly as in a real replication outage.
//! checkpoint-fanout and data-sync read [`active`] before copying into a
//! region and skip the regions paused for the asset's workload; what they
//! skip counts as not replicated and is caught up once the pause ends.
//!
//! A pause expires by itself at [`Pause::until`] (the drill's `isolate-for`
//! after it began, never more than [`LONGEST_PAUSE`]), so a drill that dies
//! mid-run never leaves replication paused: past `until` the record is
//! ignored, whether or not anybody deletes it.
//!
//! # Cost on the hot path
//!
//! The functions call [`active`] once per event: one listing of a
//! collection that holds at most one small document per (workload, region)
//! and is empty outside drills, so one Firestore read (a few milliseconds
//! in the region) beside the two or more state round trips each event
//! already makes (idempotency claim, RPO record), and microseconds locally.
//! Reading per event rather than caching means a pause starts and ends when
//! the drill says, not up to a cache period later, which the drill's timing
//! of the exposure depends on.
//!
//! Size bound: one document per (workload, region), each of fixed fields
//! and the topology's ids and a run id, under 2 KiB; the collection holds
//! at most workloads × regions documents.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::state::{self, Precondition, StateError, StateStore};

/// The collection of pause records.
pub const COLLECTION: &str = "replication-pauses";

/// The longest a pause may last: the longest `max-duration` a drill may
/// have, since `isolate-for` is shorter than the drill's `max-duration`.
pub const LONGEST_PAUSE: Duration = crate::topology::LONGEST_MAX_DURATION.get();

/// How many times [`pause`] re-reads after losing a race.
const PAUSE_ATTEMPTS: usize = 5;

/// Replication of one workload's assets into one region, paused by one
/// drill run until a set time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// The workload whose assets are not copied.
    pub workload: String,
    /// The region they are not copied into.
    pub region: String,
    /// The drill run that paused it (only it resumes it).
    pub run: String,
    /// When the pause began.
    pub paused_at: DateTime<Utc>,
    /// When it ends by itself.
    pub until: DateTime<Utc>,
}

impl Pause {
    /// The document id of the pause of `workload` in `region`.
    pub fn document_id(workload: &str, region: &str) -> String {
        format!("{workload}@{region}")
    }

    /// Whether the pause holds at `now`.
    pub fn holds_at(&self, now: DateTime<Utc>) -> bool {
        self.paused_at <= now && now < self.until
    }
}

/// What can go wrong with a pause.
#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    /// Another run holds a pause of the same workload in the same region.
    #[error("replication of {workload} into {region} is already paused by run {run} until {until}")]
    HeldByAnother {
        /// The workload.
        workload: String,
        /// The region.
        region: String,
        /// The run holding the pause.
        run: String,
        /// When its pause ends.
        until: DateTime<Utc>,
    },
    /// The pause ends before it begins, or lasts longer than
    /// [`LONGEST_PAUSE`].
    #[error(
        "pause of {workload} in {region} from {paused_at} until {until}: a pause lasts more than nothing and at most {LONGEST_PAUSE:?}"
    )]
    OutOfBounds {
        /// The workload.
        workload: String,
        /// The region.
        region: String,
        /// When it would begin.
        paused_at: DateTime<Utc>,
        /// When it would end.
        until: DateTime<Utc>,
    },
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Pauses replication as `pause` says. Taking it again for the same run
/// replaces it (a retried start); a pause of another run that still holds
/// when this one begins is refused.
pub async fn pause(store: &dyn StateStore, pause: &Pause) -> Result<(), PauseError> {
    let length = (pause.until - pause.paused_at).to_std().ok();
    if length.is_none_or(|length| length.is_zero() || length > LONGEST_PAUSE) {
        return Err(PauseError::OutOfBounds {
            workload: pause.workload.clone(),
            region: pause.region.clone(),
            paused_at: pause.paused_at,
            until: pause.until,
        });
    }
    let id = Pause::document_id(&pause.workload, &pause.region);
    state::update(
        store,
        COLLECTION,
        &id,
        PAUSE_ATTEMPTS,
        |held: Option<Pause>| match held {
            Some(held) if held.run != pause.run && held.holds_at(pause.paused_at) => {
                Err(PauseError::HeldByAnother {
                    workload: held.workload,
                    region: held.region,
                    run: held.run,
                    until: held.until,
                })
            }
            _ => Ok(pause.clone()),
        },
    )
    .await
    .map(|_| ())
}

/// Ends the pause of `workload` in `region` if run `run` holds it (expired
/// or not); returns whether there was one to end. A pause of another run is
/// left alone.
pub async fn resume(
    store: &dyn StateStore,
    workload: &str,
    region: &str,
    run: &str,
) -> Result<bool, PauseError> {
    let id = Pause::document_id(workload, region);
    let Some(document) = store.get(COLLECTION, &id).await? else {
        return Ok(false);
    };
    let held: Option<Pause> = serde_json::from_value(document.value).ok();
    if held.is_none_or(|held| held.run != run) {
        return Ok(false);
    }
    match store
        .delete(COLLECTION, &id, Precondition::Version(document.version))
        .await
    {
        Ok(()) => Ok(true),
        // Rewritten since it was read: by whom, the next call tells.
        Err(StateError::Conflict { .. }) => Box::pin(resume(store, workload, region, run)).await,
        Err(error) => Err(error.into()),
    }
}

/// Every pause that holds at `now`. A record that cannot be read is
/// skipped with a warning: an unreadable record must never stop
/// replication.
pub async fn active(store: &dyn StateStore, now: DateTime<Utc>) -> Result<Vec<Pause>, PauseError> {
    let documents = store.list(COLLECTION).await?;
    Ok(documents
        .into_iter()
        .filter_map(|document| {
            match serde_json::from_value::<Pause>(document.value) {
                Ok(pause) => Some(pause),
                Err(error) => {
                    tracing::warn!(id = %document.id, %error, "unreadable replication pause ignored");
                    None
                }
            }
        })
        .filter(|pause| pause.holds_at(now))
        .collect())
}

/// The pause among `pauses` that covers `workload` in `region`, if any.
pub fn covering<'a>(pauses: &'a [Pause], workload: &str, region: &str) -> Option<&'a Pause> {
    pauses
        .iter()
        .find(|pause| pause.workload == workload && pause.region == region)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::local::LocalStateStore;
    use chrono::TimeDelta;

    fn pause_of(run: &str, from: DateTime<Utc>, seconds: i64) -> Pause {
        Pause {
            workload: "ranker".into(),
            region: "us-east1".into(),
            run: run.into(),
            paused_at: from,
            until: from + TimeDelta::seconds(seconds),
        }
    }

    #[tokio::test]
    async fn a_pause_holds_until_it_expires_or_its_run_resumes_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalStateStore::open(dir.path()).await.expect("state");
        let now = Utc::now();
        let mine = pause_of("drill--1", now, 60);
        pause(&store, &mine).await.expect("pause");
        pause(&store, &mine)
            .await
            .expect("a retried start is taken");
        let held = active(&store, now).await.expect("active");
        assert_eq!(held, vec![mine.clone()]);
        assert!(covering(&held, "ranker", "us-east1").is_some());
        assert!(covering(&held, "ranker", "us-central1").is_none());
        assert!(covering(&held, "other", "us-east1").is_none());

        let theirs = pause_of("drill--2", now, 60);
        assert!(matches!(
            pause(&store, &theirs).await,
            Err(PauseError::HeldByAnother { run, .. }) if run == "drill--1"
        ));
        assert!(
            !resume(&store, "ranker", "us-east1", "drill--2")
                .await
                .expect("resume")
        );
        assert_eq!(active(&store, now).await.expect("active").len(), 1);

        // Expired: ignored by everyone, and another run may pause.
        let later = now + TimeDelta::seconds(61);
        assert!(active(&store, later).await.expect("active").is_empty());
        pause(&store, &pause_of("drill--2", later, 30))
            .await
            .expect("an expired pause is taken over");
        assert!(
            resume(&store, "ranker", "us-east1", "drill--2")
                .await
                .expect("resume")
        );
        assert!(
            !resume(&store, "ranker", "us-east1", "drill--2")
                .await
                .expect("resume twice")
        );
        assert!(active(&store, later).await.expect("active").is_empty());
    }

    #[tokio::test]
    async fn a_pause_without_an_end_or_past_the_longest_drill_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalStateStore::open(dir.path()).await.expect("state");
        let now = Utc::now();
        let longest = i64::try_from(LONGEST_PAUSE.as_secs()).expect("seconds");
        for seconds in [0, -5, longest + 1] {
            assert!(matches!(
                pause(&store, &pause_of("drill--1", now, seconds)).await,
                Err(PauseError::OutOfBounds { .. })
            ));
        }
        pause(&store, &pause_of("drill--1", now, longest))
            .await
            .expect("the longest pause is taken");
    }
}
