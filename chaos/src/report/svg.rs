//! Pictures: an SVG timeline per scenario (the page that shows them is `html.rs`).
//!
//! A timeline has time on x and request latency on y (log scale, from 10 µs; faster requests,
//! such as failures refused at once, sit in a strip of their own below the axis, so they read
//! as "below 10 µs" rather than as a value). The fault window is shaded and named above the
//! plot, the phases are labelled, each request is a point coloured by outcome, the p50 and
//! p99 latency over time are lines broken where there were no requests, the longest request
//! is ringed (red when a criterion about it failed), and the pool's health is a band along
//! the bottom. The pools of one scenario are drawn on shared [`Axes`], so they compare.

use std::fmt::Write as _;

use super::model::{Outcome, ScenarioReport, Verdict};
use super::svgkit::{self, RIGHT, WIDTH, escape};

const W: f64 = WIDTH;
const H: f64 = 352.0;
const LEFT: f64 = 72.0;
const TOP: f64 = 52.0;
const PLOT_BOTTOM: f64 = 266.0;
/// The strip of requests faster than the floor.
const BELOW_Y: f64 = 278.0;
const BAND_TOP: f64 = 290.0;
const BAND_H: f64 = 10.0;
/// The latency floor, in ms: 10 µs.
const FLOOR_MS: f64 = 0.01;

fn color(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "#2a9d3a",
        Outcome::Fail => "#d62828",
        Outcome::Info => "#f08c00",
    }
}

fn health_color(status: &str) -> &'static str {
    match status {
        "healthy" => "#2a9d3a",
        "degraded" => "#e9c46a",
        _ => "#d62828",
    }
}

/// The ranges a timeline is drawn on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Axes {
    /// The time axis runs from 0 to this, ms.
    pub duration_ms: f64,
    /// The longest latency to fit, ms.
    pub max_latency_ms: f64,
}

impl Axes {
    /// Axes that fit every one of `scenarios` (the pools of one scenario, side by side).
    pub fn of<'a>(scenarios: impl IntoIterator<Item = &'a ScenarioReport>) -> Axes {
        let mut axes = Axes {
            duration_ms: 1.0,
            max_latency_ms: 10.0,
        };
        for s in scenarios {
            axes.duration_ms = axes.duration_ms.max(s.duration_ms);
            for o in &s.ops {
                axes.duration_ms = axes.duration_ms.max(o.end_ms);
                axes.max_latency_ms = axes.max_latency_ms.max(o.latency_ms());
            }
        }
        axes
    }
}

fn ms_label(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{}s", ms / 1000.0)
    } else if ms < 1.0 {
        format!("{}µs", (ms * 1000.0).round())
    } else {
        format!("{ms}ms")
    }
}

fn duration_label(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

/// The SVG timeline of one scenario, on its own axes.
pub fn timeline(s: &ScenarioReport) -> String {
    timeline_on(s, Axes::of([s]))
}

/// The SVG timeline of one scenario on `axes`.
pub fn timeline_on(s: &ScenarioReport, axes: Axes) -> String {
    let duration = axes.duration_ms.max(1.0);
    let x = |ms: f64| LEFT + (ms / duration).clamp(0.0, 1.0) * (W - LEFT - RIGHT);
    let (lo, hi) = (
        FLOOR_MS.log10(),
        (axes.max_latency_ms * 1.5).log10().max(1.0),
    );
    let y =
        |ms: f64| PLOT_BOTTOM - ((ms.max(FLOOR_MS).log10() - lo) / (hi - lo)) * (PLOT_BOTTOM - TOP);
    let mut out = String::new();
    svgkit::open(&mut out, H, 11);
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="18" font-size="14" font-weight="bold">{} / {}: {}</text>"##,
        escape(&s.pool),
        escape(&s.name),
        s.verdict().mark()
    );
    legend(&mut out);
    if s.ops.is_empty() {
        let _ = writeln!(
            out,
            r##"<text x="{LEFT}" y="{:.1}" fill="#555">no request timeline: this scenario is judged by its criteria alone</text>"##,
            (TOP + PLOT_BOTTOM) / 2.0
        );
        svgkit::close(&mut out);
        return out;
    }
    if let Some(f) = &s.fault {
        let (x0, x1) = (x(f.start_ms), x(f.end_ms));
        let _ = writeln!(
            out,
            r##"<rect x="{x0:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="#d62828" fill-opacity="0.10"/>"##,
            (x1 - x0).max(1.0),
            PLOT_BOTTOM - TOP,
        );
        // Phase names above the plot, the fault's in its window.
        for (from, to, name, fill) in [
            (0.0, f.start_ms, "before".to_string(), "#777"),
            (
                f.start_ms,
                f.end_ms,
                format!("fault: {}", f.label),
                "#9d0208",
            ),
            (f.end_ms, duration, "after the heal".to_string(), "#777"),
        ] {
            if to - from > duration * 0.04 {
                let _ = writeln!(
                    out,
                    r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{fill}">{}</text>"##,
                    (x(from) + x(to)) / 2.0,
                    TOP - 6.0,
                    escape(&name)
                );
            }
        }
    }
    axes_and_titles(&mut out, lo, hi, duration, &x, &y);
    // Requests: successes first, so failures and unknowns are drawn on top. Those faster
    // than the floor go to the strip below the axis.
    for pass in [Outcome::Ok, Outcome::Info, Outcome::Fail] {
        for op in s.ops.iter().filter(|o| o.outcome == pass) {
            let (cx, c) = (x(op.start_ms), color(op.outcome));
            if op.latency_ms() < FLOOR_MS {
                let _ = writeln!(
                    out,
                    r#"<path d="M{:.1} {:.1}h5l-2.5 4z" fill="{c}" fill-opacity="0.75"/>"#,
                    cx - 2.5,
                    BELOW_Y - 2.0
                );
            } else {
                let r = if pass == Outcome::Ok { 1.6 } else { 2.4 };
                let _ = writeln!(
                    out,
                    r#"<circle cx="{cx:.1}" cy="{:.1}" r="{r}" fill="{c}" fill-opacity="0.75"/>"#,
                    y(op.latency_ms())
                );
            }
        }
    }
    quantile_lines(&mut out, s, duration, &x, &y);
    marks(&mut out, s, &x, &y);
    health_band(&mut out, s, duration, &x);
    svgkit::close(&mut out);
    out
}

