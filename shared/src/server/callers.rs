//! Who may call the endpoints that change things (move traffic, fail back,
//! release a model): one axum middleware, [`require_caller`], that a router
//! puts on those routes with its [`CallerPolicy`].
//!
//! # On Cloud Run: the invoker's verified identity, from an allow-list
//!
//! The services run with IAM invoker checks on: Cloud Run's front end
//! verifies the caller's Google-signed ID token (signature, expiry,
//! audience) and its `run.routes.invoke` permission before the request
//! reaches the container. It then passes the token on with its signature
//! replaced by `SIGNATURE_REMOVED_BY_GOOGLE` (Cloud Run's service-to-service
//! and troubleshooting documentation), so the container cannot verify the
//! signature again with Google's certificates, and need not: what arrives
//! was verified. It reads the verified token from `X-Serverless-Authorization`
//! when present (Cloud Run checks that header first and passes
//! `Authorization` through untouched, so a caller could put anything
//! there), else from `Authorization`, and accepts the caller only when the
//! token's `email` is in `LIFEBOAT_ALLOWED_CALLERS`. A token whose signature
//! is still there did not pass Cloud Run's check (the invoker check is off,
//! or the request did not come through Cloud Run) and is refused: the
//! allow-list is only as good as the check in front of it.
//!
//! # In the local cloud: loopback peers only
//!
//! The local cloud has no IAM; its endpoints take requests only from the
//! machine itself, judged by the TCP peer address, which
//! [`super::serve_router`] records on every request.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::rejection::ExtensionRejection;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

/// The variable holding the allowed callers' emails, comma-separated.
pub const ALLOWED_CALLERS_VARIABLE: &str = "LIFEBOAT_ALLOWED_CALLERS";

/// The header Cloud Run checks first for the caller's ID token.
pub const SERVERLESS_AUTHORIZATION: &str = "x-serverless-authorization";

/// What Cloud Run puts in place of an ID token's signature once it has
/// verified it.
pub const SIGNATURE_REMOVED: &str = "SIGNATURE_REMOVED_BY_GOOGLE";

/// Who may call a guarded endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallerPolicy {
    /// On Cloud Run: callers whose verified ID token names one of these
    /// emails (lowercase).
    VerifiedInvokers(Arc<BTreeSet<String>>),
    /// In the local cloud: callers on the same machine.
    Loopback,
}

impl Default for CallerPolicy {
    /// Loopback only: nothing from the network is trusted until a service
    /// says who is.
    fn default() -> Self {
        CallerPolicy::Loopback
    }
}

impl CallerPolicy {
    /// The invokers whose emails `list` names, comma-separated (blanks and
    /// case ignored).
    pub fn invokers(list: &str) -> Self {
        let emails = list
            .split(',')
            .map(|email| email.trim().to_ascii_lowercase())
            .filter(|email| !email.is_empty())
            .collect();
        CallerPolicy::VerifiedInvokers(Arc::new(emails))
    }

    /// The invokers named by `$LIFEBOAT_ALLOWED_CALLERS`. Unset or empty,
    /// nobody may call a guarded endpoint (said in a warning): the service
    /// still handles its events, and a missing grant is safer than an open
    /// door.
    pub fn from_env() -> Self {
        let policy = Self::invokers(&std::env::var(ALLOWED_CALLERS_VARIABLE).unwrap_or_default());
        if let CallerPolicy::VerifiedInvokers(emails) = &policy
            && emails.is_empty()
        {
            tracing::warn!(
                variable = ALLOWED_CALLERS_VARIABLE,
                "no allowed callers: every call to an endpoint that changes things is refused"
            );
        }
        policy
    }

    /// Who the caller of a request with `headers` from `peer` is, if this
    /// policy accepts them.
    pub fn admit(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Result<Caller, Refusal> {
        match self {
            CallerPolicy::Loopback => match peer {
                Some(peer) if peer.ip().to_canonical().is_loopback() => Ok(Caller::Local(peer)),
                Some(peer) => Err(Refusal::Forbidden(format!(
                    "only callers on this machine may do this; {peer} is not"
                ))),
                None => Err(Refusal::Forbidden(
                    "the caller's address is unknown (served without connect info)".to_string(),
                )),
            },
            CallerPolicy::VerifiedInvokers(allowed) => {
                let email = verified_email(headers).map_err(Refusal::Unauthenticated)?;
                if allowed.contains(&email) {
                    Ok(Caller::Invoker(email))
                } else {
                    Err(Refusal::Forbidden(format!(
                        "{email} is not in {ALLOWED_CALLERS_VARIABLE}"
                    )))
                }
            }
        }
    }
}

/// A caller a guarded endpoint accepted; [`require_caller`] leaves it in
/// the request's extensions for the handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A Cloud Run invoker, by the email of its verified ID token.
    Invoker(String),
    /// A process on this machine, by its address.
    Local(SocketAddr),
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Invoker(email) => f.write_str(email),
            Caller::Local(peer) => write!(f, "a local caller ({peer})"),
        }
    }
}

