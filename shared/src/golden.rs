//! Golden requests: a region is healthy for a workload when it answers the
//! golden requests its models declare in the topology (instances and the
//! expected predictions, with a tolerance) right, through the front door.
//! [`GoldenClient::check`] sends each one through the gateway's pinned route
//! (`/regions/{region}/predict/{workload}/{model}`, which never retries in
//! another region) and [`compare`] judges every prediction. Failover's
//! verification, failback's steps and drills all judge a region this way.

use std::time::Duration;

use serde_json::{Number, Value, json};

use crate::topology::{Model, Tolerance, Workload};

/// The variable holding the gateway's base URL that golden requests go
/// through (`https://gateway-xyz.a.run.app`, or the local cloud's
/// `http://127.0.0.1:8080/gateway`).
pub const GATEWAY_URL_VARIABLE: &str = "LIFEBOAT_GATEWAY_URL";

/// How long one golden request may take: as long as a prediction through
/// the gateway may.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A gateway base URL that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{url:?} is not a gateway URL (http or https, e.g. https://gateway-xyz.a.run.app): {reason}"
)]
pub struct InvalidGatewayUrl {
    /// The URL as given.
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a region failed a workload's golden requests.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum GoldenFailure {
    /// The request got no 2xx answer (unreachable, timed out, 4xx, 5xx).
    #[error("{region} did not answer golden request {request} of model {model}: {reason}")]
    Unanswered {
        /// The region judged.
        region: String,
        /// The model's asset id.
        model: String,
        /// The request's index in the model's `golden-requests`.
        request: usize,
        /// What came back instead.
        reason: String,
    },
    /// A 2xx answer without one prediction per instance.
    #[error(
        "{region} answered golden request {request} of model {model} without its predictions: {reason}"
    )]
    Malformed {
        /// The region judged.
        region: String,
        /// The model's asset id.
        model: String,
        /// The request's index in the model's `golden-requests`.
        request: usize,
        /// What is wrong with the answer.
        reason: String,
    },
    /// A 2xx answer with a prediction that is not the expected one.
    #[error(
        "{region} answered golden request {request} of model {model} wrong: instance {instance} \
         {sent}: expected {expected}, got {got}{at} (tolerance {tolerance})",
        at = if at.is_empty() { String::new() } else { format!(" (differs at {at})") }
    )]
    Wrong {
        /// The region judged.
        region: String,
        /// The model's asset id.
        model: String,
        /// The request's index in the model's `golden-requests`.
        request: usize,
        /// The instance's index in the request.
        instance: usize,
        /// The instance sent.
        sent: Value,
        /// The prediction expected.
        expected: Value,
        /// The prediction answered.
        got: Value,
        /// Where inside the prediction the first difference is (`.scores[1]`),
        /// empty when the prediction is a plain value.
        at: String,
        /// The tolerance the numbers were compared with.
        tolerance: Tolerance,
    },
}

/// A region that answered every golden request right.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoldenPass {
    /// The region judged.
    pub region: String,
    /// Golden requests sent.
    pub requests: usize,
    /// Predictions compared.
    pub predictions: usize,
}

impl std::fmt::Display for GoldenPass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} answered {} golden requests right ({} predictions)",
            self.region, self.requests, self.predictions
        )
    }
}

/// Where `expected` and `got` first differ beyond `tolerance`.
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    /// The path inside the values (`.label`, `[2]`), empty at the top.
    pub at: String,
    /// The expected part there.
    pub expected: Value,
    /// The answered part there.
    pub got: Value,
}

/// Compares an answered prediction with the expected one: numbers may
/// differ by `tolerance` (absolute), everything else must be equal, through
/// arrays (same length) and objects (same keys) alike.
pub fn compare(expected: &Value, got: &Value, tolerance: Tolerance) -> Result<(), Difference> {
    let differ = |at: String| Difference {
        at,
        expected: expected.clone(),
        got: got.clone(),
    };
    match (expected, got) {
        (Value::Number(e), Value::Number(g)) => {
            if numbers_within(e, g, tolerance.get()) {
                Ok(())
            } else {
                Err(differ(String::new()))
            }
        }
        (Value::Array(e), Value::Array(g)) => {
            if e.len() != g.len() {
                return Err(differ(String::new()));
            }
            for (i, (e, g)) in e.iter().zip(g).enumerate() {
                compare(e, g, tolerance).map_err(|inner| nested(format!("[{i}]"), inner))?;
            }
            Ok(())
        }
        (Value::Object(e), Value::Object(g)) => {
            if e.len() != g.len() || e.keys().any(|k| !g.contains_key(k)) {
                return Err(differ(String::new()));
            }
            for (key, e) in e {
                compare(e, &g[key], tolerance).map_err(|inner| nested(format!(".{key}"), inner))?;
            }
            Ok(())
        }
        _ if expected == got => Ok(()),
        _ => Err(differ(String::new())),
    }
}

/// `inner`, found under `step`.
fn nested(step: String, inner: Difference) -> Difference {
    Difference {
        at: step + &inner.at,
        ..inner
    }
}

