//! What both `SELECT 1` benchmarks (criterion's `pool` and the interleaved `ratios`) share:
//! the contenders and where the server and the benchmark run.

use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

/// A deadpool manager of no-op connections: deadpool's own cost per checkout.
pub struct NoOp;
impl deadpool::managed::Manager for NoOp {
    type Type = u64;
    type Error = std::convert::Infallible;
    async fn create(&self) -> Result<u64, Self::Error> {
        Ok(0)
    }
    async fn recycle(
        &self,
        _: &mut u64,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Self::Error> {
        Ok(())
    }
}

/// The floor: a semaphore and a locked stack, nothing else.
pub struct Floor {
    pub sem: Semaphore,
    pub stack: Mutex<Vec<u64>>,
}
impl Floor {
    pub async fn cycle(&self) {
        let permit = self.sem.acquire().await.unwrap();
        let c = self.stack.lock().unwrap().pop().unwrap_or(0);
        std::hint::black_box(c);
        self.stack.lock().unwrap().push(c);
        drop(permit);
    }
}

/// The contenders of the checkout benchmark, `slots` slots each: the pool over its fake
/// connector (whose database `db` must outlive it), deadpool over a no-op manager, and the
/// floor.
pub struct CheckoutContenders {
    pub ours: pool::Pool<pool::testing::FakeConnector>,
    pub db: Arc<pool::testing::FakeDb>,
    pub theirs: deadpool::managed::Pool<NoOp>,
    pub floor: Arc<Floor>,
}

/// Makes the checkout contenders; call it inside the runtime that will run them.
pub async fn checkout_contenders(slots: usize) -> CheckoutContenders {
    let db = pool::testing::FakeDb::new();
    let ours = pool::Pool::connect_with(
        pool::PoolConfig::default()
            .min_size(slots)
            .max_size(slots)
            .validation_bypass(std::time::Duration::from_secs(3600)),
        db.connector(),
    )
    .await
    .unwrap();
    let theirs = deadpool::managed::Pool::builder(NoOp)
        .max_size(slots)
        .build()
        .unwrap();
    let floor = Arc::new(Floor {
        sem: Semaphore::new(slots),
        stack: Mutex::new(vec![0; slots]),
    });
    CheckoutContenders {
        ours,
        db,
        theirs,
        floor,
    }
}

/// The three contenders of the `SELECT 1` benchmark, made inside the runtime that runs them so
/// their connection drivers live there too.
pub struct Contenders {
    pub ours: pool::Pool,
    /// Ours with `IdleOrder::Fifo`: load rotates over the ten connections.
    pub fifo: pool::Pool,
    pub theirs: deadpool_postgres::Pool,
    pub raw: Arc<Vec<(tokio_postgres::Client, tokio_postgres::Statement)>>,
}

pub async fn contenders(url: &str) -> Contenders {
    let ours = pool::Pool::connect(
        pool::PoolConfig::from_url(url)
            .unwrap()
            .min_size(10)
            .max_size(10),
    )
    .await
    .unwrap();
    let fifo = pool::Pool::connect(
        pool::PoolConfig::from_url(url)
            .unwrap()
            .min_size(10)
            .max_size(10)
            .idle_order(pool::IdleOrder::Fifo),
    )
    .await
    .unwrap();
    let theirs = {
        let mut cfg = deadpool_postgres::Config::new();
        cfg.url = Some(url.to_string());
        cfg.pool = Some(deadpool_postgres::PoolConfig::new(10));
        cfg.create_pool(
            Some(deadpool_postgres::Runtime::Tokio1),
            tokio_postgres::NoTls,
        )
        .unwrap()
    };
    // Ten raw connections, each with its statement prepared once; tasks take them round-robin.
    let mut raw = Vec::new();
    for _ in 0..10 {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let stmt = client.prepare("SELECT 1").await.unwrap();
        raw.push((client, stmt));
    }
    Contenders {
        ours,
        fifo,
        theirs,
        raw: Arc::new(raw),
    }
}

/// With `BENCH_PIN=1` (Linux), the server's processes go to the last CPU and this process to
/// the others, so the two stop preempting each other: on a 2-core machine that is the
/// quietest placement there is. Off by default, since it changes what is measured.
pub fn pin_apart(db: &chaos::postgres::Database) {
    #[cfg(target_os = "linux")]
    {
        if std::env::var_os("BENCH_PIN").is_none() {
            return;
        }
        let Some(cluster) = db.cluster() else {
            return;
        };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cpus < 2 {
            return;
        }
        let set = |cpu_range: std::ops::Range<usize>| {
            // SAFETY: a zeroed cpu_set_t is a valid empty set.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            for cpu in cpu_range {
                // SAFETY: cpu < CPU_SETSIZE.
                unsafe { libc::CPU_SET(cpu, &mut set) };
            }
            set
        };
        let server = set(cpus - 1..cpus);
        let client = set(0..cpus - 1);
        let size = std::mem::size_of::<libc::cpu_set_t>();
        for pid in cluster.pids() {
            // SAFETY: plain syscall on a pid we started.
            unsafe { libc::sched_setaffinity(pid as libc::pid_t, size, &server) };
        }
        // SAFETY: plain syscall on this thread; threads made later inherit it.
        unsafe { libc::sched_setaffinity(0, size, &client) };
        eprintln!(
            "pinned: server on CPU {}, benchmark on CPUs 0..{}",
            cpus - 1,
            cpus - 1
        );
    }
}

/// The runtime `tasks` concurrent tasks run on: one task on a current-thread runtime, so the
/// caller and every connection's driver share its thread for every contender; more on 2
/// workers, as a service would.
pub fn runtime_for(tasks: usize) -> tokio::runtime::Runtime {
    if tasks == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    } else {
        two_workers()
    }
}

/// A multi-thread runtime with 2 workers, as a service on this 2-core machine would run.
pub fn two_workers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
