//! The report's four charts as inline SVG, written with maud so that every
//! label taken from the record is escaped. All four share one time axis
//! ([`TimeAxis`]) so that a moment sits at the same place in each; every
//! chart has its axes, UTC time labels, a legend and a `<title>` that
//! screen readers announce.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use chrono::{DateTime, TimeDelta, Utc};
use lifeboat_shared::records::drill_run::{
    DrillRun, ExposurePoint, Phase, RoutingPoint, Step, TrafficPoint,
};
use maud::{Markup, Render, html};

use crate::text::{clock, duration_text};

/// The width every chart is drawn at (it scales to the page).
const WIDTH: f64 = 960.0;
/// Room left of the plot for row names and value ticks.
const LEFT: f64 = 132.0;
/// Room right of the plot.
const RIGHT: f64 = 20.0;
/// Room under the plot for the time labels.
const BOTTOM: f64 = 28.0;
/// The height of one legend line.
const LEGEND_LINE: f64 = 18.0;
/// The height of one timeline row.
const ROW: f64 = 24.0;

/// The colour of failed predictions: an alarm red, used for nothing else.
pub const ALARM: &str = "#dc2626";
/// Colours given to regions, in name order, in every chart.
const REGION_COLOURS: [&str; 6] = [
    "#2563eb", "#0d9488", "#9333ea", "#d97706", "#0891b2", "#4d7c0f",
];
/// Colours given to exposure series, in order.
const SERIES_COLOURS: [&str; 6] = [
    "#2563eb", "#9333ea", "#0d9488", "#d97706", "#be185d", "#4d7c0f",
];

/// A coordinate, written with one decimal.
#[derive(Clone, Copy)]
struct Px(f64);

impl Render for Px {
    fn render_to(&self, buffer: &mut String) {
        // Writing to a String cannot fail.
        let _ = write!(buffer, "{:.1}", self.0);
    }
}

/// The span of time every chart of a report draws: the run's start to its
/// finish, or to the last thing recorded while it runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimeAxis {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl TimeAxis {
    /// The axis from `start` to `end` (at least a second long).
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        Self {
            start,
            end: end.max(start + TimeDelta::seconds(1)),
        }
    }

    /// The axis of `run`.
    pub fn of(run: &DrillRun) -> Self {
        let start = run.started_at;
        Self::new(start, run.finished_at.unwrap_or_else(|| last_recorded(run)))
    }

    /// The x of `at`, clamped to the plot.
    fn x(&self, at: DateTime<Utc>) -> f64 {
        let span = (self.end - self.start).num_milliseconds() as f64;
        let offset = (at - self.start).num_milliseconds() as f64;
        LEFT + (offset / span).clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT)
    }

    /// Round times to label, about six of them.
    pub fn ticks(&self) -> Vec<DateTime<Utc>> {
        const STEPS: [i64; 16] = [
            1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1_800, 3_600, 7_200, 21_600, 86_400,
        ];
        let span = (self.end - self.start).num_seconds().max(1);
        let step = STEPS
            .into_iter()
            .find(|step| span / step <= 7)
            .unwrap_or(86_400);
        let first = (self.start.timestamp() + step - 1).div_euclid(step) * step;
        (0..)
            .map(|n| first + n * step)
            .take_while(|&t| t <= self.end.timestamp())
            .filter_map(|t| DateTime::from_timestamp(t, 0))
            .collect()
    }

    /// The time axis under a plot whose area runs from `top` to `bottom`:
    /// grid lines, the axis line and the labels.
    fn draw(&self, top: f64, bottom: f64) -> Markup {
        html! {
            g.axis {
                @for tick in self.ticks() {
                    @let x = self.x(tick);
                    // Labels at the plot's edges stay inside it.
                    @let anchor = if x < LEFT + 30.0 { "start" } else if x > WIDTH - RIGHT - 30.0 { "end" } else { "middle" };
                    line.grid x1=(Px(x)) x2=(Px(x)) y1=(Px(top)) y2=(Px(bottom)) {}
                    text.tick x=(Px(x)) y=(Px(bottom + 17.0)) text-anchor=(anchor) { (clock(tick)) }
                }
                line.baseline x1=(Px(LEFT)) x2=(Px(WIDTH - RIGHT)) y1=(Px(bottom)) y2=(Px(bottom)) {}
                text.unit x=(Px(LEFT - 12.0)) y=(Px(bottom + 17.0)) text-anchor="end" { "UTC" }
            }
        }
    }
}

