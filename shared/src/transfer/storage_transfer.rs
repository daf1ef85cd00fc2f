//! Bulk copies as Storage Transfer Service jobs: one job per asset and
//! replica region ([`job_name`]), Cloud Storage to Cloud Storage, with no
//! schedule (it runs only when run), overwriting only objects whose bytes
//! differ and deleting nothing in the replica.
//!
//! A copy makes the job if it is absent (one made meanwhile by someone
//! else is taken as is), runs it and polls the run's transfer operation
//! until it ends, passing its counters on as progress. A job whose latest
//! run is still going on is followed instead of run again: Storage
//! Transfer allows one active run per job, and a caller that crashed while
//! following a run must find it again, not start a second one. The copying
//! itself is done by the Storage Transfer service agent, which needs read
//! on the source bucket and write on the replica bucket.

use std::time::Duration;

use async_trait::async_trait;
use google_cloud_gax::error::rpc::Code;
use google_cloud_longrunning::model::Operation;
use google_cloud_longrunning::model::operation::Result as OperationResult;
use google_cloud_storagetransfer_v1::client::StorageTransferService;
use google_cloud_storagetransfer_v1::model::{
    GcsData, TransferJob, TransferOperation, TransferOptions, TransferSpec,
    transfer_job::Status as JobStatus, transfer_operation::Status as RunStatus,
    transfer_options::OverwriteWhen,
};

use super::{BulkCopier, BulkCopy, Progress, TransferCounters, TransferError, job_name};
use crate::gcp::{ApiEndpoint, Credentials};

/// Where Storage Transfer Service is reached in production.
pub const PRODUCTION_URL: &str = "https://storagetransfer.googleapis.com";
/// How often a run is polled unless told otherwise: a bulk copy lasts
/// minutes to hours.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// Bulk copies run by Storage Transfer Service in one project.
#[derive(Clone, Debug)]
pub struct StorageTransfer {
    client: StorageTransferService,
    project: String,
    poll_interval: Duration,
}

/// A failure to build the client.
#[derive(Debug, thiserror::Error)]
#[error("connect to Storage Transfer Service at {base_url}: {detail}")]
pub struct ConnectError {
    /// The endpoint.
    pub base_url: String,
    /// What failed.
    pub detail: String,
}

impl StorageTransfer {
    /// Connects to Storage Transfer Service at `endpoint`, for jobs owned by
    /// `project`. Anonymous endpoint credentials (a stand-in) are passed on;
    /// otherwise the client finds Application Default Credentials itself.
    pub async fn new(endpoint: &ApiEndpoint, project: &str) -> Result<Self, ConnectError> {
        let mut builder = StorageTransferService::builder().with_endpoint(&endpoint.base_url);
        if matches!(endpoint.credentials, Credentials::Anonymous) {
            builder = builder.with_credentials(
                google_cloud_auth::credentials::anonymous::Builder::new().build(),
            );
        }
        let client = builder.build().await.map_err(|error| ConnectError {
            base_url: endpoint.base_url.clone(),
            detail: error.to_string(),
        })?;
        Ok(Self {
            client,
            project: project.to_string(),
            poll_interval: DEFAULT_POLL_INTERVAL,
        })
    }

    /// Polls runs every `interval` instead of [`DEFAULT_POLL_INTERVAL`].
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The job `copy` needs, as Storage Transfer should hold it.
    fn wanted_job(&self, copy: &BulkCopy, job: &str) -> TransferJob {
        let spec = TransferSpec::new()
            .set_gcs_data_source(GcsData::new().set_bucket_name(&copy.source_bucket))
            .set_gcs_data_sink(GcsData::new().set_bucket_name(&copy.replica_bucket))
            .set_transfer_options(
                TransferOptions::new()
                    .set_overwrite_when(OverwriteWhen::Different)
                    .set_delete_objects_unique_in_sink(false)
                    .set_delete_objects_from_source_after_transfer(false),
            );
        TransferJob::new()
            .set_name(job)
            .set_project_id(&self.project)
            .set_description(format!(
                "Lifeboat bulk copy of asset {} to {}",
                copy.asset, copy.region
            ))
            .set_status(JobStatus::Enabled)
            .set_transfer_spec(spec)
    }

