//! `chaos run`: chooses the scenarios, runs them with progress bars, writes the report files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::UsageError;
use crate::controller::{FaultController, ToxiproxyClient};
use crate::fault::Env;
use crate::peers::{POOL, PoolChoice, PoolKind};
use crate::postgres::Database;
use crate::proxy::Proxies;
use crate::report::{ChaosReport, svg};
pub use crate::scenario::Load;
use crate::scenario::{Ctx, Progress, Scenario, Stage, Timing};
use crate::signals::Interrupt;

/// Options of a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Pools to run.
    pub pool: PoolChoice,
    /// Only these scenarios (all when empty).
    pub scenarios: Vec<String>,
    /// Seed of every random choice.
    pub seed: u64,
    /// CI-sized.
    pub quick: bool,
    /// Where the report files go.
    pub out: PathBuf,
    /// A fault plan to run instead of the built-in scenarios (`chaos run --plan`).
    pub fault_plan: Option<crate::plan::Plan>,
    /// The load a plan runs under (`chaos run --plan P --load service`).
    pub load: Load,
    /// How many times each (pool, scenario) runs (`--repeat`; 1 when 0).
    pub repeat: u32,
}

/// The seed of repeat `index` (1-based) of a run seeded `seed`: the run's own for the first,
/// derived for the others, so any failing repeat can be replayed alone with `--seed`.
pub fn repeat_seed(seed: u64, index: u32) -> u64 {
    if index <= 1 {
        seed
    } else {
        crate::rng::seed_for(seed, &format!("repeat-{index}")) % (1 << 53)
    }
}

/// Every scenario name: validation first, then the fault matrix.
pub fn all_scenarios() -> Vec<(&'static str, &'static str)> {
    Scenario::all()
        .iter()
        .map(|s| (s.name(), s.description()))
        .collect()
}

struct Bars {
    multi: MultiProgress,
    current: std::sync::Mutex<Option<ProgressBar>>,
}

impl Progress for Bars {
    fn phase(&self, scenario: &str, pool: &str, phase: &str) {
        if let Some(bar) = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            bar.set_message(format!("{pool:<18} {scenario:<20} {phase}"));
            bar.inc(1);
        }
    }
}

/// Starts what a run needs: the database (a throwaway cluster, or `DATABASE_URL`) and the fault
/// controller (the embedded proxy, or the Toxiproxy at `TOXIPROXY_URL`). Returns the
/// environment and a description of the proxy for the report.
pub async fn environment(seed: u64) -> crate::Result<(Env, String)> {
    // Settings are checked before anything starts.
    let remote = match std::env::var("TOXIPROXY_URL") {
        Ok(url) if !url.trim().is_empty() => {
            let listen = listen_address(std::env::var("TOXIPROXY_LISTEN").ok().as_deref())
                .map_err(crate::UsageError::Setting)?;
            Some((url, listen))
        }
        _ => None,
    };
    let db = tokio::task::spawn_blocking(Database::from_env).await??;
    let (faults, listen, proxy_desc) = match remote {
        Some((url, listen)) => {
            let client = ToxiproxyClient::new(&url);
            client.request("GET", "/version", None).await?;
            (
                Arc::new(client) as Arc<dyn FaultController>,
                listen,
                format!("Toxiproxy at {url}"),
            )
        }
        None => (
            Arc::new(Proxies::new(seed)) as Arc<dyn FaultController>,
            "127.0.0.1:0".to_string(),
            "embedded".to_string(),
        ),
    };
    db.check_reachable(std::time::Duration::from_secs(10))
        .await?;
    let upstream = match std::env::var("TOXIPROXY_UPSTREAM") {
        Ok(u) if !u.trim().is_empty() => u,
        _ => Env::host_port(&db.url())?,
    };
    let env = Env {
        db,
        faults,
        listen,
        upstream,
        seed,
        made: Default::default(),
    };
    Ok((env, proxy_desc))
}

