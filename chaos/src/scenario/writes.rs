//! Every write checked, as Jepsen would: a history of writes (each with a unique id, its
//! invocation and completion times and what the client was told), the leader terms the
//! harness observed, and what every server holds after the heal.
//!
//! Each write is classified as one of:
//!
//! | class | told | found after the heal |
//! | --- | --- | --- |
//! | acknowledged, present | ok | yes |
//! | **acknowledged, lost** | ok | no |
//! | failed, absent | a definite error | no |
//! | **failed yet present** | a definite error | yes: the error lied, it must have said "unknown" |
//! | unknown | no answer, or the session ended with the write out | either |
//!
//! A write **acknowledged by a server after another server became primary** is split brain.
//! The checker knows it from the history alone:
//! - an acknowledged write invoked after a later term began (its leader reported primary by
//!   Patroni's REST API) that the final state lacks: the final leader did not acknowledge it
//!   (it keeps what it acknowledged), so a server that was no longer primary did;
//! - an acknowledged write found with the address of a server whose term had ended before the
//!   write was invoked (every row records `inet_server_addr()`).
//!
//! Terms are observed by polling, so a term begins in the history a poll after it began on
//! the server: a write counted as split brain began after the new primary was already
//! reporting itself primary, which is the strictest reading the history allows.
//!
//! An acknowledged write lost without split brain (invoked before the last promotion) is
//! lost to the replication mode: a failure under `synchronous_mode`, a figure otherwise.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::judge::{crit, no_hang, timed};
use crate::peers::{QUERY_TIMEOUT, Subject};
use crate::report::{Op, Outcome, ScenarioReport};

/// The writers of a scenario: `workers` tasks, each writing (`INSERT INTO chaos_writes (id)
/// VALUES (id)`, a unique id) every `pace` until told to stop; the history they record.
pub struct Writers {
    history: Arc<Mutex<Vec<Write>>>,
    stopped: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Writers {
    /// Starts them. Times are ms since `origin`; a write unanswered after `cutoff` is
    /// recorded as a hang, its outcome unknown.
    pub fn start(
        subject: &Arc<dyn Subject>,
        workers: usize,
        pace: Duration,
        origin: Instant,
        cutoff: Duration,
    ) -> Self {
        let ms = move |t: Instant| t.saturating_duration_since(origin).as_secs_f64() * 1000.0;
        let history: Arc<Mutex<Vec<Write>>> = Arc::default();
        let stopped = Arc::new(AtomicBool::new(false));
        let next_id = Arc::new(AtomicU64::new(1));
        let tasks = (0..workers)
            .map(|_| {
                let (subject, history, next_id, stopped) = (
                    Arc::clone(subject),
                    Arc::clone(&history),
                    Arc::clone(&next_id),
                    Arc::clone(&stopped),
                );
                tokio::spawn(async move {
                    while !stopped.load(Relaxed) {
                        let id = next_id.fetch_add(1, Relaxed) as i64;
                        let sql = format!("INSERT INTO chaos_writes (id) VALUES ({id})");
                        let started = Instant::now();
                        let (outcome, error) = match tokio::time::timeout(
                            cutoff,
                            subject.request(&sql, QUERY_TIMEOUT),
                        )
                        .await
                        {
                            Ok(answer) => answer,
                            Err(_) => (Outcome::Info, Some("hang".to_string())),
                        };
                        let op = Op {
                            start_ms: ms(started),
                            end_ms: ms(Instant::now()),
                            outcome,
                            error,
                        };
                        history
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(Write { id, op });
                        tokio::time::sleep(pace).await;
                    }
                })
            })
            .collect();
        Writers {
            history,
            stopped,
            tasks,
        }
    }

    /// Stops them, waits for the writes in flight, and returns the history by start time.
    pub async fn stop(mut self) -> Vec<Write> {
        self.stopped.store(true, Relaxed);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
        let mut writes =
            std::mem::take(&mut *self.history.lock().unwrap_or_else(|e| e.into_inner()));
        writes.sort_by(|a, b| a.op.start_ms.total_cmp(&b.op.start_ms));
        writes
    }
}

impl Drop for Writers {
    /// A scenario that ends early (an error, or its future dropped) stops its writers: each
    /// ends after the write it has in flight, never writing on into a torn-down setup.
    fn drop(&mut self) {
        self.stopped.store(true, Relaxed);
    }
}

/// One write of the history.
#[derive(Debug, Clone)]
pub struct Write {
    /// Its unique id (the row's key).
    pub id: i64,
    /// Invocation, completion and what the client was told.
    pub op: Op,
}

/// A leader term as observed: from `from_ms`, `leader` reported itself the running primary.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    /// When it was first seen (ms since the scenario's origin).
    pub from_ms: f64,
    /// The leader's name.
    pub leader: String,
    /// The leader's address (what `inet_server_addr()` records).
    pub addr: String,
}

