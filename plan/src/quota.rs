//! Whether each standby region has the Vertex AI quota for the serving
//! machines and accelerators it would run after a failover, read from the
//! Cloud Quotas API: a standby that could not scale during an outage is
//! named before the outage.
//!
//! The plan engine states the needs ([`QuotaNeed`]: a region, a
//! [`ServingResource`] and how many). [`ServingResource::quota`] names the
//! Vertex AI quota (service [`SERVICE`]) that limits each one;
//! [`ServingQuotas::check`] lists the project's quotas of that service once
//! and answers one [`QuotaFinding`] per need: enough, not enough, or unknown
//! with the reason. A need is compared with the quota's value in effect for
//! its region (a value of the region's own, else the quota's default), and
//! with the other needs of that region on the same quota added, since they
//! draw on one limit. The limit is the whole allowance, not what is left of
//! it: the needs are everything the region would run after a failover.
//!
//! Vertex AI has one CPU quota for custom model serving per region
//! (`CustomModelServingCPUsPerProjectPerRegion`); no family-specific serving
//! CPU quota is published, so the vCPUs of every machine family Vertex AI
//! serves on count against it. Each GPU type has its own. A resource with no
//! known quota (an unknown family or accelerator) is answered unknown, never
//! enough.
//!
//! Permission: listing quotas needs `cloudquotas.quotas.get` on the project
//! ([`PERMISSION`]; the predefined role `roles/cloudquotas.viewer` holds
//! it). Whoever runs `lifeboat plan` needs it; without it every need is
//! answered unknown, saying so.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use google_cloud_api_cloudquotas_v1::client::CloudQuotas;
use google_cloud_api_cloudquotas_v1::model::QuotaInfo;
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt};
use lifeboat_shared::gcp::{ApiEndpoint, Credentials};
use serde::Serialize;

/// The Cloud Quotas API's production endpoint.
pub const PRODUCTION_URL: &str = "https://cloudquotas.googleapis.com";

/// The service whose quotas limit Vertex AI online prediction.
pub const SERVICE: &str = "aiplatform.googleapis.com";

/// The IAM permission listing a project's quotas needs.
pub const PERMISSION: &str = "cloudquotas.quotas.get";

/// Quota infos asked for per listing page (the API's maximum is larger;
/// the service has a few hundred quotas).
const PAGE_SIZE: i32 = 100;

/// How long one listing call keeps retrying transient failures (an
/// unreachable API) before the needs are answered unknown: a person is
/// waiting for the plan.
const RETRY_TIME_LIMIT: Duration = Duration::from_secs(10);

/// Machine families Vertex AI serves custom models on; their vCPUs count
/// against [`SERVING_CPUS`].
const SERVING_FAMILIES: &[&str] = &["e2", "n1", "n2", "n2d", "c2", "c2d", "c3", "a2", "a3", "g2"];

/// The quota on vCPUs of custom model serving nodes in a region.
const SERVING_CPUS: ServingQuota = ServingQuota {
    quota_id: "CustomModelServingCPUsPerProjectPerRegion",
    metric: "aiplatform.googleapis.com/custom_model_serving_cpus",
};

