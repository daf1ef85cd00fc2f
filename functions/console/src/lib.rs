//! The console: one page per topology that answers whether each workload
//! could survive losing a region right now, and shows why — each region's
//! role and health, routing weights now and over the last day, RPO
//! exposure per asset and region against its target, model parity per
//! standby, open and recent incidents with their steps, drills with their
//! reports, and the plan. Read-only: it reads the records the other
//! services write ([`overview`]) and draws them ([`page`]).
//!
//! Routes: `GET /` the page, `GET /overview` the same as JSON, `GET
//! /runs/{run}/report` a drill run's report drawn from its record. The
//! local cloud serves it at `/` of its functions port; on Google Cloud it
//! is a Cloud Run service of its own behind IAP (`infra/console.tf`).

pub mod overview;
pub mod page;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use chrono::Utc;
use lifeboat_shared::records::drill_run;
use lifeboat_shared::state::StateStore;
use lifeboat_shared::topology::Topology;

/// The service's name in logs and traces.
pub const SERVICE_NAME: &str = "console";

/// What the console reads.
#[derive(Clone)]
pub struct ConsoleContext {
    /// The topology it shows.
    pub topology: Arc<Topology>,
    /// Where the records are.
    pub state: Arc<dyn StateStore>,
}

/// The console's routes.
pub fn router(context: ConsoleContext) -> Router {
    Router::new()
        .route("/", get(get_page))
        .route("/overview", get(get_overview))
        .route("/runs/{run}/report", get(get_report))
        .with_state(context)
}

async fn get_page(State(context): State<ConsoleContext>) -> Response {
    match overview::read(&context.topology, context.state.as_ref(), Utc::now()).await {
        Ok(overview) => Html(page::render(&overview)).into_response(),
        Err(error) => unavailable(&error),
    }
}

async fn get_overview(State(context): State<ConsoleContext>) -> Response {
    match overview::read(&context.topology, context.state.as_ref(), Utc::now()).await {
        Ok(overview) => Json(overview).into_response(),
        Err(error) => unavailable(&error),
    }
}

async fn get_report(State(context): State<ConsoleContext>, Path(run): Path<String>) -> Response {
    match drill_run::read(context.state.as_ref(), &run).await {
        Ok(Some(record)) => {
            let plan = lifeboat_pages::report::workload_plan(&context.topology, &record);
            Html(lifeboat_pages::report::render(&record, plan.as_ref())).into_response()
        }
        Ok(None) => (StatusCode::NOT_FOUND, format!("no drill run {run}\n")).into_response(),
        Err(error) => unavailable(&error),
    }
}

/// The records could not be read: 503 with the reason, logged.
fn unavailable(error: &dyn std::error::Error) -> Response {
    tracing::error!(%error, "the console could not read the records");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the console could not read the records: {error}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
