//! The `chaos` command line: argument parsing and tracing set-up only.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Fault injection for PostgreSQL connection pools.
#[derive(Debug, Parser)]
#[command(name = "chaos", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the chaos suite against a throwaway PostgreSQL (or DATABASE_URL): the default.
    #[command(after_help = RUN_VERDICTS)]
    Run(RunArgs),
    /// A quick start/crash/restart check of the throwaway cluster.
    Smoke,
    /// Serve the Toxiproxy-compatible HTTP API (any Toxiproxy client can drive it).
    Serve(ServeArgs),
    /// Long-running leak soak: a mixed workload with random faults; fails if anything grows.
    #[command(
        after_help = "Exit status: 0 leak-free; 1 a series grew past its allowance or an end check failed; 2 too little was measured for a verdict (too short to fit a trend)."
    )]
    Soak(SoakArgs),
    /// Run any command under a fault plan: DATABASE_URL points it through the proxy.
    #[command(after_help = EXEC_HELP)]
    Exec(ExecArgs),
    /// Proxies of `chaos serve` or any Toxiproxy: list, inspect, create, toggle, delete.
    Proxy(ProxyCli),
    /// Toxics of a proxy of `chaos serve` or any Toxiproxy: add, update, remove.
    Toxic(ToxicCli),
}

/// Where `chaos proxy` and `chaos toxic` send their requests.
#[derive(Debug, clap::Args)]
struct ApiHost {
    /// The API (`chaos serve`, or a Toxiproxy): http://HOST:PORT.
    #[arg(
        long,
        env = "TOXIPROXY_URL",
        default_value = "http://127.0.0.1:8474",
        global = true
    )]
    host: String,
}

#[derive(Debug, clap::Args)]
struct ProxyCli {
    #[command(flatten)]
    api: ApiHost,
    #[command(subcommand)]
    verb: ProxyCmd,
}

#[derive(Debug, Subcommand)]
enum ProxyCmd {
    /// Every proxy, one line each.
    List,
    /// One proxy and its toxics.
    Inspect { name: String },
    /// A new proxy.
    Create {
        name: String,
        /// host:port to listen on (port 0: any free one).
        #[arg(long)]
        listen: String,
        /// host:port to forward to.
        #[arg(long)]
        upstream: String,
    },
    /// Disable an enabled proxy (its connections are cut), or enable a disabled one.
    Toggle { name: String },
    /// Delete a proxy and its toxics.
    Delete { name: String },
}

#[derive(Debug, clap::Args)]
struct ToxicCli {
    #[command(flatten)]
    api: ApiHost,
    #[command(subcommand)]
    verb: ToxicCmd,
}

#[derive(Debug, Subcommand)]
enum ToxicCmd {
    /// Add a toxic to a proxy, e.g. `chaos toxic add pg --type latency -a latency=100 -a jitter=10`.
    Add {
        proxy: String,
        /// latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data, and ours:
        /// refuse, peer_lost, handshake_hang, hold.
        #[arg(long = "type", short = 't')]
        kind: String,
        /// Its name (default TYPE_STREAM).
        #[arg(long, short = 'n')]
        name: Option<String>,
        /// upstream (client to server) or downstream (default).
        #[arg(long, short = 's')]
        stream: Option<String>,
        /// 0 to 1: the chance it applies to a connection (default 1).
        #[arg(long)]
        toxicity: Option<f64>,
        /// An attribute, key=value (repeatable).
        #[arg(long = "attribute", short = 'a', value_name = "KEY=VALUE")]
        attributes: Vec<String>,
        /// Remove the toxic after this long (a timed toxic, ours), e.g. 5s.
        #[arg(long, value_parser = duration)]
        duration: Option<std::time::Duration>,
    },
    /// Change a toxic's attributes or toxicity.
    Update {
        proxy: String,
        toxic: String,
        #[arg(long)]
        toxicity: Option<f64>,
        /// An attribute, key=value (repeatable).
        #[arg(long = "attribute", short = 'a', value_name = "KEY=VALUE")]
        attributes: Vec<String>,
    },
    /// Remove a toxic.
    Remove { proxy: String, toxic: String },
}

