//! `chaos run`: the suite, its report, and the exit status its verdict gives.

use super::args::{RunArgs, seed_from_clock};
use super::exit::{Exit, recorded};
use crate::report::{RunVerdict, Unavailable, UnavailableScenario};

pub(super) async fn run(args: RunArgs, mut signals: crate::signals::Signals) -> anyhow::Result<()> {
    if args.list {
        for (name, what) in crate::suite::all_scenarios() {
            println!("{name:<20} {what}");
        }
        return Ok(());
    }
    let seed = args.seed.unwrap_or_else(seed_from_clock);
    let out = args.out.unwrap_or_else(crate::suite::default_out);
    let fault_plan = match &args.plan {
        Some(path) => Some(crate::plan::Plan::from_file(path).map_err(|e| Exit(2, e.to_string()))?),
        None => None,
    };
    let options = crate::suite::Options {
        pool: args.pool.unwrap_or(crate::peers::PoolChoice::POOL),
        scenarios: args.scenarios,
        seed,
        quick: args.quick,
        out: out.clone(),
        fault_plan,
        load: args.load.unwrap_or_default(),
        repeat: args.repeat.max(1),
    };
    // Refused before anything starts: an unknown scenario, a bad DATABASE_URL.
    crate::suite::plan(&options)?;
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => {
            crate::postgres::tcp_target(&url)?;
            eprintln!(
                "chaos: using DATABASE_URL ({}) and starting the proxy (seed {seed})...",
                crate::postgres::redact_url(&url)
            );
        }
        _ => eprintln!("chaos: starting a throwaway database and the proxy (seed {seed})..."),
    }
    let fired = std::sync::Mutex::new(None);
    let report = match crate::suite::run_until(options, recorded(&mut signals, &fired)).await {
        Err(crate::Error::Interrupted(signal)) => {
            return Err(Exit(
                signal.exit_code(),
                format!("interrupted by {signal} while starting; nothing was left running"),
            )
            .into());
        }
        other => other?,
    };
    let format = args.format.as_deref().unwrap_or("text");
    if let Some(renderer) = crate::report::RENDERERS.iter().find(|r| r.name == format) {
        println!("{}", (renderer.render)(&report));
    }
    eprintln!(
        "chaos: report written to {}/ (index.html, report.json, report.md, *.svg, history/)",
        out.display()
    );
    match report.verdict() {
        RunVerdict::Interrupted { by } => {
            let code = fired
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .map_or(130, crate::signals::Interrupt::exit_code);
            Err(Exit(
                code,
                format!("interrupted ({by}); the proxies, pools and the throwaway cluster were stopped, and the report covers the scenarios that finished"),
            )
            .into())
        }
        RunVerdict::Passed => Ok(()),
        RunVerdict::Incomplete { unavailable } => {
            eprintln!(
                "chaos: INCOMPLETE: {} of {} scenarios could not run and count neither as passed nor as failed; to measure them: {}",
                unavailable.len(),
                report.scenarios.len(),
                what_to_change(&unavailable)
            );
            Ok(())
        }
        RunVerdict::NothingMeasured { unavailable } => Err(Exit(
            2,
            format!(
                "nothing was measured: none of the {} scenarios asked for could run ({}); {}",
                report.scenarios.len(),
                unavailable
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
                what_to_change(&unavailable)
            ),
        )
        .into()),
        RunVerdict::Failed => {
            anyhow::bail!("some scenarios of the pool missed their criteria (see the report)")
        }
    }
}

/// What to change when scenarios could not run, from their reasons (each kind once).
fn what_to_change(unavailable: &[UnavailableScenario]) -> String {
    let mut hints: Vec<&str> = Vec::new();
    for u in unavailable {
        let hint = u.why.what_to_change();
        if !hints.contains(&hint) {
            hints.push(hint);
        }
    }
    if hints.is_empty() {
        hints.push(
            Unavailable::NothingHappened {
                detail: String::new(),
            }
            .what_to_change(),
        );
    }
    hints.join("; ")
}