/// How a legend entry is drawn.
enum Swatch {
    Dot(&'static str),
    Line(&'static str),
    Below,
    Shade,
    Band(&'static str),
}

fn legend(out: &mut String) {
    let entries = [
        (18.0, Swatch::Dot("#2a9d3a"), "ok", 50.0),
        (18.0, Swatch::Dot("#d62828"), "fail", 50.0),
        (18.0, Swatch::Dot("#f08c00"), "unknown (info)", 110.0),
        (18.0, Swatch::Line("#1d4ed8"), "p50", 50.0),
        (18.0, Swatch::Line("#7b2cbf"), "p99", 50.0),
        (18.0, Swatch::Below, "below 10 µs", 90.0),
        (35.0, Swatch::Shade, "fault window", 100.0),
        (
            35.0,
            Swatch::Band(health_color("healthy")),
            "health: healthy",
            120.0,
        ),
        (
            35.0,
            Swatch::Band(health_color("degraded")),
            "health: degraded",
            120.0,
        ),
        (
            35.0,
            Swatch::Band(health_color("unhealthy")),
            "health: unhealthy",
            120.0,
        ),
    ];
    let start = W - RIGHT - 560.0;
    let mut lx = start;
    let mut row = 18.0;
    for (ly, swatch, name, width) in entries {
        if ly != row {
            (row, lx) = (ly, start);
        }
        let top = ly - 8.0;
        let drawn = match swatch {
            Swatch::Dot(c) => format!(
                r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{c}"/>"#,
                lx + 6.0,
                ly - 4.0
            ),
            Swatch::Line(c) => format!(
                r#"<line x1="{lx:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{c}" stroke-width="2"/>"#,
                lx + 12.0,
                ly - 4.0,
                ly - 4.0
            ),
            Swatch::Below => format!(
                r##"<path d="M{:.1} {top:.1}h8l-4 7z" fill="#555"/>"##,
                lx + 2.0
            ),
            Swatch::Shade => format!(
                r##"<rect x="{lx:.1}" y="{top:.1}" width="12" height="10" fill="#d62828" fill-opacity="0.15"/>"##
            ),
            Swatch::Band(c) => format!(
                r#"<rect x="{lx:.1}" y="{:.1}" width="12" height="6" fill="{c}"/>"#,
                top + 2.0
            ),
        };
        let _ = writeln!(
            out,
            r#"{drawn}<text x="{:.1}" y="{ly:.1}">{name}</text>"#,
            lx + 16.0
        );
        lx += width;
    }
}

fn axes_and_titles(
    out: &mut String,
    lo: f64,
    hi: f64,
    duration: f64,
    x: &dyn Fn(f64) -> f64,
    y: &dyn Fn(f64) -> f64,
) {
    // Decades of latency (the floor's own line is the axis), seconds of time.
    let mut decade = 10f64.powf(lo.ceil() + 1.0);
    while decade.log10() <= hi {
        svgkit::grid_y(out, LEFT, y(decade), &ms_label(decade));
        decade *= 10.0;
    }
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" x2="{:.1}" y1="{PLOT_BOTTOM}" y2="{PLOT_BOTTOM}" stroke="#999"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">10µs</text><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">&lt;10µs</text>"##,
        W - RIGHT,
        LEFT - 4.0,
        PLOT_BOTTOM + 4.0,
        LEFT - 4.0,
        BELOW_Y + 3.0
    );
    let step = if duration > 20_000.0 { 5000.0 } else { 1000.0 };
    let mut t = 0.0;
    while t <= duration {
        svgkit::tick_x(
            out,
            x(t),
            PLOT_BOTTOM,
            BAND_TOP + BAND_H + 14.0,
            &format!("{}s", t / 1000.0),
        );
        t += step;
    }
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{PLOT_BOTTOM}" stroke="#999"/>
<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#333">time since the scenario started</text>
<text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle" fill="#333">request latency (log scale)</text>"##,
        (LEFT + W - RIGHT) / 2.0,
        H - 8.0,
        (TOP + PLOT_BOTTOM) / 2.0
    );
}

/// p50 and p99 over 40 slices of time, a line per run of slices that had requests.
fn quantile_lines(
    out: &mut String,
    s: &ScenarioReport,
    duration: f64,
    x: &dyn Fn(f64) -> f64,
    y: &dyn Fn(f64) -> f64,
) {
    let buckets = 40;
    let width = duration / buckets as f64;
    let mut runs: [Vec<Vec<(f64, f64)>>; 2] = [vec![Vec::new()], vec![Vec::new()]];
    for b in 0..buckets {
        let (from, to) = (width * b as f64, width * (b + 1) as f64);
        let mut lat: Vec<f64> = s
            .ops
            .iter()
            .filter(|o| o.start_ms >= from && o.start_ms < to)
            .map(|o| o.latency_ms())
            .collect();
        if lat.is_empty() {
            for r in &mut runs {
                if r.last().is_some_and(|l| !l.is_empty()) {
                    r.push(Vec::new());
                }
            }
            continue;
        }
        lat.sort_by(f64::total_cmp);
        let q = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
        for (r, p) in runs.iter_mut().zip([0.5, 0.99]) {
            r.last_mut()
                .expect("never empty")
                .push(((from + to) / 2.0, q(p)));
        }
    }
    for (r, stroke, name) in [(&runs[0], "#1d4ed8", "p50"), (&runs[1], "#7b2cbf", "p99")] {
        for run in r.iter().filter(|run| !run.is_empty()) {
            // A lone slice is a short dash across its own width.
            let points: Vec<String> = if run.len() == 1 {
                let (t, v) = run[0];
                vec![
                    format!("{:.1},{:.1}", x(t - width / 2.0), y(v)),
                    format!("{:.1},{:.1}", x(t + width / 2.0), y(v)),
                ]
            } else {
                run.iter()
                    .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
                    .collect()
            };
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{stroke}" stroke-width="1.5"><title>{name}</title></polyline>"#,
                points.join(" ")
            );
        }
    }
}

