//! A Storage Transfer Service stand-in: the REST methods Lifeboat calls
//! (transferJobs create, get and run; transferOperations get), built on the
//! official `google-cloud-storagetransfer-v1` types so its JSON cannot
//! drift from the client's.
//!
//! It really copies: a run lists the job's source bucket through the
//! [`ObjectStore`] it was given and copies each object missing or different
//! in the sink (verified, by size and CRC32C), in a background task, one
//! object at a time with a delay between them if told
//! ([`TransferStandIn::set_object_delay`]), so a client polling the
//! operation sees its counters move. It keeps the rules that matter to
//! Lifeboat: job names as the API documents them, ALREADY_EXISTS for a
//! name in use, one active run per job (a second run of a busy job is
//! refused with FAILED_PRECONDITION), and nothing deleted in the sink.
//!
//! Storage Transfer is a global service: a regional outage does not make
//! its API unreachable, it makes the copies that touch the dark region's
//! buckets fail. So here the API keeps answering while a region is dark
//! ([`TransferStandIn::dark_regions`], buckets placed in regions with
//! [`TransferStandIn::place_bucket`]): a run whose source or sink is there
//! counts each object it cannot copy failed with an UNAVAILABLE entry in
//! its error breakdown (a source it cannot list fails it as a whole), and
//! ends FAILED. Runs can also be told to fail
//! ([`TransferStandIn::fail_next_runs`]) or to start but lose their answer
//! ([`TransferStandIn::lose_next_run_answers`]), as a crash or a cut
//! connection between two steps would, and ended runs can be forgotten
//! ([`TransferStandIn::forget_ended_runs`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Json, Response};
use google_cloud_longrunning::model::Operation;
use google_cloud_rpc::model::Code;
use google_cloud_storagetransfer_v1::model::{
    ErrorLogEntry, ErrorSummary, RunTransferJobRequest, TransferCounters, TransferJob,
    TransferOperation, transfer_operation::Status as RunStatus,
};
use google_cloud_wkt::{Any, Timestamp};
use lifeboat_shared::outage::DarkRegions;
use lifeboat_shared::storage::replica::{existing_replica, replicate};
use lifeboat_shared::storage::{ObjectRef, ObjectStore, StorageError};

use crate::standin_server::{LoopbackServer, Reply, invalid, not_found, refuse};

/// What the stand-in holds: jobs, runs and the faults to inject.
#[derive(Debug, Default)]
struct Service {
    jobs: BTreeMap<String, TransferJob>,
    /// Every run by operation name, with whether it has ended.
    runs: BTreeMap<String, (TransferOperation, bool)>,
    started: usize,
    fail_runs: usize,
    lose_run_answers: usize,
    object_delay: Duration,
    /// The region of each bucket placed.
    regions: BTreeMap<String, String>,
}

type Shared = Arc<Mutex<Service>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Service> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What every request reaches.
#[derive(Clone, Debug)]
struct Served {
    service: Shared,
    store: Arc<dyn ObjectStore>,
    dark: DarkRegions,
}

/// The stand-in, serving on a loopback port until dropped.
pub struct TransferStandIn {
    service: Shared,
    dark: DarkRegions,
    server: LoopbackServer,
}

impl TransferStandIn {
    /// Starts the stand-in on a free loopback port; runs copy through
    /// `store`.
    pub async fn start(store: Arc<dyn ObjectStore>) -> Self {
        let served = Served {
            service: Shared::default(),
            store,
            dark: DarkRegions::default(),
        };
        let (service, dark) = (served.service.clone(), served.dark.clone());
        let router = Router::new().fallback(serve).with_state(served);
        Self {
            service,
            dark,
            server: LoopbackServer::start(router).await,
        }
    }

    /// The regions whose buckets runs cannot reach: darken one to make the
    /// runs touching its buckets fail.
    pub fn dark_regions(&self) -> &DarkRegions {
        &self.dark
    }

    /// Says that `bucket` is in `region`, so it is unreachable while the
    /// region is dark.
    pub fn place_bucket(&self, bucket: &str, region: &str) {
        lock(&self.service)
            .regions
            .insert(bucket.to_string(), region.to_string());
    }

