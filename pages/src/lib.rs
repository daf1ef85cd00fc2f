//! What Lifeboat shows in a browser, shared by the drill report and the
//! console: one style ([`STYLE`]), charts over time drawn as inline SVG
//! ([`chart`]) and times and durations as people read them ([`text`]).
//! Pages are self-contained: no script from elsewhere, no font, no CDN, so
//! they open offline and during an outage.

pub mod chart;
pub mod report;
pub mod text;

use maud::{Markup, PreEscaped, html};

/// A page's `<head>`: UTF-8, a viewport for phones, `title`, and [`STYLE`]
/// followed by the page's own `style`.
pub fn head(title: &str, style: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) }
            style { (PreEscaped(STYLE)) (PreEscaped(style)) }
        }
    }
}

/// The style of every page: the system's own fonts, calm colours, one
/// alarm red, and print rules that keep charts and tables whole.
pub const STYLE: &str = r#"
:root { --ink: #0f172a; --muted: #475569; --line: #e2e8f0; --card: #ffffff;
  --page: #f1f5f9; --pass: #15803d; --fail: #b91c1c; --abort: #b45309; --run: #1d4ed8; }
* { box-sizing: border-box; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0; background: var(--page); color: var(--ink);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 20px 40px; }
code, .mono, td.time { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 13px; }
header.run { display: grid; grid-template-columns: 1fr auto; gap: 8px 24px; align-items: start;
  background: var(--card); border: 1px solid var(--line); border-top: 6px solid var(--verdict);
  border-radius: 10px; padding: 20px 24px; }
header.run h1 { margin: 0; font-size: 22px; font-weight: 650; word-break: break-all; }
header.run .eyebrow { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .08em; }
.verdict { grid-row: span 2; justify-self: end; text-align: center; color: #fff; background: var(--verdict);
  border-radius: 10px; padding: 10px 22px; font-size: 34px; font-weight: 800; letter-spacing: .06em; }
.passed { --verdict: var(--pass); } .failed { --verdict: var(--fail); }
.aborted { --verdict: var(--abort); } .running { --verdict: var(--run); }
.reasons { grid-column: 1 / -1; margin: 4px 0 0; padding: 10px 14px 10px 30px; border-radius: 8px;
  background: color-mix(in srgb, var(--verdict) 9%, white); color: var(--ink); font-size: 15px; }
.reasons li + li { margin-top: 2px; }
dl.facts { grid-column: 1 / -1; display: grid; grid-template-columns: repeat(4, minmax(0, 1fr));
  gap: 10px 20px; margin: 8px 0 0; }
dl.facts dt { color: var(--muted); font-size: 12px; }
dl.facts dd { margin: 0; font-weight: 600; word-break: break-word; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 16px 20px; margin-top: 16px; break-inside: avoid; }
section h2 { margin: 0 0 10px; font-size: 16px; font-weight: 650; }
table { width: 100%; border-collapse: collapse; }
th { text-align: left; color: var(--muted); font-weight: 600; font-size: 12px; border-bottom: 1px solid var(--line); padding: 6px 8px; }
td { border-bottom: 1px solid var(--line); padding: 6px 8px; vertical-align: top; word-break: break-word; }
tr:last-child td { border-bottom: none; }
td.time, td.what { white-space: nowrap; word-break: normal; }
td.held, td.ok { color: var(--pass); font-weight: 700; white-space: nowrap; }
td.missed, td.bad { color: var(--fail); font-weight: 700; white-space: nowrap; }
tr.missed td { background: #fef2f2; }
.metrics { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 10px; }
.metric { border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; }
.metric .label { color: var(--muted); font-size: 12px; }
.metric .value { font-size: 20px; font-weight: 700; }
.metric .parts { color: var(--muted); font-size: 12px; display: flex; flex-wrap: wrap; column-gap: 4px; }
.metric .part { white-space: nowrap; } .metric .part + .part::before { content: " · "; }
.note, .no-data { color: var(--muted); font-style: italic; margin: 6px 0 0; }
.pending { color: var(--abort); font-weight: 600; }
svg.chart { display: block; width: 100%; height: auto; }
svg.chart rect.answered, svg.chart rect.failed { shape-rendering: crispEdges; }
svg.chart text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; font-size: 12px; fill: #334155; }
svg.chart text.tick, svg.chart text.unit { fill: #64748b; font-size: 11px; }
svg.chart text.inside { fill: #fff; font-size: 11px; font-weight: 600; }
svg.chart text.target { fill: #b91c1c; font-size: 11px; }
svg.chart line.grid { stroke: #e2e8f0; stroke-width: 1; }
svg.chart line.baseline { stroke: #94a3b8; stroke-width: 1; }
svg.chart circle.step { fill: #334155; stroke: #fff; stroke-width: 1.5; }
footer { color: var(--muted); font-size: 12px; margin-top: 18px; text-align: center; }
@media (max-width: 760px) { dl.facts { grid-template-columns: repeat(2, minmax(0, 1fr)); } }
@page { margin: 12mm; }
@media print { body { background: #fff; font-size: 12px; } main { max-width: none; padding: 0; }
  section, header.run { border-color: #cbd5e1; } table, tr, svg { break-inside: avoid; } }
"#;
