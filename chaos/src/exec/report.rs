//! What `chaos exec` saw ([`ExecReport`]: the command's lines, the plan's events, its exit);
//! its files are written by [`super::files`].

use serde::Serialize;

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

/// What happened.
#[derive(Debug, Clone, Serialize)]
pub struct ExecReport {
    /// The command as given.
    pub command: Vec<String>,
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
    /// Each planned fault: when it began and ended, or why it could not be applied.
    pub faults: Vec<PlanEvent>,
    /// Everything the command wrote, line by line.
    pub output: Vec<OutputLine>,
    /// The signal that ended `chaos exec` itself, if one did (the command was stopped).
    pub interrupted: Option<String>,
}

impl ExecReport {
    /// The faults that could not be applied, as `line N: label: error`.
    pub fn plan_failures(&self) -> Vec<String> {
        self.faults.iter().filter_map(PlanEvent::failure).collect()
    }

    /// The exit status `chaos exec` ends with: the command's, or 128 + its signal; 3 when the
    /// command succeeded but the plan could not be applied in full.
    pub fn exit_status(&self) -> u8 {
        match (self.exit_code, self.exit_signal) {
            (Some(0), _) if !self.plan_failures().is_empty() => 3,
            (Some(code), _) => code.clamp(0, 255) as u8,
            (None, Some(signal)) => (128 + signal).clamp(0, 255) as u8,
            (None, None) => 1,
        }
    }
}
