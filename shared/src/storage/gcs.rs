//! Cloud Storage through its JSON API, over reqwest.
//!
//! The official crate sends the control operations (rewrite, list, get
//! metadata, delete) over gRPC, which fake-gcs-server only partly serves; the
//! JSON API is served by both, and `objects.rewrite` is the call that copies
//! across buckets and regions without the bytes passing through us.
//!
//! Uploads are `multipart/related` requests whose body is streamed with
//! chunked transfer encoding, so memory stays bounded whatever the object's
//! size; the CRC32C is computed on the way and checked against the one the
//! server reports.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;

use super::name::check_object_name;
use super::{
    ByteStream, CopyOptions, ListPage, ObjectMeta, ObjectRef, ObjectStore, PutOptions,
    StorageError, verified_stream,
};
use crate::gcp::{ApiEndpoint, deadline};

/// Everything but the unreserved characters of RFC 3986 is escaped in a path
/// segment, so `/`, `#`, `?`, `%` and spaces in object names stay in the name.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Objects per listing page unless told otherwise (the API's maximum).
pub const DEFAULT_LIST_PAGE_SIZE: u32 = 1000;

/// Cloud Storage (or fake-gcs-server) as an [`ObjectStore`].
#[derive(Clone, Debug)]
pub struct GcsStore {
    endpoint: ApiEndpoint,
    client: reqwest::Client,
    project: String,
    list_page_size: u32,
    /// The deadline of each call but the two that stream an object's bytes
    /// (held to [`deadline::STALL_TIMEOUT`] between reads instead).
    call_timeout: Duration,
}

impl GcsStore {
    /// A store reaching Cloud Storage at `endpoint`; buckets it creates belong
    /// to `project`. The HTTP client is built here once and shared by clones.
    pub fn new(endpoint: ApiEndpoint, project: impl Into<String>) -> Self {
        Self {
            endpoint,
            client: deadline::http_client(deadline::STALL_TIMEOUT),
            project: project.into(),
            list_page_size: DEFAULT_LIST_PAGE_SIZE,
            call_timeout: deadline::CALL_TIMEOUT,
        }
    }

    /// The same store giving each metadata call (head, list page, delete,
    /// rewrite step, bucket calls) `call` to answer, and failing an upload or
    /// download that goes silent for `stall`; either failure is a transient
    /// [`StorageError::Backend`]. The defaults are
    /// [`deadline::CALL_TIMEOUT`] and [`deadline::STALL_TIMEOUT`].
    pub fn with_deadlines(mut self, call: Duration, stall: Duration) -> Self {
        self.call_timeout = call;
        self.client = deadline::http_client(stall);
        self
    }

    /// The same store asking for at most `size` objects per listing page
    /// (at least 1).
    pub fn with_list_page_size(mut self, size: u32) -> Self {
        self.list_page_size = size.max(1);
        self
    }

