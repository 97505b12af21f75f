//! [`OutageState`]: what the pool knows of the database: connected or in an outage, and when
//! to try again.
//!
//! # Implementation details
//! While the database answers, connection attempts run freely. The first failure starts an
//! outage: from then on at most one attempt is in flight at a time (single-flight), and the
//! next one is due after an exponential backoff with full jitter
//! (`random(0, min(max, base * 2^failures))`), so a recovering server is not stampeded.
//! Acquires that need a new connection while no attempt is allowed fail at once with
//! `Unavailable` instead of waiting out their timeout, unless the connections already open
//! still answer (new connections refused, old ones fine): then they wait for one of those.
//!
//! An attempt can also *hang*: behind a proxy or a load balancer whose port accepts while the
//! server's answers vanish (a blackhole), it gets no answer until its own `connect_timeout`.
//! Every attempt in flight is registered here ([`Ticket`]), and one that has had no answer
//! for [`hang_after`](OutageState::hang_after) (twice the outage probe interval, or four
//! times the last connect's duration if longer) begins an outage as a failure would: from
//! then on a new attempt is admitted only when every attempt in flight has hung that long (a
//! hedge), so while attempts hang they start at most one per `hang_after`, whatever the
//! number of waiters; the pool's slots bound how many are in flight (see `connect`).
//!
//! Only a successful connect ends an outage. A round trip on an open connection (validation,
//! the idle probe) proves that session works, not that new ones can be made; it is recorded
//! ([`OutageState::on_round_trip`]) without ending the outage, or a server that refuses new
//! connections would flip the pool between up and down and stampede it with attempts.
//!
//! The backoff must not delay recovery: the maintenance task probes reachability with a cheap
//! TCP connect every `outage_probe_interval`, and the moment the server is reachable again the
//! next attempt becomes due immediately. An attempt refused at TCP connect counts as
//! unreachable too. One accepted and then closed before PostgreSQL said anything while the pool
//! has no open session (a proxy or load balancer with no server behind it: HAProxy while
//! Patroni elects a leader) is paced at a quarter of the probe interval, one at a time, as one
//! that found only standbys is: the proxy's port always answers the probe, so the probe has no
//! news to give, every request fails until a connect succeeds, and such attempts cost the
//! server nothing. With open sessions still serving, it is paced as a refusal. Attempts that
//! reach PostgreSQL and fail (authentication, too many clients) keep backing off; a server
//! still starting up (57P03) is retried at the probe's pace, since it will accept logins within
//! moments.
//!
//! Decisions are made under one mutex, taken by connection attempts and probes only. What
//! health reports is published after each change into atomics (and the last error into a
//! mutex of its own, written only when an attempt fails), so [`OutageState::snapshot`] never
//! waits for an attempt's bookkeeping.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::health::DatabaseStatus;

/// Whether a connection attempt may start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The database is up: attempt freely.
    Free,
    /// An attempt allowed during an outage (the one in flight, or a hedge beside hung ones).
    Trial,
}

/// Why an attempt is followed by another after a short pace (see [`OutageState::on_paced`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Paced {
    /// Servers answered, none in the role asked for: a promotion is close, and acquires
    /// wait for the next attempt.
    Misfit,
    /// A proxy accepted and closed the connection, with no server behind it: acquires fail
    /// fast meanwhile.
    NoServer,
}

/// An admitted attempt, registered as in flight until it is given back with `on_success`,
/// `on_failure` or `release`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) struct Ticket {
    id: u64,
    pub started: Instant,
    pub admission: Admission,
}

/// Why no attempt may start now.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub down_for: Duration,
    pub retry_in: Duration,
    pub last_error: String,
    /// Open connections answered a round trip since the outage began: waiting for one of
    /// them is better than failing.
    pub sessions_answer: bool,
    /// Attempts in flight: waiting for their outcome is better than failing fast, since the
    /// database may already answer again.
    pub attempts_in_flight: usize,
    /// When the next attempt is due, while the server's port answers (a hedge beside hung
    /// attempts, the backoff's end); `None` out of reach.
    pub due: Option<Instant>,
}

