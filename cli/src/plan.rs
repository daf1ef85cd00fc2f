//! `lifeboat plan`: what each DR pattern costs every workload a month, which
//! is the cheapest that meets its targets, how often to checkpoint, and
//! whether each standby could take the load — printed as tables, or as
//! JSON with `--json`. `--refresh-prices` writes a price file from the
//! Cloud Billing Catalog API.

use std::path::Path;

use anyhow::Context;
use chrono::Utc;
use lifeboat_plan::catalog;
use lifeboat_plan::cost::Category;
use lifeboat_plan::measured::Measured;
use lifeboat_plan::prices::PriceBook;
use lifeboat_plan::quota::{self, QuotaOutcome, ServingQuotas};
use lifeboat_plan::recovery::{Expected, seconds_text};
use lifeboat_plan::{PatternPlan, Plan, WorkloadPlan};
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::topology::Topology;

use crate::status::{self, Source, aligned, or_dash, yes_no};

/// The price book the plan uses, never chosen silently:
/// - with `refresh`, fresh prices from the Cloud Billing Catalog API, also
///   written to `prices` (default `lifeboat-prices.json`); when the API
///   cannot be reached, a warning and the snapshot;
/// - else the price file at `prices`; when it is past its stated age and
///   the snapshot shipped with Lifeboat is newer, a warning and the snapshot;
/// - else the snapshot.
pub async fn price_book(
    topology: &Topology,
    prices: Option<&Path>,
    refresh: bool,
) -> anyhow::Result<PriceBook> {
    let snapshot = PriceBook::snapshot();
    if refresh {
        let path = prices.unwrap_or(Path::new(DEFAULT_PRICE_FILE));
        return match fetch(topology).await {
            Ok(book) => {
                book.save(path)?;
                eprintln!("wrote {} prices to {}", book.prices.len(), path.display());
                Ok(book)
            }
            Err(error) => {
                eprintln!(
                    "warning: the prices could not be refreshed ({error:#}); using the \
                     snapshot taken {}",
                    snapshot.source.taken_at.format("%Y-%m-%d")
                );
                Ok(snapshot)
            }
        };
    }
    let Some(path) = prices else {
        return Ok(snapshot);
    };
    let book =
        PriceBook::load(path).with_context(|| format!("reading prices from {}", path.display()))?;
    if book.stale(Utc::now()).is_some() && snapshot.source.taken_at > book.source.taken_at {
        eprintln!(
            "warning: {} holds prices taken {}, past their stated age; using the newer \
             snapshot taken {} (run `lifeboat plan --refresh-prices`)",
            path.display(),
            book.source.taken_at.format("%Y-%m-%d"),
            snapshot.source.taken_at.format("%Y-%m-%d")
        );
        return Ok(snapshot);
    }
    Ok(book)
}

/// Where `--refresh-prices` writes when `--prices` names no file.
const DEFAULT_PRICE_FILE: &str = "lifeboat-prices.json";

/// `$LIFEBOAT_CLOUDBILLING_HOST` (`host:port`, e.g. a stand-in) when set;
/// Google's Cloud Billing API otherwise.
const CATALOG_HOST_VAR: &str = "LIFEBOAT_CLOUDBILLING_HOST";

/// Prices every key the plan of `topology` needs from the Cloud Billing
/// Catalog API. A key with no SKU (or more than one) fails the whole
/// refresh, naming the SKU it looked for.
async fn fetch(topology: &Topology) -> anyhow::Result<PriceBook> {
    let keys: Vec<_> = lifeboat_plan::needed_prices(topology).into_iter().collect();
    let endpoint = ApiEndpoint::from_env(CATALOG_HOST_VAR, "https://cloudbilling.googleapis.com")
        .await
        .context("finding credentials for the Cloud Billing API")?;
    let client = catalog::connect(&endpoint).await?;
    Ok(catalog::refresh(&client, &keys, Utc::now()).await?)
}

/// What the records say was measured: checkpoint copy times, data
/// exposure and the newest region-outage drills. Nothing when the local
/// cloud was never started here.
pub async fn measured(topology: &Topology, source: Source<'_>) -> anyhow::Result<Measured> {
    if let Source::Local(dir) = source
        && !dir.join(topology.project().as_str()).exists()
    {
        return Ok(Measured::default());
    }
    let status = status::read(topology, source).await?;
    Ok(Measured::from_records(
        &status.checkpoints,
        &status.data,
        &status.drills,
    ))
}

/// `$LIFEBOAT_CLOUDQUOTAS_HOST` (`host:port`, e.g. a stand-in) when set;
/// Google's Cloud Quotas API otherwise.
const QUOTAS_HOST_VAR: &str = "LIFEBOAT_CLOUDQUOTAS_HOST";