    /// The job of `copy`, made if absent; a job of that name copying other
    /// buckets is a [`TransferError::Conflict`].
    async fn job(&self, copy: &BulkCopy, job: &str) -> Result<TransferJob, TransferError> {
        let found = match self.get_job(copy, job).await? {
            Some(found) => found,
            None => {
                let wanted = self.wanted_job(copy, job);
                match self
                    .client
                    .create_transfer_job()
                    .set_transfer_job(wanted)
                    .send()
                    .await
                {
                    Ok(made) => {
                        tracing::info!(asset = %copy.asset, region = %copy.region, job, "transfer job created");
                        made
                    }
                    Err(error) if code(&error) == Some(Code::AlreadyExists) => self
                        .get_job(copy, job)
                        .await?
                        .ok_or_else(|| backend(copy, job, "get after ALREADY_EXISTS", error))?,
                    Err(error) => return Err(backend(copy, job, "create", error)),
                }
            }
        };
        let buckets = found.transfer_spec.as_ref().map(|spec| {
            (
                spec.gcs_data_source().map(|gcs| gcs.bucket_name.clone()),
                spec.gcs_data_sink().map(|gcs| gcs.bucket_name.clone()),
            )
        });
        let wanted = (
            Some(copy.source_bucket.clone()),
            Some(copy.replica_bucket.clone()),
        );
        if buckets.as_ref() != Some(&wanted) {
            return Err(TransferError::Conflict {
                copy: Box::new(copy.clone()),
                job: job.to_string(),
                found: format!("{buckets:?}"),
            });
        }
        Ok(found)
    }

    /// The job named `job`, if it exists.
    async fn get_job(
        &self,
        copy: &BulkCopy,
        job: &str,
    ) -> Result<Option<TransferJob>, TransferError> {
        match self
            .client
            .get_transfer_job()
            .set_job_name(job)
            .set_project_id(&self.project)
            .send()
            .await
        {
            Ok(found) => Ok(Some(found)),
            Err(error) if code(&error) == Some(Code::NotFound) => Ok(None),
            Err(error) => Err(backend(copy, job, "get", error)),
        }
    }

    async fn get_operation(
        &self,
        copy: &BulkCopy,
        job: &str,
        name: &str,
    ) -> Result<Operation, TransferError> {
        self.client
            .get_operation()
            .set_name(name)
            .send()
            .await
            .map_err(|error| backend(copy, job, &format!("get operation {name}"), error))
    }

    /// The run to follow: the job's latest one if it has not ended, else a
    /// new one. A run whose answer was lost (or that another caller
    /// started meanwhile) shows as a new latest operation, and is followed.
    async fn run(&self, copy: &BulkCopy, job: &TransferJob) -> Result<Operation, TransferError> {
        let name = job.name.as_str();
        let latest = job.latest_operation_name.as_str();
        if !latest.is_empty() {
            // An operation Storage Transfer no longer keeps has long ended.
            match self.client.get_operation().set_name(latest).send().await {
                Ok(operation) if !operation.done => {
                    tracing::info!(asset = %copy.asset, region = %copy.region, job = name, operation = latest, "following the run already going on");
                    return Ok(operation);
                }
                Ok(_) => {}
                Err(error) if code(&error) == Some(Code::NotFound) => {}
                Err(error) => {
                    return Err(backend(
                        copy,
                        name,
                        &format!("get operation {latest}"),
                        error,
                    ));
                }
            }
        }
        let error = match self
            .client
            .run_transfer_job()
            .set_job_name(name)
            .set_project_id(&self.project)
            .send()
            .await
        {
            Ok(operation) => {
                tracing::info!(asset = %copy.asset, region = %copy.region, job = name, operation = operation.name, "transfer run started");
                return Ok(operation);
            }
            Err(error) => error,
        };
        let now = self.get_job(copy, name).await?;
        match now {
            Some(now)
                if !now.latest_operation_name.is_empty() && now.latest_operation_name != latest =>
            {
                tracing::warn!(asset = %copy.asset, region = %copy.region, job = name, operation = now.latest_operation_name, %error, "run answered an error, but a new run shows; following it");
                self.get_operation(copy, name, &now.latest_operation_name)
                    .await
            }
            _ => Err(backend(copy, name, "run", error)),
        }
    }