const EXEC_HELP: &str = "\
The command runs with DATABASE_URL pointing through the proxy (to a throwaway PostgreSQL, or
to the DATABASE_URL given to chaos), TOXIPROXY_URL at an API driving that proxy (it may add
faults of its own) and CHAOS_PROXY naming it. The plan's times count from its start.

Exit status: the command's (128 + N when signal N ended it); 3 when it exited 0 but a fault of
the plan could not be applied; 2 when the plan was refused (every problem is listed with its
line) or the command could not start; 130/143/129 when a signal ended chaos exec (the command
gets SIGTERM, then SIGKILL after 5 s).

Plan example:
  [[fault]]
  at = \"1s\"
  duration = \"2s\"
  kind = \"down\"

  [[fault]]
  at = \"4s\"
  duration = \"2s\"
  kind = \"latency\"
  stream = \"downstream\"
  attributes = { latency = 300, jitter = 50 }";

#[derive(Debug, clap::Args)]
struct ExecArgs {
    /// The fault plan (TOML).
    #[arg(long)]
    plan: std::path::PathBuf,
    /// Seed of the proxy's random choices (jitter, toxicity rolls).
    #[arg(long)]
    seed: Option<u64>,
    /// Where the report files go (default target/chaos/<time>-<pid>/).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<std::ffi::OsString>,
}

/// How `chaos run` ends, for `--help`.
const RUN_VERDICTS: &str = "\
How a run ends:
  PASSED            every scenario asked for was measured, and the pool met every criterion (exit 0)
  FAILED            the pool missed a criterion; peers missing theirs is a result, not a failure (exit 1)
  INCOMPLETE        the pool met every criterion that was measured, but some scenarios could not run
                    (listed with the reason, e.g. a server restart against a DATABASE_URL this process
                    does not own); they count neither as passed nor as failed (exit 0)
  NOTHING MEASURED  no scenario asked for could run; the reasons and what to change are printed (exit 2)
  INTERRUPTED       SIGINT (Ctrl-C), SIGTERM or SIGHUP ended the run: the proxies, pools and cluster are
                    stopped, and the report of the scenarios that finished is written (exit 130/143/129)

