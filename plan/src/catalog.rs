//! Refreshing prices from the Cloud Billing Catalog API
//! (`cloudbilling.googleapis.com`, `services.skus.list`) through the
//! official `google-cloud-billing-v1` client.
//!
//! Each [`PriceKey`] names one SKU by a [`SkuQuery`]: the service it is
//! listed under, a description pattern, the region it must serve and the
//! `OnDemand` usage type. [`refresh`] lists every SKU of the services the
//! keys need (following page tokens) and takes, for each key, the one SKU
//! that matches: none or several is an error naming the key and what was
//! looked for, never a guessed price.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use google_cloud_billing_v1::client::CloudCatalog;
use google_cloud_billing_v1::model::Sku;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt};
use lifeboat_shared::gcp::{ApiEndpoint, Credentials};

use lifeboat_shared::topology::StorageClass;

use crate::prices::{Price, PriceBook, PriceKey, PriceSource};

/// Vertex AI's service id in the catalog.
pub const VERTEX_AI: &str = "C7E2-9256-1C43";
/// Cloud Storage's service id in the catalog.
pub const CLOUD_STORAGE: &str = "95FF-2EF5-5EA1";
/// BigQuery's service id in the catalog.
pub const BIGQUERY: &str = "24E6-581D-38E5";
/// Compute Engine's service id: inter-region data transfer is listed under it.
pub const COMPUTE_ENGINE: &str = "6F81-5844-456A";
/// Networking's service id: load balancing is listed under it.
pub const NETWORKING: &str = "E505-1604-58F8";
/// Cloud Run's service id in the catalog.
pub const CLOUD_RUN: &str = "152E-C115-5142";

/// The `service_regions` entry of a SKU that is not tied to a region.
const GLOBAL: &str = "global";

/// How long one listing call keeps retrying transient failures: a catalog
/// that stays unreachable is reported within seconds, so the plan can say
/// so and fall back to the snapshot.
const RETRY_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long refreshed prices count as fresh.
const STALE_AFTER_DAYS: u32 = 180;

/// Words that mark a variant a pattern never means unless it names them
/// itself (a dual-region bucket is not a regional one).
const VARIANTS: [&str; 5] = [
    "dual-region",
    "multi-region",
    "autoclass",
    "early delete",
    "preemptible",
];

/// What one key's SKU looks like in the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkuQuery {
    /// The catalog service id the SKU is listed under.
    pub service: &'static str,
    /// The description starts with this.
    pub prefix: String,
    /// The description ends with this (often empty).
    pub suffix: String,
    /// The region the SKU must list in `service_regions` (`global` for a
    /// key that is not regional).
    pub region: String,
}

impl SkuQuery {
    /// Whether `sku` is the one this query looks for.
    pub fn matches(&self, sku: &Sku) -> bool {
        self.describes(&sku.description)
            && sku.service_regions.iter().any(|r| r == &self.region)
            && sku
                .category
                .as_ref()
                .is_some_and(|category| category.usage_type == "OnDemand")
    }

    /// Whether `description` fits the pattern (whatever the SKU's region).
    pub fn describes(&self, description: &str) -> bool {
        let lower = description.to_lowercase();
        let pattern = format!("{} {}", self.prefix, self.suffix).to_lowercase();
        description.starts_with(&self.prefix)
            && description.len() >= self.prefix.len() + self.suffix.len()
            && description.ends_with(&self.suffix)
            && !VARIANTS
                .iter()
                .any(|variant| lower.contains(variant) && !pattern.contains(variant))
    }
}

impl fmt::Display for SkuQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.suffix.is_empty() {
            write!(f, "\"{}…\"", self.prefix)?;
        } else {
            write!(f, "\"{}…{}\"", self.prefix, self.suffix)?;
        }
        write!(
            f,
            " (OnDemand, in {}, service {})",
            self.region, self.service
        )
    }
}

/// The catalog's word for a machine family in Vertex AI prediction SKUs.
fn family_words(family: &str) -> String {
    match family {
        "n1" => "N1 Predefined".to_string(),
        other => other.to_uppercase(),
    }
}

