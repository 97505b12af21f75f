//! [`Slots`]: the only code that changes how many connections the pool holds.
//!
//! # Implementation details
//! `max_size` slots are the permits of a FIFO-fair `tokio::sync::Semaphore`. Whoever holds a
//! [`Permit`] may take an idle connection ([`Slots::pop_idle`]) or count a new one it opened
//! ([`Slots::opened`]); a connection handed to a user turns its permit into a [`SlotToken`],
//! which [`Slots::check_in`] gives back *after* the connection went back onto the idle stack
//! (or was closed). So `idle + checked out <= max_size` holds at all times, and the types
//! make the order hard to get wrong: nothing else adds or removes a permit.
//!
//! The total and idle counts share one `AtomicU64` (total in the high half), so a snapshot is
//! always consistent and never takes a lock.
//!
//! Idle connections are a stack, bottom oldest. Acquires that wait for a *returned* connection
//! (new ones refused, the open ones answer) queue in the hand-off queue, oldest first; a
//! returned connection goes straight to the first one still waiting.
//!
//! Closing ([`Slots::close`]) sets `closed` under the idle lock and drains the stack there, so
//! no connection can be parked after the drain: [`Slots::push_idle`] checks `closed` under the
//! same lock and refuses.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};

use tokio::sync::{Notify, Semaphore, TryAcquireError, oneshot};
use tokio::time::{Instant, timeout_at};

/// Total and idle counts in one word: total in the high 32 bits, idle in the low 32.
struct Counts(AtomicU64);

const ONE_TOTAL: u64 = 1 << 32;
const ONE_IDLE: u64 = 1;

impl Counts {
    fn get(&self) -> (usize, usize) {
        let v = self.0.load(Acquire);
        ((v >> 32) as usize, (v & 0xffff_ffff) as usize)
    }
    fn add(&self, delta: u64) {
        self.0.fetch_add(delta, AcqRel);
    }
    fn sub(&self, delta: u64) {
        self.0.fetch_sub(delta, AcqRel);
    }
}

/// Where a connection goes on the idle stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The top: it was just used.
    Newest,
    /// The bottom: it keeps its place as the least recently used (the probe's put-back).
    Oldest,
}

/// Why no permit was had.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NoPermit {
    /// The pool is closed.
    Closed,
    /// Every slot is taken (`try_permit`), or the deadline passed (`permit_until`).
    Busy,
}

/// One slot, held. Dropped, it gives the slot back.
#[must_use]
pub(crate) struct Permit<'a, T> {
    slots: &'a Slots<T>,
}

impl<T> Permit<'_, T> {
    /// The slot now belongs to a checked-out connection; [`Slots::check_in`] gives it back.
    pub(crate) fn into_checkout(self) -> SlotToken {
        std::mem::forget(self);
        SlotToken(())
    }
}

impl<T> Drop for Permit<'_, T> {
    fn drop(&mut self) {
        self.slots.semaphore.add_permits(1);
    }
}

/// The slot of a checked-out connection: made only by [`Permit::into_checkout`], spent only
/// by [`Slots::check_in`].
#[must_use]
#[derive(Debug)]
pub(crate) struct SlotToken(());

/// The pool's slots, idle stack, counts and hand-off queue.
pub(crate) struct Slots<T> {
    semaphore: Semaphore,
    idle: Mutex<Vec<T>>,
    counts: Counts,
    /// Acquires waiting for a returned connection, oldest first.
    handoff: Mutex<VecDeque<oneshot::Sender<T>>>,
    /// Entries in `handoff` (a cheap check on the return path).
    handoff_len: AtomicUsize,
    closed: AtomicBool,
    /// Notified whenever the total drops after `close`.
    emptied: Notify,
}

