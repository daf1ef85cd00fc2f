//! The plan's arithmetic on a hand-computed case: one workload in
//! us-central1 with a warm standby in us-east1, priced from a small price
//! book with round prices.

use std::collections::BTreeSet;

use chrono::{TimeZone, Utc};
use lifeboat_shared::topology::{StorageClass, Topology};

use super::*;
use crate::prices::{Price, PriceKey};

const TOPOLOGY: &str = "\
project: acme-ml-prod
regions:
  - id: us-central1
    role: primary
  - id: us-east1
    role: standby
workloads:
  - id: ranker
    class: production-training
    pattern: active-passive
    rto: 15m
    assets:
      models:
        - id: ranker-model
          model-id: '1'
          serving-replicas: 2
          standby-replicas: 1
          machine-type: n1-standard-4
          peak-rps: 300
          mean-rps: 100
          replica-rps: 100
          endpoints: {us-central1: '11', us-east1: '12'}
      buckets:
        - id: features
          source: acme-features-usc1
          replicas: {us-east1: acme-features-use1}
          size: 100GiB
          written-per-day: 10GiB
          storage-class: nearline
      datasets:
        - id: events
          source: acme-ml-prod.events
          replicas: {us-east1: acme-ml-prod.events_use1}
          size: 50GiB
          written-per-day: 1GiB
      checkpoints:
        - id: training
          bucket: acme-ckpt-usc1
          marker: orbax
          replicas: {us-east1: acme-ckpt-use1}
          interval-steps: 100
          keep-newest: 2
          step-duration: 3s
          gpus: 8
          checkpoint-size: 10GiB
";

fn price(key: PriceKey, unit: &str, usd_per_unit: f64) -> Price {
    Price {
        sku: format!("SKU-{}", key.to_string().len()),
        description: key.to_string(),
        key,
        unit: unit.into(),
        usd_per_unit,
    }
}

/// Round prices in both regions.
fn book() -> PriceBook {
    let mut prices = vec![
        price(PriceKey::LoadBalancerRule, "h", 0.025),
        price(
            PriceKey::InterRegionTransfer {
                from: "us-central1".into(),
                to: "us-east1".into(),
            },
            "GiBy",
            0.02,
        ),
    ];
    for region in ["us-central1", "us-east1"] {
        let region = region.to_string();
        prices.extend([
            price(
                PriceKey::PredictionVcpu {
                    family: "n1".into(),
                    region: region.clone(),
                },
                "h",
                0.03,
            ),
            price(
                PriceKey::PredictionMemory {
                    family: "n1".into(),
                    region: region.clone(),
                },
                "GiBy.h",
                0.004,
            ),
            price(
                PriceKey::Storage {
                    class: StorageClass::Standard,
                    region: region.clone(),
                },
                "GiBy.mo",
                0.02,
            ),
            price(
                PriceKey::Storage {
                    class: StorageClass::Nearline,
                    region: region.clone(),
                },
                "GiBy.mo",
                0.01,
            ),
            price(
                PriceKey::BigQueryStorage {
                    region: region.clone(),
                },
                "GiBy.mo",
                0.02,
            ),
            price(
                PriceKey::CloudRunVcpu {
                    region: region.clone(),
                },
                "s",
                0.000_024,
            ),
            price(PriceKey::CloudRunMemory { region }, "GiBy.s", 0.000_002_5),
        ]);
    }
    PriceBook {
        source: PriceSource {
            origin: "hand-made test prices".into(),
            taken_at: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
            stale_after_days: 180,
        },
        prices,
    }
}

fn planned(text: &str, measured: &Measured) -> WorkloadPlan {
    let topology = Topology::parse(text, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    let now = Utc.with_ymd_and_hms(2026, 12, 3, 0, 0, 0).unwrap();
    let plan = plan(&topology, &book(), measured, now);
    assert_eq!(plan.prices_stale_days, None);
    plan.workloads.into_iter().next().unwrap()
}

fn assert_close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() < 1e-6,
        "{what}: {actual} != {expected}"
    );
}

fn pattern(plan: &WorkloadPlan, pattern: Pattern) -> &PatternPlan {
    plan.patterns.iter().find(|p| p.pattern == pattern).unwrap()
}

