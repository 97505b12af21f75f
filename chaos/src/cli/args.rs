//! The command line's arguments (clap): every command, flag and help text of `chaos`.

use clap::{Parser, Subcommand};

/// Fault injection for PostgreSQL connection pools.
#[derive(Debug, Parser)]
#[command(name = "chaos", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
pub struct ApiHost {
    /// The API (`chaos serve`, or a Toxiproxy): http://HOST:PORT.
    #[arg(
        long,
        env = "TOXIPROXY_URL",
        default_value = "http://127.0.0.1:8474",
        global = true
    )]
    pub host: String,
}

#[derive(Debug, clap::Args)]
pub struct ProxyCli {
    #[command(flatten)]
    pub api: ApiHost,
    #[command(subcommand)]
    pub verb: ProxyCmd,
}

#[derive(Debug, Subcommand)]
pub enum ProxyCmd {
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
pub struct ToxicCli {
    #[command(flatten)]
    pub api: ApiHost,
    #[command(subcommand)]
    pub verb: ToxicCmd,
}

#[derive(Debug, Subcommand)]
pub enum ToxicCmd {
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

pub const EXEC_HELP: &str = "\
The command runs in a process group of its own with DATABASE_URL pointing through the proxy (to
a throwaway PostgreSQL, or to the DATABASE_URL given to chaos), CHAOS_DIRECT_URL at the server
itself (for checks that must bypass the faults), TOXIPROXY_URL at an API driving that proxy (it
may add faults of its own) and CHAOS_PROXY naming it. The plan's times count from its start, or
from when it is ready (--ready). Only the command is waited for: at its end, whatever it left
running in its group gets SIGTERM, then SIGKILL after 5 s. The server is watched throughout; its
log is kept in the report's folder (server.log).

Exit status:
  0        the command exited 0, every fault ran, the server behaved
  N        the command's own status when it failed (128 + N when signal N ended it)
  2        the plan was refused (every problem is listed with its line), the command could not
           start, or it was never ready (--ready-timeout; the plan never started)
  3        the command exited 0 but the plan did not run in full: a fault could not be applied,
           or was not reached because the command ended first (allow with --allow-unreached)
  4        the command exited 0 but the server stopped, restarted or refused connections when no
           planned fault asked for it (see server.log)
  130/143/129  a signal ended chaos exec (the command's group gets SIGTERM, then SIGKILL after 5 s)

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
pub struct ExecArgs {
    /// The fault plan (TOML).
    #[arg(long)]
    pub plan: std::path::PathBuf,
    /// Seed of the proxy's random choices (jitter, toxicity rolls).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where the report files go (default target/chaos/<time>-<pid>/).
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// The run's name in the console, the report and the timeline (default: the command's
    /// first word).
    #[arg(long)]
    pub name: Option<String>,
    /// Start the plan's clock when the service is ready, not when it starts: tcp:PORT,
    /// tcp:HOST:PORT (accepts a connection), line:REGEX (a line of its output matches) or
    /// cmd:COMMAND (exits 0, run with sh -c every 200 ms).
    #[arg(long, value_name = "HOW")]
    pub ready: Option<crate::exec::Ready>,
    /// How long to wait for --ready: past it the command's group is stopped and chaos exec
    /// exits 2.
    #[arg(long, value_parser = duration, default_value = "30s")]
    pub ready_timeout: std::time::Duration,
    /// A planned fault the command did not live to see is not an error (by default it makes
    /// an exit 0 into 3).
    #[arg(long)]
    pub allow_unreached: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

/// How `chaos run` ends, for `--help`.
pub const RUN_VERDICTS: &str = "\
How a run ends:
  PASSED            every scenario asked for was measured, and the pool met every criterion (exit 0)
  FAILED            the pool missed a criterion; peers missing theirs is a result, not a failure (exit 1)
  INCOMPLETE        the pool met every criterion that was measured, but some scenarios could not run
                    (listed with the reason, e.g. a server restart against a DATABASE_URL this process
                    does not own); they count neither as passed nor as failed (exit 0)
  NOTHING MEASURED  no scenario asked for could run; the reasons and what to change are printed (exit 2)
  INTERRUPTED       SIGINT (Ctrl-C), SIGTERM or SIGHUP ended the run: the proxies, pools and cluster are
                    stopped, and the report of the scenarios that finished is written (exit 130/143/129)

Safety and timing: a safety criterion is a fact read from the history (an acknowledged write
missing, a dirty checkout, a leak, a request unanswered long past its hard deadline) and a miss is
always FAIL. A timing criterion (a recovery time, a latency, a staleness) is judged against the
run's own scheduling lag: a ticker due every 5 ms records how late it wakes, and each scenario
reports p50/p99/max over its window (at least the 2 s before its end). A timing criterion that misses its bound by no more than the
largest lag measured in its window is UNKNOWN (the run is INCOMPLETE, with the lag as the reason),
as is a latency of database round trips (SC-002) that misses by no more than its baseline, the same
query on a bare connection timed in the same window; a larger miss, or a figure that never came,
is FAIL.

--repeat N runs each (pool, scenario) N times, repeat 1 with the run's seed and the others with
seeds derived from it, and reports per criterion the passes out of N, the seeds that failed and
the spread of each timing figure. The run FAILS when a safety criterion failed in any repeat, or
a timing criterion in every repeat; a timing criterion that failed in only some is FLAKY, with
its rate.

Environment: DATABASE_URL, PG_BIN, TOXIPROXY_URL, TOXIPROXY_LISTEN (HOST or HOST:PORT where the
Toxiproxy server makes the suite's proxies listen; default 127.0.0.1:0), TOXIPROXY_UPSTREAM.";

#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// How long to run: 60s, 30m, 24h... Ctrl-C (or SIGTERM) ends it early with a report.
    #[arg(long, default_value = "10m", value_parser = duration)]
    pub duration: std::time::Duration,
    /// Seed of every random choice (workload mix, which fault, when, for how long).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where report.json, report.txt and soak.svg go (default target/chaos/soak-<time>/);
    /// they are rewritten at every checkpoint, so a killed run leaves its report.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// Mean time between faults (default: an eighth of the run, between 10s and 3m).
    #[arg(long, value_parser = duration)]
    pub fault_every: Option<std::time::Duration>,
    /// Sampling period (default: a two-hundredth of the run, between 1s and 5s).
    #[arg(long, value_parser = duration)]
    pub sample_every: Option<std::time::Duration>,
    /// Samples before this are left out of the trend fit (default: a tenth of the run, between
    /// 10s and 30m).
    #[arg(long, value_parser = duration)]
    pub warmup: Option<std::time::Duration>,
    /// The pool's max_size (bursts reach 10x this).
    #[arg(long, default_value_t = 10)]
    pub max_size: usize,
    /// Run on the HA cluster instead of the single server behind the proxy: Patroni + etcd,
    /// each node a host of its own (root, patroni, etcd), with the HA faults (the leader
    /// killed or isolated, a switchover, a replica killed, the clients cut off, etcd lost).
    #[arg(long, value_enum)]
    pub cluster: Option<ClusterKind>,
    /// With --cluster: how the pool reaches the primary (the multi-host URL, or HAProxy).
    #[arg(long, value_enum, requires = "cluster")]
    pub route: Option<RouteArg>,
}

/// The kinds of cluster `--cluster` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClusterKind {
    /// Patroni 3 nodes + etcd, synchronous_mode, at Patroni's documented minimums.
    Patroni,
}

/// The routes `--route` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RouteArg {
    /// The multi-host URL with target_session_attrs=read-write.
    Url,
    /// HAProxy, checking each node's Patroni /primary.
    Haproxy,
}

/// A fresh seed when none is given (printed, so the run can be replayed).
pub fn seed_from_clock() -> u64 {
    crate::suite::fresh_seed()
}

pub fn duration(text: &str) -> Result<std::time::Duration, String> {
    pool::parse_duration(text)
}

#[derive(Debug, Default, clap::Args)]
pub struct RunArgs {
    /// Which pools to run: ours (through `acquire` and through the shared `Pool::query`),
    /// deadpool-postgres, bb8-postgres, sqlx, or all side by side (peers run at their defaults
    /// and with recommended timeouts).
    #[arg(long, value_enum, default_value = "pool")]
    pub pool: Option<crate::peers::PoolChoice>,
    /// Run only this scenario (repeatable); see --list.
    #[arg(long = "scenario", value_name = "NAME")]
    pub scenarios: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// Seed of every random choice (jitter, toxicity, slicing): the same seed replays a run.
    #[arg(long)]
    pub seed: Option<u64>,
    /// CI-sized run (under a minute for one pool).
    #[arg(long)]
    pub quick: bool,
    /// Where the report files go (default target/chaos/<time>-<pid>/).
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// What to print at the end: any format of the report (each is also written to its file).
    #[arg(
        long,
        default_value = "text",
        value_parser = clap::builder::PossibleValuesParser::new(crate::report::RENDERERS.iter().map(|r| r.name))
    )]
    pub format: Option<String>,
    /// Run this fault plan (TOML, as for `chaos exec`) under the suite's load instead of the
    /// built-in scenarios.
    #[arg(long, value_name = "PLAN", conflicts_with = "scenarios")]
    pub plan: Option<std::path::PathBuf>,
    /// Run each (pool, scenario) this many times, with seeds derived from --seed, and report
    /// passes out of N, the failing seeds and the spread of every timing figure (see below).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub repeat: u32,
    /// The load a --plan runs under: the suite's steady workers and bursts, or a service's
    /// open loop (400 requests/s, 200 with --quick, each with a 2 s deadline; the criteria of
    /// the service_* scenarios).
    #[arg(long, value_enum, requires = "plan")]
    pub load: Option<crate::suite::Load>,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address of the API (loopback by default: anyone who reaches it can cut connections).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port of the API (Toxiproxy's default is 8474).
    #[arg(long, default_value_t = 8474)]
    pub port: u16,
    /// A JSON list of proxies to create at start, as for `POST /populate`
    /// (e.g. fixtures/toxiproxy.json).
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Seed of every random choice (jitter, toxicity, slicing), so a run can be replayed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}
