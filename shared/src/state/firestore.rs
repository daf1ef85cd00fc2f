//! [`StateStore`] on Cloud Firestore (native mode), through its REST API v1.
//!
//! There is no official Rust data-plane client for Firestore, so this speaks
//! the few REST methods it needs with reqwest: `documents.get`,
//! `documents.list` and `documents.commit`. Every write is a `commit` of one
//! write whose `currentDocument` carries the precondition (`exists: false`
//! or `updateTime`), so compare-and-set is done by Firestore itself.
//!
//! - Version: the document's `updateTime`, passed back verbatim.
//! - Ids: checked by [`check_id`] (no `/`, `.`, `..` or `__…__`) and
//!   percent-encoded in URLs; in the request bodies and in the stored name
//!   they are kept as they are, so the console shows the caller's id.
//! - Values: JSON maps onto Firestore `Value`s one to one (`nullValue`,
//!   `booleanValue`, `integerValue` as a decimal string, `doubleValue`,
//!   `stringValue`, `arrayValue`, `mapValue`); [`check_value`] rejects what
//!   Firestore cannot hold. Reading a document written by someone else with
//!   timestamps, bytes, references or geo points fails as
//!   [`StateError::InvalidValue`].
//! - Errors: `FAILED_PRECONDITION` and `ALREADY_EXISTS` (and `ABORTED` or
//!   `NOT_FOUND` on a conditional write) are [`StateError::Conflict`];
//!   `INVALID_ARGUMENT` is [`StateError::InvalidValue`]; transport failures
//!   and every other status are [`StateError::Backend`], naming the
//!   operation and the document.

use std::time::Duration;

use async_trait::async_trait;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde_json::{Map, Number, Value, json};

use super::{
    Document, Precondition, StateError, StateStore, Version, check_collection, check_id,
    check_value,
};
use crate::gcp::{ApiEndpoint, AuthError, deadline};

/// Firestore's production REST endpoint.
pub const PRODUCTION_URL: &str = "https://firestore.googleapis.com";

/// The variable that points clients at the Firestore emulator.
pub const EMULATOR_HOST_VAR: &str = "FIRESTORE_EMULATOR_HOST";

/// The database every project has.
pub const DEFAULT_DATABASE: &str = "(default)";

/// Documents fetched per `documents.list` page.
const PAGE_SIZE: usize = 300;

/// Characters left as they are in a URL path segment or query value: the
/// unreserved ones of RFC 3986.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A Firestore error status, as the REST API reports it.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {http}: {status}: {message}")]
pub struct FirestoreStatus {
    /// The HTTP status code.
    pub http: u16,
    /// The canonical status name, e.g. `UNAVAILABLE`.
    pub status: String,
    /// Firestore's explanation.
    pub message: String,
}

/// The `error` member of an error response.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    status: String,
    #[serde(default)]
    message: String,
}

/// A document as the REST API returns it.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestDocument {
    name: String,
    #[serde(default)]
    fields: Map<String, Value>,
    update_time: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListResponse {
    #[serde(default)]
    documents: Vec<RestDocument>,
    #[serde(default)]
    next_page_token: String,
}

/// One message of a `batchGet` answer: the document, or the name of one
/// that does not exist (then `found` is absent).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchGetAnswer {
    found: Option<RestDocument>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommitResponse {
    #[serde(default)]
    write_results: Vec<WriteResult>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WriteResult {
    update_time: Option<String>,
}

/// State in one Firestore database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct FirestoreStore {
    client: reqwest::Client,
    endpoint: ApiEndpoint,
    /// `projects/{project}/databases/{database}`.
    database: String,
    /// The deadline of each call.
    call_timeout: Duration,
}

impl FirestoreStore {
    /// The store for `database` of `project` at `endpoint`, with its own HTTP
    /// client (see [`deadline::http_client_builder`]); each call has a deadline of
    /// [`deadline::DOCUMENT_CALL_TIMEOUT`].
    pub fn new(endpoint: ApiEndpoint, project: &str, database: &str) -> Result<Self, StateError> {
        let client = deadline::http_client_builder(deadline::STALL_TIMEOUT)
            .build()
            .map_err(|e| StateError::Backend {
                context: "build the Firestore HTTP client".to_string(),
                source: Box::new(e),
            })?;
        Ok(Self::with_client(client, endpoint, project, database))
    }

