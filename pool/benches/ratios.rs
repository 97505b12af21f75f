//! `cargo bench -p pool --bench ratios`: the pool's ratios against its baselines, measured
//! interleaved.
//!
//! Criterion measures one contender after another, so on a shared 2-core machine a burst of
//! noise during one of them (the server's checkpointer, another process) moves a ratio by up
//! to 25 %. Here the contenders take turns in short windows (`RATIO_WINDOW_MS`, default
//! 250 ms; each contender once per round, in a rotating order) and every ratio is the median
//! over `RATIO_ROUNDS` rounds (default 24) of the ratio *within* each round, with its
//! interquartile range: noise that lasts longer than a round hits both sides of a ratio alike.
//! The count of rounds each side won is a sign test: with no real difference it stays near
//! half (for 400 rounds, outside 180–220 happens by chance less than 5 % of the time).
//!
//! Sections (`RATIO_SECTIONS=checkout,select_1` to choose):
//! - `checkout`: checkout+return of a no-op connection, the pool (fake connector) against
//!   deadpool (no-op manager) and a floor (tokio `Semaphore` + `Mutex<Vec>`), 8 slots, with 1
//!   task and with 64 tasks, on 2 workers.
//! - `select_1`: `SELECT 1` on a throwaway PostgreSQL at 1, 16 and 128 tasks
//!   (`RATIO_TASKS=1,16` to choose): the pool's shared path (`Pool::query_one`, no checkout:
//!   `pool_query`), its exclusive path (acquire + prepared statement) at its default LIFO
//!   idle order and with FIFO,
//!   deadpool-postgres, 10 raw tokio-postgres connections taken round-robin, and, for 1 task,
//!   one raw connection (the pool's LIFO reuse without the pool). `BENCH_PIN=1` puts the
//!   server on the last CPU, as in the `pool` bench.
//!
//! `RATIO_CONTENDERS=pool,raw_10` keeps only the named contenders (for profiling one).
//!
//! `RATIO_REQUIRE=pool/deadpool@128:0.97` (a comma-separated list of `a/b@tasks:floor`) makes
//! the run a check, as CI runs it: it exits with status 1 when the median of a named ratio at
//! that task count is below its floor. A run of fewer than [`MIN_JUDGED_ROUNDS`] rounds judges
//! nothing (its median is too coarse on 2 shared cores) and says so.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

#[path = "common.rs"]
mod common;
use common::{CheckoutContenders, Contenders, checkout_contenders, contenders, pin_apart};

/// One contender's window: `tasks` tasks repeating an operation until the deadline; returns
/// how many operations completed.
type Runner = Box<dyn Fn(usize, Instant) -> Pin<Box<dyn Future<Output = u64> + Send>>>;

/// Makes a runner of `op`. The loop is generic, so an operation costs no allocation of ours,
/// and the clock is read once per 16 operations.
fn runner<F, Fut>(op: F) -> Runner
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Box::new(move |tasks, until| {
        let op = op.clone();
        Box::pin(async move {
            let handles: Vec<_> = (0..tasks)
                .map(|_| {
                    let op = op.clone();
                    tokio::spawn(async move {
                        let mut n = 0u64;
                        loop {
                            for _ in 0..16 {
                                op().await;
                            }
                            n += 16;
                            if Instant::now() >= until {
                                break n;
                            }
                        }
                    })
                })
                .collect();
            let mut total = 0;
            for h in handles {
                total += h.await.unwrap();
            }
            total
        })
    })
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Median, first and third quartile.
fn summary(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    (quantile(&xs, 0.5), quantile(&xs, 0.25), quantile(&xs, 0.75))
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wanted(var: &str, name: &str) -> bool {
    std::env::var(var).map_or(true, |list| list.split(',').any(|o| o.trim() == name))
}

struct Settings {
    rounds: usize,
    window: Duration,
    /// `RATIO_REQUIRE`, parsed once.
    required: Vec<Required>,
    /// What the checks found: `(entry, median, rounds, met)` of every required ratio measured.
    judged: std::sync::Mutex<Vec<(String, f64, usize, bool)>>,
}

/// Rounds a run needs before `RATIO_REQUIRE` judges it.
const MIN_JUDGED_ROUNDS: usize = 24;

/// One `RATIO_REQUIRE` entry: the ratio `a / b` at `tasks` tasks must have a median of at
/// least `floor`.
#[derive(Debug, Clone)]
struct Required {
    a: String,
    b: String,
    tasks: usize,
    floor: f64,
}

/// The `RATIO_REQUIRE` entries; a malformed one stops the run (a check that is silently
/// dropped would pass for the wrong reason).
fn required() -> Vec<Required> {
    let Ok(list) = std::env::var("RATIO_REQUIRE") else {
        return Vec::new();
    };
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let parse = || -> Option<Required> {
                let (pair, floor) = entry.split_once(':')?;
                let (pair, tasks) = pair.split_once('@')?;
                let (a, b) = pair.split_once('/')?;
                Some(Required {
                    a: a.trim().to_string(),
                    b: b.trim().to_string(),
                    tasks: tasks.trim().parse().ok()?,
                    floor: floor.trim().parse().ok()?,
                })
            };
            parse().unwrap_or_else(|| {
                eprintln!(
                    "RATIO_REQUIRE: `{entry}` is not `a/b@tasks:floor` (e.g. pool/deadpool@128:0.97)"
                );
                std::process::exit(2)
            })
        })
        .collect()
}

