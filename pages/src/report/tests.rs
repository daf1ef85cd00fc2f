use lifeboat_shared::records::drill_run::{AbortRequest, ExposurePoint, Series, TargetCheck};
use lifeboat_shared::topology::DrillKind;

use super::*;

#[path = "../../tests/fixtures/mod.rs"]
mod fixtures;

/// The `<svg>` elements of a page, each from its opening to its closing tag.
fn charts(html: &str) -> Vec<&str> {
    html.match_indices("<svg")
        .map(|(start, _)| {
            let end = html[start..].find("</svg>").expect("a closed svg") + start;
            &html[start..end]
        })
        .collect()
}

/// The chart with `id`.
fn chart<'a>(html: &'a str, id: &str) -> &'a str {
    charts(html)
        .into_iter()
        .find(|svg| svg.contains(&format!("id=\"{id}\"")))
        .unwrap_or_else(|| panic!("no chart {id}"))
}

#[test]
fn a_passed_outage_shows_its_verdict_targets_measurements_and_four_charts() {
    let html = render(&fixtures::passed_region_outage(), None);
    assert!(html.contains(r#"<div class="verdict" id="verdict">PASSED</div>"#));
    assert!(html.starts_with("<!DOCTYPE html>"));
    for fact in [
        "region-outage",
        "us-central1",
        "recommendations",
        "scheduler",
        "2026-12-08 10:00:00 UTC",
        "6 min 00 s",
    ] {
        assert!(html.contains(fact), "{fact} is missing");
    }
    assert!(html.contains(r#"<table id="targets">"#));
    assert_eq!(html.matches("✓ held").count(), 3);
    assert!(!html.contains("✗ missed"));
    // The RTO with its four parts, the failed predictions with their ratio.
    let parts = [
        "detection 32 s",
        "decision 4 s",
        "execution 3 s",
        "verification 3 s",
    ];
    let parts: Vec<String> = parts
        .iter()
        .map(|p| format!(r#"<span class="part">{p}</span>"#))
        .collect();
    assert!(html.contains(&format!(r#"<div class="parts">{}</div>"#, parts.concat())));
    assert!(html.contains("78 of 10,800") && html.contains("0.72 %"));
    assert!(html.contains("Failback") && !html.contains("Time to serve"));

    let svgs = charts(&html);
    assert_eq!(svgs.len(), 4, "one svg per chart");
    for svg in &svgs {
        assert!(svg.contains("<title"), "every chart has a title");
        assert!(
            svg.contains(">10:00:00<") || svg.contains(">10:01:00<"),
            "UTC time labels"
        );
        assert!(svg.contains(r#"class="legend""#));
    }
    assert!(!html.contains("No data"));

    let timeline = chart(&html, "chart-timeline");
    for phase in [
        "detection",
        "decision",
        "execution",
        "verification",
        "outage",
        "failback",
    ] {
        assert!(timeline.contains(&format!(">{phase}<")), "phase {phase}");
    }
    assert_eq!(
        timeline.matches(r#"class="step""#).count(),
        9,
        "a marker per step"
    );

    let traffic = chart(&html, "chart-traffic");
    assert!(
        traffic.contains(r#"class="failed""#),
        "the failed predictions are drawn"
    );
    assert_eq!(
        traffic.matches(r#"class="failed""#).count(),
        39,
        "10:00:02 to 10:00:40"
    );
    assert!(
        traffic.contains("answered via us-central1") && traffic.contains("answered via us-east1")
    );

    // Routing steps from 100/0 to 0/100 and back: one path per region.
    let routing = chart(&html, "chart-routing");
    assert_eq!(routing.matches("<path").count(), 2);
    assert!(
        routing.contains("10:00:41 us-east1: 100") && routing.contains("10:05:52 us-central1: 100")
    );

    let exposure = chart(&html, "chart-exposure");
    assert!(
        exposure.contains(r#"stroke-dasharray="6 4""#),
        "the target is dashed"
    );
    assert!(exposure.contains("target 5 min 00 s"));
    assert_eq!(
        exposure.matches("<polyline").count(),
        2,
        "one line per asset"
    );
}

#[test]
fn traffic_bars_are_as_wide_as_their_buckets() {
    let mut run = fixtures::passed_region_outage();
    let start = run.started_at;
    run.series = Series::default();
    run.series.add_traffic(start, "us-east1", 60, 0);
    run.series.traffic[0].seconds = 60;
    run.finished_at = Some(start + chrono::TimeDelta::seconds(120));
    let html = render(&run, None);
    let traffic = chart(&html, "chart-traffic");
    // The plot is 808 px wide for 120 s: a 60 s bucket spans 404 px, less
    // a 1 px gap, at 1 prediction per second.
    assert!(traffic.contains(r#"width="403.0""#), "{traffic}");
    assert!(traffic.contains("1 ok/s"));
}

#[test]
fn a_failed_restore_says_which_targets_missed_and_what_it_found() {
    let html = render(&fixtures::failed_restore(), None);
    assert!(html.contains(">FAILED</div>"));
    assert!(
        html.contains(
            "replica objects sampled: 2 of 50 objects missing in gs://recs-data-us-east1"
        )
    );
    assert_eq!(html.matches("✗ missed").count(), 2);
    assert!(html.contains(r#"<table id="findings">"#));
    assert!(html.contains("features/part-0042.parquet"));
    assert!(html.contains("3 more findings did not fit"));
    assert!(html.contains("Checkpoint read") && html.contains("2 min 12 s"));
    assert!(html.contains("manual"));
    // No traffic and no routing in a restore: said, not drawn.
    assert_eq!(charts(&html).len(), 2);
    assert!(html.contains("No data: the gateway counted no predictions"));
    assert!(html.contains("No data: no routing table was seen"));
    assert!(html.contains("The run changed nothing that needed undoing."));
}

#[test]
fn an_aborted_run_with_empty_series_says_so_instead_of_drawing_frames() {
    let html = render(&fixtures::aborted_region_outage(), None);
    assert!(html.contains(">ABORTED</div>"));
    assert!(html.contains("Abort asked for by <strong>guardrail</strong> at 10:00:20"));
    assert_eq!(
        charts(&html).len(),
        1,
        "only the timeline has something to draw"
    );
    assert_eq!(html.matches(r#"<p class="no-data">"#).count(), 3);
    // The fault was removed; routing was never changed, so never restored.
    assert!(html.contains("Fault injected at 10:00:02"));
    assert!(html.contains("not undone yet"));

    let mut running = fixtures::aborted_region_outage();
    running.state = RunState::Running;
    running.finished_at = None;
    running.steps.clear();
    running.reasons.clear();
    running.abort = None;
    let html = render(&running, None);
    assert!(html.contains(">RUNNING</div>") && html.contains("running (deadline 10:30:00 UTC)"));
    assert!(charts(&html).is_empty());
    assert_eq!(html.matches(r#"<p class="no-data">"#).count(), 4);
}

#[test]
fn every_text_from_the_record_is_escaped() {
    let mut run = fixtures::failed_restore();
    run.id = "<script>alert('id')</script>".to_string();
    run.workload = "a&b".to_string();
    run.step_at(run.started_at, "probe", "<script>alert(1)</script>");
    run.find("\"><img onerror=x>", false, "<b>bold</b>");
    run.reasons.push("<script>reason</script>".to_string());
    run.phase("<em>phase</em>", run.started_at, run.started_at);
    run.series.add_exposure(ExposurePoint {
        at: run.started_at,
        asset: "<script>asset</script>".to_string(),
        region: "us-east1".to_string(),
        seconds: 1,
        target_seconds: 300,
    });
    let html = render(&run, None);
    assert!(!html.contains("<script"), "no script element");
    assert!(!html.contains("<img") && !html.contains("<b>") && !html.contains("<em>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&lt;script&gt;asset&lt;/script&gt;"));
    assert!(html.contains("a&amp;b"));
    assert!(html.contains("&quot;&gt;&lt;img onerror=x&gt;"));
}

#[test]
fn a_report_references_nothing_outside_itself() {
    for run in [
        fixtures::passed_region_outage(),
        fixtures::failed_restore(),
        fixtures::aborted_region_outage(),
    ] {
        let html = render(&run, None);
        for external in [
            "src=", "href=", "url(", "@import", "<link", "<script", "<img", "http://", "https://",
        ] {
            assert!(
                !html.contains(external),
                "{external} in the report of {}",
                run.id
            );
        }
    }
}

#[test]
fn a_running_run_draws_up_to_its_last_point() {
    let mut run = fixtures::passed_region_outage();
    run.finished_at = None;
    run.state = RunState::Running;
    let axis = chart::TimeAxis::of(&run);
    // The last traffic bucket starts at 10:05:59 and lasts a second: the
    // axis ends at 10:06:00, where the finished run's ends.
    assert_eq!(axis, chart::TimeAxis::of(&fixtures::passed_region_outage()));
    let labels: Vec<String> = axis.ticks().into_iter().map(clock).collect();
    assert_eq!(
        labels,
        [
            "10:00:00", "10:01:00", "10:02:00", "10:03:00", "10:04:00", "10:05:00", "10:06:00"
        ]
    );
}

#[test]
fn durations_read_as_a_person_writes_them() {
    assert_eq!(duration_text(0.25), "250 ms");
    assert_eq!(duration_text(3.42), "3.4 s");
    assert_eq!(duration_text(4.0), "4 s");
    assert_eq!(duration_text(42.4), "42 s");
    assert_eq!(duration_text(252.0), "4 min 12 s");
    assert_eq!(duration_text(3_720.0), "1 h 02 min");
    assert_eq!(thousands(7), "7");
    assert_eq!(thousands(10_800), "10,800");
    assert_eq!(thousands(1_204_332), "1,204,332");
}

#[test]
fn the_workloads_plan_is_a_section_priced_with_the_runs_rto() {
    let example = include_str!("../../../examples/production-three-region.yaml");
    let topology = Topology::parse(example, "example.yaml").expect("the example is valid");
    let run = fixtures::passed_region_outage();
    let plan = workload_plan(&topology, &run).expect("recommendations is in the topology");
    // The run measured an RTO of 42 s: it replaces the model for the
    // pattern the workload runs, active-passive, which then meets 5 min.
    let warm = plan
        .patterns
        .iter()
        .find(|p| p.pattern == lifeboat_plan::Pattern::ActivePassive)
        .expect("active-passive");
    assert_eq!(warm.rto.total.seconds, Some(42.0));
    assert!(
        warm.rto.total.source.contains(&run.id),
        "{}",
        warm.rto.total.source
    );
    assert_eq!(
        plan.recommended,
        Some(lifeboat_plan::Pattern::ActivePassive)
    );
    let html = render(&run, Some(&plan));
    let section = &html[html.find(r#"<section id="plan">"#).expect("a plan section")..];
    assert!(section.contains("active-passive (now)"), "{section}");
    assert!(section.contains("recommended"), "{section}");
    assert!(section.contains("42 s"), "{section}");
    assert!(!render(&run, None).contains(r#"id="plan""#));
}
