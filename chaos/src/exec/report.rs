//! What `chaos exec` saw ([`ExecReport`]: the command's lines, the plan's events, the server's
//! changes, its exit); its files are written by [`super::files`].

use serde::Serialize;

use super::group::Stopped;
use super::watch::{ServerEvent, unexpected};
use crate::plan::PlanEvent;

/// One line the command wrote.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OutputLine {
    /// Seconds from the command's start.
    pub t_s: f64,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// The line, without its end.
    pub text: String,
}

/// One planned fault, its times on the command's clock and on the wall clock.
#[derive(Debug, Clone, Serialize)]
pub struct ExecFault {
    /// Its times (seconds from the command's start), label and error.
    #[serde(flatten)]
    pub event: PlanEvent,
    /// When it took effect, on the wall clock (RFC 3339, UTC, microseconds).
    pub effective_at: Option<String>,
    /// How late it took effect after its planned time, ms (`effective_s - planned_s`).
    pub offset_ms: Option<f64>,
}

/// What happened.
#[derive(Debug, Clone, Serialize)]
pub struct ExecReport {
    /// The run's name (`--name`; default the command's first word).
    pub name: String,
    /// The command as given.
    pub command: Vec<String>,
    /// The wall-clock time of the command's start (RFC 3339, UTC, microseconds): every `*_s`
    /// figure counts from it.
    pub started_at: String,
    /// When the service was ready (`--ready`) and the plan's clock started, seconds from the
    /// command's start (0 without `--ready`).
    pub plan_started_s: f64,
    /// The wall-clock time the plan's clock started.
    pub plan_started_at: String,
    /// What `--ready` waited for, if given.
    pub ready: Option<String>,
    /// Its exit code (`None`: ended by a signal).
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    pub exit_signal: Option<i32>,
    /// How long it ran, in seconds.
    pub ran_s: f64,
    /// The database, as reports show it (no password).
    pub database: String,
    /// The seed.
    pub seed: u64,
    /// Each planned fault: when it was planned, asked for, in effect and healed, or why it
    /// could not be applied; times from the command's start.
    pub faults: Vec<ExecFault>,
    /// Every change of the server's state, and whether a planned fault explains it.
    pub server: Vec<ServerEvent>,
    /// The server's log, kept beside the report (`server.log`), for a throwaway cluster.
    pub server_log: Option<String>,
    /// Processes of the command's group still running at its end, and what stopping them took.
    pub group: Stopped,
    /// Everything the command wrote, line by line.
    pub output: Vec<OutputLine>,
    /// The signal that ended `chaos exec` itself, if one did (the command was stopped).
    pub interrupted: Option<String>,
    /// Why the plan never started: the service was not ready in time, or ended first.
    pub not_ready: Option<String>,
    /// Whether faults the command did not live to see are allowed (`--allow-unreached`).
    pub allow_unreached: bool,
}

impl ExecReport {
    /// How the command ended, for the console and report.md: `exit code N`, `ended by
    /// signal N`.
    pub fn how_it_ended(&self) -> String {
        match (self.exit_code, self.exit_signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("ended by signal {s}"),
            _ => "ended".into(),
        }
    }

    /// The faults that could not be applied, as `line N: label: error`.
    pub fn plan_failures(&self) -> Vec<String> {
        self.faults
            .iter()
            .filter_map(|f| f.event.failure())
            .collect()
    }

    /// The faults never reached because the command ended first, as `line N: label (planned
    /// at X s)`.
    pub fn unreached(&self) -> Vec<String> {
        self.faults
            .iter()
            .filter(|f| f.event.start_s.is_none())
            .map(|f| {
                format!(
                    "line {}: {} (planned at {:.2} s; the command ended at {:.2} s)",
                    f.event.line, f.event.label, f.event.planned_s, self.ran_s
                )
            })
            .collect()
    }

    /// The server's changes no planned fault explains, as `X s: what`.
    pub fn server_problems(&self) -> Vec<String> {
        unexpected(&self.server)
            .into_iter()
            .map(|e| format!("{:.2} s: {}", e.t_s, e.what))
            .collect()
    }