    /// Polls `operation` until it ends, passing its counters to `progress`.
    async fn follow(
        &self,
        copy: &BulkCopy,
        job: &str,
        mut operation: Operation,
        progress: Progress<'_>,
    ) -> Result<TransferCounters, TransferError> {
        loop {
            let metadata: Option<TransferOperation> = match &operation.metadata {
                Some(any) => Some(any.to_msg().map_err(|error| {
                    backend(
                        copy,
                        job,
                        &format!("read operation {}", operation.name),
                        error,
                    )
                })?),
                None => None,
            };
            let counters = metadata
                .as_ref()
                .and_then(|m| m.counters.as_ref())
                .map(counters_of)
                .unwrap_or_default();
            progress(&counters);
            if operation.done {
                return ended(copy, job, &operation, metadata.as_ref(), counters);
            }
            tokio::time::sleep(self.poll_interval).await;
            operation = self.get_operation(copy, job, &operation.name).await?;
        }
    }
}

#[async_trait]
impl BulkCopier for StorageTransfer {
    async fn copy_bucket(
        &self,
        copy: &BulkCopy,
        progress: Progress<'_>,
    ) -> Result<TransferCounters, TransferError> {
        let name = job_name(copy);
        let job = self.job(copy, &name).await?;
        let operation = self.run(copy, &job).await?;
        let counters = self.follow(copy, &name, operation, progress).await?;
        tracing::info!(asset = %copy.asset, region = %copy.region, job = name, copied = counters.objects_copied, skipped = counters.objects_skipped, "transfer run succeeded");
        Ok(counters)
    }
}

/// The outcome of a run that has ended: its counters when it succeeded
/// with no object failed, else the errors it reports.
fn ended(
    copy: &BulkCopy,
    job: &str,
    operation: &Operation,
    metadata: Option<&TransferOperation>,
    counters: TransferCounters,
) -> Result<TransferCounters, TransferError> {
    let status = metadata.map(|m| m.status.clone());
    let failed = |summary: String| TransferError::Failed {
        copy: Box::new(copy.clone()),
        job: job.to_string(),
        summary,
        counters,
    };
    let mut problems: Vec<String> = Vec::new();
    if let Some(OperationResult::Error(error)) = &operation.result {
        problems.push(format!("operation error {}: {}", error.code, error.message));
    }
    for summary in metadata.map_or(&[][..], |m| m.error_breakdowns.as_slice()) {
        let example = summary
            .error_log_entries
            .first()
            .map(|entry| format!(" (e.g. {} {})", entry.url, entry.error_details.join(" ")))
            .unwrap_or_default();
        problems.push(format!(
            "{:?} x{}{example}",
            summary.error_code, summary.error_count
        ));
    }
    match status {
        Some(RunStatus::Success) if problems.is_empty() && counters.objects_failed == 0 => {
            Ok(counters)
        }
        status => {
            if problems.is_empty() {
                problems.push(format!(
                    "run {} ended {status:?} with {} object(s) failed",
                    operation.name, counters.objects_failed
                ));
            }
            Err(failed(problems.join("; ")))
        }
    }
}

/// Lifeboat's counters from Storage Transfer's.
fn counters_of(c: &google_cloud_storagetransfer_v1::model::TransferCounters) -> TransferCounters {
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    TransferCounters {
        objects_found: count(c.objects_found_from_source),
        objects_copied: count(c.objects_copied_to_sink),
        objects_skipped: count(c.objects_from_source_skipped_by_sync),
        objects_failed: count(c.objects_from_source_failed),
        bytes_copied: count(c.bytes_copied_to_sink),
    }
}

/// The status code of a failed call, if the service answered one.
fn code(error: &google_cloud_gax::error::Error) -> Option<Code> {
    error.status().map(|status| status.code)
}

fn backend(
    copy: &BulkCopy,
    job: &str,
    context: &str,
    error: impl std::error::Error + Send + Sync + 'static,
) -> TransferError {
    TransferError::Backend {
        copy: Box::new(copy.clone()),
        job: job.to_string(),
        context: context.to_string(),
        source: Box::new(error),
    }
}
