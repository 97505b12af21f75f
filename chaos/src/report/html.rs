//! `index.html`: the run's page. With one pool, a summary table (the terminal table's columns)
//! and each scenario's timeline with its criteria. With several (`--pool all`), the comparison
//! is the page's centre: one row per scenario and a column per pool (verdict, longest request,
//! recovery, the criteria it failed), then each scenario's timelines for every pool, stacked
//! on shared axes (see [`super::svg::Axes`]), each with its criteria.

use std::fmt::Write as _;

use super::model::{ScenarioReport, Verdict};
use super::run::{ChaosReport, RunVerdict};
use super::renderer::Renderer;
use super::svgkit::escape;

/// `index.html`: every scenario's timeline with its criteria, pools side by side.
pub const RENDERER: Renderer = Renderer {
    name: "html",
    file: "index.html",
    render: index_html,
};

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:1000px}\
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px;vertical-align:top}\
.PASS{color:#2a9d3a;font-weight:bold}.FAIL{color:#d62828;font-weight:bold}.UNKNOWN{color:#b08900}\
.failed{color:#d62828;font-size:12px}.small{color:#555;font-size:12px}\
img{display:block;margin:4px 0 8px;border:1px solid #eee}details{margin:0 0 20px}";

/// `pool passed`, plus how the peers did when they ran (their failures are results, not a
/// failed run).
fn headline(report: &ChaosReport) -> String {
    let ours = match report.verdict() {
        RunVerdict::Passed => "pool passed",
        RunVerdict::Incomplete { .. } => "pool passed what was measured (incomplete)",
        RunVerdict::NothingMeasured { .. } => "nothing measured",
        RunVerdict::Failed => "pool FAILED",
        RunVerdict::Interrupted { .. } => "INTERRUPTED: the scenarios that finished",
    };
    let peers: Vec<&ScenarioReport> = report
        .scenarios
        .iter()
        .filter(|s| s.pool != "pool")
        .collect();
    if peers.is_empty() {
        return ours.to_string();
    }
    let failed = peers
        .iter()
        .filter(|s| s.verdict() == Verdict::Fail)
        .count();
    format!("{ours}; peers failed {failed} of {} scenarios", peers.len())
}

fn failed_criteria(s: &ScenarioReport) -> Vec<&str> {
    s.criteria
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| c.id.as_str())
        .collect()
}

/// The pools in the order they first ran, and the scenarios likewise.
fn pools_and_scenarios(report: &ChaosReport) -> (Vec<&str>, Vec<&str>) {
    let mut pools: Vec<&str> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for s in &report.scenarios {
        if !pools.contains(&s.pool.as_str()) {
            pools.push(&s.pool);
        }
        if !names.contains(&s.name.as_str()) {
            names.push(&s.name);
        }
    }
    (pools, names)
}

/// The run's page.
pub fn index_html(report: &ChaosReport) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Chaos report</title>\n<style>{STYLE}</style>\n</head><body>\n<h1>Chaos report: {}</h1>\n<p>seed <code>{}</code> (replay with <code>--seed {}</code>) &middot; {} &middot; proxy: {} &middot; {} run</p>\n",
        escape(&headline(report)),
        report.seed,
        report.seed,
        escape(&report.database),
        escape(&report.proxy),
        if report.quick { "quick" } else { "full" }
    );
    if let Some(lag) = &report.lag {
        let _ = writeln!(
            out,
            "<p class=\"small\">Scheduling lag over the run: {lag}. The rule: {}.</p>",
            escape(super::model::LAG_RULE)
        );
    }
    if let Some(by) = &report.interrupted {
        let _ = writeln!(
            out,
            "<p class=\"FAIL\">Interrupted: {}. Only the scenarios that finished are below.</p>",
            escape(by)
        );
    }
    out.push_str(
        "<p class=\"small\">Phases: <b>before</b> the fault; <b>during</b> it (including requests in flight when it began); \
         <b>recovering</b>: after the heal, until the first success (the pool noticing that the database is back); \
         <b>after</b>. Counts are ok/fail/info (info: unknown, the request may have run).</p>\n",
    );
    if let Some(tables) = report.repeat_tables() {
        let _ = writeln!(
            out,
            "<h2>Repeats</h2><p class=\"small\">Each (pool, scenario) ran {} times: passes out of N per criterion, with the seeds that failed; FLAKY: a timing criterion that failed in some repeats, not all.</p>",
            report.repeat
        );
        rows_table(&mut out, &["pool", "scenario", "criterion", "kind", "passed"], &tables.criteria);
        rows_table(
            &mut out,
            &["pool", "scenario", "timing figure", "min / median / max"],
            &tables.spreads,
        );
    }
    let (pools, names) = pools_and_scenarios(report);
    if pools.len() > 1 {
        comparison(&mut out, report, &pools, &names);
    } else {
        summary(&mut out, report);
        for s in &report.scenarios {
            section(&mut out, s, &format!("{} / {}", s.pool, s.name), true);
        }
    }
    out.push_str("</body></html>\n");
    out
}