/// The latest moment anything in the record speaks of.
fn last_recorded(run: &DrillRun) -> DateTime<Utc> {
    let series = &run.series;
    let steps = run.steps.iter().map(|s| s.at);
    let phases = run.phases.iter().map(|p| p.to);
    let traffic = series
        .traffic
        .iter()
        .map(|p| p.at + TimeDelta::seconds(i64::from(p.seconds)));
    let routing = series.routing.iter().map(|p| p.at);
    let exposure = series.exposure.iter().map(|p| p.at);
    steps
        .chain(phases)
        .chain(traffic)
        .chain(routing)
        .chain(exposure)
        .max()
        .unwrap_or(run.started_at)
}

/// How a legend entry is drawn.
enum Swatch {
    /// A filled box (bars).
    Fill(&'static str),
    /// A solid line.
    Line(&'static str),
    /// A dashed line (targets).
    Dashed(&'static str),
    /// A dot (step markers).
    Marker(&'static str),
}

/// A legend entry.
struct Key {
    swatch: Swatch,
    label: String,
}

/// Where each legend entry goes: (x, y) per entry, and the legend's height.
fn legend_layout(keys: &[Key]) -> (Vec<(f64, f64)>, f64) {
    let mut places = Vec::with_capacity(keys.len());
    let (mut x, mut y) = (LEFT, 14.0);
    for key in keys {
        // About 6.6 px per character at 12 px in a sans-serif face.
        let width = 26.0 + 6.6 * key.label.chars().count() as f64 + 18.0;
        if x > LEFT && x + width > WIDTH - RIGHT {
            x = LEFT;
            y += LEGEND_LINE;
        }
        places.push((x, y));
        x += width;
    }
    (places, y + 12.0)
}

/// The legend: one entry per series, wrapped across lines.
fn draw_legend(keys: &[Key], places: &[(f64, f64)]) -> Markup {
    html! {
        g.legend {
            @for (key, &(x, y)) in keys.iter().zip(places) {
                @match key.swatch {
                    Swatch::Fill(colour) => rect x=(Px(x)) y=(Px(y - 9.0)) width="18" height="10" rx="2" fill=(colour) {},
                    Swatch::Line(colour) => line x1=(Px(x)) x2=(Px(x + 18.0)) y1=(Px(y - 4.0)) y2=(Px(y - 4.0)) stroke=(colour) stroke-width="2.5" {},
                    Swatch::Dashed(colour) => line x1=(Px(x)) x2=(Px(x + 18.0)) y1=(Px(y - 4.0)) y2=(Px(y - 4.0)) stroke=(colour) stroke-width="2" stroke-dasharray="5 3" {},
                    Swatch::Marker(colour) => circle cx=(Px(x + 9.0)) cy=(Px(y - 4.0)) r="4" fill=(colour) {},
                }
                text x=(Px(x + 24.0)) y=(Px(y)) { (key.label) }
            }
        }
    }
}

/// A value axis from 0 to a round maximum, mapped onto `top..bottom`.
struct ValueAxis {
    max: f64,
    step: f64,
    top: f64,
    bottom: f64,
}

impl ValueAxis {
    /// An axis that holds `largest`, with about four round steps.
    fn new(largest: f64, top: f64, bottom: f64) -> Self {
        let largest = if largest > 0.0 { largest } else { 1.0 };
        let raw = largest / 4.0;
        let magnitude = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .into_iter()
            .map(|m| m * magnitude)
            .find(|&s| s >= raw)
            .unwrap_or(10.0 * magnitude);
        Self {
            max: (largest / step).ceil() * step,
            step,
            top,
            bottom,
        }
    }

    /// The y of `value`.
    fn y(&self, value: f64) -> f64 {
        self.bottom - (value.clamp(0.0, self.max) / self.max) * (self.bottom - self.top)
    }

    /// Grid lines and their labels.
    fn draw(&self) -> Markup {
        let count = (self.max / self.step).round() as u32;
        html! {
            g.axis {
                @for n in 1..=count {
                    @let value = f64::from(n) * self.step;
                    line.grid x1=(Px(LEFT)) x2=(Px(WIDTH - RIGHT)) y1=(Px(self.y(value))) y2=(Px(self.y(value))) {}
                    text.tick x=(Px(LEFT - 8.0)) y=(Px(self.y(value) + 4.0)) text-anchor="end" { (number(value)) }
                }
                text.tick x=(Px(LEFT - 8.0)) y=(Px(self.bottom + 4.0)) text-anchor="end" { "0" }
            }
        }
    }
}

/// A value as a tick label: whole numbers plain, others with what
/// decimals they need.
fn number(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.2}");
        text.trim_end_matches('0').to_string()
    }
}

/// One chart: its `<svg>` with a title, the legend on top, the plot and
/// the time axis under it. `plot` draws into `top..bottom`.
fn chart(
    id: &str,
    title: &str,
    keys: &[Key],
    plot_height: f64,
    axis: &TimeAxis,
    plot: impl FnOnce(f64, f64) -> Markup,
) -> Markup {
    let (places, legend_height) = legend_layout(keys);
    let top = legend_height + 8.0;
    let bottom = top + plot_height;
    let height = bottom + BOTTOM;
    let title_id = format!("{id}-title");
    html! {
        svg.chart id=(id) viewBox=(format!("0 0 {WIDTH} {height:.0}")) role="img" aria-labelledby=(title_id) {
            title id=(title_id) { (title) }
            (draw_legend(keys, &places))
            (axis.draw(top, bottom))
            (plot(top, bottom))
        }
    }
}

/// What a chart whose series is empty shows instead.
fn no_data(what: &str) -> Markup {
    html! { p.no-data { "No data: " (what) } }
}

/// The colour of each region, in name order.
pub fn region_colours(run: &DrillRun) -> BTreeMap<&str, &'static str> {
    let mut regions: BTreeSet<&str> = run
        .series
        .traffic
        .iter()
        .map(|p| p.region.as_str())
        .collect();
    for point in &run.series.routing {
        regions.extend(point.weights.keys().map(String::as_str));
    }
    colours_of(regions)
}

/// The colour of each of `regions`, in name order: the same region gets
/// the same colour on every chart of a page that draws the same regions.
pub fn colours_of<'a>(
    regions: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<&'a str, &'static str> {
    let regions: BTreeSet<&str> = regions.into_iter().collect();
    regions
        .into_iter()
        .zip(REGION_COLOURS.into_iter().cycle())
        .collect()
}

/// The colour of a phase: each part of the RTO its own hue, the outage
/// red, the rest calm.
fn phase_colour(name: &str, index: usize) -> &'static str {
    const OTHERS: [&str; 4] = ["#64748b", "#0ea5e9", "#a855f7", "#84cc16"];
    match name {
        "detection" => "#f59e0b",
        "decision" => "#8b5cf6",
        "execution" => "#2563eb",
        "verification" => "#10b981",
        "outage" => "#f87171",
        "failback" => "#14b8a6",
        _ => OTHERS[index % OTHERS.len()],
    }
}

