//! The report of a chaos run: one serde model ([`ChaosReport`]) and its renderers (terminal
//! table, Markdown, JSON, an SVG timeline per scenario, an `index.html` that shows them
//! together).
//!
//! The history is recorded as Jepsen does: every request is an [`Op`] with its start and end
//! and an outcome, `ok`, `fail` (it definitely did not happen; with the error kind) or `info`
//! (unknown: the connection died mid-query, or it never answered); every fault is a window.

pub mod html;
pub mod svg;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It succeeded.
    Ok,
    /// It definitely did not happen (no connection was handed out).
    Fail,
    /// Unknown: it may have run (the connection died mid-query, or it never answered).
    Info,
}

/// One request of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Start, in ms since the scenario began.
    pub start_ms: f64,
    /// End, in ms since the scenario began.
    pub end_ms: f64,
    /// What happened.
    pub outcome: Outcome,
    /// For `fail` and `info`: the kind of error (`timeout`, `unavailable`, `closed`, `query`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Op {
    /// How long it took.
    pub fn latency_ms(&self) -> f64 {
        self.end_ms - self.start_ms
    }
}

/// Outcome counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Succeeded.
    pub ok: u64,
    /// Definitely failed.
    pub fail: u64,
    /// Unknown.
    pub info: u64,
}

impl Counts {
    /// Counts one outcome.
    pub fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Ok => self.ok += 1,
            Outcome::Fail => self.fail += 1,
            Outcome::Info => self.info += 1,
        }
    }
    /// All requests.
    pub fn total(&self) -> u64 {
        self.ok + self.fail + self.info
    }
}

/// `ok/fail/info`, as every table writes them.
impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.ok, self.fail, self.info)
    }
}

/// Requests by what they met: the fault, the recovery from it, or neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phases {
    /// Ended before the fault began.
    pub before: Counts,
    /// Met the fault: started while it was on, or were in flight when it began.
    pub during: Counts,
    /// Started after the heal, before the first request that succeeded after it: the pool
    /// noticing that the database is back (fast failures here are recovery, not faults).
    #[serde(default)]
    pub recovering: Counts,
    /// Started once a request had succeeded after the heal.
    pub after: Counts,
}

impl Phases {
    /// Sorts `ops` into phases for a fault from `start` to `heal` (ms since the scenario began).
    pub fn of(ops: &[Op], start: f64, heal: f64) -> Phases {
        let recovered_at = ops
            .iter()
            .filter(|o| o.start_ms >= heal && o.outcome == Outcome::Ok)
            .map(|o| o.start_ms)
            .fold(f64::INFINITY, f64::min);
        let mut phases = Phases::default();
        for op in ops {
            let bucket = if op.end_ms < start {
                &mut phases.before
            } else if op.start_ms < heal {
                &mut phases.during
            } else if op.start_ms < recovered_at {
                &mut phases.recovering
            } else {
                &mut phases.after
            };
            bucket.add(op.outcome);
        }
        phases
    }

    /// Every request.
    pub fn total(&self) -> u64 {
        self.before.total() + self.during.total() + self.recovering.total() + self.after.total()
    }
}

/// A fault's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// What was injected.
    pub label: String,
    /// Start, ms since the scenario began.
    pub start_ms: f64,
    /// Heal, ms since the scenario began.
    pub end_ms: f64,
}

/// A verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The criterion held.
    Pass,
    /// It did not.
    Fail,
    /// It could not be measured here (e.g. a restart against a server we do not own).
    Unknown,
}

impl Verdict {
    /// A short mark for tables.
    pub fn mark(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Unknown => "UNKNOWN",
        }
    }
}

/// One pass criterion, with what was measured beside its bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Criterion {
    /// Short id (`no_hang`, `SC-002`, ...).
    pub id: String,
    /// What it checks.
    pub description: String,
    /// The measured value.
    pub measured: String,
    /// The bound.
    pub bound: String,
    /// Pass, fail or unknown.
    pub verdict: Verdict,
}

/// Health over time: (ms since the scenario began, status).
pub type HealthSample = (f64, String);

/// One scenario against one pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    /// Scenario name.
    pub name: String,
    /// The pool under test.
    pub pool: String,
    /// Whether the pool under test is ours (its failures fail the run); the runner marks it.
    #[serde(default)]
    pub ours: bool,
    /// What the scenario does.
    pub description: String,
    /// The fault window, if any.
    pub fault: Option<FaultWindow>,
    /// Requests by phase.
    pub phases: Phases,
    /// Other figures (longest acquire, recovery time, ...), by name.
    pub metrics: BTreeMap<String, f64>,
    /// The pass criteria.
    pub criteria: Vec<Criterion>,
    /// Things worth a look that are not criteria.
    pub anomalies: Vec<String>,
    /// Health status samples (our pool only).
    pub health: Vec<HealthSample>,
    /// Length of the scenario, ms.
    pub duration_ms: f64,
    /// The history (written to its own file, not into the JSON report).
    #[serde(skip)]
    pub ops: Vec<Op>,
}

