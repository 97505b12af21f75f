//! The Markdown report: the summary table, then every criterion of every scenario.

use std::fmt::Write as _;

use super::model::{ChaosReport, Counts};
use super::renderer::Renderer;

/// `report.md`.
pub const RENDERER: Renderer = Renderer {
    name: "markdown",
    file: "report.md",
    render: ChaosReport::to_markdown,
};

impl ChaosReport {
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