/// The longest request ringed (red when a latency criterion failed), and the failed criteria
/// named where the eye lands: beside it, or at the end of the time axis.
fn marks(out: &mut String, s: &ScenarioReport, x: &dyn Fn(f64) -> f64, y: &dyn Fn(f64) -> f64) {
    let failed: Vec<&str> = s
        .criteria
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| c.id.as_str())
        .collect();
    if let Some(longest) = s
        .ops
        .iter()
        .max_by(|a, b| a.latency_ms().total_cmp(&b.latency_ms()))
    {
        let hung = failed
            .iter()
            .any(|id| matches!(*id, "no_hang" | "acquire_deadline" | "next_request"));
        let (cx, cy) = (x(longest.start_ms), y(longest.latency_ms()));
        let stroke = if hung { "#d62828" } else { "#555" };
        let anchor = if cx > W / 2.0 { "end" } else { "start" };
        let dx = if cx > W / 2.0 { -9.0 } else { 9.0 };
        let _ = writeln!(
            out,
            r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="6" fill="none" stroke="{stroke}" stroke-width="1.5"/><text x="{:.1}" y="{:.1}" text-anchor="{anchor}" fill="{stroke}">longest {}</text>"#,
            cx + dx,
            cy + 4.0,
            duration_label(longest.latency_ms())
        );
    }
    if !failed.is_empty() {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#d62828" font-weight="bold">failed: {}</text>"##,
            W - RIGHT,
            H - 8.0,
            escape(&failed.join(", "))
        );
    }
}

fn health_band(out: &mut String, s: &ScenarioReport, duration: f64, x: &dyn Fn(f64) -> f64) {
    if s.health.is_empty() {
        let why = if s.ours {
            "health: not sampled in this scenario"
        } else {
            "health: not reported by this pool"
        };
        let _ = writeln!(
            out,
            r##"<text x="{LEFT}" y="{:.1}" fill="#777">{why}</text>"##,
            BAND_TOP + 9.0
        );
        return;
    }
    for (i, (at, status)) in s.health.iter().enumerate() {
        let end = s.health.get(i + 1).map_or(duration, |n| n.0);
        let _ = writeln!(
            out,
            r#"<rect x="{:.1}" y="{BAND_TOP}" width="{:.1}" height="{BAND_H}" fill="{}"><title>{}</title></rect>"#,
            x(*at),
            (x(end) - x(*at)).max(0.5),
            health_color(status),
            escape(status)
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">health</text>"##,
        LEFT - 4.0,
        BAND_TOP + 9.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_timeline() {
        insta::assert_snapshot!(timeline(&crate::report::tests::sample().scenarios[0]));
    }
}