/// Runs the contenders interleaved and prints the time per operation of each and the ratios
/// (throughput of `a` over `b`, so above 1 means `a` is faster) of `pairs`.
fn compare(
    rt: &Runtime,
    title: &str,
    tasks: usize,
    unit: (&str, f64),
    mut all: Vec<(&'static str, Runner)>,
    pairs: &[(&str, &str)],
    s: &Settings,
) {
    all.retain(|(name, _)| wanted("RATIO_CONTENDERS", name));
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); all.len()];
    rt.block_on(async {
        let window = |run: &Runner| {
            let started = Instant::now();
            let done = run(tasks, started + s.window);
            async move {
                let n = done.await;
                n as f64 / started.elapsed().as_secs_f64()
            }
        };
        // One untimed round warms every connection, statement cache and allocator.
        for (_, run) in &all {
            window(run).await;
        }
        for round in 0..s.rounds {
            for k in 0..all.len() {
                let i = (round + k) % all.len();
                rates[i].push(window(&all[i].1).await);
            }
        }
    });
    let (unit_name, per_second) = unit;
    println!("\n{title}, {tasks} task(s):");
    println!("| contender | {unit_name} per operation (median) | IQR |");
    println!("| --- | --- | --- |");
    for ((name, _), xs) in all.iter().zip(&rates) {
        let (m, lo, hi) = summary(xs.iter().map(|r| per_second / r).collect());
        println!("| {name} | {m:.1} | {lo:.1}–{hi:.1} |");
    }
    println!("| throughput ratio, per round | median | IQR | rounds where the first is faster |");
    println!("| --- | --- | --- | --- |");
    let index = |n: &str| all.iter().position(|(name, _)| *name == n);
    for (a, b) in pairs {
        let (Some(i), Some(j)) = (index(a), index(b)) else {
            continue;
        };
        let ratios: Vec<f64> = rates[i].iter().zip(&rates[j]).map(|(x, y)| x / y).collect();
        let ahead = ratios.iter().filter(|r| **r > 1.0).count();
        let n = ratios.len();
        let (m, lo, hi) = summary(ratios);
        println!("| {a} / {b} | {m:.3}x | {lo:.3}–{hi:.3} | {ahead} of {n} |");
        for r in &s.required {
            if r.a == *a && r.b == *b && r.tasks == tasks {
                let entry = format!("{a}/{b}@{tasks}:{}", r.floor);
                s.judged.lock().unwrap().push((entry, m, n, m >= r.floor));
            }
        }
    }
}

/// Prints every `RATIO_REQUIRE` check and exits with status 1 if one failed, 3 if one could
/// not be judged (too few rounds, or its contenders or task count were not run).
fn check_required(s: &Settings) {
    let wanted = &s.required;
    if wanted.is_empty() {
        return;
    }
    let judged = s.judged.lock().unwrap();
    println!(
        "\nRequired ratios (RATIO_REQUIRE), medians of {} rounds:",
        s.rounds
    );
    let mut status = 0;
    for r in wanted {
        let entry = format!("{}/{}@{}:{}", r.a, r.b, r.tasks, r.floor);
        match judged.iter().find(|(e, ..)| *e == entry) {
            _ if s.rounds < MIN_JUDGED_ROUNDS => {
                println!(
                    "- {entry}: NOT JUDGED: {} rounds, fewer than {MIN_JUDGED_ROUNDS}",
                    s.rounds
                );
                status = status.max(3);
            }
            None => {
                println!("- {entry}: NOT JUDGED: that ratio was not measured in this run");
                status = status.max(3);
            }
            Some((_, m, n, true)) => println!("- {entry}: ok, {m:.3}x over {n} rounds"),
            Some((_, m, n, false)) => {
                println!(
                    "- {entry}: FAILED, {m:.3}x over {n} rounds, below {:.3}x",
                    r.floor
                );
                status = 1;
            }
        }
    }
    if status != 0 {
        std::process::exit(status);
    }
}

