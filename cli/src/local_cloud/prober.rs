//! The local cloud's uptime checks and alert policies: every second each
//! region's `/healthz` is probed for each workload; after
//! [`FAILURES_TO_OPEN`] failures in a row an incident opens, and after
//! [`SUCCESSES_TO_CLOSE`] successes in a row it closes. Each opening and
//! closing is POSTed to the failover service in Cloud Monitoring's webhook
//! shape (schema 1.2) with the `lifeboat-workload`/`lifeboat-region` policy
//! labels, as Monitoring's notification channel does on Google Cloud; a
//! notification that is not acknowledged is sent again at the next probe.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeboat_shared::server::Shutdown;
use serde_json::json;
use tracing::Instrument;

/// How often every region is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How long one probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Failed probes in a row that open an incident.
pub const FAILURES_TO_OPEN: u32 = 3;

/// Successful probes in a row that close it.
pub const SUCCESSES_TO_CLOSE: u32 = 3;

/// One uptime check: a workload in a region, probed at `url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// The workload.
    pub workload: String,
    /// The region.
    pub region: String,
    /// The URL probed.
    pub url: String,
}

/// An incident of one check, from its opening.
#[derive(Clone, Debug)]
struct OpenIncident {
    id: String,
    started_at: DateTime<Utc>,
    /// Whether the failover service acknowledged the opening.
    announced: bool,
}

/// Where one check stands.
#[derive(Clone, Debug, Default)]
struct Standing {
    failures: u32,
    successes: u32,
    first_failure: Option<DateTime<Utc>>,
    incident: Option<OpenIncident>,
}

/// Probes every check every [`PROBE_INTERVAL`] and notifies `failover_url`
/// of incidents opening and closing, until `shutdown`.
pub async fn run(project: String, checks: Vec<Check>, failover_url: String, shutdown: Shutdown) {
    let client = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .build()
        .unwrap_or_default();
    let notifier = reqwest::Client::new();
    let mut standings = vec![Standing::default(); checks.len()];
    loop {
        let probes = futures::future::join_all(checks.iter().map(|check| {
            let client = &client;
            async move {
                match client.get(&check.url).send().await {
                    Ok(response) => response.status().is_success(),
                    Err(_) => false,
                }
            }
        }));
        let results = tokio::select! {
            () = shutdown.triggered() => return,
            results = probes => results,
        };
        let now = Utc::now();
        for ((check, healthy), standing) in checks.iter().zip(results).zip(&mut standings) {
            observe(standing, healthy, now);
            if let Some(notification) = due(&project, check, standing, now) {
                let acknowledged = notify(&notifier, &failover_url, check, &notification).await;
                settle(standing, &notification, acknowledged);
            }
        }
        tokio::select! {
            () = shutdown.triggered() => return,
            () = tokio::time::sleep(PROBE_INTERVAL) => {}
        }
    }
}

/// Counts one probe's result.
fn observe(standing: &mut Standing, healthy: bool, now: DateTime<Utc>) {
    if healthy {
        standing.successes += 1;
        standing.failures = 0;
        standing.first_failure = None;
    } else {
        standing.failures += 1;
        standing.successes = 0;
        standing.first_failure.get_or_insert(now);
    }
}

/// A notification to send: opening or closing.
#[derive(Clone, Debug)]
struct Notification {
    open: bool,
    incident: OpenIncident,
    body: serde_json::Value,
}

/// The notification `standing` calls for now, if any: an opening after
/// enough failures (again while unacknowledged), a closing after enough
/// successes.
fn due(
    project: &str,
    check: &Check,
    standing: &mut Standing,
    now: DateTime<Utc>,
) -> Option<Notification> {
    if standing.incident.is_none() && standing.failures >= FAILURES_TO_OPEN {
        let started_at = standing.first_failure.unwrap_or(now);
        standing.incident = Some(OpenIncident {
            id: format!(
                "local-{}-{}-{}",
                check.workload,
                check.region,
                started_at.timestamp()
            ),
            started_at,
            announced: false,
        });
    }
    let incident = standing.incident.clone()?;
    if !incident.announced && standing.failures > 0 {
        let body = webhook(project, check, &incident, None);
        return Some(Notification {
            open: true,
            incident,
            body,
        });
    }
    if standing.successes >= SUCCESSES_TO_CLOSE {
        let body = webhook(project, check, &incident, Some(now));
        return Some(Notification {
            open: false,
            incident,
            body,
        });
    }
    None
}

/// Records what the failover service made of a notification.
fn settle(standing: &mut Standing, notification: &Notification, acknowledged: bool) {
    if !acknowledged {
        return;
    }
    if notification.open {
        if let Some(incident) = standing.incident.as_mut() {
            incident.announced = true;
        }
    } else {
        standing.incident = None;
    }
}

