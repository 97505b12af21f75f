//! The report model: the history of requests ([`Op`], [`Outcome`], [`Phases`]), each
//! scenario's criteria and verdict ([`ScenarioReport`]), and the run's ([`super::ChaosReport`],
//! [`super::RunVerdict`], in `run.rs`), with its JSON form.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::unavailable::Unavailable;

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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The criterion held.
    Pass,
    /// It did not.
    Fail,
    /// It could not be measured here (e.g. a restart against a server we do not own).
    #[default]
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

/// What a criterion judges: a fact of the history, or how fast something was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CriterionKind {
    /// A fact read from the history (an acknowledged write missing, a dirty checkout, a
    /// leak, a request unanswered long past its hard deadline): it does not depend on how
    /// fast the machine is, and a miss is always a FAIL.
    #[default]
    Safety,
    /// A recovery time, a latency, a staleness: a miss by no more than the scheduling lag
    /// measured in its window is `unknown`, not a FAIL (see [`ScenarioReport::judge_lag`]).
    Timing,
}

/// One pass criterion, with what was measured beside its bound.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// Safety or timing.
    #[serde(default)]
    pub kind: CriterionKind,
    /// For a timing criterion that missed: by how much, ms (infinite when what it times
    /// never happened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miss_ms: Option<f64>,
    /// Why the verdict is `unknown` when the criterion was measured (a timing miss within
    /// the lag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// For a latency made of database round trips: the same figure measured without the
    /// pool, interleaved in the same window (what the machine itself took then). A miss no
    /// larger than it is `unknown`, as a miss within the lag is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
}

/// What a latency measured without the pool in the same window came to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// What was measured (`bare SELECT 1 round trip, p95`).
    pub what: String,
    /// Its value, ms.
    pub ms: f64,
}

impl Criterion {
    /// Its verdict for tables, with the reason when a measured one is unknown.
    pub fn verdict_cell(&self) -> String {
        match &self.note {
            Some(note) => format!("{} ({note})", self.verdict.mark()),
            None => self.verdict.mark().to_string(),
        }
    }

    /// `safety` or `timing`, for tables.
    pub fn kind_word(&self) -> &'static str {
        match self.kind {
            CriterionKind::Safety => "safety",
            CriterionKind::Timing => "timing",
        }
    }

    /// A safety criterion.
    pub fn safety(
        id: impl Into<String>,
        description: impl Into<String>,
        measured: impl Into<String>,
        bound: impl Into<String>,
        verdict: Verdict,
    ) -> Self {
        Criterion {
            id: id.into(),
            description: description.into(),
            measured: measured.into(),
            bound: bound.into(),
            verdict,
            kind: CriterionKind::Safety,
            miss_ms: None,
            note: None,
            baseline: None,
        }
    }

    /// This timing criterion with `baseline`: the same figure measured without the pool in
    /// the same window, which excuses a miss no larger than itself (see [`LAG_RULE`]).
    pub fn with_baseline(mut self, what: impl Into<String>, ms: f64) -> Self {
        self.baseline = Some(Baseline {
            what: what.into(),
            ms,
        });
        self
    }

    /// A timing criterion: `value_ms` against `bound_ms` (a pass when at or below it; `None`
    /// when what it times never happened, a FAIL that no lag excuses).
    pub fn timing(
        id: impl Into<String>,
        description: impl Into<String>,
        measured: impl Into<String>,
        bound: impl Into<String>,
        value_ms: Option<f64>,
        bound_ms: f64,
    ) -> Self {
        let miss = value_ms.map_or(f64::INFINITY, |v| v - bound_ms);
        let ok = miss <= 0.0;
        Criterion {
            verdict: if ok { Verdict::Pass } else { Verdict::Fail },
            kind: CriterionKind::Timing,
            miss_ms: (!ok).then_some(miss),
            ..Criterion::safety(id, description, measured, bound, Verdict::Pass)
        }
    }
}

