//! Failback: traffic returns to a recovered region gradually — by default
//! 10 %, then 50 %, then all of it — and at each step the returning region
//! is probed and sent the golden requests the topology declares; if it fails
//! a majority of probes, answers a golden request wrong, or answers much
//! slower than the regions serving now, the previous weights are written
//! back and the failback stops. Under the workload's failover lease, and recorded like an
//! incident.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use lifeboat_shared::routing::{self, RoutingTable};
use lifeboat_shared::state::lease;
use lifeboat_shared::topology::Workload;

use crate::decision::Check;
use crate::{FailoverContext, current_table, lease_name, ready, right_answers, under_lease};
use lifeboat_shared::records::incident::{self as record, IncidentRecord, Outcome, Step};

/// How a failback proceeds.
#[derive(Clone, Debug)]
pub struct FailbackOptions {
    /// The returning region's share at each step, in percent, ending at 100.
    pub steps: Vec<u32>,
    /// How long each step runs before the returning region is judged.
    pub step_wait: Duration,
    /// A step fails when the returning region's probes take longer than
    /// this many times the serving regions' (plus 50 ms).
    pub latency_factor: u32,
}

impl Default for FailbackOptions {
    fn default() -> Self {
        Self {
            steps: vec![10, 50, 100],
            step_wait: Duration::from_secs(60),
            latency_factor: 2,
        }
    }
}

/// The weights with `region` at `percent` and every other serving region
/// sharing the rest in proportion to `serving` (their weights now).
fn step_weights(
    serving: &BTreeMap<String, u32>,
    region: &str,
    percent: u32,
) -> BTreeMap<String, u32> {
    let others: Vec<(&String, u32)> = serving
        .iter()
        .filter(|(r, w)| r.as_str() != region && **w > 0)
        .map(|(r, w)| (r, *w))
        .collect();
    let total: u64 = others.iter().map(|(_, w)| u64::from(*w)).sum();
    let rest = 100 - percent.min(100);
    let mut weights: BTreeMap<String, u32> = serving.keys().map(|r| (r.clone(), 0)).collect();
    weights.insert(region.to_string(), percent.min(100));
    let mut given = 0;
    for (index, (other, weight)) in others.iter().enumerate() {
        let share = if index + 1 == others.len() {
            rest - given
        } else {
            u32::try_from(u64::from(rest) * u64::from(*weight) / total.max(1)).unwrap_or(0)
        };
        given += share;
        weights.insert((*other).clone(), share);
    }
    weights
}

/// Whether a majority of the probes of `url` answered, how long the probes
/// took (sent at once, so the slowest one), and what they saw.
async fn judge(context: &FailoverContext, url: &str) -> (bool, Duration, String) {
    let started = std::time::Instant::now();
    let result = context.prober.probe(url).await;
    let took = started.elapsed();
    let healthy = matches!(result.health(), Check::Pass(_));
    let detail = match result.health() {
        Check::Pass(detail) | Check::Fail(detail) | Check::Unknown(detail) => detail,
    };
    (healthy, took, detail)
}

/// [`judge`] of the returning `region`, which must then also answer
/// `workload`'s golden requests right (their time is not counted: the
/// baseline is the other regions' probes).
async fn judge_returning(
    context: &FailoverContext,
    workload: &Workload,
    region: &str,
    url: &str,
) -> (bool, Duration, String) {
    let (healthy, took, detail) = judge(context, url).await;
    if !healthy {
        return (healthy, took, detail);
    }
    match right_answers(context, workload, region).await {
        None => (true, took, detail),
        Some(Check::Pass(answers)) => (true, took, format!("{detail}; {answers}")),
        Some(Check::Fail(why) | Check::Unknown(why)) => (false, took, why),
    }
}

