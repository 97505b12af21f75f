//! The soak's report: one serde model ([`SoakReport`]) written as JSON at every checkpoint and
//! at the end, a terminal summary, and an SVG with each series over time and the fault
//! windows marked.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::trend::Trend;
use crate::report::{Criterion, Verdict};

/// Where a soak is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SoakState {
    /// A checkpoint of a soak still running (or killed after it): the verdict is provisional
    /// and the shutdown checks are missing.
    Checkpoint,
    /// Ran for the planned duration.
    Finished,
    /// Stopped early by a signal (SIGINT, SIGTERM, SIGHUP), then shut down cleanly.
    Interrupted,
}

/// One sample of the process, the pool and the server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the soak began.
    pub t_s: f64,
    /// Resident memory of this process, MiB (`None` where /proc is missing).
    pub rss_mib: Option<f64>,
    /// Open file descriptors of this process.
    pub fds: Option<f64>,
    /// Live tokio tasks (the pool's drivers and maintenance, the proxy's connections, the
    /// workload).
    pub tasks: f64,
    /// Pool: open connections.
    pub pool_total: usize,
    /// Pool: idle connections.
    pub pool_idle: usize,
    /// Pool: acquires waiting.
    pub waiting: usize,
    /// Pool: connection driver tasks still running.
    pub live_connection_tasks: usize,
    /// Server-side connections of the soak's `application_name` (`None` while the server is
    /// down).
    pub server_connections: Option<f64>,
    /// Requests that ended since the previous sample.
    pub requests: u64,
    /// Of which succeeded.
    pub ok: u64,
    /// Of which failed.
    pub failed: u64,
    /// Of which were cancelled on purpose by the workload.
    pub cancelled: u64,
    /// Median latency of the successful requests, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency of the successful requests, ms.
    pub p99_ms: Option<f64>,
    /// Failures by kind since the previous sample.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, u64>,
}

/// One fault injected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultEvent {
    /// The matrix's name for it (`down`, `peer_lost`, `server_restart`...).
    pub name: String,
    /// Short label.
    pub label: String,
    /// When it was injected, seconds since the soak began.
    pub start_s: f64,
    /// When it was healed (`None` while it lasts).
    pub end_s: Option<f64>,
    /// Why it could not be injected or healed, if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Request totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Requests that ended.
    pub requests: u64,
    /// Succeeded.
    pub ok: u64,
    /// Failed.
    pub failed: u64,
    /// Cancelled on purpose by the workload (a dropped future or a query cut by a timeout).
    pub cancelled: u64,
    /// Requests that outlived the hang cutoff (every pool call is bounded; this must be 0).
    pub hangs: u64,
    /// The slowest request, ms.
    pub longest_ms: f64,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
}

/// What the pool and the server said after the pool shut down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndCheck {
    /// Connections the pool opened during the soak.
    pub opened: u64,
    /// Connections the pool closed (for any reason).
    pub closed: u64,
    /// Connection driver tasks still running after shutdown.
    pub live_connection_tasks: usize,
    /// Server-side connections of the soak's `application_name` left after shutdown.
    pub server_connections_left: i64,
    /// Checked-out connections returned during shutdown.
    pub shutdown_returned: usize,
    /// Checked-out connections force-closed by shutdown.
    pub shutdown_forced: usize,
    /// How long shutdown took, ms.
    pub shutdown_ms: f64,
    /// Connections the pool closed, by reason (discarded by the workload, broken, recycled...).
    pub closed_by_reason: BTreeMap<String, u64>,
}

