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
        "# chaos exec: {}\n\n```sh\n{}\n```\n\nagainst {} (seed {}), started {}: ran {:.2} s, {}.\n",
        r.name,
        r.command.join(" "),
        r.database,
        r.seed,
        r.started_at,
        r.ran_s,
        r.how_it_ended()
    );
    match (&r.ready, &r.not_ready) {
        (Some(ready), None) => s.push_str(&format!(
            "\nReady ({ready}) after {:.2} s ({}): the plan's clock started then.\n",
            r.plan_started_s, r.plan_started_at
        )),
        (Some(_), Some(why)) => s.push_str(&format!("\n**Never ready: {why}.** No fault ran.\n")),
        _ => {}
    }
    s.push_str(
        "\nTimes are seconds from the command's start; `offset` is how late a fault took effect after its planned time.\n\n| line | fault | planned | asked | in effect | offset | healed | error |\n| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    let secs = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3} s"));
    for f in &r.faults {
        let e = &f.event;
        s.push_str(&format!(
            "| {} | {} | {:.3} s | {} | {} | {} | {} | {} |\n",
            e.line,
            e.label,
            e.planned_s,
            if e.start_s.is_none() {
                "not reached".into()
            } else {
                secs(e.start_s)
            },
            secs(e.effective_s),
            f.offset_ms
                .map_or("-".to_string(), |o| format!("{o:+.1} ms")),
            secs(e.end_s),
            e.error.as_deref().unwrap_or("")
        ));
    }
    let problems = r.server_problems();
    s.push_str(&format!(
        "\n## The server\n\n{}\n",
        if problems.is_empty() {
            "It stopped, restarted or refused only when a planned fault asked for it.".to_string()
        } else {
            format!(
                "**It stopped, restarted or refused without a fault asking** (its log: {}):\n\n{}",
                r.server_log
                    .as_deref()
                    .unwrap_or("not kept: not our server"),
                problems
                    .iter()
                    .map(|p| format!("- {p}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        }
    ));
    if r.group.left_running > 0 {
        s.push_str(&format!(
            "\nThe command left {} process(es) of its group running at its end: stopped ({} needed SIGKILL).\n",
            r.group.left_running, r.group.killed
        ));
    }
    s.push_str(&format!(
        "\n{} lines of output (output.txt); the timeline is timeline.svg.\n",
        r.output.len()
    ));
    s
}