/// (a) The run's timeline: one row per phase name, a bar per phase, and a
/// row of step markers.
pub fn timeline(axis: &TimeAxis, phases: &[Phase], steps: &[Step]) -> Markup {
    if phases.is_empty() && steps.is_empty() {
        return no_data("the run recorded no phase and no step yet.");
    }
    let mut rows: Vec<&str> = Vec::new();
    for phase in phases {
        if !rows.contains(&phase.name.as_str()) {
            rows.push(&phase.name);
        }
    }
    let colours: Vec<&str> = rows
        .iter()
        .enumerate()
        .map(|(n, name)| phase_colour(name, n))
        .collect();
    let mut keys: Vec<Key> = rows
        .iter()
        .zip(&colours)
        .map(|(name, colour)| Key {
            swatch: Swatch::Fill(colour),
            label: (*name).to_string(),
        })
        .collect();
    keys.push(Key {
        swatch: Swatch::Marker("#334155"),
        label: "step".to_string(),
    });
    let row_of = |name: &str| rows.iter().position(|r| *r == name).unwrap_or(0);
    let height = ROW * (rows.len() + 1) as f64 + 4.0;
    chart(
        "chart-timeline",
        "Timeline of the run: its phases and steps",
        &keys,
        height,
        axis,
        |top, bottom| {
            html! {
                @for (n, name) in rows.iter().enumerate() {
                    text.row x=(Px(LEFT - 8.0)) y=(Px(top + ROW * n as f64 + ROW / 2.0 + 4.0)) text-anchor="end" { (name) }
                }
                @for phase in phases {
                    @let row = row_of(&phase.name);
                    @let (x0, x1) = (axis.x(phase.from), axis.x(phase.to));
                    @let width = (x1 - x0).max(2.0);
                    @let y = top + ROW * row as f64 + 4.0;
                    @let length = duration_text((phase.to - phase.from).num_milliseconds() as f64 / 1000.0);
                    g {
                        title { (phase.name) " " (clock(phase.from)) " – " (clock(phase.to)) " (" (length) ")" }
                        rect x=(Px(x0)) y=(Px(y)) width=(Px(width)) height=(Px(ROW - 8.0)) rx="3" fill=(colours[row]) {}
                        @if width > 8.0 * length.chars().count() as f64 {
                            text.inside x=(Px(x0 + width / 2.0)) y=(Px(y + ROW / 2.0)) text-anchor="middle" { (length) }
                        }
                    }
                }
                text.row x=(Px(LEFT - 8.0)) y=(Px(bottom - ROW / 2.0 + 2.0)) text-anchor="end" { "steps" }
                @for step in steps {
                    g {
                        title { (clock(step.at)) " " (step.what) ": " (step.detail) }
                        circle.step cx=(Px(axis.x(step.at))) cy=(Px(bottom - ROW / 2.0 - 2.0)) r="4.5" {}
                    }
                }
            }
        },
    )
}

