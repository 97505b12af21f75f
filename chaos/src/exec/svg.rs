//! The timeline of a `chaos exec` run: the command's run as a bar (green for exit 0, red
//! otherwise), each planned fault as a shaded window in a lane of its own kind (faults that
//! could not be applied in red, faults the command did not live to see dashed), and each line
//! the command wrote as a tick (stdout grey, stderr orange), on one time axis.

use super::report::ExecReport;
use crate::report::svgkit::{self, RIGHT, WIDTH, escape};

const LEFT: f64 = 150.0;
const LANE: f64 = 26.0;

/// The SVG document.
pub fn render(r: &ExecReport) -> String {
    let faults: Vec<&crate::plan::PlanEvent> = r.faults.iter().map(|f| &f.event).collect();
    let end = faults
        .iter()
        .map(|f| f.end_s.unwrap_or(f.planned_s))
        .fold(r.ran_s, f64::max)
        .max(0.001);
    let x = |t: f64| LEFT + (t / end).clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT);
    // One lane per fault label, in order of first appearance.
    let mut lanes: Vec<String> = Vec::new();
    for f in &faults {
        if !lanes.contains(&f.label) {
            lanes.push(f.label.clone());
        }
    }
    let top = 40.0;
    let command_y = top;
    let output_y = top + LANE;
    let server_y = top + 2.0 * LANE;
    let faults_y = top + 3.0 * LANE;
    let axis_y = faults_y + LANE * lanes.len() as f64 + 10.0;
    let height = axis_y + 40.0;
    let mut s = String::new();
    svgkit::open(&mut s, height, 12);
    s.push_str(&format!(
        r##"<text x="10" y="20" font-size="14" font-weight="bold">chaos exec: {}</text><text x="10" y="34" font-size="10" fill="#616161">started {}{}</text>
"##,
        escape(&shortened(&r.name, 60)),
        escape(&r.started_at),
        if r.plan_started_s > 0.0 {
            format!("; ready, plan clock started at {:.2} s", r.plan_started_s)
        } else {
            String::new()
        }
    ));
    let ok = r.exit_code == Some(0);
    let status = match (r.exit_code, r.exit_signal) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "ended".into(),
    };
    s.push_str(&format!(
        r#"<text x="10" y="{}">command</text><rect x="{:.1}" y="{}" width="{:.1}" height="16" fill="{}" opacity="0.7"><title>ran {:.2} s, {status}</title></rect><text x="{:.1}" y="{}">{status}</text>
"#,
        command_y + 12.0,
        x(0.0),
        command_y,
        (x(r.ran_s) - x(0.0)).max(1.0),
        if ok { "#2e7d32" } else { "#c62828" },
        r.ran_s,
        (x(r.ran_s) + 4.0).min(WIDTH - 60.0),
        command_y + 12.0
    ));
    s.push_str(&format!(
        r#"<text x="10" y="{}">output</text>"#,
        output_y + 12.0
    ));
    for line in &r.output {
        s.push_str(&format!(
            r#"<line x1="{x:.1}" x2="{x:.1}" y1="{}" y2="{}" stroke="{}" stroke-width="1"><title>{:.3} s {}: {}</title></line>"#,
            output_y,
            output_y + 16.0,
            if line.stream == "stderr" { "#ef6c00" } else { "#757575" },
            line.t_s,
            line.stream,
            escape(&line.text),
            x = x(line.t_s)
        ));
    }
    s.push('\n');
    // The server: a mark at each change, red when no planned fault explains it.
    s.push_str(&format!(
        r#"<text x="10" y="{}">server</text>"#,
        server_y + 12.0
    ));
    for e in &r.server {
        let colour = match (e.expected, e.is_up()) {
            (_, true) => "#2e7d32",
            (true, false) => "#9e9e9e",
            (false, false) => "#c62828",
        };
        s.push_str(&format!(
            r#"<rect x="{:.1}" y="{server_y}" width="4" height="16" fill="{colour}"><title>{:.2} s: {}{}</title></rect>"#,
            x(e.t_s) - 2.0,
            e.t_s,
            escape(&e.what),
            if e.expected || e.is_up() { "" } else { " (no fault asked for this)" }
        ));
    }
    s.push('\n');
    for (i, lane) in lanes.iter().enumerate() {
        let y = faults_y + LANE * i as f64;
        s.push_str(&format!(
            r#"<text x="10" y="{}">{}</text>"#,
            y + 12.0,
            escape(lane)
        ));
        for f in faults.iter().filter(|f| &f.label == lane) {
            let (from, to, style) = match (f.effective_s.or(f.start_s), f.end_s) {
                (Some(a), Some(b)) if f.error.is_none() => {
                    (a, b, r##"fill="#1565c0" opacity="0.35""##)
                }
                (Some(a), b) => (a, b.unwrap_or(a), r##"fill="#c62828" opacity="0.6""##),
                (None, _) => (
                    f.planned_s,
                    f.planned_s,
                    r##"fill="none" stroke="#9e9e9e" stroke-dasharray="3 2""##,
                ),
            };
            let title = match (&f.error, f.start_s) {
                (Some(e), _) => format!("line {}: could not be applied: {e}", f.line),
                (None, None) => format!(
                    "line {}: planned at {:.2} s, after the command ended",
                    f.line, f.planned_s
                ),
                (None, Some(a)) => format!("line {}: {a:.2}-{to:.2} s", f.line),
            };
            s.push_str(&format!(
                r#"<rect x="{:.1}" y="{y}" width="{:.1}" height="16" {style}><title>{}</title></rect>"#,
                x(from),
                (x(to) - x(from)).max(2.0),
                escape(&title)
            ));
        }
        s.push('\n');
    }
    // The axis: about eight round ticks.
    let step = [
        0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    ]
    .into_iter()
    .find(|st| end / st <= 10.0)
    .unwrap_or(1800.0);
    s.push_str(&format!(
        r##"<line x1="{LEFT}" x2="{:.1}" y1="{axis_y}" y2="{axis_y}" stroke="#424242"/>"##,
        WIDTH - RIGHT
    ));
    let mut t = 0.0;
    while t <= end + 1e-9 {
        s.push_str(&format!(
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{axis_y}" y2="{}" stroke="#424242"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            axis_y + 5.0,
            axis_y + 18.0,
            if step < 1.0 { format!("{t:.1}") } else { format!("{t:.0}") },
            x = x(t)
        ));
        t += step;
    }
    s.push_str(&format!(
        r#"<text x="{:.1}" y="{}" text-anchor="middle">seconds from the command's start</text>
"#,
        LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        axis_y + 34.0
    ));
    svgkit::close(&mut s);
    s
}

/// `text` cut to `max` characters, with an ellipsis when cut.
fn shortened(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max - 1).collect::<String>())
    }
}
