//! The local cloud's Cloud Scheduler: fires data-sync's reconcile job as
//! Cloud Scheduler would, an HTTP POST with the `X-CloudScheduler` headers and
//! the job's JSON body, once at startup and then at every interval, so the
//! same handler runs as on Cloud Run.

use std::time::Duration;

use chrono::Utc;
use lifeboat_shared::server::Shutdown;

/// The reconcile job's name.
pub const RECONCILE_JOB: &str = "lifeboat-data-sync-reconcile";

/// How often the local reconcile runs.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(300);

/// Fires the reconcile job at `url` now and every `interval` until
/// `shutdown`. A failed run is logged; the next tick runs it again, as Cloud
/// Scheduler's retry would.
pub async fn run(url: String, interval: Duration, shutdown: Shutdown) {
    let client = reqwest::Client::new();
    loop {
        let scheduled = Utc::now();
        let sent = client
            .post(&url)
            .header("x-cloudscheduler", "true")
            .header("x-cloudscheduler-jobname", RECONCILE_JOB)
            .header("x-cloudscheduler-scheduletime", scheduled.to_rfc3339())
            .header("content-type", "application/json")
            .body(r#"{"job": "reconcile"}"#);
        let answer = tokio::select! {
            () = shutdown.triggered() => return,
            answer = sent.send() => answer,
        };
        match answer {
            Ok(response) if response.status().is_success() => {
                tracing::info!(job = RECONCILE_JOB, "scheduled reconcile done");
            }
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                tracing::warn!(job = RECONCILE_JOB, %status, body, "scheduled reconcile failed");
            }
            Err(error) => {
                tracing::warn!(job = RECONCILE_JOB, %error, "scheduled reconcile not sent")
            }
        }
        tokio::select! {
            () = shutdown.triggered() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