/// Per accelerator (as Vertex AI names it, in lower case), the quota on
/// that GPU type for custom model serving in a region.
const SERVING_ACCELERATORS: &[(&str, ServingQuota)] = &[
    (
        "nvidia-tesla-t4",
        ServingQuota {
            quota_id: "CustomModelServingT4GPUsPerProjectPerRegion",
            metric: "aiplatform.googleapis.com/custom_model_serving_nvidia_t4_gpus",
        },
    ),
    (
        "nvidia-l4",
        ServingQuota {
            quota_id: "CustomModelServingL4GPUsPerProjectPerRegion",
            metric: "aiplatform.googleapis.com/custom_model_serving_nvidia_l4_gpus",
        },
    ),
    (
        "nvidia-tesla-p4",
        ServingQuota {
            quota_id: "CustomModelServingP4GPUsPerProjectPerRegion",
            metric: "aiplatform.googleapis.com/custom_model_serving_nvidia_p4_gpus",
        },
    ),
    (
        "nvidia-tesla-p100",
        ServingQuota {
            quota_id: "CustomModelServingP100GPUsPerProjectPerRegion",
            metric: "aiplatform.googleapis.com/custom_model_serving_nvidia_p100_gpus",
        },
    ),
    (
        "nvidia-tesla-v100",
        ServingQuota {
            quota_id: "CustomModelServingV100GPUsPerProjectPerRegion",
            metric: "aiplatform.googleapis.com/custom_model_serving_nvidia_v100_gpus",
        },
    ),
    (
        "nvidia-tesla-a100",
        ServingQuota {
            quota_id: "CustomModelServingA100GPUsPerProjectPerRegion",
            metric: "aiplatform.googleapis.com/custom_model_serving_nvidia_a100_gpus",
        },
    ),
    (
        "nvidia-a100-80gb",
        ServingQuota {
            quota_id: "CustomModelServingA10080GBGPUsPerProjectPerRegion",
            metric: "aiplatform.googleapis.com/custom_model_serving_nvidia_a100_80gb_gpus",
        },
    ),
    (
        "nvidia-h100-80gb",
        ServingQuota {
            quota_id: "CustomModelServingH100GPUsPerProjectPerRegion",
            metric: "aiplatform.googleapis.com/custom_model_serving_nvidia_h100_gpus",
        },
    ),
    (
        "nvidia-rtx-pro-6000",
        ServingQuota {
            quota_id: "CustomModelServingRTXPRO6000GPUsPerProjectPerRegion",
            metric: "aiplatform.googleapis.com/custom_model_serving_nvidia_rtx_pro_6000_gpus",
        },
    ),
];

/// What a Vertex AI online prediction node draws on a quota for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServingResource {
    /// vCPUs of serving nodes of one machine family (`n1`, `g2`, `a2`).
    Vcpus {
        /// The machine family, the machine type's first part.
        family: String,
    },
    /// GPUs of one type attached to serving nodes.
    Accelerator {
        /// The accelerator type as Vertex AI names it, in lower case
        /// (`nvidia-tesla-t4`, `nvidia-l4`, `nvidia-tesla-a100`).
        accelerator: String,
    },
}

impl ServingResource {
    /// The Vertex AI quota that limits this resource, or `None` when no
    /// quota for it is known.
    pub fn quota(&self) -> Option<ServingQuota> {
        match self {
            Self::Vcpus { family } => SERVING_FAMILIES
                .contains(&family.as_str())
                .then_some(SERVING_CPUS),
            Self::Accelerator { accelerator } => SERVING_ACCELERATORS
                .iter()
                .find(|(name, _)| name == accelerator)
                .map(|(_, quota)| *quota),
        }
    }
}

impl fmt::Display for ServingResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vcpus { family } => write!(f, "custom model serving CPUs ({family})"),
            Self::Accelerator { accelerator } => {
                write!(f, "custom model serving {accelerator} GPUs")
            }
        }
    }
}

/// A Vertex AI quota, as the Cloud Quotas API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ServingQuota {
    /// The quota's id within [`SERVICE`]
    /// (`CustomModelServingCPUsPerProjectPerRegion`).
    pub quota_id: &'static str,
    /// The metric it limits (`aiplatform.googleapis.com/custom_model_serving_cpus`).
    pub metric: &'static str,
}

/// How much of a resource a standby region would run after a failover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuotaNeed {
    /// The standby region (`europe-west1`).
    pub region: String,
    /// What is needed.
    pub resource: ServingResource,
    /// How many (vCPUs or GPUs).
    pub amount: u64,
    /// What needs it, for a person (`recsys-ranker`).
    pub why: String,
}

