//! The renderers' snapshots and the run's verdict rules, on fixed report data.

use super::model::*;
use super::run::{ChaosReport, RunVerdict};
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
            Criterion::safety(
                "no_hang",
                "no request outlived its deadline",
                "900 ms",
                "< 2500 ms",
                Verdict::Pass,
            ),
            Criterion::timing(
                "recovery",
                "first success after heal",
                "12 ms",
                "< 1000 ms",
                Some(12.0),
                1000.0,
            ),
        ],
        anomalies: vec![],
        health: vec![
            (0.0, "healthy".into()),
            (2100.0, "unhealthy".into()),
            (3050.0, "healthy".into()),
        ],
        duration_ms: 6000.0,
        seed: None,
        repeat: None,
        lag: Some(Lag {
            p50_ms: 0.6,
            p99_ms: 1.2,
            max_ms: 3.5,
            samples: 1200,
        }),
        ops,
    };
    let mut peer = scenario.clone();
    peer.pool = "bb8".into();
    peer.ours = false;
    peer.health.clear();
    peer.criteria[1] = Criterion::timing(
        "recovery",
        "first success after heal",
        "none",
        "< 1000 ms",
        None,
        1000.0,
    );
    peer.anomalies = vec!["no success after the heal".into()];
    ChaosReport {
        version: "0.0.0".into(),
        seed: 42,
        quick: true,
        database: "throwaway cluster".into(),
        proxy: "embedded".into(),
        scenarios: vec![scenario, peer],
        repeat: 1,
        repeats: Vec::new(),
        lag: Some(Lag {
            p50_ms: 0.6,
            p99_ms: 1.3,
            max_ms: 4.0,
            samples: 2400,
        }),
        interrupted: None,
    }
}

/// Our pool and a peer in the same scenario, plus a scenario only ours ran and one with
/// no requests: the comparison page's cases.
pub fn sample_side_by_side() -> ChaosReport {
    let mut r = sample();
    let mut init = ScenarioReport::new("sc_init", "pool", true, "Initialisation time.");
    init.criteria.push(Criterion::timing(
        "SC-001",
        "initialised fast",
        "3 ms",
        "<= 5000 ms",
        Some(3.0),
        5000.0,
    ));
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
fn a_timing_miss_within_the_lag_is_unknown_and_a_larger_one_fails() {
    let lag = Lag {
        p50_ms: 1.0,
        p99_ms: 8.0,
        max_ms: 20.0,
        samples: 400,
    };
    let judged = |criteria: Vec<Criterion>| {
        let mut s = ScenarioReport::new("x", "pool", true, "x");
        s.criteria = criteria;
        s.judge_lag(lag);
        s
    };
    let timing = |value: Option<f64>| Criterion::timing("t", "t", "v", "<= 100 ms", value, 100.0);
    let safety = Criterion::safety("s", "s", "1", "0", Verdict::Fail);

    // Within the window's worst lag: not judged here, and the run says why.
    let s = judged(vec![timing(Some(115.0))]);
    assert_eq!(s.criteria[0].verdict, Verdict::Unknown);
    let note = s.criteria[0].note.clone().unwrap();
    assert!(
        note.contains("missed by 15.0 ms") && note.contains("max 20.0 ms"),
        "{note}"
    );
    assert!(matches!(s.unavailable, Some(Unavailable::WithinLag { .. })));
    let mut run = sample();
    run.scenarios.push(s);
    assert!(matches!(run.verdict(), RunVerdict::Incomplete { .. }));
    assert!(run.to_text().contains(
        "unknown, with the reason (a timing miss within the machine's lag, or nothing to measure)"
    ));

    // Past it, never happened, or a safety criterion: FAIL whatever the lag.
    for c in [timing(Some(121.0)), timing(None), safety] {
        let s = judged(vec![c]);
        assert_eq!(s.criteria[0].verdict, Verdict::Fail, "{:?}", s.criteria[0]);
        assert_eq!(s.verdict(), Verdict::Fail);
    }
    // A pass stays a pass; a lag-excused miss beside a real failure leaves the FAIL.
    assert_eq!(judged(vec![timing(Some(99.0))]).verdict(), Verdict::Pass);
    let mixed = judged(vec![timing(Some(110.0)), timing(Some(500.0))]);
    assert_eq!(mixed.verdict(), Verdict::Fail);
    assert!(mixed.unavailable.is_none());
}

#[test]
fn a_latency_miss_within_its_baseline_is_unknown_and_a_larger_one_fails() {
    let lag = Lag {
        p50_ms: 1.0,
        p99_ms: 3.0,
        max_ms: 4.0,
        samples: 400,
    };
    let judged = |value: f64, baseline: f64| {
        let mut s = ScenarioReport::new("x", "pool", true, "x");
        s.criteria = vec![
            Criterion::timing("SC-002", "p95", "v", "< 10 ms", Some(value), 10.0)
                .with_baseline("bare SELECT 1, p95", baseline),
        ];
        s.judge_lag(lag);
        s
    };
    // The machine's own round trip took 12 ms then: a 19 ms p95 cannot be judged here.
    let s = judged(19.0, 12.0);
    assert_eq!(s.criteria[0].verdict, Verdict::Unknown);
    let note = s.criteria[0].note.clone().unwrap();
    assert!(
        note.contains("missed by 9.0 ms") && note.contains("bare SELECT 1, p95: 12.0 ms"),
        "{note}"
    );
    // A quiet machine's baseline excuses nothing the lag would not; a miss past both fails.
    assert_eq!(judged(19.0, 0.4).verdict(), Verdict::Fail);
    assert_eq!(judged(60.0, 12.0).verdict(), Verdict::Fail);
    // Within the lag but not the baseline: the lag is the reason.
    let s = judged(13.0, 0.4);
    assert!(
        s.criteria[0]
            .note
            .clone()
            .unwrap()
            .contains("scheduling lag")
    );
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
