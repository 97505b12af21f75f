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
//!   matrix ([`crate::fault::MATRIX`]: the proxy's full set, `pg_terminate_backend`, and a crash and
//!   restart of the server when the cluster is ours) for a random window of 2 to 15 s. The
//!   last stretch of the run has no fault, so the pool is seen serving again.
//! - With `--cluster patroni` ([`Options::cluster`]) the pool runs on the HA cluster instead
//!   (Patroni + etcd, each node a host of its own, by the multi-host URL or HAProxy), and the
//!   faults are the HA faults ([`crate::fault::HaFault`]: the leader killed or isolated, a
//!   switchover, a replica killed, the clients cut off, etcd lost); each window ends once the
//!   cluster is whole again, and the server's connections are counted on every node.
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

mod load;
mod monitor;
mod options;
pub mod report;
mod setup;
pub mod svg;
pub mod trend;
mod verdict;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::measure::{open_fds, percentile, rss_mib};
use crate::rng::Rng;
use crate::workload::{Bursts, Spacing, Workload};
pub use options::*;
pub use report::{EndCheck, FaultEvent, Sample, SoakReport, SoakState, Totals};

use load::*;
use monitor::Monitor;
use setup::Setup;
use verdict::Run;

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
    let setup = Setup::start(options.seed, options.cluster.as_ref()).await?;
    let (database, proxy_desc) = setup.labels();
    // The suite's pool, sized for the soak, retiring connections often enough that the
    // lifetime and idle paths run many times.
    let config = crate::peers::pool_config(setup.url(), APP, options.seed)?
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
        let setup = &setup;
        async move {
            let choices = setup.choices();
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
                        name: fault.name().into(),
                        label: fault.label().into(),
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
                let result = setup.apply_until(fault, heal).await;
                {
                    let mut log = lock(&log);
                    log[i].end_s = Some(origin.elapsed().as_secs_f64());
                    log[i].error = result.err().map(|e| format!("{e:#}"));
                }
                tracing::info!(
                    fault = fault.name(),
                    window_s = window,
                    "soak: fault healed"
                );
                at += Duration::from_secs_f64(mean * (0.5 + rng.next_f64()));
                at = at.max(Instant::now() + Duration::from_secs(1));
            }
        }
    };

    let sampler = async {
        let mut monitor = Monitor::new(setup.monitor_urls());
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
    setup.heal_everything().await;
    let shutdown = pool.shutdown(Duration::from_secs(10)).await;
    let stats = pool.statistics();
    drop(pool);
    let server_left = setup.connections_left(Duration::from_secs(10)).await;
    setup.close().await;
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
