//! One pooled connection: the client, what the pool knows of it, and its statement cache.

use std::collections::HashMap;
use std::panic::Location;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering::Relaxed};

use tokio::task::AbortHandle;
use tokio::time::Instant;

/// A pooled connection, boxed: it moves between the idle stack, an acquire and its guard on
/// every checkout, and a pointer moves faster than the 300 bytes of a client and its state.
pub(crate) type Conn<Client> = Box<PoolConn<Client>>;

/// One open connection, owned by the idle stack or by a checkout.
pub(crate) struct PoolConn<Client> {
    pub client: Client,
    pub meta: Arc<Meta>,
    pub uses: u64,
    pub last_used: Instant,
    /// When it was opened (for the orphan check: a server process that old is this one).
    pub opened_at: Instant,
    pub validated_epoch: u64,
    pub expires_at: Option<Instant>,
    pub statements: StatementCache,
    /// The server session's tracked state, when the connector tracks it.
    pub session: Option<Arc<crate::session::Session>>,
}

/// What the pool tracks of each connection outside of it: for leak detection and force-close.
pub(crate) struct Meta {
    pub id: u64,
    pub driver: AbortHandle,
    /// Nanoseconds since the pool started at the last checkout, plus one; 0 when not checked out.
    pub checked_out_at: AtomicU64,
    /// Where it was acquired: always null or a `&'static Location`.
    pub location: AtomicPtr<Location<'static>>,
    pub leak_reported: AtomicBool,
    /// Force-closed by shutdown while checked out.
    pub forced: AtomicBool,
}

impl Meta {
    pub fn new(id: u64, driver: AbortHandle) -> Self {
        Self {
            id,
            driver,
            checked_out_at: AtomicU64::new(0),
            location: AtomicPtr::new(std::ptr::null_mut()),
            leak_reported: AtomicBool::new(false),
            forced: AtomicBool::new(false),
        }
    }

    pub fn location(&self) -> Option<&'static Location<'static>> {
        let p = self.location.load(Relaxed);
        // Safety: the pointer is only ever null or made from a `&'static Location<'static>`.
        unsafe { p.as_ref() }
    }

    /// Records a checkout at `at_nanos` (since the pool started) from `location`.
    pub fn checked_out(&self, at_nanos: u64, location: &'static Location<'static>) {
        self.checked_out_at.store(at_nanos + 1, Relaxed);
        self.location
            .store(location as *const Location<'static> as *mut _, Relaxed);
        self.leak_reported.store(false, Relaxed);
    }

    /// Records the return (or close) of a checked-out connection.
    pub fn checked_in(&self) {
        self.checked_out_at.store(0, Relaxed);
    }
}

/// Prepared statements of one connection, kept across checkouts.
#[derive(Default)]
pub(crate) struct StatementCache(pub Mutex<HashMap<String, tokio_postgres::Statement>>);
