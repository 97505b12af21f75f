//! Pictures: an SVG timeline per scenario and an `index.html` that shows them together.
//!
//! A timeline has time on x; the fault window shaded; each request as a point at its latency
//! (log scale), coloured by outcome; the p50 and p99 latency over time as lines; and the
//! pool's health status as a band along the bottom.

use std::fmt::Write as _;

use super::{ChaosReport, Outcome, ScenarioReport};

const W: f64 = 960.0;
const H: f64 = 340.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const PLOT_BOTTOM: f64 = 270.0;
const BAND_TOP: f64 = 284.0;
const BAND_H: f64 = 12.0;

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

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SVG timeline of one scenario.
pub fn timeline(s: &ScenarioReport) -> String {
    let duration = s
        .duration_ms
        .max(s.ops.iter().map(|o| o.end_ms).fold(1.0, f64::max));
    let x = |ms: f64| LEFT + (ms / duration).clamp(0.0, 1.0) * (W - LEFT - RIGHT);
    let max_latency = s.ops.iter().map(|o| o.latency_ms()).fold(10.0, f64::max);
    // From 10 µs: failures that are refused fast must show, not sit under the axis.
    let (lo, hi) = (0.01f64.log10(), (max_latency * 1.5).log10().max(1.0));
    let y = |ms: f64| PLOT_BOTTOM - ((ms.max(0.01).log10() - lo) / (hi - lo)) * (PLOT_BOTTOM - TOP);
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">
<rect width="{W}" height="{H}" fill="#ffffff"/>
<text x="{LEFT}" y="18" font-size="14" font-weight="bold">{} / {}: {}</text>
"##,
        escape(&s.pool),
        escape(&s.name),
        s.verdict().mark()
    );
    if let Some(f) = &s.fault {
        let _ = write!(
            out,
            r##"<rect x="{:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="#d62828" fill-opacity="0.10"/>
<text x="{:.1}" y="{:.1}" fill="#9d0208">{}</text>
"##,
            x(f.start_ms),
            (x(f.end_ms) - x(f.start_ms)).max(1.0),
            PLOT_BOTTOM - TOP,
            x(f.start_ms) + 3.0,
            TOP + 12.0,
            escape(&f.label)
        );
    }
    // Axes: decades of latency, seconds of time.
    let mut decade = 10f64.powf(lo.ceil());
    while decade.log10() <= hi {
        let label = if decade >= 1000.0 {
            format!("{}s", decade / 1000.0)
        } else if decade < 1.0 {
            format!("{}µs", decade * 1000.0)
        } else {
            format!("{decade}ms")
        };
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{label}</text>"##,
            W - RIGHT,
            LEFT - 4.0,
            y(decade) + 4.0,
            y = y(decade)
        );
        decade *= 10.0;
    }
    let step = if duration > 20_000.0 { 5000.0 } else { 1000.0 };
    let mut t = 0.0;
    while t <= duration {
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{PLOT_BOTTOM}" y2="{:.1}" stroke="#999"/><text x="{px:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}s</text>"##,
            PLOT_BOTTOM + 4.0,
            BAND_TOP + BAND_H + 14.0,
            t / 1000.0,
            px = x(t)
        );
        t += step;
    }
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{PLOT_BOTTOM}" stroke="#999"/>"##
    );
    // Requests: successes first, so failures and unknowns are drawn on top.
    for pass in [Outcome::Ok, Outcome::Info, Outcome::Fail] {
        for op in s.ops.iter().filter(|o| o.outcome == pass) {
            let r = if pass == Outcome::Ok { 1.6 } else { 2.4 };
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="{r}" fill="{}" fill-opacity="0.75"/>"#,
                x(op.start_ms),
                y(op.latency_ms()),
                color(op.outcome)
            );
        }
    }
    // Quantiles over time, in 40 buckets.
    let buckets = 40;
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    for b in 0..buckets {
        let (from, to) = (
            duration * b as f64 / buckets as f64,
            duration * (b + 1) as f64 / buckets as f64,
        );
        let mut lat: Vec<f64> = s
            .ops
            .iter()
            .filter(|o| o.start_ms >= from && o.start_ms < to)
            .map(|o| o.latency_ms())
            .collect();
        if lat.is_empty() {
            continue;
        }
        lat.sort_by(f64::total_cmp);
        let q = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
        let mid = x((from + to) / 2.0);
        p50.push(format!("{mid:.1},{:.1}", y(q(0.5))));
        p99.push(format!("{mid:.1},{:.1}", y(q(0.99))));
    }
    for (points, stroke, name) in [(&p50, "#1d4ed8", "p50"), (&p99, "#7b2cbf", "p99")] {
        if points.len() > 1 {
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{stroke}" stroke-width="1.5"><title>{name}</title></polyline>"#,
                points.join(" ")
            );
        }
    }
    // Health band.
    if s.health.is_empty() {
        let _ = writeln!(
            out,
            r##"<text x="{LEFT}" y="{:.1}" fill="#777">health: not reported by this pool</text>"##,
            BAND_TOP + 10.0
        );
    } else {
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
            BAND_TOP + 10.0
        );
    }
    // Legend.
    let legend = [
        ("ok", "#2a9d3a"),
        ("fail", "#d62828"),
        ("info", "#f08c00"),
        ("p50", "#1d4ed8"),
        ("p99", "#7b2cbf"),
    ];
    for (i, (name, c)) in legend.iter().enumerate() {
        let lx = W - RIGHT - 300.0 + i as f64 * 60.0;
        let _ = writeln!(
            out,
            r#"<rect x="{lx:.1}" y="9" width="10" height="10" fill="{c}"/><text x="{:.1}" y="18">{name}</text>"#,
            lx + 14.0
        );
    }
    out.push_str("</svg>\n");
    out
}

