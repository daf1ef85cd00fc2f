//! A proxy for the benches that makes fake-gcs-server cost what Cloud
//! Storage costs, so that what matters there (calls per object,
//! concurrency, listings avoided) shows on a laptop:
//!
//! - every call waits [`Shaping::delay`] before it is forwarded (25 ms by
//!   default, about a Cloud Storage call within a continent);
//! - a rewrite (`objects.rewrite`, how every tool copies between buckets)
//!   takes the object's size at [`Shaping::rewrite_bytes_per_second`], and
//!   a call lasts at most [`Shaping::rewrite_call`]: a rewrite that needs
//!   longer is answered `done: false` with a `rewriteToken` and its
//!   progress, as Cloud Storage answers a large copy across regions, and
//!   the client calls again with the token. The call that finishes it is
//!   the one forwarded, so the copy is fake-gcs-server's own;
//! - it counts the calls by kind ([`Counts`]), read and reset at
//!   `/__shaper/counts` (never delayed or counted);
//! - an object whose custom metadata holds [`SIZE_METADATA`] is rewritten
//!   in the time an object of that size takes.
//!
//! [`rewrite_all`] is the floor the benches compare with: the same
//! rewrites, bare, at a given concurrency, following their tokens.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::json;

/// The custom metadata key that makes a rewrite take as long as an object
/// of that many bytes: a bench stands an LLM-sized checkpoint (100 GiB) in
/// small objects, and the calls and their timing are those of the full
/// size while fake-gcs-server copies only the small bytes.
pub const SIZE_METADATA: &str = "shaper-size";

/// The path that answers the counts (GET) and resets them (DELETE).
pub const COUNTS_PATH: &str = "/__shaper/counts";

/// What a call costs.
#[derive(Clone, Debug)]
pub struct Shaping {
    /// How long every call waits before it is forwarded.
    pub delay: Duration,
    /// How fast a rewrite copies, per object.
    pub rewrite_bytes_per_second: u64,
    /// The longest a rewrite call lasts before it answers with a token.
    pub rewrite_call: Duration,
}

impl Default for Shaping {
    fn default() -> Self {
        Self {
            delay: Duration::from_millis(25),
            rewrite_bytes_per_second: 100 << 20,
            rewrite_call: Duration::from_secs(1),
        }
    }
}

/// The calls seen since the last reset, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Every call.
    pub calls: u64,
    /// Calls by kind: `rewrite`, `list`, `metadata`, `download`, `upload`,
    /// `delete`, `other`.
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Rewrites begun (a rewrite's first call, without a token).
    pub rewrites: u64,
}

/// A rewrite under way: when it began and how much it copies.
#[derive(Clone, Copy, Debug)]
struct Rewrite {
    began: Instant,
    size: u64,
}

/// The proxy's state. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Shaper {
    upstream: Arc<str>,
    shaping: Shaping,
    client: reqwest::Client,
    counts: Arc<Mutex<Counts>>,
    rewrites: Arc<Mutex<HashMap<String, Rewrite>>>,
    tokens: Arc<AtomicU64>,
}

/// What kind of Cloud Storage call a request is.
pub fn kind(method: &Method, path: &str, query: Option<&str>) -> &'static str {
    let media = query.is_some_and(|q| q.split('&').any(|pair| pair == "alt=media"));
    if path.starts_with("/upload/") {
        "upload"
    } else if *method == Method::POST && path.contains("/rewriteTo/") {
        "rewrite"
    } else if *method == Method::DELETE {
        "delete"
    } else if *method == Method::GET && path.ends_with("/o") {
        "list"
    } else if *method == Method::GET && media || path.starts_with("/download/") {
        "download"
    } else if *method == Method::GET && path.contains("/o/") {
        "metadata"
    } else {
        "other"
    }
}

impl Shaper {
    /// A proxy to fake-gcs-server at `upstream` (`http://host:port`).
    pub fn new(upstream: &str, shaping: Shaping) -> Self {
        Self {
            upstream: upstream.trim_end_matches('/').into(),
            shaping,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(512)
                .build()
                .unwrap_or_default(),
            counts: Arc::default(),
            rewrites: Arc::default(),
            tokens: Arc::default(),
        }
    }

