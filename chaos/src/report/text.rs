//! The terminal summary: one row per scenario and pool.

use std::fmt::Write as _;

use super::model::{ChaosReport, Counts, RunVerdict, Verdict};
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
}
