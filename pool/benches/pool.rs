//! `cargo bench -p pool`: the pool against deadpool and a floor, in the same run.
//!
//! - checkout+return of a no-op connection: pool (fake connector) vs deadpool (no-op manager)
//!   vs a floor (tokio Semaphore + Mutex<Vec>), with 1 task and with 64 tasks on 8 slots;
//! - `SELECT 1` through the pool with `prepare_cached` vs 10 raw tokio-postgres connections
//!   and vs deadpool-postgres, at 1, 16 and 128 concurrent tasks, on a throwaway PostgreSQL;
//! - `health_check` and `statistics`.
//!
//! Criterion measures each contender after the other; for ratios that hold up on a noisy
//! machine, see the interleaved `ratios` bench (`cargo bench -p pool --bench ratios`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "common.rs"]
mod common;
use common::{CheckoutContenders, Contenders, checkout_contenders, contenders, pin_apart};

/// Runs `iters` cycles spread over `tasks` tasks, each making its futures as it goes; returns
/// the wall time.
async fn spread<F, Fut>(tasks: usize, iters: u64, make: F) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let per = iters.div_ceil(tasks as u64);
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let make = make.clone();
            tokio::spawn(async move {
                for _ in 0..per {
                    make().await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    started.elapsed()
}

fn checkout(c: &mut Criterion) {
    let rt = common::two_workers();
    let mut group = c.benchmark_group("checkout_return");
    group
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    for (tasks, slots) in [(1usize, 8usize), (64, 8)] {
        let CheckoutContenders {
            ours,
            db: _db,
            theirs,
            floor,
        } = rt.block_on(checkout_contenders(slots));
        let label = format!("{tasks}_tasks_{slots}_slots");
        group.bench_function(format!("pool/{label}"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let p = ours.clone();
                spread(tasks, iters, move || {
                    let p = p.clone();
                    async move { drop(std::hint::black_box(p.acquire().await.unwrap())) }
                })
            })
        });
        group.bench_function(format!("deadpool/{label}"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let p = theirs.clone();
                spread(tasks, iters, move || {
                    let p = p.clone();
                    async move { drop(std::hint::black_box(p.get().await.unwrap())) }
                })
            })
        });
        group.bench_function(format!("floor/{label}"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let f = Arc::clone(&floor);
                spread(tasks, iters, move || {
                    let f = Arc::clone(&f);
                    async move { f.cycle().await }
                })
            })
        });
    }
    group.finish();
}

fn select_one(c: &mut Criterion) {
    let db = match chaos::postgres::Database::from_env() {
        Ok(db) => db,
        Err(e) => {
            eprintln!("skipping the SELECT 1 benchmarks: {e}");
            return;
        }
    };
    let url = db.url();
    pin_apart(&db);
    let mut group = c.benchmark_group("select_1");
    group
        .measurement_time(Duration::from_secs(8))
        .sample_size(20);
    for tasks in [1usize, 16, 128] {
        // Placement is controlled: one task runs on a current-thread runtime, where the caller
        // and every connection driver share the thread for all three contenders (on a
        // multi-thread runtime each round trip would cost a cross-thread wakeup or not,
        // depending on where tokio happened to put the driver). Concurrent tasks run on 2
        // workers, as a service would.
        let rt = common::runtime_for(tasks);
        let Contenders {
            ours,
            fifo,
            theirs,
            raw,
        } = rt.block_on(contenders(&url));
        for (name, pool) in [("pool", &ours), ("pool_fifo", &fifo)] {
            group.bench_function(format!("{name}/{tasks}_tasks"), |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let p = pool.clone();
                    spread(tasks, iters, move || {
                        let p = p.clone();
                        async move {
                            let conn = p.acquire().await.unwrap();
                            let stmt = conn.prepare_cached("SELECT 1").await.unwrap();
                            conn.query_one(&stmt, &[]).await.unwrap();
                        }
                    })
                })
            });
        }
        group.bench_function(format!("deadpool/{tasks}_tasks"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let p = theirs.clone();
                spread(tasks, iters, move || {
                    let p = p.clone();
                    async move {
                        let conn = p.get().await.unwrap();
                        let stmt = conn.prepare_cached("SELECT 1").await.unwrap();
                        conn.query_one(&stmt, &[]).await.unwrap();
                    }
                })
            })
        });
        if tasks <= 16 {
            group.bench_function(format!("raw_10_connections/{tasks}_tasks"), |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let raw = Arc::clone(&raw);
                    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                    let next = Arc::clone(&next);
                    spread(tasks, iters, move || {
                        let raw = Arc::clone(&raw);
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % raw.len();
                        async move {
                            let (client, stmt) = &raw[i];
                            client.query_one(stmt, &[]).await.unwrap();
                        }
                    })
                })
            });
        }
        rt.block_on(ours.shutdown(Duration::from_secs(5)));
        rt.block_on(fifo.shutdown(Duration::from_secs(5)));
        drop((theirs, raw));
    }
    group.finish();
}

fn observe(c: &mut Criterion) {
    let rt = common::two_workers();
    let p = rt.block_on(async {
        let db = pool::testing::FakeDb::new();
        pool::Pool::connect_with(pool::PoolConfig::default(), db.connector())
            .await
            .unwrap()
    });
    let _guard = rt.enter();
    let mut group = c.benchmark_group("observe");
    group
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    group.bench_function("statistics", |b| {
        b.iter(|| std::hint::black_box(p.statistics()))
    });
    group.bench_function("health", |b| b.iter(|| std::hint::black_box(p.health())));
    group.finish();
}

criterion_group!(benches, checkout, select_one, observe);
criterion_main!(benches);