/// What the quota check found for one need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuotaFinding {
    /// The need checked.
    pub need: QuotaNeed,
    /// The quota checked, `None` when no quota for the resource is known.
    pub quota: Option<ServingQuota>,
    /// The amount of every need of this region on the same quota, this
    /// one's included: what the limit must cover.
    pub total: u64,
    /// Whether the quota covers it.
    pub outcome: QuotaOutcome,
}

/// Whether a region's quota covers what it needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum QuotaOutcome {
    /// The limit covers the total.
    Enough {
        /// The quota's value in effect in the region.
        limit: u64,
    },
    /// The limit is below the total: the region could not scale to it.
    NotEnough {
        /// The quota's value in effect in the region.
        limit: u64,
    },
    /// The quota is set to unlimited in the region.
    Unlimited,
    /// The quota could not be read: the reason says why (refused, out of
    /// reach, no such quota, no value for the region).
    Unknown {
        /// Why, for a person.
        why: String,
    },
}

impl QuotaFinding {
    /// Whether the standby is known to be able to scale to the need.
    pub fn is_enough(&self) -> bool {
        matches!(
            self.outcome,
            QuotaOutcome::Enough { .. } | QuotaOutcome::Unlimited
        )
    }
}

impl fmt::Display for QuotaFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let need = &self.need;
        write!(
            f,
            "{} needs {} {} for {}",
            need.region, need.amount, need.resource, need.why
        )?;
        if self.total != need.amount {
            write!(f, " ({} with its other needs on this quota)", self.total)?;
        }
        match &self.outcome {
            QuotaOutcome::Enough { limit } => write!(f, "; the quota is {limit}: enough"),
            QuotaOutcome::NotEnough { limit } => write!(
                f,
                "; the quota is {limit}: it could not scale during an outage"
            ),
            QuotaOutcome::Unlimited => write!(f, "; the quota is unlimited: enough"),
            QuotaOutcome::Unknown { why } => write!(f, "; the quota is unknown: {why}"),
        }
    }
}

/// Failures to set up the quota check.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// The Cloud Quotas client could not be built.
    #[error("connect to the Cloud Quotas API at {base_url}: {detail}")]
    Connect {
        /// The endpoint.
        base_url: String,
        /// What failed.
        detail: String,
    },
}

/// The Vertex AI serving quotas of projects, read from the Cloud Quotas API.
#[derive(Clone, Debug)]
pub struct ServingQuotas {
    client: CloudQuotas,
    base_url: String,
}

impl ServingQuotas {
    /// Connects to the Cloud Quotas API at `endpoint`. Anonymous endpoint
    /// credentials (a stand-in) are passed on; with Google credentials the
    /// client finds Application Default Credentials itself.
    pub async fn new(endpoint: &ApiEndpoint) -> Result<Self, QuotaError> {
        let mut builder = CloudQuotas::builder()
            .with_endpoint(&endpoint.base_url)
            .with_retry_policy(Aip194Strict.with_time_limit(RETRY_TIME_LIMIT));
        if matches!(endpoint.credentials, Credentials::Anonymous) {
            builder = builder.with_credentials(
                google_cloud_auth::credentials::anonymous::Builder::new().build(),
            );
        }
        let client = builder.build().await.map_err(|error| QuotaError::Connect {
            base_url: endpoint.base_url.clone(),
            detail: error.to_string(),
        })?;
        Ok(Self {
            client,
            base_url: endpoint.base_url.clone(),
        })
    }

    /// One finding per need, in the needs' order, against the quotas of
    /// [`SERVICE`] in `project`. A failure to read the quotas makes every
    /// need unknown, with the reason.
    pub async fn check(&self, project: &str, needs: &[QuotaNeed]) -> Vec<QuotaFinding> {
        let quotas = if needs.iter().any(|need| need.resource.quota().is_some()) {
            self.list(project).await
        } else {
            Ok(HashMap::new())
        };
        let findings = findings(project, needs, &quotas);
        for finding in &findings {
            if finding.is_enough() {
                tracing::debug!(project, finding = %finding, "standby quota");
            } else {
                tracing::warn!(project, finding = %finding, "standby quota");
            }
        }
        findings
    }