    /// Like [`FirestoreStore::new`], sharing an existing HTTP client.
    pub fn with_client(
        client: reqwest::Client,
        endpoint: ApiEndpoint,
        project: &str,
        database: &str,
    ) -> Self {
        Self {
            client,
            endpoint,
            database: format!("projects/{project}/databases/{database}"),
            call_timeout: deadline::DOCUMENT_CALL_TIMEOUT,
        }
    }

    /// The same store giving each call `timeout` to answer; past it the call
    /// fails as a transient [`StateError::Backend`].
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The emulator named by [`EMULATOR_HOST_VAR`] if it is set, else
    /// production Firestore with Application Default Credentials.
    pub async fn from_env(project: &str, database: &str) -> Result<Self, FromEnvError> {
        let endpoint = ApiEndpoint::from_env(EMULATOR_HOST_VAR, PRODUCTION_URL).await?;
        Ok(Self::new(endpoint, project, database)?)
    }

    /// The resource name of a document, as request bodies carry it.
    fn document_name(&self, collection: &str, id: &str) -> String {
        format!("{}/documents/{collection}/{id}", self.database)
    }

    /// The URL of a collection, with its id percent-encoded.
    fn collection_url(&self, collection: &str) -> String {
        format!(
            "{}/v1/{}/documents/{}",
            self.endpoint.base_url,
            self.database,
            utf8_percent_encode(collection, SEGMENT)
        )
    }

    /// The URL of a document, with its ids percent-encoded.
    fn document_url(&self, collection: &str, id: &str) -> String {
        format!(
            "{}/{}",
            self.collection_url(collection),
            utf8_percent_encode(id, SEGMENT)
        )
    }

    /// Authorizes and sends `request`; transport failures become
    /// [`StateError::Backend`] naming `context`.
    async fn send(
        &self,
        context: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, StateError> {
        let request = self
            .endpoint
            .credentials
            .authorize(request)
            .await
            .map_err(|e| backend(context, e))?;
        request
            .timeout(self.call_timeout)
            .send()
            .await
            .map_err(|e| backend(context, e))
    }

    /// Commits one write under `precondition` and returns the write's
    /// `updateTime`, if it has one (deletes do not).
    async fn commit(
        &self,
        op: &str,
        collection: &str,
        id: &str,
        mut write: Value,
        precondition: Precondition,
    ) -> Result<Option<String>, StateError> {
        let conditional = precondition != Precondition::None;
        match precondition {
            Precondition::None => {}
            Precondition::MustNotExist => write["currentDocument"] = json!({ "exists": false }),
            Precondition::Version(v) => write["currentDocument"] = json!({ "updateTime": v.0 }),
        }
        let context = format!("{op} {}", self.document_name(collection, id));
        let url = format!(
            "{}/v1/{}/documents:commit",
            self.endpoint.base_url, self.database
        );
        let request = self.client.post(url).json(&json!({ "writes": [write] }));
        let response = self.send(&context, request).await?;
        if !response.status().is_success() {
            return Err(failure(&context, collection, id, conditional, response).await);
        }
        let body: CommitResponse = response.json().await.map_err(|e| backend(&context, e))?;
        Ok(body
            .write_results
            .into_iter()
            .next()
            .and_then(|r| r.update_time))
    }
}

/// Why [`FirestoreStore::from_env`] failed.
#[derive(Debug, thiserror::Error)]
pub enum FromEnvError {
    /// No credentials for production Firestore.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    State(#[from] StateError),
}

/// A [`StateError::Backend`] for `context`.
fn backend(context: &str, source: impl std::error::Error + Send + Sync + 'static) -> StateError {
    StateError::Backend {
        context: context.to_string(),
        source: Box::new(source),
    }
}

/// Turns an unsuccessful response into the matching [`StateError`].
/// `conditional`: the request carried a precondition, so `NOT_FOUND` means
/// the document it expected is gone and `ABORTED` that another write won;
/// without one, `ABORTED` is contention worth a retry.
async fn failure(
    context: &str,
    collection: &str,
    id: &str,
    conditional: bool,
    response: reqwest::Response,
) -> StateError {
    let http = response.status().as_u16();
    let text = match response.text().await {
        Ok(text) => text,
        Err(e) => return backend(context, e),
    };
    let (status, message) = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => (body.error.status, body.error.message),
        Err(_) => (String::new(), text),
    };
    match status.as_str() {
        "FAILED_PRECONDITION" | "ALREADY_EXISTS" => StateError::Conflict {
            collection: collection.to_string(),
            id: id.to_string(),
            detail: message,
        },
        // Contention or a vanished document: for a conditional write the
        // caller must read again, exactly as after a failed precondition.
        "ABORTED" | "NOT_FOUND" if conditional => StateError::Conflict {
            collection: collection.to_string(),
            id: id.to_string(),
            detail: message,
        },
        "INVALID_ARGUMENT" => StateError::InvalidValue {
            collection: collection.to_string(),
            id: id.to_string(),
            reason: message,
        },
        _ => backend(
            context,
            FirestoreStatus {
                http,
                status,
                message,
            },
        ),
    }
}

