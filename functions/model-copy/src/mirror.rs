//! Copies a serving image between registries with the OCI distribution API
//! (what Artifact Registry speaks), so that a standby region can pull it
//! from its own region's repository while the primary is down. Manifests
//! are copied byte for byte, so the mirrored image has the same digest;
//! every blob (config and layers, of every platform of an index) is
//! streamed through, skipped when the target holds it already. The copy is
//! verified by reading the target's manifest digest back.

use futures::TryStreamExt;
use lifeboat_shared::gcp::{AuthError, Credentials, deadline};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE, OciDescriptor,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;

/// The manifest types a mirror copies: single images and indexes, OCI and
/// Docker's.
const MANIFEST_TYPES: [&str; 4] = [
    OCI_IMAGE_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// The user name Artifact Registry takes with an OAuth access token.
pub const ACCESS_TOKEN_USER: &str = "oauth2accesstoken";

/// Why an image could not be mirrored.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The image or mirror reference cannot be parsed.
    #[error("{reference:?} is not an image reference: {message}")]
    Reference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        message: String,
    },
    /// No credentials for the registries.
    #[error("registry credentials: {0}")]
    Credentials(#[from] AuthError),
    /// A registry call failed.
    #[error("{action} {reference}: {source}")]
    Registry {
        /// What was being done (`pull manifest`, `push blob sha256:...`).
        action: String,
        /// The image it was done to.
        reference: String,
        /// The registry's answer.
        source: OciDistributionError,
    },
    /// A manifest that is neither an image nor an index.
    #[error("manifest of {reference} ({media_type}) is neither an image nor an index")]
    Manifest {
        /// The image.
        reference: String,
        /// Its media type as served.
        media_type: String,
    },
    /// The target answers another digest than the source after the copy.
    #[error("{target} answers digest {found} after the copy, not {expected}")]
    Mismatch {
        /// The mirrored image.
        target: String,
        /// The source's digest.
        expected: String,
        /// What the target answers.
        found: String,
    },
}

/// What one mirroring did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirrored {
    /// The image in the target repository.
    pub target: String,
    /// Its manifest digest (the source's).
    pub digest: String,
    /// Blobs copied now (0 when the target held the image already).
    pub blobs_copied: usize,
    /// Bytes of the blobs copied now.
    pub bytes_copied: u64,
}

/// The fields of a manifest a mirror follows: the blobs of an image, the
/// child manifests of an index.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    media_type: Option<String>,
    config: Option<OciDescriptor>,
    #[serde(default)]
    layers: Vec<OciDescriptor>,
    manifests: Option<Vec<OciDescriptor>>,
}

/// Copies images between registries. Each copy opens its own session
/// (client and fresh credentials), so an hour-long service never reuses an
/// expired token.
#[derive(Clone, Debug)]
pub struct ImageMirror {
    plain_http_registries: Vec<String>,
    credentials: Credentials,
}

/// One copy's registry client and credentials.
struct Session {
    client: Client,
    auth: RegistryAuth,
}

impl ImageMirror {
    /// A mirror speaking HTTPS to every registry but those in
    /// `plain_http_registries` (`host:port`, for a registry on loopback),
    /// authorized by `credentials` on both sides (Artifact Registry takes
    /// an OAuth access token as the password of `oauth2accesstoken`).
    pub fn new(plain_http_registries: Vec<String>, credentials: Credentials) -> Self {
        Self {
            plain_http_registries,
            credentials,
        }
    }

    async fn session(&self) -> Result<Session, MirrorError> {
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(self.plain_http_registries.clone()),
            // A registry that stops answering fails the call, not the request.
            connect_timeout: Some(deadline::CONNECT_TIMEOUT),
            read_timeout: Some(deadline::STALL_TIMEOUT),
            ..ClientConfig::default()
        };
        let auth = match self.credentials.access_token().await? {
            Some(token) => RegistryAuth::Basic(ACCESS_TOKEN_USER.to_string(), token),
            None => RegistryAuth::Anonymous,
        };
        Ok(Session {
            client: Client::new(config),
            auth,
        })
    }

    /// Copies image `source` (`host/path/name:tag` or `@digest`) to
    /// `target`, unless the target holds it already, and verifies it.
    pub async fn copy(&self, source: &str, target: &str) -> Result<Mirrored, MirrorError> {
        let source_ref = parse(source)?;
        let target_ref = parse(target)?;
        let session = self.session().await?;
        let digest = session
            .digest(&source_ref)
            .await
            .map_err(|e| registry_error("read the manifest digest of", source, e))?;
        let mut copied = Mirrored {
            target: target.to_string(),
            digest: digest.clone(),
            blobs_copied: 0,
            bytes_copied: 0,
        };
        if let Ok(present) = session.digest(&target_ref).await
            && present == digest
        {
            return Ok(copied);
        }
        session
            .copy_manifest(&source_ref, &target_ref, &mut copied)
            .await?;
        let found = session
            .digest(&target_ref)
            .await
            .map_err(|e| registry_error("read back the manifest digest of", target, e))?;
        if found != digest {
            return Err(MirrorError::Mismatch {
                target: target.to_string(),
                expected: digest,
                found,
            });
        }
        Ok(copied)
    }

    /// Whether `image` can be pulled: its manifest answers.
    pub async fn is_pullable(&self, image: &str) -> Result<bool, MirrorError> {
        let reference = parse(image)?;
        match self.session().await?.digest(&reference).await {
            Ok(_) => Ok(true),
            Err(error) if is_not_found(&error) => Ok(false),
            Err(error) => Err(registry_error("read the manifest of", image, error)),
        }
    }
}