fn lock<X>(m: &Mutex<X>) -> std::sync::MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T> Slots<T> {
    pub(crate) fn new(max_size: usize) -> Self {
        Self {
            semaphore: Semaphore::new(max_size),
            idle: Mutex::new(Vec::with_capacity(max_size)),
            counts: Counts(AtomicU64::new(0)),
            handoff: Mutex::new(VecDeque::new()),
            handoff_len: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            emptied: Notify::new(),
        }
    }

    /// `(total, idle)`, consistent with each other.
    pub(crate) fn counts(&self) -> (usize, usize) {
        self.counts.get()
    }

    /// Whether [`close`](Self::close) has run.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Acquire)
    }

    /// A free slot, now.
    pub(crate) fn try_permit(&self) -> Result<Permit<'_, T>, NoPermit> {
        match self.semaphore.try_acquire() {
            Ok(p) => {
                p.forget();
                Ok(Permit { slots: self })
            }
            Err(TryAcquireError::Closed) => Err(NoPermit::Closed),
            Err(TryAcquireError::NoPermits) => Err(NoPermit::Busy),
        }
    }

    /// A slot, waiting in arrival order until `deadline`. Cancel safe: a dropped wait holds
    /// nothing.
    pub(crate) async fn permit_until(&self, deadline: Instant) -> Result<Permit<'_, T>, NoPermit> {
        match timeout_at(deadline, self.semaphore.acquire()).await {
            Ok(Ok(p)) => {
                p.forget();
                Ok(Permit { slots: self })
            }
            Ok(Err(_)) => Err(NoPermit::Closed),
            Err(_) => Err(NoPermit::Busy),
        }
    }

    /// Gives back the slot of a connection that was checked out, after the connection itself
    /// went back to the stack or was closed.
    pub(crate) fn check_in(&self, token: SlotToken) {
        let SlotToken(()) = token;
        self.semaphore.add_permits(1);
    }

    /// Takes an idle connection for the holder of `permit`: the newest, or the oldest.
    pub(crate) fn pop_idle(&self, _permit: &Permit<'_, T>, oldest: bool) -> Option<T> {
        let mut idle = lock(&self.idle);
        let conn = if !oldest {
            idle.pop()?
        } else if idle.is_empty() {
            return None;
        } else {
            idle.remove(0)
        };
        self.counts.sub(ONE_IDLE);
        Some(conn)
    }

    /// A connection opened by the holder of `permit` joins the pool (as checked out).
    pub(crate) fn opened(&self, _permit: &Permit<'_, T>) {
        self.counts.add(ONE_TOTAL);
    }

    /// A connection opened by an attempt holding `slot` joins the pool (as checked out).
    pub(crate) fn opened_under(&self, _slot: &SlotToken) {
        self.counts.add(ONE_TOTAL);
    }

    /// Parks a checked-out connection on the idle stack. After [`close`](Self::close) it is
    /// refused and no longer counted: the caller closes it.
    pub(crate) fn push_idle(&self, conn: T, end: End) -> Result<(), T> {
        let mut idle = lock(&self.idle);
        if self.is_closed() {
            drop(idle);
            self.remove_checked_out();
            return Err(conn);
        }
        match end {
            End::Newest => idle.push(conn),
            End::Oldest => idle.insert(0, conn),
        }
        self.counts.add(ONE_IDLE);
        Ok(())
    }

    /// A checked-out connection is being closed: it no longer counts.
    pub(crate) fn remove_checked_out(&self) {
        self.counts.sub(ONE_TOTAL);
        if self.is_closed() {
            self.emptied.notify_waiters();
        }
    }

    /// Takes out the idle connections `retire` picks (oldest first; it is told the total the
    /// pool would keep), uncounted, for the caller to close.
    pub(crate) fn retire_idle<R>(
        &self,
        mut retire: impl FnMut(&T, usize) -> Option<R>,
    ) -> Vec<(T, R)> {
        let mut idle = lock(&self.idle);
        let (mut total, _) = self.counts.get();
        let mut retired = Vec::new();
        let mut i = 0;
        while i < idle.len() {
            match retire(&idle[i], total) {
                Some(reason) => {
                    retired.push((idle.remove(i), reason));
                    total -= 1;
                }
                None => i += 1,
            }
        }
        self.counts
            .sub(retired.len() as u64 * (ONE_TOTAL + ONE_IDLE));
        retired
    }

    /// Takes out every idle connection, uncounted, for the caller to close.
    pub(crate) fn drain_idle(&self) -> Vec<T> {
        let mut idle = lock(&self.idle);
        self.counts.sub(idle.len() as u64 * (ONE_TOTAL + ONE_IDLE));
        idle.drain(..).collect()
    }

    /// Closes the slots: waiting and future permits fail, parked connections are drained
    /// (returned for the caller to close) and later pushes are refused. `None` when already
    /// closed: only the first caller gets the drained connections.
    pub(crate) fn close(&self) -> Option<Vec<T>> {
        self.semaphore.close();
        let mut idle = lock(&self.idle);
        if self.closed.swap(true, AcqRel) {
            return None;
        }
        self.counts.sub(idle.len() as u64 * (ONE_TOTAL + ONE_IDLE));
        Some(idle.drain(..).collect())
    }

    /// After `close`: waits until no connection is counted, or `deadline`. True when empty.
    pub(crate) async fn wait_empty(&self, deadline: Instant) -> bool {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable();
            if self.counts.get().0 == 0 {
                return true;
            }
            if timeout_at(deadline, emptied).await.is_err() {
                return self.counts.get().0 == 0;
            }
        }
    }

    /// Whether an acquire waits for a returned connection.
    pub(crate) fn has_handoff_waiters(&self) -> bool {
        self.handoff_len.load(Acquire) > 0
    }

    /// Gives `conn` to the oldest acquire still waiting for a returned connection, or gives
    /// it back when none is.
    pub(crate) fn hand_over(&self, mut conn: T) -> Option<T> {
        let mut queue = lock(&self.handoff);
        while let Some(tx) = queue.pop_front() {
            match tx.send(conn) {
                Ok(()) => {
                    self.handoff_len.store(queue.len(), Release);
                    return None;
                }
                Err(back) => conn = back,
            }
        }
        self.handoff_len.store(0, Release);
        Some(conn)
    }

    /// Joins the hand-off queue for the holder of `permit`; see [`HandoffWait`].
    pub(crate) fn join_handoff(&self, _permit: &Permit<'_, T>) -> HandoffWait<'_, T> {
        let (tx, rx) = oneshot::channel();
        let mut queue = lock(&self.handoff);
        queue.push_back(tx);
        self.handoff_len.store(queue.len(), Release);
        HandoffWait {
            slots: self,
            rx: Some(rx),
        }
    }
}