    /// The calls counted since the last reset.
    pub fn counts(&self) -> Counts {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn count(&self, kind: &'static str, begins_rewrite: bool) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.calls += 1;
        *counts.by_kind.entry(kind).or_default() += 1;
        if begins_rewrite {
            counts.rewrites += 1;
        }
    }

    /// Answers one call: the counts, or the call delayed, then forwarded
    /// or (a rewrite not yet done) answered with its progress.
    async fn handle(self, request: Request) -> Response {
        if request.uri().path() == COUNTS_PATH {
            if request.method() == Method::DELETE {
                *self.counts.lock().unwrap_or_else(|e| e.into_inner()) = Counts::default();
            }
            return axum::Json(self.counts()).into_response();
        }
        let kind = kind(
            request.method(),
            request.uri().path(),
            request.uri().query(),
        );
        let token = rewrite_token(request.uri());
        self.count(kind, kind == "rewrite" && token.is_none());
        tokio::time::sleep(self.shaping.delay).await;
        let result = if kind == "rewrite" {
            self.rewrite(request, token).await
        } else {
            self.forward(request).await
        };
        result.unwrap_or_else(|error| (StatusCode::BAD_GATEWAY, error).into_response())
    }

    /// One call of a rewrite: waits until it is done, or until the call's
    /// time is up and answers its progress with a token.
    async fn rewrite(&self, request: Request, token: Option<String>) -> Result<Response, String> {
        let known = token.as_ref().and_then(|token| {
            let rewrites = self.rewrites.lock().unwrap_or_else(|e| e.into_inner());
            rewrites.get(token).copied()
        });
        let (token, rewrite) = match (token, known) {
            (Some(token), Some(rewrite)) => (token, rewrite),
            (Some(token), None) => {
                return Ok((
                    StatusCode::BAD_REQUEST,
                    format!("rewriteToken {token} is not one this proxy gave"),
                )
                    .into_response());
            }
            (None, _) => {
                let size = self.source_size(request.uri()).await?;
                let token = format!("shaper-{}", self.tokens.fetch_add(1, Ordering::Relaxed));
                let rewrite = Rewrite {
                    began: Instant::now(),
                    size,
                };
                (token, rewrite)
            }
        };
        let rate = self.shaping.rewrite_bytes_per_second.max(1) as f64;
        let done_at = rewrite.began + Duration::from_secs_f64(rewrite.size as f64 / rate);
        let call_ends = Instant::now() + self.shaping.rewrite_call;
        if done_at <= call_ends {
            tokio::time::sleep_until(done_at.into()).await;
            self.rewrites
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&token);
            return self.forward(without_token(request)).await;
        }
        self.rewrites
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.clone(), rewrite);
        tokio::time::sleep_until(call_ends.into()).await;
        let copied = (rewrite.began.elapsed().as_secs_f64() * rate) as u64;
        Ok(axum::Json(json!({
            "kind": "storage#rewriteResponse",
            "totalBytesRewritten": copied.min(rewrite.size).to_string(),
            "objectSize": rewrite.size.to_string(),
            "done": false,
            "rewriteToken": token,
        }))
        .into_response())
    }

    /// The size of a rewrite's source object, asked of fake-gcs-server
    /// (not delayed, not counted).
    async fn source_size(&self, uri: &Uri) -> Result<u64, String> {
        let path = uri.path();
        let source = &path[..path.find("/rewriteTo/").unwrap_or(path.len())];
        let url = format!("{}{source}", self.upstream);
        let metadata = json_answer(self.client.get(&url), &url).await?;
        metadata["metadata"][SIZE_METADATA]
            .as_str()
            .or_else(|| metadata["size"].as_str())
            .and_then(|size| size.parse().ok())
            .or_else(|| metadata["size"].as_u64())
            .ok_or_else(|| format!("{url}: no size in {metadata}"))
    }

    /// Sends the call on to fake-gcs-server as it came, bodies streamed.
    async fn forward(&self, request: Request) -> Result<Response, String> {
        let (parts, body) = request.into_parts();
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let url = format!("{}{target}", self.upstream);
        let mut headers = parts.headers;
        headers.remove(header::CONNECTION);
        let answer = self
            .client
            .request(parts.method, &url)
            .headers(headers)
            .body(reqwest::Body::wrap_stream(body.into_data_stream()))
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let mut response = Response::builder().status(answer.status());
        if let Some(headers) = response.headers_mut() {
            copy_end_to_end(answer.headers(), headers);
        }
        let stream = answer.bytes_stream().map_err(std::io::Error::other);
        response
            .body(Body::from_stream(stream))
            .map_err(|e| e.to_string())
    }

    /// The router: every path, shaped and forwarded.
    pub fn router(self) -> Router {
        Router::new()
            .fallback(|State(shaper): State<Shaper>, request: Request| shaper.handle(request))
            .with_state(self)
    }
}

