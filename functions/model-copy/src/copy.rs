//! One version to one region: copied unless already there, retried with
//! backoff up to a bound, then verified by reading the region's registry.

use std::time::Duration;

use lifeboat_shared::models::{
    Completed, ModelError, ModelRef, ModelRegistry, RegisteredModel, wait,
};
use lifeboat_shared::topology::RegionId;
use tokio::time::Instant;

use crate::CopyOptions;

/// A version present and verified in a region.
#[derive(Clone, Debug)]
pub struct Present {
    /// The model in the region, as read after the copy.
    pub model: RegisteredModel,
    /// The version's id in the region (ids are given in order of arrival,
    /// so it may differ from the source's).
    pub version_id: String,
    /// Whether this call copied it (false: it was already there).
    pub copied: bool,
    /// How long the copy took, retries included.
    pub took: Duration,
}

/// Why a version did not reach a region.
#[derive(Debug)]
pub struct CopyFailed {
    /// How many rounds (read the region, copy if absent) were made.
    pub attempts: u32,
    /// The last error (the operation's own, when it failed).
    pub error: ModelError,
}

/// The model in `region` if it holds a copy of `source_version`.
async fn present_in(
    registry: &dyn ModelRegistry,
    target: &ModelRef,
    source_version: &str,
) -> Result<Option<(RegisteredModel, String)>, ModelError> {
    let Some(model) = registry.model(target).await? else {
        return Ok(None);
    };
    let id = model.copy_of(source_version).map(|v| v.version_id.clone());
    Ok(id.map(|id| (model, id)))
}

/// Copies version `source_version` of `source` to `region` unless it is
/// there already. A failed, lost or unfinished copy (or an unreachable
/// registry) is retried after a doubling delay, up to
/// [`CopyOptions::copy_attempts`] copies; before each retry the region is
/// read again, since a lost operation may still have copied. A refused
/// copy is not retried.
pub async fn copy_to_region(
    registry: &dyn ModelRegistry,
    source: &ModelRef,
    source_version: &str,
    region: &RegionId,
    options: &CopyOptions,
) -> Result<Present, CopyFailed> {
    let started = Instant::now();
    let target = source.in_region(region);
    let context = format!("copy {source} version {source_version} to {region}");
    let present = |model: RegisteredModel, version_id: String, copied: bool| Present {
        model,
        version_id,
        copied,
        took: started.elapsed(),
    };
    let mut delay = options.retry_delay;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let error = match present_in(registry, &target, source_version).await {
            Ok(Some((model, id))) => return Ok(present(model, id, attempts > 1)),
            Ok(None) => {
                let copied = copy_once(registry, source, source_version, region, options, &context);
                match copied.await {
                    Ok(()) => match present_in(registry, &target, source_version).await {
                        Ok(Some((model, id))) => return Ok(present(model, id, true)),
                        Ok(None) => ModelError::OperationFailed {
                            context: context.clone(),
                            operation: "copy".to_string(),
                            message: format!(
                                "reported done, but {target} holds no copy of version {source_version}"
                            ),
                        },
                        Err(error) => error,
                    },
                    Err(error) => error,
                }
            }
            Err(error) => error,
        };
        let retry = error.is_transient() || matches!(error, ModelError::OperationFailed { .. });
        if !retry || attempts >= options.copy_attempts {
            return Err(CopyFailed { attempts, error });
        }
        tracing::warn!(%error, attempt = attempts, ?delay, "copy failed; retrying");
        tokio::time::sleep(delay).await;
        delay = delay.saturating_mul(2);
    }
}

/// Starts one copy and follows it to its end.
async fn copy_once(
    registry: &dyn ModelRegistry,
    source: &ModelRef,
    source_version: &str,
    region: &RegionId,
    options: &CopyOptions,
    context: &str,
) -> Result<(), ModelError> {
    let operation = registry.start_copy(source, source_version, region).await?;
    tracing::info!(operation = %operation.name, "copy started");
    match wait(registry, operation, &options.operation, context).await? {
        Completed::Copied { version_id, .. } => {
            tracing::info!(%version_id, "copy done");
            Ok(())
        }
        other => Err(ModelError::Rejected {
            context: context.to_string(),
            message: format!("the operation reported {other:?}, not a copy"),
        }),
    }
}