Environment: DATABASE_URL, PG_BIN, TOXIPROXY_URL, TOXIPROXY_LISTEN (HOST or HOST:PORT where the
Toxiproxy server makes the suite's proxies listen; default 127.0.0.1:0), TOXIPROXY_UPSTREAM.";

/// An error with its own exit status.
#[derive(Debug)]
struct Exit(u8, String);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for Exit {}

/// What to change when scenarios could not run, from their reasons.
fn what_to_change(unavailable: &[String]) -> String {
    let mut hints = Vec::new();
    if unavailable
        .iter()
        .any(|u| u.contains("could not create the proxy"))
    {
        hints.push("the Toxiproxy server could not make the scenario's proxy: set TOXIPROXY_LISTEN to HOST or HOST:PORT where that server can listen (e.g. 127.0.0.1, or 0.0.0.0:25433 for docker-compose), and TOXIPROXY_UPSTREAM to the database as that server sees it");
    }
    if unavailable
        .iter()
        .any(|u| u.contains("needs a throwaway cluster"))
    {
        hints.push("scenarios that stop the server need a cluster of chaos's own: unset DATABASE_URL, or leave those scenarios out with --scenario");
    }
    if unavailable
        .iter()
        .any(|u| u.contains("fault could not be applied"))
    {
        hints.push("the fault controller refused the fault: check that the Toxiproxy server at TOXIPROXY_URL is reachable and supports the toxic");
    }
    if hints.is_empty() {
        hints.push("see the reasons above");
    }
    hints.join("; ")
}

#[derive(Debug, clap::Args)]
struct SoakArgs {
    /// How long to run: 60s, 30m, 24h... Ctrl-C (or SIGTERM) ends it early with a report.
    #[arg(long, default_value = "10m", value_parser = duration)]
    duration: std::time::Duration,
    /// Seed of every random choice (workload mix, which fault, when, for how long).
    #[arg(long)]
    seed: Option<u64>,
    /// Where report.json, report.txt and soak.svg go (default target/chaos/soak-<time>/);
    /// they are rewritten at every checkpoint, so a killed run leaves its report.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Mean time between faults (default: an eighth of the run, between 10s and 3m).
    #[arg(long, value_parser = duration)]
    fault_every: Option<std::time::Duration>,
    /// Sampling period (default: a two-hundredth of the run, between 1s and 5s).
    #[arg(long, value_parser = duration)]
    sample_every: Option<std::time::Duration>,
    /// Samples before this are left out of the trend fit (default: a tenth of the run, between
    /// 10s and 30m).
    #[arg(long, value_parser = duration)]
    warmup: Option<std::time::Duration>,
    /// The pool's max_size (bursts reach 10x this).
    #[arg(long, default_value_t = 10)]
    max_size: usize,
}

/// A fresh seed when none is given (printed, so the run can be replayed).
fn seed_from_clock() -> u64 {
    chaos::suite::fresh_seed()
}

fn duration(text: &str) -> Result<std::time::Duration, String> {
    pool::parse_duration(text)
}

#[derive(Debug, Default, clap::Args)]
struct RunArgs {
    /// Which pools to run: ours (through `acquire` and through the shared `Pool::query`),
    /// deadpool-postgres, bb8-postgres, sqlx, or all side by side (peers run at their defaults
    /// and with recommended timeouts).
    #[arg(long, value_enum, default_value = "pool")]
    pool: Option<chaos::peers::PoolChoice>,
    /// Run only this scenario (repeatable); see --list.
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Seed of every random choice (jitter, toxicity, slicing): the same seed replays a run.
    #[arg(long)]
    seed: Option<u64>,
    /// CI-sized run (under a minute for one pool).
    #[arg(long)]
    quick: bool,
    /// Where the report files go (default target/chaos/<time>-<pid>/).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// What to print at the end.
    #[arg(long, value_enum, default_value = "text")]
    format: Option<Format>,
    /// Run this fault plan (TOML, as for `chaos exec`) under the suite's load instead of the
    /// built-in scenarios.
    #[arg(long, value_name = "PLAN", conflicts_with = "scenarios")]
    plan: Option<std::path::PathBuf>,
    /// The load a --plan runs under: the suite's steady workers and bursts, or a service's
    /// open loop (400 requests/s, 200 with --quick, each with a 2 s deadline; the criteria of
    /// the service_* scenarios).
    #[arg(long, value_enum, requires = "plan")]
    load: Option<chaos::suite::Load>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
    Markdown,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address of the API (loopback by default: anyone who reaches it can cut connections).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port of the API (Toxiproxy's default is 8474).
    #[arg(long, default_value_t = 8474)]
    port: u16,
    /// A JSON list of proxies to create at start, as for `POST /populate`
    /// (e.g. fixtures/toxiproxy.json).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Seed of every random choice (jitter, toxicity, slicing), so a run can be replayed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> ExitCode {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        .with(chaos::scenario::logs::CaptureLayer)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    // First of all, so no signal can kill the process before it can clean up.
    let signals = match runtime.block_on(async { chaos::signals::Signals::install() }) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("error: could not install the signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command.unwrap_or(Command::Run(RunArgs::default())) {
        Command::Run(args) => runtime.block_on(run(args, signals)),
        Command::Smoke => runtime.block_on(async move {
            // The handlers are installed for every command, so each one must heed them.
            let mut signals = signals;
            tokio::select! {
                r = smoke() => r,
                signal = signals.recv() => Err(Exit(
                    signal.exit_code(),
                    format!("interrupted by {signal}; the throwaway cluster is stopped"),
                )
                .into()),
            }
        }),
        Command::Serve(args) => runtime.block_on(serve(args, signals)),
        Command::Soak(args) => runtime.block_on(soak(args, signals)),
        Command::Exec(args) => runtime.block_on(exec(args, signals)),
        Command::Proxy(args) => runtime.block_on(proxy_cli(args)),
        Command::Toxic(args) => runtime.block_on(toxic_cli(args)),
    };
    // Work still running (a pool's tasks, a cluster start that a signal cut short) gets a
    // moment to end; a cluster it leaves is stopped by its watchdog when this process exits.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<Exit>() {
                Some(Exit(code, _)) => ExitCode::from(*code),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// The next signal, remembered in `fired` so the exit status can name it.
async fn recorded(
    signals: &mut chaos::signals::Signals,
    fired: &std::sync::Mutex<Option<chaos::signals::Interrupt>>,
) -> chaos::signals::Interrupt {
    let signal = signals.recv().await;
    *fired.lock().unwrap_or_else(|e| e.into_inner()) = Some(signal);
    signal
}

async fn run(args: RunArgs, mut signals: chaos::signals::Signals) -> anyhow::Result<()> {
    if args.list {
        for (name, what) in chaos::suite::all_scenarios() {
            println!("{name:<20} {what}");
        }
        return Ok(());
    }
    let seed = args.seed.unwrap_or_else(seed_from_clock);
    let out = args.out.unwrap_or_else(chaos::suite::default_out);
    let fault_plan = match &args.plan {
        Some(path) => Some(chaos::plan::Plan::from_file(path).map_err(|e| Exit(2, e.to_string()))?),
        None => None,
    };
    let options = chaos::suite::Options {
        pool: args.pool.unwrap_or(chaos::peers::PoolChoice::POOL),
        scenarios: args.scenarios,
        seed,
        quick: args.quick,
        out: out.clone(),
        fault_plan,
        load: args.load.unwrap_or_default(),
    };
    // Refused before anything starts: an unknown scenario, a bad DATABASE_URL.
    chaos::suite::plan(&options)?;
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => {
            chaos::postgres::tcp_target(&url)?;
            eprintln!(
                "chaos: using DATABASE_URL ({}) and starting the proxy (seed {seed})...",
                chaos::postgres::redact_url(&url)
            );
        }
        _ => eprintln!("chaos: starting a throwaway database and the proxy (seed {seed})..."),
    }
    let fired = std::sync::Mutex::new(None);
    let report = match chaos::suite::run_until(options, recorded(&mut signals, &fired)).await {
        Err(chaos::Error::Interrupted(signal)) => {
            return Err(Exit(
                signal.exit_code(),
                format!("interrupted by {signal} while starting; nothing was left running"),
            )
            .into());
        }
        other => other?,
    };
    match args.format.unwrap_or(Format::Text) {
        Format::Text => println!("{}", report.to_text()),
        Format::Json => println!("{}", report.to_json()),
        Format::Markdown => println!("{}", report.to_markdown()),
    }
    eprintln!(
        "chaos: report written to {}/ (index.html, report.json, report.md, *.svg, history/)",
        out.display()
    );
    match report.verdict() {
        chaos::report::RunVerdict::Interrupted { by } => {
            let code = fired
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .map_or(130, chaos::signals::Interrupt::exit_code);
            Err(Exit(
                code,
                format!("interrupted ({by}); the proxies, pools and the throwaway cluster were stopped, and the report covers the scenarios that finished"),
            )
            .into())
        }
        chaos::report::RunVerdict::Passed => Ok(()),
        chaos::report::RunVerdict::Incomplete { unavailable } => {
            eprintln!(
                "chaos: INCOMPLETE: {} of {} scenarios could not run and count neither as passed nor as failed; to measure them: {}",
                unavailable.len(),
                report.scenarios.len(),
                what_to_change(&unavailable)
            );
            Ok(())
        }
        chaos::report::RunVerdict::NothingMeasured { unavailable } => Err(Exit(
            2,
            format!(
                "nothing was measured: none of the {} scenarios asked for could run ({}); {}",
                report.scenarios.len(),
                unavailable.join("; "),
                what_to_change(&unavailable)
            ),
        )
        .into()),
        chaos::report::RunVerdict::Failed => {
            anyhow::bail!("some scenarios of the pool missed their criteria (see the report)")
        }
    }
}

struct SoakProgress {
    bar: Option<indicatif::ProgressBar>,
    planned: std::time::Duration,
    started: std::time::Instant,
}

impl chaos::soak::Progress for SoakProgress {
    fn sample(&self, s: &chaos::soak::Sample, totals: &chaos::soak::Totals, fault: Option<&str>) {
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
    fn checkpoint(&self, r: &chaos::soak::SoakReport) {
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

async fn soak(args: SoakArgs, mut signals: chaos::signals::Signals) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let seed = args.seed.unwrap_or_else(seed_from_clock);
    anyhow::ensure!(
        args.duration >= std::time::Duration::from_secs(20),
        "--duration {:?} is too short to fit a trend; give at least 20s (60s is the smallest useful soak)",
        args.duration
    );
    anyhow::ensure!(args.max_size >= 1, "--max-size must be at least 1");
    let out = args.out.unwrap_or_else(|| {
        let run = chaos::suite::default_out();
        let stamp = run
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        std::path::PathBuf::from(format!("target/chaos/soak-{stamp}"))
    });
    let mut options = chaos::soak::Options::new(args.duration, seed, out.clone());
    options.fault_every = args.fault_every;
    options.sample_every = args.sample_every;
    options.warmup = args.warmup;
    options.max_size = args.max_size;
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
    let report = chaos::soak::run(options, stop, &progress).await?;
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
    if report.verdict == chaos::report::Verdict::Unknown {
        let unknown: Vec<String> = report
            .criteria
            .iter()
            .filter(|c| c.verdict == chaos::report::Verdict::Unknown)
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
    if report.verdict == chaos::report::Verdict::Fail {
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

async fn smoke() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    println!("chaos: starting the database...");
    let db = tokio::task::spawn_blocking(chaos::postgres::Database::from_env).await??;
    println!("chaos: using {}", db.describe());
    chaos::smoke::run(&db, |step| {
        println!("  ok  {:<70} {:>8.1?}", step.name, step.took);
    })
    .await?;
    println!("chaos: smoke run passed in {:.1?}", started.elapsed());
    Ok(())
}

async fn serve(args: ServeArgs, mut signals: chaos::signals::Signals) -> anyhow::Result<()> {
    use anyhow::Context;
    let proxies = std::sync::Arc::new(chaos::proxy::Proxies::new(args.seed));
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read the proxy list {}", path.display()))?;
        let configs: Vec<chaos::proxy::ProxyConfig> = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a JSON list of proxies ({{\"name\", \"listen\", \"upstream\", \"enabled\"}})",
                path.display()
            )
        })?;
        let created = proxies.populate(configs).map_err(|e| {
            anyhow::anyhow!("could not create the proxies of {}: {e}", path.display())
        })?;
        for p in created {
            println!(
                "proxy {} listening on {} -> {}",
                p.name(),
                p.listen(),
                p.upstream()
            );
        }
    }
    let listener = bind_api(&args.host, args.port).await?;
    println!(
        "chaos serve: Toxiproxy API on http://{} (seed {}); Ctrl-C stops",
        listener.local_addr()?,
        args.seed
    );
    chaos::api::serve(listener, proxies, async move {
        let signal = signals.recv().await;
        eprintln!("chaos serve: {signal}: stopping");
    })
    .await?;
    Ok(())
}

/// Binds the API's address, saying which of host and port is wrong when it fails.
async fn bind_api(host: &str, port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    let addrs: Vec<std::net::SocketAddr> = match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => addrs.collect(),
        Err(e) => anyhow::bail!(
            "--host {host} is not an IP address or a name that resolves ({e}); give an address of this machine, e.g. 127.0.0.1 or 0.0.0.0"
        ),
    };
    let mut last = None;
    for addr in &addrs {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some((*addr, e)),
        }
    }
    let Some((addr, e)) = last else {
        anyhow::bail!("--host {host} resolves to no address");
    };
    match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::bail!(
            "port {port} on {addr} is in use: is another Toxiproxy or `chaos serve` running? choose another --port"
        ),
        std::io::ErrorKind::AddrNotAvailable => anyhow::bail!(
            "--host {host} ({addr}) is not an address of this machine; give one of its addresses, e.g. 127.0.0.1 or 0.0.0.0"
        ),
        std::io::ErrorKind::PermissionDenied => anyhow::bail!(
            "port {port} needs privileges to listen on ({e}); choose a port above 1023"
        ),
        _ => anyhow::bail!("could not listen on {addr}: {e}"),
    }
}

async fn exec(args: ExecArgs, mut signals: chaos::signals::Signals) -> anyhow::Result<()> {
    // Refused before anything starts, every problem with its line.
    let plan = chaos::plan::Plan::from_file(&args.plan).map_err(|e| Exit(2, e.to_string()))?;
    let seed = args.seed.unwrap_or_else(seed_from_clock);
    let out = args.out.unwrap_or_else(chaos::suite::default_out);
    eprintln!(
        "chaos exec: {} fault(s) over {:.1} s; starting the database and the proxy (seed {seed})...",
        plan.faults.len(),
        plan.end().as_secs_f64()
    );
    let options = chaos::exec::ExecOptions {
        plan,
        command: args.command,
        out: out.clone(),
        seed,
    };
    let progress = |line: &str| eprintln!("chaos exec: {line}");
    let fired = std::sync::Mutex::new(None);
    let report = match chaos::exec::exec(options, recorded(&mut signals, &fired), &progress).await {
        Ok(report) => report,
        Err(
            e @ (chaos::exec::ExecError::Unsupported(_)
            | chaos::exec::ExecError::Spawn { .. }
            | chaos::exec::ExecError::NoCommand),
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
            .map_or(130, chaos::signals::Interrupt::exit_code);
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

async fn proxy_cli(args: ProxyCli) -> anyhow::Result<()> {
    use chaos::toxictl::ProxyVerb;
    let client = chaos::controller::ToxiproxyClient::new(&args.api.host);
    let verb = match args.verb {
        ProxyCmd::List => ProxyVerb::List,
        ProxyCmd::Inspect { name } => ProxyVerb::Inspect(name),
        ProxyCmd::Create {
            name,
            listen,
            upstream,
        } => ProxyVerb::Create {
            name,
            listen,
            upstream,
        },
        ProxyCmd::Toggle { name } => ProxyVerb::Toggle(name),
        ProxyCmd::Delete { name } => ProxyVerb::Delete(name),
    };
    print!("{}", chaos::toxictl::proxy(&client, verb).await?);
    Ok(())
}

async fn toxic_cli(args: ToxicCli) -> anyhow::Result<()> {
    use chaos::toxictl::ToxicVerb;
    let client = chaos::controller::ToxiproxyClient::new(&args.api.host);
    let verb = match args.verb {
        ToxicCmd::Add {
            proxy,
            kind,
            name,
            stream,
            toxicity,
            attributes,
            duration,
        } => ToxicVerb::Add {
            proxy,
            kind,
            name,
            stream,
            toxicity,
            attributes,
            duration_ms: duration.map(|d| d.as_millis() as u64),
        },
        ToxicCmd::Update {
            proxy,
            toxic,
            toxicity,
            attributes,
        } => ToxicVerb::Update {
            proxy,
            toxic,
            toxicity,
            attributes,
        },
        ToxicCmd::Remove { proxy, toxic } => ToxicVerb::Remove { proxy, toxic },
    };
    print!("{}", chaos::toxictl::toxic(&client, verb).await?);
    Ok(())
}
