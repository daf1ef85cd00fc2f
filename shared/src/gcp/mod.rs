//! What every Google Cloud client of Lifeboat shares: where each API is
//! reached (production or an emulator, chosen only by configuration) and how
//! requests are authorized.

use std::sync::Arc;

pub mod deadline;

/// The OAuth scope every Lifeboat REST call asks for.
const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// What can go wrong before a request is even sent.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credentials could be found or a token could not be minted.
    #[error("Google Cloud credentials: {0}")]
    Token(#[from] gcp_auth::Error),
}

/// How requests are authorized: a real token provider, or none at all for the
/// emulators (which accept anonymous requests).
#[derive(Clone)]
pub enum Credentials {
    /// Application Default Credentials (metadata server on Cloud Run).
    Google(Arc<dyn gcp_auth::TokenProvider>),
    /// No `Authorization` header: for emulators.
    Anonymous,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Google(_) => f.write_str("Credentials::Google"),
            Credentials::Anonymous => f.write_str("Credentials::Anonymous"),
        }
    }
}

impl Credentials {
    /// Finds Application Default Credentials.
    pub async fn application_default() -> Result<Self, AuthError> {
        Ok(Credentials::Google(gcp_auth::provider().await?))
    }

    /// A fresh OAuth access token, or `None` when anonymous.
    pub async fn access_token(&self) -> Result<Option<String>, AuthError> {
        match self {
            Credentials::Google(provider) => {
                let token = provider.token(&[CLOUD_PLATFORM_SCOPE]).await?;
                Ok(Some(token.as_str().to_string()))
            }
            Credentials::Anonymous => Ok(None),
        }
    }

    /// Adds the `Authorization` header to `request` when there is a token.
    pub async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, AuthError> {
        Ok(match self.access_token().await? {
            Some(token) => request.bearer_auth(token),
            None => request,
        })
    }
}

/// Where one Google API is reached and with which credentials.
#[derive(Clone, Debug)]
pub struct ApiEndpoint {
    /// Base URL without a trailing slash, e.g. `https://storage.googleapis.com`
    /// or `http://127.0.0.1:4443`.
    pub base_url: String,
    /// How to authorize requests to it.
    pub credentials: Credentials,
}

impl ApiEndpoint {
    /// The endpoint named by the emulator variable `emulator_var` (a
    /// `host:port`, as the gcloud emulators print it) with anonymous
    /// credentials if it is set, else `production_url` with Application
    /// Default Credentials.
    pub async fn from_env(emulator_var: &str, production_url: &str) -> Result<Self, AuthError> {
        match std::env::var(emulator_var) {
            Ok(host) if !host.is_empty() => Ok(Self::emulator(&host)),
            _ => Ok(Self {
                base_url: production_url.trim_end_matches('/').to_string(),
                credentials: Credentials::application_default().await?,
            }),
        }
    }

    /// An emulator at `host` (`host:port` or a full `http://` URL), reached
    /// anonymously.
    pub fn emulator(host: &str) -> Self {
        let base = if host.starts_with("http://") || host.starts_with("https://") {
            host.to_string()
        } else {
            format!("http://{host}")
        };
        Self {
            base_url: base.trim_end_matches('/').to_string(),
            credentials: Credentials::Anonymous,
        }
    }
}