/// Where a remote Toxiproxy server should make the suite's proxies listen, from
/// `TOXIPROXY_LISTEN`: `HOST` (any free port) or `HOST:PORT`; unset means `127.0.0.1:0`.
///
/// # Errors
/// A value that is neither, with the expected form.
pub fn listen_address(value: Option<&str>) -> Result<String, String> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok("127.0.0.1:0".into());
    };
    let bad = |why: &str| {
        format!(
            "TOXIPROXY_LISTEN=`{value}` {why}: expected HOST or HOST:PORT where the Toxiproxy server can listen, e.g. 127.0.0.1 (any free port) or 0.0.0.0:25433"
        )
    };
    let host_ok = |h: &str| {
        !h.is_empty()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    if let Ok(ip) = value.parse::<std::net::Ipv6Addr>() {
        return Ok(format!("[{ip}]:0"));
    }
    if let Ok(addr) = value.parse::<std::net::SocketAddr>() {
        return Ok(addr.to_string());
    }
    match value.rsplit_once(':') {
        None if host_ok(value) => Ok(format!("{value}:0")),
        None => Err(bad("is not a host name or address")),
        Some((host, port)) => {
            if port.parse::<u16>().is_err() {
                return Err(bad("has a port that is not a number from 0 to 65535"));
            }
            if !host_ok(host) {
                return Err(bad("has a host that is not a host name or address"));
            }
            Ok(value.to_string())
        }
    }
}

/// What a run will do, in order: checked before anything starts, so a name that matches no
/// scenario is refused without starting a database.
///
/// # Errors
/// [`crate::UsageError`] naming every unknown scenario, or when nothing is left to run.
pub fn plan(options: &Options) -> crate::Result<Vec<(Scenario, PoolKind)>> {
    let known: Vec<&str> = Scenario::all().iter().map(|s| s.name()).collect();
    let unknown: Vec<String> = options
        .scenarios
        .iter()
        .filter(|s| !known.contains(&s.as_str()))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(UsageError::UnknownScenario { names: unknown }.into());
    }
    if let Some(fault_plan) = &options.fault_plan {
        if !options.scenarios.is_empty() {
            return Err(UsageError::PlanWithScenarios.into());
        }
        if fault_plan.cluster.is_some() {
            return Err(UsageError::ClusterPlan.into());
        }
        fault_plan.kernel_ready()?;
        return Ok(options
            .pool
            .kinds()
            .into_iter()
            .map(|kind| (Scenario::Plan(()), kind))
            .collect());
    }
    let wanted =
        |name: &str| options.scenarios.is_empty() || options.scenarios.iter().any(|s| s == name);
    let pools = options.pool.kinds();
    let all: Vec<Scenario> = Scenario::all()
        .into_iter()
        .filter(|s| wanted(s.name()))
        .collect();
    let once = |stage: Stage| -> Vec<(Scenario, PoolKind)> {
        if !pools.contains(&POOL) {
            return Vec::new();
        }
        all.iter()
            .filter(|s| s.stage() == stage)
            .map(|s| (*s, POOL))
            .collect()
    };
    let mut plan = once(Stage::First);
    // A `Named` scenario runs only when `--scenario` names it, never in the default suite.
    let named = |s: &Scenario| options.scenarios.iter().any(|n| n == s.name());
    for kind in &pools {
        for s in all
            .iter()
            .filter(|s| s.stage() == Stage::PerPool || (s.stage() == Stage::Named && named(s)))
        {
            plan.push((*s, *kind));
        }
    }
    plan.extend(once(Stage::Last));
    if plan.is_empty() {
        return Err(UsageError::NothingToRun {
            scenarios: options.scenarios.clone(),
            pool: options.pool.name().to_string(),
        }
        .into());
    }
    Ok(plan)
}

/// Sets up the database and the proxy, runs everything, writes the files. Returns the report.
///
/// # Errors
/// The plan ([`plan`]), the database or the proxy could not be set up, or a file could not be
/// written.
pub async fn run(options: Options) -> crate::Result<ChaosReport> {
    run_until(options, std::future::pending()).await
}

