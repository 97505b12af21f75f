//! `chaos run --repeat N`: each (pool, scenario) ran N times. Per criterion, the passes out
//! of N and the seeds of the repeats that failed; per timing figure, its spread; and which
//! criteria are flaky (a timing criterion that failed in some repeats, not all).

use serde::{Deserialize, Serialize};

use super::model::{CriterionKind, ScenarioReport, Verdict};

/// One criterion over the repeats of one (pool, scenario).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriterionTally {
    /// The criterion's id.
    pub id: String,
    /// Safety or timing.
    pub kind: CriterionKind,
    /// Repeats in which it passed.
    pub passed: u32,
    /// Repeats in which it failed.
    pub failed: u32,
    /// Repeats in which it could not be judged (within the lag, or not measured).
    pub unknown: u32,
    /// The seeds of the repeats in which it failed.
    pub failing_seeds: Vec<u64>,
}

impl CriterionTally {
    /// Repeats it was judged or not.
    pub fn runs(&self) -> u32 {
        self.passed + self.failed + self.unknown
    }

    /// A timing criterion that failed in some repeats but not all.
    pub fn flaky(&self) -> bool {
        self.kind == CriterionKind::Timing && self.failed > 0 && self.failed < self.runs()
    }

    /// What it makes of the run: a safety criterion failing once, or a timing criterion
    /// failing every time, fails it.
    pub fn fails_the_run(&self) -> bool {
        match self.kind {
            CriterionKind::Safety => self.failed > 0,
            CriterionKind::Timing => self.failed > 0 && self.failed == self.runs(),
        }
    }

    /// `PASS`, `FAIL`, `FLAKY` or `UNKNOWN`, for tables.
    pub fn mark(&self) -> &'static str {
        if self.fails_the_run() {
            "FAIL"
        } else if self.flaky() {
            "FLAKY"
        } else if self.unknown > 0 && self.passed == 0 {
            "UNKNOWN"
        } else {
            "PASS"
        }
    }
}

/// The spread of one figure over the repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The figure (a key of the scenario's metrics).
    pub figure: String,
    /// Smallest.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// Largest.
    pub max: f64,
}

/// One (pool, scenario) over its repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepeatSummary {
    /// The pool.
    pub pool: String,
    /// The scenario.
    pub scenario: String,
    /// Whether the pool is ours.
    pub ours: bool,
    /// Repeats run.
    pub runs: u32,
    /// Every criterion, in the order the first repeat gave them.
    pub criteria: Vec<CriterionTally>,
    /// Every timing figure (metrics in ms or s), with its spread.
    pub spreads: Vec<Spread>,
}

impl RepeatSummary {
    /// `passed/runs` of a criterion, for tables.
    pub fn cell(t: &CriterionTally) -> String {
        let mut cell = format!("{}/{} {}", t.passed, t.runs(), t.mark());
        if t.flaky() {
            cell.push_str(&format!(
                " ({:.0}% failed)",
                100.0 * f64::from(t.failed) / f64::from(t.runs())
            ));
        }
        if !t.failing_seeds.is_empty() {
            let seeds: Vec<String> = t.failing_seeds.iter().map(u64::to_string).collect();
            cell.push_str(&format!(" seeds {}", seeds.join(", ")));
        }
        cell
    }
}

/// Each (pool, scenario) of `scenarios` over its repeats, in run order (one repeat each
/// without `--repeat`); `run_seed` is the seed of repeat 1.
pub fn summaries(scenarios: &[ScenarioReport], run_seed: u64) -> Vec<RepeatSummary> {
    {
        let mut keys: Vec<(&str, &str)> = Vec::new();
        for s in scenarios {
            if !keys.contains(&(s.pool.as_str(), s.name.as_str())) {
                keys.push((&s.pool, &s.name));
            }
        }
        keys.into_iter()
            .map(|(pool, name)| {
                let runs: Vec<&ScenarioReport> = scenarios
                    .iter()
                    .filter(|s| s.pool == pool && s.name == name)
                    .collect();
                summarize(&runs, run_seed)
            })
            .collect()
    }
}

fn summarize(runs: &[&ScenarioReport], run_seed: u64) -> RepeatSummary {
    let mut criteria: Vec<CriterionTally> = Vec::new();
    for r in runs {
        for c in &r.criteria {
            let at = match criteria.iter().position(|t| t.id == c.id) {
                Some(at) => at,
                None => {
                    criteria.push(CriterionTally {
                        id: c.id.clone(),
                        kind: c.kind,
                        passed: 0,
                        failed: 0,
                        unknown: 0,
                        failing_seeds: Vec::new(),
                    });
                    criteria.len() - 1
                }
            };
            let t = &mut criteria[at];
            match c.verdict {
                Verdict::Pass => t.passed += 1,
                Verdict::Unknown => t.unknown += 1,
                Verdict::Fail => {
                    t.failed += 1;
                    t.failing_seeds.push(r.seed.unwrap_or(run_seed));
                }
            }
        }
    }
    let mut figures: Vec<&str> = Vec::new();
    for r in runs {
        for k in r.metrics.keys() {
            if (k.ends_with("_ms") || k.ends_with("_s")) && !figures.contains(&k.as_str()) {
                figures.push(k);
            }
        }
    }
    let spreads = figures
        .into_iter()
        .filter_map(|figure| {
            let mut values: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.metrics.get(figure).copied())
                .filter(|v| v.is_finite())
                .collect();
            values.sort_by(f64::total_cmp);
            Some(Spread {
                figure: figure.to_string(),
                min: *values.first()?,
                median: crate::measure::percentile(&values, 0.5)?,
                max: *values.last()?,
            })
        })
        .collect();
    RepeatSummary {
        pool: runs[0].pool.clone(),
        scenario: runs[0].name.clone(),
        ours: runs[0].ours,
        runs: runs.len() as u32,
        criteria,
        spreads,
    }
}

/// The repeat tables every renderer shows: one row per criterion, one per timing figure.
pub struct RepeatTables {
    /// `pool, scenario, criterion, kind, passes out of N (and failing seeds)`.
    pub criteria: Vec<[String; 5]>,
    /// `pool, scenario, figure, min / median / max`.
    pub spreads: Vec<[String; 4]>,
}

/// The repeat tables of `repeats`, when the run repeated (`repeat` > 1; `None` otherwise).
pub fn tables(repeat: u32, repeats: &[RepeatSummary]) -> Option<RepeatTables> {
    {
        if repeat <= 1 {
            return None;
        }
        let mut tables = RepeatTables {
            criteria: Vec::new(),
            spreads: Vec::new(),
        };
        for s in repeats {
            for t in &s.criteria {
                tables.criteria.push([
                    s.pool.clone(),
                    s.scenario.clone(),
                    t.id.clone(),
                    match t.kind {
                        CriterionKind::Safety => "safety".into(),
                        CriterionKind::Timing => "timing".into(),
                    },
                    RepeatSummary::cell(t),
                ]);
            }
            for f in &s.spreads {
                let unit = if f.figure.ends_with("_ms") { "ms" } else { "s" };
                tables.spreads.push([
                    s.pool.clone(),
                    s.scenario.clone(),
                    f.figure.clone(),
                    format!("{:.1} / {:.1} / {:.1} {unit}", f.min, f.median, f.max),
                ]);
            }
        }
        Some(tables)
    }
}