/// What the servers hold after the heal.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The rows of the final leader: id to the address of the server that inserted it.
    pub on_leader: HashMap<i64, String>,
    /// Every id any server holds.
    pub anywhere: HashSet<i64>,
}

/// The classified history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checked {
    /// Writes in the history.
    pub writes: usize,
    /// Acknowledged and present on the final leader.
    pub acked_present: usize,
    /// Acknowledged, invoked before the last promotion, and lost (to asynchronous replication,
    /// or a defect under `synchronous_mode`).
    pub acked_lost: Vec<i64>,
    /// Failed with a definite error and absent everywhere.
    pub failed_absent: usize,
    /// Failed with a definite error, yet present somewhere: the error should have said unknown.
    pub failed_present: Vec<i64>,
    /// Outcome unknown to the client (of which present: `unknown_present`).
    pub unknown: usize,
    /// Unknown outcomes that were in fact committed.
    pub unknown_present: usize,
    /// Acknowledged by a server after another server became primary.
    pub split_brain: Vec<i64>,
}

/// Classifies `writes` against the observed `terms` (in order) and what was `found`.
pub fn check(writes: &[Write], terms: &[Term], found: &Found) -> Checked {
    let mut c = Checked {
        writes: writes.len(),
        ..Checked::default()
    };
    // The last promotion: a term after the first one observed.
    let last_promotion = terms.iter().skip(1).map(|t| t.from_ms).next_back();
    let term_at = |ms: f64| terms.iter().rev().find(|t| t.from_ms <= ms);
    for w in writes {
        let present_on_leader = found.on_leader.get(&w.id);
        let present = present_on_leader.is_some() || found.anywhere.contains(&w.id);
        match w.op.outcome {
            Outcome::Ok => match present_on_leader {
                Some(addr) => {
                    c.acked_present += 1;
                    // Inserted by a server whose term had ended before the write began.
                    let stale = term_at(w.op.start_ms).is_some_and(|t| {
                        t.addr != *addr
                            && terms
                                .iter()
                                .any(|old| old.addr == *addr && old.from_ms < t.from_ms)
                    });
                    if stale {
                        c.split_brain.push(w.id);
                    }
                }
                None => {
                    if last_promotion.is_some_and(|p| w.op.start_ms >= p) {
                        c.split_brain.push(w.id);
                    } else {
                        c.acked_lost.push(w.id);
                    }
                }
            },
            Outcome::Fail => {
                if present {
                    c.failed_present.push(w.id);
                } else {
                    c.failed_absent += 1;
                }
            }
            Outcome::Info => {
                c.unknown += 1;
                if present {
                    c.unknown_present += 1;
                }
            }
        }
    }
    c
}

/// What the pool's time after a promotion runs from, when later than Patroni's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reference {
    /// The new leader's first answer out of recovery.
    Server,
    /// HAProxy routing to the new leader (and it out of recovery).
    Route,
}

/// The pool's first acknowledged write after Patroni reports the new leader: within this.
pub(crate) const FIRST_WRITE_BOUND_MS: f64 = 100.0;