/// (b) Predictions per second by region and outcome: answered predictions
/// stacked per region, failed ones on top in the alarm colour.
pub fn traffic(
    axis: &TimeAxis,
    points: &[TrafficPoint],
    colours: &BTreeMap<&str, &'static str>,
) -> Markup {
    if points.is_empty() {
        return no_data("the gateway counted no predictions during this run.");
    }
    let mut buckets: BTreeMap<DateTime<Utc>, Vec<&TrafficPoint>> = BTreeMap::new();
    for point in points {
        buckets.entry(point.at).or_default().push(point);
    }
    let largest = buckets
        .values()
        .map(|bucket| {
            bucket
                .iter()
                .map(|p| per_second(p.ok + p.failed, p.seconds))
                .sum::<f64>()
        })
        .fold(0.0, f64::max);
    let regions: BTreeSet<&str> = points.iter().map(|p| p.region.as_str()).collect();
    let mut keys: Vec<Key> = regions
        .iter()
        .map(|region| Key {
            swatch: Swatch::Fill(colours.get(region).copied().unwrap_or(REGION_COLOURS[0])),
            label: format!("answered via {region}"),
        })
        .collect();
    keys.push(Key {
        swatch: Swatch::Fill(ALARM),
        label: "failed".to_string(),
    });
    chart(
        "chart-traffic",
        "Predictions per second by region and outcome",
        &keys,
        170.0,
        axis,
        |top, bottom| {
            let values = ValueAxis::new(largest, top, bottom);
            html! {
                (values.draw())
                @for (at, bucket) in &buckets {
                    @let seconds = bucket.iter().map(|p| p.seconds).max().unwrap_or(1).max(1);
                    @let x0 = axis.x(*at);
                    @let x1 = axis.x(*at + TimeDelta::seconds(i64::from(seconds)));
                    // Wide bars get a gap; narrow ones touch, so that a run of
                    // one-second buckets reads as an area, not as stripes.
                    @let width = if x1 - x0 > 4.0 { x1 - x0 - 1.0 } else { (x1 - x0).max(1.0) + 0.5 };
                    @let failed: f64 = bucket.iter().map(|p| per_second(p.failed, p.seconds)).sum();
                    g {
                        title {
                            (clock(*at)) " (" (seconds) " s):"
                            @for p in bucket { " " (p.region) " " (number_text(per_second(p.ok, p.seconds))) " ok/s," }
                            " " (number_text(failed)) " failed/s"
                        }
                        @for (from, to, colour) in stack(bucket, failed, colours) {
                            rect.(if colour == ALARM { "failed" } else { "answered" }) x=(Px(x0)) y=(Px(values.y(to))) width=(Px(width)) height=(Px(values.y(from) - values.y(to))) fill=(colour) {}
                        }
                    }
                }
            }
        },
    )
}