impl ScenarioReport {
    /// A report for `pool` (`ours`: our pool, by either path) in scenario `name`, with
    /// nothing measured yet.
    pub fn new(name: &str, pool: &str, ours: bool, description: &str) -> Self {
        ScenarioReport {
            name: name.into(),
            pool: pool.into(),
            ours,
            description: description.into(),
            fault: None,
            phases: Phases::default(),
            metrics: BTreeMap::new(),
            criteria: Vec::new(),
            anomalies: Vec::new(),
            health: Vec::new(),
            duration_ms: 0.0,
            ops: Vec::new(),
        }
    }

    /// Fail if any criterion failed; unknown if none failed and some are unknown.
    pub fn verdict(&self) -> Verdict {
        if self.criteria.iter().any(|c| c.verdict == Verdict::Fail) {
            Verdict::Fail
        } else if self.criteria.iter().any(|c| c.verdict == Verdict::Unknown) {
            Verdict::Unknown
        } else {
            Verdict::Pass
        }
    }

    /// A figure of [`metrics`](Self::metrics) in whole milliseconds, `-` when not measured.
    pub fn metric_ms(&self, key: &str) -> String {
        self.metrics
            .get(key)
            .map_or("-".to_string(), |v| format!("{v:.0} ms"))
    }

    /// A file-name-safe id.
    pub fn slug(&self) -> String {
        format!("{}-{}", self.pool, self.name)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChaosReport {
    /// `chaos` version.
    pub version: String,
    /// The seed that replays the run.
    pub seed: u64,
    /// CI-sized run.
    pub quick: bool,
    /// The database (password redacted).
    pub database: String,
    /// The proxy: embedded, or the Toxiproxy server.
    pub proxy: String,
    /// Every scenario, in run order.
    pub scenarios: Vec<ScenarioReport>,
    /// Set when a signal ended the run early: which, and where (the scenarios listed are the
    /// ones that finished).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
}

/// The verdict of a whole run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunVerdict {
    /// Every scenario asked for was measured, and none of our pool's failed (peers failing
    /// is a result, not a failed run).
    Passed,
    /// None of our pool's scenarios failed, but some could not be measured: they are listed
    /// with the reason. Not a pass, not a failure.
    Incomplete {
        /// `pool / scenario: reason`, one per scenario that could not run.
        unavailable: Vec<String>,
    },
    /// Nothing that was asked for could be measured.
    NothingMeasured {
        /// `pool / scenario: reason`, one per scenario.
        unavailable: Vec<String>,
    },
    /// A scenario of our pool missed a criterion.
    Failed,
    /// A signal ended the run before every scenario ran; the ones that finished are reported.
    Interrupted {
        /// Which signal, and where the run was.
        by: String,
    },
}

impl RunVerdict {
    /// The word the run ends with.
    pub fn word(&self) -> &'static str {
        match self {
            RunVerdict::Passed => "PASSED",
            RunVerdict::Incomplete { .. } => "INCOMPLETE",
            RunVerdict::NothingMeasured { .. } => "NOTHING MEASURED",
            RunVerdict::Failed => "FAILED",
            RunVerdict::Interrupted { .. } => "INTERRUPTED",
        }
    }
}

impl ScenarioReport {
    /// Why this scenario could not be measured: the fault that could not be applied, or the
    /// first criterion that is unknown.
    pub fn unavailable_reason(&self) -> Option<String> {
        if self.verdict() != Verdict::Unknown {
            return None;
        }
        let reason = self
            .anomalies
            .iter()
            .find(|a| a.starts_with("fault could not be applied"))
            .cloned()
            .or_else(|| {
                self.criteria
                    .iter()
                    .find(|c| c.verdict == Verdict::Unknown)
                    .map(|c| c.description.clone())
            })
            .unwrap_or_else(|| "not measured".into());
        Some(reason)
    }
}

impl ChaosReport {
    /// Whether the run passed: every scenario asked for was measured and none of our pool's
    /// failed. See [`ChaosReport::verdict`].
    pub fn passed(&self) -> bool {
        self.verdict() == RunVerdict::Passed
    }

    /// The run's verdict: failed when a scenario of our pool failed; otherwise passed only
    /// when every scenario (of every pool) was measured.
    pub fn verdict(&self) -> RunVerdict {
        if let Some(by) = &self.interrupted {
            return RunVerdict::Interrupted { by: by.clone() };
        }
        if self
            .scenarios
            .iter()
            .any(|s| s.ours && s.verdict() == Verdict::Fail)
        {
            return RunVerdict::Failed;
        }
        let unavailable: Vec<String> = self
            .scenarios
            .iter()
            .filter_map(|s| {
                s.unavailable_reason()
                    .map(|why| format!("{} / {}: {why}", s.pool, s.name))
            })
            .collect();
        if unavailable.is_empty() {
            RunVerdict::Passed
        } else if unavailable.len() == self.scenarios.len() {
            RunVerdict::NothingMeasured { unavailable }
        } else {
            RunVerdict::Incomplete { unavailable }
        }
    }

