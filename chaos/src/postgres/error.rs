//! Why a cluster could not be found, started, stopped or reached: one error, with what to do.

/// Why a throwaway cluster could not be started or controlled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// No `initdb`/`postgres` pair was found.
    #[error(
        "PostgreSQL server binaries (initdb and postgres) were not found (searched: {searched}); \
         install them (Debian/Ubuntu: `apt-get install postgresql`, macOS: `brew install postgresql@17`), \
         set PG_BIN to the directory that holds them, or set DATABASE_URL to use a server you run"
    )]
    BinariesNotFound {
        /// The places that were searched, in order.
        searched: String,
    },
    /// Running as root, and no unprivileged user exists to run the server as.
    #[error(
        "running as root, and neither a `postgres` nor a `nobody` user exists to run the server as \
         (initdb and postgres refuse root); create one (`useradd --system postgres`) or run as a normal user"
    )]
    NoUnprivilegedUser,
    /// A file system or process operation failed.
    #[error("could not {action}")]
    Io {
        /// What was being done.
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `initdb` exited with an error.
    #[error("initdb failed ({status}); its output ends with:\n{log_tail}")]
    InitdbFailed {
        /// initdb's exit status.
        status: std::process::ExitStatus,
        /// The last lines initdb printed.
        log_tail: String,
    },
    /// The server exited or did not become ready.
    #[error(
        "PostgreSQL did not start on 127.0.0.1:{port} ({reason}); its log ends with:\n{log_tail}"
    )]
    StartFailed {
        /// The port it was started on.
        port: u16,
        /// What went wrong.
        reason: String,
        /// The last lines of the server log.
        log_tail: String,
    },
    /// Every attempted port was taken by another process.
    #[error(
        "no free port: {attempts} ports in a row were taken before PostgreSQL could bind them; \
         free some ports or retry"
    )]
    PortInUse {
        /// How many ports were tried.
        attempts: usize,
    },
    /// `DATABASE_URL` is set to something that is not a usable PostgreSQL URL.
    #[error(
        "DATABASE_URL is not a usable PostgreSQL URL: {problem}; fix it (e.g. postgres://user:password@host:5432/db), \
         or unset DATABASE_URL to use a throwaway cluster"
    )]
    BadDatabaseUrl {
        /// What is wrong with it (any password redacted).
        problem: String,
    },
    /// The server at `DATABASE_URL` cannot be reached or refuses the login.
    #[error(
        "the server at DATABASE_URL ({target}) {problem}; check that it runs and that the URL is right, \
         or unset DATABASE_URL to use a throwaway cluster"
    )]
    Unreachable {
        /// `host:port` from the URL.
        target: String,
        /// What happened.
        problem: String,
    },
    /// The operation needs a cluster we own, but `DATABASE_URL` points at an external server.
    #[error(
        "{operation} needs a throwaway cluster; DATABASE_URL points at a server this process does not own \
         (unset DATABASE_URL to use a throwaway cluster)"
    )]
    NotOwned {
        /// The operation that was refused.
        operation: &'static str,
    },
}

pub(super) fn io_err(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let action = action.into();
    move |source| ClusterError::Io { action, source }
}