    /// One page of `objects.list` with `query` (a prefix or a name range).
    async fn list_page(
        &self,
        context: &str,
        bucket: &str,
        query: &[(&str, &str)],
        page_token: Option<&str>,
    ) -> Result<ListPage, StorageError> {
        let page_size = self.list_page_size.to_string();
        let mut pairs = query.to_vec();
        pairs.push(("maxResults", &page_size));
        if let Some(token) = page_token {
            pairs.push(("pageToken", token));
        }
        let url = self.url(
            context,
            &format!("/storage/v1/b/{}/o", encode(bucket)),
            &pairs,
        )?;
        let request = self.client.get(url).timeout(self.call_timeout);
        let listed: ObjectList = self
            .call_json(context, &Subject::Bucket(bucket), request)
            .await?;
        let objects = listed
            .items
            .into_iter()
            .map(|item| item.into_meta(context))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ListPage {
            objects,
            next_page_token: listed.next_page_token.filter(|token| !token.is_empty()),
        })
    }

    fn object_path(object: &ObjectRef) -> String {
        format!(
            "/storage/v1/b/{}/o/{}",
            encode(&object.bucket),
            encode(&object.name)
        )
    }

    /// `path` under the endpoint with the query `pairs`, encoded.
    fn url(&self, context: &str, path: &str, pairs: &[(&str, &str)]) -> Result<Url, StorageError> {
        let mut url = Url::parse(&format!("{}{path}", self.endpoint.base_url))
            .map_err(|error| backend(context, error))?;
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        Ok(url)
    }

    /// Authorizes and sends `request`; a connection failure is transient.
    async fn send(&self, context: &str, request: RequestBuilder) -> Result<Response, StorageError> {
        let request = self
            .endpoint
            .credentials
            .authorize(request)
            .await
            .map_err(|error| backend(context, error))?;
        request
            .send()
            .await
            .map_err(|error| backend(context, error))
    }

    /// Sends `request` and turns any answer but a 2xx into the error it means.
    async fn call(
        &self,
        context: &str,
        subject: &Subject<'_>,
        request: RequestBuilder,
    ) -> Result<Response, StorageError> {
        let response = self.send(context, request).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(answer_error(context, subject, response).await)
    }

    async fn call_json<T: for<'de> Deserialize<'de>>(
        &self,
        context: &str,
        subject: &Subject<'_>,
        request: RequestBuilder,
    ) -> Result<T, StorageError> {
        let response = self.call(context, subject, request).await?;
        let body = response
            .bytes()
            .await
            .map_err(|error| backend(context, error))?;
        serde_json::from_slice(&body).map_err(|error| backend(context, error))
    }
}

/// What a 404 or 412 is about.
enum Subject<'a> {
    Object(&'a ObjectRef),
    Bucket(&'a str),
}

fn encode(segment: &str) -> String {
    utf8_percent_encode(segment, PATH_SEGMENT).to_string()
}

fn backend(
    context: &str,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> StorageError {
    StorageError::Backend {
        context: context.to_string(),
        source: source.into(),
    }
}

/// A 5xx (or 408/429) answer, kept as the source of a transient error.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}: {message}")]
struct ServerError {
    status: u16,
    message: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: String,
}

async fn answer_error(context: &str, subject: &Subject<'_>, response: Response) -> StorageError {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    let message = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(parsed) => parsed.error.message,
        Err(_) => String::from_utf8_lossy(&body).trim().to_string(),
    };
    match status {
        StatusCode::NOT_FOUND => match subject {
            Subject::Bucket(bucket) => StorageError::BucketNotFound {
                bucket: bucket.to_string(),
            },
            // Cloud Storage says "The specified bucket does not exist." when
            // the bucket is the missing part.
            Subject::Object(object) if message.to_ascii_lowercase().contains("bucket") => {
                StorageError::BucketNotFound {
                    bucket: object.bucket.clone(),
                }
            }
            Subject::Object(object) => StorageError::NotFound {
                object: (*object).clone(),
            },
        },
        StatusCode::PRECONDITION_FAILED => StorageError::PreconditionFailed {
            object: match subject {
                Subject::Object(object) => (*object).clone(),
                Subject::Bucket(bucket) => ObjectRef::new(*bucket, ""),
            },
            detail: format!("{context}: {message}"),
        },
        status
            if status.is_server_error()
                || status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT =>
        {
            backend(
                context,
                ServerError {
                    status: status.as_u16(),
                    message,
                },
            )
        }
        status => StorageError::Rejected {
            context: context.to_string(),
            status: status.as_u16(),
            message,
        },
    }
}

/// An object resource as the JSON API returns it (numbers are strings).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectResource {
    bucket: String,
    name: String,
    generation: String,
    size: String,
    crc32c: Option<String>,
    content_type: Option<String>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    updated: Option<DateTime<Utc>>,
}

impl ObjectResource {
    fn into_meta(self, context: &str) -> Result<ObjectMeta, StorageError> {
        let object = ObjectRef::new(self.bucket, self.name);
        let invalid = |what: &str, value: &str| {
            backend(
                context,
                format!("{object}: the server answered an invalid {what} {value:?}"),
            )
        };
        let generation = self
            .generation
            .parse()
            .map_err(|_| invalid("generation", &self.generation))?;
        let size = self.size.parse().map_err(|_| invalid("size", &self.size))?;
        let crc_text = self.crc32c.unwrap_or_default();
        let crc32c = decode_crc32c(&crc_text).ok_or_else(|| invalid("crc32c", &crc_text))?;
        Ok(ObjectMeta {
            object,
            generation,
            size,
            crc32c,
            content_type: self.content_type,
            metadata: self.metadata.unwrap_or_default(),
            updated: self.updated.unwrap_or_else(Utc::now),
        })
    }
}