/// The catalog's words for an accelerator (`nvidia-tesla-t4` is
/// `Nvidia Tesla T4`, `nvidia-l4` is `Nvidia L4`).
fn accelerator_words(accelerator: &str) -> String {
    accelerator
        .split('-')
        .map(|word| match word {
            "nvidia" => "Nvidia".to_string(),
            "tesla" => "Tesla".to_string(),
            other => other.to_uppercase(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The place name inter-region transfer SKUs use for a destination region,
/// or the region id itself where Lifeboat does not know it (the query then
/// finds nothing and says so).
fn transfer_place(region: &str) -> &str {
    match region {
        "us-central1" => "Iowa",
        "us-east1" => "South Carolina",
        "us-east4" => "Virginia",
        "us-west1" => "Oregon",
        "europe-west1" => "Belgium",
        "europe-west4" => "Netherlands",
        other => other,
    }
}

/// The SKU a key is priced by.
pub fn sku_query(key: &PriceKey) -> SkuQuery {
    let query = |service, prefix: String, suffix: &str, region: &str| SkuQuery {
        service,
        prefix,
        suffix: suffix.to_string(),
        region: region.to_string(),
    };
    let prediction = "Vertex AI: Online/Batch Prediction";
    match key {
        PriceKey::PredictionVcpu { family, region } => query(
            VERTEX_AI,
            format!(
                "{prediction} {} Instance Core running in ",
                family_words(family)
            ),
            "",
            region,
        ),
        PriceKey::PredictionMemory { family, region } => query(
            VERTEX_AI,
            format!(
                "{prediction} {} Instance Ram running in ",
                family_words(family)
            ),
            "",
            region,
        ),
        PriceKey::PredictionAccelerator {
            accelerator,
            region,
        } => query(
            VERTEX_AI,
            format!(
                "{prediction} {} GPU running in ",
                accelerator_words(accelerator)
            ),
            "",
            region,
        ),
        PriceKey::Storage { class, region } => {
            let class = match class {
                StorageClass::Standard => "Standard",
                StorageClass::Nearline => "Nearline",
                StorageClass::Coldline => "Coldline",
                StorageClass::Archive => "Archive",
            };
            query(CLOUD_STORAGE, format!("{class} Storage "), "", region)
        }
        PriceKey::InterRegionTransfer { from, to } => query(
            COMPUTE_ENGINE,
            "Network Inter Region Data Transfer Out from ".to_string(),
            &format!(" to {}", transfer_place(to)),
            from,
        ),
        PriceKey::BigQueryStorage { region } => query(
            BIGQUERY,
            format!("Active Logical Storage ({region})"),
            "",
            region,
        ),
        PriceKey::LoadBalancerRule => query(
            NETWORKING,
            "Cloud Load Balancer Forwarding Rule Minimum Global".to_string(),
            "",
            GLOBAL,
        ),
        PriceKey::CloudRunVcpu { region } => query(
            CLOUD_RUN,
            "Services CPU (Instance-based billing)".to_string(),
            "",
            region,
        ),
        PriceKey::CloudRunMemory { region } => query(
            CLOUD_RUN,
            "Services Memory (Instance-based billing)".to_string(),
            "",
            region,
        ),
    }
}

/// What can go wrong refreshing prices from the catalog.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The client could not be built.
    #[error("connect to the Cloud Billing Catalog at {endpoint}: {detail}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// Why.
        detail: String,
    },
    /// Listing a service's SKUs failed.
    #[error("list the SKUs of service {service} in the Cloud Billing Catalog: {detail}")]
    List {
        /// The catalog service id.
        service: String,
        /// What the API said.
        detail: String,
    },
    /// No SKU matches a key.
    #[error("no SKU for {key} in the Cloud Billing Catalog: looked for {looked_for}")]
    NoSku {
        /// The key.
        key: PriceKey,
        /// The SKU description (and region) looked for.
        looked_for: String,
    },
    /// More than one SKU matches a key, so its price is not known.
    #[error("{} SKUs for {key} in the Cloud Billing Catalog ({}): looked for {looked_for}", skus.len(), skus.join(", "))]
    Ambiguous {
        /// The key.
        key: PriceKey,
        /// The SKU description (and region) looked for.
        looked_for: String,
        /// The ids and descriptions of the SKUs that matched.
        skus: Vec<String>,
    },
    /// The SKU for a key has no paid tier in its newest pricing.
    #[error("SKU {sku} ({description}) for {key} has no non-zero US-dollar price")]
    NoPrice {
        /// The key.
        key: PriceKey,
        /// The SKU id.
        sku: String,
        /// The SKU description.
        description: String,
    },
}

/// Connects to the Cloud Billing Catalog API at `endpoint`: anonymous
/// endpoint credentials (a stand-in) are passed on; otherwise the client
/// finds Application Default Credentials itself. Transient failures are
/// retried for at most ten seconds per call.
pub async fn connect(endpoint: &ApiEndpoint) -> Result<CloudCatalog, RefreshError> {
    let mut builder = CloudCatalog::builder()
        .with_endpoint(&endpoint.base_url)
        .with_retry_policy(Aip194Strict.with_time_limit(RETRY_TIME_LIMIT));
    if matches!(endpoint.credentials, Credentials::Anonymous) {
        builder = builder
            .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build());
    }
    builder
        .build()
        .await
        .map_err(|error| RefreshError::Connect {
            endpoint: endpoint.base_url.clone(),
            detail: error.to_string(),
        })
}

/// Every SKU of one catalog service, in US dollars, page after page.
async fn list_skus(client: &CloudCatalog, service: &str) -> Result<Vec<Sku>, RefreshError> {
    let mut skus = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_skus()
            .set_parent(format!("services/{service}"))
            .set_currency_code("USD")
            .set_page_token(page_token.clone())
            .send()
            .await
            .map_err(|error| RefreshError::List {
                service: service.to_string(),
                detail: error.to_string(),
            })?;
        skus.extend(page.skus);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    tracing::debug!(service, skus = skus.len(), "catalog SKUs listed");
    Ok(skus)
}

/// The unit and US-dollar unit price of the first non-zero tier of the
/// SKU's newest pricing.
fn unit_price(sku: &Sku) -> Option<(String, f64)> {
    let newest = sku.pricing_info.iter().max_by_key(|info| {
        info.effective_time
            .as_ref()
            .map(|at| (at.seconds(), at.nanos()))
    })?;
    let expression = newest.pricing_expression.as_ref()?;
    expression.tiered_rates.iter().find_map(|tier| {
        let money = tier.unit_price.as_ref()?;
        let usd = money.units as f64 + f64::from(money.nanos) / 1e9;
        (usd > 0.0).then(|| (expression.usage_unit.clone(), usd))
    })
}

/// The one SKU matching `key` among `skus`, priced.
fn price_for(key: &PriceKey, skus: &[Sku]) -> Result<Price, RefreshError> {
    let query = sku_query(key);
    let matching: Vec<&Sku> = skus.iter().filter(|sku| query.matches(sku)).collect();
    let sku = match matching.as_slice() {
        [] => {
            return Err(RefreshError::NoSku {
                key: key.clone(),
                looked_for: query.to_string(),
            });
        }
        [sku] => *sku,
        several => {
            return Err(RefreshError::Ambiguous {
                key: key.clone(),
                looked_for: query.to_string(),
                skus: several
                    .iter()
                    .map(|sku| format!("{} {}", sku.sku_id, sku.description))
                    .collect(),
            });
        }
    };
    let (unit, usd_per_unit) = unit_price(sku).ok_or_else(|| RefreshError::NoPrice {
        key: key.clone(),
        sku: sku.sku_id.clone(),
        description: sku.description.clone(),
    })?;
    Ok(Price {
        key: key.clone(),
        sku: sku.sku_id.clone(),
        description: sku.description.clone(),
        unit,
        usd_per_unit,
    })
}

/// Prices every key from the catalog `client` reaches, as of `now`: lists
/// the SKUs of each service the keys need once, then matches each key to
/// exactly one SKU.
pub async fn refresh(
    client: &CloudCatalog,
    keys: &[PriceKey],
    now: DateTime<Utc>,
) -> Result<PriceBook, RefreshError> {
    let services: BTreeSet<&'static str> = keys.iter().map(|key| sku_query(key).service).collect();
    let mut listed: BTreeMap<&'static str, Vec<Sku>> = BTreeMap::new();
    for service in services {
        listed.insert(service, list_skus(client, service).await?);
    }
    let prices = keys
        .iter()
        .map(|key| price_for(key, &listed[sku_query(key).service]))
        .collect::<Result<Vec<_>, _>>()?;
    tracing::info!(
        prices = prices.len(),
        services = listed.len(),
        "prices refreshed from the Cloud Billing Catalog"
    );
    Ok(PriceBook {
        source: PriceSource {
            origin: format!(
                "Cloud Billing Catalog API (services.skus.list, USD list prices, first paid tier), read {}",
                now.format("%Y-%m-%d %H:%M UTC")
            ),
            taken_at: now,
            stale_after_days: STALE_AFTER_DAYS,
        },
        prices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_snapshot_price_fits_its_keys_sku_pattern() {
        for price in PriceBook::snapshot().prices {
            let query = sku_query(&price.key);
            assert!(
                query.describes(&price.description),
                "{}: {:?} does not fit {query}",
                price.key,
                price.description
            );
        }
    }

    #[test]
    fn variants_the_pattern_does_not_name_are_not_matched() {
        let query = sku_query(&PriceKey::Storage {
            class: StorageClass::Standard,
            region: "us-central1".into(),
        });
        assert!(query.describes("Standard Storage Iowa"));
        assert!(!query.describes("Standard Storage Iowa Dual-region"));
        assert!(!query.describes("Autoclass Standard Storage Iowa"));
        assert!(!query.describes("Nearline Storage Iowa"));
    }

    #[test]
    fn accelerators_are_named_as_the_catalog_names_them() {
        assert_eq!(accelerator_words("nvidia-tesla-t4"), "Nvidia Tesla T4");
        assert_eq!(accelerator_words("nvidia-l4"), "Nvidia L4");
        assert_eq!(accelerator_words("nvidia-tesla-a100"), "Nvidia Tesla A100");
    }

    #[test]
    fn the_a100_pattern_does_not_take_the_80gb_card() {
        let query = sku_query(&PriceKey::PredictionAccelerator {
            accelerator: "nvidia-tesla-a100".into(),
            region: "us-central1".into(),
        });
        assert!(query.describes(
            "Vertex AI: Online/Batch Prediction Nvidia Tesla A100 GPU running in Americas"
        ));
        assert!(!query.describes(
            "Vertex AI: Online/Batch Prediction Nvidia Tesla A100 80GB GPU running in Americas"
        ));
    }
}
