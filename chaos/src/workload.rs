//! The load the suite and the soak put on a pool: steady workers and periodic bursts, until
//! stopped.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Bursts of concurrent requests.
#[derive(Debug, Clone, Copy)]
pub struct Bursts {
    /// Requests in one burst, all at once.
    pub size: usize,
    /// Time from the start to the first burst.
    pub first_after: Duration,
    /// Time between bursts.
    pub spacing: Spacing,
}

/// How bursts are spaced.
#[derive(Debug, Clone, Copy)]
pub enum Spacing {
    /// A burst starts this long after the previous one started (a fixed rate; a burst that
    /// outlasts it is followed at once).
    FromStart(Duration),
    /// A burst starts this long after the previous one ended.
    AfterEnd(Duration),
}

/// Running load; [`Workload::stop`] ends it.
pub struct Workload {
    running: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Workload {
    /// Starts `workers` tasks, each repeating `steady()` and then sleeping the pause it
    /// returns, and one task that runs `bursts.size` of `burst()` at once on the schedule of
    /// `bursts`.
    pub fn start<S, SF, B, BF>(workers: usize, steady: S, bursts: Bursts, burst: B) -> Self
    where
        S: Fn() -> SF + Clone + Send + Sync + 'static,
        SF: Future<Output = Duration> + Send,
        B: Fn() -> BF + Send + Sync + 'static,
        BF: Future<Output = ()> + Send,
    {
        let running = Arc::new(AtomicBool::new(true));
        let mut tasks = Vec::with_capacity(workers + 1);
        for _ in 0..workers {
            let (run, steady) = (Arc::clone(&running), steady.clone());
            tasks.push(tokio::spawn(async move {
                while run.load(Relaxed) {
                    let pause = steady().await;
                    tokio::time::sleep(pause).await;
                }
            }));
        }
        let run = Arc::clone(&running);
        tasks.push(tokio::spawn(async move {
            let mut next = Instant::now() + bursts.first_after;
            while run.load(Relaxed) {
                tokio::time::sleep_until(next).await;
                if let Spacing::FromStart(every) = bursts.spacing {
                    next += every;
                }
                futures_util::future::join_all((0..bursts.size).map(|_| burst())).await;
                if let Spacing::AfterEnd(gap) = bursts.spacing {
                    next = Instant::now() + gap;
                }
            }
        }));
        Self { running, tasks }
    }

    /// Lets every request in flight finish, then ends the tasks.
    pub async fn stop(self) {
        self.running.store(false, Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Lets requests in flight finish for up to `grace`, then drops the rest where they stand
    /// (which the pools under test must survive without a leak).
    pub async fn stop_within(self, grace: Duration) {
        self.running.store(false, Relaxed);
        let deadline = Instant::now() + grace;
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                abort.abort();
            }
        }
    }
}