/// [`run`], ended early when `stop` completes (a signal, see [`crate::signals`]): the scenario
/// in progress is dropped (its pools and workload with it), every proxy the run made is
/// deleted (which heals the fault in force), the throwaway cluster is stopped and its
/// directory removed, and the report of the scenarios that finished is written, marked
/// interrupted. Returns [`crate::Error::Interrupted`] when `stop` fired before the database
/// was up (nothing to report).
///
/// # Errors
/// As [`run`].
pub async fn run_until(
    options: Options,
    stop: impl std::future::Future<Output = Interrupt>,
) -> crate::Result<ChaosReport> {
    crate::scenario::logs::start();
    let plan = plan(&options)?;
    tokio::pin!(stop);
    let (mut env, proxy_desc) = tokio::select! {
        env = environment(options.seed) => env?,
        signal = &mut stop => return Err(crate::Error::Interrupted(signal)),
    };
    let timing = Timing::new(options.quick);
    let lag = crate::lag::LagMonitor::start();

    let bars = Bars {
        multi: MultiProgress::new(),
        current: std::sync::Mutex::new(None),
    };
    let repeat = options.repeat.max(1);
    let runs: Vec<(Scenario, PoolKind, u32)> = plan
        .iter()
        .flat_map(|(s, k)| (1..=repeat).map(move |i| (*s, *k, i)))
        .collect();
    let overall = bars.multi.add(ProgressBar::new(runs.len() as u64));
    overall.set_style(
        ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} scenarios, {elapsed}")
            .unwrap()
            .progress_chars("=> "),
    );
    overall.set_prefix("chaos");
    let mut report = ChaosReport {
        version: env!("CARGO_PKG_VERSION").to_string(),
        seed: options.seed,
        quick: options.quick,
        database: env.db.report_label(),
        proxy: proxy_desc,
        scenarios: Vec::new(),
        repeat,
        repeats: Vec::new(),
        lag: None,
        interrupted: None,
    };
    for (scenario, kind, index) in &runs {
        let (name, kind) = (scenario.name(), *kind);
        env.seed = repeat_seed(options.seed, *index);
        let ctx = Ctx {
            env: &env,
            timing,
            progress: &bars,
            fault_plan: options.fault_plan.as_ref(),
            load: options.load,
        };
        let bar = bars.multi.add(ProgressBar::new(4));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>8} [{bar:10}] {msg}")
                .unwrap()
                .progress_chars("=> "),
        );
        bar.set_prefix("running");
        *bars.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
        let work = scenario.run(&ctx, kind);
        let began = tokio::time::Instant::now();
        let mut r = tokio::select! {
            r = work => r,
            signal = &mut stop => {
                bar.abandon_with_message(format!("{:<18} {name:<20} interrupted by {signal}", kind.name()));
                report.interrupted = Some(format!(
                    "{signal} during {} / {name}, after {} of {} scenarios",
                    kind.name(),
                    report.scenarios.len(),
                    runs.len()
                ));
                break;
            }
        };
        r.ours = kind.is_ours();
        if repeat > 1 {
            r.repeat = Some(*index);
            r.seed = Some(env.seed);
        }
        r.judge_lag(lag.window(began, tokio::time::Instant::now()));
        bar.set_prefix(r.verdict().mark());
        let which = if repeat > 1 {
            format!("{name} #{index}")
        } else {
            name.to_string()
        };
        let line = format!("{:<18} {which:<20} {}", kind.name(), summary(&r));
        if bars.multi.is_hidden() {
            // Not a terminal (CI, a pipe): one line per scenario instead of bars.
            eprintln!(
                "chaos: [{}/{}] {:<7} {line}",
                overall.position() + 1,
                runs.len(),
                r.verdict().mark()
            );
        }
        bar.finish_with_message(line);
        overall.inc(1);
        report.scenarios.push(r);
    }
    report.lag = Some(lag.whole());
    if repeat > 1 {
        report.repeats = report.repeat_summaries();
    }
    drop(lag);
    if report.interrupted.is_some() {
        overall.abandon();
        // Bounded: a remote Toxiproxy that stopped answering must not hold the exit.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), env.heal_all()).await;
        drop(env); // the cluster stops here and its directory goes
    } else {
        overall.finish();
    }
    write_files(&report, &options.out)?;
    Ok(report)
}

fn summary(r: &crate::report::ScenarioReport) -> String {
    let p = &r.phases;
    let rec = r
        .metrics
        .get("recovery_ms")
        .map_or(String::new(), |v| format!(", recovery {v:.0} ms"));
    if p.total() == 0 {
        return format!("{} criteria", r.criteria.len());
    }
    let all = [p.before, p.during, p.recovering, p.after];
    format!(
        "ok {} fail {} info {}{rec}",
        all.iter().map(|c| c.ok).sum::<u64>(),
        all.iter().map(|c| c.fail).sum::<u64>(),
        all.iter().map(|c| c.info).sum::<u64>()
    )
}

