//! The HTML report of a drill run: one self-contained page (inline CSS and
//! inline SVG, no script, no external asset of any kind) that opens
//! offline and prints well. It leads with the verdict and its reasons, so
//! that an on-call engineer knows in seconds whether the drill passed,
//! then shows the targets checked, the key measurements, four charts on
//! one time axis ([`chart`]), the findings, the steps and the cleanup.
//! Every text taken from the record is escaped by the templates. The drill
//! saves it where reports go; the console shows it from the run's record.

use chrono::{DateTime, Utc};
use lifeboat_plan::WorkloadPlan;
use lifeboat_plan::measured::{Measured, MeasuredRto};
use lifeboat_plan::prices::PriceBook;
use lifeboat_plan::recovery::Expected;
use lifeboat_shared::records::drill_run::{
    self, Cleanup, DrillRun, Measurements, RunState, Trigger,
};
use lifeboat_shared::topology::Topology;
use maud::{DOCTYPE, Markup, html};

use crate::chart;
use crate::text::{clock, duration_text, instant, thousands};

/// Renders the report of `run` as one self-contained HTML page, with the
/// plan of its workload when there is one (see [`workload_plan`]).
pub fn render(run: &DrillRun, plan: Option<&WorkloadPlan>) -> String {
    let axis = chart::TimeAxis::of(run);
    let colours = chart::region_colours(run);
    let (verdict, class) = verdict(run.state);
    html! {
        (DOCTYPE)
        html lang="en" {
            (crate::head(&format!("{verdict} · drill run {}", run.id), ""))
            body {
                main {
                    header.run.(class) {
                        div {
                            div.eyebrow { "Lifeboat drill run" }
                            h1 { (run.id) }
                        }
                        div.verdict #verdict { (verdict) }
                        (reasons(run))
                        (facts(run))
                    }
                    section {
                        h2 { "Targets" }
                        (targets(run))
                    }
                    section {
                        h2 { "Key measurements" }
                        (measurements(&run.measurements))
                    }
                    section {
                        h2 { "Timeline" }
                        (chart::timeline(&axis, &run.phases, &run.steps))
                    }
                    section {
                        h2 { "Predictions per second" }
                        (chart::traffic(&axis, &run.series.traffic, &colours))
                    }
                    section {
                        h2 { "Routing weights" }
                        (chart::routing("chart-routing", "no routing table was seen during this run.", &axis, &run.series.routing, &colours))
                    }
                    section {
                        h2 { "RPO exposure" }
                        (chart::exposure("chart-exposure", "no RPO exposure was read during this run.", &axis, &run.series.exposure))
                    }
                    @if !run.findings.is_empty() || run.findings_dropped > 0 {
                        section {
                            h2 { "Findings" }
                            (findings(run))
                        }
                    }
                    section {
                        h2 { "Steps" }
                        (steps(run))
                    }
                    @if let Some(plan) = plan {
                        section #plan {
                            h2 { "Plan: what each pattern costs and promises" }
                            (plan_table(plan))
                        }
                    }
                    section {
                        h2 { "Cleanup" }
                        (cleanup(&run.cleanup))
                    }
                    footer {
                        "Report of drill run " code { (run.id) } ", drawn from its record in "
                        code { (drill_run::COLLECTION) } ". Times are UTC."
                    }
                }
            }
        }
    }
    .into_string()
}

/// The verdict in capitals and the class that colours it.
fn verdict(state: RunState) -> (&'static str, &'static str) {
    let class = match state {
        RunState::Passed => "passed",
        RunState::Failed => "failed",
        RunState::Aborted | RunState::Refused => "aborted",
        RunState::Running => "running",
    };
    (state.verdict(), class)
}

/// Why the run failed or was aborted, and the abort asked for.
fn reasons(run: &DrillRun) -> Markup {
    let abort = run.abort.as_ref();
    html! {
        @if !run.reasons.is_empty() || abort.is_some() {
            ul.reasons {
                @for reason in &run.reasons { li { (reason) } }
                @if let Some(abort) = abort {
                    li { "Abort asked for by " strong { (abort.by) } " at " (clock(abort.at)) ": " (abort.reason) }
                }
            }
        }
    }
}