/// The whole soak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoakReport {
    /// chaos version.
    pub version: String,
    /// Checkpoint, finished or interrupted.
    pub state: SoakState,
    /// Seed of every random choice.
    pub seed: u64,
    /// The database (password redacted).
    pub database: String,
    /// The proxy (embedded or a Toxiproxy URL).
    pub proxy: String,
    /// Planned duration, seconds.
    pub planned_s: f64,
    /// How long it ran, seconds.
    pub elapsed_s: f64,
    /// Samples before this are not fitted.
    pub warmup_s: f64,
    /// Sampling period, seconds.
    pub sample_every_s: f64,
    /// Mean time between faults, seconds.
    pub fault_every_s: f64,
    /// The pool's max_size.
    pub max_size: usize,
    /// Request totals.
    pub totals: Totals,
    /// Every fault injected.
    pub faults: Vec<FaultEvent>,
    /// Fitted trends of the leak-checked series.
    pub trends: Vec<Trend>,
    /// The shutdown checks (missing at a checkpoint).
    pub end: Option<EndCheck>,
    /// Every criterion, measured value beside its bound.
    pub criteria: Vec<Criterion>,
    /// Overall: fail when any criterion failed.
    pub verdict: Verdict,
    /// Every sample.
    pub samples: Vec<Sample>,
}