/// `pool passed`, plus how the peers did when they ran (their failures are results, not a
/// failed run).
fn headline(report: &ChaosReport) -> String {
    let ours = match report.verdict() {
        super::RunVerdict::Passed => "pool passed",
        super::RunVerdict::Incomplete { .. } => "pool passed what was measured (incomplete)",
        super::RunVerdict::NothingMeasured { .. } => "nothing measured",
        super::RunVerdict::Failed => "pool FAILED",
        super::RunVerdict::Interrupted { .. } => "INTERRUPTED: the scenarios that finished",
    };
    let peers: Vec<&ScenarioReport> = report
        .scenarios
        .iter()
        .filter(|s| s.pool != "pool")
        .collect();
    if peers.is_empty() {
        return ours.to_string();
    }
    let failed = peers
        .iter()
        .filter(|s| s.verdict() == super::Verdict::Fail)
        .count();
    format!("{ours}; peers failed {failed} of {} scenarios", peers.len())
}

/// A page with the summary table and every timeline.
pub fn index_html(report: &ChaosReport) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Chaos report</title>
<style>body{{font-family:sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}.PASS{{color:#2a9d3a;font-weight:bold}}.FAIL{{color:#d62828;font-weight:bold}}.UNKNOWN{{color:#b08900}}img{{display:block;margin:8px 0 24px;border:1px solid #eee}}</style>
</head><body>
<h1>Chaos report: {}</h1>
<p>seed <code>{}</code> (replay with <code>--seed {}</code>) &middot; {} &middot; proxy: {} &middot; {} run</p>
<table><tr><th>scenario</th><th>pool</th><th>before ok/fail/info</th><th>during</th><th>after</th><th>verdict</th></tr>
"#,
        headline(report),
        report.seed,
        report.seed,
        escape(&report.database),
        escape(&report.proxy),
        if report.quick { "quick" } else { "full" }
    );
    for s in &report.scenarios {
        let c = |c: &super::Counts| format!("{}/{}/{}", c.ok, c.fail, c.info);
        let v = s.verdict().mark();
        let _ = writeln!(
            out,
            r##"<tr><td><a href="#{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="{v}">{v}</td></tr>"##,
            s.slug(),
            escape(&s.name),
            escape(&s.pool),
            c(&s.phases.before),
            c(&s.phases.during),
            c(&s.phases.after)
        );
    }
    out.push_str("</table>\n");
    for s in &report.scenarios {
        let _ = writeln!(
            out,
            r#"<h2 id="{}">{} / {}</h2><p>{}</p><img src="{}.svg" alt="timeline of {}">"#,
            s.slug(),
            escape(&s.pool),
            escape(&s.name),
            escape(&s.description),
            s.slug(),
            escape(&s.name)
        );
        let _ = writeln!(
            out,
            "<table><tr><th>criterion</th><th>what</th><th>measured</th><th>bound</th><th>verdict</th></tr>"
        );
        for c in &s.criteria {
            let v = c.verdict.mark();
            let _ = writeln!(
                out,
                r#"<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="{v}">{v}</td></tr>"#,
                escape(&c.id),
                escape(&c.description),
                escape(&c.measured),
                escape(&c.bound)
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_timeline() {
        insta::assert_snapshot!(timeline(&crate::report::tests::sample().scenarios[0]));
    }

    #[test]
    fn index_page() {
        insta::assert_snapshot!(index_html(&crate::report::tests::sample()));
    }
}
