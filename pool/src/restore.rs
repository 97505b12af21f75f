//! Bringing a returned session back to idle before anyone else gets it: cancel what is
//! still running, wait for its answer, roll back a transaction block, settle a late cancel,
//! reset session state, run the `after_release` hook; or close the session when any step
//! fails or runs out of time.
//!
//! # Implementation details
//! PostgreSQL's cancel request is a signal the server delivers when it gets to it, and it
//! is lost in two windows: one that lands while the backend is still reading the request it
//! was meant for (on a busy machine the request may sit unread in the socket for a while)
//! is dropped, and one that lands while an earlier statement pipelined ahead of it runs
//! cancels that one instead. Either way the request runs on. So after each cancel request
//! the pool waits [`RECANCEL_AFTER`] for the server to answer the request it was sent for,
//! and sends another while it has not, [`MAX_CANCELS`] at most, all within
//! `validation_timeout`. Each cancel request ends at most one statement, so the steps after
//! it (`ROLLBACK`, the settling statement) are tried once more for every cancel request
//! sent, and a late one costs a retry, never the next user's statement.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;

use crate::config::SessionReset;
use crate::conn::Conn;
use crate::connector::Connector;
use crate::session::{Session, SessionStatus};
use crate::shared::Shared;
use crate::slots::SlotToken;
use crate::stats::CloseReason;

/// How long a returned session's request in flight may take to end by itself before it is
/// cancelled on the server.
pub(crate) const CANCEL_GRACE: Duration = Duration::from_millis(25);

/// How long after a cancel request the request it was sent for may take to end before
/// another is sent (a cancel request takes effect within milliseconds when it is not lost).
pub(crate) const RECANCEL_AFTER: Duration = Duration::from_millis(100);

/// Cancel requests sent at most for one request left in flight.
pub(crate) const MAX_CANCELS: u64 = 3;

impl<C: Connector> Shared<C> {
    /// Brings a returned session back to idle, or closes it; then gives back its slot.
    pub(crate) async fn restore(
        self: Arc<Self>,
        conn: Conn<C::Client>,
        slot: SlotToken,
        status: SessionStatus,
        cancels: u64,
    ) {
        // Dropped with the runtime: the connection is closed and nothing else is owed.
        let outcome = match self.reset_session(&conn, status, cancels).await {
            Ok(()) => self
                .after_release(&conn)
                .await
                .map_err(|why| (CloseReason::HookRejected, why)),
            Err(why) => Err((CloseReason::SessionNotReset, why)),
        };
        match outcome {
            Ok(()) => {
                debug!(conn.id = conn.meta.id, was = ?status, "returned session restored to idle");
                self.take_back(conn, Instant::now());
            }
            Err((reason, why)) => {
                debug!(conn.id = conn.meta.id, was = ?status, reason = %why, "returned session could not be restored; closed");
                self.discard(conn, reason);
            }
        }
        self.slots.check_in(slot);
    }

