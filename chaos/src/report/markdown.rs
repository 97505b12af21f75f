//! The Markdown report: the summary table, then every criterion of every scenario.

use std::fmt::Write as _;

use super::model::Counts;
use super::run::ChaosReport;
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
            "- result: **{}**\n- seed: `{}` (replay with `--seed {}`)\n- database: {}\n- proxy: {}\n- size: {}\n- scheduling lag over the run: {}\n",
            self.verdict().word().to_lowercase(),
            self.seed,
            self.seed,
            self.database,
            self.proxy,
            if self.quick { "quick" } else { "full" },
            self.lag.map_or("not measured".to_string(), |l| l.to_string())
        );
        let _ = writeln!(
            out,
            "| scenario | pool | before ok/fail/info | during ok/fail/info | recovering | after ok/fail/info | longest | recovery | lag p99/max | verdict |"
        );
        let _ = writeln!(
            out,
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        for s in &self.scenarios {
            let c = Counts::to_string;
            let ms = |k: &str| s.metric_ms(k);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.name,
                s.pool,
                c(&s.phases.before),
                c(&s.phases.during),
                c(&s.phases.recovering),
                c(&s.phases.after),
                ms("longest_request_ms"),
                ms("recovery_ms"),
                s.lag_cell(),
                s.verdict().mark()
            );
        }
        if let Some(tables) = self.repeat_tables() {
            let _ = writeln!(
                out,
                "\n## Repeats\n\nEach (pool, scenario) ran {} times. Passes out of N per criterion, with the seeds that failed; FLAKY: a timing criterion that failed in some repeats, not all.\n\n| pool | scenario | criterion | kind | passed |\n| --- | --- | --- | --- | --- |",
                self.repeat
            );
            for row in tables.criteria {
                let _ = writeln!(out, "| {} |", row.join(" | "));
            }
            let _ = writeln!(
                out,
                "\n| pool | scenario | timing figure | min / median / max |\n| --- | --- | --- | --- |"
            );
            for row in tables.spreads {
                let _ = writeln!(out, "| {} |", row.join(" | "));
            }
        }
        for s in &self.scenarios {
            let _ = writeln!(out, "\n## {} / {}\n\n{}\n", s.pool, s.name, s.description);
            let _ = writeln!(
                out,
                "| criterion | kind | what | measured | bound | verdict |\n| --- | --- | --- | --- | --- | --- |"
            );
            for c in &s.criteria {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} |",
                    c.id,
                    c.kind_word(),
                    c.description,
                    c.measured,
                    c.bound,
                    c.verdict_cell()
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
