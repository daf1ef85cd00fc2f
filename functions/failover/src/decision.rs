//! The failover decision, as a pure function of what is known: where
//! traffic goes now, what the probes say of the failed region, and, per
//! candidate region, its health, whether it holds the model version in
//! service and whether its data is within the workload's RPO. It applies
//! the safety rules of DESIGN.md and gives every reason for its choice, so
//! the record says why traffic moved, or why it did not.
//!
//! - An alert is not proof: the move happens only if a quorum of probes
//!   agrees that the region has failed.
//! - Never outside the workload's allowed regions (data residency), not
//!   even forced.
//! - Never to an unhealthy region; never to one lacking the model version
//!   or past its RPO, unless forced. A check that cannot be made (the
//!   records do not exist yet) is "unknown": it does not block the move,
//!   and the decision says so.
//! - Not within the hold-down after the last move, unless forced.
//! - Never every weight to zero: with no eligible region, traffic stays.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use lifeboat_shared::records::incident::{Decision, Refused};
use lifeboat_shared::topology::Pattern;
use serde::{Deserialize, Serialize};

/// The outcome of one check of one region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", content = "detail", rename_all = "snake_case")]
pub enum Check {
    /// The check passed; why.
    Pass(String),
    /// The check failed; why.
    Fail(String),
    /// The check could not be made; why.
    Unknown(String),
}

/// What is known of one candidate region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The region.
    pub region: String,
    /// Whether its endpoint answers (the probes' verdict).
    pub health: Check,
    /// Whether it holds the model version in service.
    pub model: Check,
    /// Whether its data is within the workload's RPO.
    pub data: Check,
}

/// Everything the decision is made from.
#[derive(Clone, Debug)]
pub struct Situation {
    /// The workload.
    pub workload: String,
    /// Its deployment pattern.
    pub pattern: Pattern,
    /// The region the incident is about.
    pub failed_region: String,
    /// Whether a quorum of probes agrees that the failed region has failed.
    pub failure_confirmed: Check,
    /// The routing weights now.
    pub weights: BTreeMap<String, u32>,
    /// Every other region of the workload, in the topology's order.
    pub candidates: Vec<Candidate>,
    /// When traffic last moved, if ever.
    pub last_move: Option<DateTime<Utc>>,
    /// The workload's hold-down between two moves.
    pub hold_down: TimeDelta,
    /// A person asked to move regardless of the model and data checks and
    /// of the hold-down (never regardless of health or residency).
    pub forced: bool,
    /// The regions the workload's traffic and data may be in
    /// (`allowed-regions`); `None` when the topology does not restrict them.
    pub allowed_regions: Option<BTreeSet<String>>,
    /// The time of the decision.
    pub now: DateTime<Utc>,
}

