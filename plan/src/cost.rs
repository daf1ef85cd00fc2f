//! What one pattern costs a workload a month, line by line, each line
//! naming the price (SKU and unit price) it was computed from.
//!
//! - Prediction: every replica of every model, per region the pattern keeps
//!   it in (the primary at `serving-replicas`; a warm standby at
//!   `standby-replicas`, at least 1; active-active every region at
//!   `serving-replicas`; pilot light nothing outside the primary), as
//!   vCPU-hours, memory GiB-hours and accelerator-hours.
//! - Storage: the source buckets and checkpoints in the primary, and, for
//!   the patterns that replicate, a copy in every replica region (replica
//!   buckets in their `storage-class`; `keep-newest` checkpoints).
//! - Network: each day's writes and checkpoints copied from the primary to
//!   every replica region, by region pair.
//! - BigQuery: active logical storage of the source and replica datasets.
//! - The load balancer's forwarding rule, and Lifeboat's own always-on
//!   services (one gateway and one failover instance per serving region, as
//!   `infra/` deploys them, plus gateway instances for the mean load), at
//!   Cloud Run's instance-based rates (CPU always allocated: no request
//!   fee). The event-driven services scale to zero and are not counted.

use std::collections::BTreeSet;

use lifeboat_shared::topology::{ByteSize, Model, StorageClass, Topology, Workload};
use serde::Serialize;

use crate::Pattern;
use crate::machines::MachineShape;
use crate::prices::{PriceBook, PriceKey};

/// Hours in a month, as Google Cloud bills them.
pub const HOURS_PER_MONTH: f64 = 730.0;
/// Days in an average month.
pub const DAYS_PER_MONTH: f64 = 365.0 / 12.0;
/// Predictions per second one 1-vCPU gateway instance passes: `bench/gateway.sh`
/// measured 9,187 a second through the gateway on 2 cores (bench/README.md),
/// rounded down.
pub const GATEWAY_RPS_PER_INSTANCE: f64 = 4_000.0;
/// vCPUs and memory (GiB) of a gateway instance (infra/gateway.tf).
const GATEWAY_INSTANCE: (f64, f64) = (1.0, 0.5);
/// vCPUs and memory (GiB) of a failover instance (infra/failover.tf).
const FAILOVER_INSTANCE: (f64, f64) = (1.0, 0.25);

/// What a cost line is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// Vertex AI prediction nodes.
    Prediction,
    /// Cloud Storage.
    Storage,
    /// Cross-region data transfer.
    Network,
    /// BigQuery storage.
    Bigquery,
    /// The global load balancer.
    LoadBalancer,
    /// Lifeboat's own services on Cloud Run.
    Lifeboat,
}

impl Category {
    /// The name shown in tables.
    pub const fn name(self) -> &'static str {
        match self {
            Category::Prediction => "prediction",
            Category::Storage => "storage",
            Category::Network => "network",
            Category::Bigquery => "bigquery",
            Category::LoadBalancer => "load balancer",
            Category::Lifeboat => "lifeboat",
        }
    }
}

/// One line of a pattern's monthly cost.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CostLine {
    /// What it is for.
    pub category: Category,
    /// What is counted, in words (`3 × n1-standard-8 in us-central1: vCPU`).
    pub what: String,
    /// The usage in the price's unit per month.
    pub quantity: f64,
    /// The price's unit.
    pub unit: String,
    /// The SKU priced.
    pub sku: String,
    /// The SKU's description.
    pub sku_description: String,
    /// US dollars per unit.
    pub usd_per_unit: f64,
    /// US dollars per month.
    pub monthly_usd: f64,
}

/// A pattern's monthly cost, and what could not be counted.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Cost {
    /// The lines.
    pub lines: Vec<CostLine>,
    /// US dollars per month, the sum of the lines.
    pub monthly_usd: f64,
    /// Prices the plan needed and the price file lacks.
    pub missing_prices: BTreeSet<String>,
    /// Figures the topology does not give (`recsys-ranker: mean-rps`).
    pub missing_figures: BTreeSet<String>,
    /// The keys of the missing prices.
    #[serde(skip)]
    pub missing_keys: BTreeSet<PriceKey>,
}