/// Copies the headers that belong to the answer, not to its connection.
fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if name != header::CONNECTION && name != header::TRANSFER_ENCODING {
            to.append(name.clone(), value.clone());
        }
    }
}

/// The `rewriteToken` of a call, if any.
fn rewrite_token(uri: &Uri) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let value = pair.strip_prefix("rewriteToken=")?;
        Some(value.to_string())
    })
}

/// The call with its `rewriteToken` taken out: the whole rewrite, for
/// fake-gcs-server to make at once.
fn without_token(request: Request) -> Request {
    let (mut parts, body) = request.into_parts();
    let query: Vec<&str> = parts
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("rewriteToken="))
        .collect();
    let path = parts.uri.path();
    let target = if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    };
    if let Ok(uri) = target.parse() {
        parts.uri = uri;
    }
    Request::from_parts(parts, body)
}

/// Rewrites every `(source URL path, destination URL path)` pair's object
/// through `endpoint` with `concurrency` calls in flight, calling again
/// with each token until done: the least any client can do. Each pair is
/// `/storage/v1/b/SRC/o/NAME` and `/b/DST/o/NAME`, names percent-encoded.
pub async fn rewrite_all(
    endpoint: &str,
    pairs: &[(String, String)],
    concurrency: usize,
) -> Result<(), String> {
    let client = reqwest::Client::new();
    let endpoint = endpoint.trim_end_matches('/');
    futures::stream::iter(pairs)
        .map(|(source, destination)| rewrite_one(&client, endpoint, source, destination))
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await
        .map(drop)
}

/// Rewrites `source` to `destination` through `endpoint`, calling again
/// with each token until done.
async fn rewrite_one(
    client: &reqwest::Client,
    endpoint: &str,
    source: &str,
    destination: &str,
) -> Result<(), String> {
    let mut token: Option<String> = None;
    loop {
        let mut url = format!("{endpoint}{source}/rewriteTo{destination}");
        if let Some(token) = &token {
            url.push_str("?rewriteToken=");
            url.push_str(token);
        }
        let body = json_answer(client.post(&url), &url).await?;
        if body["done"] == true {
            return Ok(());
        }
        token = body["rewriteToken"].as_str().map(str::to_string);
        if token.is_none() {
            return Err(format!("{url}: not done and no rewriteToken: {body}"));
        }
    }
}

/// Sends `request` (to `url`) and reads its successful answer as JSON.
async fn json_answer(
    request: reqwest::RequestBuilder,
    url: &str,
) -> Result<serde_json::Value, String> {
    let answer = request.send().await.map_err(|e| format!("{url}: {e}"))?;
    if !answer.status().is_success() {
        return Err(format!("{url} answered {}", answer.status()));
    }
    answer.json().await.map_err(|e| format!("{url}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_by_what_they_do() {
        let cases = [
            (
                Method::POST,
                "/storage/v1/b/a/o/x/rewriteTo/b/b/o/x",
                None,
                "rewrite",
            ),
            (
                Method::GET,
                "/storage/v1/b/a/o",
                Some("prefix=p%2F"),
                "list",
            ),
            (Method::GET, "/storage/v1/b/a/o/x", None, "metadata"),
            (
                Method::GET,
                "/storage/v1/b/a/o/x",
                Some("alt=media"),
                "download",
            ),
            (
                Method::GET,
                "/download/storage/v1/b/a/o/x",
                None,
                "download",
            ),
            (
                Method::POST,
                "/upload/storage/v1/b/a/o",
                Some("uploadType=media"),
                "upload",
            ),
            (Method::DELETE, "/storage/v1/b/a/o/x", None, "delete"),
            (Method::POST, "/storage/v1/b", None, "other"),
        ];
        for (method, path, query, expected) in cases {
            assert_eq!(kind(&method, path, query), expected, "{method} {path}");
        }
    }

    #[test]
    fn the_forwarded_rewrite_has_no_token_and_keeps_the_rest() {
        let request = Request::builder()
            .uri("/storage/v1/b/a/o/x/rewriteTo/b/b/o/x?rewriteToken=shaper-3&projection=full")
            .body(Body::empty())
            .expect("request");
        assert_eq!(rewrite_token(request.uri()).as_deref(), Some("shaper-3"));
        let forwarded = without_token(request);
        assert_eq!(
            forwarded.uri().to_string(),
            "/storage/v1/b/a/o/x/rewriteTo/b/b/o/x?projection=full"
        );
    }
}