/// The segments of one bucket's bar, bottom up: (from, to, colour) in
/// predictions per second, each region's answered ones, then the failed.
fn stack(
    bucket: &[&TrafficPoint],
    failed: f64,
    colours: &BTreeMap<&str, &'static str>,
) -> Vec<(f64, f64, &'static str)> {
    let mut level = 0.0;
    let mut segments = Vec::with_capacity(bucket.len() + 1);
    let answered = bucket.iter().map(|p| {
        let colour = colours.get(p.region.as_str()).copied();
        (
            per_second(p.ok, p.seconds),
            colour.unwrap_or(REGION_COLOURS[0]),
        )
    });
    for (rate, colour) in answered.chain([(failed, ALARM)]) {
        if rate > 0.0 {
            segments.push((level, level + rate, colour));
            level += rate;
        }
    }
    segments
}

/// `count` predictions in a bucket of `seconds`, per second.
fn per_second(count: u64, seconds: u32) -> f64 {
    count as f64 / f64::from(seconds.max(1))
}

/// A rate for a tooltip: one decimal, without a trailing `.0`.
fn number_text(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").unwrap_or(&text).to_string()
}

/// (c) Routing weights over time, one step line per region; the chart's
/// element id is `id`, and `empty` says why there is nothing to draw.
pub fn routing(
    id: &str,
    empty: &str,
    axis: &TimeAxis,
    points: &[RoutingPoint],
    colours: &BTreeMap<&str, &'static str>,
) -> Markup {
    if points.is_empty() {
        return no_data(empty);
    }
    let regions: BTreeSet<&str> = points
        .iter()
        .flat_map(|p| p.weights.keys().map(String::as_str))
        .collect();
    let largest = points
        .iter()
        .flat_map(|p| p.weights.values())
        .copied()
        .max()
        .unwrap_or(0)
        .max(100);
    let keys: Vec<Key> = regions
        .iter()
        .map(|region| Key {
            swatch: Swatch::Line(colours.get(region).copied().unwrap_or(REGION_COLOURS[0])),
            label: (*region).to_string(),
        })
        .collect();
    let count = regions.len() as f64;
    chart(
        id,
        "Routing weights over time per region",
        &keys,
        130.0,
        axis,
        |top, bottom| {
            let values = ValueAxis::new(f64::from(largest), top, bottom);
            html! {
                (values.draw())
                @for (n, region) in regions.iter().enumerate() {
                    // Regions at the same weight are drawn a little apart so
                    // that each line stays visible.
                    @let nudge = (n as f64 - (count - 1.0) / 2.0) * 2.5;
                    @let weight = |p: &RoutingPoint| f64::from(p.weights.get(*region).copied().unwrap_or(0));
                    @let colour = colours.get(region).copied().unwrap_or(REGION_COLOURS[0]);
                    path.step fill="none" stroke=(colour) stroke-width="2.5" d=(step_path(axis, points, |p| values.y(weight(p)) + nudge)) {}
                    @for p in points {
                        circle cx=(Px(axis.x(p.at))) cy=(Px(values.y(weight(p)) + nudge)) r="3" fill=(colour) {
                            title { (clock(p.at)) " " (region) ": " (weight(p)) }
                        }
                    }
                }
            }
        },
    )
}

