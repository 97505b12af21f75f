//! Why a scenario could not be measured here, as a type: renderers print it, the CLI's hints
//! and the run's verdict match on it, and `report.json` carries it (`kind` and `detail`).

use serde::{Deserialize, Serialize};

/// Why a scenario could not be measured on this machine or against this server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Unavailable {
    /// It stops the server, and the server at `DATABASE_URL` is not this process's to stop.
    ServerNotOurs,
    /// A program it needs is not installed (`pgbouncer`, `nft`).
    MissingProgram {
        /// The program.
        program: String,
        /// What was looked for, and how to install it.
        detail: String,
    },
    /// It needs root (kernel faults: nftables rules).
    NotRoot {
        /// What needs it.
        detail: String,
    },
    /// Its fault injector (a proxy, a PgBouncer, a standby) could not be set up.
    Injector {
        /// Why.
        detail: String,
    },
    /// The fault controller refused the fault (a Toxiproxy server without the toxic).
    FaultRefused {
        /// The controller's error.
        detail: String,
    },
    /// The pool under test cannot take part (a peer without multi-host URLs).
    NotSupported {
        /// Why.
        detail: String,
    },
    /// A figure it needs cannot be read here (a Toxiproxy server gives no session counts;
    /// a remote server's accept queue).
    NotMeasurable {
        /// Which, and why.
        detail: String,
    },
    /// Measured, but a timing figure missed its bound by no more than the scheduling lag
    /// this machine showed in that window (or than its baseline, the same figure measured
    /// without the pool then): it cannot be judged here.
    WithinLag {
        /// Which criteria, by how much, and the lag or baseline that excuses each.
        detail: String,
    },
    /// It ran, but nothing it measures happened (no request completed, no plan given).
    NothingHappened {
        /// What is missing.
        detail: String,
    },
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::ServerNotOurs => f.write_str(
                "needs a throwaway cluster: DATABASE_URL points at a server this process does not own",
            ),
            Unavailable::MissingProgram { detail, .. }
            | Unavailable::NotRoot { detail }
            | Unavailable::NotSupported { detail }
            | Unavailable::NotMeasurable { detail }
            | Unavailable::NothingHappened { detail } => f.write_str(detail),
            Unavailable::WithinLag { detail } => {
                write!(f, "timing not judged on this machine: {detail}")
            }
            Unavailable::Injector { detail } => write!(f, "could not set up the fault: {detail}"),
            Unavailable::FaultRefused { detail } => {
                write!(f, "fault could not be applied: {detail}")
            }
        }
    }
}

impl Unavailable {
    /// What to change so it can run, for the CLI's hint.
    pub fn what_to_change(&self) -> &'static str {
        match self {
            Unavailable::ServerNotOurs => {
                "scenarios that stop the server need a cluster of chaos's own: unset DATABASE_URL, or leave those scenarios out with --scenario"
            }
            Unavailable::MissingProgram { .. } => {
                "install what is missing (see the reason; .ci/run shows the packages), or leave those scenarios out with --scenario"
            }
            Unavailable::NotRoot { .. } => {
                "kernel faults need root (or CAP_NET_ADMIN): run as root, or leave the kernel_* scenarios out with --scenario"
            }
            Unavailable::Injector { .. } => {
                "the fault could not be set up: with a Toxiproxy server, set TOXIPROXY_LISTEN to HOST or HOST:PORT where that server can listen (e.g. 127.0.0.1, or 0.0.0.0:25433 for docker-compose), and TOXIPROXY_UPSTREAM to the database as that server sees it"
            }
            Unavailable::FaultRefused { .. } => {
                "the fault controller refused the fault: check that the Toxiproxy server at TOXIPROXY_URL is reachable and supports the toxic"
            }
            Unavailable::NotSupported { .. } => {
                "that pool cannot take part in that scenario: nothing to change"
            }
            Unavailable::NotMeasurable { .. } => {
                "run with the embedded proxy and a server on this machine to measure every figure"
            }
            Unavailable::NothingHappened { .. } => "see the reason",
            Unavailable::WithinLag { .. } => {
                "a timing figure missed by less than the machine's own scheduling lag (or than the same figure measured without the pool): run on a quieter machine, or with --repeat N to see how often it holds"
            }
        }
    }
}

/// One scenario that could not be measured, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnavailableScenario {
    /// The pool.
    pub pool: String,
    /// The scenario.
    pub scenario: String,
    /// Why.
    pub why: Unavailable,
}

impl std::fmt::Display for UnavailableScenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} / {}: {}", self.pool, self.scenario, self.why)
    }
}