impl Cost {
    /// Whether every line could be counted.
    pub fn is_complete(&self) -> bool {
        self.missing_prices.is_empty() && self.missing_figures.is_empty()
    }

    fn add(
        &mut self,
        prices: &PriceBook,
        category: Category,
        key: PriceKey,
        quantity: f64,
        what: String,
    ) {
        match prices.price(&key) {
            Ok(price) if price.unit != key.unit() => {
                self.missing_prices.insert(format!(
                    "{key}: SKU {} is priced per {}, the plan counts {}",
                    price.sku,
                    price.unit,
                    key.unit()
                ));
                self.missing_keys.insert(key);
            }
            Ok(price) => {
                let monthly_usd = quantity * price.usd_per_unit;
                self.monthly_usd += monthly_usd;
                self.lines.push(CostLine {
                    category,
                    what,
                    quantity,
                    unit: price.unit.clone(),
                    sku: price.sku.clone(),
                    sku_description: price.description.clone(),
                    usd_per_unit: price.usd_per_unit,
                    monthly_usd,
                });
            }
            Err(missing) => {
                self.missing_prices.insert(missing.key.to_string());
                self.missing_keys.insert(missing.key);
            }
        }
    }

    fn missing(&mut self, asset: &str, field: &str) {
        self.missing_figures.insert(format!("{asset}: {field}"));
    }
}

/// The regions other than the primary that a workload replicates into or
/// keeps an endpoint in.
pub fn standby_regions(topology: &Topology, workload: &Workload) -> BTreeSet<String> {
    let primary = topology.primary().as_str();
    let assets = &workload.assets;
    let regions = assets
        .models
        .iter()
        .flat_map(|m| m.endpoints.keys())
        .chain(assets.buckets.iter().flat_map(|b| b.replicas.keys()))
        .chain(assets.datasets.iter().flat_map(|d| d.replicas.keys()))
        .chain(assets.checkpoints.iter().flat_map(|c| c.replicas.keys()));
    regions
        .map(|r| r.as_str().to_owned())
        .filter(|r| r != primary)
        .collect()
}

/// The regions other than the primary where `model` would serve after a
/// failover: its endpoints, else the workload's standby regions.
pub fn model_standby_regions(
    topology: &Topology,
    workload: &Workload,
    model: &Model,
) -> BTreeSet<String> {
    let primary = topology.primary().as_str();
    let endpoints: BTreeSet<String> = model
        .endpoints
        .keys()
        .map(|r| r.as_str().to_owned())
        .filter(|r| r != primary)
        .collect();
    if endpoints.is_empty() {
        standby_regions(topology, workload)
    } else {
        endpoints
    }
}

/// The replicas `model` keeps in each region under `pattern`.
pub fn replicas_by_region(
    topology: &Topology,
    workload: &Workload,
    model: &Model,
    pattern: Pattern,
) -> Vec<(String, u32)> {
    let serving = model.serving_replicas.get();
    let mut regions = vec![(topology.primary().as_str().to_owned(), serving)];
    let standby = match pattern {
        Pattern::SingleRegion | Pattern::PilotLight => return regions,
        Pattern::ActivePassive => model.standby_replicas.max(1),
        Pattern::ActiveActive => serving,
    };
    regions.extend(
        model_standby_regions(topology, workload, model)
            .into_iter()
            .map(|region| (region, standby)),
    );
    regions
}