/// A JSON value as a Firestore `Value`.
fn to_firestore(value: &Value) -> Value {
    match value {
        Value::Null => json!({ "nullValue": null }),
        Value::Bool(b) => json!({ "booleanValue": b }),
        Value::Number(n) => match n.as_i64() {
            Some(i) => json!({ "integerValue": i.to_string() }),
            None => json!({ "doubleValue": n.as_f64() }),
        },
        Value::String(s) => json!({ "stringValue": s }),
        Value::Array(items) => {
            json!({ "arrayValue": { "values": items.iter().map(to_firestore).collect::<Vec<_>>() } })
        }
        Value::Object(fields) => json!({ "mapValue": { "fields": to_fields(fields) } }),
    }
}

/// A JSON object as Firestore `fields`.
fn to_fields(fields: &Map<String, Value>) -> Map<String, Value> {
    fields
        .iter()
        .map(|(k, v)| (k.clone(), to_firestore(v)))
        .collect()
}

/// A Firestore `Value` as JSON; an error names what cannot be represented.
fn from_firestore(value: &Value) -> Result<Value, String> {
    let Some((kind, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return Err(format!("not a Firestore value: {value}"));
    };
    match kind.as_str() {
        "nullValue" => Ok(Value::Null),
        "booleanValue" => inner
            .as_bool()
            .map(Value::Bool)
            .ok_or_else(|| format!("bad booleanValue {inner}")),
        "integerValue" => {
            let parsed = match inner {
                Value::String(s) => s.parse::<i64>().ok(),
                other => other.as_i64(),
            };
            parsed
                .map(Value::from)
                .ok_or_else(|| format!("bad integerValue {inner}"))
        }
        "doubleValue" => inner
            .as_f64()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("doubleValue {inner} has no JSON form")),
        "stringValue" => inner
            .as_str()
            .map(|s| Value::String(s.to_string()))
            .ok_or_else(|| format!("bad stringValue {inner}")),
        "arrayValue" => match inner.get("values") {
            None => Ok(Value::Array(Vec::new())),
            Some(Value::Array(items)) => items.iter().map(from_firestore).collect(),
            Some(other) => Err(format!("bad arrayValue {other}")),
        },
        "mapValue" => match inner.get("fields") {
            None => Ok(Value::Object(Map::new())),
            Some(Value::Object(fields)) => from_fields(fields).map(Value::Object),
            Some(other) => Err(format!("bad mapValue {other}")),
        },
        other => Err(format!("Firestore type {other} has no JSON form")),
    }
}

/// Firestore `fields` as a JSON object.
fn from_fields(fields: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    fields
        .iter()
        .map(|(k, v)| from_firestore(v).map(|v| (k.clone(), v)))
        .collect()
}

