//! [`Drivers`]: the tasks that run each connection's socket, so shutdown can force-close
//! connections and report what still runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::AcqRel};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::conn::Meta;

/// The live driver tasks.
pub(crate) struct Drivers {
    pub live: AtomicUsize,
    metas: Mutex<HashMap<u64, Arc<Meta>>>,
    pub ended: Notify,
}

impl Drivers {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            live: AtomicUsize::new(0),
            metas: Mutex::new(HashMap::new()),
            ended: Notify::new(),
        })
    }

    fn metas(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Meta>>> {
        self.metas.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spawns the driver of connection `id`; returns what the pool tracks of it.
    pub fn spawn(self: &Arc<Self>, id: u64, driver: crate::connector::Driver) -> Arc<Meta> {
        self.live.fetch_add(1, AcqRel);
        let task = tokio::spawn(DriverTask {
            driver,
            drivers: Arc::clone(self),
            id,
        });
        let meta = Arc::new(Meta::new(id, task.abort_handle()));
        self.metas().insert(id, Arc::clone(&meta));
        if task.is_finished() {
            // It ended before it was registered: its drop found nothing to remove.
            self.metas().remove(&id);
        }
        meta
    }

    /// The connections whose driver still runs, taken out of the lock.
    pub fn snapshot(&self) -> Vec<Arc<Meta>> {
        self.metas().values().cloned().collect()
    }
}

/// Runs a connection's driver and keeps the live count true however it ends (even aborted).
struct DriverTask {
    driver: crate::connector::Driver,
    drivers: Arc<Drivers>,
    id: u64,
}

impl std::future::Future for DriverTask {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        self.driver.as_mut().poll(cx)
    }
}

impl Drop for DriverTask {
    fn drop(&mut self) {
        self.drivers.metas().remove(&self.id);
        self.drivers.live.fetch_sub(1, AcqRel);
        self.drivers.ended.notify_waiters();
    }
}