    /// The `host:port` to give a client as its endpoint.
    pub fn host(&self) -> String {
        self.server.host()
    }

    /// Makes each object of a run take `delay`, so a run lasts several
    /// polls.
    pub fn set_object_delay(&self, delay: Duration) {
        lock(&self.service).object_delay = delay;
    }

    /// Makes the next `runs` runs end FAILED after listing their source,
    /// copying nothing.
    pub fn fail_next_runs(&self, runs: usize) {
        lock(&self.service).fail_runs = runs;
    }

    /// Makes the next `runs` runs start but answer 503 UNAVAILABLE, as if
    /// the answer were lost on the way.
    pub fn lose_next_run_answers(&self, runs: usize) {
        lock(&self.service).lose_run_answers = runs;
    }

    /// Forgets every run that has ended, as Storage Transfer does once it
    /// no longer keeps an operation: getting one answers NOT_FOUND.
    pub fn forget_ended_runs(&self) {
        lock(&self.service).runs.retain(|_, (_, done)| !*done);
    }

    /// How many runs were started, in all.
    pub fn runs_started(&self) -> usize {
        lock(&self.service).started
    }

    /// The jobs, by name.
    pub fn jobs(&self) -> BTreeMap<String, TransferJob> {
        lock(&self.service).jobs.clone()
    }

    /// Whether every run started has ended.
    pub fn idle(&self) -> bool {
        lock(&self.service).runs.values().all(|(_, done)| *done)
    }
}

/// Every request: the path names the method.
async fn serve(State(served): State<Served>, method: Method, uri: Uri, body: Bytes) -> Response {
    let Some(name) = uri.path().strip_prefix("/v1/") else {
        return not_found(uri.path()).into_response();
    };
    let name = name.to_string();
    let result = match (&method, name.split_once(':')) {
        (&Method::POST, None) if name == "transferJobs" => create(&served, &body),
        (&Method::GET, None) if name.starts_with("transferJobs/") => get_job(&served, &name, &uri),
        (&Method::POST, Some((job, "run"))) if job.starts_with("transferJobs/") => {
            run(&served, job, &body)
        }
        (&Method::GET, None) if name.starts_with("transferOperations/") => {
            get_operation(&served, &name)
        }
        _ => Err(not_found(&format!("{method} {}", uri.path()))),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Whether `name` is a job name the API takes: `transferJobs/`, then
/// letters, digits and `-._~`, ending with a letter or digit, 128
/// characters at most, not starting with `OPI`.
fn valid_job_name(name: &str) -> bool {
    let Some(id) = name.strip_prefix("transferJobs/") else {
        return false;
    };
    name.len() <= 128
        && !id.starts_with("OPI")
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
        && id.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn create(served: &Served, body: &Bytes) -> Reply {
    let job: TransferJob =
        serde_json::from_slice(body).map_err(|e| invalid(format!("bad transfer job: {e}")))?;
    if !valid_job_name(&job.name) {
        return Err(invalid(format!("invalid job name {:?}", job.name)));
    }
    if job.project_id.is_empty() {
        return Err(invalid("projectId is required".into()));
    }
    let spec = job.transfer_spec.as_ref();
    if spec.and_then(|s| s.gcs_data_source()).is_none()
        || spec.and_then(|s| s.gcs_data_sink()).is_none()
    {
        return Err(invalid(
            "the stand-in copies only gcsDataSource to gcsDataSink".into(),
        ));
    }
    let mut service = lock(&served.service);
    if service.jobs.contains_key(&job.name) {
        return Err(refuse(
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
            format!("{} already exists", job.name),
        ));
    }
    let job = job.set_creation_time(Timestamp::clamp(chrono::Utc::now().timestamp(), 0));
    service.jobs.insert(job.name.clone(), job.clone());
    Ok(Json(job).into_response())
}

fn get_job(served: &Served, name: &str, uri: &Uri) -> Reply {
    let project = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("projectId="))
        .unwrap_or_default();
    let service = lock(&served.service);
    match service.jobs.get(name) {
        Some(job) if job.project_id == project => Ok(Json(job.clone()).into_response()),
        _ => Err(not_found(&format!("{name} in project {project:?}"))),
    }
}

fn run(served: &Served, job_name: &str, body: &Bytes) -> Reply {
    let request: RunTransferJobRequest =
        serde_json::from_slice(body).map_err(|e| invalid(format!("bad run request: {e}")))?;
    let mut service = lock(&served.service);
    let Some(job) = service.jobs.get(job_name).cloned() else {
        return Err(not_found(job_name));
    };
    if job.project_id != request.project_id {
        return Err(not_found(&format!(
            "{job_name} in project {}",
            request.project_id
        )));
    }
    if let Some((_, false)) = service.runs.get(&job.latest_operation_name) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
            format!("{job_name} already has an active operation"),
        ));
    }
    service.started += 1;
    let name = format!(
        "transferOperations/{}-{}",
        job_name.replace('/', "-"),
        service.started
    );
    let metadata = TransferOperation::new()
        .set_name(&name)
        .set_project_id(&job.project_id)
        .set_transfer_job_name(job_name)
        .set_transfer_spec(job.transfer_spec.clone().unwrap_or_default())
        .set_status(RunStatus::InProgress)
        .set_counters(TransferCounters::new())
        .set_start_time(Timestamp::clamp(chrono::Utc::now().timestamp(), 0));
    service.runs.insert(name.clone(), (metadata.clone(), false));
    if let Some(job) = service.jobs.get_mut(job_name) {
        job.latest_operation_name = name.clone();
    }
    let fail = service.fail_runs > 0;
    service.fail_runs = service.fail_runs.saturating_sub(1);
    let lose = service.lose_run_answers > 0;
    service.lose_run_answers = service.lose_run_answers.saturating_sub(1);
    let delay = service.object_delay;
    drop(service);
    tokio::spawn(copy_run(
        served.clone(),
        name.clone(),
        metadata.clone(),
        fail,
        delay,
    ));
    if lose {
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "the stand-in lost the answer".into(),
        ));
    }
    Ok(Json(operation(&name, &metadata, false)).into_response())
}

