//! Prices: what the plan needs to know of Google Cloud's price list, one
//! SKU per [`PriceKey`], with its unit price, so that every cost line names
//! the price it was computed from.
//!
//! A [`PriceBook`] is read from a price file (JSON): the snapshot that ships
//! with Lifeboat (`plan/prices/snapshot.json`), or one written by
//! `lifeboat plan --refresh-prices` from the Cloud Billing Catalog API.

use std::fmt;
use std::path::{Path, PathBuf};

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
    /// One vCPU-second of a Cloud Run service with CPU always allocated
    /// (instance-based billing) in a region.
    CloudRunVcpu {
        /// The region.
        region: String,
    },
    /// One GiB-second of a Cloud Run service's memory with CPU always
    /// allocated (instance-based billing) in a region.
    CloudRunMemory {
        /// The region.
        region: String,
    },
}

impl PriceKey {
    /// The usage unit the plan counts this key in, as the catalog writes
    /// units (`h`, `GiBy.h`, `GiBy.mo`, `GiBy`, `s`, `GiBy.s`): a
    /// price in another unit cannot be used.
    pub const fn unit(&self) -> &'static str {
        match self {
            PriceKey::PredictionVcpu { .. }
            | PriceKey::PredictionAccelerator { .. }
            | PriceKey::LoadBalancerRule => "h",
            PriceKey::PredictionMemory { .. } => "GiBy.h",
            PriceKey::Storage { .. } | PriceKey::BigQueryStorage { .. } => "GiBy.mo",
            PriceKey::InterRegionTransfer { .. } => "GiBy",
            PriceKey::CloudRunVcpu { .. } => "s",
            PriceKey::CloudRunMemory { .. } => "GiBy.s",
        }
    }
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
            PriceKey::CloudRunVcpu { region } => write!(f, "Cloud Run vCPU in {region}"),
            PriceKey::CloudRunMemory { region } => write!(f, "Cloud Run memory in {region}"),
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
    /// (`h`, `GiBy.h`, `GiBy.mo`, `GiBy`, `s`, `GiBy.s`).
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

/// The price file that ships with Lifeboat, read by [`PriceBook::snapshot`].
const SNAPSHOT: &str = include_str!("../prices/snapshot.json");