/// The JSON API's crc32c: base64 of the big-endian u32.
fn decode_crc32c(text: &str) -> Option<u32> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectList {
    #[serde(default)]
    items: Vec<ObjectResource>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RewriteResponse {
    done: bool,
    rewrite_token: Option<String>,
    resource: Option<ObjectResource>,
}

/// What the upload body saw go through: its CRC32C and size, and the error
/// of the caller's stream if it failed (reqwest only keeps its message).
#[derive(Default)]
struct UploadTally {
    crc: u32,
    size: u64,
    body_error: Option<StorageError>,
}

#[async_trait]
impl ObjectStore for GcsStore {
    async fn create_bucket(&self, bucket: &str, location: &str) -> Result<(), StorageError> {
        let context = format!("create bucket {bucket} in {location}");
        let url = self.url(&context, "/storage/v1/b", &[("project", &self.project)])?;
        let request = self
            .client
            .post(url)
            .timeout(self.call_timeout)
            .json(&serde_json::json!({ "name": bucket, "location": location }));
        let response = self.send(&context, request).await?;
        if response.status().is_success() || response.status() == StatusCode::CONFLICT {
            return Ok(());
        }
        Err(answer_error(&context, &Subject::Bucket(bucket), response).await)
    }

    async fn bucket_location(&self, bucket: &str) -> Result<Option<String>, StorageError> {
        #[derive(Deserialize)]
        struct Located {
            location: Option<String>,
        }
        let context = format!("location of bucket {bucket}");
        let url = self.url(
            &context,
            &format!("/storage/v1/b/{}", encode(bucket)),
            &[("fields", "location")],
        )?;
        let located: Located = self
            .call_json(
                &context,
                &Subject::Bucket(bucket),
                self.client.get(url).timeout(self.call_timeout),
            )
            .await?;
        Ok(located.location.filter(|l| !l.is_empty()))
    }

    async fn put(
        &self,
        object: &ObjectRef,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        check_object_name(object)?;
        let context = format!("put {object}");
        let boundary = format!("lifeboat-{}", uuid::Uuid::new_v4().simple());
        let content_type = options
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".to_string());
        let mut resource = serde_json::json!({ "name": object.name, "metadata": options.metadata });
        if let Some(content_type) = &options.content_type {
            resource["contentType"] = serde_json::Value::from(content_type.as_str());
        }
        let preamble = format!(
            "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{resource}\r\n\
             --{boundary}\r\nContent-Type: {content_type}\r\n\r\n"
        );
        let epilogue = format!("\r\n--{boundary}--\r\n");

        let tally = Arc::new(Mutex::new(UploadTally::default()));
        let seen = Arc::clone(&tally);
        let media = body.map(move |item| {
            let mut tally = seen.lock().unwrap_or_else(PoisonError::into_inner);
            match item {
                Ok(chunk) => {
                    tally.crc = crc32c::crc32c_append(tally.crc, &chunk);
                    tally.size += chunk.len() as u64;
                    Ok(chunk)
                }
                Err(error) => {
                    tally.body_error = Some(error);
                    Err(std::io::Error::other("the object's content stream failed"))
                }
            }
        });
        let stream = futures::stream::once(async move { Ok(Bytes::from(preamble)) })
            .chain(media)
            .chain(futures::stream::once(
                async move { Ok(Bytes::from(epilogue)) },
            ));

        let generation = options.if_generation_match.map(|g| g.to_string());
        let mut pairs = vec![("uploadType", "multipart")];
        if let Some(generation) = &generation {
            pairs.push(("ifGenerationMatch", generation));
        }
        let path = format!("/upload/storage/v1/b/{}/o", encode(&object.bucket));
        let url = self.url(&context, &path, &pairs)?;
        let request = self
            .client
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/related; boundary={boundary}"),
            )
            .body(reqwest::Body::wrap_stream(stream));
        let outcome: Result<ObjectResource, StorageError> = self
            .call_json(&context, &Subject::Bucket(&object.bucket), request)
            .await;
        let (sent_crc, sent_size, body_error) = {
            let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
            (tally.crc, tally.size, tally.body_error.take())
        };
        if let Some(error) = body_error {
            return Err(error);
        }
        let stored = match outcome {
            Ok(resource) => resource.into_meta(&context)?,
            // A precondition is about the object, not the bucket.
            Err(StorageError::PreconditionFailed { detail, .. }) => {
                return Err(StorageError::PreconditionFailed {
                    object: object.clone(),
                    detail,
                });
            }
            Err(error) => return Err(error),
        };
        if stored.crc32c != sent_crc || stored.size != sent_size {
            // Never leave a corrupted generation behind as the live object.
            let _ = self.delete(object, Some(stored.generation)).await;
            return Err(StorageError::Verification {
                object: object.clone(),
                detail: format!(
                    "sent {sent_size} bytes with crc32c {sent_crc:08x}, the server stored {} \
                     bytes with crc32c {:08x}",
                    stored.size, stored.crc32c
                ),
            });
        }
        Ok(stored)
    }

    async fn get(&self, object: &ObjectRef) -> Result<(ObjectMeta, ByteStream), StorageError> {
        let meta = self.head(object).await?;
        let context = format!("get {object} generation {}", meta.generation);
        let generation = meta.generation.to_string();
        let url = self.url(
            &context,
            &Self::object_path(object),
            &[("alt", "media"), ("generation", &generation)],
        )?;
        let request = self.client.get(url);
        let response = self
            .call(&context, &Subject::Object(object), request)
            .await?;
        let body = response
            .bytes_stream()
            .map_err(move |error| backend(&context, error));
        Ok((meta.clone(), verified_stream(meta, Box::pin(body))))
    }

    async fn head(&self, object: &ObjectRef) -> Result<ObjectMeta, StorageError> {
        check_object_name(object)?;
        let context = format!("head {object}");
        let request = self
            .client
            .get(self.url(&context, &Self::object_path(object), &[])?)
            .timeout(self.call_timeout);
        let resource: ObjectResource = self
            .call_json(&context, &Subject::Object(object), request)
            .await?;
        resource.into_meta(&context)
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        page_token: Option<&str>,
    ) -> Result<ListPage, StorageError> {
        let context = format!("list gs://{bucket}/{prefix}*");
        self.list_page(&context, bucket, &[("prefix", prefix)], page_token)
            .await
    }

    async fn list_range(
        &self,
        bucket: &str,
        first: &str,
        last: &str,
        page_token: Option<&str>,
    ) -> Result<ListPage, StorageError> {
        let context = format!("list gs://{bucket} from {first:?} to {last:?}");
        // endOffset excludes its value: the smallest name after `last` is
        // `last` followed by U+0000.
        let end = format!("{last}\0");
        // Every name between the two starts with what they share: naming it
        // lets the server look only there.
        let prefix = shared_prefix(first, last);
        let mut range = vec![("startOffset", first), ("endOffset", end.as_str())];
        if !prefix.is_empty() {
            range.push(("prefix", prefix));
        }
        self.list_page(&context, bucket, &range, page_token).await
    }

    async fn delete(
        &self,
        object: &ObjectRef,
        if_generation_match: Option<i64>,
    ) -> Result<(), StorageError> {
        check_object_name(object)?;
        let context = format!("delete {object}");
        let generation = if_generation_match.map(|g| g.to_string());
        let mut pairs = Vec::new();
        if let Some(generation) = &generation {
            pairs.push(("ifGenerationMatch", generation.as_str()));
        }
        let url = self.url(&context, &Self::object_path(object), &pairs)?;
        let request = self.client.delete(url).timeout(self.call_timeout);
        self.call(&context, &Subject::Object(object), request)
            .await?;
        Ok(())
    }

    async fn copy(
        &self,
        source: &ObjectRef,
        destination: &ObjectRef,
        options: CopyOptions,
    ) -> Result<ObjectMeta, StorageError> {
        check_object_name(source)?;
        check_object_name(destination)?;
        let context = format!("copy {source} -> {destination}");
        // A copy is always pinned to one source generation, so it never mixes
        // two versions. A caller that names the generation already holds the
        // source's metadata and verifies the replica itself
        // (`storage::replica::replicate`): the rewrite alone enforces the pin,
        // and no extra read precedes it. Otherwise the source is read here,
        // for its generation and to verify the replica against.
        let (generation, original) = match options.if_source_generation_match {
            Some(pinned) => (pinned, None),
            None => {
                let original = self.head(source).await?;
                (original.generation, Some(original))
            }
        };
        let generation_text = generation.to_string();
        let path = format!(
            "{}/rewriteTo/b/{}/o/{}",
            Self::object_path(source),
            encode(&destination.bucket),
            encode(&destination.name)
        );
        let mut rewrite_token: Option<String> = None;
        let resource = loop {
            // The precondition alone pins the live generation: naming it
            // again in `sourceGeneration` would only add a versioned lookup
            // (which fake-gcs-server makes cost twice the copy).
            let mut pairs = vec![("ifSourceGenerationMatch", generation_text.as_str())];
            if let Some(token) = &rewrite_token {
                pairs.push(("rewriteToken", token));
            }
            let request = self
                .client
                .post(self.url(&context, &path, &pairs)?)
                .timeout(self.call_timeout)
                .json(&serde_json::json!({}));
            let answer: Result<RewriteResponse, StorageError> = self
                .call_json(&context, &Subject::Object(source), request)
                .await;
            let answer = match answer {
                Ok(answer) => answer,
                Err(StorageError::NotFound { .. } | StorageError::BucketNotFound { .. }) => {
                    return Err(self
                        .explain_missing_copy(source, destination, generation)
                        .await);
                }
                Err(error) => return Err(error),
            };
            if answer.done {
                break answer.resource.ok_or_else(|| {
                    backend(&context, "the rewrite finished without the new object")
                })?;
            }
            match answer.rewrite_token.filter(|token| !token.is_empty()) {
                Some(token) => rewrite_token = Some(token),
                None => {
                    return Err(backend(
                        &context,
                        "the rewrite is not done but gave no rewriteToken",
                    ));
                }
            }
        };
        let replica = resource.into_meta(&context)?;
        if let Some(original) = original
            && !original.verifies(&replica)
        {
            return Err(StorageError::Verification {
                object: destination.clone(),
                detail: format!(
                    "{context}: source has {} bytes with crc32c {:08x}, replica {} bytes with \
                     crc32c {:08x}",
                    original.size, original.crc32c, replica.size, replica.crc32c
                ),
            });
        }
        Ok(replica)
    }
}