/// Decides whether and where the failed region's traffic goes.
pub fn decide(situation: &Situation) -> Decision {
    let mut reasons = Vec::new();
    let failed = situation.failed_region.as_str();
    match &situation.failure_confirmed {
        Check::Pass(detail) => reasons.push(format!("{failed} failure confirmed: {detail}")),
        Check::Fail(detail) | Check::Unknown(detail) => {
            reasons.push(format!(
                "{failed} failure not confirmed: {detail}; an alert is not proof"
            ));
            return Decision::Stay {
                reasons,
                refused: Vec::new(),
            };
        }
    }
    if situation.weights.get(failed).copied().unwrap_or(0) == 0 {
        reasons.push(format!("{failed} already has no traffic"));
        return Decision::Stay {
            reasons,
            refused: Vec::new(),
        };
    }
    if let Some(last) = situation.last_move {
        let until = last + situation.hold_down;
        if situation.now < until {
            if situation.forced {
                reasons.push(format!("hold-down until {until} overridden: forced"));
            } else {
                reasons.push(format!(
                    "hold-down: traffic moved at {last}, no move before {until}"
                ));
                return Decision::Stay {
                    reasons,
                    refused: Vec::new(),
                };
            }
        }
    }
    let mut eligible = Vec::new();
    let mut refused = Vec::new();
    for candidate in &situation.candidates {
        if candidate.region == failed {
            continue;
        }
        match eligibility(candidate, situation) {
            Ok(notes) => {
                reasons.push(format!(
                    "{} eligible: {}",
                    candidate.region,
                    notes.join("; ")
                ));
                eligible.push(candidate.region.as_str());
            }
            Err(why) => {
                reasons.push(format!("{} not eligible: {why}", candidate.region));
                refused.push(Refused {
                    region: candidate.region.clone(),
                    reason: why,
                });
            }
        }
    }
    if eligible.is_empty() {
        reasons.push("no eligible region: traffic stays where it is".to_string());
        return Decision::Stay { reasons, refused };
    }
    let moved = situation.weights[failed];
    let mut weights = situation.weights.clone();
    weights.insert(failed.to_string(), 0);
    let serving: Vec<&str> = eligible
        .iter()
        .copied()
        .filter(|region| weights.get(*region).copied().unwrap_or(0) > 0)
        .collect();
    let to: Vec<String> = match situation.pattern {
        // Every region serves: the failed one's share goes to the eligible
        // regions already serving, in proportion to their weights.
        Pattern::ActiveActive if !serving.is_empty() => {
            let total: u64 = serving.iter().map(|r| u64::from(weights[*r])).sum();
            let mut given = 0u32;
            for (index, region) in serving.iter().enumerate() {
                let share = if index + 1 == serving.len() {
                    moved - given
                } else {
                    u32::try_from(u64::from(moved) * u64::from(weights[*region]) / total)
                        .unwrap_or(0)
                };
                given += share;
                *weights.entry(region.to_string()).or_default() += share;
            }
            reasons.push(format!(
                "active-active: {failed}'s weight {moved} shared by {}",
                serving.join(", ")
            ));
            serving.iter().map(|r| r.to_string()).collect()
        }
        // A standby takes all of it: the first eligible in topology order.
        _ => {
            let standby = eligible[0];
            *weights.entry(standby.to_string()).or_default() += moved;
            reasons.push(format!(
                "{}: {standby} takes {failed}'s weight {moved}",
                situation.pattern.name()
            ));
            vec![standby.to_string()]
        }
    };
    Decision::Move {
        weights,
        to,
        reasons,
    }
}

