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

/// What HAProxy sent connections to, as the harness saw it: a change recorded when the set
/// of servers it has up differs from the last one read.
#[derive(Default)]
pub(crate) struct RouteWatch {
    events: Mutex<Vec<(f64, Vec<String>)>>,
}

impl RouteWatch {
    pub(crate) fn push(&self, ms: f64, up: Vec<String>) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((ms, up));
    }

    /// When the route reached `leader`, promoted at `promotion`: then, if HAProxy already had
    /// it up, else at the first change after that puts it up.
    pub(crate) fn ready(&self, leader: &str, promotion: f64) -> Option<f64> {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let has = |up: &Vec<String>| up.iter().any(|s| s == leader);
        let before = events.iter().rev().find(|(t, _)| *t <= promotion);
        if before.is_some_and(|(_, up)| has(up)) {
            return Some(promotion);
        }
        events
            .iter()
            .find(|(t, up)| *t > promotion && has(up))
            .map(|(t, _)| *t)
    }
}

/// When each node took writes, as the harness saw it: `pg_is_in_recovery()` asked on a
/// connection of its own to every node, every few ms; a change recorded when the answer
/// differs from the last one (a node that cannot be asked keeps its last answer).
#[derive(Default)]
pub(crate) struct WritableWatch {
    events: Mutex<Vec<(f64, String, bool)>>,
}

impl WritableWatch {
    pub(crate) fn push(&self, ms: f64, node: &str, writable: bool) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((ms, node.to_string(), writable));
    }

    /// When `node`, promoted at `promotion`, took writes: then, if it already answered as
    /// out of recovery, else at its first such answer after that.
    pub(crate) fn ready(&self, node: &str, promotion: f64) -> Option<f64> {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let of_node = || events.iter().filter(|(_, n, _)| n == node);
        if of_node()
            .rfind(|(t, _, _)| *t <= promotion)
            .is_some_and(|(_, _, w)| *w)
        {
            return Some(promotion);
        }
        of_node()
            .find(|(t, _, w)| *t > promotion && *w)
            .map(|(t, _, _)| *t)
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
        w.push(0.0, "n1", true);
        w.push(0.0, "n2", false);
        w.push(300.0, "n2", true);
        w.push(310.0, "n1", false);
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

