//! The report as a person sees it: rendered by headless Chromium (Debian's
//! `chromium`), its DOM checked for the verdict, the four charts and the
//! targets table, and a screenshot taken. Chromium missing is a failure
//! that says how to install it, never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use lifeboat_pages::report::render;
use lifeboat_shared::records::drill_run::*;
use lifeboat_shared::topology::DrillKind;

#[path = "fixtures/mod.rs"]
mod fixtures;

/// `$CHROMIUM`, else Debian's `/usr/bin/chromium`.
fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.is_file(),
        "headless Chromium is needed at {} (or set $CHROMIUM): install it with `apt-get install -y chromium`",
        path.display()
    );
    path
}

/// Runs Chromium headless on `page` with `args`, in a fresh profile, and
/// returns what it printed.
fn headless(page: &Path, args: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("a profile dir");
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(
        output.status.success(),
        "chromium failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
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
