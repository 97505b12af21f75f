//! `chaos soak`: a long run of a mixed workload against the pool, with a random fault every few
//! minutes, that fails when something leaks.
//!
//! # What runs
//! - Workers ([`WORKERS`]) send a mix of requests, each through `Pool::acquire`: short queries
//!   (a cached `SELECT 1`), long ones (`pg_sleep` up to 200 ms), transactions (one in four
//!   rolled back), transactions left open by an early return, queries cut by a timeout (the
//!   connection goes back as it is: the pool cancels the query on the server) and requests
//!   whose whole future is dropped at a random point (acquire or query): cancellation as
//!   callers really do it. Every short request also checks that it did not start inside a
//!   transaction an earlier request left open.
//! - Every [`BURST_EVERY`], a burst of `10 x max_size` concurrent requests.
//! - A service's open loop beside them: a short request every [`OPEN_LOOP_EVERY`] whether or
//!   not earlier ones were answered, each dropped at [`OPEN_LOOP_DEADLINE`] (as a service's
//!   504 drops its handler), so hundreds wait at once whenever a fault stops the pool.
//! - Faults: at random times (a mean of `fault_every` apart), a random entry of the fault
//!   matrix ([`MATRIX`]: the proxy's full set, `pg_terminate_backend`, and a crash and
//!   restart of the server when the cluster is ours) for a random window of 2 to 15 s. The
//!   last stretch of the run has no fault, so the pool is seen serving again.
//!
//! # What is measured
//! Every `sample_every`: this process's resident memory, open descriptors and live tokio
//! tasks; the pool's statistics; the server's connections for the soak's `application_name`
//! (asked on a direct connection, not through the proxy); and the requests that ended since
//! the last sample (outcomes, latency percentiles, failures by kind).
//!
//! # The verdict
//! After the warm-up, each of memory, descriptors, tasks and server connections is fitted
//! with a robust slope ([`trend`]); a series whose fitted growth exceeds its stated allowance
//! fails the run, named. After shutdown, every connection the pool opened must be closed, no
//! driver task may be left and the server must show no connection of the soak. A checkpoint
//! (JSON and SVG, with a provisional verdict) is written every [`CHECKPOINT_EVERY`], so a run
//! that is killed still leaves its report; Ctrl-C or SIGTERM ends the run cleanly with the
//! full report.

pub mod report;
pub mod svg;
pub mod trend;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::fault::{self, Fault, MATRIX};
use crate::measure::{open_fds, percentile, rss_mib};
use crate::report::{Criterion, Verdict};
use crate::rng::Rng;
use crate::workload::{Bursts, Spacing, Workload};
pub use report::{EndCheck, FaultEvent, Sample, SoakReport, SoakState, Totals};

/// The soak's `application_name`, by which the server's connections are counted.
pub const APP: &str = "chaos-soak";
/// Concurrent workers of the steady load.
pub const WORKERS: usize = 8;
/// Time between bursts of `10 x max_size` requests.
pub const BURST_EVERY: Duration = Duration::from_secs(15);
/// Time between two requests of the open loop (100 a second).
pub const OPEN_LOOP_EVERY: Duration = Duration::from_millis(10);
/// Each open-loop request is dropped where it stands after this.
pub const OPEN_LOOP_DEADLINE: Duration = Duration::from_secs(2);
/// Time between checkpoints of the report.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(30);
/// Bound on each query (the connection is discarded when it runs out).
pub const QUERY_BOUND: Duration = Duration::from_secs(3);
/// A request still running after this is recorded as a hang (acquire and query bounds plus
/// ample margin).
pub const HANG_CUTOFF: Duration = Duration::from_secs(10);
/// The pool's acquire timeout in the soak.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a soak runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long.
    pub duration: Duration,
    /// Seed of every random choice (workload mix, fault choice and timing, toxics).
    pub seed: u64,
    /// Where report.json and soak.svg go.
    pub out: PathBuf,
    /// Mean time between faults (default: an eighth of the run, between 10 s and 3 min).
    pub fault_every: Option<Duration>,
    /// Sampling period (default: a two-hundredth of the run, between 1 s and 5 s).
    pub sample_every: Option<Duration>,
    /// Samples before this are not fitted (default: a tenth of the run, between 10 s and
    /// 30 min).
    pub warmup: Option<Duration>,
    /// The pool's max_size.
    pub max_size: usize,
}

