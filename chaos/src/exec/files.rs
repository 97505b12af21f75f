//! The files `chaos exec` writes: `report.json`, `report.md` and `timeline.svg`
//! ([`super::svg`]).

use super::report::ExecReport;

/// The report files.
pub(super) fn write(report: &ExecReport, out: &std::path::Path) -> Result<(), crate::Error> {
    let w = |name: &str, text: String| {
        std::fs::write(out.join(name), text).map_err(|source| crate::Error::Write {
            path: out.join(name),
            source,
        })
    };
    std::fs::create_dir_all(out).map_err(|source| crate::Error::Write {
        path: out.to_path_buf(),
        source,
    })?;
    w(
        "report.json",
        serde_json::to_string_pretty(report).expect("the report serializes"),
    )?;
    w("report.md", markdown(report))?;
    w("timeline.svg", super::svg::render(report))?;
    let mut text = String::new();
    for line in &report.output {
        text.push_str(&format!(
            "{:>8.3}s {} {}\n",
            line.t_s, line.stream, line.text
        ));
    }
    w("output.txt", text)
}

fn markdown(r: &ExecReport) -> String {
    let mut s = format!(
        "# chaos exec\n\n`{}` against {} (seed {}): ran {:.2} s, {}.\n\n| line | fault | planned | began | healed | error |\n| ---: | --- | ---: | ---: | ---: | --- |\n",
        r.command.join(" "),
        r.database,
        r.seed,
        r.ran_s,
        match (r.exit_code, r.exit_signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("ended by signal {s}"),
            _ => "ended".into(),
        }
    );
    let secs = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2} s"));
    for e in &r.faults {
        s.push_str(&format!(
            "| {} | {} | {:.2} s | {} | {} | {} |\n",
            e.line,
            e.label,
            e.planned_s,
            if e.start_s.is_none() {
                "not reached".into()
            } else {
                secs(e.start_s)
            },
            secs(e.end_s),
            e.error.as_deref().unwrap_or("")
        ));
    }
    s.push_str(&format!(
        "\n{} lines of output (output.txt); the timeline is timeline.svg.\n",
        r.output.len()
    ));
    s
}