/// A REST document as a [`Document`] of `collection`.
fn document(collection: &str, rest: RestDocument) -> Result<Document, StateError> {
    let id = rest.name.rsplit('/').next().unwrap_or_default().to_string();
    let value = from_fields(&rest.fields).map_err(|reason| StateError::InvalidValue {
        collection: collection.to_string(),
        id: id.clone(),
        reason,
    })?;
    Ok(Document {
        id,
        value: Value::Object(value),
        version: Version(rest.update_time),
    })
}

#[async_trait]
impl StateStore for FirestoreStore {
    async fn get(&self, collection: &str, id: &str) -> Result<Option<Document>, StateError> {
        check_id(collection, id)?;
        let context = format!("get {}", self.document_name(collection, id));
        let request = self.client.get(self.document_url(collection, id));
        let response = self.send(&context, request).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(failure(&context, collection, id, false, response).await);
        }
        let rest: RestDocument = response.json().await.map_err(|e| backend(&context, e))?;
        document(collection, rest).map(Some)
    }

    async fn put(
        &self,
        collection: &str,
        id: &str,
        value: &Value,
        precondition: Precondition,
    ) -> Result<Version, StateError> {
        check_id(collection, id)?;
        check_value(collection, id, value)?;
        let fields = value.as_object().map(to_fields).unwrap_or_default();
        let write = json!({
            "update": { "name": self.document_name(collection, id), "fields": fields }
        });
        let update_time = self
            .commit("put", collection, id, write, precondition)
            .await?;
        update_time.map(Version).ok_or_else(|| {
            backend(
                &format!("put {}", self.document_name(collection, id)),
                FirestoreStatus {
                    http: 200,
                    status: "OK".to_string(),
                    message: "commit returned no updateTime".to_string(),
                },
            )
        })
    }

    async fn delete(
        &self,
        collection: &str,
        id: &str,
        precondition: Precondition,
    ) -> Result<(), StateError> {
        check_id(collection, id)?;
        let write = json!({ "delete": self.document_name(collection, id) });
        self.commit("delete", collection, id, write, precondition)
            .await
            .map(drop)
    }

    async fn get_many(
        &self,
        collection: &str,
        ids: &[String],
    ) -> Result<Vec<Option<Document>>, StateError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        for id in ids {
            check_id(collection, id)?;
        }
        let names: Vec<String> = ids
            .iter()
            .map(|id| self.document_name(collection, id))
            .collect();
        let context = format!(
            "batchGet {} documents of {}/documents/{collection}",
            ids.len(),
            self.database
        );
        let url = format!(
            "{}/v1/{}/documents:batchGet",
            self.endpoint.base_url, self.database
        );
        let request = self.client.post(url).json(&json!({ "documents": names }));
        let response = self.send(&context, request).await?;
        if !response.status().is_success() {
            return Err(failure(&context, collection, "", false, response).await);
        }
        // A streamed method answers over REST as one JSON array of its
        // messages: a `found` document or a `missing` name each.
        let answers: Vec<BatchGetAnswer> =
            response.json().await.map_err(|e| backend(&context, e))?;
        let mut found = std::collections::HashMap::new();
        for answer in answers {
            if let Some(rest) = answer.found {
                found.insert(rest.name.clone(), rest);
            }
        }
        names
            .iter()
            .map(|name| {
                found
                    .get(name)
                    .cloned()
                    .map(|rest| document(collection, rest))
                    .transpose()
            })
            .collect()
    }

    async fn list(&self, collection: &str) -> Result<Vec<Document>, StateError> {
        check_collection(collection)?;
        let context = format!("list {}/documents/{collection}", self.database);
        let mut documents = Vec::new();
        let mut page_token = String::new();
        loop {
            let mut url = format!("{}?pageSize={PAGE_SIZE}", self.collection_url(collection));
            if !page_token.is_empty() {
                url.push_str("&pageToken=");
                url.extend(utf8_percent_encode(&page_token, SEGMENT));
            }
            let response = self.send(&context, self.client.get(url)).await?;
            if !response.status().is_success() {
                return Err(failure(&context, collection, "", false, response).await);
            }
            let page: ListResponse = response.json().await.map_err(|e| backend(&context, e))?;
            for rest in page.documents {
                documents.push(document(collection, rest)?);
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        documents.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(documents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(value: &Value) -> Value {
        let fields = value.as_object().map(to_fields).unwrap_or_default();
        // Through text, as over the wire.
        let wire: Map<String, Value> =
            serde_json::from_str(&Value::Object(fields).to_string()).expect("reparse");
        Value::Object(from_fields(&wire).expect("convert back"))
    }

    #[test]
    fn json_values_survive_conversion() {
        let value = json!({
            "null": null,
            "yes": true,
            "no": false,
            "max": i64::MAX,
            "min": i64::MIN,
            "zero": 0,
            "pi": 0.30000000000000004,
            "one_as_double": 1.0,
            "tiny": 5e-324,
            "huge": 1.7976931348623157e308,
            "unicode": "héllo 🚀 \u{0000} 日本語",
            "empty_string": "",
            "empty_array": [],
            "empty_object": {},
            "nested": {"a": [1, "two", {"three": [3.5, null]}], "é🚀": {"deep": {"deeper": true}}}
        });
        let back = round_trip(&value);
        assert_eq!(back, value);
        assert!(back["one_as_double"].is_f64(), "a double stays a double");
        assert!(back["max"].is_i64(), "an integer stays an integer");
    }

    #[test]
    fn integers_are_sent_as_decimal_strings() {
        assert_eq!(
            to_firestore(&json!(i64::MIN)),
            json!({ "integerValue": "-9223372036854775808" })
        );
    }

    #[test]
    fn unrepresentable_firestore_values_are_errors() {
        assert!(from_firestore(&json!({ "doubleValue": "NaN" })).is_err());
        assert!(from_firestore(&json!({ "timestampValue": "2026-01-01T00:00:00Z" })).is_err());
        assert!(from_firestore(&json!({ "integerValue": "99999999999999999999" })).is_err());
    }

    async fn classify(http: u16, body: &str, conditional: bool) -> StateError {
        let response = http::Response::builder()
            .status(http)
            .body(body.to_string())
            .expect("response");
        failure("put c/d", "c", "d", conditional, response.into()).await
    }

    fn status_body(status: &str) -> String {
        json!({ "error": { "code": 400, "status": status, "message": "why" } }).to_string()
    }

    #[tokio::test]
    async fn error_statuses_map_to_state_errors() {
        let conflict = |e: &StateError| matches!(e, StateError::Conflict { .. });
        for status in [
            "FAILED_PRECONDITION",
            "ALREADY_EXISTS",
            "ABORTED",
            "NOT_FOUND",
        ] {
            let e = classify(409, &status_body(status), true).await;
            assert!(conflict(&e), "{status} on a conditional write: {e:?}");
        }
        let e = classify(409, &status_body("ABORTED"), false).await;
        assert!(e.is_transient(), "contention without a precondition: {e:?}");
        let e = classify(400, &status_body("INVALID_ARGUMENT"), false).await;
        assert!(matches!(e, StateError::InvalidValue { .. }), "{e:?}");
        let e = classify(503, &status_body("UNAVAILABLE"), false).await;
        assert!(e.is_transient(), "{e:?}");
        assert!(
            e.to_string().starts_with("put c/d: HTTP 503: UNAVAILABLE"),
            "{e}"
        );
        let e = classify(502, "<html>bad gateway</html>", true).await;
        assert!(e.is_transient(), "a proxy's error page: {e:?}");
    }

    #[test]
    fn urls_encode_ids_and_bodies_keep_them() {
        let store =
            FirestoreStore::new(ApiEndpoint::emulator("127.0.0.1:1"), "p", DEFAULT_DATABASE)
                .expect("client");
        assert_eq!(
            store.document_url("c", "a b%?#é"),
            "http://127.0.0.1:1/v1/projects/p/databases/(default)/documents/c/a%20b%25%3F%23%C3%A9"
        );
        assert_eq!(
            store.document_name("c", "a b%?#é"),
            "projects/p/databases/(default)/documents/c/a b%?#é"
        );
    }
}