/// Why a caller was turned away.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No identity could be read from the request (401).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The caller is known but not allowed (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = match self {
            Refusal::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
        };
        tracing::warn!(status = status.as_u16(), refusal = %self, "caller refused");
        (status, self.to_string()).into_response()
    }
}

/// Lets the request through only if `policy` admits its caller, who is
/// then in the request's extensions as a [`Caller`]; else answers 401 or
/// 403 with the reason, and logs it. Put it on a router with
/// `route_layer(middleware::from_fn_with_state(policy, require_caller))`.
pub async fn require_caller(
    State(policy): State<CallerPolicy>,
    peer: Result<ConnectInfo<SocketAddr>, ExtensionRejection>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = peer.ok().map(|ConnectInfo(peer)| peer);
    match policy.admit(request.headers(), peer) {
        Ok(caller) => {
            tracing::info!(%caller, "caller admitted");
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// The email of the ID token Cloud Run verified, or why there is none.
fn verified_email(headers: &HeaderMap) -> Result<String, String> {
    let (name, values) = match headers.get_all(SERVERLESS_AUTHORIZATION).iter().count() {
        0 => ("authorization", headers.get_all("authorization")),
        _ => (
            SERVERLESS_AUTHORIZATION,
            headers.get_all(SERVERLESS_AUTHORIZATION),
        ),
    };
    let mut values = values.iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Err("no ID token (Authorization: Bearer ...)".to_string()),
        (Some(_), Some(_)) => return Err(format!("more than one {name} header")),
        (Some(value), None) => value,
    };
    let value = value
        .to_str()
        .map_err(|_| format!("{name}: not readable text"))?;
    let token = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| format!("{name}: expected `Bearer <ID token>`"))?;
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("{name}: not a JWT (three dot-separated parts)"));
    };
    if signature != SIGNATURE_REMOVED {
        return Err(format!(
            "{name}: the ID token was not verified by Cloud Run's invoker check \
             (its signature was not replaced by {SIGNATURE_REMOVED})"
        ));
    }
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| format!("{name}: the token's claims are not base64url ({e})"))?;
    let claims: serde_json::Value = serde_json::from_slice(&payload)
        .map_err(|e| format!("{name}: the token's claims are not JSON ({e})"))?;
    if claims["email_verified"] == serde_json::Value::Bool(false) {
        return Err(format!("{name}: the token's email is not verified"));
    }
    claims["email"]
        .as_str()
        .filter(|email| !email.is_empty())
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| format!("{name}: the token names no email"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::extract::Extension;
    use axum::extract::connect_info::MockConnectInfo;
    use axum::middleware;
    use axum::routing::post;
    use tower::ServiceExt as _;

    use super::*;
    use crate::server::{Shutdown, serve_router};

    /// A guarded route that answers who called it.
    fn guarded(policy: CallerPolicy) -> Router {
        Router::new()
            .route(
                "/move",
                post(|Extension(caller): Extension<Caller>| async move { caller.to_string() }),
            )
            .route_layer(middleware::from_fn_with_state(policy, require_caller))
    }

    /// An ID token as Cloud Run passes it on: claims, signature removed.
    fn token(claims: serde_json::Value) -> String {
        let encode = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let header = encode(serde_json::json!({"alg": "RS256", "typ": "JWT"}));
        format!("{header}.{}.{SIGNATURE_REMOVED}", encode(claims))
    }

    fn of(email: &str) -> String {
        token(serde_json::json!({
            "iss": "https://accounts.google.com", "email": email, "email_verified": true
        }))
    }

    async fn call(router: Router, headers: &[(&str, String)]) -> (StatusCode, String) {
        let mut request = Request::post("/move");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = router
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn an_allowed_invoker_passes_and_is_named_to_the_handler() {
        let policy = CallerPolicy::invokers(" ops@acme.iam.gserviceaccount.com , Ana@Acme.com");
        for (header, email) in [
            ("authorization", "ops@acme.iam.gserviceaccount.com"),
            (SERVERLESS_AUTHORIZATION, "ana@acme.com"),
        ] {
            let bearer = format!("Bearer {}", of(email));
            let (status, body) = call(guarded(policy.clone()), &[(header, bearer)]).await;
            assert_eq!((status, body.as_str()), (StatusCode::OK, email));
        }
    }

    #[tokio::test]
    async fn another_invoker_is_forbidden() {
        let policy = CallerPolicy::invokers("ops@acme.com");
        let bearer = format!("Bearer {}", of("intruder@acme.com"));
        let (status, body) = call(guarded(policy.clone()), &[("authorization", bearer)]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(
            body.contains("intruder@acme.com is not in LIFEBOAT_ALLOWED_CALLERS"),
            "{body}"
        );
        // Cloud Run verifies X-Serverless-Authorization when both are sent
        // and passes Authorization on unchecked: the allowed email there
        // proves nothing.
        let headers = [
            ("authorization", format!("Bearer {}", of("ops@acme.com"))),
            (
                SERVERLESS_AUTHORIZATION,
                format!("Bearer {}", of("intruder@acme.com")),
            ),
        ];
        let (status, body) = call(guarded(policy.clone()), &headers).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        // Nobody is allowed when the list is empty.
        let bearer = format!("Bearer {}", of("ops@acme.com"));
        let (status, _) = call(
            guarded(CallerPolicy::invokers("")),
            &[("authorization", bearer)],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn a_missing_or_garbled_token_is_unauthenticated() {
        let policy = CallerPolicy::invokers("ops@acme.com");
        let claims = of("ops@acme.com");
        let (header, payload) = claims
            .split_once('.')
            .map(|(h, rest)| (h, rest.split_once('.').unwrap().0))
            .unwrap();
        let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
            (vec![], "no ID token"),
            (
                vec![("authorization", format!("Basic {claims}"))],
                "expected `Bearer",
            ),
            (
                vec![("authorization", "Bearer not-a-jwt".to_string())],
                "not a JWT",
            ),
            (
                vec![(
                    "authorization",
                    format!("Bearer {header}.{payload}.c2lnbmVk"),
                )],
                "not verified by Cloud Run",
            ),
            (
                vec![(
                    "authorization",
                    format!("Bearer {header}.%%%.{SIGNATURE_REMOVED}"),
                )],
                "not base64url",
            ),
            (
                vec![(
                    "authorization",
                    format!("Bearer {}", token(serde_json::json!({"sub": "1"}))),
                )],
                "names no email",
            ),
            (
                vec![(
                    "authorization",
                    format!(
                        "Bearer {}",
                        token(
                            serde_json::json!({"email": "ops@acme.com", "email_verified": false})
                        )
                    ),
                )],
                "email is not verified",
            ),
            (
                vec![
                    (SERVERLESS_AUTHORIZATION, format!("Bearer {claims}")),
                    (SERVERLESS_AUTHORIZATION, format!("Bearer {claims}")),
                ],
                "more than one",
            ),
        ];
        for (headers, says) in cases {
            let (status, body) = call(guarded(policy.clone()), &headers).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}: {body}");
            assert!(body.contains(says), "{headers:?}: {body}");
        }
    }

    #[tokio::test]
    async fn the_local_policy_admits_loopback_peers_only() {
        // A real socket: serve_router records the peer of every request.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let shutdown = Shutdown::new();
        let server = tokio::spawn(serve_router(
            guarded(CallerPolicy::Loopback),
            listener,
            shutdown.clone(),
            Duration::from_secs(1),
        ));
        let answer = reqwest::Client::new()
            .post(format!("http://{address}/move"))
            .send()
            .await
            .expect("an answer");
        assert_eq!(answer.status().as_u16(), 200);
        assert!(
            answer
                .text()
                .await
                .expect("text")
                .starts_with("a local caller (127.0.0.1:")
        );
        shutdown.trigger();
        server.await.expect("joined").expect("served");

        let remote: SocketAddr = "203.0.113.7:40000".parse().expect("address");
        let from_afar = guarded(CallerPolicy::Loopback).layer(MockConnectInfo(remote));
        let (status, body) = call(from_afar, &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("203.0.113.7:40000 is not"), "{body}");
        let (status, body) = call(guarded(CallerPolicy::Loopback), &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("address is unknown"), "{body}");
    }
}
