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

/// The statement `conn` has cached for `query`, prepared (and cached, up to `capacity`) on a
/// miss: what `prepare_cached` and the shared path both use.
pub(crate) async fn prepare_cached(
    conn: &PoolConn<tokio_postgres::Client>,
    query: &str,
    capacity: usize,
) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
    let cache = &conn.statements;
    if let Some(stmt) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(query) {
        return Ok(stmt);
    }
    let stmt = conn.client.prepare(query).await?;
    // The evicted statement is closed on the server when its last clone drops, outside the
    // lock.
    let _evicted =
        cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(query, stmt.clone(), capacity);
    Ok(stmt)
}

/// Prepared statements of one connection, kept across checkouts.
pub(crate) type StatementCache = Mutex<Lru<tokio_postgres::Statement>>;

/// The statement cache's hash of a query text: a multiply-rotate over 8 bytes at a time,
/// several times cheaper than the standard SipHash for the short texts a cache holds (every
/// `prepare_cached` hashes its text). Not resistant to chosen collisions, which cost at most
/// slower lookups in a map of `statement_cache_capacity` entries.
#[derive(Default)]
pub(crate) struct QueryHasher(u64);

impl std::hash::Hasher for QueryHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0xf135_7aea_2e62_a9c5;
        let mut h = self.0;
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            h = (h.rotate_left(26) ^ w).wrapping_mul(K);
        }
        for &b in words.remainder() {
            h = (h.rotate_left(26) ^ u64::from(b)).wrapping_mul(K);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        // The high bits are the well mixed ones; hashbrown takes its control bits from the top.
        self.0.rotate_left(26)
    }
}

/// A least-recently-used map from query text to what was prepared for it. Hits are O(1); an
/// insert into a full map scans for the oldest entry, which is cheap beside the round trip
/// that prepared the statement being inserted.
pub(crate) struct Lru<V> {
    entries: HashMap<String, (V, u64), std::hash::BuildHasherDefault<QueryHasher>>,
    /// Bumped on every use; an entry's stamp is the tick of its last use.
    tick: u64,
}

impl<V> Default for Lru<V> {
    fn default() -> Self {
        Self {
            entries: HashMap::default(),
            tick: 0,
        }
    }
}

impl<V: Clone> Lru<V> {
    /// The value for `key`, now the most recently used.
    pub fn get(&mut self, key: &str) -> Option<V> {
        self.tick += 1;
        let (value, stamp) = self.entries.get_mut(key)?;
        *stamp = self.tick;
        Some(value.clone())
    }

    /// Stores `value` as the most recently used, evicting the least recently used entry when
    /// `capacity` is reached; returns the evicted one. A capacity of 0 stores nothing.
    pub fn insert(&mut self, key: &str, value: V, capacity: usize) -> Option<(String, V)> {
        if capacity == 0 {
            return None;
        }
        self.tick += 1;
        if let Some(entry) = self.entries.get_mut(key) {
            *entry = (value, self.tick);
            return None;
        }
        let evicted = if self.entries.len() >= capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, stamp))| *stamp)
                .map(|(key, _)| key.clone());
            oldest.and_then(|key| self.entries.remove_entry(&key).map(|(k, (v, _))| (k, v)))
        } else {
            None
        };
        self.entries.insert(key.to_string(), (value, self.tick));
        evicted
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::Lru;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut lru = Lru::default();
        assert_eq!(lru.insert("a", 1, 2), None);
        assert_eq!(lru.insert("b", 2, 2), None);
        // Using `a` makes `b` the oldest.
        assert_eq!(lru.get("a"), Some(1));
        assert_eq!(lru.insert("c", 3, 2), Some(("b".to_string(), 2)));
        assert_eq!(lru.get("b"), None);
        assert_eq!((lru.get("a"), lru.get("c")), (Some(1), Some(3)));
        assert_eq!(lru.len(), 2);
        // Now `a` is the oldest again.
        assert_eq!(lru.insert("d", 4, 2), Some(("a".to_string(), 1)));
    }

    #[test]
    fn without_reads_the_first_inserted_is_evicted_first() {
        let mut lru = Lru::default();
        for (i, key) in ["a", "b", "c", "d"].into_iter().enumerate() {
            lru.insert(key, i, 3);
        }
        assert_eq!(lru.get("a"), None);
        assert_eq!(lru.insert("e", 4, 3), Some(("b".to_string(), 1)));
    }

    #[test]
    fn replacing_a_key_evicts_nothing_and_renews_it() {
        let mut lru = Lru::default();
        lru.insert("a", 1, 2);
        lru.insert("b", 2, 2);
        assert_eq!(lru.insert("a", 10, 2), None);
        assert_eq!(lru.insert("c", 3, 2), Some(("b".to_string(), 2)));
        assert_eq!(lru.get("a"), Some(10));
    }

    #[test]
    fn a_capacity_of_zero_keeps_nothing_and_clear_empties() {
        let mut lru = Lru::default();
        assert_eq!(lru.insert("a", 1, 0), None);
        assert_eq!(lru.len(), 0);
        lru.insert("a", 1, 1);
        assert_eq!(lru.insert("b", 2, 1), Some(("a".to_string(), 1)));
        lru.clear();
        assert_eq!((lru.len(), lru.get("b")), (0, None));
    }
}
