//! The local cloud's Cloud Scheduler: fires the reconcile jobs of data-sync
//! and model-copy as Cloud Scheduler would, an HTTP POST with the
//! `X-CloudScheduler` headers and the job's JSON body, once at startup and
//! then at every interval, so the same handlers run as on Cloud Run.

use std::time::Duration;

use chrono::Utc;
use lifeboat_shared::server::Shutdown;

/// data-sync's reconcile job, as Terraform names it.
pub const DATA_SYNC_RECONCILE_JOB: &str = "lifeboat-data-sync-reconcile";

/// model-copy's reconcile job, as Terraform names it.
pub const MODEL_COPY_RECONCILE_JOB: &str = "lifeboat-model-copy-reconcile";

/// How often the local reconciles run.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(300);

/// Fires `job` at `url` now and every `interval` until `shutdown`. A failed
/// run is logged; the next tick runs it again, as Cloud Scheduler's retry
/// would.
pub async fn run(job: &'static str, url: String, interval: Duration, shutdown: Shutdown) {
    let client = reqwest::Client::new();
    loop {
        let scheduled = Utc::now();
        let sent = client
            .post(&url)
            .header("x-cloudscheduler", "true")
            .header("x-cloudscheduler-jobname", job)
            .header("x-cloudscheduler-scheduletime", scheduled.to_rfc3339())
            .header("content-type", "application/json")
            .body(r#"{"job": "reconcile"}"#);
        let answer = tokio::select! {
            () = shutdown.triggered() => return,
            answer = sent.send() => answer,
        };
        match answer {
            Ok(response) if response.status().is_success() => {
                tracing::info!(job, "scheduled reconcile done");
            }
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                tracing::warn!(job, %status, body, "scheduled reconcile failed");
            }
            Err(error) => {
                tracing::warn!(job, %error, "scheduled reconcile not sent")
            }
        }
        tokio::select! {
            () = shutdown.triggered() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