    /// Every quota info of [`SERVICE`] in `project`, by quota id, following
    /// the listing's pages; on failure, why, for a person.
    async fn list(&self, project: &str) -> Result<HashMap<String, QuotaInfo>, String> {
        let parent = format!("projects/{project}/locations/global/services/{SERVICE}");
        let mut quotas = HashMap::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .client
                .list_quota_infos()
                .set_parent(&parent)
                .set_page_size(PAGE_SIZE)
                .set_page_token(page_token)
                .send()
                .await
                .map_err(|error| self.refusal(project, &error))?;
            quotas.extend(
                page.quota_infos
                    .into_iter()
                    .map(|info| (info.quota_id.clone(), info)),
            );
            if page.next_page_token.is_empty() {
                return Ok(quotas);
            }
            page_token = page.next_page_token;
        }
    }

    /// Why a listing failed, naming the permission when it was refused.
    fn refusal(&self, project: &str, error: &google_cloud_gax::error::Error) -> String {
        match error.status() {
            Some(status) if status.code == Code::PermissionDenied => format!(
                "the Cloud Quotas API refused to list the quotas of {SERVICE} in project \
                 {project} ({}: {}); the caller needs {PERMISSION} on the project \
                 (roles/cloudquotas.viewer holds it)",
                status.code.name(),
                status.message
            ),
            Some(status) => format!(
                "the Cloud Quotas API at {} refused to list the quotas of {SERVICE} in \
                 project {project} ({}: {})",
                self.base_url,
                status.code.name(),
                status.message
            ),
            None => format!(
                "the Cloud Quotas API at {} could not be reached to list the quotas of \
                 {SERVICE} in project {project}: {error}",
                self.base_url
            ),
        }
    }
}

/// The findings for `needs` given the project's quotas (or why they could
/// not be read).
fn findings(
    project: &str,
    needs: &[QuotaNeed],
    quotas: &Result<HashMap<String, QuotaInfo>, String>,
) -> Vec<QuotaFinding> {
    let mut totals: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for need in needs {
        if let Some(quota) = need.resource.quota() {
            *totals
                .entry((need.region.as_str(), quota.quota_id))
                .or_default() += need.amount;
        }
    }
    needs
        .iter()
        .map(|need| {
            let Some(quota) = need.resource.quota() else {
                return QuotaFinding {
                    need: need.clone(),
                    quota: None,
                    total: need.amount,
                    outcome: QuotaOutcome::Unknown {
                        why: format!(
                            "no {SERVICE} quota is known to limit {}; check it by hand",
                            need.resource
                        ),
                    },
                };
            };
            let total = totals[&(need.region.as_str(), quota.quota_id)];
            let outcome = match quotas {
                Err(why) => QuotaOutcome::Unknown { why: why.clone() },
                Ok(quotas) => match quotas.get(quota.quota_id) {
                    None => QuotaOutcome::Unknown {
                        why: format!(
                            "{SERVICE} lists no quota {} in project {project}",
                            quota.quota_id
                        ),
                    },
                    Some(info) => outcome(info, &need.region, total),
                },
            };
            QuotaFinding {
                need: need.clone(),
                quota: Some(quota),
                total,
                outcome,
            }
        })
        .collect()
}

