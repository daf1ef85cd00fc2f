//! A Cloud Quotas API stand-in: the REST method the plan's quota check
//! calls (`projects.locations.services.quotaInfos.list`), built on the
//! official `google-cloud-api-cloudquotas-v1` types so its JSON cannot drift
//! from the client's. It holds one project's quota infos, each with a
//! default value and values of their own for some regions, pages its
//! listings [`PAGE_SIZE`] infos at a time so clients must follow
//! `nextPageToken`, and can be told to refuse the caller as Google does
//! when the caller lacks `cloudquotas.quotas.get`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use google_cloud_api_cloudquotas_v1::model::{
    DimensionsInfo, ListQuotaInfosResponse, QuotaDetails, QuotaInfo,
};

use crate::standin_server::{LoopbackServer, google_error};

/// Quota infos per listing page, whatever the client asks for (the API
/// may return fewer than asked).
pub const PAGE_SIZE: usize = 2;

struct Shared {
    project: String,
    /// In listing order.
    quotas: Mutex<Vec<QuotaInfo>>,
    refuse: AtomicBool,
    list_calls: AtomicUsize,
}

/// The stand-in, serving on a loopback port until dropped.
pub struct QuotasStandIn {
    shared: Arc<Shared>,
    server: LoopbackServer,
}

impl QuotasStandIn {
    /// Starts the stand-in on a free loopback port, holding the quotas of
    /// `project` (none yet); any other project is refused, as Google
    /// refuses a project the caller cannot see.
    pub async fn start(project: &str) -> Self {
        let shared = Arc::new(Shared {
            project: project.to_string(),
            quotas: Mutex::new(Vec::new()),
            refuse: AtomicBool::new(false),
            list_calls: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route(
                "/v1/projects/{project}/locations/{location}/services/{service}/quotaInfos",
                get(list),
            )
            .with_state(shared.clone());
        Self {
            server: LoopbackServer::start(router).await,
            shared,
        }
    }

    /// The `host:port` to give a client as its endpoint.
    pub fn host(&self) -> String {
        self.server.host()
    }

    /// Sets the value of quota `quota_id` (limiting `metric` of `service`)
    /// in `region`, or its default (`None`: every region without a value
    /// of its own). The quota is added, after those already held, if new.
    pub fn set_value(
        &self,
        service: &str,
        quota_id: &str,
        metric: &str,
        region: Option<&str>,
        value: i64,
    ) {
        let mut quotas = self.shared.quotas.lock().expect("stand-in lock");
        let index = match quotas
            .iter()
            .position(|q| q.service == service && q.quota_id == quota_id)
        {
            Some(index) => index,
            None => {
                quotas.push(
                    QuotaInfo::new()
                        .set_name(format!(
                            "projects/{}/locations/global/services/{service}/quotaInfos/{quota_id}",
                            self.shared.project
                        ))
                        .set_quota_id(quota_id)
                        .set_metric(metric)
                        .set_service(service)
                        .set_is_precise(true)
                        .set_dimensions(["region"]),
                );
                quotas.len() - 1
            }
        };
        let infos = &mut quotas[index].dimensions_infos;
        infos.retain(|info| info.dimensions.get("region").map(String::as_str) != region);
        let info = DimensionsInfo::new()
            .set_dimensions(region.map(|r| ("region", r)))
            .set_details(QuotaDetails::new().set_value(value))
            .set_applicable_locations(region);
        // Most specific first, as the API orders them: the default last.
        match region {
            Some(_) => infos.insert(0, info),
            None => infos.push(info),
        }
    }

    /// From now on, refuses every listing with 403 PERMISSION_DENIED, as
    /// Google does a caller without `cloudquotas.quotas.get`.
    pub fn refuse(&self) {
        self.shared.refuse.store(true, Ordering::SeqCst);
    }

    /// How many listing pages were asked for (refused ones included).
    pub fn list_calls(&self) -> usize {
        self.shared.list_calls.load(Ordering::SeqCst)
    }
}

async fn list(
    State(shared): State<Arc<Shared>>,
    Path((project, location, service)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    shared.list_calls.fetch_add(1, Ordering::SeqCst);
    let parent = format!("projects/{project}/locations/{location}/services/{service}");
    if shared.refuse.load(Ordering::SeqCst) || project != shared.project {
        return google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            format!(
                "Permission 'cloudquotas.quotas.get' denied on resource \
                 '//cloudquotas.googleapis.com/{parent}' (or it may not exist)."
            ),
        );
    }
    if location != "global" {
        return google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            format!("{parent}: the location must be global"),
        );
    }
    let Ok(offset) = query
        .get("pageToken")
        .filter(|token| !token.is_empty())
        .map_or(Ok(0), |token| token.parse::<usize>())
    else {
        return google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            format!("{parent}: invalid page token"),
        );
    };
    let quotas = shared.quotas.lock().expect("stand-in lock");
    let matching: Vec<&QuotaInfo> = quotas.iter().filter(|q| q.service == service).collect();
    let page: Vec<QuotaInfo> = matching
        .iter()
        .skip(offset)
        .take(PAGE_SIZE)
        .map(|q| (*q).clone())
        .collect();
    let next = offset + page.len();
    let response = ListQuotaInfosResponse::new()
        .set_quota_infos(page)
        .set_next_page_token(if next < matching.len() {
            next.to_string()
        } else {
            String::new()
        });
    Json(response).into_response()
}