/// Whether two numbers are at most `tolerance` apart; integers are compared
/// exactly (an f64 cannot tell large neighbours apart).
fn numbers_within(expected: &Number, got: &Number, tolerance: f64) -> bool {
    fn integer(n: &Number) -> Option<i128> {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    }
    match (integer(expected), integer(got)) {
        // Exact up to 2^53, which is all a tolerance can tell apart.
        #[allow(clippy::cast_precision_loss)]
        (Some(e), Some(g)) => e == g || (e - g).unsigned_abs() as f64 <= tolerance,
        _ => match (expected.as_f64(), got.as_f64()) {
            (Some(e), Some(g)) => (e - g).abs() <= tolerance,
            _ => false,
        },
    }
}

/// Whether any model of `workload` declares golden requests.
pub fn declared(workload: &Workload) -> bool {
    workload
        .assets
        .models
        .iter()
        .any(|m| !m.golden_requests.is_empty())
}

/// Sends golden requests through one gateway. Cheap to clone.
#[derive(Clone, Debug)]
pub struct GoldenClient {
    base: String,
    client: reqwest::Client,
}

impl GoldenClient {
    /// A client sending through the gateway at `base_url`.
    pub fn new(base_url: &str) -> Result<Self, InvalidGatewayUrl> {
        let invalid = |reason: String| InvalidGatewayUrl {
            url: base_url.to_string(),
            reason,
        };
        let url = reqwest::Url::parse(base_url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!("scheme {} is not http(s)", url.scheme())));
        }
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            base: base_url.trim_end_matches('/').to_string(),
            client,
        })
    }

    /// The gateway's URL that sends a prediction of `model` of `workload`
    /// to `region` only.
    pub fn pinned_url(&self, region: &str, workload: &str, model: &str) -> String {
        format!("{}/regions/{region}/predict/{workload}/{model}", self.base)
    }

    /// Sends every golden request of every model of `workload` to `region`
    /// through the gateway, in order, and judges the answers; the first
    /// failure ends the check.
    pub async fn check(
        &self,
        workload: &Workload,
        region: &str,
    ) -> Result<GoldenPass, GoldenFailure> {
        let mut pass = GoldenPass {
            region: region.to_string(),
            requests: 0,
            predictions: 0,
        };
        for model in &workload.assets.models {
            let one = self.check_model(workload, model, region).await?;
            pass.requests += one.requests;
            pass.predictions += one.predictions;
        }
        Ok(pass)
    }

    /// Sends the golden requests of one `model` of `workload` to `region`
    /// through the gateway, in order, and judges the answers; the first
    /// failure ends the check. A model declaring none passes with nothing
    /// sent.
    pub async fn check_model(
        &self,
        workload: &Workload,
        model: &Model,
        region: &str,
    ) -> Result<GoldenPass, GoldenFailure> {
        let mut pass = GoldenPass {
            region: region.to_string(),
            requests: 0,
            predictions: 0,
        };
        let url = self.pinned_url(region, workload.id.as_str(), model.id.as_str());
        for (index, golden) in model.golden_requests.iter().enumerate() {
            let unanswered = |reason: String| GoldenFailure::Unanswered {
                region: region.to_string(),
                model: model.id.to_string(),
                request: index,
                reason,
            };
            let malformed = |reason: String| GoldenFailure::Malformed {
                region: region.to_string(),
                model: model.id.to_string(),
                request: index,
                reason,
            };
            let response = self
                .client
                .post(&url)
                .json(&json!({ "instances": golden.instances }))
                .send()
                .await
                .map_err(|e| unanswered(e.to_string()))?;
            let status = response.status();
            let body = response
                .bytes()
                .await
                .map_err(|e| unanswered(format!("the answer broke off: {e}")))?;
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body);
                let text: String = text.chars().take(200).collect();
                return Err(unanswered(format!("HTTP {status}: {text}")));
            }
            let answer: Value =
                serde_json::from_slice(&body).map_err(|e| malformed(format!("not JSON: {e}")))?;
            let Some(predictions) = answer.get("predictions").and_then(Value::as_array) else {
                return Err(malformed("no `predictions` list".to_string()));
            };
            if predictions.len() != golden.instances.len() {
                return Err(malformed(format!(
                    "{} predictions for {} instances",
                    predictions.len(),
                    golden.instances.len()
                )));
            }
            let expected = golden.predictions.iter().zip(predictions);
            for (instance, (expected, got)) in expected.enumerate() {
                if let Err(difference) = compare(expected, got, golden.tolerance) {
                    let failure = GoldenFailure::Wrong {
                        region: region.to_string(),
                        model: model.id.to_string(),
                        request: index,
                        instance,
                        sent: golden.instances[instance].clone(),
                        expected: expected.clone(),
                        got: got.clone(),
                        at: difference.at,
                        tolerance: golden.tolerance,
                    };
                    tracing::warn!(%failure, "golden request answered wrong");
                    return Err(failure);
                }
            }
            pass.requests += 1;
            pass.predictions += predictions.len();
        }
        Ok(pass)
    }
}

#[cfg(test)]
mod tests;
