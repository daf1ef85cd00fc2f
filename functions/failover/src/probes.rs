//! Probes: the failover service's own look at a region before it believes
//! an alert. Several requests go to the region's probe URL at once; the
//! region counts as failed only if a majority fails, and as healthy only if
//! a majority succeeds.

use std::time::Duration;

use crate::decision::Check;

/// Sends probes.
#[derive(Clone, Debug)]
pub struct Prober {
    client: reqwest::Client,
    /// Probes per verdict.
    pub probes: usize,
    /// How long one probe may take.
    pub timeout: Duration,
}

impl Default for Prober {
    fn default() -> Self {
        Self::new(3, Duration::from_secs(2))
    }
}

/// What the probes of one URL saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// The URL probed.
    pub url: String,
    /// Probes answered with 2xx.
    pub ok: usize,
    /// Probes sent.
    pub total: usize,
    /// What each failed probe saw.
    pub failures: Vec<String>,
}

impl ProbeResult {
    fn majority(&self) -> usize {
        self.total / 2 + 1
    }

    fn summary(&self) -> String {
        let mut summary = format!(
            "{} of {} probes of {} answered 2xx",
            self.ok, self.total, self.url
        );
        if let Some(first) = self.failures.first() {
            summary.push_str(&format!("; e.g. {first}"));
        }
        summary
    }

    /// The region's health as a check: passes when a majority answered.
    pub fn health(&self) -> Check {
        if self.ok >= self.majority() {
            Check::Pass(self.summary())
        } else {
            Check::Fail(self.summary())
        }
    }

    /// Whether the failure an alert reports is confirmed: passes when a
    /// majority failed.
    pub fn failure(&self) -> Check {
        if self.total - self.ok >= self.majority() {
            Check::Pass(self.summary())
        } else {
            Check::Fail(self.summary())
        }
    }
}

impl Prober {
    /// A prober sending `probes` probes of at most `timeout` each.
    pub fn new(probes: usize, timeout: Duration) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .unwrap_or_default(),
            probes: probes.max(1),
            timeout,
        }
    }

    /// Probes `url` (a GET expecting 2xx), all probes at once.
    pub async fn probe(&self, url: &str) -> ProbeResult {
        let outcomes = futures::future::join_all((0..self.probes).map(|_| async {
            match self.client.get(url).send().await {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => Err(format!("HTTP {}", response.status())),
                Err(error) if error.is_timeout() => {
                    Err(format!("no answer within {:?}", self.timeout))
                }
                Err(error) if error.is_connect() => Err("connection refused".to_string()),
                Err(error) => Err(error.to_string()),
            }
        }))
        .await;
        let failures: Vec<String> = outcomes.into_iter().filter_map(Result::err).collect();
        ProbeResult {
            url: url.to_string(),
            ok: self.probes - failures.len(),
            total: self.probes,
            failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;

    async fn server(status: StatusCode) -> String {
        let app = Router::new().route("/healthz", get(move || async move { status }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        format!("http://{address}/healthz")
    }

    #[tokio::test]
    async fn a_healthy_region_is_healthy_and_its_failure_unconfirmed() {
        let url = server(StatusCode::OK).await;
        let result = Prober::default().probe(&url).await;
        assert_eq!((result.ok, result.total), (3, 3));
        assert!(matches!(result.health(), Check::Pass(_)));
        assert!(matches!(result.failure(), Check::Fail(detail) if detail.contains("3 of 3")));
    }

    #[tokio::test]
    async fn an_erroring_or_unreachable_region_is_confirmed_failed() {
        let url = server(StatusCode::SERVICE_UNAVAILABLE).await;
        let result = Prober::default().probe(&url).await;
        assert!(matches!(result.failure(), Check::Pass(detail) if detail.contains("HTTP 503")));
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let result = Prober::default()
            .probe(&format!("http://{closed}/healthz"))
            .await;
        assert!(
            matches!(result.health(), Check::Fail(detail) if detail.contains("connection refused"))
        );
    }
}