/// Returns `workload`'s traffic to `region` step by step; the record's
/// outcome is `Moved` when all of it is back, `Stayed` when a step was
/// rolled back or the region was not ready.
pub async fn fail_back(
    context: &FailoverContext,
    workload: &Workload,
    region: &str,
    options: &FailbackOptions,
) -> Result<IncidentRecord, String> {
    let state = context.state.as_ref();
    let topology = context.topology.as_ref();
    let id = format!(
        "{}{}-{}",
        record::FAILBACK_PREFIX,
        workload.id,
        Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    );
    let key = (id.as_str(), workload.id.as_str(), region, Utc::now());
    let note = |what: &str, detail: String, outcome: Option<Outcome>| {
        let step = Step::new(what, detail);
        async move {
            record::append(state, key, step, None, outcome)
                .await
                .map_err(|error| format!("recording the failback: {error}"))
        }
    };
    let Some(url) = context.probes.get(workload.id.as_str(), region) else {
        return note(
            "refused",
            format!("no probe target for {region}: its health cannot be judged"),
            Some(Outcome::Stayed),
        )
        .await;
    };
    let name = lease_name(workload.id.as_str());
    let Some(held) = lease::acquire(state, &name, &id, context.options.lease_ttl)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Err(format!(
            "a failover of {} is in progress; retry",
            workload.id
        ));
    };
    under_lease(context, held, async {
        let tables = routing::read_all(state).await.map_err(|e| e.to_string())?;
        let (serving, mut revision) = current_table(&tables, topology, workload);
        if serving.get(region) == Some(&100) {
            return note(
                "done",
                format!("{region} already takes all the traffic"),
                Some(Outcome::Moved),
            )
            .await;
        }
        let (healthy, _, detail) = judge_returning(context, workload, region, url).await;
        if !healthy {
            return note(
                "refused",
                format!("{region} is not healthy: {detail}"),
                Some(Outcome::Stayed),
            )
            .await;
        }
        let readied = ready(context, workload, region).await?;
        note("readied", readied.join("; "), None).await?;
        // The serving regions' latency is the baseline a step must keep.
        let mut baseline = Duration::ZERO;
        for (other, weight) in &serving {
            if other != region
                && *weight > 0
                && let Some(other_url) = context.probes.get(workload.id.as_str(), other)
            {
                baseline = baseline.max(judge(context, other_url).await.1);
            }
        }
        let limit = baseline * options.latency_factor + Duration::from_millis(50);
        let mut previous = serving.clone();
        for percent in &options.steps {
            let weights = step_weights(&serving, region, *percent);
            let table = RoutingTable::new(
                workload.id.as_str(),
                weights.clone(),
                format!("failback to {region}: {percent}%"),
            )
            .map_err(|e| e.to_string())?;
            revision = crate::write_routing(context, &table, revision)
                .await
                .map_err(|e| e.to_string())?
                .revision;
            note(
                "routed",
                format!("{percent}% to {region}: {weights:?}"),
                None,
            )
            .await?;
            tokio::time::sleep(options.step_wait).await;
            let (healthy, took, detail) = judge_returning(context, workload, region, url).await;
            if !healthy || took > limit {
                let back = RoutingTable::new(
                    workload.id.as_str(),
                    previous.clone(),
                    format!("failback to {region} rolled back at {percent}%"),
                )
                .map_err(|e| e.to_string())?;
                crate::write_routing(context, &back, revision)
                    .await
                    .map_err(|e| e.to_string())?;
                let why = if healthy {
                    format!("{region} answered in {took:?}, over the {limit:?} allowed")
                } else {
                    detail
                };
                return note(
                    "rolled back",
                    format!("at {percent}%: {why}; weights back to {previous:?}"),
                    Some(Outcome::Stayed),
                )
                .await;
            }
            note(
                "verified",
                format!("{percent}%: {detail} in {took:?}"),
                None,
            )
            .await?;
            previous = weights;
        }
        note(
            "done",
            format!("{region} takes all the traffic again"),
            Some(Outcome::Moved),
        )
        .await
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_step_gives_the_returning_region_its_share_and_the_rest_to_the_others() {
        let serving = BTreeMap::from([
            ("us-central1".to_string(), 0),
            ("us-east1".to_string(), 75),
            ("europe-west1".to_string(), 25),
        ]);
        let ten = step_weights(&serving, "us-central1", 10);
        assert_eq!(ten["us-central1"], 10);
        assert_eq!(ten["us-east1"] + ten["europe-west1"], 90);
        assert_eq!((ten["us-east1"], ten["europe-west1"]), (68, 22));
        let all = step_weights(&serving, "us-central1", 100);
        assert_eq!(all.values().sum::<u32>(), 100);
        assert_eq!(all["us-central1"], 100);
    }
}