/// The criteria and figures of a run of the HA family from its history. `window` is the
/// fault's start, the heal (the promotion Patroni reported when the fault `moves_the_leader`,
/// observed every `poll`, else the end of the fault window) and, through HAProxy, when it
/// routed to the new leader: the pool's own time runs from then.
#[allow(clippy::too_many_arguments)]
pub(crate) fn judge_history(
    report: &mut ScenarioReport,
    moves_the_leader: bool,
    synchronous: bool,
    poll: Duration,
    writes: &[Write],
    terms: &[Term],
    found: &Found,
    window: (f64, f64, Option<(f64, Reference)>),
    bare: Option<(f64, &str)>,
    read: bool,
) {
    let (fault_start, heal, reference) = window;
    let checked = check(writes, terms, found);
    let m = &mut report.metrics;
    m.insert("writes".into(), checked.writes as f64);
    m.insert("acknowledged_present".into(), checked.acked_present as f64);
    m.insert("acknowledged_lost".into(), checked.acked_lost.len() as f64);
    m.insert("failed_absent".into(), checked.failed_absent as f64);
    m.insert(
        "failed_yet_present".into(),
        checked.failed_present.len() as f64,
    );
    m.insert("unknown".into(), checked.unknown as f64);
    m.insert("unknown_present".into(), checked.unknown_present as f64);
    m.insert("split_brain".into(), checked.split_brain.len() as f64);
    // The write gap: the last acknowledged write before the fault to the first after it.
    let last_before = writes
        .iter()
        .filter(|w| w.op.outcome == Outcome::Ok && w.op.end_ms <= fault_start)
        .map(|w| w.op.end_ms)
        .fold(f64::NEG_INFINITY, f64::max);
    let first_after = |from: f64| {
        writes
            .iter()
            .filter(|w| w.op.outcome == Outcome::Ok && w.op.end_ms >= from)
            .map(|w| w.op.end_ms)
            .fold(f64::INFINITY, f64::min)
    };
    // Writes acknowledged during the fault by the old leader (before it noticed) do not end
    // the gap: the gap ends at the first acknowledged write after the first failure.
    let first_failure = writes
        .iter()
        .filter(|w| w.op.outcome != Outcome::Ok && w.op.end_ms >= fault_start)
        .map(|w| w.op.start_ms)
        .fold(f64::INFINITY, f64::min);
    let resumed = first_after(first_failure.min(heal));
    if last_before.is_finite() && resumed.is_finite() {
        m.insert("write_gap_ms".into(), resumed - last_before);
    }
    if moves_the_leader {
        // The first write acknowledged once Patroni reported the new leader. Terms are seen a
        // poll late, so a write may be acknowledged just before: 0 then.
        let from = reference.map_or(heal, |(r, _)| r.max(heal));
        let first = first_after(from - poll.as_secs_f64() * 1000.0);
        let after_promotion = (first - from).max(0.0);
        if first.is_finite() {
            m.insert("first_write_after_promotion_ms".into(), after_promotion);
            m.insert("recovery_ms".into(), after_promotion);
        }
        // The same figure for a client with no pool, in the same window (see `ha::bare`).
        let baseline = bare.map(|(b, what)| ((b - from).max(0.0), what));
        if let Some((b, _)) = baseline {
            m.insert("bare_first_write_after_promotion_ms".into(), b);
        }
        let criterion = timed(
            "first_write_after_promotion",
            match reference.map(|(_, r)| r) {
                Some(Reference::Route) => {
                    "time from HAProxy routing to the new leader (once Patroni reported it and it took writes) to the first acknowledged write"
                }
                Some(Reference::Server) => {
                    "time from the new leader taking writes (once Patroni reported it) to the first acknowledged write"
                }
                None => {
                    "time from Patroni reporting the new leader to the first acknowledged write"
                }
            },
            if first.is_finite() {
                format!("{after_promotion:.0} ms")
            } else {
                "no write was acknowledged after the promotion".into()
            },
            &format!("<= {FIRST_WRITE_BOUND_MS:.0} ms"),
            first.is_finite().then_some(after_promotion),
            FIRST_WRITE_BOUND_MS,
        );
        report.criteria.push(match baseline {
            Some((b, what)) => criterion.with_baseline(what, b),
            None => criterion,
        });
    } else {
        let first = first_after(heal);
        if first.is_finite() {
            m.insert("recovery_ms".into(), (first - heal).max(0.0));
        }
        report.criteria.push(crit(
            "writes_resume",
            "a write is acknowledged after the heal",
            if first.is_finite() {
                format!("{:.0} ms after the heal", first - heal)
            } else {
                "none".into()
            },
            "yes",
            first.is_finite(),
        ));
    }
    report.criteria.push(crit(
        "split_brain",
        "writes acknowledged by a server after another server became primary",
        format!("{} of {}", checked.split_brain.len(), checked.writes),
        "0",
        read && checked.split_brain.is_empty(),
    ));
    report.criteria.push(crit(
        "failed_yet_present",
        "writes reported failed (a definite error) that are present after the heal: the error should have said the outcome is unknown",
        format!("{} of {}", checked.failed_present.len(), checked.writes),
        "0",
        read && checked.failed_present.is_empty(),
    ));
    if synchronous {
        report.criteria.push(crit(
            "acknowledged_kept",
            "acknowledged writes missing from the final leader (synchronous_mode: none may be lost)",
            format!(
                "{} of {}",
                checked.acked_lost.len(),
                checked.acked_lost.len() + checked.acked_present
            ),
            "0",
            read && checked.acked_lost.is_empty(),
        ));
    } else if !checked.acked_lost.is_empty() {
        report.anomalies.push(format!(
            "{} acknowledged write(s) lost with the old leader (asynchronous replication; not charged to the pool)",
            checked.acked_lost.len()
        ));
    }
    no_hang(report, "write", writes.iter().map(|w| w.op.latency_ms()));
    let refused = writes
        .iter()
        .filter(|w| w.op.error.as_deref() == Some(crate::peers::handlers::READ_ONLY_LABEL))
        .count();
    report
        .metrics
        .insert("writes_refused_read_only".into(), refused as f64);
    // Patroni restarts a demoted server, so every session on it ends; a pool that checks the
    // role of what it opens never sends a write to a standby.
    report.criteria.push(crit(
        "no_standby_session",
        "writes refused as read-only (SQLSTATE 25006): a session on a standby or a demoted server handed out for writes despite target_session_attrs=read-write",
        format!("{refused} of {}", writes.len()),
        "0",
        refused == 0,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(id: i64, start_ms: f64, outcome: Outcome) -> Write {
        Write {
            id,
            op: Op {
                start_ms,
                end_ms: start_ms + 1.0,
                outcome,
                error: None,
            },
        }
    }

    fn terms() -> Vec<Term> {
        vec![
            Term {
                from_ms: 0.0,
                leader: "n1".into(),
                addr: "10.0.0.11".into(),
            },
            Term {
                from_ms: 100.0,
                leader: "n2".into(),
                addr: "10.0.0.12".into(),
            },
        ]
    }

    #[test]
    fn each_write_lands_in_one_class() {
        let found = Found {
            on_leader: [
                (1, "10.0.0.11"),
                (3, "10.0.0.12"),
                (5, "10.0.0.12"),
                (7, "10.0.0.12"),
            ]
            .into_iter()
            .map(|(id, a)| (id, a.to_string()))
            .collect(),
            anywhere: [1, 3, 5, 7].into_iter().collect(),
        };
        let writes = [
            write(1, 10.0, Outcome::Ok),   // acknowledged by n1 in its term, kept
            write(2, 50.0, Outcome::Ok),   // acknowledged by n1, lost before the promotion
            write(3, 150.0, Outcome::Ok),  // acknowledged by n2, kept
            write(4, 150.0, Outcome::Ok),  // acknowledged after the promotion, not kept
            write(5, 60.0, Outcome::Fail), // said failed, yet there
            write(6, 60.0, Outcome::Fail), // failed, absent
            write(7, 90.0, Outcome::Info), // unknown, committed
            write(8, 90.0, Outcome::Info), // unknown, not
        ];
        let c = check(&writes, &terms(), &found);
        assert_eq!(c.writes, 8);
        assert_eq!(c.acked_present, 2);
        assert_eq!(c.acked_lost, vec![2]);
        assert_eq!(c.split_brain, vec![4]);
        assert_eq!(c.failed_present, vec![5]);
        assert_eq!(c.failed_absent, 1);
        assert_eq!((c.unknown, c.unknown_present), (2, 1));
    }

    #[test]
    fn a_row_of_a_deposed_leader_written_after_the_promotion_is_split_brain() {
        let found = Found {
            on_leader: [(9, "10.0.0.11".to_string())].into_iter().collect(),
            anywhere: [9].into_iter().collect(),
        };
        let c = check(&[write(9, 120.0, Outcome::Ok)], &terms(), &found);
        assert_eq!(c.split_brain, vec![9]);
        // Invoked before the promotion was seen: n1 was still the primary as far as anyone knew.
        let c = check(&[write(9, 80.0, Outcome::Ok)], &terms(), &found);
        assert!(c.split_brain.is_empty());
    }

    #[test]
    fn with_one_term_nothing_is_split_brain() {
        let one = &terms()[..1];
        let c = check(&[write(1, 500.0, Outcome::Ok)], one, &Found::default());
        assert_eq!(c.acked_lost, vec![1]);
        assert!(c.split_brain.is_empty());
    }
}
