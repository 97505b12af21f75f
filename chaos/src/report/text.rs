//! The terminal summary: one row per scenario and pool.

use std::fmt::Write as _;

use super::model::{Counts, Verdict};
use super::run::{ChaosReport, RunVerdict};
use super::renderer::Renderer;

/// `report.txt`, and what `chaos run` prints.
pub const RENDERER: Renderer = Renderer {
    name: "text",
    file: "report.txt",
    render: ChaosReport::to_text,
};

impl ChaosReport {
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
            "lag p99/max".into(),
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
                s.lag_cell(),
                s.verdict().mark().to_string(),
            ]);
        }
        let mut out = aligned(&rows);
        if let Some(tables) = self.repeat_tables() {
            let _ = writeln!(
                out,
                "\nrepeats: each (pool, scenario) {} times; passes out of N per criterion",
                self.repeat
            );
            let mut rows = vec![[
                "pool".to_string(),
                "scenario".into(),
                "criterion".into(),
                "kind".into(),
                "passed".into(),
            ]];
            rows.extend(tables.criteria);
            out.push_str(&aligned(&rows));
            let _ = writeln!(out, "\ntiming figures over the repeats: min / median / max");
            let mut rows = vec![[
                "pool".to_string(),
                "scenario".into(),
                "figure".into(),
                "min / median / max".into(),
            ]];
            rows.extend(tables.spreads);
            out.push_str(&aligned(&rows));
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
        let excused: Vec<String> = self
            .scenarios
            .iter()
            .flat_map(|s| {
                s.criteria.iter().filter_map(move |c| {
                    c.note
                        .as_ref()
                        .map(|note| format!("{} / {}: {}: {note}", s.pool, s.name, c.id))
                })
            })
            .collect();
        if !excused.is_empty() {
            let _ = writeln!(out, "
unknown, with the reason (a timing miss within the machine's lag, or nothing to measure):");
            for e in excused {
                let _ = writeln!(out, "  - {e}");
            }
        }
        if let Some(lag) = &self.lag {
            let _ = writeln!(out, "
scheduling lag over the run: {lag}");
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
}

/// Rows as columns padded to their widest cell, the first row underlined.
fn aligned<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
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
    out
}
