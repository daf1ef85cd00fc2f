//! Bulk copies of a whole bucket to a replica bucket, handed to an engine
//! built for them instead of copied object by object: seeding a new replica
//! or repairing a large drift. [`BulkCopier`] is the one thing callers see;
//! [`storage_transfer`] runs it as a Storage Transfer Service job,
//! [`local`] over any [`ObjectStore`](crate::storage::ObjectStore) with its
//! server-side copy (the local cloud's engine), and [`conformance`] is the
//! behaviour both must have.
//!
//! An engine only adds and overwrites: it copies every source object that
//! is missing in the replica or whose size or CRC32C differ, and never
//! deletes anything, so what a replica keeps after its source deleted an
//! object stays the caller's decision.

pub mod conformance;
pub mod local;
pub mod storage_transfer;

use std::fmt;

use async_trait::async_trait;
use serde::Serialize;

/// One bulk copy: every object of `source_bucket` that is missing or
/// different in `replica_bucket`, for the replica of `asset` in `region`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkCopy {
    /// The bucket asset, as the topology names it.
    pub asset: String,
    /// The replica region.
    pub region: String,
    /// The bucket copied from.
    pub source_bucket: String,
    /// The bucket copied to.
    pub replica_bucket: String,
}

impl fmt::Display for BulkCopy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "asset {} region {}: gs://{} -> gs://{}",
            self.asset, self.region, self.source_bucket, self.replica_bucket
        )
    }
}

/// How far a bulk copy got: the same counters whichever engine runs it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TransferCounters {
    /// Objects found in the source so far.
    pub objects_found: u64,
    /// Objects copied to the replica.
    pub objects_copied: u64,
    /// Objects skipped because the replica already held the same bytes.
    pub objects_skipped: u64,
    /// Objects that could not be copied.
    pub objects_failed: u64,
    /// Bytes copied to the replica.
    pub bytes_copied: u64,
}

/// What can go wrong in a bulk copy. Every variant names the copy (asset,
/// region, buckets) and the engine's job when it has one.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The run ended without copying everything: some objects failed, or
    /// the run as a whole did. `counters` is how far it got.
    #[error("{copy}: job {job} failed: {summary}")]
    Failed {
        /// The copy.
        copy: Box<BulkCopy>,
        /// The engine's job (or run) name.
        job: String,
        /// What the engine says went wrong, error by error.
        summary: String,
        /// The run's last counters.
        counters: TransferCounters,
    },
    /// A job of the same name copies something else; it is left alone.
    #[error("{copy}: job {job} exists and copies {found} instead")]
    Conflict {
        /// The copy.
        copy: Box<BulkCopy>,
        /// The job's name.
        job: String,
        /// What the existing job copies.
        found: String,
    },
    /// The engine could not be reached or refused a call; the run may be
    /// going on, and the next call follows it.
    #[error("{copy}: job {job}: {context}: {source}")]
    Backend {
        /// The copy.
        copy: Box<BulkCopy>,
        /// The engine's job name.
        job: String,
        /// The call that failed.
        context: String,
        /// The underlying failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl TransferError {
    /// The counters of the run when it ended, if it ran.
    pub fn counters(&self) -> Option<TransferCounters> {
        match self {
            TransferError::Failed { counters, .. } => Some(*counters),
            TransferError::Conflict { .. } | TransferError::Backend { .. } => None,
        }
    }
}

/// What a bulk copy calls with its counters as the run goes on.
pub type Progress<'a> = &'a (dyn Fn(&TransferCounters) + Send + Sync);

/// An engine that copies a bucket into its replica bucket and follows the
/// run to its end.
#[async_trait]
pub trait BulkCopier: Send + Sync + fmt::Debug {
    /// Copies every object of the source that is missing or different
    /// (size or CRC32C) in the replica, deleting nothing, and returns the
    /// final counters once the run has ended; `progress` gets the counters
    /// whenever they move. A run of the same copy still going on (a caller
    /// that crashed while following it) is followed, not started again.
    async fn copy_bucket(
        &self,
        copy: &BulkCopy,
        progress: Progress<'_>,
    ) -> Result<TransferCounters, TransferError>;
}

/// The Storage Transfer Service job name of `copy`: one job per asset and
/// replica region, so that a run can be found again after a crash. The API
/// takes `transferJobs/` followed by letters, digits and `-._~`, ending
/// with a letter or digit, 128 characters at most, and not starting with
/// `OPI` (kept for POSIX filesystem transfers); every other character
/// becomes `-`.
pub fn job_name(copy: &BulkCopy) -> String {
    const PREFIX: &str = "transferJobs/";
    let id: String = format!("lifeboat-{}-{}", copy.asset, copy.region)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._~".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(128 - PREFIX.len())
        .collect();
    let id = id.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{PREFIX}{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(asset: &str, region: &str) -> BulkCopy {
        BulkCopy {
            asset: asset.into(),
            region: region.into(),
            source_bucket: "src".into(),
            replica_bucket: "dst".into(),
        }
    }

    #[test]
    fn job_names_follow_the_api_rule() {
        assert_eq!(
            job_name(&copy("training-data", "europe-west4")),
            "transferJobs/lifeboat-training-data-europe-west4"
        );
        assert_eq!(
            job_name(&copy("a b/ü", "r_")),
            "transferJobs/lifeboat-a-b---r"
        );
        let long = job_name(&copy(&"x".repeat(300), "us-east1"));
        assert_eq!(long.len(), 128);
        assert!(long.ends_with('x'));
    }
}
