//! `chaos soak`: the long leak soak, with its progress and the exit status its verdict gives.

use super::args::{SoakArgs, seed_from_clock};
use super::exit::{Exit, recorded};

struct SoakProgress {
    bar: Option<indicatif::ProgressBar>,
    planned: std::time::Duration,
    started: std::time::Instant,
}

impl crate::soak::Progress for SoakProgress {
    fn sample(&self, s: &crate::soak::Sample, totals: &crate::soak::Totals, fault: Option<&str>) {
        if let Some(bar) = &self.bar {
            bar.set_position(s.t_s as u64);
            bar.set_message(format!(
                "rss {:.1} MiB, fds {}, tasks {}, conns {}/{} (server {}), ok {} failed {}{}",
                s.rss_mib.unwrap_or(0.0),
                s.fds.unwrap_or(0.0),
                s.tasks,
                s.pool_total,
                s.pool_total - s.pool_idle,
                s.server_connections.map_or("-".into(), |v| v.to_string()),
                totals.ok,
                totals.failed,
                fault.map_or(String::new(), |f| format!(" | fault: {f}"))
            ));
        }
    }
    fn checkpoint(&self, r: &crate::soak::SoakReport) {
        if self.bar.is_none() {
            // Not a terminal (CI): one line per checkpoint instead of a bar.
            let grown: Vec<&str> = r.grown().iter().map(|t| t.series.as_str()).collect();
            eprintln!(
                "soak: {:>6.0}s of {:.0}s, {} requests ({} failed), {} faults, trend so far: {}",
                self.started.elapsed().as_secs_f64(),
                self.planned.as_secs_f64(),
                r.totals.requests,
                r.totals.failed,
                r.faults.len(),
                if grown.is_empty() {
                    "flat".to_string()
                } else {
                    format!("growing: {}", grown.join(", "))
                }
            );
        }
    }
}

pub(super) async fn soak(
    args: SoakArgs,
    mut signals: crate::signals::Signals,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let seed = args.seed.unwrap_or_else(seed_from_clock);
    anyhow::ensure!(
        args.duration >= std::time::Duration::from_secs(20),
        "--duration {:?} is too short to fit a trend; give at least 20s (60s is the smallest useful soak)",
        args.duration
    );
    anyhow::ensure!(args.max_size >= 1, "--max-size must be at least 1");
    let out = args.out.unwrap_or_else(|| {
        let run = crate::suite::default_out();
        let stamp = run
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        std::path::PathBuf::from(format!("target/chaos/soak-{stamp}"))
    });
    let mut options = crate::soak::Options::new(args.duration, seed, out.clone());
    options.fault_every = args.fault_every;
    options.sample_every = args.sample_every;
    options.warmup = args.warmup;
    options.max_size = args.max_size;
    if args.cluster.is_some() {
        let route = match args.route {
            Some(super::args::RouteArg::Haproxy) => crate::postgres::HaRoute::Haproxy,
            _ => crate::postgres::HaRoute::Url,
        };
        // Refused before anything starts, with what is missing.
        crate::postgres::HaCluster::available(route).map_err(|e| Exit(2, e.to_string()))?;
        let cluster = crate::postgres::HaOptions {
            synchronous: true,
            route,
            ..crate::postgres::HaOptions::default()
        };
        eprintln!("chaos soak: on the HA cluster: {}", cluster.describe());
        options.cluster = Some(cluster);
    }
    eprintln!(
        "chaos soak: {:?} (seed {seed}; warm-up {:?}, a fault every {:?} on average, a sample every {:?}); report in {}/",
        args.duration,
        options.warmup(),
        options.fault_every(),
        options.sample_every(),
        out.display()
    );
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(args.duration.as_secs());
        bar.set_style(
            indicatif::ProgressStyle::with_template("soak [{bar:30}] {elapsed}/{duration} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar
    });
    let progress = SoakProgress {
        bar: bar.clone(),
        planned: args.duration,
        started: std::time::Instant::now(),
    };
    let fired = std::sync::Mutex::new(None);
    let stop = async {
        recorded(&mut signals, &fired).await;
    };
    let report = crate::soak::run(options, stop, &progress).await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    println!("{}", report.to_text());
    eprintln!(
        "chaos soak: report written to {}/ (report.json, report.txt, soak.svg)",
        out.display()
    );
    if let Some(signal) = *fired.lock().unwrap_or_else(|e| e.into_inner()) {
        return Err(Exit(
            signal.exit_code(),
            format!(
                "interrupted by {signal} after {:.0}s of {:.0}s; the report covers what ran (verdict {:?})",
                report.elapsed_s, report.planned_s, report.verdict
            ),
        )
        .into());
    }
    if report.verdict == crate::report::Verdict::Unknown {
        let unknown: Vec<String> = report
            .criteria
            .iter()
            .filter(|c| c.verdict == crate::report::Verdict::Unknown)
            .map(|c| format!("{}: {}", c.id, c.measured))
            .collect();
        return Err(Exit(
            2,
            format!(
                "the soak measured too little for a verdict ({}); run it longer (--duration), or sample more often (--sample-every)",
                unknown.join("; ")
            ),
        )
        .into());
    }
    if report.verdict == crate::report::Verdict::Fail {
        let grown: Vec<String> = report
            .grown()
            .iter()
            .map(|t| {
                format!(
                    "{} {:+.1} {} (allowed {:.1})",
                    t.series, t.growth, t.unit, t.allowed
                )
            })
            .collect();
        if grown.is_empty() {
            anyhow::bail!("the soak failed its criteria (see the report)");
        }
        anyhow::bail!("leak: {} grew over the soak", grown.join(", "));
    }
    Ok(())
}