    /// The JSON report.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("serializable")
    }

    /// The terminal summary: one row per scenario and pool.
    pub fn to_text(&self) -> String {
        let mut rows = vec![[
            "scenario".to_string(),
            "pool".into(),
            "before ok/fail/info".into(),
            "during ok/fail/info".into(),
            "recovering".into(),
            "after ok/fail/info".into(),
            "longest".into(),
            "recovery".into(),
            "verdict".into(),
        ]];
        for s in &self.scenarios {
            let c = Counts::to_string;
            let ms = |k: &str| s.metric_ms(k);
            rows.push([
                s.name.clone(),
                s.pool.clone(),
                c(&s.phases.before),
                c(&s.phases.during),
                c(&s.phases.recovering),
                c(&s.phases.after),
                ms("longest_request_ms"),
                ms("recovery_ms"),
                s.verdict().mark().to_string(),
            ]);
        }
        let widths: Vec<usize> = (0..9)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for (n, row) in rows.iter().enumerate() {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            let _ = writeln!(out, "{}", line.join("  ").trim_end());
            if n == 0 {
                let _ = writeln!(
                    out,
                    "{}",
                    widths
                        .iter()
                        .map(|w| "-".repeat(*w))
                        .collect::<Vec<_>>()
                        .join("  ")
                );
            }
        }
        let failed: Vec<String> = self
            .scenarios
            .iter()
            .flat_map(|s| {
                s.criteria
                    .iter()
                    .filter(|c| c.verdict == Verdict::Fail)
                    .map(move |c| {
                        format!(
                            "{} / {}: {} = {} (bound {})",
                            s.pool, s.name, c.id, c.measured, c.bound
                        )
                    })
            })
            .collect();
        if !failed.is_empty() {
            let _ = writeln!(out, "\nfailed criteria:");
            for f in failed {
                let _ = writeln!(out, "  - {f}");
            }
        }
        let verdict = self.verdict();
        if let RunVerdict::Interrupted { by } = &verdict {
            let _ = writeln!(out, "\ninterrupted: {by}");
        }
        if let RunVerdict::Incomplete { unavailable }
        | RunVerdict::NothingMeasured { unavailable } = &verdict
        {
            let _ = writeln!(
                out,
                "\nunavailable (not measured, so neither passed nor failed):"
            );
            for u in unavailable {
                let _ = writeln!(out, "  - {u}");
            }
        }
        let _ = writeln!(
            out,
            "\n{} (seed {}; replay with --seed {})",
            verdict.word(),
            self.seed,
            self.seed
        );
        out
    }

    /// The Markdown report: summary table, then every criterion of every scenario.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Chaos report\n");
        let _ = writeln!(
            out,
            "- result: **{}**\n- seed: `{}` (replay with `--seed {}`)\n- database: {}\n- proxy: {}\n- size: {}\n",
            self.verdict().word().to_lowercase(),
            self.seed,
            self.seed,
            self.database,
            self.proxy,
            if self.quick { "quick" } else { "full" }
        );
        let _ = writeln!(
            out,
            "| scenario | pool | before ok/fail/info | during ok/fail/info | recovering | after ok/fail/info | longest | recovery | verdict |"
        );
        let _ = writeln!(
            out,
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        for s in &self.scenarios {
            let c = Counts::to_string;
            let ms = |k: &str| s.metric_ms(k);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.name,
                s.pool,
                c(&s.phases.before),
                c(&s.phases.during),
                c(&s.phases.recovering),
                c(&s.phases.after),
                ms("longest_request_ms"),
                ms("recovery_ms"),
                s.verdict().mark()
            );
        }
        for s in &self.scenarios {
            let _ = writeln!(out, "\n## {} / {}\n\n{}\n", s.pool, s.name, s.description);
            let _ = writeln!(
                out,
                "| criterion | what | measured | bound | verdict |\n| --- | --- | --- | --- | --- |"
            );
            for c in &s.criteria {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} |",
                    c.id,
                    c.description,
                    c.measured,
                    c.bound,
                    c.verdict.mark()
                );
            }
            if !s.anomalies.is_empty() {
                let _ = writeln!(out, "\nAnomalies:");
                for a in &s.anomalies {
                    let _ = writeln!(out, "- {a}");
                }
            }
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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
        let unknown = |name: &str, why: &str| {
            let mut s = ScenarioReport::new(name, "pool", true, "x");
            s.criteria.push(Criterion {
                id: "setup".into(),
                description: why.into(),
                measured: "not measured".into(),
                bound: "-".into(),
                verdict: Verdict::Unknown,
            });
            s
        };
        let mut r = sample();
        r.scenarios
            .push(unknown("server_restart", "needs a throwaway cluster"));
        match r.verdict() {
            RunVerdict::Incomplete { unavailable } => {
                assert_eq!(
                    unavailable,
                    ["pool / server_restart: needs a throwaway cluster"]
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(!r.passed());
        let text = r.to_text();
        assert!(text.contains("INCOMPLETE (seed"), "{text}");
        assert!(!text.contains("PASSED"), "{text}");
        assert!(text.contains("unavailable"), "{text}");

        r.scenarios = vec![
            unknown("down", "could not create the proxy: refused"),
            unknown("refuse", "could not create the proxy: refused"),
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
}