pub(super) struct State {
    outage_since: Option<Instant>,
    consecutive_failures: u32,
    next_attempt: Instant,
    /// Attempts in flight: id and start, oldest first.
    attempts: Vec<(u64, Instant)>,
    next_ticket: u64,
    /// The probe saw the server come back: one fresh attempt is due, whatever is in flight
    /// (those lost their packets, and wait for a retransmission up to connect_timeout).
    probe_returned: bool,
    /// The last attempt was accepted and closed by a proxy with no server behind it: the
    /// next one is paced, but no acquire waits for it (it will most likely be closed too).
    no_server: bool,
    /// When the probe whose result was last recorded started (probes overlap).
    last_probe_start: Option<Instant>,
    /// Hedges admitted since the outage began: each waits twice as long as the one before.
    hedges: u32,
    /// When the probe's news last admitted an attempt: at most one per half `hang_floor`
    /// (the outage probe interval), so a listener that accepts and then resets connections
    /// is not tried at the pace of the probes acquires make.
    last_probe_trial: Option<Instant>,
    /// Tickets below this were admitted before the last successful attempt ended: their
    /// failure, or their hanging, is stale (ids order admissions even when the clock does
    /// not move).
    success_seq: u64,
    /// How long the last successful connect took.
    connect_took: Duration,
    reachable: bool,
    ever_connected: bool,
    last_error: Option<String>,
    last_probe_latency: Option<Duration>,
    sessions_answer: bool,
    rng: u64,
}

pub(crate) struct OutageState {
    status: AtomicU8,
    state: Mutex<State>,
    base: Duration,
    max: Duration,
    /// The least time without an answer after which an attempt counts as hung.
    hang_floor: Duration,
    /// The most time between two hedges (`connect_timeout`: by then the last one failed).
    hedge_cap: Duration,
    published: Published,
}

const CONNECTED: u8 = 0;
const CONNECTING: u8 = 1;
const DISCONNECTED: u8 = 2;

/// What a state change means, for logging by the caller.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    None,
    /// An outage began.
    OutageBegan,
    /// The outage ended after this long.
    Recovered(Duration),
}

