//! The console page: server-rendered HTML with inline SVG charts (drawn by
//! `lifeboat_pages::chart`, as in drill reports) and a few lines of inline
//! script that fetch the page again every few seconds and swap it in, so
//! it refreshes by itself without a reload and works offline. Every text
//! taken from a record is escaped by the templates.

use chrono::{DateTime, TimeDelta, Utc};
use lifeboat_pages::chart::{self, TimeAxis};
use lifeboat_pages::report::plan_table;
use lifeboat_pages::text::{clock, duration_text, instant};
use lifeboat_shared::records::history::ExposurePoint;
use lifeboat_shared::records::incident::{IncidentRecord, Outcome};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::overview::{Overview, RegionView, WorkloadView};

/// How often the page fetches itself again, in seconds.
pub const REFRESH_SECONDS: u32 = 5;

/// The shortest span a chart draws, so that a fresh deployment's few
/// minutes are not squeezed against the edge of a day.
const MIN_SPAN: TimeDelta = TimeDelta::minutes(2);

/// What the console adds to the shared page style.
const CONSOLE_STYLE: &str = r#"
header.console { display: flex; justify-content: space-between; align-items: end; gap: 16px; flex-wrap: wrap; }
header.console h1 { margin: 4px 0 0; font-size: 22px; font-weight: 650; }
header.console .eyebrow { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .08em; }
header.console .updated { color: var(--muted); font-size: 12px; }
section.workload { border-top: 6px solid var(--verdict); }
section.workload.ready { --verdict: var(--pass); } section.workload.at-risk { --verdict: var(--fail); }
.workload-head { display: flex; justify-content: space-between; align-items: start; gap: 16px; }
.workload-head h2 { font-size: 19px; margin: 0; }
.workload-head .pattern { color: var(--muted); font-weight: 500; font-size: 14px; margin-left: 8px; }
.badge { color: #fff; background: var(--verdict); border-radius: 8px; padding: 4px 14px; font-weight: 800; letter-spacing: .06em; white-space: nowrap; }
ul.reasons { margin: 8px 0 4px; padding-left: 20px; }
h3 { font-size: 14px; margin: 18px 0 6px; color: var(--ink); }
td.num, th.num { text-align: right; white-space: nowrap; }
.bar { display: inline-block; height: 10px; border-radius: 2px; background: #2563eb; vertical-align: middle; }
tr.incident-open td.health, td.down { color: var(--fail); font-weight: 700; }
td.up { color: var(--pass); font-weight: 700; }
tr.source-down td { background: #fff7ed; }
details.incident { border: 1px solid var(--line); border-radius: 8px; padding: 6px 12px; margin: 6px 0; }
details.incident[data-state="open"] { border-color: #fca5a5; background: #fef2f2; }
details.incident summary { cursor: pointer; font-weight: 600; }
.state-passed { color: var(--pass); font-weight: 700; } .state-failed, .state-refused { color: var(--fail); font-weight: 700; }
.state-aborted { color: var(--abort); font-weight: 700; } .state-running { color: var(--run); font-weight: 700; }
"#;

/// The script that keeps the page fresh: it fetches the page again and
/// swaps in its `<main>`, keeping the reader's place; nothing else.
const REFRESH_SCRIPT: &str = r#"
(function () {
  async function refresh() {
    try {
      const answer = await fetch(location.href, { cache: "no-store" });
      if (!answer.ok) return;
      const next = new DOMParser().parseFromString(await answer.text(), "text/html").querySelector("main");
      const open = new Set(Array.from(document.querySelectorAll("details[open]"), d => d.id));
      if (next) {
        next.querySelectorAll("details").forEach(d => { if (open.has(d.id)) d.open = true; });
        document.querySelector("main").replaceWith(next);
      }
    } catch (e) { /* the next refresh tries again */ }
  }
  setInterval(refresh, REFRESH_MS);
})();
"#;

/// The whole page for `overview`.
pub fn render(overview: &Overview) -> String {
    let script = REFRESH_SCRIPT.replace("REFRESH_MS", &(REFRESH_SECONDS * 1000).to_string());
    let source_down = overview
        .regions
        .iter()
        .find(|region| region.role == "primary" && !region.healthy());
    html! {
        (DOCTYPE)
        html lang="en" {
            (lifeboat_pages::head(&format!("Lifeboat · {}", overview.project), CONSOLE_STYLE))
            body {
                main #console data-generated=(overview.generated_at.to_rfc3339()) {
                    header.console {
                        div {
                            div.eyebrow { "Lifeboat console · " (overview.project) }
                            h1 { "Could each workload survive losing a region right now?" }
                        }
                        div.updated #updated {
                            "Read from the records at " (instant(overview.generated_at))
                            " · refreshes every " (REFRESH_SECONDS) " s"
                        }
                    }
                    (regions(&overview.regions))
                    @for workload in &overview.workloads {
                        (workload_section(workload, overview.generated_at, source_down))
                    }
                    footer { "Read-only: drawn from the records Lifeboat's services keep. Times are UTC." }
                }
                script { (PreEscaped(script)) }
            }
        }
    }
    .into_string()
}

/// The regions: role, what each serves, and whether an incident is open.
fn regions(regions: &[RegionView]) -> Markup {
    html! {
        section #regions {
            h2 { "Regions" }
            table {
                thead { tr { th { "Region" } th { "Role" } th { "Serves" } th { "Health" } } }
                tbody {
                    @for region in regions {
                        @let health = if region.healthy() { "healthy" } else { "incident" };
                        tr.region.(if region.healthy() { "" } else { "incident-open" })
                            id=(format!("region-{}", region.id)) data-health=(health) {
                            td { code { (region.id) } }
                            td { (region.role) }
                            td { @if region.serving.is_empty() { "—" } @else { (region.serving.join(", ")) } }
                            @if region.healthy() {
                                td.health.up { "healthy: no open incident" }
                            } @else {
                                td.health.down { "incident open: " (region.incidents.join("; ")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One workload: the verdict and its reasons, routing, RPO, parity,
/// incidents, drills and plan.
fn workload_section(
    view: &WorkloadView,
    now: DateTime<Utc>,
    source_down: Option<&RegionView>,
) -> Markup {
    let (badge, class) = if view.readiness.ready {
        ("READY", "ready")
    } else {
        ("AT RISK", "at-risk")
    };
    let routing_points = view.routing.series();
    let exposure: Vec<ExposurePoint> = view
        .checkpoints
        .iter()
        .flat_map(|row| row.history.iter().cloned())
        .chain(view.data.iter().flat_map(|row| row.history.iter().cloned()))
        .collect();
    let earliest = routing_points
        .iter()
        .map(|p| p.at)
        .chain(exposure.iter().map(|p| p.at))
        .min()
        .unwrap_or(now);
    let axis = TimeAxis::new(
        earliest.max(now - TimeDelta::hours(24)).min(now - MIN_SPAN),
        now,
    );
    let colours = chart::colours_of(view.routing.weights.keys().map(String::as_str));
    html! {
        section.workload.(class) id=(format!("workload-{}", view.id)) data-ready=(if view.readiness.ready { "yes" } else { "no" }) {
            div.workload-head {
                div {
                    h2 { (view.id) span.pattern { (view.pattern) } }
                    div.note {
                        "Targets: RPO " (duration_text(view.rpo_target_seconds as f64))
                        ", RTO " (duration_text(view.rto_target_seconds as f64))
                    }
                }
                div.badge id=(format!("verdict-{}", view.id)) { (badge) }
            }
            ul.reasons {
                @for reason in &view.readiness.reasons { li { (reason) } }
            }
            h3 { "Routing" }
            (routing_table(view))
            (chart::routing(
                &format!("chart-routing-{}", view.id),
                "no routing table written yet.",
                &axis,
                &routing_points,
                &colours,
            ))
            h3 { "RPO exposure" }
            (rpo_table(view, now, source_down))
            (chart::exposure(
                &format!("chart-exposure-{}", view.id),
                "nothing replicated yet.",
                &axis,
                &exposure,
            ))
            @if !view.parity.is_empty() {
                h3 { "Model parity" }
                (parity_table(view))
            }
            h3 { "Incidents" }
            (incidents(view))
            @if !view.drills.is_empty() {
                h3 { "Drills" }
                (drills(view))
            }
            @if let Some(plan) = &view.plan {
                h3 { "Plan" }
                (plan_table(plan))
            }
        }
    }
}

/// The weights now, with a bar each.
fn routing_table(view: &WorkloadView) -> Markup {
    let total: u32 = view.routing.weights.values().sum();
    html! {
        table.routing id=(format!("routing-{}", view.id)) {
            thead { tr { th { "Region" } th.num { "Weight" } th.num { "Share" } th { "" } } }
            tbody {
                @for (region, weight) in &view.routing.weights {
                    @let share = if total == 0 { 0.0 } else { f64::from(*weight) * 100.0 / f64::from(total) };
                    tr data-region=(region) data-weight=(weight) {
                        td { code { (region) } }
                        td.num { (weight) }
                        td.num { (format!("{share:.0}%")) }
                        td { span.bar style=(format!("width: {:.0}px", share * 2.0)) {} }
                    }
                }
            }
        }
        p.note {
            @if view.routing.revision == 0 {
                (view.routing.reason)
            } @else {
                "Revision " (view.routing.revision) ", written " (instant(view.routing.updated_at)) ": " (view.routing.reason)
            }
        }
    }
}

/// One row per copy: checkpoints per location and region, buckets and
/// datasets per replica region.
fn rpo_table(view: &WorkloadView, now: DateTime<Utc>, source_down: Option<&RegionView>) -> Markup {
    struct Row<'a> {
        asset: &'a str,
        kind: &'static str,
        region: &'a str,
        exposure: Option<i64>,
        target: u64,
        meets: bool,
        detail: String,
    }
    let mut rows: Vec<Row> = Vec::new();
    for row in &view.checkpoints {
        rows.push(Row {
            asset: &row.location,
            kind: "checkpoints",
            region: &row.region,
            exposure: row.exposure_seconds,
            target: row.target_rpo_seconds,
            meets: row.meets_target,
            detail: match row.newest_step {
                Some(step) => format!(
                    "step {step}{}",
                    row.source_step
                        .filter(|s| *s != step)
                        .map(|s| format!(" (source at {s})"))
                        .unwrap_or_default()
                ),
                None => "no complete checkpoint".to_string(),
            },
        });
    }
    for row in &view.data {
        rows.push(Row {
            asset: &row.asset,
            kind: row.kind.name(),
            region: &row.region,
            exposure: row.exposure_seconds.and_then(|s| i64::try_from(s).ok()),
            target: row.target_rpo_seconds,
            meets: row.meets_target,
            detail: match row.checked_at {
                Some(at) => format!(
                    "checked {} ago",
                    duration_text((now - at).num_seconds() as f64)
                ),
                None => "never reconciled".to_string(),
            },
        });
    }
    if rows.is_empty() {
        return html! { p.no-data { "Nothing of this workload is replicated." } };
    }
    html! {
        table.rpo id=(format!("rpo-{}", view.id)) {
            thead { tr {
                th { "Asset" } th { "Kind" } th { "Copy in" } th.num { "Exposure" } th.num { "Target" } th { "" } th { "Detail" }
            } }
            tbody {
                @for row in &rows {
                    @let state = if source_down.is_some() { "source-down" } else if row.meets { "met" } else { "missed" };
                    tr.rpo.(state) data-asset=(row.asset) data-region=(row.region) data-state=(state)
                        data-exposure=(row.exposure.map(|e| e.to_string()).unwrap_or_default()) {
                        td { code { (row.asset) } }
                        td { (row.kind) }
                        td { code { (row.region) } }
                        td.num { @match row.exposure { Some(e) => (duration_text(e as f64)), None => "unknown" } }
                        td.num { (duration_text(row.target as f64)) }
                        @if row.meets { td.ok { "✓ within" } } @else { td.bad { "✗ over" } }
                        td {
                            (row.detail)
                            @if let Some(down) = source_down {
                                " · source region " code { (down.id) } " has an open incident: nothing new reaches this copy; losing the source now loses "
                                @match row.exposure { Some(e) => (duration_text(e as f64)), None => "an unknown amount" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Per model and standby region: versions present, deployed, parity.
fn parity_table(view: &WorkloadView) -> Markup {
    html! {
        table.parity id=(format!("parity-{}", view.id)) {
            thead { tr {
                th { "Model" } th { "Region" } th { "Present" } th { "Deployed" } th { "Primary's newest" } th { "Parity" }
            } }
            tbody {
                @for row in &view.parity {
                    tr data-model=(row.model) data-region=(row.region) data-parity=(row.parity) {
                        td { code { (row.model) } }
                        td { code { (row.region) } }
                        td { (row.versions_present.join(", ")) }
                        td { (row.deployed_version.as_deref().unwrap_or("—")) }
                        td { (row.source_version.as_deref().unwrap_or("—")) }
                        @if row.parity {
                            td.ok { "✓ in parity" }
                        } @else {
                            td.bad { "✗ " (row.error.as_deref().unwrap_or("behind")) }
                        }
                    }
                }
            }
        }
    }
}

/// Open incidents (expanded) and recent closed ones, with their steps.
fn incidents(view: &WorkloadView) -> Markup {
    if view.incidents.is_empty() {
        return html! { p.note #(format!("incidents-{}", view.id)) { "No incident open or closed in the last day." } };
    }
    html! {
        div #(format!("incidents-{}", view.id)) {
            @for record in &view.incidents {
                (incident(record))
            }
        }
    }
}

fn incident(record: &IncidentRecord) -> Markup {
    let open = record.is_open();
    let state = if open { "open" } else { "closed" };
    let kind = if record.is_failback() {
        "Failback"
    } else if record.is_operation() {
        "Manual move"
    } else if open {
        "Open incident"
    } else {
        "Closed incident"
    };
    let outcome = match record.outcome {
        Some(_) if record.is_operation() => "done",
        Some(Outcome::Moved) => "traffic moved",
        Some(Outcome::Stayed) => "traffic stayed",
        Some(Outcome::Closed) => "closed",
        None => "being handled",
    };
    html! {
        details.incident id=(format!("incident-{}", record.incident_id)) data-state=(state) data-region=(record.region) open[open] {
            summary {
                (kind) ": " code { (record.region) } " · "
                @if let Some(at) = record.started_at { "since " (clock(at)) " · " }
                (outcome) " · incident " code { (record.incident_id) }
            }
            table.steps {
                thead { tr { th { "Time" } th { "Step" } th { "Detail" } } }
                tbody {
                    @for step in &record.steps {
                        tr { td.time { (clock(step.at)) } td.what { strong { (step.what) } } td { (step.detail) } }
                    }
                }
            }
        }
    }
}

/// The declared drills: last run, its result and RTO, next due, report.
fn drills(view: &WorkloadView) -> Markup {
    html! {
        table.drills id=(format!("drills-{}", view.id)) {
            thead { tr {
                th { "Drill" } th { "Kind" } th { "Target" } th { "Last run" } th { "Result" } th.num { "RTO" } th { "Next due" } th { "Report" }
            } }
            tbody {
                @for drill in &view.drills {
                    tr data-drill=(drill.id) {
                        td { code { (drill.id) } }
                        td { (drill.kind.name()) }
                        td { code { (drill.target_region) } }
                        @match &drill.last_run {
                            Some(run) => {
                                td { (instant(run.started_at)) }
                                td { span class=(format!("state-{}", run.state.verdict().to_ascii_lowercase())) { (run.state.verdict()) } }
                                td.num { @match run.rto_seconds { Some(rto) => (duration_text(rto)), None => "—" } }
                            }
                            None => { td { "never" } td { "—" } td.num { "—" } }
                        }
                        td {
                            @match drill.next_due { Some(at) => (instant(at)), None => "—" }
                            @if drill.overdue { " " span.state-failed { "overdue" } }
                        }
                        td {
                            @if let Some(run) = &drill.last_run {
                                a href=(format!("runs/{}/report", run.id)) { "report" }
                            }
                        }
                    }
                }
            }
        }
    }
}