fn get_operation(served: &Served, name: &str) -> Reply {
    let service = lock(&served.service);
    let (metadata, done) = service.runs.get(name).ok_or_else(|| not_found(name))?;
    Ok(Json(operation(name, metadata, *done)).into_response())
}

/// The long-running operation of a run: its metadata is the transfer
/// operation; a run that failed also carries the error.
fn operation(name: &str, metadata: &TransferOperation, done: bool) -> Operation {
    let operation = Operation::new()
        .set_name(name)
        .set_done(done)
        .set_metadata(Any::from_msg(metadata).expect("transfer operation as Any"));
    match (done, &metadata.status) {
        (true, RunStatus::Failed) => operation.set_error(
            google_cloud_rpc::model::Status::default()
                .set_code(Code::Unknown.value().unwrap_or(2))
                .set_message("transfer operation failed"),
        ),
        (true, _) => operation.set_response(
            Any::from_msg(&google_cloud_wkt::Empty::default()).expect("empty as Any"),
        ),
        (false, _) => operation,
    }
}

/// Updates run `name`'s transfer operation.
fn update(served: &Served, name: &str, change: impl FnOnce(&mut TransferOperation)) {
    if let Some((metadata, _)) = lock(&served.service).runs.get_mut(name) {
        change(metadata);
    }
}

/// Notes one failure of `code` on `url` in a run's error breakdown.
fn note_error(metadata: &mut TransferOperation, code: Code, url: String, detail: String) {
    let entry = ErrorLogEntry::new()
        .set_url(url)
        .set_error_details([detail]);
    match metadata
        .error_breakdowns
        .iter_mut()
        .find(|summary| summary.error_code == code)
    {
        Some(summary) => {
            summary.error_count += 1;
            summary.error_log_entries.push(entry);
        }
        None => metadata.error_breakdowns.push(
            ErrorSummary::new()
                .set_error_code(code)
                .set_error_count(1)
                .set_error_log_entries([entry]),
        ),
    }
}