/// Whether `candidate` may take traffic: the notes on its checks, or why not.
fn eligibility(candidate: &Candidate, situation: &Situation) -> Result<Vec<String>, String> {
    let forced = situation.forced;
    let mut notes = Vec::new();
    if let Some(allowed) = &situation.allowed_regions {
        if !allowed.contains(&candidate.region) {
            let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
            return Err(format!(
                "residency: outside the workload's allowed regions ({}); never moved there, even forced",
                allowed.join(", ")
            ));
        }
        notes.push("inside the allowed regions".to_string());
    }
    match &candidate.health {
        Check::Pass(detail) => notes.push(format!("healthy ({detail})")),
        Check::Fail(detail) => return Err(format!("unhealthy ({detail})")),
        Check::Unknown(detail) => return Err(format!("health unknown ({detail})")),
    }
    for (name, check) in [("model", &candidate.model), ("data", &candidate.data)] {
        match check {
            Check::Pass(detail) => notes.push(format!("{name} ok ({detail})")),
            Check::Unknown(detail) => notes.push(format!("{name} unknown ({detail})")),
            Check::Fail(detail) if forced => {
                notes.push(format!("{name} check failed but forced ({detail})"));
            }
            Check::Fail(detail) => return Err(format!("{name}: {detail}")),
        }
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(detail: &str) -> Check {
        Check::Pass(detail.to_string())
    }

    fn candidate(region: &str, health: Check, model: Check, data: Check) -> Candidate {
        Candidate {
            region: region.to_string(),
            health,
            model,
            data,
        }
    }

    fn healthy(region: &str) -> Candidate {
        candidate(
            region,
            pass("3/3 probes ok"),
            pass("version 7"),
            pass("RPO 40s of 5m"),
        )
    }

    fn situation(
        pattern: Pattern,
        weights: &[(&str, u32)],
        candidates: Vec<Candidate>,
    ) -> Situation {
        Situation {
            workload: "ranking".to_string(),
            pattern,
            failed_region: "us-central1".to_string(),
            failure_confirmed: pass("3 of 3 probes failed"),
            weights: weights.iter().map(|(r, w)| (r.to_string(), *w)).collect(),
            candidates,
            last_move: None,
            hold_down: TimeDelta::minutes(10),
            forced: false,
            allowed_regions: None,
            now: Utc::now(),
        }
    }

    fn moved(decision: &Decision) -> (&BTreeMap<String, u32>, &Vec<String>) {
        match decision {
            Decision::Move { weights, to, .. } => (weights, to),
            Decision::Stay { reasons, .. } => panic!("expected a move, stayed: {reasons:?}"),
        }
    }

    fn stayed(decision: &Decision) -> Vec<String> {
        match decision {
            Decision::Stay { reasons, .. } => reasons.clone(),
            Decision::Move { weights, .. } => panic!("expected no move, moved to {weights:?}"),
        }
    }

    #[test]
    fn active_passive_moves_everything_to_the_first_eligible_standby() {
        let s = situation(
            Pattern::ActivePassive,
            &[("us-central1", 100), ("us-east1", 0), ("europe-west1", 0)],
            vec![healthy("us-east1"), healthy("europe-west1")],
        );
        let decision = decide(&s);
        let (weights, to) = moved(&decision);
        assert_eq!(to, &vec!["us-east1".to_string()]);
        assert_eq!(weights["us-central1"], 0);
        assert_eq!(weights["us-east1"], 100);
        assert_eq!(weights["europe-west1"], 0);
    }

    #[test]
    fn active_active_shares_the_failed_weight_in_proportion() {
        let s = situation(
            Pattern::ActiveActive,
            &[("us-central1", 50), ("us-east1", 30), ("europe-west1", 20)],
            vec![healthy("us-east1"), healthy("europe-west1")],
        );
        let decision = decide(&s);
        let (weights, to) = moved(&decision);
        assert_eq!(to.len(), 2);
        assert_eq!(weights["us-central1"], 0);
        assert_eq!(weights["us-east1"] + weights["europe-west1"], 100);
        assert_eq!(weights["us-east1"], 60);
    }

    #[test]
    fn an_unconfirmed_alert_moves_nothing_and_says_why() {
        let mut s = situation(
            Pattern::ActivePassive,
            &[("us-central1", 100), ("us-east1", 0)],
            vec![healthy("us-east1")],
        );
        s.failure_confirmed = Check::Fail("3 of 3 probes answered 200".to_string());
        let reasons = stayed(&decide(&s));
        assert!(
            reasons[0].contains("not confirmed") && reasons[0].contains("200"),
            "{reasons:?}"
        );
    }

    #[test]
    fn unhealthy_stale_or_modelless_regions_are_never_chosen_unless_forced() {
        let unhealthy = candidate(
            "us-east1",
            Check::Fail("0/3 probes".into()),
            pass("v7"),
            pass("ok"),
        );
        let stale = candidate(
            "europe-west1",
            pass("ok"),
            pass("v7"),
            Check::Fail("RPO 2h over 5m".into()),
        );
        let modelless = candidate(
            "asia-east1",
            pass("ok"),
            Check::Fail("has v6, serving v7".into()),
            pass("ok"),
        );
        let s = situation(
            Pattern::ActivePassive,
            &[("us-central1", 100)],
            vec![unhealthy.clone(), stale.clone(), modelless.clone()],
        );
        let reasons = stayed(&decide(&s));
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("us-east1 not eligible: unhealthy")),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("europe-west1 not eligible: data")),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("asia-east1 not eligible: model")),
            "{reasons:?}"
        );
        assert!(reasons.last().is_some_and(|r| r.contains("traffic stays")));
        let Decision::Stay { refused, .. } = decide(&s) else {
            panic!("stays")
        };
        let regions: Vec<&str> = refused.iter().map(|r| r.region.as_str()).collect();
        assert_eq!(regions, ["us-east1", "europe-west1", "asia-east1"]);
        assert!(refused[0].reason.starts_with("unhealthy"), "{refused:?}");
        assert!(refused[2].reason.starts_with("model"), "{refused:?}");

        let forced = Situation { forced: true, ..s };
        let decision = decide(&forced);
        let (weights, to) = moved(&decision);
        assert_eq!(
            to,
            &vec!["europe-west1".to_string()],
            "forced, but never to the unhealthy one"
        );
        assert_eq!(weights["europe-west1"], 100);
    }

    #[test]
    fn unknown_checks_do_not_block_and_are_said() {
        let unknown = candidate(
            "us-east1",
            pass("3/3"),
            Check::Unknown("no model parity records yet".into()),
            Check::Unknown("no RPO records".into()),
        );
        let s = situation(Pattern::PilotLight, &[("us-central1", 100)], vec![unknown]);
        let decision = decide(&s);
        let Decision::Move { reasons, .. } = &decision else {
            panic!("{decision:?}")
        };
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("model unknown (no model parity records yet)")),
            "{reasons:?}"
        );
    }

    #[test]
    fn the_hold_down_blocks_a_second_move_unless_forced() {
        let mut s = situation(
            Pattern::ActivePassive,
            &[("us-central1", 100), ("us-east1", 0)],
            vec![healthy("us-east1")],
        );
        s.last_move = Some(s.now - TimeDelta::minutes(3));
        assert!(stayed(&decide(&s))[1].contains("hold-down"));
        assert!(
            matches!(decide(&s), Decision::Stay { refused, .. } if refused.is_empty()),
            "the candidates were not judged"
        );
        s.forced = true;
        moved(&decide(&s));
    }

    #[test]
    fn a_region_without_traffic_is_not_moved_again() {
        let s = situation(
            Pattern::ActivePassive,
            &[("us-central1", 0), ("us-east1", 100)],
            vec![healthy("us-east1")],
        );
        assert!(stayed(&decide(&s))[1].contains("already has no traffic"));
    }

    #[test]
    fn a_region_outside_the_allowed_ones_is_refused_even_forced() {
        let mut s = situation(
            Pattern::ActivePassive,
            &[("us-central1", 100), ("us-east1", 0), ("europe-west1", 0)],
            vec![healthy("europe-west1"), healthy("us-east1")],
        );
        s.allowed_regions = Some(
            ["us-central1", "us-east1"]
                .iter()
                .map(|r| r.to_string())
                .collect(),
        );
        let decision = decide(&s);
        let (_, to) = moved(&decision);
        assert_eq!(
            to,
            &vec!["us-east1".to_string()],
            "the allowed standby, not the first"
        );

        // The only candidate outside: refused with the reason, forced or not.
        s.candidates = vec![healthy("europe-west1")];
        for forced in [false, true] {
            s.forced = forced;
            let Decision::Stay { reasons, refused } = decide(&s) else {
                panic!("moved outside the allowed regions (forced: {forced})")
            };
            assert_eq!(refused.len(), 1, "{refused:?}");
            assert_eq!(refused[0].region, "europe-west1");
            assert!(
                refused[0].reason.starts_with(
                    "residency: outside the workload's allowed regions (us-central1, us-east1)"
                ),
                "{refused:?}"
            );
            assert!(
                reasons
                    .iter()
                    .any(|r| r.contains("europe-west1 not eligible: residency")),
                "{reasons:?}"
            );
        }
    }
}