/// Compares `total` with the value of `info` in effect in `region`: the
/// region's own value, else the default (the dimensions info naming no
/// region) where it applies to the region.
fn outcome(info: &QuotaInfo, region: &str, total: u64) -> QuotaOutcome {
    let own = info
        .dimensions_infos
        .iter()
        .find(|dims| dims.dimensions.get("region").is_some_and(|r| r == region));
    let default = || {
        info.dimensions_infos.iter().find(|dims| {
            !dims.dimensions.contains_key("region")
                && (dims.applicable_locations.is_empty()
                    || dims
                        .applicable_locations
                        .iter()
                        .any(|location| location == region || location == "global"))
        })
    };
    let Some(details) = own.or_else(default).and_then(|dims| dims.details.as_ref()) else {
        return QuotaOutcome::Unknown {
            why: format!("{} has no value for {region}", info.quota_id),
        };
    };
    match u64::try_from(details.value) {
        Ok(limit) if limit >= total => QuotaOutcome::Enough { limit },
        Ok(limit) => QuotaOutcome::NotEnough { limit },
        Err(_) if details.value == -1 => QuotaOutcome::Unlimited,
        Err(_) => QuotaOutcome::Unknown {
            why: format!(
                "{} has the value {} in {region}, which means nothing known",
                info.quota_id, details.value
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use google_cloud_api_cloudquotas_v1::model::{DimensionsInfo, QuotaDetails};

    fn need(region: &str, resource: ServingResource, amount: u64) -> QuotaNeed {
        QuotaNeed {
            region: region.into(),
            resource,
            amount,
            why: "recsys-ranker".into(),
        }
    }

    fn cpus(family: &str) -> ServingResource {
        ServingResource::Vcpus {
            family: family.into(),
        }
    }

    fn cpu_quota(values: &[(Option<&str>, i64)]) -> HashMap<String, QuotaInfo> {
        let info = QuotaInfo::new()
            .set_quota_id(SERVING_CPUS.quota_id)
            .set_metric(SERVING_CPUS.metric)
            .set_dimensions_infos(values.iter().map(|(region, value)| {
                DimensionsInfo::new()
                    .set_dimensions(region.map(|r| ("region", r)))
                    .set_details(QuotaDetails::new().set_value(*value))
            }));
        HashMap::from([(SERVING_CPUS.quota_id.to_string(), info)])
    }

    #[test]
    fn needs_of_one_region_on_one_quota_share_its_limit() {
        let quotas = Ok(cpu_quota(&[(Some("europe-west1"), 32)]));
        let needs = [
            need("europe-west1", cpus("n1"), 24),
            need("europe-west1", cpus("g2"), 16),
        ];
        let found = findings("p", &needs, &quotas);
        assert!(
            found
                .iter()
                .all(|f| f.total == 40 && f.outcome == QuotaOutcome::NotEnough { limit: 32 })
        );
        assert_eq!(
            found[0].to_string(),
            "europe-west1 needs 24 custom model serving CPUs (n1) for recsys-ranker \
             (40 with its other needs on this quota); the quota is 32: it could not \
             scale during an outage"
        );
    }

    #[test]
    fn a_default_limited_to_other_locations_does_not_apply() {
        let mut quotas = cpu_quota(&[(None, 64)]);
        quotas.values_mut().for_each(|info| {
            info.dimensions_infos[0].applicable_locations = vec!["us-central1".into()]
        });
        let found = findings("p", &[need("europe-west1", cpus("n1"), 8)], &Ok(quotas));
        assert!(
            matches!(&found[0].outcome, QuotaOutcome::Unknown { why } if why.contains("no value for europe-west1"))
        );
    }

    #[test]
    fn minus_one_is_unlimited_and_an_unknown_family_is_unknown() {
        let quotas = Ok(cpu_quota(&[(None, -1)]));
        let needs = [
            need("europe-west1", cpus("n1"), 8),
            need("europe-west1", cpus("m3"), 8),
        ];
        let found = findings("p", &needs, &quotas);
        assert_eq!(found[0].outcome, QuotaOutcome::Unlimited);
        assert_eq!(found[1].quota, None);
        assert!(!found[1].is_enough());
    }
}