    /// The `after_release` hook, if any, within `validation_timeout`.
    async fn after_release(&self, conn: &Conn<C::Client>) -> Result<(), String> {
        let Some(hook) = &self.hooks.after_release else {
            return Ok(());
        };
        match tokio::time::timeout(self.config.validation_timeout, hook(&conn.client)).await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the after_release hook said no".into()),
            Err(_) => Err("the after_release hook did not finish within validation_timeout".into()),
        }
    }

    /// Cancel what is in flight and wait for its answer; roll back a transaction block.
    ///
    /// A cancel that lands after the request it was meant for has ended is held by the
    /// backend until its next statement, which it then cancels. So a cancel is only sent for
    /// a request that is still running after a short grace (the answer of one that just ended
    /// is often still on the wire), and after any cancel (`cancels_before`: those the shared
    /// path sent on the session) the session runs a settling statement, which takes a late
    /// cancel if one is coming, before anyone else gets the session.
    async fn reset_session(
        &self,
        conn: &Conn<C::Client>,
        mut status: SessionStatus,
        cancels_before: u64,
    ) -> Result<(), String> {
        if crate::planted::planted(crate::planted::Bug::SessionRestore) {
            return Ok(());
        }
        let how = self.config.session_reset;
        let Some(session) = conn.session.as_ref() else {
            // Untracked: only the configured reset can be done.
            return self.reset_state(conn, how).await;
        };
        let mut cancels = cancels_before.min(MAX_CANCELS);
        if status == SessionStatus::Busy && self.outage.in_outage() {
            // A cancel request would be one more connection the database cannot serve.
            return Err("a request was in flight while the database did not answer".into());
        }
        if status == SessionStatus::Busy {
            let grace = self.config.validation_timeout.min(CANCEL_GRACE);
            if tokio::time::timeout(grace, session.drained())
                .await
                .is_err()
            {
                self.stats.cancels.fetch_add(1, Relaxed);
                let target = session.requests_sent();
                let deadline = Instant::now() + self.config.validation_timeout;
                let mut sent = 0;
                let ended = self
                    .cancel_through(conn, session, || target, deadline, || sent += 1)
                    .await?;
                cancels = (cancels + sent).min(MAX_CANCELS);
                if !ended {
                    return Err("the cancelled request did not end (validation_timeout passed, the connection closed, or the database stopped answering)".into());
                }
            }
            status = session.status();
        }
        // A late cancel takes at most one statement: one more try for each cancel sent.
        let tries = 1 + cancels as usize;
        if matches!(
            status,
            SessionStatus::InTransaction | SessionStatus::FailedTransaction
        ) {
            self.stats.rollbacks.fetch_add(1, Relaxed);
            self.bounded_step(tries, self.validation_bound(), "ROLLBACK", || {
                self.connector.rollback(&conn.client)
            })
            .await?;
            status = session.status();
        }
        if cancels > 0 {
            self.bounded_step(
                tries,
                self.validation_bound(),
                "the settling statement",
                || self.connector.settle(&conn.client),
            )
            .await?;
            status = session.status();
        }
        if status != SessionStatus::Idle {
            return Err(format!("the session is still {status:?}"));
        }
        self.reset_state(conn, how).await?;
        match session.status() {
            SessionStatus::Idle => Ok(()),
            other => Err(format!("the session is {other:?} after its reset")),
        }
    }

    /// The configured reset of session state, if any; `Discard` empties the statement cache,
    /// since it deallocates the statements.
    async fn reset_state(&self, conn: &Conn<C::Client>, how: SessionReset) -> Result<(), String> {
        if how == SessionReset::Off {
            return Ok(());
        }
        self.bounded_step(1, self.validation_bound(), "the session reset", || {
            self.connector.reset(&conn.client, how)
        })
        .await?;
        if how == SessionReset::Discard {
            conn.statements
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
        self.stats.resets.fetch_add(1, Relaxed);
        Ok(())
    }

    fn validation_bound(&self) -> (std::time::Duration, &'static str) {
        (self.config.validation_timeout, "validation_timeout")
    }

    /// Runs `step` up to `tries` times, each bounded by `bound` (its value and its setting's
    /// name, for the message), until it succeeds.
    pub(crate) async fn bounded_step<
        F: std::future::Future<Output = Result<(), crate::BoxError>>,
    >(
        &self,
        tries: usize,
        (limit, setting): (std::time::Duration, &str),
        what: &str,
        step: impl Fn() -> F,
    ) -> Result<(), String> {
        let mut last = String::new();
        for _ in 0..tries {
            match tokio::time::timeout(limit, step()).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => last = format!("{what} failed: {e}"),
                Err(_) => last = format!("{what} did not finish within {setting}"),
            }
        }
        Err(last)
    }

    /// Sends cancel requests for `session` until the server has answered its `target()`th
    /// request (that request and every one before it ended): one now, and another each time
    /// [`RECANCEL_AFTER`] passes without that answer, [`MAX_CANCELS`] at most, until
    /// `deadline`. It gives up at once when the connection is closed, or when one more
    /// cancel is due while the database does not answer (each opens a connection to it).
    /// `target` is read again after each wait: the shared path raises it when another
    /// statement on the session is abandoned. `sent` counts each request. Whether the
    /// target was reached; a cancel request that fails or outlives `connect_timeout` ends it
    /// with the reason.
    pub(crate) async fn cancel_through(
        &self,
        conn: &Conn<C::Client>,
        session: &Session,
        target: impl Fn() -> u64,
        deadline: Instant,
        mut sent: impl FnMut(),
    ) -> Result<bool, String> {
        let mut cancels = 0;
        loop {
            let want = target();
            if session.requests_answered() >= want {
                return Ok(true);
            }
            let now = Instant::now();
            // A closed connection answers nothing more, and during an outage no cancel is
            // sent: the request will not end by a cancel, so the session is given up on.
            if now >= deadline
                || self.connector.is_closed(&conn.client)
                || (cancels < MAX_CANCELS && self.outage.in_outage())
            {
                return Ok(false);
            }
            let mut wait = deadline - now;
            if cancels < MAX_CANCELS {
                if cancels > 0 {
                    debug!(
                        conn.id = conn.meta.id,
                        cancels,
                        "the request did not end after its cancel request (one that lands before the server reads the request, or while a statement ahead of it runs, is lost); cancelling again"
                    );
                }
                cancels += 1;
                sent();
                let bound = (self.config.connect_timeout, "connect_timeout");
                self.bounded_step(1, bound, "the cancel request", || {
                    self.connector.cancel(&conn.client, session)
                })
                .await?;
                wait = wait.min(RECANCEL_AFTER);
            }
            let _ = tokio::time::timeout(wait, session.answered_up_to(want)).await;
        }
    }
}