fn checkout(s: &Settings) {
    let rt = common::two_workers();
    let slots = 8;
    let CheckoutContenders {
        ours,
        db: _db,
        theirs,
        floor,
    } = rt.block_on(checkout_contenders(slots));
    for tasks in [1, 64] {
        let all: Vec<(&'static str, Runner)> = vec![
            ("pool", {
                let p = ours.clone();
                runner(move || {
                    let p = p.clone();
                    async move { drop(std::hint::black_box(p.acquire().await.unwrap())) }
                })
            }),
            ("deadpool", {
                let p = theirs.clone();
                runner(move || {
                    let p = p.clone();
                    async move { drop(std::hint::black_box(p.get().await.unwrap())) }
                })
            }),
            ("floor", {
                let f = Arc::clone(&floor);
                runner(move || {
                    let f = Arc::clone(&f);
                    async move { f.cycle().await }
                })
            }),
        ];
        compare(
            &rt,
            &format!("checkout+return of a no-op connection, {slots} slots"),
            tasks,
            ("ns", 1e9),
            all,
            &[
                ("pool", "deadpool"),
                ("pool", "floor"),
                ("deadpool", "floor"),
            ],
            s,
        );
    }
}

fn select_1_contenders(tasks: usize, c: &Contenders) -> Vec<(&'static str, Runner)> {
    let through_pool = |p: &pool::Pool| {
        let p = p.clone();
        runner(move || {
            let p = p.clone();
            async move {
                let conn = p.acquire().await.unwrap();
                let stmt = conn.prepare_cached("SELECT 1").await.unwrap();
                conn.query_one(&stmt, &[]).await.unwrap();
            }
        })
    };
    let deadpool = {
        let p = c.theirs.clone();
        runner(move || {
            let p = p.clone();
            async move {
                let conn = p.get().await.unwrap();
                let stmt = conn.prepare_cached("SELECT 1").await.unwrap();
                conn.query_one(&stmt, &[]).await.unwrap();
            }
        })
    };
    let raw_10 = {
        let raw = Arc::clone(&c.raw);
        let next = Arc::new(AtomicUsize::new(0));
        runner(move || {
            let raw = Arc::clone(&raw);
            let i = next.fetch_add(1, Ordering::Relaxed) % raw.len();
            async move {
                let (client, stmt) = &raw[i];
                client.query_one(stmt, &[]).await.unwrap();
            }
        })
    };
    // The shared path: no checkout, the statement pipelined on a shared session.
    let shared = {
        let p = c.ours.clone();
        runner(move || {
            let p = p.clone();
            async move {
                p.query_one("SELECT 1", &[]).await.unwrap();
            }
        })
    };
    let mut all = vec![
        ("pool", through_pool(&c.ours)),
        ("pool_query", shared),
        ("pool_fifo", through_pool(&c.fifo)),
        ("deadpool", deadpool),
        ("raw_10", raw_10),
    ];
    if tasks == 1 {
        let raw = Arc::clone(&c.raw);
        all.push((
            "raw_1",
            runner(move || {
                let raw = Arc::clone(&raw);
                async move {
                    let (client, stmt) = &raw[0];
                    client.query_one(stmt, &[]).await.unwrap();
                }
            }),
        ));
    }
    all
}

fn select_1(s: &Settings) {
    let db = match chaos::postgres::Database::from_env() {
        Ok(db) => db,
        Err(e) => {
            eprintln!("skipping the SELECT 1 ratios: {e}");
            return;
        }
    };
    pin_apart(&db);
    let url = db.url();
    let task_counts: Vec<usize> = std::env::var("RATIO_TASKS")
        .unwrap_or_else(|_| "1,16,128".into())
        .split(',')
        .filter_map(|t| t.trim().parse().ok())
        .collect();
    for tasks in task_counts {
        let rt = common::runtime_for(tasks);
        let c = rt.block_on(contenders(&url));
        compare(
            &rt,
            "SELECT 1 with a prepared statement, 10 connections",
            tasks,
            ("µs", 1e6),
            select_1_contenders(tasks, &c),
            &[
                ("pool_query", "raw_10"),
                ("pool", "raw_10"),
                ("pool_query", "pool"),
                ("pool_fifo", "raw_10"),
                ("pool", "deadpool"),
                ("pool_fifo", "deadpool"),
                ("deadpool", "raw_10"),
                ("raw_1", "raw_10"),
                ("pool", "raw_1"),
            ],
            s,
        );
        rt.block_on(async {
            c.ours.shutdown(Duration::from_secs(5)).await;
            c.fifo.shutdown(Duration::from_secs(5)).await;
        });
    }
}

fn main() {
    // `cargo bench` passes `--bench`; criterion-style filters are not supported here.
    let s = Settings {
        rounds: env_or("RATIO_ROUNDS", 24).max(3),
        window: Duration::from_millis(env_or("RATIO_WINDOW_MS", 250)),
        // A malformed RATIO_REQUIRE stops the run here, before it measures anything.
        required: required(),
        judged: Default::default(),
    };
    println!(
        "Interleaved: {} rounds, {} ms per contender per round; medians of per-round figures",
        s.rounds,
        s.window.as_millis()
    );
    if wanted("RATIO_SECTIONS", "checkout") {
        checkout(&s);
    }
    if wanted("RATIO_SECTIONS", "select_1") {
        select_1(&s);
    }
    check_required(&s);
}
