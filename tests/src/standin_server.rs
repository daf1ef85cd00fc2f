//! What every API stand-in runs on: an axum router served on a free
//! loopback port until dropped, answering errors in Google's JSON shape.

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};

/// A router served on a free loopback port; the server stops when this is
/// dropped.
pub struct LoopbackServer {
    address: std::net::SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl LoopbackServer {
    /// Serves `router` on a free loopback port.
    pub async fn start(router: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("local address");
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("stand-in serves");
        });
        Self { address, server }
    }

    /// The `host:port` to give a client as its endpoint.
    pub fn host(&self) -> String {
        self.address.to_string()
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Google's JSON error shape (`{"error": {code, message, status}}`), which
/// the official clients turn into a status.
pub fn google_error(status: StatusCode, code: &str, message: String) -> Response {
    let body = serde_json::json!({
        "error": {"code": status.as_u16(), "message": message, "status": code}
    });
    (status, Json(body)).into_response()
}

/// A refused call: Google's JSON error shape ([`google_error`]), which the
/// client turns into a status.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        google_error(self.status, self.code, self.message)
    }
}

/// What a stand-in method answers: its response, or why it refuses.
pub type Reply = Result<Response, Refusal>;

/// Refuses with `status` and Google's `code` (e.g. `NOT_FOUND`).
pub fn refuse(status: StatusCode, code: &'static str, message: String) -> Refusal {
    Refusal {
        status,
        code,
        message,
    }
}

/// 404 NOT_FOUND: `what` does not exist.
pub fn not_found(what: &str) -> Refusal {
    refuse(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("{what} not found"),
    )
}

/// 400 INVALID_ARGUMENT.
pub fn invalid(message: String) -> Refusal {
    refuse(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
}
