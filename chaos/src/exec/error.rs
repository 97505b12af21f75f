//! Why `chaos exec` could not run the command at all ([`ExecError`]).

/// Why `chaos exec` could not run the command at all.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Nothing to run.
    #[error("no command given: chaos exec --plan PLAN -- CMD [ARGS...]")]
    NoCommand,
    /// The plan asks for what this machine or database cannot do.
    #[error("the plan cannot be applied here, so the command was not started: {0}")]
    Unsupported(String),
    /// The command did not start.
    #[error("could not start `{command}`: {source}; check that it is installed and on PATH")]
    Spawn {
        /// The program.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The environment (database, proxy, API) could not be made.
    #[error(transparent)]
    Setup(#[from] crate::Error),
}