impl OutageState {
    /// `hang_floor`: the least time without an answer after which an attempt counts as hung.
    pub fn new(
        base: Duration,
        max: Duration,
        hang_floor: Duration,
        hedge_cap: Duration,
        seed: u64,
        now: Instant,
    ) -> Self {
        Self {
            published: Published {
                origin: now,
                outage_since: AtomicU64::new(0),
                probe_latency: AtomicU64::new(0),
                failures: AtomicU32::new(0),
                ever_connected: AtomicBool::new(false),
                last_error: Mutex::new(None),
            },
            status: AtomicU8::new(CONNECTING),
            state: Mutex::new(State {
                outage_since: None,
                consecutive_failures: 0,
                next_attempt: now,
                attempts: Vec::new(),
                next_ticket: 0,
                probe_returned: false,
                no_server: false,
                last_probe_start: None,
                last_probe_trial: None,
                hedges: 0,
                success_seq: 0,
                connect_took: Duration::ZERO,
                reachable: true,
                ever_connected: false,
                last_error: None,
                last_probe_latency: None,
                sessions_answer: false,
                rng: seed | 1,
            }),
            base,
            max,
            hang_floor,
            hedge_cap,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> DatabaseStatus {
        match self.status.load(Ordering::Acquire) {
            CONNECTED => DatabaseStatus::Connected,
            CONNECTING => DatabaseStatus::Connecting,
            _ => DatabaseStatus::Disconnected,
        }
    }

    pub fn in_outage(&self) -> bool {
        self.lock().outage_since.is_some()
    }

    /// During an outage: whether open connections are believed to still answer.
    pub fn sessions_answer(&self) -> bool {
        let s = self.lock();
        s.outage_since.is_some() && s.sessions_answer
    }

    /// May a connection attempt start now? An admitted one is registered as in flight.
    pub fn admit(&self, now: Instant) -> Result<Ticket, Refusal> {
        let mut s = self.lock();
        let Some(since) = s.outage_since else {
            // Up, or never failed: attempts are free (the slots bound them).
            return Ok(Self::register(&mut s, now, Admission::Free));
        };
        let newest = Self::fresh(&s).last().map(|(_, t)| *t);
        let hedge = s.reachable && newest.is_some_and(|t| now >= t + self.hedge_gap(&s));
        if s.probe_returned || (now >= s.next_attempt && (newest.is_none() || hedge)) {
            if s.probe_returned {
                s.last_probe_trial = Some(now);
            } else if newest.is_some() {
                s.hedges = s.hedges.saturating_add(1);
            }
            s.probe_returned = false;
            return Ok(Self::register(&mut s, now, Admission::Trial));
        }
        Err(Refusal {
            down_for: now.saturating_duration_since(since),
            retry_in: self
                .due_locked(&s)
                .map_or(Duration::ZERO, |at| at.saturating_duration_since(now)),
            last_error: s.last_error.clone().unwrap_or_else(|| "unknown".into()),
            sessions_answer: s.sessions_answer,
            attempts_in_flight: Self::fresh(&s).len(),
            // Worth waiting for only while the server's port answers: out of reach, the
            // next attempt waits for the probe, and acquires fail fast meanwhile. Behind a
            // proxy with no server, the port answers and the next attempt is most likely
            // closed as the last one was: acquires fail fast too, and the attempts go on at
            // their pace (the maintenance task and the acquires that arrive start them).
            due: self.due_locked(&s).filter(|_| s.reachable && !s.no_server),
        })
    }

    /// Whether the last probe or attempt reached the server.
    pub fn reachable(&self) -> bool {
        self.lock().reachable
    }

    /// When an attempt becomes admissible during an outage, if one will without news (the
    /// backoff's end, or the next hedge beside hung attempts); `None` outside an outage or
    /// while only the probe can tell.
    pub fn next_due(&self) -> Option<Instant> {
        let s = self.lock();
        s.outage_since?;
        self.due_locked(&s)
    }

    fn due_locked(&self, s: &State) -> Option<Instant> {
        if s.probe_returned {
            return Some(s.next_attempt.min(Instant::now()));
        }
        match Self::fresh(s).last() {
            None => Some(s.next_attempt),
            Some((_, t)) if s.reachable => Some(s.next_attempt.max(*t + self.hedge_gap(s))),
            Some(_) => None,
        }
    }

    /// An attempt ended without a verdict (dropped, or cut short by a shutdown).
    pub fn release(&self, ticket: Ticket) {
        Self::unregister(&mut self.lock(), ticket);
    }

    /// The attempt of `ticket` connected at `now`.
    pub fn on_success(&self, ticket: Ticket, now: Instant) -> Transition {
        let mut s = self.lock();
        Self::unregister(&mut s, ticket);
        s.connect_took = now.saturating_duration_since(ticket.started);
        s.hedges = 0;
        s.success_seq = s.next_ticket;
        s.consecutive_failures = 0;
        s.reachable = true;
        s.no_server = false;
        s.ever_connected = true;
        s.sessions_answer = false;
        s.probe_returned = false;
        self.status.store(CONNECTED, Ordering::Release);
        let since = s.outage_since.take();
        self.publish(&s);
        match since {
            Some(since) => Transition::Recovered(now.saturating_duration_since(since)),
            None => Transition::None,
        }
    }

    /// A round trip on an open connection succeeded in `latency`. Outside an outage that is
    /// all; during one it means the open sessions still work (acquires wait for them), but
    /// the outage lasts until a connect succeeds.
    pub fn on_round_trip(&self, latency: Duration) {
        let mut s = self.lock();
        s.last_probe_latency = Some(latency);
        if s.outage_since.is_some() {
            s.sessions_answer = true;
        }
        self.publish(&s);
    }

    /// A connection attempt failed; `unreachable` when nothing was listening (refused at TCP
    /// connect) or the server was not ready yet, so that the TCP probe's next success makes
    /// the next attempt due at once.
    pub fn on_failure(
        &self,
        ticket: Ticket,
        now: Instant,
        error: String,
        unreachable: bool,
    ) -> Transition {
        self.failed(Some(ticket), now, error, unreachable, false, false)
    }

    /// An attempt that cost the database nothing and says the answer is close, so that the
    /// next one is due after `pace` (a quarter of the outage probe interval), not after the
    /// backoff or the probe's next success. Two kinds:
    /// - it reached servers that answered, none of them in the role asked for
    ///   (`target_session_attrs`): a failover is under way, and a standby is about to be
    ///   promoted;
    /// - something accepted the connection and closed it before PostgreSQL said anything, and
    ///   the pool has no open session left: a proxy or load balancer with no server to pass
    ///   it to (HAProxy between Patroni's leaders). Its port answers the TCP probe whatever
    ///   the servers behind it do, so the probe's news would only pace attempts at half the
    ///   probe interval.
    ///
    /// Either way the next server is noticed within `pace` plus one attempt. Attempts stay
    /// one at a time, so they cost at most one login (or one accepted socket) per `pace`.
    pub fn on_paced(
        &self,
        ticket: Ticket,
        now: Instant,
        error: String,
        pace: Duration,
        kind: Paced,
    ) -> Transition {
        let transition = self.failed(Some(ticket), now, error, false, false, false);
        let mut s = self.lock();
        if s.outage_since.is_some() && s.success_seq <= ticket.id {
            s.reachable = true;
            s.next_attempt = now + pace;
            s.no_server = kind == Paced::NoServer;
        }
        transition
    }

    /// An attempt got no answer within its connect_timeout: a failure, and the next attempt
    /// is due at once, without the backoff (each such attempt took connect_timeout, which
    /// paces them; hedges may run meanwhile).
    pub fn on_timeout(&self, ticket: Ticket, now: Instant, error: String) -> Transition {
        self.failed(Some(ticket), now, error, false, false, true)
    }

    /// A round trip on an existing connection went unanswered: an outage, but a fresh
    /// connection is the best test of the path, so the next attempt is due at once.
    pub fn on_silent(&self, now: Instant, error: String) -> Transition {
        self.failed(None, now, error, false, true, true)
    }

    fn failed(
        &self,
        ticket: Option<Ticket>,
        now: Instant,
        error: String,
        unreachable: bool,
        silent: bool,
        retry_now: bool,
    ) -> Transition {
        let mut s = self.lock();
        if let Some(ticket) = ticket {
            Self::unregister(&mut s, ticket);
            if ticket.id < s.success_seq {
                // Started before a connection succeeded (one hung across the server's
                // return, failing late): it says nothing about the server now.
                return Transition::None;
            }
        }
        s.no_server = false;
        if unreachable {
            s.reachable = false;
        }
        if silent {
            // The open sessions are the silent ones.
            s.sessions_answer = false;
        }
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        self.publish_error(&error);
        s.last_error = Some(error);
        let exp = self
            .base
            .saturating_mul(1u32 << s.consecutive_failures.min(20).saturating_sub(1))
            .min(self.max);
        let jitter = next_f64(&mut s.rng);
        s.next_attempt = if retry_now {
            now
        } else {
            now + exp.mul_f64(jitter)
        };
        self.status.store(DISCONNECTED, Ordering::Release);
        if s.outage_since.is_none() {
            s.outage_since = Some(now);
            // New connections failing says little about the open ones: a proxy refusing new
            // connections still serves them, a crashed server's are already dead (their
            // drivers have ended, so they are discarded as soon as they come back and the
            // pool empties). They are validated before their next use, and one going silent
            // ends this assumption.
            s.sessions_answer = !silent;
            self.publish(&s);
            Transition::OutageBegan
        } else {
            self.publish(&s);
            Transition::None
        }
    }

    /// An attempt that had hung for `hang_after` was closed by the other end (not timed out):
    /// the path that swallowed its answers changed (a proxy healing a blackhole closes what
    /// it held). The next attempt is due now, as after the probe's news, and as paced.
    pub fn on_hung_closed(&self, now: Instant) {
        let mut s = self.lock();
        let paced = (s.last_probe_trial).is_none_or(|t| now >= t + self.hang_floor / 2);
        if s.outage_since.is_some() && paced {
            s.next_attempt = now;
            s.probe_returned = true;
            self.status.store(CONNECTING, Ordering::Release);
        }
    }

    /// The TCP probe started at `started` reached the server (`true`) or not. Probes may
    /// overlap: a result older than the last one recorded is ignored.
    pub fn on_probe(&self, started: Instant, now: Instant, reachable: bool) {
        let mut s = self.lock();
        if s.last_probe_start.is_some_and(|last| started < last) {
            return;
        }
        s.last_probe_start = Some(started);
        if s.outage_since.is_none() {
            return;
        }
        let paced = (s.last_probe_trial).is_none_or(|t| now >= t + self.hang_floor / 2);
        if reachable && !s.reachable && paced {
            // The server is back: the next attempt is due now, whatever the backoff said,
            // and whatever is in flight (those lost their packets).
            s.next_attempt = now;
            s.probe_returned = true;
            self.status.store(CONNECTING, Ordering::Release);
        } else if reachable && !s.reachable {
            // Reachable again, but an attempt the probe admitted failed a moment ago: the
            // next one waits for the pace.
            return;
        }
        if !reachable {
            self.status.store(DISCONNECTED, Ordering::Release);
        }
        s.reachable = reachable;
    }
}

/// xorshift64*: a uniform float in [0, 1). Seeded per pool; only used for jitter.
pub(crate) fn next_f64(state: &mut u64) -> f64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
}

mod hung;
mod published;
use published::Published;

#[cfg(test)]
mod tests;