/// The run's facts: what ran where, when, fired by what.
fn facts(run: &DrillRun) -> Markup {
    let trigger = match run.trigger {
        Trigger::Scheduler => "scheduler",
        Trigger::Manual => "manual",
    };
    let duration = match run.finished_at {
        Some(end) => duration_text((end - run.started_at).num_milliseconds() as f64 / 1000.0),
        None => format!("running (deadline {} UTC)", clock(run.deadline)),
    };
    html! {
        dl.facts {
            div { dt { "Drill" } dd.mono { (run.drill) } }
            div { dt { "Kind" } dd { (run.kind.name()) } }
            div { dt { "Workload" } dd { (run.workload) } }
            div { dt { "Target region" } dd { (run.target_region) } }
            div { dt { "Trigger" } dd { (trigger) } }
            div { dt { "Started" } dd { (instant(run.started_at)) } }
            div { dt { "Finished" } dd { @match run.finished_at { Some(at) => (instant(at)), None => "not yet" } } }
            div { dt { "Duration" } dd { (duration) } }
        }
    }
}

/// The targets table.
fn targets(run: &DrillRun) -> Markup {
    html! {
        @if run.checks.is_empty() {
            p.note { "No target has been checked yet." }
        } @else {
            table #targets {
                thead { tr { th { "Target" } th { "Required" } th { "Measured" } th { "Held" } } }
                tbody {
                    @for check in &run.checks {
                        tr.(if check.held { "held" } else { "missed" }) {
                            td { (check.name) }
                            td { (check.target) }
                            td { (check.measured) }
                            @if check.held { td.held { "✓ held" } } @else { td.missed { "✗ missed" } }
                        }
                    }
                }
            }
        }
    }
}

/// The plan of `run`'s workload, priced from the file `$LIFEBOAT_PRICES`
/// names or the snapshot shipped with Lifeboat, with the RTO this run
/// measured in place of the model for the pattern the workload runs.
/// `None` when the workload is not in the topology or the price file
/// cannot be read (logged).
pub fn workload_plan(topology: &Topology, run: &DrillRun) -> Option<WorkloadPlan> {
    let prices = match PriceBook::configured() {
        Ok(book) => book,
        Err(error) => {
            tracing::warn!(run = %run.id, %error, "the report has no plan");
            return None;
        }
    };
    let mut measured = Measured::default();
    if let Some(rto_seconds) = run.measurements.rto_seconds {
        measured.drill_rto.insert(
            run.workload.clone(),
            MeasuredRto {
                run: run.id.clone(),
                at: run.started_at,
                rto_seconds,
            },
        );
    }
    lifeboat_plan::plan(topology, &prices, &measured, run.started_at)
        .workloads
        .into_iter()
        .find(|plan| plan.workload == run.workload)
}

/// The plan's patterns: monthly cost, multiple, RPO, RTO, and whether each
/// meets the targets, the recommended one and the current one marked (the
/// report's plan section and the console's).
pub fn plan_table(plan: &WorkloadPlan) -> Markup {
    let time = |expected: &Expected| match expected.seconds {
        Some(seconds) => duration_text(seconds),
        None => "unbounded".to_string(),
    };
    html! {
        table #plan-patterns {
            thead { tr {
                th { "Pattern" } th.num { "Per month" } th.num { "× single region" }
                th { "RPO" } th { "RTO" } th { "Meets targets" }
            } }
            tbody {
                @for pattern in &plan.patterns {
                    @let meets = pattern.meets_rpo && pattern.meets_rto;
                    tr.(if meets { "held" } else { "missed" }) {
                        td {
                            (pattern.pattern.name())
                            @if pattern.pattern == plan.current { " (now)" }
                            @if Some(pattern.pattern) == plan.recommended { strong { " · recommended" } }
                        }
                        td.num { (format!("${:.2}", pattern.cost.monthly_usd)) }
                        td.num { @if let Some(multiple) = pattern.multiple { (format!("{multiple:.2}x")) } @else { "-" } }
                        td { (time(&pattern.rpo)) }
                        td { (time(&pattern.rto.total)) }
                        @if meets { td.held { "✓ yes" } } @else { td.missed { "✗ no" } }
                    }
                }
            }
        }
        p.note {
            "Targets: RPO " (duration_text(plan.rpo_target_seconds as f64))
            ", RTO " (duration_text(plan.rto_target_seconds as f64))
            ". `lifeboat plan` prints every cost line with its SKU and unit price."
            @if !plan.missing_figures.is_empty() || !plan.missing_prices.is_empty() {
                " Incomplete: missing "
                (plan.missing_figures.iter().chain(&plan.missing_prices).cloned().collect::<Vec<_>>().join(", "))
                "."
            }
        }
    }
}