/// Writes every format of the report ([`crate::report::RENDERERS`]), one SVG per scenario and the
/// histories (history/<scenario>.jsonl).
pub fn write_files(report: &ChaosReport, out: &Path) -> crate::Result<()> {
    use crate::error::{create_dir_all, write};
    create_dir_all(out.join("history"))?;
    for renderer in crate::report::RENDERERS {
        write(out.join(renderer.file), (renderer.render)(report))?;
    }
    for s in &report.scenarios {
        // The pools of a scenario share axes, so their timelines compare when stacked.
        let axes = svg::Axes::of(report.scenarios.iter().filter(|o| o.name == s.name));
        write(
            out.join(format!("{}.svg", s.slug())),
            svg::timeline_on(s, axes),
        )?;
        let lines: Vec<String> = s
            .ops
            .iter()
            .map(|op| serde_json::to_string(op).expect("serializable"))
            .collect();
        write(
            out.join("history").join(format!("{}.jsonl", s.slug())),
            lines.join("\n"),
        )?;
    }
    Ok(())
}

/// A seed for a run that was given none: the clock's nanoseconds and the process id, so two
/// runs started in the same second (or the same nanosecond, in two processes) differ. Kept
/// below 2^53 so that JSON readers using doubles keep it exact.
pub fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    (nanos ^ u64::from(std::process::id()).rotate_left(40)) % (1 << 53)
}

/// `target/chaos/<UTC time>-<pid>/`.
pub fn default_out() -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // The process id keeps two runs started in the same second apart.
    PathBuf::from(format!(
        "target/chaos/{y:04}{m:02}{d:02}-{:02}{:02}{:02}-{}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        std::process::id()
    ))
}

#[cfg(test)]
mod tests {
    use super::{default_out, fresh_seed, listen_address};

    #[test]
    fn two_runs_in_the_same_second_get_their_own_seed_and_directory() {
        let seeds: std::collections::BTreeSet<u64> = (0..100).map(|_| fresh_seed()).collect();
        assert!(seeds.len() > 90, "{} distinct of 100", seeds.len());
        assert!(seeds.iter().all(|s| *s < 1 << 53));
        let out = default_out().to_string_lossy().into_owned();
        assert!(out.ends_with(&format!("-{}", std::process::id())), "{out}");
    }

    #[test]
    fn the_ha_scenarios_run_only_when_named() {
        let options = |scenarios: &[&str]| super::Options {
            pool: crate::peers::PoolChoice::POOL,
            scenarios: scenarios.iter().map(|s| s.to_string()).collect(),
            seed: 1,
            quick: true,
            out: std::path::PathBuf::from("unused"),
            fault_plan: None,
            load: Default::default(),
            repeat: 1,
        };
        let default = super::plan(&options(&[])).unwrap();
        assert!(!default.is_empty());
        assert!(default.iter().all(|(s, _)| !s.name().starts_with("ha_")));
        let named = super::plan(&options(&["ha_switchover"])).unwrap();
        assert!(!named.is_empty());
        assert!(named.iter().all(|(s, _)| s.name() == "ha_switchover"));
    }

    #[test]
    fn toxiproxy_listen_takes_a_host_or_host_and_port() {
        assert_eq!(listen_address(None).unwrap(), "127.0.0.1:0");
        assert_eq!(listen_address(Some("127.0.0.1")).unwrap(), "127.0.0.1:0");
        assert_eq!(
            listen_address(Some("0.0.0.0:25433")).unwrap(),
            "0.0.0.0:25433"
        );
        assert_eq!(listen_address(Some("toxiproxy")).unwrap(), "toxiproxy:0");
        assert_eq!(listen_address(Some("::1")).unwrap(), "[::1]:0");
        assert_eq!(listen_address(Some("[::1]:9000")).unwrap(), "[::1]:9000");
        for bad in [
            "127.0.0.1:http",
            "127.0.0.1:70000",
            ":5432",
            "a b",
            "host:1:2",
        ] {
            let e = listen_address(Some(bad)).unwrap_err();
            assert!(e.contains("expected HOST or HOST:PORT"), "{bad}: {e}");
        }
    }
}