pub(super) fn human(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

impl SoakReport {
    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serializes")
    }

    /// The series that grew (failed trends), for the error message.
    pub fn grown(&self) -> Vec<&Trend> {
        self.trends
            .iter()
            .filter(|t| t.verdict == Verdict::Fail)
            .collect()
    }

    /// The terminal summary.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let state = match self.state {
            SoakState::Checkpoint => "checkpoint",
            SoakState::Finished => "finished",
            SoakState::Interrupted => "interrupted",
        };
        let _ = writeln!(
            out,
            "soak {state} after {} of {} (seed {}; warm-up {}, a sample every {}, a fault every {} on average)",
            human(self.elapsed_s),
            human(self.planned_s),
            self.seed,
            human(self.warmup_s),
            human(self.sample_every_s),
            human(self.fault_every_s),
        );
        let _ = writeln!(
            out,
            "\n{:<20} {:>10} {:>10} {:>12} {:>10} {:>10}  verdict",
            "series", "start", "end", "slope/hour", "growth", "allowed"
        );
        for t in &self.trends {
            let _ = writeln!(
                out,
                "{:<20} {:>10.1} {:>10.1} {:>+12.2} {:>+10.2} {:>10.1}  {}",
                t.series,
                t.start,
                t.end,
                t.slope_per_hour,
                t.growth,
                t.allowed,
                t.verdict.mark()
            );
        }
        let tot = &self.totals;
        let _ = writeln!(
            out,
            "\nrequests {}: ok {}, failed {}, cancelled on purpose {}, hangs {}; longest {:.0} ms",
            tot.requests, tot.ok, tot.failed, tot.cancelled, tot.hangs, tot.longest_ms
        );
        if !tot.errors.is_empty() {
            let list: Vec<String> = tot.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(out, "failures by kind: {}", list.join(", "));
        }
        let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
        for f in &self.faults {
            *by_name.entry(&f.name).or_default() += 1;
        }
        let list: Vec<String> = by_name.iter().map(|(k, v)| format!("{k} x{v}")).collect();
        let _ = writeln!(
            out,
            "faults injected {}: {}",
            self.faults.len(),
            list.join(", ")
        );
        if let Some(e) = &self.end {
            let _ = writeln!(
                out,
                "connections opened {}, closed {}; after shutdown: {} on the server, {} driver tasks; shutdown {:.0} ms ({} returned, {} forced)",
                e.opened,
                e.closed,
                e.server_connections_left,
                e.live_connection_tasks,
                e.shutdown_ms,
                e.shutdown_returned,
                e.shutdown_forced
            );
            let reasons: Vec<String> = e
                .closed_by_reason
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let _ = writeln!(out, "closed by reason: {}", reasons.join(", "));
        }
        let _ = writeln!(out);
        for c in &self.criteria {
            let _ = writeln!(
                out,
                "{:<8} {:<28} {} (bound {})",
                c.verdict.mark(),
                c.id,
                c.measured,
                c.bound
            );
        }
        let _ = writeln!(
            out,
            "\n{}",
            match self.verdict {
                Verdict::Pass => "LEAK-FREE".to_string(),
                Verdict::Unknown => "UNKNOWN (too short to fit a trend)".to_string(),
                Verdict::Fail => {
                    let grown: Vec<&str> = self.grown().iter().map(|t| t.series.as_str()).collect();
                    if grown.is_empty() {
                        "FAILED".to_string()
                    } else {
                        format!("LEAK: {} grew", grown.join(", "))
                    }
                }
            }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::trend;

    /// A fixed soak: 10 minutes, a flat memory series, a leaking connection series, two
    /// faults (one while the server was down: no server sample).
    pub(crate) fn sample() -> SoakReport {
        let samples: Vec<Sample> = (0..=120)
            .map(|i| {
                let t = i as f64 * 5.0;
                let down = (200.0..230.0).contains(&t);
                Sample {
                    t_s: t,
                    rss_mib: Some(20.0 + (i % 3) as f64 * 0.5),
                    fds: Some(40.0 + (i % 4) as f64),
                    tasks: 30.0,
                    pool_total: 8,
                    pool_idle: 3,
                    waiting: 0,
                    live_connection_tasks: 8,
                    server_connections: (!down).then_some(8.0 + t / 20.0),
                    requests: 500,
                    ok: if down { 0 } else { 480 },
                    failed: if down { 480 } else { 0 },
                    cancelled: 20,
                    p50_ms: (!down).then_some(0.4),
                    p99_ms: (!down).then_some(180.0),
                    errors: if down {
                        BTreeMap::from([("acquire unavailable".to_string(), 480)])
                    } else {
                        BTreeMap::new()
                    },
                }
            })
            .collect();
        let window: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| s.t_s >= 60.0)
            .filter_map(|s| s.server_connections.map(|v| (s.t_s, v)))
            .collect();
        let rss: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| s.t_s >= 60.0)
            .map(|s| (s.t_s, s.rss_mib.unwrap_or(0.0)))
            .collect();
        let allow = trend::allowances(10);
        let trends = vec![
            trend::fit("rss_mib", "MiB", &rss, allow[0].2),
            trend::fit("server_connections", "connections", &window, allow[3].2),
        ];
        SoakReport {
            version: "0.0.0".into(),
            state: SoakState::Finished,
            seed: 42,
            database: "throwaway cluster".into(),
            proxy: "embedded".into(),
            planned_s: 600.0,
            elapsed_s: 600.0,
            warmup_s: 60.0,
            sample_every_s: 5.0,
            fault_every_s: 75.0,
            max_size: 10,
            totals: Totals {
                requests: 60_500,
                ok: 56_000,
                failed: 2_900,
                cancelled: 1_600,
                hangs: 0,
                longest_ms: 2_010.0,
                errors: BTreeMap::from([("acquire unavailable".to_string(), 2_900)]),
            },
            faults: vec![
                FaultEvent {
                    name: "server_restart".into(),
                    label: "server crashed".into(),
                    start_s: 200.0,
                    end_s: Some(230.0),
                    error: None,
                },
                FaultEvent {
                    name: "latency_jitter".into(),
                    label: "latency 100+-50 ms".into(),
                    start_s: 400.0,
                    end_s: Some(410.0),
                    error: None,
                },
            ],
            trends,
            end: Some(EndCheck {
                opened: 120,
                closed: 120,
                live_connection_tasks: 0,
                server_connections_left: 0,
                shutdown_returned: 2,
                shutdown_forced: 0,
                shutdown_ms: 12.0,
                closed_by_reason: BTreeMap::from([
                    ("discarded".to_string(), 100),
                    ("shutdown".to_string(), 20),
                ]),
            }),
            criteria: Vec::new(),
            verdict: Verdict::Fail,
            samples,
        }
    }

    #[test]
    fn the_text_names_the_series_that_grew() {
        let r = sample();
        let text = r.to_text();
        assert!(text.contains("LEAK: server_connections grew"), "{text}");
        insta::assert_snapshot!(text);
    }

    #[test]
    fn the_svg_has_a_panel_per_series_and_breaks_lines_at_gaps() {
        let svg = super::super::svg::svg(&sample());
        assert_eq!(
            svg.matches("font-weight=\"bold\">").count(),
            7,
            "title + 6 panels"
        );
        insta::assert_snapshot!(svg);
    }

    #[test]
    fn the_json_reads_back() {
        let r = sample();
        let back: SoakReport = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(back, r);
    }
}
