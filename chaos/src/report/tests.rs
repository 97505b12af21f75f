//! The renderers' snapshots and the run's verdict rules, on fixed report data.

use super::model::*;
use super::unavailable::Unavailable;
use std::collections::BTreeMap;

/// Fixed report data for renderer snapshots.
pub fn sample() -> ChaosReport {
    let mut ops = Vec::new();
    for i in 0..60 {
        let start = i as f64 * 100.0;
        let (outcome, latency, error) = match i {
            20..=29 => (Outcome::Fail, 0.5, Some("unavailable".to_string())),
            30 => (Outcome::Info, 900.0, Some("query".to_string())),
            _ => (Outcome::Ok, 1.0 + (i % 7) as f64, None),
        };
        ops.push(Op {
            start_ms: start,
            end_ms: start + latency,
            outcome,
            error,
        });
    }
    let scenario = ScenarioReport {
        unavailable: None,
        name: "down".into(),
        pool: "pool".into(),
        ours: true,
        description: "The proxy is disabled (listener closed, connections cut), then enabled."
            .into(),
        fault: Some(FaultWindow {
            label: "proxy disabled".into(),
            start_ms: 2000.0,
            end_ms: 3000.0,
        }),
        phases: Phases {
            before: Counts {
                ok: 20,
                fail: 0,
                info: 0,
            },
            during: Counts {
                ok: 0,
                fail: 10,
                info: 1,
            },
            recovering: Counts {
                ok: 0,
                fail: 2,
                info: 0,
            },
            after: Counts {
                ok: 29,
                fail: 0,
                info: 0,
            },
        },
        metrics: BTreeMap::from([
            ("longest_request_ms".into(), 900.0),
            ("recovery_ms".into(), 12.0),
        ]),
        criteria: vec![
            Criterion {
                id: "no_hang".into(),
                description: "no request outlived its deadline".into(),
                measured: "900 ms".into(),
                bound: "< 2500 ms".into(),
                verdict: Verdict::Pass,
            },
            Criterion {
                id: "recovery".into(),
                description: "first success after heal".into(),
                measured: "12 ms".into(),
                bound: "< 1000 ms".into(),
                verdict: Verdict::Pass,
            },
        ],
        anomalies: vec![],
        health: vec![
            (0.0, "healthy".into()),
            (2100.0, "unhealthy".into()),
            (3050.0, "healthy".into()),
        ],
        duration_ms: 6000.0,
        ops,
    };
    let mut peer = scenario.clone();
    peer.pool = "bb8".into();
    peer.ours = false;
    peer.health.clear();
    peer.criteria[1] = Criterion {
        id: "recovery".into(),
        description: "first success after heal".into(),
        measured: "none".into(),
        bound: "< 1000 ms".into(),
        verdict: Verdict::Fail,
    };
    peer.anomalies = vec!["no success after the heal".into()];
    ChaosReport {
        version: "0.0.0".into(),
        seed: 42,
        quick: true,
        database: "throwaway cluster".into(),
        proxy: "embedded".into(),
        scenarios: vec![scenario, peer],
        interrupted: None,
    }
}

/// Our pool and a peer in the same scenario, plus a scenario only ours ran and one with
/// no requests: the comparison page's cases.
pub fn sample_side_by_side() -> ChaosReport {
    let mut r = sample();
    let mut init = ScenarioReport::new("sc_init", "pool", true, "Initialisation time.");
    init.criteria.push(Criterion {
        id: "SC-001".into(),
        description: "initialised fast".into(),
        measured: "3 ms".into(),
        bound: "<= 5000 ms".into(),
        verdict: Verdict::Pass,
    });
    r.scenarios.insert(0, init);
    r
}

#[test]
fn text_report() {
    insta::assert_snapshot!(sample().to_text());
}

#[test]
fn markdown_report() {
    insta::assert_snapshot!(sample().to_markdown());
}

#[test]
fn json_report() {
    insta::assert_snapshot!(sample().to_json());
}

#[test]
fn peers_failing_do_not_fail_the_run() {
    assert!(sample().passed());
}

#[test]
fn a_run_passes_only_when_everything_asked_for_was_measured() {
    let unknown = |name: &str, why: Unavailable| {
        let mut s = ScenarioReport::new(name, "pool", true, "x");
        s.mark_unavailable("setup", why);
        s
    };
    let mut r = sample();
    r.scenarios
        .push(unknown("server_restart", Unavailable::ServerNotOurs));
    match r.verdict() {
        RunVerdict::Incomplete { unavailable } => {
            assert_eq!(unavailable.len(), 1);
            assert_eq!(unavailable[0].why, Unavailable::ServerNotOurs);
            assert_eq!(
                unavailable[0].to_string(),
                "pool / server_restart: needs a throwaway cluster: DATABASE_URL points at a server this process does not own"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!r.passed());
    let why = r.why_not_passed();
    assert!(
        why.contains("INCOMPLETE") && why.contains("unavailable: pool / server_restart"),
        "{why}"
    );
    assert!(sample().why_not_passed().is_empty());
    let text = r.to_text();
    assert!(text.contains("INCOMPLETE (seed"), "{text}");
    assert!(!text.contains("PASSED"), "{text}");
    assert!(text.contains("unavailable"), "{text}");

    r.scenarios = vec![
        unknown(
            "down",
            Unavailable::Injector {
                detail: "could not create the proxy: refused".into(),
            },
        ),
        unknown(
            "refuse",
            Unavailable::Injector {
                detail: "could not create the proxy: refused".into(),
            },
        ),
    ];
    assert!(matches!(r.verdict(), RunVerdict::NothingMeasured { .. }));
    assert!(r.to_text().contains("NOTHING MEASURED"));
}

#[test]
fn phases_say_what_each_request_met() {
    let op = |start_ms: f64, end_ms: f64, outcome| Op {
        start_ms,
        end_ms,
        outcome,
        error: None,
    };
    // Fault from 100 to 200 ms.
    let ops = [
        op(10.0, 20.0, Outcome::Ok),     // before
        op(95.0, 105.0, Outcome::Info),  // in flight when the fault began: during
        op(150.0, 151.0, Outcome::Fail), // during
        op(201.0, 201.1, Outcome::Fail), // after the heal, before any success: recovering
        op(230.0, 231.0, Outcome::Ok),   // the first success after the heal
        op(240.0, 241.0, Outcome::Fail), // after: a failure once recovered counts as one
    ];
    let p = Phases::of(&ops, 100.0, 200.0);
    let c = |ok, fail, info| Counts { ok, fail, info };
    assert_eq!(p.before, c(1, 0, 0));
    assert_eq!(p.during, c(0, 1, 1));
    assert_eq!(p.recovering, c(0, 1, 0));
    assert_eq!(p.after, c(1, 1, 0));
    assert_eq!(p.total(), 6);
}
