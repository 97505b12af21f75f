//! The whole run: every scenario's report ([`ChaosReport`]), its verdict ([`RunVerdict`]),
//! over repeats too, and its JSON form.

use serde::{Deserialize, Serialize};

use super::model::{CriterionKind, Lag, ScenarioReport, Verdict};
use super::repeats::{RepeatSummary, RepeatTables};
use super::unavailable::{Unavailable, UnavailableScenario};

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
    /// How many times each (pool, scenario) ran (`chaos run --repeat`).
    #[serde(default = "one")]
    pub repeat: u32,
    /// With `--repeat`: each (pool, scenario) over its repeats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repeats: Vec<RepeatSummary>,
    /// The scheduling lag over the whole run (each scenario has its window's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<Lag>,
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

impl ChaosReport {
    /// Each (pool, scenario) over its repeats, in run order (one repeat each without
    /// `--repeat`).
    pub fn repeat_summaries(&self) -> Vec<RepeatSummary> {
        super::repeats::summaries(&self.scenarios, self.seed)
    }

    /// The repeat tables, when the run repeated (`None` otherwise).
    pub fn repeat_tables(&self) -> Option<RepeatTables> {
        super::repeats::tables(self.repeat, &self.repeats)
    }

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
        let failed = if self.repeat > 1 {
            // Over the repeats: a safety criterion failing once, or a timing criterion
            // failing every time (one failing in some repeats is flaky, not a failure).
            self.repeat_summaries().iter().any(|s| {
                s.ours
                    && s.criteria
                        .iter()
                        .any(super::repeats::CriterionTally::fails_the_run)
            })
        } else {
            self.scenarios
                .iter()
                .any(|s| s.ours && s.verdict() == Verdict::Fail)
        };
        if failed {
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

    /// Whether the run passed, or would have but for timing criteria missed by less than
    /// the machine's own scheduling lag (INCOMPLETE with only [`Unavailable::WithinLag`]).
    pub fn passed_but_for_lag(&self) -> bool {
        match self.verdict() {
            RunVerdict::Passed => true,
            RunVerdict::Incomplete { unavailable } => unavailable
                .iter()
                .all(|u| matches!(u.why, Unavailable::WithinLag { .. })),
            _ => false,
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
                // A timing miss beside what could have excused it: the window's lag, and the
                // baseline measured without the pool when there is one.
                let mut context = Vec::new();
                if c.kind == CriterionKind::Timing {
                    if let Some(lag) = s.lag {
                        context.push(format!("lag in its window {lag}"));
                    }
                    if let Some(b) = &c.baseline {
                        context.push(format!("baseline {}: {:.1} ms", b.what, b.ms));
                    }
                }
                let context = if context.is_empty() {
                    String::new()
                } else {
                    format!("; {}", context.join("; "))
                };
                lines.push(format!(
                    "failed: {} / {}: {} = {} (bound {}{context})",
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

fn one() -> u32 {
    1
}
