//! The report model: the history of requests ([`Op`], [`Outcome`], [`Phases`]), each
//! scenario's criteria and verdict ([`ScenarioReport`]), and the run's ([`ChaosReport`],
//! [`RunVerdict`]), with its JSON form.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::unavailable::{Unavailable, UnavailableScenario};

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
    /// Why it could not be measured, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<Unavailable>,
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
            unavailable: None,
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
        unavailable: Vec<UnavailableScenario>,
    },
    /// Nothing that was asked for could be measured.
    NothingMeasured {
        /// One per scenario.
        unavailable: Vec<UnavailableScenario>,
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
    /// Why this scenario could not be measured (`None` when it was): the reason it recorded,
    /// or else the first unknown criterion's description.
    pub fn unavailable_reason(&self) -> Option<Unavailable> {
        if self.verdict() != Verdict::Unknown {
            return None;
        }
        Some(self.unavailable.clone().unwrap_or_else(|| {
            Unavailable::NotMeasurable {
                detail: self
                    .criteria
                    .iter()
                    .find(|c| c.verdict == Verdict::Unknown)
                    .map_or_else(|| "not measured".into(), |c| c.description.clone()),
            }
        }))
    }

    /// Marks it unmeasurable: an unknown criterion `id` saying why, and the reason itself.
    pub fn mark_unavailable(&mut self, id: &str, why: Unavailable) {
        self.criteria.push(Criterion {
            id: id.into(),
            description: why.to_string(),
            measured: "not measured".into(),
            bound: "-".into(),
            verdict: Verdict::Unknown,
        });
        self.unavailable.get_or_insert(why);
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
        let unavailable: Vec<UnavailableScenario> = self
            .scenarios
            .iter()
            .filter_map(|s| {
                s.unavailable_reason().map(|why| UnavailableScenario {
                    pool: s.pool.clone(),
                    scenario: s.name.clone(),
                    why,
                })
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

    /// Why the run did not pass, for a test's failure message: the run's verdict, every
    /// failed criterion of our pool, and every scenario that could not be measured with its
    /// reason. Empty when it passed.
    pub fn why_not_passed(&self) -> String {
        let verdict = self.verdict();
        if verdict == RunVerdict::Passed {
            return String::new();
        }
        let mut lines = vec![format!("the run is {}", verdict.word())];
        if let RunVerdict::Interrupted { by } = &verdict {
            lines.push(format!("interrupted: {by}"));
        }
        for s in self.scenarios.iter().filter(|s| s.ours) {
            for c in s.criteria.iter().filter(|c| c.verdict == Verdict::Fail) {
                lines.push(format!(
                    "failed: {} / {}: {} = {} (bound {})",
                    s.pool, s.name, c.id, c.measured, c.bound
                ));
            }
        }
        if let RunVerdict::Incomplete { unavailable }
        | RunVerdict::NothingMeasured { unavailable } = &verdict
        {
            for u in unavailable {
                lines.push(format!("unavailable: {u}"));
            }
        }
        lines.join("\n")
    }

    /// The JSON report.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("serializable")
    }
}
