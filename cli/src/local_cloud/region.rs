//! What one region of the local cloud answers on its own port: its health,
//! and a read-only view of the buckets that live in it, so a person (or a
//! test) can see what reached the region.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use futures::TryStreamExt;
use lifeboat_shared::storage::{ObjectMeta, ObjectRef, ObjectStore, StorageError};
use lifeboat_shared::topology::{Region, RegionId, Topology};
use serde::Deserialize;
use serde_json::json;

/// What every request of one region's router can reach.
#[derive(Debug, Clone)]
struct RegionState {
    region: Region,
    /// The region every bucket of the topology lives in, read once.
    bucket_regions: Arc<BTreeMap<String, RegionId>>,
    storage: Arc<dyn ObjectStore>,
}

/// The routes of one region: `/healthz`, `/storage/{bucket}` (listing) and
/// `/storage/{bucket}/{name}` (an object's bytes).
pub fn router(region: Region, topology: &Topology, storage: Arc<dyn ObjectStore>) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/storage/{bucket}", get(list_objects))
        .route("/storage/{bucket}/{*name}", get(read_object))
        .with_state(RegionState {
            region,
            bucket_regions: Arc::new(
                topology
                    .buckets()
                    .into_iter()
                    .map(|(bucket, region)| (bucket.to_string(), region.clone()))
                    .collect(),
            ),
            storage,
        })
}

async fn health(State(state): State<RegionState>) -> Json<serde_json::Value> {
    Json(json!({
        "region": state.region.id.as_str(),
        "role": state.region.role.to_string(),
    }))
}

/// Query of a listing.
#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
    #[serde(rename = "pageToken")]
    page_token: Option<String>,
}

async fn list_objects(
    State(state): State<RegionState>,
    Path(bucket): Path<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    if let Err(refusal) = state.owns(&bucket) {
        return *refusal;
    }
    match state
        .storage
        .list(&bucket, &query.prefix, query.page_token.as_deref())
        .await
    {
        Ok(page) => Json(json!({
            "items": page.objects.iter().map(describe).collect::<Vec<_>>(),
            "nextPageToken": page.next_page_token,
        }))
        .into_response(),
        Err(error) => storage_error(error),
    }
}

async fn read_object(
    State(state): State<RegionState>,
    Path((bucket, name)): Path<(String, String)>,
) -> Response {
    if let Err(refusal) = state.owns(&bucket) {
        return *refusal;
    }
    match state.storage.get(&ObjectRef::new(bucket, name)).await {
        Ok((meta, bytes)) => {
            let mut response =
                Body::from_stream(bytes.map_err(std::io::Error::other)).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
            headers.insert("x-goog-generation", HeaderValue::from(meta.generation));
            if let Ok(value) = HeaderValue::from_str(&format!("crc32c={:08x}", meta.crc32c)) {
                headers.insert("x-lifeboat-crc32c", value);
            }
            response
        }
        Err(error) => storage_error(error),
    }
}

impl RegionState {
    /// Refuses a bucket that the topology does not place in this region.
    fn owns(&self, bucket: &str) -> Result<(), Box<Response>> {
        match self.bucket_regions.get(bucket) {
            Some(region) if *region == self.region.id => Ok(()),
            Some(region) => Err(Box::new(
                (
                    StatusCode::NOT_FOUND,
                    format!("bucket {bucket} is in {region}, not in {}", self.region.id),
                )
                    .into_response(),
            )),
            None => Err(Box::new(
                (
                    StatusCode::NOT_FOUND,
                    format!("bucket {bucket} is not in the topology"),
                )
                    .into_response(),
            )),
        }
    }
}

fn describe(meta: &ObjectMeta) -> serde_json::Value {
    json!({
        "name": meta.object.name,
        "generation": meta.generation,
        "size": meta.size,
        "crc32c": format!("{:08x}", meta.crc32c),
        "updated": meta.updated,
    })
}

fn storage_error(error: StorageError) -> Response {
    let status = match &error {
        StorageError::NotFound { .. } | StorageError::BucketNotFound { .. } => {
            StatusCode::NOT_FOUND
        }
        StorageError::InvalidName { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, error.to_string()).into_response()
}
