//! The soak's picture: one panel per series over the run, fault windows shaded, the warm-up
//! greyed, and each fitted trend dashed.

use std::fmt::Write as _;

use super::report::{Sample, SoakReport, human};
use crate::report::Verdict;
use crate::report::svgkit::{self, RIGHT, WIDTH, escape};

const W: f64 = WIDTH;
const LEFT: f64 = 70.0;
const PANEL_H: f64 = 120.0;
const GAP: f64 = 34.0;
const TOP: f64 = 56.0;
/// Most points drawn per line; longer series are thinned to bucket extremes.
const MAX_DRAWN: usize = 1200;

/// A named, coloured line as segments: a gap in the samples (the server down) breaks it.
type Line = (&'static str, &'static str, Vec<Vec<(f64, f64)>>);

/// Keeps the extremes of each bucket so a thinned spike still shows.
fn thin(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if points.len() <= MAX_DRAWN {
        return points.to_vec();
    }
    let per = points.len().div_ceil(MAX_DRAWN / 2);
    let mut out = Vec::new();
    for c in points.chunks(per) {
        let lo = c
            .iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("non-empty");
        let hi = c
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("non-empty");
        if lo.0 <= hi.0 {
            out.extend([*lo, *hi]);
        } else {
            out.extend([*hi, *lo]);
        }
    }
    out
}