impl Session {
    /// The digest of the manifest `image` names.
    async fn digest(&self, image: &Reference) -> Result<String, OciDistributionError> {
        self.client.fetch_manifest_digest(image, &self.auth).await
    }

    /// Copies the manifest `source` names and everything it refers to,
    /// then pushes it to `target` unchanged (so its digest is kept).
    async fn copy_manifest(
        &self,
        source: &Reference,
        target: &Reference,
        copied: &mut Mirrored,
    ) -> Result<(), MirrorError> {
        let (raw, _) = self
            .client
            .pull_manifest_raw(source, &self.auth, &MANIFEST_TYPES)
            .await
            .map_err(|e| registry_error("pull the manifest of", &source.whole(), e))?;
        let manifest: Manifest =
            serde_json::from_slice(&raw).map_err(|e| MirrorError::Manifest {
                reference: source.whole(),
                media_type: format!("unreadable: {e}"),
            })?;
        let media_type = match (&manifest.media_type, &manifest.manifests) {
            (Some(media_type), _) => media_type.clone(),
            (None, Some(_)) => OCI_IMAGE_INDEX_MEDIA_TYPE.to_string(),
            (None, None) => OCI_IMAGE_MEDIA_TYPE.to_string(),
        };
        if let Some(children) = &manifest.manifests {
            for child in children {
                let child_source = source.clone_with_digest(child.digest.clone());
                let child_target = target.clone_with_digest(child.digest.clone());
                Box::pin(self.copy_manifest(&child_source, &child_target, copied)).await?;
            }
        } else {
            let Some(config) = &manifest.config else {
                return Err(MirrorError::Manifest {
                    reference: source.whole(),
                    media_type,
                });
            };
            for blob in std::iter::once(config).chain(&manifest.layers) {
                self.copy_blob(source, target, blob, copied).await?;
            }
        }
        let content_type = media_type.parse().map_err(|_| MirrorError::Manifest {
            reference: source.whole(),
            media_type: media_type.clone(),
        })?;
        self.client
            .push_manifest_raw(target, raw, content_type)
            .await
            .map_err(|e| registry_error("push the manifest to", &target.whole(), e))?;
        Ok(())
    }

    /// Streams one blob from `source`'s repository to `target`'s unless it
    /// is there already; the client checks the digest of what it reads.
    async fn copy_blob(
        &self,
        source: &Reference,
        target: &Reference,
        blob: &OciDescriptor,
        copied: &mut Mirrored,
    ) -> Result<(), MirrorError> {
        let exists = self
            .client
            .blob_exists(target, &blob.digest)
            .await
            .map_err(|e| {
                registry_error(
                    &format!("look for blob {} in", blob.digest),
                    &target.whole(),
                    e,
                )
            })?;
        if exists {
            return Ok(());
        }
        let stream = self
            .client
            .pull_blob_stream(source, blob)
            .await
            .map_err(|e| {
                registry_error(&format!("pull blob {} of", blob.digest), &source.whole(), e)
            })?;
        let size = u64::try_from(blob.size).ok();
        let stream = stream.stream.map_err(OciDistributionError::from);
        self.client
            .push_blob_stream(target, stream, &blob.digest, size)
            .await
            .map_err(|e| {
                registry_error(&format!("push blob {} to", blob.digest), &target.whole(), e)
            })?;
        copied.blobs_copied += 1;
        copied.bytes_copied += size.unwrap_or(0);
        tracing::info!(blob = %blob.digest, bytes = blob.size, target = %target.whole(), "blob mirrored");
        Ok(())
    }
}

/// Whether a registry said the image or its repository does not exist.
fn is_not_found(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::ImageManifestNotFoundError(_)
        | OciDistributionError::ServerError { code: 404, .. } => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown
            )
        }),
        _ => false,
    }
}

fn parse(reference: &str) -> Result<Reference, MirrorError> {
    reference
        .parse()
        .map_err(|e: oci_client::ParseError| MirrorError::Reference {
            reference: reference.to_string(),
            message: e.to_string(),
        })
}

fn registry_error(action: &str, reference: &str, source: OciDistributionError) -> MirrorError {
    MirrorError::Registry {
        action: action.to_string(),
        reference: reference.to_string(),
        source,
    }
}