/// The key measurements: only those the run's kind measured.
fn measurements(m: &Measurements) -> Markup {
    let parts: Vec<String> = [
        ("detection", m.detection_seconds),
        ("decision", m.decision_seconds),
        ("execution", m.execution_seconds),
        ("verification", m.verification_seconds),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| format!("{name} {}", duration_text(v))))
    .collect();
    let seconds = |value: Option<f64>| value.map(duration_text);
    let cards: Vec<(&str, String, Vec<String>)> = [
        ("RTO", seconds(m.rto_seconds), parts),
        (
            "RPO at failure",
            m.rpo_at_failure_seconds.map(|s| duration_text(s as f64)),
            Vec::new(),
        ),
        (
            "Predictions failed",
            (m.predictions > 0).then(|| {
                format!(
                    "{} of {}",
                    thousands(m.predictions_failed),
                    thousands(m.predictions)
                )
            }),
            vec![format!("{:.2} %", m.failed_ratio() * 100.0)],
        ),
        ("Failback", seconds(m.failback_seconds), Vec::new()),
        (
            "Checkpoint read",
            seconds(m.checkpoint_read_seconds),
            Vec::new(),
        ),
        (
            "Time to serve",
            seconds(m.time_to_serve_seconds),
            Vec::new(),
        ),
        (
            "Exposure crossed target after",
            seconds(m.exposure_crossed_after_seconds),
            Vec::new(),
        ),
    ]
    .into_iter()
    .filter_map(|(label, value, parts)| value.map(|v| (label, v, parts)))
    .collect();
    html! {
        @if cards.is_empty() {
            p.note { "Nothing has been measured yet." }
        } @else {
            div.metrics #measurements {
                @for (label, value, parts) in &cards {
                    div.metric {
                        div.label { (label) }
                        div.value { (value) }
                        @if !parts.is_empty() {
                            div.parts { @for part in parts { span.part { (part) } } }
                        }
                    }
                }
            }
        }
    }
}

/// The findings table, with the count of findings that did not fit.
fn findings(run: &DrillRun) -> Markup {
    html! {
        table #findings {
            thead { tr { th { "Asset" } th { "As it must be" } th { "Found" } } }
            tbody {
                @for finding in &run.findings {
                    tr {
                        td.mono { (finding.asset) }
                        @if finding.ok { td.ok { "✓" } } @else { td.bad { "✗" } }
                        td { (finding.detail) }
                    }
                }
            }
        }
        @if run.findings_dropped > 0 {
            p.note { (run.findings_dropped) " more findings did not fit in the record and are not shown." }
        }
    }
}

/// The steps table, with the count of steps that did not fit.
fn steps(run: &DrillRun) -> Markup {
    html! {
        @if run.steps.is_empty() {
            p.note { "No step has been recorded yet." }
        } @else {
            table #steps {
                thead { tr { th { "Time" } th { "Step" } th { "Detail" } } }
                tbody {
                    @for step in &run.steps {
                        tr { td.time { (clock(step.at)) } td.what { strong { (step.what) } } td { (step.detail) } }
                    }
                }
            }
        }
        @if run.steps_dropped > 0 {
            p.note { (run.steps_dropped) " steps did not fit in the record; the last one shown is the newest." }
        }
    }
}

/// What the run changed and when each change was undone.
fn cleanup(cleanup: &Cleanup) -> Markup {
    let undone = |at: Option<DateTime<Utc>>| match at {
        Some(at) => html! { (instant(at)) },
        None => html! { span.pending { "not undone yet" } },
    };
    let rows: Vec<(String, Markup)> = [
        cleanup.fault_injected_at.map(|at| {
            (
                format!("Fault injected at {}", clock(at)),
                undone(cleanup.fault_removed_at),
            )
        }),
        cleanup.routing_before.as_ref().map(|weights| {
            let weights: Vec<String> = weights.iter().map(|(r, w)| format!("{r} {w}")).collect();
            (
                format!("Routing before the drill: {}", weights.join(", ")),
                undone(cleanup.routing_restored_at),
            )
        }),
        cleanup
            .deployed
            .as_ref()
            .map(|model| (format!("Deployed {model}"), undone(cleanup.undeployed_at))),
        cleanup.paused_at.map(|at| {
            (
                format!("Replication paused at {}", clock(at)),
                undone(cleanup.resumed_at),
            )
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    html! {
        @if rows.is_empty() {
            p.note { "The run changed nothing that needed undoing." }
        } @else {
            table #cleanup {
                thead { tr { th { "Change" } th { "Undone" } } }
                tbody {
                    @for (change, undone) in rows { tr { td { (change) } td { (undone) } } }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