/// The SVG: one panel per series, time on x, fault windows shaded in every panel, the fitted
/// trend of each leak-checked series drawn dashed over its window.
pub fn svg(r: &SoakReport) -> String {
    let series = |f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<Vec<(f64, f64)>> {
        let mut segments = vec![Vec::new()];
        for s in &r.samples {
            match f(s) {
                Some(v) => segments.last_mut().expect("one").push((s.t_s, v)),
                None if segments.last().is_some_and(|l| !l.is_empty()) => segments.push(Vec::new()),
                None => {}
            }
        }
        segments
    };
    let rate = |f: &dyn Fn(&Sample) -> u64| -> Vec<Vec<(f64, f64)>> {
        let mut prev = 0.0;
        vec![
            r.samples
                .iter()
                .map(|s| {
                    let dt = (s.t_s - prev).max(1e-3);
                    prev = s.t_s;
                    (s.t_s, f(s) as f64 / dt)
                })
                .collect(),
        ]
    };
    let panels: Vec<(&str, Option<&str>, Vec<Line>)> = vec![
        (
            "resident memory (MiB)",
            Some("rss_mib"),
            vec![("rss", "#1d3557", series(&|s| s.rss_mib))],
        ),
        (
            "open file descriptors",
            Some("fds"),
            vec![("fds", "#1d3557", series(&|s| s.fds))],
        ),
        (
            "live tokio tasks",
            Some("tasks"),
            vec![("tasks", "#1d3557", series(&|s| Some(s.tasks)))],
        ),
        (
            "connections: server side (pg_stat_activity) and in the pool",
            Some("server_connections"),
            vec![
                ("server", "#1d3557", series(&|s| s.server_connections)),
                ("pool", "#8d99ae", series(&|s| Some(s.pool_total as f64))),
            ],
        ),
        (
            "requests per second",
            None,
            vec![
                ("ok", "#2a9d3a", rate(&|s| s.ok)),
                ("failed", "#d62828", rate(&|s| s.failed)),
                ("cancelled", "#f08c00", rate(&|s| s.cancelled)),
            ],
        ),
        (
            "latency of successes (ms): p50, p99",
            None,
            vec![
                ("p50", "#2a9d3a", series(&|s| s.p50_ms)),
                ("p99", "#9d0208", series(&|s| s.p99_ms)),
            ],
        ),
    ];
    let h = TOP + panels.len() as f64 * (PANEL_H + GAP) + 10.0;
    let end = r.elapsed_s.max(1.0);
    let x = |t: f64| LEFT + (t / end).clamp(0.0, 1.0) * (W - LEFT - RIGHT);
    let mut out = String::new();
    svgkit::open(&mut out, h, 11);
    let _ = write!(
        out,
        r##"<text x="{LEFT}" y="20" font-size="14" font-weight="bold">soak: {} of {}, {} faults, seed {}: {}</text>
<text x="{LEFT}" y="38" fill="#555">fault windows shaded red; warm-up shaded grey; dashed: fitted trend (Theil–Sen) over the measured window</text>
"##,
        human(r.elapsed_s),
        human(r.planned_s),
        r.faults.len(),
        r.seed,
        match r.verdict {
            Verdict::Pass => "leak-free",
            Verdict::Fail => "FAILED",
            Verdict::Unknown => "unknown",
        }
    );
    let tick = [
        10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0,
    ]
    .into_iter()
    .find(|t| end / t <= 10.0)
    .unwrap_or(21600.0);
    for (i, (title, trend_of, lines)) in panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL_H + GAP);
        let bottom = top + PANEL_H;
        let trend = trend_of.and_then(|n| r.trends.iter().find(|t| t.series == n));
        let max = lines
            .iter()
            .flat_map(|l| l.2.iter().flatten().map(|p| p.1))
            .chain(trend.map(|t| t.fitted_start + t.growth))
            .fold(1.0f64, f64::max)
            * 1.1;
        let y = |v: f64| bottom - (v / max).clamp(0.0, 1.0) * PANEL_H;
        let _ = writeln!(
            out,
            r##"<text x="{LEFT}" y="{:.1}" font-weight="bold">{}</text>"##,
            top - 6.0,
            escape(title)
        );
        let _ = writeln!(
            out,
            r##"<rect x="{LEFT}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="#8d99ae" fill-opacity="0.12"/>"##,
            (x(r.warmup_s) - LEFT).max(0.0),
            PANEL_H
        );
        for f in &r.faults {
            let (a, b) = (x(f.start_s), x(f.end_s.unwrap_or(r.elapsed_s)));
            let _ = writeln!(
                out,
                r##"<rect x="{a:.1}" y="{top:.1}" width="{:.1}" height="{PANEL_H}" fill="#d62828" fill-opacity="0.14"><title>{}</title></rect>"##,
                (b - a).max(1.0),
                escape(&f.label)
            );
            if i == 0 {
                let _ = writeln!(
                    out,
                    r##"<text x="{a:.1}" y="{:.1}" font-size="9" fill="#9d0208" transform="rotate(-90 {a:.1} {:.1})">{}</text>"##,
                    top + PANEL_H - 2.0,
                    top + PANEL_H - 2.0,
                    escape(&f.name)
                );
            }
        }
        for frac in [0.0, 0.5, 1.0] {
            let v = max / 1.1 * frac;
            let label = if v >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            };
            svgkit::grid_y(&mut out, LEFT, y(v), &label);
        }
        let mut t = 0.0;
        while t <= end {
            svgkit::tick_x(&mut out, x(t), bottom, bottom + 15.0, &human(t));
            t += tick;
        }
        let mut legend_x = W - RIGHT;
        for (name, color, segments) in lines.iter().rev() {
            for points in segments.iter().filter(|p| !p.is_empty()) {
                let pts: Vec<String> = thin(points)
                    .iter()
                    .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
                    .collect();
                let _ = writeln!(
                    out,
                    r##"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.4"/>"##,
                    pts.join(" ")
                );
            }
            let _ = writeln!(
                out,
                r##"<text x="{legend_x:.1}" y="{:.1}" text-anchor="end" fill="{color}">{name}</text>"##,
                top - 6.0
            );
            legend_x -= 8.0 * name.len() as f64 + 14.0;
        }
        if let Some(t) = trend {
            let (t0, t1) = (t.window_start_s, t.window_start_s + t.window_s);
            let _ = writeln!(
                out,
                r##"<line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2" stroke-dasharray="6 4"><title>{}: {:+.2} {} per hour, {}</title></line>"##,
                x(t0),
                x(t1),
                y(t.fitted_start),
                y(t.fitted_start + t.growth),
                if t.verdict == Verdict::Fail {
                    "#d62828"
                } else {
                    "#f08c00"
                },
                t.series,
                t.slope_per_hour,
                t.unit,
                t.verdict.mark()
            );
        }
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{LEFT}" y1="{top:.1}" y2="{bottom:.1}" stroke="#999"/><line x1="{LEFT}" x2="{:.1}" y1="{bottom:.1}" y2="{bottom:.1}" stroke="#999"/>"##,
            W - RIGHT
        );
    }
    svgkit::close(&mut out);
    out
}