/// What `workload` costs a month under `pattern` at `prices`.
pub fn cost(
    topology: &Topology,
    workload: &Workload,
    pattern: Pattern,
    prices: &PriceBook,
) -> Cost {
    let mut cost = Cost::default();
    let primary = topology.primary().as_str().to_owned();
    let replicated = pattern != Pattern::SingleRegion;
    prediction(&mut cost, topology, workload, pattern, prices);

    let copies = Copies {
        primary: &primary,
        replicated,
    };
    for bucket in &workload.assets.buckets {
        let class = bucket.storage_class;
        let asset = DataAsset {
            what: format!("bucket {}", bucket.id),
            id: bucket.id.as_str(),
            size: bucket.size,
            written_per_day: bucket.written_per_day,
            replicas: bucket
                .replicas
                .keys()
                .map(|r| r.as_str().to_owned())
                .collect(),
        };
        copies.data(&mut cost, prices, &asset, Category::Storage, |region| {
            PriceKey::Storage {
                class: if region == primary {
                    StorageClass::Standard
                } else {
                    class
                },
                region: region.to_owned(),
            }
        });
    }
    for dataset in &workload.assets.datasets {
        let asset = DataAsset {
            what: format!("dataset {}", dataset.id),
            id: dataset.id.as_str(),
            size: dataset.size,
            written_per_day: dataset.written_per_day,
            replicas: dataset
                .replicas
                .keys()
                .map(|r| r.as_str().to_owned())
                .collect(),
        };
        copies.data(&mut cost, prices, &asset, Category::Bigquery, |region| {
            PriceKey::BigQueryStorage {
                region: region.to_owned(),
            }
        });
    }
    for location in &workload.assets.checkpoints {
        let id = location.id.as_str();
        let replicas: Vec<String> = location
            .replicas
            .keys()
            .map(|r| r.as_str().to_owned())
            .collect();
        let Some(size) = location.checkpoint_size else {
            cost.missing(id, "checkpoint-size");
            continue;
        };
        let kept = location.keep_newest.count();
        for region in copies.regions(&replicas) {
            cost.add(
                prices,
                Category::Storage,
                PriceKey::Storage {
                    class: StorageClass::Standard,
                    region: region.clone(),
                },
                size.gib() * f64::from(kept),
                format!("checkpoints {id} ({kept} × {size}) in {region}"),
            );
        }
        if replicated {
            match location.checkpoint_period() {
                Some(period) if period.as_secs() > 0 => {
                    let per_day = 86_400.0 / period.as_secs() as f64;
                    transfer(
                        &mut cost,
                        prices,
                        &primary,
                        &replicas,
                        size.gib() * per_day * DAYS_PER_MONTH,
                        &format!("checkpoints {id}: {per_day:.0} × {size} a day"),
                    );
                }
                _ => cost.missing(id, "step-duration"),
            }
        }
    }
    if replicated {
        cost.add(
            prices,
            Category::LoadBalancer,
            PriceKey::LoadBalancerRule,
            HOURS_PER_MONTH,
            "global load balancer: one forwarding rule".into(),
        );
        lifeboat_services(&mut cost, topology, workload, prices);
    }
    cost
}

/// A bucket or dataset: what it holds, what is written into it each day,
/// and its replica regions.
struct DataAsset<'a> {
    /// `bucket recsys-features`.
    what: String,
    id: &'a str,
    size: Option<ByteSize>,
    written_per_day: Option<ByteSize>,
    replicas: Vec<String>,
}

/// Where a pattern keeps copies of data: the primary, and the replica
/// regions when it replicates.
struct Copies<'a> {
    primary: &'a str,
    replicated: bool,
}

impl Copies<'_> {
    /// The regions holding a copy of an asset replicated to `replicas`.
    fn regions(&self, replicas: &[String]) -> Vec<String> {
        let mut regions = vec![self.primary.to_owned()];
        if self.replicated {
            regions.extend(replicas.iter().cloned());
        }
        regions
    }

    /// `asset` stored in every region holding a copy (priced by `stored`),
    /// and each day's writes copied to its replicas.
    fn data(
        &self,
        cost: &mut Cost,
        prices: &PriceBook,
        asset: &DataAsset<'_>,
        category: Category,
        stored: impl Fn(&str) -> PriceKey,
    ) {
        match asset.size {
            Some(size) => {
                for region in self.regions(&asset.replicas) {
                    let what = format!("{} ({size}) in {region}", asset.what);
                    cost.add(prices, category, stored(&region), size.gib(), what);
                }
            }
            None => cost.missing(asset.id, "size"),
        }
        if self.replicated {
            match asset.written_per_day {
                Some(daily) => transfer(
                    cost,
                    prices,
                    self.primary,
                    &asset.replicas,
                    daily.gib() * DAYS_PER_MONTH,
                    &format!("{}: {daily} a day", asset.what),
                ),
                None => cost.missing(asset.id, "written-per-day"),
            }
        }
    }
}