/// What can go wrong reading or writing a price file.
#[derive(Debug, thiserror::Error)]
pub enum PriceFileError {
    /// The file could not be read.
    #[error("read price file {path}: {source}")]
    Read {
        /// The price file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a price file.
    #[error("price file {path}:{line}:{column}: {detail}")]
    Parse {
        /// The price file.
        path: PathBuf,
        /// The line serde_json stopped at (1-based).
        line: usize,
        /// The column serde_json stopped at (1-based).
        column: usize,
        /// What serde_json reported.
        detail: String,
    },
    /// The file holds two prices for one key, so neither can be trusted.
    #[error("price file {path}: two prices for {key}")]
    Duplicate {
        /// The price file.
        path: PathBuf,
        /// The key priced twice.
        key: PriceKey,
    },
    /// The file could not be written (or moved into place).
    #[error("write price file {path}: {source}")]
    Write {
        /// The price file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
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

/// The variable naming a price file to use in place of the snapshot.
pub const PRICES_VARIABLE: &str = "LIFEBOAT_PRICES";

impl PriceBook {
    /// Reads a price file, refusing one that prices a key twice.
    pub fn load(path: &Path) -> Result<PriceBook, PriceFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| PriceFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let book: PriceBook =
            serde_json::from_str(&text).map_err(|error| PriceFileError::Parse {
                path: path.to_path_buf(),
                line: error.line(),
                column: error.column(),
                detail: error.to_string(),
            })?;
        if let Some(key) = book.duplicate_key() {
            return Err(PriceFileError::Duplicate {
                path: path.to_path_buf(),
                key: key.clone(),
            });
        }
        tracing::debug!(path = %path.display(), prices = book.prices.len(), origin = %book.source.origin, "price file read");
        Ok(book)
    }

    /// Writes the price file as pretty JSON: to a temporary file beside
    /// `path` first, then renamed over it, so a reader never sees half a file.
    pub fn save(&self, path: &Path) -> Result<(), PriceFileError> {
        let write_error = |source| PriceFileError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|error| write_error(std::io::Error::other(error)))?;
        text.push('\n');
        let name = path
            .file_name()
            .ok_or_else(|| write_error(std::io::Error::other("the path names no file")))?;
        let mut temporary_name = std::ffi::OsString::from(".");
        temporary_name.push(name);
        temporary_name.push(".tmp");
        let temporary = path.with_file_name(temporary_name);
        std::fs::write(&temporary, text).map_err(write_error)?;
        std::fs::rename(&temporary, path).map_err(|source| {
            let _ = std::fs::remove_file(&temporary);
            write_error(source)
        })?;
        tracing::info!(path = %path.display(), prices = self.prices.len(), "price file written");
        Ok(())
    }

    /// The price file `$LIFEBOAT_PRICES` names, else the snapshot: what the
    /// services (drill reports, the console) plan with.
    pub fn configured() -> Result<PriceBook, PriceFileError> {
        match std::env::var_os(PRICES_VARIABLE) {
            Some(path) => Self::load(Path::new(&path)),
            None => Ok(Self::snapshot()),
        }
    }

    /// The snapshot that ships with Lifeboat (`plan/prices/snapshot.json`),
    /// for offline use and the local cloud.
    pub fn snapshot() -> PriceBook {
        // A unit test parses the same text, so this cannot fail in a build
        // whose tests pass.
        serde_json::from_str(SNAPSHOT).expect("the shipped price snapshot parses")
    }

    /// How far past its stated age (`stale_after_days` after `taken_at`)
    /// the price file is at `now`, or `None` while it is fresh.
    pub fn stale(&self, now: DateTime<Utc>) -> Option<chrono::Duration> {
        let limit = chrono::Duration::days(i64::from(self.source.stale_after_days));
        let past = now - self.source.taken_at - limit;
        (past > chrono::Duration::zero()).then_some(past)
    }

    /// The first key priced twice, if any.
    fn duplicate_key(&self) -> Option<&PriceKey> {
        let mut seen = std::collections::HashSet::new();
        self.prices
            .iter()
            .map(|price| &price.key)
            .find(|key| !seen.insert(*key))
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    const REGIONS: [&str; 6] = [
        "us-central1",
        "us-east1",
        "us-east4",
        "us-west1",
        "europe-west1",
        "europe-west4",
    ];

    /// Where a family or accelerator is not offered, the snapshot holds no
    /// price for it (rather than one made up).
    const NOT_OFFERED: [(&str, &str); 3] = [
        ("a2", "europe-west1"),
        ("nvidia-tesla-a100", "us-east4"),
        ("nvidia-tesla-a100", "europe-west1"),
    ];

    fn offered(what: &str, region: &str) -> bool {
        !NOT_OFFERED.contains(&(what, region))
    }

    /// Every key the snapshot promises to price.
    fn promised_keys() -> Vec<PriceKey> {
        let mut keys = vec![PriceKey::LoadBalancerRule];
        for region in REGIONS.map(String::from) {
            for family in ["n1", "n2", "e2", "g2", "a2"] {
                if offered(family, &region) {
                    let family = family.to_string();
                    keys.push(PriceKey::PredictionVcpu {
                        family: family.clone(),
                        region: region.clone(),
                    });
                    keys.push(PriceKey::PredictionMemory {
                        family,
                        region: region.clone(),
                    });
                }
            }
            for accelerator in ["nvidia-tesla-t4", "nvidia-l4", "nvidia-tesla-a100"] {
                if offered(accelerator, &region) {
                    keys.push(PriceKey::PredictionAccelerator {
                        accelerator: accelerator.to_string(),
                        region: region.clone(),
                    });
                }
            }
            for class in [
                StorageClass::Standard,
                StorageClass::Nearline,
                StorageClass::Coldline,
                StorageClass::Archive,
            ] {
                keys.push(PriceKey::Storage {
                    class,
                    region: region.clone(),
                });
            }
            keys.push(PriceKey::BigQueryStorage {
                region: region.clone(),
            });
            keys.push(PriceKey::CloudRunVcpu {
                region: region.clone(),
            });
            keys.push(PriceKey::CloudRunMemory {
                region: region.clone(),
            });
            for to in REGIONS.iter().filter(|to| **to != region) {
                keys.push(PriceKey::InterRegionTransfer {
                    from: region.clone(),
                    to: to.to_string(),
                });
            }
        }
        keys
    }

    #[test]
    fn the_snapshot_parses_and_prices_every_promised_key_once() {
        let snapshot = PriceBook::snapshot();
        let promised = promised_keys();
        for key in &promised {
            let price = snapshot.price(key).expect("the snapshot prices it");
            assert!(price.usd_per_unit > 0.0, "{key}: no price");
            assert!(!price.unit.is_empty(), "{key}: no unit");
        }
        assert_eq!(snapshot.duplicate_key(), None);
        assert_eq!(snapshot.prices.len(), promised.len());
        assert_eq!(snapshot.source.stale_after_days, 180);
    }

    #[test]
    fn the_snapshot_leaves_out_what_a_region_does_not_offer() {
        let a100 = PriceKey::PredictionAccelerator {
            accelerator: "nvidia-tesla-a100".into(),
            region: "europe-west1".into(),
        };
        let missing = PriceBook::snapshot().price(&a100).unwrap_err();
        assert_eq!(missing.key, a100);
    }

    #[test]
    fn a_saved_file_loads_back_equal() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("prices.json");
        let book = PriceBook::snapshot();
        book.save(&path).expect("save");
        assert_eq!(PriceBook::load(&path).expect("load"), book);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("prices.json")]);
    }

    #[test]
    fn bad_json_is_reported_with_file_line_and_column() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("prices.json");
        std::fs::write(&path, "{\n  \"source\": {\n    \"origin\": 7\n").expect("write");
        let error = PriceBook::load(&path).unwrap_err();
        let PriceFileError::Parse { line, column, .. } = &error else {
            panic!("expected a parse error, got {error}");
        };
        assert_eq!((*line, *column), (3, 15));
        assert!(
            error
                .to_string()
                .starts_with(&format!("price file {}:3:15: ", path.display())),
            "{error}"
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = PriceBook::load(Path::new("/nonexistent/prices.json")).unwrap_err();
        assert!(matches!(error, PriceFileError::Read { .. }));
        assert!(
            error.to_string().contains("/nonexistent/prices.json"),
            "{error}"
        );
    }

    #[test]
    fn a_key_priced_twice_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("prices.json");
        let mut book = PriceBook::snapshot();
        book.prices.push(book.prices[0].clone());
        book.save(&path).expect("save");
        let error = PriceBook::load(&path).unwrap_err();
        assert!(
            matches!(&error, PriceFileError::Duplicate { key, .. } if *key == book.prices[0].key),
            "{error}"
        );
    }

    #[test]
    fn stale_says_how_far_past_its_age_the_file_is() {
        let mut book = PriceBook::snapshot();
        let taken = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("date")
            .with_timezone(&Utc);
        book.source.taken_at = taken;
        book.source.stale_after_days = 180;
        assert_eq!(book.stale(taken + chrono::Duration::days(180)), None);
        assert_eq!(
            book.stale(taken + chrono::Duration::days(183)),
            Some(chrono::Duration::days(3))
        );
    }
}