/// Sends one notification; whether the failover service answered 2xx.
async fn notify(
    client: &reqwest::Client,
    url: &str,
    check: &Check,
    notification: &Notification,
) -> bool {
    let state = if notification.open { "open" } else { "closed" };
    let span = tracing::info_span!(
        "incident",
        id = %notification.incident.id,
        state,
        workload = %check.workload,
        region = %check.region
    );
    let sent = client.post(url).json(&notification.body).send();
    match sent.instrument(span.clone()).await {
        Ok(response) if response.status().is_success() => {
            tracing::info!(parent: &span, "incident notification acknowledged");
            true
        }
        Ok(response) => {
            tracing::warn!(parent: &span, status = %response.status(), "incident notification refused; sent again at the next probe");
            false
        }
        Err(error) => {
            tracing::warn!(parent: &span, %error, "incident notification not sent; sent again at the next probe");
            false
        }
    }
}

/// The notification of `incident` in Cloud Monitoring's webhook shape
/// (schema 1.2): open, or closed at `ended_at`.
fn webhook(
    project: &str,
    check: &Check,
    incident: &OpenIncident,
    ended_at: Option<DateTime<Utc>>,
) -> serde_json::Value {
    let policy = format!("lifeboat {} {} uptime", check.workload, check.region);
    json!({
        "version": "1.2",
        "incident": {
            "incident_id": incident.id,
            "scoping_project_id": project,
            "url": check.url,
            "started_at": incident.started_at.timestamp(),
            "ended_at": ended_at.map(|at| at.timestamp()),
            "state": if ended_at.is_some() { "closed" } else { "open" },
            "resource_name": format!("{project} {} {}", check.workload, check.region),
            "resource": {
                "type": "uptime_url",
                "labels": {"project_id": project, "host": check.url},
            },
            "metric": {
                "type": "monitoring.googleapis.com/uptime_check/check_passed",
                "displayName": "Check passed",
            },
            "policy_name": policy,
            "policy_user_labels": {
                "lifeboat-workload": check.workload,
                "lifeboat-region": check.region,
            },
            "condition_name": format!("{FAILURES_TO_OPEN} failed probes in a row"),
            "summary": format!("{} in {}: {} failed probes of {}", check.workload, check.region, FAILURES_TO_OPEN, check.url),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> Check {
        Check {
            workload: "recommendations".to_string(),
            region: "us-central1".to_string(),
            url: "http://127.0.0.1:1/healthz".to_string(),
        }
    }

    #[test]
    fn an_incident_opens_after_three_failures_and_closes_after_three_successes() {
        let mut standing = Standing::default();
        let now = Utc::now();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            observe(&mut standing, false, now);
            assert!(due("p", &check(), &mut standing, now).is_none());
        }
        observe(&mut standing, false, now);
        let opening = due("p", &check(), &mut standing, now).expect("opens");
        assert!(opening.open);
        assert_eq!(opening.body["incident"]["state"], "open");
        assert_eq!(
            opening.body["incident"]["policy_user_labels"]["lifeboat-region"],
            "us-central1"
        );
        // Refused: sent again at the next failed probe, with the same id.
        settle(&mut standing, &opening, false);
        observe(&mut standing, false, now);
        let again = due("p", &check(), &mut standing, now).expect("sent again");
        assert_eq!(again.incident.id, opening.incident.id);
        settle(&mut standing, &again, true);
        observe(&mut standing, false, now);
        assert!(due("p", &check(), &mut standing, now).is_none());
        for _ in 0..SUCCESSES_TO_CLOSE - 1 {
            observe(&mut standing, true, now);
            assert!(due("p", &check(), &mut standing, now).is_none());
        }
        observe(&mut standing, true, now);
        let closing = due("p", &check(), &mut standing, now).expect("closes");
        assert_eq!(closing.body["incident"]["state"], "closed");
        assert_eq!(closing.incident.id, opening.incident.id);
        settle(&mut standing, &closing, true);
        assert!(standing.incident.is_none());
    }

    #[test]
    fn the_notification_is_a_monitoring_incident() {
        let mut standing = Standing::default();
        let now = Utc::now();
        for _ in 0..FAILURES_TO_OPEN {
            observe(&mut standing, false, now);
        }
        let opening = due("acme", &check(), &mut standing, now).expect("opens");
        let bytes = serde_json::to_vec(&opening.body).expect("JSON");
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        let event =
            lifeboat_shared::events::parse(&headers, &bytes).expect("parses as an inbound event");
        assert_eq!(event.kind(), "incident");
    }
}