/// A plain table of `rows` under `head`.
fn rows_table<const N: usize>(out: &mut String, head: &[&str], rows: &[[String; N]]) {
    out.push_str("<table><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr>\n");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", escape(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

fn summary(out: &mut String, report: &ChaosReport) {
    out.push_str("<table><tr><th>scenario</th><th>pool</th><th>before</th><th>during</th><th>recovering</th><th>after</th><th>longest</th><th>recovery</th><th>lag p99/max</th><th>verdict</th></tr>\n");
    for s in &report.scenarios {
        let v = s.verdict().mark();
        let _ = writeln!(
            out,
            "<tr><td><a href=\"#{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{v}\">{v}</td></tr>",
            s.slug(),
            escape(&s.name),
            escape(&s.pool),
            s.phases.before,
            s.phases.during,
            s.phases.recovering,
            s.phases.after,
            s.metric_ms("longest_request_ms"),
            s.metric_ms("recovery_ms"),
            s.lag_cell(),
        );
    }
    out.push_str("</table>\n");
}

/// One row per scenario, a column per pool; then each scenario's pools stacked.
fn comparison(out: &mut String, report: &ChaosReport, pools: &[&str], names: &[&str]) {
    let find = |name: &str, pool: &str| {
        report
            .scenarios
            .iter()
            .find(|s| s.name == name && s.pool == pool)
    };
    out.push_str("<h2>Side by side</h2>\n<table><tr><th>scenario</th>");
    for p in pools {
        let _ = write!(out, "<th>{}</th>", escape(p));
    }
    out.push_str("</tr>\n");
    for name in names {
        let _ = write!(out, "<tr><td><a href=\"#{0}\">{0}</a></td>", escape(name));
        for pool in pools {
            match find(name, pool) {
                None => out.push_str("<td class=\"small\">not run</td>"),
                Some(s) => {
                    let v = s.verdict().mark();
                    let _ = write!(
                        out,
                        "<td><span class=\"{v}\">{v}</span><br><span class=\"small\">longest {} &middot; recovery {} &middot; lag {}</span>",
                        s.metric_ms("longest_request_ms"),
                        s.metric_ms("recovery_ms"),
                        s.lag_cell()
                    );
                    let failed = failed_criteria(s);
                    if !failed.is_empty() {
                        let _ = write!(
                            out,
                            "<br><span class=\"failed\">failed: {}</span>",
                            escape(&failed.join(", "))
                        );
                    }
                    out.push_str("</td>");
                }
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    for name in names {
        let runs: Vec<&ScenarioReport> = pools.iter().filter_map(|p| find(name, p)).collect();
        let _ = writeln!(
            out,
            "<h2 id=\"{0}\">{0}</h2><p>{1}</p><p class=\"small\">Every pool below on the same axes.</p>",
            escape(name),
            escape(&runs[0].description)
        );
        for s in runs {
            section(out, s, &s.pool, false);
        }
    }
}

/// A scenario's timeline (when it has requests) and its criteria.
fn section(out: &mut String, s: &ScenarioReport, title: &str, top_level: bool) {
    let tag = if top_level { "h2" } else { "h3" };
    let _ = writeln!(out, "<{tag} id=\"{}\">{}</{tag}>", s.slug(), escape(title));
    if top_level {
        let _ = writeln!(out, "<p>{}</p>", escape(&s.description));
    }
    if !s.ops.is_empty() || s.fault.is_some() {
        let _ = writeln!(
            out,
            "<img src=\"{}.svg\" alt=\"timeline of {} / {}\">",
            s.slug(),
            escape(&s.pool),
            escape(&s.name)
        );
    }
    let open = if s.verdict() == Verdict::Pass {
        ""
    } else {
        " open"
    };
    let v = s.verdict().mark();
    let _ = writeln!(
        out,
        "<details{open}><summary><span class=\"{v}\">{v}</span> &middot; {} criteria</summary>\n<table><tr><th>criterion</th><th>kind</th><th>what</th><th>measured</th><th>bound</th><th>verdict</th></tr>",
        s.criteria.len()
    );
    for c in &s.criteria {
        let v = c.verdict.mark();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{v}\">{}</td></tr>",
            escape(&c.id),
            c.kind_word(),
            escape(&c.description),
            escape(&c.measured),
            escape(&c.bound),
            escape(&c.verdict_cell())
        );
    }
    out.push_str("</table></details>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_page() {
        let mut one_pool = crate::report::tests::sample();
        one_pool.scenarios.retain(|s| s.pool == "pool");
        insta::assert_snapshot!(index_html(&one_pool));
    }

    #[test]
    fn comparison_page() {
        insta::assert_snapshot!(index_html(&crate::report::tests::sample_side_by_side()));
    }
}