/// Prints the plan of `topology`, with each standby's serving quotas read
/// from the Cloud Quotas API when `check_quotas`; returns whether it is
/// complete (every figure and price found) and no standby lacks quota.
pub async fn run(
    topology: &Topology,
    prices: &PriceBook,
    source: Source<'_>,
    check_quotas: bool,
    json: bool,
) -> anyhow::Result<bool> {
    let measured = measured(topology, source).await?;
    let mut plan = lifeboat_plan::plan(topology, prices, &measured, Utc::now());
    if check_quotas {
        let endpoint = ApiEndpoint::from_env(QUOTAS_HOST_VAR, quota::PRODUCTION_URL)
            .await
            .context("finding credentials for the Cloud Quotas API")?;
        let quotas = ServingQuotas::new(&endpoint).await?;
        let needs = plan.quota_needs();
        plan.quotas = Some(quotas.check(topology.project().as_str(), &needs).await);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", render(&plan));
    }
    if let Some(days) = plan.prices_stale_days {
        eprintln!(
            "warning: the prices were taken {} and are {days} days past their stated age \
             of {} days: run `lifeboat plan --refresh-prices`",
            plan.prices.taken_at.format("%Y-%m-%d"),
            plan.prices.stale_after_days
        );
    }
    let short = plan
        .quotas
        .iter()
        .flatten()
        .any(|finding| matches!(finding.outcome, QuotaOutcome::NotEnough { .. }));
    Ok(plan.is_complete() && !short)
}

/// `$1,234.56`.
fn dollars(usd: f64) -> String {
    let cents = (usd * 100.0).round() as i64;
    let whole = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("${grouped}.{:02}", cents % 100)
}

fn expected(time: &Expected) -> String {
    time.seconds
        .map_or_else(|| "unbounded".into(), seconds_text)
}

/// The whole plan as text: per workload, the patterns, the recommended
/// pattern's cost lines, checkpoints, standby capacity and what is missing.
pub fn render(plan: &Plan) -> String {
    let mut out = format!(
        "prices: {} (taken {})\n",
        plan.prices.origin,
        plan.prices.taken_at.format("%Y-%m-%d")
    );
    for workload in &plan.workloads {
        out.push('\n');
        out.push_str(&render_workload(workload));
    }
    out.push('\n');
    match &plan.quotas {
        None => out.push_str(
            "standby quotas: not checked (`--check-quotas` reads them from the Cloud Quotas API)\n",
        ),
        Some(findings) if findings.is_empty() => {
            out.push_str("standby quotas: no standby needs a known machine type\n");
        }
        Some(findings) => {
            out.push_str("standby quotas (Cloud Quotas API):\n");
            for finding in findings {
                let mark = match finding.outcome {
                    QuotaOutcome::NotEnough { .. } => "NOT ENOUGH",
                    QuotaOutcome::Unknown { .. } => "unknown",
                    QuotaOutcome::Enough { .. } | QuotaOutcome::Unlimited => "ok",
                };
                out.push_str(&format!("  {mark}: {finding}\n"));
            }
        }
    }
    out
}