impl Options {
    /// Defaults for a run of `duration`.
    pub fn new(duration: Duration, seed: u64, out: PathBuf) -> Self {
        Options {
            duration,
            seed,
            out,
            fault_every: None,
            sample_every: None,
            warmup: None,
            max_size: 10,
        }
    }
    /// Mean time between faults.
    pub fn fault_every(&self) -> Duration {
        self.fault_every.unwrap_or_else(|| {
            (self.duration / 8).clamp(Duration::from_secs(10), Duration::from_secs(180))
        })
    }
    /// Sampling period.
    pub fn sample_every(&self) -> Duration {
        self.sample_every.unwrap_or_else(|| {
            (self.duration / 200).clamp(Duration::from_secs(1), Duration::from_secs(5))
        })
    }
    /// Warm-up, never more than half the run.
    pub fn warmup(&self) -> Duration {
        self.warmup
            .unwrap_or_else(|| {
                (self.duration / 10).clamp(Duration::from_secs(10), Duration::from_secs(1800))
            })
            .min(self.duration / 2)
    }
    /// The fault-free stretch at the end.
    fn quiet_tail(&self) -> Duration {
        (self.fault_every() / 2).max(Duration::from_secs(8))
    }
}

/// What the terminal is told while a soak runs.
pub trait Progress: Send + Sync {
    /// A sample was taken; `fault` is the fault in force, if any.
    fn sample(&self, sample: &Sample, totals: &Totals, fault: Option<&str>);
    /// A checkpoint was written.
    fn checkpoint(&self, report: &SoakReport);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Requests that ended since the last sample.
#[derive(Default)]
struct Window {
    latencies: Vec<f64>,
    ok: u64,
    failed: u64,
    cancelled: u64,
    errors: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Copy)]
enum Work {
    Short,
    Long,
    Transaction,
    /// A query cut by a timeout; the connection goes back as it is (the pool cancels the
    /// query on the server before anyone else gets the session).
    CutQuery,
    /// `BEGIN`, a mark, then an early return without `COMMIT` or `ROLLBACK`.
    EarlyReturn,
    /// The whole request future dropped at a random point.
    Dropped,
    /// The check of `Short` through the shared path (`Pool::query_one`, no checkout).
    Shared,
    /// A shared-path statement cut by a timeout: the pool cancels it on the server, and the
    /// session's other statements go on.
    SharedCut,
}

enum Done {
    Ok,
    Cancelled,
}

struct Load {
    pool: pool::Pool,
    window: Mutex<Window>,
    totals: Mutex<Totals>,
    rng: Mutex<Rng>,
}

/// The failure kind of a request that found an earlier request's transaction still open.
const DIRTY: &str = "dirty session";

fn db_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("server error {}", db.code().code()),
        None if e.is_closed() => "connection closed".into(),
        None => "connection error".into(),
    }
}

impl Load {
    fn pick(&self) -> (Work, f64) {
        let mut rng = lock(&self.rng);
        let (a, b) = (rng.next_f64(), rng.next_f64());
        let work = match a {
            a if a < 0.40 => Work::Short,
            a if a < 0.52 => Work::Shared,
            a if a < 0.65 => Work::Long,
            a if a < 0.78 => Work::Transaction,
            a if a < 0.82 => Work::EarlyReturn,
            a if a < 0.88 => Work::CutQuery,
            a if a < 0.91 => Work::SharedCut,
            _ => Work::Dropped,
        };
        (work, b)
    }

