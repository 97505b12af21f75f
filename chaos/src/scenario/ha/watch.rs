//! The leader terms as the harness saw them: every node's REST API polled on its own
//! ([`Watch`]), and the terms read from those answers ([`terms`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::postgres::NodeState;
use crate::scenario::writes::Term;

/// The role changes the harness observed: each node polled on its own, a change recorded
/// when its state differs from the last one it answered with.
#[derive(Default)]
pub(crate) struct Watch {
    events: Mutex<Vec<(f64, String, Option<NodeState>)>>,
}

impl Watch {
    pub(crate) fn push(&self, ms: f64, node: &str, state: Option<NodeState>) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((ms, node.to_string(), state));
    }

    pub(crate) fn events(&self) -> Vec<(f64, String, Option<NodeState>)> {
        let mut e = self.events.lock().unwrap_or_else(|e| e.into_inner()).clone();
        e.sort_by(|a, b| a.0.total_cmp(&b.0));
        e
    }
}

/// Answers the harness recorded when they changed, each with its time: what HAProxy sends
/// connections to ([`RouteWatch`]), whether each node takes writes ([`WritableWatch`]).
pub(crate) struct Changes<T> {
    events: Mutex<Vec<(f64, T)>>,
}

impl<T> Default for Changes<T> {
    fn default() -> Self {
        Changes {
            events: Mutex::new(Vec::new()),
        }
    }
}

impl<T> Changes<T> {
    pub(crate) fn push(&self, ms: f64, answer: T) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((ms, answer));
    }

    /// Whether an answer recorded after `at` satisfies `pred`.
    pub(crate) fn seen_after(&self, at: f64, pred: impl Fn(&T) -> bool) -> bool {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        events.iter().any(|(t, a)| *t > at && pred(a))
    }

    /// When `holds` held from `at` on, among the answers `of` selects: at `at` if the last
    /// one before it holds, else at the first one after it that does.
    fn holding_from(
        &self,
        at: f64,
        of: impl Fn(&T) -> bool,
        holds: impl Fn(&T) -> bool,
    ) -> Option<f64> {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let selected = || events.iter().filter(|(_, a)| of(a));
        if selected()
            .rfind(|(t, _)| *t <= at)
            .is_some_and(|(_, a)| holds(a))
        {
            return Some(at);
        }
        selected()
            .find(|(t, a)| *t > at && holds(a))
            .map(|(t, _)| *t)
    }
}

/// The servers HAProxy has up, a change recorded when the set differs from the last one read.
pub(crate) type RouteWatch = Changes<Vec<String>>;

impl RouteWatch {
    /// When the route reached `leader`, promoted at `promotion`: then, if HAProxy already had
    /// it up, else at the first change after that puts it up.
    pub(crate) fn ready(&self, leader: &str, promotion: f64) -> Option<f64> {
        self.holding_from(promotion, |_| true, |up| up.iter().any(|s| s == leader))
    }
}

/// `(node, out of recovery)`: `pg_is_in_recovery()` asked on a connection of its own to every
/// node, every few ms; a change recorded when a node's answer differs from its last one (a
/// node that cannot be asked keeps its last answer).
pub(crate) type WritableWatch = Changes<(String, bool)>;

impl WritableWatch {
    /// When `node`, promoted at `promotion`, took writes: then, if it already answered as
    /// out of recovery, else at its first such answer after that.
    pub(crate) fn ready(&self, node: &str, promotion: f64) -> Option<f64> {
        self.holding_from(promotion, |(n, _)| n == node, |(_, w)| *w)
    }
}

/// Sets its flag when dropped.
pub(crate) struct StopOnDrop(pub(crate) Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
    }
}

/// The leader terms in `events`: a term begins when a node answers as the running primary
/// after it last answered as anything else (a node that could not be asked keeps the state it
/// last answered with: a partition from the harness is not a change of role).
pub(crate) fn terms(events: &[(f64, String, Option<NodeState>)], addrs: &HashMap<String, String>) -> Vec<Term> {
    let mut known: HashMap<&str, bool> = HashMap::new();
    let mut terms: Vec<Term> = Vec::new();
    for (ms, node, state) in events {
        let Some(state) = state else { continue };
        let primary = state.is_primary();
        let was = known.insert(node.as_str(), primary).unwrap_or(false);
        if primary && !was {
            terms.push(Term {
                from_ms: *ms,
                leader: node.clone(),
                addr: addrs.get(node).cloned().unwrap_or_default(),
            });
        }
    }
    terms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_writable_at_its_first_answer_out_of_recovery() {
        let w = WritableWatch::default();
        w.push(0.0, ("n1".into(), true));
        w.push(0.0, ("n2".into(), false));
        w.push(300.0, ("n2".into(), true));
        w.push(310.0, ("n1".into(), false));
        assert_eq!(w.ready("n2", 250.0), Some(300.0));
        assert_eq!(w.ready("n2", 320.0), Some(320.0));
        assert_eq!(w.ready("n3", 250.0), None);
    }

    #[test]
    fn the_route_is_ready_when_haproxy_has_the_new_leader_up() {
        let w = RouteWatch::default();
        w.push(0.0, vec!["n1".into()]);
        w.push(100.0, vec![]);
        w.push(250.0, vec!["n2".into()]);
        assert_eq!(w.ready("n2", 200.0), Some(250.0));
        // Up before Patroni's REST answer was seen: ready at the promotion.
        assert_eq!(w.ready("n2", 260.0), Some(260.0));
        assert_eq!(w.ready("n3", 200.0), None);
    }

    fn state(role: &str) -> Option<NodeState> {
        Some(NodeState {
            role: role.into(),
            state: "running".into(),
            timeline: None,
        })
    }

    #[test]
    fn a_term_begins_when_a_node_answers_as_primary_after_anything_else() {
        let addrs: HashMap<String, String> =
            [("n1".to_string(), "a1".to_string()), ("n2".into(), "a2".into())].into();
        let events = vec![
            (0.0, "n1".to_string(), state("master")),
            (1.0, "n2".to_string(), state("replica")),
            // n1 cut off from the harness: not a change of role.
            (5.0, "n1".to_string(), None),
            (9.0, "n1".to_string(), state("master")),
            (20.0, "n1".to_string(), state("replica")),
            (30.0, "n2".to_string(), state("master")),
            (40.0, "n1".to_string(), state("replica")),
        ];
        let t = terms(&events, &addrs);
        assert_eq!(
            t.iter().map(|t| (t.from_ms, t.leader.as_str(), t.addr.as_str())).collect::<Vec<_>>(),
            vec![(0.0, "n1", "a1"), (30.0, "n2", "a2")]
        );
    }
}

