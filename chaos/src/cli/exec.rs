//! `chaos exec`: a command under a fault plan, and the exit status it gives.

use super::args::{ExecArgs, seed_from_clock};
use super::exit::{Exit, recorded};

pub(super) async fn exec(
    args: ExecArgs,
    mut signals: crate::signals::Signals,
) -> anyhow::Result<()> {
    // Refused before anything starts, every problem with its line.
    let plan = crate::plan::Plan::from_file(&args.plan).map_err(|e| Exit(2, e.to_string()))?;
    let seed = args.seed.unwrap_or_else(seed_from_clock);
    let out = args.out.unwrap_or_else(crate::suite::default_out);
    eprintln!(
        "chaos exec: {} fault(s) over {:.1} s; starting the database and the proxy (seed {seed})...",
        plan.faults.len(),
        plan.end().as_secs_f64()
    );
    let options = crate::exec::ExecOptions {
        plan,
        command: args.command,
        out: out.clone(),
        seed,
    };
    let progress = |line: &str| eprintln!("chaos exec: {line}");
    let fired = std::sync::Mutex::new(None);
    let report = match crate::exec::exec(options, recorded(&mut signals, &fired), &progress).await {
        Ok(report) => report,
        Err(
            e @ (crate::exec::ExecError::Unsupported(_)
            | crate::exec::ExecError::Spawn { .. }
            | crate::exec::ExecError::NoCommand),
        ) => return Err(Exit(2, e.to_string()).into()),
        Err(e) => return Err(e.into()),
    };
    eprintln!(
        "chaos exec: the command ran {:.2} s ({}); report written to {}/ (report.json, report.md, timeline.svg, output.txt)",
        report.ran_s,
        match (report.exit_code, report.exit_signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("signal {s}"),
            _ => "ended".into(),
        },
        out.display()
    );
    if let Some(by) = &report.interrupted {
        let code = fired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map_or(130, crate::signals::Interrupt::exit_code);
        return Err(Exit(
            code,
            format!("interrupted by {by}; the command was stopped"),
        )
        .into());
    }
    let failures = report.plan_failures();
    match report.exit_status() {
        0 => Ok(()),
        3 => Err(Exit(
            3,
            format!(
                "the command succeeded, but the plan could not be applied in full: {}",
                failures.join("; ")
            ),
        )
        .into()),
        code => Err(Exit(code, format!("the command failed (exit status {code})")).into()),
    }
}
