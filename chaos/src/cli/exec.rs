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
    let what = match &plan.cluster {
        Some(c) => format!(
            "starting the HA cluster (Patroni, {} nodes, and etcd, each a host of its own; about 20 s)",
            c.nodes
        ),
        None => "starting the database and the proxy".into(),
    };
    eprintln!(
        "chaos exec: {} fault(s) over {:.1} s; {what} (seed {seed})...",
        plan.faults.len(),
        plan.end().as_secs_f64()
    );
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| crate::exec::default_name(&args.command));
    let options = crate::exec::ExecOptions {
        name: Some(name.clone()),
        ready: args.ready,
        ready_timeout: args.ready_timeout,
        allow_unreached: args.allow_unreached,
        ..crate::exec::ExecOptions::new(plan, args.command, out.clone(), seed)
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
        "chaos exec: [{name}] the command ran {:.2} s ({}), started {}; report written to {}/ (report.json, report.md, timeline.svg, output.txt{})",
        report.ran_s,
        report.how_it_ended(),
        report.started_at,
        out.display(),
        if report.server_log.is_some() {
            ", server.log"
        } else {
            ""
        }
    );
    // What went wrong beside the command, whatever its status: each on a line of its own.
    let unreached = report.unreached();
    for u in &unreached {
        eprintln!(
            "chaos exec: [{name}] not reached: {u}{}",
            if report.allow_unreached {
                " (allowed)"
            } else {
                ""
            }
        );
    }
    for f in report.plan_failures() {
        eprintln!("chaos exec: [{name}] could not be applied: {f}");
    }
    let server = report.server_problems();
    for p in &server {
        eprintln!(
            "chaos exec: [{name}] the server, without a fault asking: {p} (its log: {})",
            report
                .server_log
                .as_deref()
                .map_or("not ours, not kept".into(), |l| out
                    .join(l)
                    .display()
                    .to_string())
        );
    }
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
    match report.exit_status() {
        0 => Ok(()),
        2 => Err(Exit(
            2,
            format!(
                "the service was never ready, so no fault ran: {}",
                report.not_ready.as_deref().unwrap_or("")
            ),
        )
        .into()),
        3 => Err(Exit(
            3,
            format!(
                "the command succeeded, but the plan did not run in full ({} not reached, {} not applied); --allow-unreached allows faults the command did not live to see",
                if report.allow_unreached { 0 } else { unreached.len() },
                report.plan_failures().len()
            ),
        )
        .into()),
        4 => Err(Exit(
            4,
            format!(
                "the command succeeded, but the server stopped, restarted or refused without a fault asking ({} event(s), above)",
                server.len()
            ),
        )
        .into()),
        code => Err(Exit(code, format!("the command failed (exit status {code})")).into()),
    }
}
