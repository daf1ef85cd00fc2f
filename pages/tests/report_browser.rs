//! The report as a person sees it: rendered by headless Chromium (Debian's
//! `chromium`), its DOM checked for the verdict, the four charts and the
//! targets table, and a screenshot taken. Chromium missing is a failure
//! that says how to install it, never a skip.

use std::path::Path;

use lifeboat_tests::browser;

use lifeboat_pages::report::render;
use lifeboat_shared::records::drill_run::*;
use lifeboat_shared::topology::DrillKind;

#[path = "fixtures/mod.rs"]
mod fixtures;

/// Runs Chromium headless on `page` with `args`.
fn headless(page: &Path, args: &[&str]) -> String {
    browser::headless(&format!("file://{}", page.display()), args)
}

#[test]
fn chromium_renders_each_report_with_its_verdict_charts_and_targets() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let runs = [
        (fixtures::passed_region_outage(), "PASSED", 4),
        (fixtures::failed_restore(), "FAILED", 2),
        (fixtures::aborted_region_outage(), "ABORTED", 1),
    ];
    for (run, verdict, charts) in &runs {
        let page = dir.path().join(format!("{verdict}.html"));
        std::fs::write(&page, render(run, None)).expect("written");
        let dom = headless(&page, &["--dump-dom"]);
        assert!(
            dom.contains(&format!(r#"id="verdict">{verdict}<"#)),
            "no {verdict} in {dom}"
        );
        assert_eq!(dom.matches("<svg").count(), *charts, "charts of {}", run.id);
    }

    let page = dir.path().join("PASSED.html");
    let dom = headless(&page, &["--dump-dom"]);
    for chart in [
        "chart-timeline",
        "chart-traffic",
        "chart-routing",
        "chart-exposure",
    ] {
        assert!(
            dom.contains(&format!(r#"<svg class="chart" id="{chart}""#)),
            "{chart} not rendered"
        );
    }
    assert!(dom.contains(r#"<table id="targets">"#) && dom.contains("✓ held"));

    let png = dir.path().join("report.png");
    headless(
        &page,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,2000",
        ],
    );
    let bytes = std::fs::read(&png).expect("a screenshot");
    assert!(
        bytes.len() > 10_000,
        "a screenshot of {} bytes",
        bytes.len()
    );
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
}
