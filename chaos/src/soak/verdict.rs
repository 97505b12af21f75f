//! The soak's report and verdict from its samples: trends past the warm-up, the end checks,
//! and the criteria.

use tokio::time::Instant;

use super::load::DIRTY;
use super::options::*;
use super::report::{EndCheck, FaultEvent, Sample, SoakReport, SoakState, Totals};
use super::trend;
use crate::report::{Criterion, Verdict};

/// What the report needs besides the samples.
pub(super) struct Run<'a> {
    pub(super) options: &'a Options,
    pub(super) database: String,
    pub(super) proxy: String,
    pub(super) started: Instant,
}

impl Run<'_> {
    pub(super) fn report(
        &self,
        state: SoakState,
        samples: &[Sample],
        faults: &[FaultEvent],
        totals: &Totals,
        end: Option<EndCheck>,
    ) -> SoakReport {
        let o = self.options;
        let warmup = o.warmup().as_secs_f64();
        let mut trends = Vec::new();
        for (name, unit, allowance) in trend::allowances(o.max_size) {
            let points: Vec<(f64, f64)> = samples
                .iter()
                .filter(|s| s.t_s >= warmup)
                .filter_map(|s| {
                    let v = match name {
                        "rss_mib" => s.rss_mib,
                        "fds" => s.fds,
                        "tasks" => Some(s.tasks),
                        _ => s.server_connections,
                    };
                    v.map(|v| (s.t_s, v))
                })
                .collect();
            trends.push(trend::fit(name, unit, &points, allowance));
        }
        let mut criteria: Vec<Criterion> = trends
            .iter()
            .map(|t| Criterion {
                id: format!("flat_{}", t.series),
                description: format!(
                    "{} shows no upward trend after the warm-up (Theil–Sen growth over the window)",
                    t.series
                ),
                measured: format!(
                    "{:+.2} {} over {:.0} s ({:+.2}/h, {} points)",
                    t.growth, t.unit, t.window_s, t.slope_per_hour, t.points
                ),
                bound: format!("<= {:.1} {}", t.allowed, t.unit),
                verdict: t.verdict,
                ..Default::default()
            })
            .collect();
        criteria.push(Criterion {
            id: "no_hang".into(),
            description: format!(
                "no request outlived {HANG_CUTOFF:?} (every pool call and query is bounded)"
            ),
            measured: format!(
                "{} hangs; longest {:.0} ms",
                totals.hangs, totals.longest_ms
            ),
            bound: "0".into(),
            verdict: if totals.hangs == 0 {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            ..Default::default()
        });
        let dirty = totals.errors.get(DIRTY).copied().unwrap_or(0);
        criteria.push(Criterion {
            id: "no_dirty_checkout".into(),
            description: "no request started inside a transaction an earlier one left open (early returns, cut queries; checked by every short request)".into(),
            measured: format!("{dirty} dirty"),
            bound: "0".into(),
            verdict: if dirty == 0 {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            ..Default::default()
        });
        let tail_from = o.duration.saturating_sub(o.quiet_tail()).as_secs_f64() + 3.0;
        let served_late: u64 = samples
            .iter()
            .filter(|s| s.t_s >= tail_from)
            .map(|s| s.ok)
            .sum();
        if state != SoakState::Checkpoint && samples.last().is_some_and(|s| s.t_s >= tail_from) {
            criteria.push(Criterion {
                id: "serving_after_faults".into(),
                description: "requests succeed in the fault-free stretch at the end".into(),
                measured: format!("{served_late} ok"),
                bound: "> 0".into(),
                verdict: if served_late > 0 {
                    Verdict::Pass
                } else {
                    Verdict::Fail
                },
                ..Default::default()
            });
        }
        if let Some(e) = &end {
            let check = |id: &str, description: &str, measured: String, ok: bool| Criterion {
                id: id.into(),
                description: description.into(),
                measured,
                bound: "equal / 0".into(),
                verdict: if ok { Verdict::Pass } else { Verdict::Fail },
                ..Default::default()
            };
            criteria.push(check(
                "all_closed",
                "every connection the pool opened was closed by shutdown",
                format!("opened {}, closed {}", e.opened, e.closed),
                e.opened == e.closed,
            ));
            criteria.push(check(
                "no_driver_left",
                "no connection driver task runs after shutdown",
                e.live_connection_tasks.to_string(),
                e.live_connection_tasks == 0,
            ));
            criteria.push(check(
                "server_clean",
                "the server shows no connection of the soak after shutdown (pg_stat_activity)",
                e.server_connections_left.to_string(),
                e.server_connections_left == 0,
            ));
        }
        let verdict = if criteria.iter().any(|c| c.verdict == Verdict::Fail) {
            Verdict::Fail
        } else if criteria.iter().any(|c| c.verdict == Verdict::Unknown) {
            Verdict::Unknown
        } else {
            Verdict::Pass
        };
        SoakReport {
            version: env!("CARGO_PKG_VERSION").into(),
            state,
            seed: o.seed,
            database: self.database.clone(),
            proxy: self.proxy.clone(),
            planned_s: o.duration.as_secs_f64(),
            elapsed_s: self.started.elapsed().as_secs_f64(),
            warmup_s: warmup,
            sample_every_s: o.sample_every().as_secs_f64(),
            fault_every_s: o.fault_every().as_secs_f64(),
            max_size: o.max_size,
            totals: totals.clone(),
            faults: faults.to_vec(),
            trends,
            end,
            criteria,
            verdict,
            samples: samples.to_vec(),
        }
    }
}