/// The longest start `a` and `b` share, ending on a character boundary.
fn shared_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let mut end = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    while !a.is_char_boundary(end) {
        end -= 1;
    }
    &a[..end]
}

impl GcsStore {
    /// A rewrite answered 404 with the source generation pinned: either that
    /// generation is gone (replaced or deleted meanwhile) or the destination
    /// bucket does not exist. Asking the source tells which.
    async fn explain_missing_copy(
        &self,
        source: &ObjectRef,
        destination: &ObjectRef,
        generation: i64,
    ) -> StorageError {
        match self.head(source).await {
            Ok(live) if live.generation == generation => StorageError::BucketNotFound {
                bucket: destination.bucket.clone(),
            },
            Ok(live) => StorageError::PreconditionFailed {
                object: source.clone(),
                detail: format!(
                    "copy {source} -> {destination}: source generation {generation} was \
                     replaced by {} during the copy",
                    live.generation
                ),
            },
            Err(error) => error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_except_unreserved_characters() {
        assert_eq!(encode("a/b c#?%"), "a%2Fb%20c%23%3F%25");
        assert_eq!(encode("A-z_0.9~"), "A-z_0.9~");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn crc32c_is_base64_of_big_endian() {
        // crc32c("hello") = 0x9a71bb4c, as fake-gcs-server reports it.
        assert_eq!(decode_crc32c("mnG7TA=="), Some(0x9a71_bb4c));
        assert_eq!(crc32c::crc32c(b"hello"), 0x9a71_bb4c);
        assert_eq!(decode_crc32c("mnG7"), None);
        assert_eq!(decode_crc32c("not base64!"), None);
    }

    #[test]
    fn a_range_shares_its_ends_prefix_up_to_a_character() {
        assert_eq!(
            shared_prefix("small/042/a 1", "small/042/b 9"),
            "small/042/"
        );
        assert_eq!(shared_prefix("same", "same"), "same");
        assert_eq!(shared_prefix("a", "b"), "");
        // "é" is C3 A9 and "ê" C3 AA: they share a byte, not a character.
        assert_eq!(shared_prefix("xé", "xê"), "x");
    }
}

/// How `GcsStore` reads answers Cloud Storage gives and the emulator cannot
/// be made to give: a corrupted upload, a 5xx, a refusal. A small HTTP
/// server on a real socket plays the part.
#[cfg(test)]
mod answers {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::http::StatusCode as Status;
    use axum::routing::{delete, get, post};

    use super::*;
    use crate::storage::bytes_stream;

    async fn serve(router: Router) -> GcsStore {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        GcsStore::new(ApiEndpoint::emulator(&address.to_string()), "project")
    }

    #[tokio::test]
    async fn a_stored_crc32c_that_differs_fails_verification_and_is_removed() {
        static DELETES: AtomicUsize = AtomicUsize::new(0);
        let router = Router::new()
            .route(
                "/upload/storage/v1/b/{bucket}/o",
                post(|body: axum::body::Bytes| async move {
                    assert!(body.windows(5).any(|window| window == b"hello"));
                    axum::Json(serde_json::json!({
                        "bucket": "b", "name": "x", "generation": "7", "size": "5",
                        "crc32c": "AAAAAA==",
                    }))
                }),
            )
            .route(
                "/storage/v1/b/{bucket}/o/{name}",
                delete(|| async {
                    DELETES.fetch_add(1, Ordering::SeqCst);
                    Status::NO_CONTENT
                }),
            );
        let store = serve(router).await;
        let object = ObjectRef::new("b", "x");
        match store
            .put(&object, bytes_stream("hello"), PutOptions::default())
            .await
        {
            Err(StorageError::Verification {
                object: bad,
                detail,
            }) => {
                assert_eq!(bad, object);
                assert!(detail.contains("9a71bb4c"), "{detail}");
            }
            other => panic!("expected Verification, got {other:?}"),
        }
        assert_eq!(
            DELETES.load(Ordering::SeqCst),
            1,
            "the bad generation stays"
        );
    }

    #[tokio::test]
    async fn server_errors_are_transient_and_refusals_carry_the_message() {
        let router = Router::new()
            .route(
                "/storage/v1/b/{bucket}/o/{name}",
                get(|| async { (Status::SERVICE_UNAVAILABLE, "backend busy") }),
            )
            .route(
                "/storage/v1/b/{bucket}/o",
                get(|| async {
                    (
                        Status::FORBIDDEN,
                        axum::Json(serde_json::json!({
                            "error": { "code": 403, "message": "caller lacks storage.objects.list" }
                        })),
                    )
                }),
            );
        let store = serve(router).await;
        let object = ObjectRef::new("bucket", "dir/name");
        let error = store.head(&object).await.expect_err("503");
        assert!(error.is_transient(), "{error:?}");
        let text = error.to_string();
        assert!(
            text.contains("gs://bucket/dir/name") && text.contains("503"),
            "{text}"
        );

        match store.list("bucket", "p/", None).await {
            Err(error @ StorageError::Rejected { status: 403, .. }) => {
                assert!(!error.is_transient());
                let text = error.to_string();
                assert!(text.contains("storage.objects.list") && text.contains("gs://bucket/p/"));
            }
            other => panic!("expected Rejected, got {other:?}"),
        }

        let unreachable = GcsStore::new(ApiEndpoint::emulator("127.0.0.1:1"), "project");
        let error = unreachable.head(&object).await.expect_err("no server");
        assert!(error.is_transient(), "{error:?}");
    }
}