#[test]
fn each_pattern_costs_what_it_keeps_running_and_copies() {
    let plan = planned(TOPOLOGY, &Measured::default());
    assert!(
        plan.missing_figures.is_empty(),
        "{:?}",
        plan.missing_figures
    );
    assert!(plan.missing_prices.is_empty(), "{:?}", plan.missing_prices);

    // Single region: 2 × n1-standard-4 (4 vCPU, 15 GiB) for 730 h;
    // 100 GiB bucket, 2 × 10 GiB checkpoints, 50 GiB dataset.
    let primary_nodes = 2.0 * 730.0 * (4.0 * 0.03 + 15.0 * 0.004);
    let primary_data = 100.0 * 0.02 + 20.0 * 0.02 + 50.0 * 0.02;
    let single = primary_nodes + primary_data;
    assert_close(
        pattern(&plan, Pattern::SingleRegion).cost.monthly_usd,
        single,
        "single",
    );

    // Pilot light adds the replicas, the copies, the load balancer and
    // Lifeboat's always-on services in both regions.
    let month_days = 365.0 / 12.0;
    let replicas = 100.0 * 0.01 + 50.0 * 0.02 + 20.0 * 0.02;
    let copies = (10.0 + 1.0) * month_days * 0.02
        // A checkpoint every 300 s: 288 a day of 10 GiB.
        + 288.0 * 10.0 * month_days * 0.02;
    let balancer = 730.0 * 0.025;
    let seconds = 730.0 * 3600.0;
    let per_region =
        seconds * (0.000_024 + 0.5 * 0.000_002_5) + seconds * (0.000_024 + 0.25 * 0.000_002_5);
    let pilot = single + replicas + copies + balancer + 2.0 * per_region;
    assert_close(
        pattern(&plan, Pattern::PilotLight).cost.monthly_usd,
        pilot,
        "pilot light",
    );

    // A warm standby adds one replica in us-east1; active-active two.
    let node = 730.0 * (4.0 * 0.03 + 15.0 * 0.004);
    assert_close(
        pattern(&plan, Pattern::ActivePassive).cost.monthly_usd,
        pilot + node,
        "warm",
    );
    assert_close(
        pattern(&plan, Pattern::ActiveActive).cost.monthly_usd,
        pilot + 2.0 * node,
        "active-active",
    );
    assert_close(
        pattern(&plan, Pattern::ActiveActive).multiple.unwrap(),
        (pilot + 2.0 * node) / single,
        "multiple",
    );

    // Every line names its SKU and unit price.
    let line = pattern(&plan, Pattern::ActivePassive)
        .cost
        .lines
        .iter()
        .find(|l| l.what == "ranker-model: 1 × n1-standard-4 in us-east1, 4 vCPU each")
        .expect("the standby's vCPU line");
    assert_eq!((line.quantity, line.usd_per_unit), (730.0 * 4.0, 0.03));
    assert_eq!(
        line.sku_description,
        "Vertex AI prediction n1 vCPU in us-east1"
    );
}

#[test]
fn the_recommendation_is_the_cheapest_pattern_that_meets_both_targets() {
    let plan = planned(TOPOLOGY, &Measured::default());
    // RTO target 15 m: detection 240 s + decision 5 + routing 5 +
    // verification 10, plus an assumed 300 s scale-up (active-passive: it
    // keeps 1 of the 3 replicas the peak needs) or an assumed 900 s
    // deployment (pilot light); active-active waits for nothing.
    let rto = |p| pattern(&plan, p).rto.total.seconds;
    assert_eq!(rto(Pattern::SingleRegion), None);
    assert_eq!(rto(Pattern::PilotLight), Some(1160.0));
    assert_eq!(rto(Pattern::ActivePassive), Some(560.0));
    assert_eq!(rto(Pattern::ActiveActive), Some(0.0));
    assert!(!pattern(&plan, Pattern::PilotLight).meets_rto);
    // RPO: a checkpoint period of 300 s plus 10 GiB at 100 MiB/s (102.4 s).
    let rpo = pattern(&plan, Pattern::ActivePassive).rpo.seconds.unwrap();
    assert_close(rpo, 402.4, "rpo");
    assert_eq!(plan.recommended, Some(Pattern::ActivePassive));

    // With a 20-minute deployment measured into the topology, pilot light
    // still misses; with a 5-minute one it is the cheapest that meets.
    // A standby that keeps the 3 replicas needs no scale-up.
    let hot = TOPOLOGY.replace("standby-replicas: 1", "standby-replicas: 3");
    let hot = planned(&hot, &Measured::default());
    assert_eq!(
        pattern(&hot, Pattern::ActivePassive).rto.total.seconds,
        Some(260.0)
    );
    let quick = TOPOLOGY.replace(
        "          replica-rps: 100\n",
        "          replica-rps: 100\n          deploy-time: 5m\n",
    );
    assert_eq!(
        planned(&quick, &Measured::default()).recommended,
        Some(Pattern::PilotLight)
    );

    // A measured drill replaces the model for the pattern it ran on.
    let mut measured = Measured::default();
    measured.drill_rto.insert(
        "ranker".into(),
        measured::MeasuredRto {
            run: "weekly--20261201T100000Z".into(),
            at: Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap(),
            rto_seconds: 1000.0,
        },
    );
    let drilled = planned(TOPOLOGY, &measured);
    let warm = pattern(&drilled, Pattern::ActivePassive);
    assert_eq!(warm.rto.total.seconds, Some(1000.0));
    assert!(
        warm.rto.total.source.contains("weekly--20261201T100000Z"),
        "{}",
        warm.rto.total.source
    );
    assert_eq!(drilled.recommended, Some(Pattern::ActiveActive));
}

