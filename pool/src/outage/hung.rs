//! The attempts in flight: registered by ticket, the fresh ones (started after the last
//! success), and when one counts as hung or a hedge is due.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::{Admission, DISCONNECTED, OutageState, State, Ticket};

impl OutageState {
    pub(super) fn register(s: &mut State, now: Instant, admission: Admission) -> Ticket {
        let id = s.next_ticket;
        s.next_ticket += 1;
        s.attempts.push((id, now));
        Ticket {
            id,
            started: now,
            admission,
        }
    }

    /// Takes `ticket` off the attempts in flight; false if it was not there.
    pub(super) fn unregister(s: &mut State, ticket: Ticket) -> bool {
        let before = s.attempts.len();
        s.attempts.retain(|(id, _)| *id != ticket.id);
        s.attempts.len() != before
    }

    /// The attempts in flight that started after the last success, oldest first: those
    /// started before it (hung across a recovery) say nothing of the server now.
    pub(super) fn fresh(s: &State) -> &[(u64, Instant)] {
        let from = s.attempts.partition_point(|(id, _)| *id < s.success_seq);
        &s.attempts[from..]
    }

    /// How long an attempt may go without an answer before it counts as hung.
    pub fn hang_after(&self) -> Duration {
        self.hang_after_locked(&self.lock())
    }

    pub(super) fn hang_after_locked(&self, s: &State) -> Duration {
        self.hang_floor.max(s.connect_took.saturating_mul(4))
    }

    /// How long the newest attempt must have hung before a hedge: `hang_after`, doubling
    /// with every hedge since the outage began, up to `connect_timeout`. A silent path that
    /// lasts costs one attempt per `connect_timeout`; its end is noticed sooner by the probe
    /// or by a hung attempt being closed ([`OutageState::on_hung_closed`]).
    pub(super) fn hedge_gap(&self, s: &State) -> Duration {
        let first = self.hang_after_locked(s);
        first
            .saturating_mul(1 << s.hedges.min(16))
            .min(self.hedge_cap.max(first))
    }

    /// Attempts in flight now (each holds a slot).
    pub fn attempts_in_flight(&self) -> usize {
        self.lock().attempts.len()
    }

    /// Attempts in flight that started after the last success: the ones worth waiting for.
    pub fn fresh_attempts(&self) -> usize {
        Self::fresh(&self.lock()).len()
    }

    /// Begins an outage when the oldest attempt in flight has had no answer for
    /// `hang_after`; true when that began one now.
    pub fn overdue(&self, now: Instant, target: &str) -> bool {
        let mut s = self.lock();
        if s.outage_since.is_some() {
            return false;
        }
        let hang_after = self.hang_after_locked(&s);
        let Some((_, oldest)) = Self::fresh(&s).first().copied() else {
            return false;
        };
        if now < oldest + hang_after {
            return false;
        }
        let error = format!("a connection attempt to {target} got no answer within {hang_after:?}");
        self.publish_error(&error);
        s.last_error = Some(error);
        s.outage_since = Some(now);
        s.next_attempt = now;
        s.sessions_answer = false;
        s.hedges = 0;
        self.status.store(DISCONNECTED, Ordering::Release);
        self.publish(&s);
        true
    }
}
