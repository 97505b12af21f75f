//! `cargo bench -p pool --bench ratios`: `SELECT 1` throughput ratios, measured interleaved.
//!
//! Criterion measures one contender after another, so on a shared 2-core machine a burst of
//! noise during one of them (the server's checkpointer, another process) moves the ratio by
//! up to 25 %. Here the contenders take turns in short windows (rounds of `RATIO_WINDOW_MS`,
//! default 250 ms, each contender once per round in a rotating order) and every ratio is the
//! median over `RATIO_ROUNDS` rounds (default 24) of the ratio *within* each round, with its
//! interquartile range: noise that lasts longer than a round hits both sides of a ratio alike.
//!
//! Contenders at each concurrency (1, 16, 128 tasks; `RATIO_TASKS=1,16` to choose): the pool
//! at its default LIFO idle order and with FIFO, deadpool-postgres, 10 raw tokio-postgres
//! connections taken round-robin, and, for 1 task, one raw connection (the pool's LIFO
//! reuse without the pool); `RATIO_CONTENDERS=pool,raw_10` to choose. `BENCH_PIN=1` puts the
//! server on the last CPU, as in `pool`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[path = "common.rs"]
mod common;
use common::{Contenders, contenders, pin_apart};

type Query = Pin<Box<dyn Future<Output = ()> + Send>>;
type MakeQuery = Arc<dyn Fn() -> Query + Send + Sync>;

/// Queries per second of `make` over `tasks` tasks for one window.
async fn window(tasks: usize, length: Duration, make: &MakeQuery) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + length;
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let make = Arc::clone(make);
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                let mut n = 0;
                while Instant::now() < until {
                    make().await;
                    n += 1;
                }
                done.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

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

fn contenders_for(tasks: usize, c: &Contenders) -> Vec<(&'static str, MakeQuery)> {
    let through_pool = |p: &pool::Pool| -> MakeQuery {
        let p = p.clone();
        Arc::new(move || {
            let p = p.clone();
            Box::pin(async move {
                let conn = p.acquire().await.unwrap();
                let stmt = conn.prepare_cached("SELECT 1").await.unwrap();
                conn.query_one(&stmt, &[]).await.unwrap();
            })
        })
    };
    let theirs = c.theirs.clone();
    let deadpool: MakeQuery = Arc::new(move || {
        let p = theirs.clone();
        Box::pin(async move {
            let conn = p.get().await.unwrap();
            let stmt = conn.prepare_cached("SELECT 1").await.unwrap();
            conn.query_one(&stmt, &[]).await.unwrap();
        })
    });
    let raw_rr = {
        let raw = Arc::clone(&c.raw);
        let next = Arc::new(AtomicUsize::new(0));
        Arc::new(move || {
            let raw = Arc::clone(&raw);
            let i = next.fetch_add(1, Ordering::Relaxed) % raw.len();
            Box::pin(async move {
                let (client, stmt) = &raw[i];
                client.query_one(stmt, &[]).await.unwrap();
            }) as Query
        }) as MakeQuery
    };
    let mut all = vec![
        ("pool", through_pool(&c.ours)),
        ("pool_fifo", through_pool(&c.fifo)),
        ("deadpool", deadpool),
        ("raw_10", raw_rr),
    ];
    if tasks == 1 {
        let raw = Arc::clone(&c.raw);
        all.push((
            "raw_1",
            Arc::new(move || {
                let raw = Arc::clone(&raw);
                Box::pin(async move {
                    let (client, stmt) = &raw[0];
                    client.query_one(stmt, &[]).await.unwrap();
                }) as Query
            }),
        ));
    }
    all
}

fn main() {
    // `cargo bench` passes `--bench`; a filter is not supported here.
    let db = match chaos::postgres::Database::from_env() {
        Ok(db) => db,
        Err(e) => {
            eprintln!("skipping the SELECT 1 ratios: {e}");
            return;
        }
    };
    pin_apart(&db);
    let url = db.url();
    let rounds: usize = env_or("RATIO_ROUNDS", 24).max(3);
    let length = Duration::from_millis(env_or("RATIO_WINDOW_MS", 250));
    let task_counts: Vec<usize> = std::env::var("RATIO_TASKS")
        .unwrap_or_else(|_| "1,16,128".into())
        .split(',')
        .filter_map(|t| t.trim().parse().ok())
        .collect();
    println!(
        "SELECT 1 throughput, interleaved: {rounds} rounds of {} ms per contender",
        length.as_millis()
    );
    for tasks in task_counts {
        let rt = common::runtime_for(tasks);
        let c = rt.block_on(contenders(&url));
        let mut all = contenders_for(tasks, &c);
        if let Ok(only) = std::env::var("RATIO_CONTENDERS") {
            all.retain(|(name, _)| only.split(',').any(|o| o.trim() == *name));
        }
        let mut qps: Vec<Vec<f64>> = vec![Vec::new(); all.len()];
        rt.block_on(async {
            // One untimed round warms every connection and statement cache.
            for (_, make) in &all {
                window(tasks, length, make).await;
            }
            for round in 0..rounds {
                for k in 0..all.len() {
                    let i = (round + k) % all.len();
                    qps[i].push(window(tasks, length, &all[i].1).await);
                }
            }
        });
        println!("\n{tasks} concurrent task(s):");
        println!("| contender | µs per query (median) | IQR |");
        println!("| --- | --- | --- |");
        for ((name, _), xs) in all.iter().zip(&qps) {
            let (m, lo, hi) = summary(xs.iter().map(|q| 1e6 / q).collect());
            println!("| {name} | {m:.1} | {lo:.1}–{hi:.1} |");
        }
        println!("| ratio (throughput, per-round) | median | IQR |");
        println!("| --- | --- | --- |");
        let index = |n: &str| all.iter().position(|(name, _)| *name == n);
        for (a, b) in [
            ("pool", "raw_10"),
            ("pool_fifo", "raw_10"),
            ("pool", "deadpool"),
            ("pool_fifo", "deadpool"),
            ("deadpool", "raw_10"),
            ("raw_1", "raw_10"),
            ("pool", "raw_1"),
        ] {
            let (Some(i), Some(j)) = (index(a), index(b)) else {
                continue;
            };
            let ratios = qps[i].iter().zip(&qps[j]).map(|(x, y)| x / y).collect();
            let (m, lo, hi) = summary(ratios);
            println!("| {a} / {b} | {m:.3}x | {lo:.3}–{hi:.3} |");
        }
        rt.block_on(async {
            c.ours.shutdown(Duration::from_secs(5)).await;
            c.fifo.shutdown(Duration::from_secs(5)).await;
        });
        drop(c);
    }
}