/// A place in the hand-off queue. Dropped (timeout or cancel), it leaves the queue and gives
/// back a connection that was handed over as it left, through [`HandoffWait::leave`]'s result.
pub(crate) struct HandoffWait<'a, T> {
    slots: &'a Slots<T>,
    rx: Option<oneshot::Receiver<T>>,
}

impl<T> HandoffWait<'_, T> {
    /// Waits for a handed-over connection until `until`.
    pub(crate) async fn recv_until(&mut self, until: Instant) -> Option<T> {
        let rx = self.rx.as_mut()?;
        match timeout_at(until, rx).await {
            Ok(Ok(conn)) => {
                self.rx = None;
                Some(conn)
            }
            _ => None,
        }
    }

    /// Leaves the queue; a connection handed over as we left goes to the next waiter, or is
    /// returned for the caller to park.
    pub(crate) fn leave(mut self) -> Option<T> {
        self.take_late()
    }

    fn take_late(&mut self) -> Option<T> {
        let mut rx = self.rx.take()?;
        rx.close();
        {
            let mut queue = lock(&self.slots.handoff);
            queue.retain(|tx| !tx.is_closed());
            self.slots.handoff_len.store(queue.len(), Release);
        }
        let conn = rx.try_recv().ok()?;
        self.slots.hand_over(conn)
    }
}