    /// Runs one request and records it; returns whether it failed.
    async fn request(&self, work: Work, x: f64) -> bool {
        let started = Instant::now();
        let result = match work {
            Work::Dropped => {
                let cut = Duration::from_micros(200 + (x * 60_000.0) as u64);
                match tokio::time::timeout(cut, self.work(Work::Long, x)).await {
                    Ok(r) => r,
                    Err(_) => Ok(Done::Cancelled),
                }
            }
            w @ (Work::Shared | Work::SharedCut) => {
                match tokio::time::timeout(HANG_CUTOFF, self.shared(w, x)).await {
                    Ok(r) => r,
                    Err(_) => Err("hang".to_string()),
                }
            }
            w => match tokio::time::timeout(HANG_CUTOFF, self.work(w, x)).await {
                Ok(r) => r,
                Err(_) => Err("hang".to_string()),
            },
        };
        let took = started.elapsed().as_secs_f64() * 1000.0;
        let failed = result.is_err();
        let mut w = lock(&self.window);
        let mut t = lock(&self.totals);
        t.requests += 1;
        t.longest_ms = t.longest_ms.max(took);
        match result {
            Ok(Done::Ok) => {
                w.ok += 1;
                t.ok += 1;
                w.latencies.push(took);
            }
            Ok(Done::Cancelled) => {
                w.cancelled += 1;
                t.cancelled += 1;
            }
            Err(kind) => {
                if kind == "hang" {
                    t.hangs += 1;
                }
                w.failed += 1;
                t.failed += 1;
                *w.errors.entry(kind.clone()).or_default() += 1;
                *t.errors.entry(kind).or_default() += 1;
            }
        }
        failed
    }

    /// A request on the shared path: the marker check, or a sleep cut after 5-45 ms.
    async fn shared(&self, work: Work, x: f64) -> Result<Done, String> {
        let failed = |e: pool::QueryError| match e {
            pool::QueryError::Pool(e) => format!("shared {}", e.kind()),
            pool::QueryError::Statement(e) => format!("shared {}", db_error(&e)),
            pool::QueryError::Timeout { .. } => "shared query timeout".into(),
            e => format!("shared refused: {e}"),
        };
        if matches!(work, Work::SharedCut) {
            let cut = Duration::from_millis(5 + (x * 40.0) as u64);
            return match tokio::time::timeout(cut, self.pool.query("SELECT pg_sleep(0.1)", &[]))
                .await
            {
                Ok(Ok(_)) => Ok(Done::Ok),
                Ok(Err(e)) => Err(failed(e)),
                Err(_) => Ok(Done::Cancelled),
            };
        }
        let row = tokio::time::timeout(
            QUERY_BOUND,
            self.pool
                .query_one("SELECT current_setting('chaos.marker', true)", &[]),
        )
        .await
        .map_err(|_| "shared query timeout".to_string())?
        .map_err(failed)?;
        match row.get::<_, Option<String>>(0).as_deref() {
            Some("dirty") => Err(DIRTY.into()),
            _ => Ok(Done::Ok),
        }
    }

    async fn work(&self, work: Work, x: f64) -> Result<Done, String> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| format!("acquire {}", e.kind()))?;
        let bound = match work {
            Work::CutQuery => Duration::from_millis(5 + (x * 40.0) as u64),
            _ => QUERY_BOUND,
        };
        let ran = tokio::time::timeout(bound, async {
            // (The shared kinds run on `shared`; here they would be their exclusive twins.)
            match work {
                Work::Short | Work::Shared => {
                    // Also the check that no earlier request's transaction is still open.
                    let stmt = conn
                        .prepare_cached("SELECT current_setting('chaos.marker', true)")
                        .await?;
                    let mark: Option<String> = conn.query_one(&stmt, &[]).await?.get(0);
                    return Ok(mark.as_deref() == Some("dirty"));
                }
                Work::EarlyReturn => {
                    conn.batch_execute("BEGIN; SET LOCAL chaos.marker = 'dirty'")
                        .await?;
                }
                Work::Long | Work::Dropped => {
                    let stmt = conn.prepare_cached("SELECT pg_sleep($1::float8)").await?;
                    conn.query_one(&stmt, &[&(0.2 * x)]).await?;
                }
                Work::Transaction => {
                    let tx = conn.transaction().await?;
                    tx.query_one("SELECT txid_current()", &[]).await?;
                    tx.query_one("SELECT count(*) FROM pg_class", &[]).await?;
                    if x < 0.25 {
                        tx.rollback().await?;
                    } else {
                        tx.commit().await?;
                    }
                }
                Work::CutQuery | Work::SharedCut => {
                    conn.query_one("SELECT pg_sleep(0.1)", &[]).await?;
                }
            }
            Ok::<_, tokio_postgres::Error>(false)
        })
        .await;
        match ran {
            Ok(Ok(false)) => Ok(Done::Ok),
            Ok(Ok(true)) => Err(DIRTY.into()),
            Ok(Err(e)) => {
                pool::PooledConnection::discard(conn);
                Err(db_error(&e))
            }
            // Cut on purpose: returned as it is, with the query still running on the server.
            Err(_) if matches!(work, Work::CutQuery) => Ok(Done::Cancelled),
            Err(_) => {
                // Slow under a fault: a client gives up on this connection.
                pool::PooledConnection::discard(conn);
                Err("query timeout".into())
            }
        }
    }
}