#[test]
fn the_checkpoint_interval_rule_uses_the_measured_copy() {
    let plan = planned(TOPOLOGY, &Measured::default());
    let advice = &plan.checkpoints[0];
    // (3600 s RPO - 102.4 s copy) / 3 s a step = 1165 steps.
    assert_eq!(advice.largest_interval_steps, Some(1165));
    assert!(advice.meets_rpo);
    assert_close(
        advice.gpu_hours_at_risk.unwrap(),
        402.0 * 8.0 / 3600.0,
        "GPU-hours",
    );

    let mut measured = Measured::default();
    measured
        .checkpoint_copy_seconds
        .insert(("training".into(), "us-east1".into()), 3400.0);
    let slow = planned(TOPOLOGY, &measured);
    let advice = &slow.checkpoints[0];
    // 300 s + 3400 s > 3600 s: (3600 - 3400) / 3 = 66 steps.
    assert!(!advice.meets_rpo);
    assert_eq!(advice.largest_interval_steps, Some(66));
    assert!(
        advice
            .worst_loss
            .as_ref()
            .unwrap()
            .source
            .contains("measured copy")
    );
}

#[test]
fn a_standby_that_cannot_scale_in_time_is_named() {
    let plan = planned(TOPOLOGY, &Measured::default());
    let east = &plan.capacity[0];
    assert_eq!(east.region, "us-east1");
    // 300 a second at 100 a replica: 3 replicas; the standby keeps 1 and
    // scales in the assumed 300 s, within the 15 m RTO.
    assert_eq!((east.replicas_needed, east.replicas_kept), (3, 1));
    assert!(east.in_time);
    let slow = TOPOLOGY.replace(
        "          replica-rps: 100\n",
        "          replica-rps: 100\n          scale-up-time: 20m\n",
    );
    let east = &planned(&slow, &Measured::default()).capacity[0];
    assert_eq!(east.ready_after_seconds, 1200.0);
    assert!(!east.in_time);
}

#[test]
fn missing_figures_and_prices_are_named_and_the_plan_is_incomplete() {
    let bare = TOPOLOGY
        .replace("          size: 100GiB\n", "")
        .replace("          mean-rps: 100\n", "")
        .replace("n1-standard-4", "n2-standard-4");
    let plan = planned(&bare, &Measured::default());
    assert!(
        plan.missing_figures.contains("features: size"),
        "{:?}",
        plan.missing_figures
    );
    assert!(
        plan.missing_figures.contains("ranker-model: mean-rps"),
        "{:?}",
        plan.missing_figures
    );
    assert!(
        plan.missing_prices
            .contains("Vertex AI prediction n2 vCPU in us-central1"),
        "{:?}",
        plan.missing_prices
    );
    assert_eq!(plan.recommended, None);
}

#[test]
fn the_prices_needed_are_those_the_patterns_price() {
    let topology = Topology::parse(TOPOLOGY, "t.yaml").unwrap();
    let needed = needed_prices(&topology);
    let mut held: BTreeSet<PriceKey> = book().prices.into_iter().map(|p| p.key).collect();
    // The test book holds what the plan needs, and nearline storage in the
    // primary, where the topology keeps only standard source buckets.
    assert!(held.remove(&PriceKey::Storage {
        class: StorageClass::Nearline,
        region: "us-central1".into(),
    }));
    assert_eq!(needed, held);
}

#[test]
fn a_price_in_another_unit_is_not_used() {
    let topology = Topology::parse(TOPOLOGY, "t.yaml").unwrap();
    let mut prices = book();
    for price in &mut prices.prices {
        if price.key == PriceKey::LoadBalancerRule {
            price.unit = "mo".into();
        }
    }
    let workload = &topology.workloads()[0];
    let cost = cost::cost(&topology, workload, Pattern::PilotLight, &prices);
    assert!(
        cost.missing_prices
            .iter()
            .any(|p| p.contains("is priced per mo, the plan counts h")),
        "{:?}",
        cost.missing_prices
    );
    assert!(!cost.is_complete());
}

#[test]
fn each_standby_needs_the_vcpus_and_accelerators_of_the_replicas_the_peak_needs() {
    let text = TOPOLOGY.replace(
        "          machine-type: n1-standard-4\n",
        "          machine-type: n1-standard-4\n          accelerator-type: nvidia-tesla-t4\n          accelerator-count: 2\n",
    );
    let topology = Topology::parse(&text, "t.yaml").unwrap();
    let now = Utc.with_ymd_and_hms(2026, 12, 3, 0, 0, 0).unwrap();
    let needs = plan(&topology, &book(), &Measured::default(), now).quota_needs();
    // 3 replicas in us-east1: 12 vCPUs of n1, 6 T4s.
    let amounts: Vec<(String, String, u64)> = needs
        .iter()
        .map(|n| (n.region.clone(), n.resource.to_string(), n.amount))
        .collect();
    assert_eq!(amounts.len(), 2, "{amounts:?}");
    assert_eq!((amounts[0].0.as_str(), amounts[0].2), ("us-east1", 12));
    assert_eq!((amounts[1].0.as_str(), amounts[1].2), ("us-east1", 6));
    assert!(amounts[1].1.contains("t4"), "{amounts:?}");
    assert_eq!(needs[0].why, "ranker/ranker-model: 3 × n1-standard-4");
}