/// The path of a step line through `points`, held until the axis' end.
fn step_path(axis: &TimeAxis, points: &[RoutingPoint], y: impl Fn(&RoutingPoint) -> f64) -> String {
    let mut d = String::new();
    for (n, point) in points.iter().enumerate() {
        let (x, y) = (axis.x(point.at), y(point));
        // Writing to a String cannot fail.
        let _ = if n == 0 {
            write!(d, "M{x:.1} {y:.1}")
        } else {
            write!(d, " H{x:.1} V{y:.1}")
        };
    }
    let _ = write!(d, " H{:.1}", axis.x(axis.end));
    d
}

/// (d) RPO exposure per asset and region against its target (dashed);
/// the chart's element id is `id`, and `empty` says why there is nothing
/// to draw.
pub fn exposure(id: &str, empty: &str, axis: &TimeAxis, points: &[ExposurePoint]) -> Markup {
    if points.is_empty() {
        return no_data(empty);
    }
    let mut series: Vec<((&str, &str), Vec<&ExposurePoint>)> = Vec::new();
    for point in points {
        let key = (point.asset.as_str(), point.region.as_str());
        match series.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(point),
            None => series.push((key, vec![point])),
        }
    }
    for (_, list) in &mut series {
        list.sort_by_key(|p| p.at);
    }
    let targets: BTreeSet<u64> = points.iter().map(|p| p.target_seconds).collect();
    let largest = points
        .iter()
        .map(|p| p.seconds.max(0) as f64)
        .chain(targets.iter().map(|&t| t as f64))
        .fold(0.0, f64::max);
    let mut keys: Vec<Key> = series
        .iter()
        .zip(SERIES_COLOURS.into_iter().cycle())
        .map(|(((asset, region), _), colour)| Key {
            swatch: Swatch::Line(colour),
            label: format!("{asset} ({region})"),
        })
        .collect();
    keys.push(Key {
        swatch: Swatch::Dashed(ALARM),
        label: "RPO target".to_string(),
    });
    chart(
        id,
        "RPO exposure per asset against its target",
        &keys,
        160.0,
        axis,
        |top, bottom| {
            let values = ValueAxis::new(largest * 1.1, top, bottom);
            html! {
                (values.draw())
                @for target in &targets {
                    @let y = values.y(*target as f64);
                    line.target x1=(Px(LEFT)) x2=(Px(WIDTH - RIGHT)) y1=(Px(y)) y2=(Px(y)) stroke=(ALARM) stroke-width="1.5" stroke-dasharray="6 4" {}
                    text.target x=(Px(WIDTH - RIGHT - 4.0)) y=(Px(y - 5.0)) text-anchor="end" { "target " (duration_text(*target as f64)) }
                }
                @for (((asset, region), list), colour) in series.iter().zip(SERIES_COLOURS.into_iter().cycle()) {
                    @let line: Vec<String> = list.iter().map(|p| format!("{:.1},{:.1}", axis.x(p.at), values.y(p.seconds.max(0) as f64))).collect();
                    polyline fill="none" stroke=(colour) stroke-width="2.5" stroke-linejoin="round" points=(line.join(" ")) {}
                    @if list.len() <= 120 {
                        @for p in list {
                            circle cx=(Px(axis.x(p.at))) cy=(Px(values.y(p.seconds.max(0) as f64))) r="2.5" fill=(colour) {
                                title { (clock(p.at)) " " (asset) " (" (region) "): " (duration_text(p.seconds as f64)) " of " (duration_text(p.target_seconds as f64)) }
                            }
                        }
                    }
                }
            }
        },
    )
}