/// Counts the server's connections of [`APP`] on a direct connection it keeps (and makes
/// again after a restart).
struct Monitor {
    url: String,
    client: Option<tokio_postgres::Client>,
}

impl Monitor {
    async fn count(&mut self) -> Option<f64> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let (client, conn) = tokio::time::timeout(
                Duration::from_secs(2),
                tokio_postgres::connect(&self.url, tokio_postgres::NoTls),
            )
            .await
            .ok()?
            .ok()?;
            tokio::spawn(conn);
            self.client = Some(client);
        }
        let client = self.client.as_ref()?;
        let row = tokio::time::timeout(
            Duration::from_secs(2),
            client.query_one(
                include_str!("../../../fixtures/sql/connections.sql"),
                &[&APP],
            ),
        )
        .await;
        match row {
            Ok(Ok(row)) => Some(row.get::<_, i64>(0) as f64),
            _ => {
                self.client = None;
                None
            }
        }
    }
}

/// What the report needs besides the samples.
struct Run<'a> {
    options: &'a Options,
    database: String,
    proxy: String,
    started: Instant,
}

impl Run<'_> {
    fn report(
        &self,
        state: SoakState,
        samples: &[Sample],
        faults: &[FaultEvent],
        totals: &Totals,
        end: Option<EndCheck>,
    ) -> SoakReport {
        let o = self.options;
        let warmup = o.warmup().as_secs_f64();
        let mut trends = Vec::new();
        for (name, unit, allowance) in trend::allowances(o.max_size) {
            let points: Vec<(f64, f64)> = samples
                .iter()
                .filter(|s| s.t_s >= warmup)
                .filter_map(|s| {
                    let v = match name {
                        "rss_mib" => s.rss_mib,
                        "fds" => s.fds,
                        "tasks" => Some(s.tasks),
                        _ => s.server_connections,
                    };
                    v.map(|v| (s.t_s, v))
                })
                .collect();
            trends.push(trend::fit(name, unit, &points, allowance));
        }
        let mut criteria: Vec<Criterion> = trends
            .iter()
            .map(|t| Criterion {
                id: format!("flat_{}", t.series),
                description: format!(
                    "{} shows no upward trend after the warm-up (Theil–Sen growth over the window)",
                    t.series
                ),
                measured: format!(
                    "{:+.2} {} over {:.0} s ({:+.2}/h, {} points)",
                    t.growth, t.unit, t.window_s, t.slope_per_hour, t.points
                ),
                bound: format!("<= {:.1} {}", t.allowed, t.unit),
                verdict: t.verdict,
            })
            .collect();
        criteria.push(Criterion {
            id: "no_hang".into(),
            description: format!(
                "no request outlived {HANG_CUTOFF:?} (every pool call and query is bounded)"
            ),
            measured: format!(
                "{} hangs; longest {:.0} ms",
                totals.hangs, totals.longest_ms
            ),
            bound: "0".into(),
            verdict: if totals.hangs == 0 {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
        });
        let dirty = totals.errors.get(DIRTY).copied().unwrap_or(0);
        criteria.push(Criterion {
            id: "no_dirty_checkout".into(),
            description: "no request started inside a transaction an earlier one left open (early returns, cut queries; checked by every short request)".into(),
            measured: format!("{dirty} dirty"),
            bound: "0".into(),
            verdict: if dirty == 0 {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
        });
        let tail_from = o.duration.saturating_sub(o.quiet_tail()).as_secs_f64() + 3.0;
        let served_late: u64 = samples
            .iter()
            .filter(|s| s.t_s >= tail_from)
            .map(|s| s.ok)
            .sum();
        if state != SoakState::Checkpoint && samples.last().is_some_and(|s| s.t_s >= tail_from) {
            criteria.push(Criterion {
                id: "serving_after_faults".into(),
                description: "requests succeed in the fault-free stretch at the end".into(),
                measured: format!("{served_late} ok"),
                bound: "> 0".into(),
                verdict: if served_late > 0 {
                    Verdict::Pass
                } else {
                    Verdict::Fail
                },
            });
        }
        if let Some(e) = &end {
            let check = |id: &str, description: &str, measured: String, ok: bool| Criterion {
                id: id.into(),
                description: description.into(),
                measured,
                bound: "equal / 0".into(),
                verdict: if ok { Verdict::Pass } else { Verdict::Fail },
            };
            criteria.push(check(
                "all_closed",
                "every connection the pool opened was closed by shutdown",
                format!("opened {}, closed {}", e.opened, e.closed),
                e.opened == e.closed,
            ));
            criteria.push(check(
                "no_driver_left",
                "no connection driver task runs after shutdown",
                e.live_connection_tasks.to_string(),
                e.live_connection_tasks == 0,
            ));
            criteria.push(check(
                "server_clean",
                "the server shows no connection of the soak after shutdown (pg_stat_activity)",
                e.server_connections_left.to_string(),
                e.server_connections_left == 0,
            ));
        }
        let verdict = if criteria.iter().any(|c| c.verdict == Verdict::Fail) {
            Verdict::Fail
        } else if criteria.iter().any(|c| c.verdict == Verdict::Unknown) {
            Verdict::Unknown
        } else {
            Verdict::Pass
        };
        SoakReport {
            version: env!("CARGO_PKG_VERSION").into(),
            state,
            seed: o.seed,
            database: self.database.clone(),
            proxy: self.proxy.clone(),
            planned_s: o.duration.as_secs_f64(),
            elapsed_s: self.started.elapsed().as_secs_f64(),
            warmup_s: warmup,
            sample_every_s: o.sample_every().as_secs_f64(),
            fault_every_s: o.fault_every().as_secs_f64(),
            max_size: o.max_size,
            totals: totals.clone(),
            faults: faults.to_vec(),
            trends,
            end,
            criteria,
            verdict,
            samples: samples.to_vec(),
        }
    }
}

/// Writes `report.json` and `soak.svg` into `out`, each by rename so a reader never sees half
/// a file.
pub fn write_files(report: &SoakReport, out: &Path) -> crate::Result<()> {
    crate::error::create_dir_all(out.to_path_buf())?;
    for (name, body) in [
        ("report.json", report.to_json()),
        ("soak.svg", svg::svg(report)),
        ("report.txt", report.to_text()),
    ] {
        let tmp = out.join(format!(".{name}.tmp"));
        crate::error::write(tmp.clone(), body)?;
        let path = out.join(name);
        std::fs::rename(&tmp, &path).map_err(|source| crate::Error::Write { path, source })?;
    }
    Ok(())
}

/// Resolves when the process is asked to stop: SIGINT (Ctrl-C), SIGTERM (as CI sends at a
/// timeout) or SIGHUP (a closed terminal), through [`crate::signals`].
pub async fn stop_signal() {
    match crate::signals::Signals::install() {
        Ok(mut signals) => {
            signals.recv().await;
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs a soak until its duration passes or `stop` resolves, then shuts down and judges.
pub async fn run(
    options: Options,
    stop: impl std::future::Future<Output = ()>,
    progress: &dyn Progress,
) -> crate::Result<SoakReport> {
    let (env, proxy_desc) = crate::suite::environment(options.seed).await?;
    let database = env.db.report_label();
    let proxy = env.proxy("chaos_soak").await?;
    // The suite's pool, sized for the soak, retiring connections often enough that the
    // lifetime and idle paths run many times.
    let config = crate::peers::pool_config(&proxy.url, APP, options.seed)?
        .max_size(options.max_size)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_timeout(ACQUIRE_TIMEOUT)
        .idle_timeout(Some(Duration::from_secs(30)))
        .max_lifetime(Some(Duration::from_secs(120)))
        .leak_detection_threshold(Some(Duration::from_secs(8)));
    let pool = pool::Pool::connect(config).await?;
    let mut rng = Rng::new(options.seed);
    let load = Arc::new(Load {
        pool: pool.clone(),
        window: Mutex::new(Window::default()),
        totals: Mutex::new(Totals::default()),
        rng: Mutex::new(rng.fork()),
    });
    let run = Run {
        options: &options,
        database,
        proxy: proxy_desc,
        started: Instant::now(),
    };
    let (stop_tx, stop_rx) = watch::channel(false);

    let steady = {
        let load = Arc::clone(&load);
        move || {
            let load = Arc::clone(&load);
            async move {
                let (work, x) = load.pick();
                // A real client backs off after a failure instead of spinning.
                Duration::from_millis(if load.request(work, x).await { 25 } else { 2 })
            }
        }
    };
    let burst = {
        let load = Arc::clone(&load);
        move || {
            let load = Arc::clone(&load);
            async move {
                load.request(Work::Short, 0.0).await;
            }
        }
    };
    let workload = Workload::start(
        WORKERS,
        steady,
        Bursts {
            size: 10 * options.max_size,
            first_after: Duration::from_secs(2),
            spacing: Spacing::FromStart(BURST_EVERY),
        },
        burst,
    );

    let open_loop = {
        let (load, mut stop) = (Arc::clone(&load), stop_rx.clone());
        tokio::spawn(async move {
            let mut requests = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(OPEN_LOOP_EVERY) => {}
                    _ = stop.changed() => break,
                }
                let load = Arc::clone(&load);
                requests.spawn(async move {
                    let _ =
                        tokio::time::timeout(OPEN_LOOP_DEADLINE, load.request(Work::Short, 0.0))
                            .await;
                });
                while requests.try_join_next().is_some() {}
            }
            // Those still waiting are dropped where they stand, like the workers' below.
            requests.abort_all();
            while requests.join_next().await.is_some() {}
        })
    };
    let faults_log: Arc<Mutex<Vec<FaultEvent>>> = Arc::new(Mutex::new(Vec::new()));
    let fault_task = {
        let log = Arc::clone(&faults_log);
        let mut stop = stop_rx.clone();
        let mut rng = rng.fork();
        let origin = run.started;
        let options = options.clone();
        let env = &env;
        let proxy = &proxy;
        async move {
            let owned = env.db.cluster().is_some();
            let choices: Vec<&Fault> = MATRIX
                .iter()
                .filter(|f| owned || !f.needs_cluster)
                // Kernel faults are the suite's for now: the soak's leak verdict is about the
                // proxy's faults, and it runs on machines without root too.
                .filter(|f| !matches!(f.kind, fault::Kind::Kernel(_)))
                .collect();
            let mean = options.fault_every().as_secs_f64();
            let last_start = options.duration.saturating_sub(options.quiet_tail());
            let mut at = origin + Duration::from_secs_f64(mean * (0.25 + 0.5 * rng.next_f64()));
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = stop.changed() => return,
                }
                if *stop.borrow() || at.duration_since(origin) >= last_start {
                    return;
                }
                let fault = choices[rng.below(choices.len() as u64) as usize];
                let room = (last_start - at.duration_since(origin)).as_secs_f64();
                let window = (2.0 + 13.0 * rng.next_f64())
                    .min(mean / 2.0)
                    .min(room.max(1.0));
                let start_s = origin.elapsed().as_secs_f64();
                let i = {
                    let mut log = lock(&log);
                    log.push(FaultEvent {
                        name: fault.name.into(),
                        label: fault.label.into(),
                        start_s,
                        end_s: None,
                        error: None,
                    });
                    log.len() - 1
                };
                let mut stop2 = stop.clone();
                let heal = async move {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs_f64(window)) => {}
                        _ = stop2.changed() => {}
                    }
                };
                let result = fault::apply_until(env, proxy, fault, APP, heal).await;
                if result.is_err() {
                    fault::heal_everything(env, proxy).await;
                }
                {
                    let mut log = lock(&log);
                    log[i].end_s = Some(origin.elapsed().as_secs_f64());
                    log[i].error = result.err().map(|e| format!("{e:#}"));
                }
                tracing::info!(fault = fault.name, window_s = window, "soak: fault healed");
                at += Duration::from_secs_f64(mean * (0.5 + rng.next_f64()));
                at = at.max(Instant::now() + Duration::from_secs(1));
            }
        }
    };

    let sampler = async {
        let mut monitor = Monitor {
            url: env.db.url(),
            client: None,
        };
        let mut samples: Vec<Sample> = Vec::new();
        let mut next = Instant::now() + options.sample_every();
        let mut next_checkpoint = Instant::now() + CHECKPOINT_EVERY;
        let deadline = run.started + options.duration;
        let metrics = tokio::runtime::Handle::current().metrics();
        tokio::pin!(stop);
        let interrupted = loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next.min(deadline)) => {}
                _ = &mut stop => break true,
            }
            let now = Instant::now();
            let window = std::mem::take(&mut *lock(&load.window));
            let mut lat = window.latencies;
            lat.sort_by(f64::total_cmp);
            let stats = pool.statistics();
            let sample = Sample {
                t_s: now.duration_since(run.started).as_secs_f64(),
                rss_mib: rss_mib(),
                fds: open_fds(),
                tasks: metrics.num_alive_tasks() as f64,
                pool_total: stats.total_connections,
                pool_idle: stats.idle_connections,
                waiting: stats.waiting_requests,
                live_connection_tasks: stats.live_connection_tasks,
                server_connections: monitor.count().await,
                requests: window.ok + window.failed + window.cancelled,
                ok: window.ok,
                failed: window.failed,
                cancelled: window.cancelled,
                p50_ms: percentile(&lat, 0.50),
                p99_ms: percentile(&lat, 0.99),
                errors: window.errors,
            };
            let in_force = lock(&faults_log)
                .last()
                .filter(|f| f.end_s.is_none())
                .map(|f| f.label.clone());
            progress.sample(&sample, &lock(&load.totals), in_force.as_deref());
            samples.push(sample);
            if now >= next_checkpoint {
                next_checkpoint += CHECKPOINT_EVERY;
                let r = run.report(
                    SoakState::Checkpoint,
                    &samples,
                    &lock(&faults_log),
                    &lock(&load.totals),
                    None,
                );
                if let Err(e) = write_files(&r, &options.out) {
                    tracing::warn!(error = %e, "soak: could not write a checkpoint");
                }
                progress.checkpoint(&r);
            }
            if now >= deadline {
                break false;
            }
            next += options.sample_every();
        };
        let _ = stop_tx.send(true);
        (samples, interrupted, monitor)
    };
    let ((samples, interrupted, _monitor), ()) = tokio::join!(sampler, fault_task);

    // Requests in flight get a moment to finish; the rest are dropped where they stand, which
    // the pool must survive without a leak (the end checks below say whether it did).
    workload.stop_within(Duration::from_secs(1)).await;
    let _ = open_loop.await;
    fault::heal_everything(&env, &proxy).await;
    let shutdown = pool.shutdown(Duration::from_secs(10)).await;
    let stats = pool.statistics();
    drop(pool);
    let server_left = env.wait_no_connections(APP, Duration::from_secs(10)).await;
    env.drop_proxy(&proxy).await;
    let end = EndCheck {
        opened: stats.connections_created,
        closed: stats.connections_closed.total(),
        live_connection_tasks: stats.live_connection_tasks,
        server_connections_left: server_left,
        shutdown_returned: shutdown.returned,
        shutdown_forced: shutdown.forced,
        shutdown_ms: shutdown.duration.as_secs_f64() * 1000.0,
        closed_by_reason: serde_json::to_value(stats.connections_closed)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
    };
    let state = if interrupted {
        SoakState::Interrupted
    } else {
        SoakState::Finished
    };
    let totals = lock(&load.totals).clone();
    let report = run.report(state, &samples, &lock(&faults_log), &totals, Some(end));
    write_files(&report, &options.out)?;
    Ok(report)
}
