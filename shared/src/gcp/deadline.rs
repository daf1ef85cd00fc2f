//! How long Lifeboat waits on a Google Cloud API: every call has a deadline
//! of its own, so a backend that stops answering (a frozen emulator, a
//! region going dark, a half-open connection) fails the call as a
//! transient error in seconds instead of holding the request until the
//! sender gives up. The request then answers 503 and the sender retries.
//!
//! A call that moves one document or one page (a Firestore read or commit,
//! object metadata, a listing page, a delete, one step of a rewrite, a
//! BigQuery job call) has a deadline for the whole call. A call that
//! streams bytes of unknown size (an object upload or download, an image
//! layer) has none for the whole, since a large object may take minutes,
//! but fails when the backend goes silent for [`STALL_TIMEOUT`].

use std::time::Duration;

/// The longest wait for a connection to be established.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest silence in a call that streams bytes: no byte read for this
/// long fails the call.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The deadline of one call on a Firestore document: they answer in
/// milliseconds, so ten seconds of silence means the backend is not there.
pub const DOCUMENT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The deadline of one metadata call on Cloud Storage, BigQuery, Vertex AI
/// or Cloud Monitoring. A Cloud Storage rewrite step returns with a token
/// well within it, however large the object.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// An HTTP client builder whose connections are held to [`CONNECT_TIMEOUT`]
/// and whose reads are held to `stall` (normally [`STALL_TIMEOUT`]); a
/// whole-call deadline is set per request with
/// [`reqwest::RequestBuilder::timeout`].
pub fn http_client_builder(stall: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(stall)
}

/// The client of [`http_client_builder`].
///
/// # Panics
///
/// Like [`reqwest::Client::new`], when the TLS backend cannot be
/// initialized.
pub fn http_client(stall: Duration) -> reqwest::Client {
    http_client_builder(stall)
        .build()
        .expect("the TLS backend initializes")
}
