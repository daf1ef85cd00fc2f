//! Prices: what the plan needs to know of Google Cloud's price list, one
//! SKU per [`PriceKey`], with its unit price, so that every cost line names
//! the price it was computed from.
//!
//! A [`PriceBook`] is read from a price file (JSON): the snapshot that ships
//! with Lifeboat (`plan/prices/snapshot.json`), or one written by
//! `lifeboat plan --refresh-prices` from the Cloud Billing Catalog API.

use std::fmt;

use chrono::{DateTime, Utc};
use lifeboat_shared::topology::StorageClass;
use serde::{Deserialize, Serialize};

/// What one price is for, in the plan's own terms. The price file maps each
/// key to exactly one SKU of the Cloud Billing Catalog.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PriceKey {
    /// One vCPU-hour of a Vertex AI prediction node of a machine family
    /// (`n1`, `e2`, `n2`, `g2`, `a2`) in a region.
    PredictionVcpu {
        /// The machine family.
        family: String,
        /// The region.
        region: String,
    },
    /// One GiB-hour of memory of a Vertex AI prediction node of a machine
    /// family in a region.
    PredictionMemory {
        /// The machine family.
        family: String,
        /// The region.
        region: String,
    },
    /// One hour of one accelerator (`nvidia-tesla-t4`, `nvidia-l4`) attached
    /// to a Vertex AI prediction node in a region.
    PredictionAccelerator {
        /// The accelerator type, as Vertex AI names it in lower case.
        accelerator: String,
        /// The region.
        region: String,
    },
    /// One GiB-month of Cloud Storage of a class in a region.
    Storage {
        /// The storage class.
        class: StorageClass,
        /// The region.
        region: String,
    },
    /// One GiB copied from one region to another (Cloud Storage and
    /// BigQuery replication, checkpoint fan-out).
    InterRegionTransfer {
        /// The region the bytes leave.
        from: String,
        /// The region the bytes reach.
        to: String,
    },
    /// One GiB-month of BigQuery active logical storage in a region.
    BigQueryStorage {
        /// The region.
        region: String,
    },
    /// One hour of a global external Application Load Balancer's
    /// forwarding rule.
    LoadBalancerRule,
    /// One GiB processed by a global external Application Load Balancer.
    LoadBalancerData,
    /// One vCPU-second of a Cloud Run service (request-based billing) in a region.
    CloudRunVcpu {
        /// The region.
        region: String,
    },
    /// One GiB-second of a Cloud Run service's memory (request-based
    /// billing) in a region.
    CloudRunMemory {
        /// The region.
        region: String,
    },
    /// One request to a Cloud Run service.
    CloudRunRequests,
}

impl fmt::Display for PriceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PriceKey::PredictionVcpu { family, region } => {
                write!(f, "Vertex AI prediction {family} vCPU in {region}")
            }
            PriceKey::PredictionMemory { family, region } => {
                write!(f, "Vertex AI prediction {family} memory in {region}")
            }
            PriceKey::PredictionAccelerator {
                accelerator,
                region,
            } => write!(f, "Vertex AI prediction {accelerator} in {region}"),
            PriceKey::Storage { class, region } => {
                write!(f, "Cloud Storage {} in {region}", class.name())
            }
            PriceKey::InterRegionTransfer { from, to } => {
                write!(f, "data transfer from {from} to {to}")
            }
            PriceKey::BigQueryStorage { region } => {
                write!(f, "BigQuery active logical storage in {region}")
            }
            PriceKey::LoadBalancerRule => f.write_str("load balancer forwarding rule"),
            PriceKey::LoadBalancerData => f.write_str("load balancer data processed"),
            PriceKey::CloudRunVcpu { region } => write!(f, "Cloud Run vCPU in {region}"),
            PriceKey::CloudRunMemory { region } => write!(f, "Cloud Run memory in {region}"),
            PriceKey::CloudRunRequests => f.write_str("Cloud Run requests"),
        }
    }
}

/// The price of one SKU for one [`PriceKey`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// What the price is for.
    pub key: PriceKey,
    /// The Cloud Billing Catalog SKU id (`E5F0-6A5D-7BAD`).
    pub sku: String,
    /// The SKU's description in the catalog.
    pub description: String,
    /// The unit the price is per, as the catalog's usage unit
    /// (`h`, `GiBy.h`, `GiBy.mo`, `GiBy`, `s`, `GiBy.s`, `count`).
    pub unit: String,
    /// US dollars per unit (the first paid tier).
    pub usd_per_unit: f64,
}

/// Where and when a price file's prices were taken.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriceSource {
    /// Where they came from, in words a person can check.
    pub origin: String,
    /// When they were taken.
    pub taken_at: DateTime<Utc>,
    /// After how many days the prices count as stale.
    pub stale_after_days: u32,
}

/// A price file: the prices the plan may use, by key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriceBook {
    /// Where and when the prices were taken.
    pub source: PriceSource,
    /// One price per key.
    pub prices: Vec<Price>,
}

/// A price the plan needs that the price file does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no price for {key} in the price file ({origin}); run `lifeboat plan --refresh-prices`")]
pub struct MissingPrice {
    /// What was asked for.
    pub key: PriceKey,
    /// The price file's origin.
    pub origin: String,
}

impl PriceBook {
    /// The price for `key`, or an error naming it.
    pub fn price(&self, key: &PriceKey) -> Result<&Price, MissingPrice> {
        self.prices
            .iter()
            .find(|price| &price.key == key)
            .ok_or_else(|| MissingPrice {
                key: key.clone(),
                origin: self.source.origin.clone(),
            })
    }
}

impl PriceBook {
    /// How far past its stated age the price file is at `now`, if it is.
    pub fn stale(&self, now: DateTime<Utc>) -> Option<chrono::Duration> {
        let limit =
            self.source.taken_at + chrono::Duration::days(i64::from(self.source.stale_after_days));
        (now > limit).then(|| now - limit)
    }
}