/// Prediction nodes: vCPU, memory and accelerator hours per region.
fn prediction(
    cost: &mut Cost,
    topology: &Topology,
    workload: &Workload,
    pattern: Pattern,
    prices: &PriceBook,
) {
    for model in &workload.assets.models {
        let id = model.id.as_str();
        let Some(machine_type) = &model.machine_type else {
            cost.missing(id, "machine-type");
            continue;
        };
        let shape = match MachineShape::of(machine_type) {
            Ok(shape) => shape,
            Err(unknown) => {
                cost.missing(id, &unknown.to_string());
                continue;
            }
        };
        let attached = match (&model.accelerator_type, model.accelerator_count) {
            (Some(accelerator), count) => Some((accelerator.clone(), count.map_or(1, |n| n.get()))),
            (None, _) => shape.accelerator.clone(),
        };
        for (region, replicas) in replicas_by_region(topology, workload, model, pattern) {
            let hours = f64::from(replicas) * HOURS_PER_MONTH;
            let nodes = format!("{id}: {replicas} × {machine_type} in {region}");
            cost.add(
                prices,
                Category::Prediction,
                PriceKey::PredictionVcpu {
                    family: shape.family.clone(),
                    region: region.clone(),
                },
                hours * f64::from(shape.vcpus),
                format!("{nodes}, {} vCPU each", shape.vcpus),
            );
            cost.add(
                prices,
                Category::Prediction,
                PriceKey::PredictionMemory {
                    family: shape.family.clone(),
                    region: region.clone(),
                },
                hours * shape.memory_gib,
                format!("{nodes}, {} GiB each", shape.memory_gib),
            );
            if let Some((accelerator, count)) = &attached {
                cost.add(
                    prices,
                    Category::Prediction,
                    PriceKey::PredictionAccelerator {
                        accelerator: accelerator.clone(),
                        region: region.clone(),
                    },
                    hours * f64::from(*count),
                    format!("{nodes}, {count} × {accelerator} each"),
                );
            }
        }
    }
}

/// `gib` copied from `from` to each of `to` in a month.
fn transfer(cost: &mut Cost, prices: &PriceBook, from: &str, to: &[String], gib: f64, what: &str) {
    for region in to {
        cost.add(
            prices,
            Category::Network,
            PriceKey::InterRegionTransfer {
                from: from.to_owned(),
                to: region.clone(),
            },
            gib,
            format!("{what} to {region}"),
        );
    }
}

/// Lifeboat's always-on services: a gateway and a failover instance per
/// serving region, and gateway instances for the mean load.
fn lifeboat_services(
    cost: &mut Cost,
    topology: &Topology,
    workload: &Workload,
    prices: &PriceBook,
) {
    let regions: BTreeSet<String> = workload
        .assets
        .models
        .iter()
        .flat_map(|model| replicas_by_region(topology, workload, model, Pattern::ActiveActive))
        .map(|(region, _)| region)
        .collect();
    if regions.is_empty() {
        return;
    }
    let mean_rps: Option<f64> = workload
        .assets
        .models
        .iter()
        .map(|model| model.mean_rps.map(f64::from))
        .sum();
    let busy_instances = match mean_rps {
        Some(rps) => (rps / GATEWAY_RPS_PER_INSTANCE).ceil().max(1.0),
        None => {
            for model in &workload.assets.models {
                if model.mean_rps.is_none() {
                    cost.missing(model.id.as_str(), "mean-rps");
                }
            }
            1.0
        }
    };
    let seconds = HOURS_PER_MONTH * 3600.0;
    for region in &regions {
        let gateways = if region == topology.primary().as_str() {
            busy_instances
        } else {
            1.0
        };
        for (service, count, (vcpus, memory)) in [
            ("gateway", gateways, GATEWAY_INSTANCE),
            ("failover", 1.0, FAILOVER_INSTANCE),
        ] {
            cost.add(
                prices,
                Category::Lifeboat,
                PriceKey::CloudRunVcpu {
                    region: region.clone(),
                },
                count * vcpus * seconds,
                format!("{service}: {count} always-on instance(s) in {region}, vCPU"),
            );
            cost.add(
                prices,
                Category::Lifeboat,
                PriceKey::CloudRunMemory {
                    region: region.clone(),
                },
                count * memory * seconds,
                format!("{service}: {count} always-on instance(s) in {region}, memory"),
            );
        }
    }
}
