//! The local cloud's Cloud Scheduler: fires the reconcile jobs of data-sync
//! and model-copy, and every drill of the topology on its schedule, as
//! Cloud Scheduler would: an HTTP POST with the `X-CloudScheduler` headers
//! (job name, schedule time) and the job's JSON body, so the same handlers
//! run as on Cloud Run.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeboat_shared::server::Shutdown;
use lifeboat_shared::topology::Drill;

/// data-sync's reconcile job, as Terraform names it.
pub const DATA_SYNC_RECONCILE_JOB: &str = "lifeboat-data-sync-reconcile";

/// model-copy's reconcile job, as Terraform names it.
pub const MODEL_COPY_RECONCILE_JOB: &str = "lifeboat-model-copy-reconcile";

/// How often the local reconciles run.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(300);

/// The Scheduler job of a drill, as Terraform names it.
pub fn drill_job(drill: &str) -> String {
    format!("lifeboat-drill-{drill}")
}

/// Sends one run of `job`, scheduled for `scheduled`, with `body`; a failed
/// run is logged (the next tick runs it again, as Cloud Scheduler's retry
/// would). `None` when `shutdown` fired first.
async fn fire(
    client: &reqwest::Client,
    url: &str,
    job: &str,
    scheduled: DateTime<Utc>,
    body: String,
    shutdown: &Shutdown,
) -> Option<()> {
    let sent = client
        .post(url)
        .header("x-cloudscheduler", "true")
        .header("x-cloudscheduler-jobname", job)
        .header("x-cloudscheduler-scheduletime", scheduled.to_rfc3339())
        .header("content-type", "application/json")
        .body(body);
    let answer = tokio::select! {
        () = shutdown.triggered() => return None,
        answer = sent.send() => answer,
    };
    match answer {
        Ok(response) if response.status().is_success() => {
            tracing::info!(job, status = %response.status(), "scheduled job done");
        }
        Ok(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            tracing::warn!(job, %status, body, "scheduled job failed");
        }
        Err(error) => tracing::warn!(job, %error, "scheduled job not sent"),
    }
    Some(())
}

/// Fires `job` at `url` now and every `interval` until `shutdown`.
pub async fn run(job: &'static str, url: String, interval: Duration, shutdown: Shutdown) {
    let client = reqwest::Client::new();
    loop {
        let body = r#"{"job": "reconcile"}"#.to_string();
        if fire(&client, &url, job, Utc::now(), body, &shutdown)
            .await
            .is_none()
        {
            return;
        }
        tokio::select! {
            () = shutdown.triggered() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Fires every drill of `drills` at `url` (the drill service) when its
/// schedule comes due, until `shutdown`: the job named after the drill,
/// the due time as the schedule time, `{"drill": ID}` as the body.
pub async fn run_drills(drills: Vec<Drill>, url: String, shutdown: Shutdown) {
    let client = reqwest::Client::new();
    let mut after = Utc::now();
    loop {
        let Some(due) = drills
            .iter()
            .filter_map(|drill| drill.schedule.next_after(after))
            .min()
        else {
            return;
        };
        let wait = (due - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = shutdown.triggered() => return,
            () = tokio::time::sleep(wait) => {}
        }
        for drill in drills
            .iter()
            .filter(|drill| drill.schedule.next_after(after) == Some(due))
        {
            let body = serde_json::json!({ "drill": drill.id.as_str() }).to_string();
            let job = drill_job(drill.id.as_str());
            if fire(&client, &url, &job, due, body, &shutdown)
                .await
                .is_none()
            {
                return;
            }
        }
        after = due;
    }
}