/// The status code Storage Transfer would report for `error`.
fn code_of(error: &StorageError) -> Code {
    match error {
        StorageError::NotFound { .. } | StorageError::BucketNotFound { .. } => Code::NotFound,
        StorageError::Backend { .. } => Code::Unavailable,
        _ => Code::FailedPrecondition,
    }
}

/// Fails, as a dark region's bucket would, when `bucket` is in one.
fn reach(served: &Served, bucket: &str) -> Result<(), StorageError> {
    let region = lock(&served.service).regions.get(bucket).cloned();
    match region {
        Some(region) => served
            .dark
            .reach(&region, || format!("gs://{bucket}"))
            .map_err(|unreachable| StorageError::Backend {
                context: unreachable.call.clone(),
                source: Box::new(unreachable),
            }),
        None => Ok(()),
    }
}

/// Performs run `name`: lists the source and copies what the sink lacks
/// or holds different, then ends the run.
async fn copy_run(
    served: Served,
    name: String,
    metadata: TransferOperation,
    fail: bool,
    delay: Duration,
) {
    let spec = metadata.transfer_spec.unwrap_or_default();
    let source = spec
        .gcs_data_source()
        .map(|g| g.bucket_name.clone())
        .unwrap_or_default();
    let sink = spec
        .gcs_data_sink()
        .map(|g| g.bucket_name.clone())
        .unwrap_or_default();
    let store = served.store.as_ref();
    let mut token: Option<String> = None;
    let mut failed = fail;
    'pages: loop {
        let listed = match reach(&served, &source) {
            Ok(()) => store.list(&source, "", token.as_deref()).await,
            Err(error) => Err(error),
        };
        let page = match listed {
            Ok(page) => page,
            Err(error) => {
                update(&served, &name, |m| {
                    note_error(
                        m,
                        code_of(&error),
                        format!("gs://{source}"),
                        error.to_string(),
                    );
                });
                failed = true;
                break;
            }
        };
        update(&served, &name, |m| {
            let counters = m.counters.get_or_insert_default();
            counters.objects_found_from_source += page.objects.len() as i64;
            counters.bytes_found_from_source +=
                page.objects.iter().map(|o| o.size as i64).sum::<i64>();
        });
        if fail {
            update(&served, &name, |m| {
                note_error(
                    m,
                    Code::Internal,
                    format!("gs://{source}"),
                    "the stand-in was told to fail".into(),
                );
            });
            break;
        }
        for object in page.objects {
            tokio::time::sleep(delay).await;
            let replica = ObjectRef::new(&sink, &object.object.name);
            let reachable = reach(&served, &source).and_then(|()| reach(&served, &sink));
            let outcome = match reachable {
                Err(error) => Err(error),
                Ok(()) => existing_replica(store, &object, &replica).await,
            };
            let outcome = match outcome {
                Ok(Some(_)) => Ok(false),
                Ok(None) => replicate(store, &object, &replica).await.map(|_| true),
                Err(error) => Err(error),
            };
            update(&served, &name, |m| {
                let counters = m.counters.get_or_insert_default();
                let size = object.size as i64;
                match outcome {
                    Ok(true) => {
                        counters.objects_copied_to_sink += 1;
                        counters.bytes_copied_to_sink += size;
                    }
                    Ok(false) => {
                        counters.objects_from_source_skipped_by_sync += 1;
                        counters.bytes_from_source_skipped_by_sync += size;
                    }
                    Err(error) => {
                        counters.objects_from_source_failed += 1;
                        counters.bytes_from_source_failed += size;
                        note_error(
                            m,
                            code_of(&error),
                            object.object.to_string(),
                            error.to_string(),
                        );
                    }
                }
            });
        }
        token = page.next_page_token;
        if token.is_none() {
            break 'pages;
        }
    }
    let mut service = lock(&served.service);
    if let Some((metadata, done)) = service.runs.get_mut(&name) {
        let failed = failed || !metadata.error_breakdowns.is_empty();
        metadata.status = if failed {
            RunStatus::Failed
        } else {
            RunStatus::Success
        };
        metadata.end_time = Some(Timestamp::clamp(chrono::Utc::now().timestamp(), 0));
        *done = true;
    }
}