impl<T> Drop for HandoffWait<'_, T> {
    fn drop(&mut self) {
        if let Some(conn) = self.take_late() {
            // Dropped mid-wait (a cancelled acquire): the connection goes back to the stack,
            // or, when the pool closed meanwhile, is dropped uncounted (its driver ends).
            let _ = self.slots.push_idle(conn, End::Newest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counts_follow_every_move_and_never_exceed_the_slots() {
        let slots: Slots<u32> = Slots::new(2);
        let a = slots.try_permit().unwrap();
        slots.opened(&a);
        let b = slots.try_permit().unwrap();
        slots.opened(&b);
        assert_eq!(slots.try_permit().err(), Some(NoPermit::Busy));
        assert_eq!(slots.counts(), (2, 0));
        let ta = a.into_checkout();
        slots.push_idle(1, End::Newest).unwrap();
        slots.check_in(ta);
        drop(b); // an attempt that failed after counting would remove it first
        slots.remove_checked_out();
        assert_eq!(slots.counts(), (1, 1));
        let p = slots.try_permit().unwrap();
        assert_eq!(slots.pop_idle(&p, false), Some(1));
        assert_eq!(slots.counts(), (1, 0));
        slots.push_idle(1, End::Newest).unwrap();
        drop(p);
        assert_eq!(slots.counts(), (1, 1));
    }

    #[test]
    fn lifo_and_fifo_ends() {
        let slots: Slots<u32> = Slots::new(4);
        let p = slots.try_permit().unwrap();
        for v in [1, 2, 3] {
            slots.opened(&p);
            slots.push_idle(v, End::Newest).unwrap();
        }
        assert_eq!(slots.pop_idle(&p, false), Some(3));
        assert_eq!(slots.pop_idle(&p, true), Some(1));
        slots.push_idle(1, End::Oldest).unwrap();
        assert_eq!(slots.pop_idle(&p, true), Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn close_drains_and_refuses_later_pushes() {
        let slots: Slots<u32> = Slots::new(2);
        let p = slots.try_permit().unwrap();
        slots.opened(&p);
        slots.opened(&p);
        slots.push_idle(7, End::Newest).unwrap();
        let t = p.into_checkout();
        assert_eq!(slots.close(), Some(vec![7]));
        assert_eq!(slots.close(), None);
        assert_eq!(slots.counts(), (1, 0));
        assert_eq!(slots.try_permit().err(), Some(NoPermit::Closed));
        let deadline = Instant::now() + std::time::Duration::from_secs(1);
        assert!(!slots.wait_empty(Instant::now()).await);
        assert_eq!(slots.push_idle(8, End::Newest), Err(8));
        slots.check_in(t);
        assert!(slots.wait_empty(deadline).await);
        assert_eq!(slots.counts(), (0, 0));
    }

    #[test]
    fn retire_takes_the_chosen_oldest_first_and_sees_the_remaining_total() {
        let slots: Slots<u32> = Slots::new(4);
        let p = slots.try_permit().unwrap();
        for v in [1, 2, 3, 4] {
            slots.opened(&p);
            slots.push_idle(v, End::Newest).unwrap();
        }
        let retired = slots.retire_idle(|_, total| (total > 2).then_some(()));
        assert_eq!(retired.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(slots.counts(), (2, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_handed_over_connection_reaches_the_oldest_waiter_or_comes_back() {
        let slots: Slots<u32> = Slots::new(2);
        let p = slots.try_permit().unwrap();
        let q = slots.try_permit().unwrap();
        let mut first = slots.join_handoff(&p);
        let second = slots.join_handoff(&q);
        assert!(slots.has_handoff_waiters());
        assert_eq!(slots.hand_over(5), None);
        let got = first
            .recv_until(Instant::now() + std::time::Duration::from_millis(10))
            .await;
        assert_eq!(got, Some(5));
        // The second waiter leaves as a connection is handed to it: it comes back.
        assert_eq!(slots.hand_over(6), None);
        assert_eq!(second.leave(), Some(6));
        assert!(!slots.has_handoff_waiters());
        assert_eq!(slots.hand_over(9), Some(9));
    }
}
