//! Golden requests: a region is healthy for a workload when it answers the
//! golden requests its models declare in the topology (instances and the
//! expected predictions, with a tolerance) right, through the front door.
//! [`GoldenClient::check`] sends each one through the gateway's pinned route
//! (`/regions/{region}/predict/{workload}/{model}`, which never retries in
//! another region) and [`compare`] judges every prediction. Failover's
//! verification, failback's steps and drills all judge a region this way.

use std::time::Duration;

use serde_json::{Number, Value, json};

use crate::routing::{ATTEMPTS_HEADER, REGION_HEADER};
use crate::topology::{GoldenRequest, Model, Tolerance, Workload};

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

    /// The gateway's URL that sends a prediction of `model` of `workload`
    /// where the routing table says, retrying in another region as the
    /// gateway does for every client: the front door as clients see it.
    pub fn front_door_url(&self, workload: &str, model: &str) -> String {
        format!("{}/predict/{workload}/{model}", self.base)
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
            let asked = Asked {
                url: &url,
                region,
                model: model.id.as_str(),
                index,
                golden,
            };
            let answered = self.ask(&asked).await;
            pass.predictions += answered.judged?;
            pass.requests += 1;
        }
        Ok(pass)
    }

    /// Sends golden request `index` of `model` of `workload` through the
    /// front door ([`GoldenClient::front_door_url`]) and judges the answer,
    /// telling which region answered and in how many attempts: a drill's
    /// view of what clients get.
    pub async fn probe_front_door(
        &self,
        workload: &str,
        model: &str,
        index: usize,
        golden: &GoldenRequest,
    ) -> Answered {
        let url = self.front_door_url(workload, model);
        self.ask(&Asked {
            url: &url,
            region: "the front door",
            model,
            index,
            golden,
        })
        .await
    }

    /// Sends one golden request and judges its answer.
    async fn ask(&self, asked: &Asked<'_>) -> Answered {
        let Asked {
            url,
            region,
            model,
            index,
            golden,
        } = *asked;
        let mut answered = Answered {
            region: None,
            attempts: 0,
            judged: Ok(0),
        };
        let unanswered = |reason: String| GoldenFailure::Unanswered {
            region: region.to_string(),
            model: model.to_string(),
            request: index,
            reason,
        };
        let malformed = |reason: String| GoldenFailure::Malformed {
            region: region.to_string(),
            model: model.to_string(),
            request: index,
            reason,
        };
        let response = match self
            .client
            .post(url)
            .json(&json!({ "instances": golden.instances }))
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => {
                answered.judged = Err(unanswered(error.to_string()));
                return answered;
            }
        };
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        answered.region = header(REGION_HEADER);
        answered.attempts = header(ATTEMPTS_HEADER)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let status = response.status();
        answered.judged = async {
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
                        region: answered
                            .region
                            .clone()
                            .unwrap_or_else(|| region.to_string()),
                        model: model.to_string(),
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
            Ok(predictions.len())
        }
        .await;
        answered
    }
}

/// One golden request to send, and what to name in a failure.
#[derive(Clone, Copy)]
struct Asked<'a> {
    url: &'a str,
    region: &'a str,
    model: &'a str,
    index: usize,
    golden: &'a GoldenRequest,
}

/// What became of one golden request.
#[derive(Debug)]
pub struct Answered {
    /// The region that answered, as the gateway says.
    pub region: Option<String>,
    /// How many regions the gateway tried (0 when it did not say).
    pub attempts: u32,
    /// The number of predictions judged right, or why the answer is not
    /// right.
    pub judged: Result<usize, GoldenFailure>,
}

#[cfg(test)]
mod tests;