    /// The exit status `chaos exec` ends with (`chaos exec --help` lists them): 2 when the
    /// service was never ready (the plan never started); else the command's, or 128 + its
    /// signal, when it failed; when it exited 0: 4 when the server stopped, restarted or
    /// refused without a fault asking, 3 when the plan did not run in full (a fault could not
    /// be applied, or was not reached unless allowed).
    pub fn exit_status(&self) -> u8 {
        if self.not_ready.is_some() {
            return 2;
        }
        match (self.exit_code, self.exit_signal) {
            (Some(0), _) if !self.server_problems().is_empty() => 4,
            (Some(0), _)
                if !self.plan_failures().is_empty()
                    || (!self.allow_unreached && !self.unreached().is_empty()) =>
            {
                3
            }
            (Some(code), _) => code.clamp(0, 255) as u8,
            (None, Some(signal)) => (128 + signal).clamp(0, 255) as u8,
            (None, None) => 1,
        }
    }
}

/// `t`, an instant on the wall clock, as RFC 3339 in UTC with microseconds.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let micros = t.microsecond();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(exit_code: Option<i32>) -> ExecReport {
        ExecReport {
            name: "svc".into(),
            command: vec!["svc".into()],
            started_at: rfc3339(std::time::UNIX_EPOCH),
            plan_started_s: 0.0,
            plan_started_at: rfc3339(std::time::UNIX_EPOCH),
            ready: None,
            exit_code,
            exit_signal: None,
            ran_s: 2.0,
            database: "db".into(),
            seed: 1,
            faults: Vec::new(),
            server: Vec::new(),
            server_log: None,
            group: Stopped::default(),
            output: Vec::new(),
            interrupted: None,
            not_ready: None,
            allow_unreached: false,
        }
    }

    fn fault(start_s: Option<f64>, end_s: Option<f64>, label: &str) -> ExecFault {
        ExecFault {
            event: PlanEvent {
                label: label.into(),
                line: 1,
                planned_s: 1.0,
                start_s,
                effective_s: start_s,
                end_s,
                error: None,
            },
            effective_at: None,
            offset_ms: None,
        }
    }

    fn server(t_s: f64, what: &str) -> ServerEvent {
        ServerEvent {
            t_s,
            what: what.into(),
            expected: false,
        }
    }

    #[test]
    fn each_exit_status_says_what_went_wrong() {
        assert_eq!(report(Some(0)).exit_status(), 0);
        assert_eq!(report(Some(7)).exit_status(), 7);
        // A fault past the command's end: 3, unless allowed; the command's failure comes first.
        let mut r = report(Some(0));
        r.faults.push(fault(None, None, "proxy down"));
        assert_eq!(r.exit_status(), 3);
        assert_eq!(r.unreached().len(), 1);
        r.allow_unreached = true;
        assert_eq!(r.exit_status(), 0);
        r.exit_code = Some(1);
        assert_eq!(r.exit_status(), 1);
        // The server stopped with no fault asking: 4, before an unreached fault.
        let mut r = report(Some(0));
        r.faults.push(fault(None, None, "proxy down"));
        r.server = vec![
            server(0.0, "answers"),
            server(0.5, "stopped (its postmaster exited)"),
        ];
        crate::exec::watch::judge(&mut r.server, []);
        assert_eq!(r.exit_status(), 4);
        assert_eq!(
            r.server_problems(),
            ["0.50 s: stopped (its postmaster exited)"]
        );
        // Never ready: 2, whatever the command did.
        let mut r = report(None);
        r.exit_signal = Some(15);
        r.not_ready = Some("not ready after 30s".into());
        assert_eq!(r.exit_status(), 2);
    }

    #[test]
    fn a_restart_the_plan_asked_for_is_not_a_finding() {
        let restart = crate::fault::MATRIX
            .iter()
            .find(|f| f.name == "server_restart")
            .unwrap()
            .label;
        let plan = [fault(Some(1.0), Some(1.6), restart).event];
        let mut events = vec![
            server(0.0, "answers"),
            server(1.1, "stopped (its postmaster exited)"),
            server(1.1, "refuses: connection refused"),
            server(1.7, "started (postmaster pid 9)"),
            server(1.8, "answers"),
            server(9.0, "refuses: the database system is shutting down (57P03)"),
        ];
        crate::exec::watch::judge(&mut events, &plan);
        let mut r = report(Some(0));
        r.server = events;
        assert_eq!(
            r.server_problems(),
            ["9.00 s: refuses: the database system is shutting down (57P03)"]
        );
    }

    #[test]
    fn wall_clock_times_are_rfc3339_in_utc_with_microseconds() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_764_930_612_504_141);
        assert_eq!(rfc3339(t), "2025-12-05T10:30:12.504141Z");
    }
}