/// The run's own scheduling lag in a window: how late a ticker due every
/// [`LAG_PERIOD_MS`] ms woke, over that window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Lag {
    /// Median overshoot, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
    /// Ticks sampled.
    pub samples: u64,
}

/// How often the lag ticker is due, ms.
pub const LAG_PERIOD_MS: u64 = 5;

/// The shortest window a scenario's lag is read over: a shorter one is widened to this span
/// before its end, so that a scenario of a few milliseconds is judged on enough samples.
pub const LAG_MIN_WINDOW_MS: u64 = 2000;

/// The rule by which a timing miss is not a FAIL, as README and `chaos run --help` state it.
pub const LAG_RULE: &str = "a timing criterion that misses its bound by no more than the largest scheduling lag measured in its scenario's window (a ticker due every 5 ms; its worst overshoot; a window shorter than 2 s is widened to the 2 s before its end), or, for a latency made of database round trips, by no more than the same figure measured without the pool in the same window (its baseline), is UNKNOWN, not FAIL; a larger miss, or a figure that never came, is a FAIL; safety criteria never depend on the lag";

impl std::fmt::Display for Lag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.p50_ms, self.p99_ms, self.max_ms
        )
    }
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
    /// The seed this scenario ran with, when it differs from the run's (a repeat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Which repeat this is (1-based), with `--repeat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
    /// The run's scheduling lag over the scenario's window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<Lag>,
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
            seed: None,
            repeat: None,
            lag: None,
            ops: Vec::new(),
        }
    }

    /// Records the lag of the scenario's window and applies [`LAG_RULE`]: a failed timing
    /// criterion whose miss is no more than the window's largest lag, or than its baseline,
    /// becomes `unknown`, with that as the reason.
    pub fn judge_lag(&mut self, lag: Lag) {
        self.lag = Some(lag);
        let mut excused = Vec::new();
        for c in &mut self.criteria {
            if c.kind != CriterionKind::Timing || c.verdict != Verdict::Fail {
                continue;
            }
            let Some(miss) = c.miss_ms.filter(|m| m.is_finite()) else {
                continue;
            };
            // The larger allowance names the reason: the window's lag or the baseline.
            let why = match c.baseline.as_ref().filter(|b| b.ms > lag.max_ms) {
                Some(b) if miss <= b.ms => format!(
                    "within its baseline measured in the same window ({}: {:.1} ms; lag {lag})",
                    b.what, b.ms
                ),
                _ if miss <= lag.max_ms => {
                    format!("within the scheduling lag measured in its window ({lag})")
                }
                _ => continue,
            };
            c.verdict = Verdict::Unknown;
            c.note = Some(format!("missed by {miss:.1} ms, {why}"));
            excused.push(format!("{} missed by {miss:.1} ms, {why}", c.id));
        }
        if !excused.is_empty() && self.verdict() == Verdict::Unknown {
            self.unavailable.get_or_insert(Unavailable::WithinLag {
                detail: excused.join("; "),
            });
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

    /// The scheduling lag of its window for tables: `p99/max ms`, `-` when not measured.
    pub fn lag_cell(&self) -> String {
        self.lag.map_or("-".to_string(), |l| {
            format!("{:.1}/{:.1} ms", l.p99_ms, l.max_ms)
        })
    }

    /// A figure of [`metrics`](Self::metrics) in whole milliseconds, `-` when not measured.
    pub fn metric_ms(&self, key: &str) -> String {
        self.metrics
            .get(key)
            .map_or("-".to_string(), |v| format!("{v:.0} ms"))
    }

    /// A file-name-safe id.
    pub fn slug(&self) -> String {
        let repeat = self.repeat.map_or(String::new(), |i| format!("-r{i}"));
        format!("{}-{}{repeat}", self.pool, self.name)
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
        self.criteria.push(Criterion::safety(
            id,
            why.to_string(),
            "not measured",
            "-",
            Verdict::Unknown,
        ));
        self.unavailable.get_or_insert(why);
    }
}