fn render_workload(w: &WorkloadPlan) -> String {
    let mut out = format!(
        "workload {} (runs {} now; targets RPO {}, RTO {})\n",
        w.workload,
        w.current.name(),
        seconds_text(w.rpo_target_seconds as f64),
        seconds_text(w.rto_target_seconds as f64)
    );
    let header = [
        "PATTERN",
        "PER MONTH",
        "× SINGLE",
        "PREDICTION",
        "STORAGE",
        "NETWORK",
        "BIGQUERY",
        "LB",
        "LIFEBOAT",
        "RPO",
        "RTO",
        "MEETS",
    ];
    let rows = w.patterns.iter().map(|p| {
        let mut meets = match (p.meets_rpo, p.meets_rto) {
            (true, true) => "yes".to_string(),
            (false, true) => "NO: RPO".into(),
            (true, false) => "NO: RTO".into(),
            (false, false) => "NO".into(),
        };
        if Some(p.pattern) == w.recommended {
            meets.push_str("  ← recommended");
        }
        let mut row = vec![
            p.pattern.name().to_string(),
            dollars(p.cost.monthly_usd),
            or_dash(p.multiple.map(|m| format!("{m:.2}x"))),
        ];
        row.extend(
            [
                Category::Prediction,
                Category::Storage,
                Category::Network,
                Category::Bigquery,
                Category::LoadBalancer,
                Category::Lifeboat,
            ]
            .map(|category| dollars(subtotal(p, category))),
        );
        row.extend([expected(&p.rpo), expected(&p.rto.total), meets]);
        row
    });
    out.push_str(&aligned(&header, rows));
    let shown = w
        .recommended
        .or(Some(w.current))
        .and_then(|choice| w.patterns.iter().find(|p| p.pattern == choice));
    if let Some(p) = shown {
        let parts = [
            p.rto.detection_seconds,
            p.rto.decision_seconds,
            p.rto.execution_seconds,
            p.rto.verification_seconds,
        ];
        let parts = if parts.iter().all(|s| *s == 0.0) {
            String::new()
        } else {
            format!(
                ": detection {}, decision {}, execution {}, verification {}",
                seconds_text(parts[0]),
                seconds_text(parts[1]),
                seconds_text(parts[2]),
                seconds_text(parts[3])
            )
        };
        out.push_str(&format!(
            "\n{} in detail: RPO {} ({}); RTO {} ({}{parts})\n",
            p.pattern.name(),
            expected(&p.rpo),
            p.rpo.source,
            expected(&p.rto.total),
            p.rto.total.source,
        ));
        let header = [
            "CATEGORY",
            "WHAT",
            "QUANTITY",
            "UNIT",
            "SKU",
            "PRICE",
            "PER MONTH",
        ];
        let rows = p.cost.lines.iter().map(|line| {
            vec![
                line.category.name().to_string(),
                line.what.clone(),
                format!("{:.1}", line.quantity),
                line.unit.clone(),
                format!("{} ({})", line.sku, line.sku_description),
                format!("${}", line.usd_per_unit),
                dollars(line.monthly_usd),
            ]
        });
        out.push_str(&aligned(&header, rows));
    }
    if w.recommended.is_none() {
        out.push_str("\nno pattern meets both targets with every figure and price known\n");
    }
    if !w.checkpoints.is_empty() {
        out.push('\n');
        let header = [
            "CHECKPOINTS",
            "INTERVAL",
            "CAN LOSE",
            "WHY",
            "MEETS RPO",
            "LARGEST INTERVAL",
            "GPU-HOURS AT RISK",
        ];
        let rows = w.checkpoints.iter().map(|c| {
            vec![
                c.location.clone(),
                format!("{} steps", c.interval_steps),
                or_dash(c.worst_loss.as_ref().map(expected)),
                or_dash(c.worst_loss.as_ref().map(|l| l.source.clone())),
                yes_no(c.meets_rpo),
                or_dash(c.largest_interval_steps.map(|s| format!("{s} steps"))),
                or_dash(c.gpu_hours_at_risk.map(|h| format!("{h:.1}"))),
            ]
        });
        out.push_str(&aligned(&header, rows));
    }
    if !w.capacity.is_empty() {
        out.push('\n');
        let header = [
            "MODEL",
            "STANDBY",
            "NEEDS",
            "FROM",
            "KEEPS",
            "SERVES AFTER",
            "WITHIN RTO",
        ];
        let rows = w.capacity.iter().map(|c| {
            vec![
                c.model.clone(),
                c.region.clone(),
                match c.replicas_needed {
                    1 => "1 replica".to_string(),
                    n => format!("{n} replicas"),
                },
                c.needed_from.clone(),
                c.replicas_kept.to_string(),
                seconds_text(c.ready_after_seconds),
                yes_no(c.in_time),
            ]
        });
        out.push_str(&aligned(&header, rows));
    }
    for figure in &w.missing_figures {
        out.push_str(&format!("missing figure: {figure}\n"));
    }
    for price in &w.missing_prices {
        out.push_str(&format!("missing price: {price}\n"));
    }
    if !w.missing_figures.is_empty() || !w.missing_prices.is_empty() {
        out.push_str("this workload's plan is INCOMPLETE\n");
    }
    out
}

fn subtotal(pattern: &PatternPlan, category: Category) -> f64 {
    pattern
        .cost
        .lines
        .iter()
        .filter(|line| line.category == category)
        .map(|line| line.monthly_usd)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_are_grouped_and_rounded_to_cents() {
        assert_eq!(dollars(0.004), "$0.00");
        assert_eq!(dollars(1234.567), "$1,234.57");
        assert_eq!(dollars(1_000_000.0), "$1,000,000.00");
        assert_eq!(dollars(999.999), "$1,000.00");
    }

    #[test]
    fn unbounded_times_say_so() {
        let single = Expected {
            seconds: None,
            source: "until the region comes back".into(),
        };
        assert_eq!(expected(&single), "unbounded");
    }
}
