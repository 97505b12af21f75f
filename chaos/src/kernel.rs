//! Faults the kernel makes: packets to or from a port on loopback dropped, reset or lost,
//! by nftables rules in a table of this run's own (Toxiproxy cannot do this: it only sees
//! whole connections, never packets).
//!
//! | fault | rules (chain on the `output` hook, loopback only) | what a client sees |
//! | --- | --- | --- |
//! | [`Blackhole`](KernelFault::Blackhole) | every packet to and from the port dropped | connects hang at the SYN, held sockets retransmit until `tcp_user_timeout` |
//! | [`SynDrop`](KernelFault::SynDrop) | new connections' SYNs dropped | held sessions answer; new connects hang |
//! | [`Reset`](KernelFault::Reset) | client->server answered with a TCP reset | every send fails at once |
//! | [`Loss`](KernelFault::Loss) | a percentage of packets each way dropped (`numgen random`) | retransmissions, latency spikes |
//! | [`OneWay`](KernelFault::OneWay) | server->client dropped | queries run, answers vanish |
//!
//! Rules are always removed: on [`heal`](KernelFaults::heal), on drop, and by a watchdog
//! process when this process dies without dropping them (killed, crashed): the watchdog
//! holds a pipe from this process and deletes the table when the pipe closes, as the
//! throwaway cluster's watchdog stops the server. Needs root (or `CAP_NET_ADMIN`) and the
//! `nft` binary; [`KernelFaults::available`] says whether this machine has both, and why not.
//!
//! # Examples
//! ```no_run
//! use chaos::kernel::{KernelFault, KernelFaults};
//! let faults = KernelFaults::new(5432)?; // a table of our own; nothing dropped yet
//! faults.apply(KernelFault::Blackhole)?;
//! // ... the pool under a kernel-made partition ...
//! faults.heal()?;
//! # Ok::<(), chaos::kernel::KernelError>(())
//! ```

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// Every table this module makes starts with this, so a leftover is easy to find.
pub const TABLE_PREFIX: &str = "chaos_kernel_";

/// One packet-level fault on the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFault {
    /// Every packet dropped both ways, SYNs too.
    Blackhole,
    /// New connections only (SYN without ACK, to the port).
    SynDrop,
    /// Client->server packets answered with a TCP reset.
    Reset,
    /// This percentage (1-100) of packets dropped each way.
    Loss {
        /// Percent of packets dropped.
        percent: u8,
    },
    /// Server->client packets dropped.
    OneWay,
}

impl KernelFault {
    /// The fault's name in plans and reports (`kernel_blackhole`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            KernelFault::Blackhole => "kernel_blackhole",
            KernelFault::SynDrop => "kernel_syn_drop",
            KernelFault::Reset => "kernel_reset",
            KernelFault::Loss { .. } => "kernel_loss",
            KernelFault::OneWay => "kernel_one_way",
        }
    }

    /// The nftables rules for `port`, one per line.
    pub fn rules(&self, port: u16) -> Vec<String> {
        let up = format!("oif \"lo\" tcp dport {port}");
        let down = format!("oif \"lo\" tcp sport {port}");
        match self {
            KernelFault::Blackhole => vec![format!("{up} drop"), format!("{down} drop")],
            KernelFault::SynDrop => vec![format!("{up} tcp flags & (syn | ack) == syn drop")],
            KernelFault::Reset => vec![format!("{up} reject with tcp reset")],
            KernelFault::Loss { percent } => {
                let p = (*percent).clamp(1, 100);
                vec![
                    format!("{up} numgen random mod 100 < {p} drop"),
                    format!("{down} numgen random mod 100 < {p} drop"),
                ]
            }
            KernelFault::OneWay => vec![format!("{down} drop")],
        }
    }
}

/// Why kernel faults cannot be made or changed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// Not root: nftables rules need it.
    #[error(
        "kernel faults are unavailable: nftables rules need root (run as root, or with CAP_NET_ADMIN)"
    )]
    NotRoot,
    /// No `nft` program.
    #[error(
        "kernel faults are unavailable: the nft binary is missing ({0}): install nftables (apt-get install nftables)"
    )]
    NoNft(String),
    /// This machine cannot make them otherwise (no nf_tables, no `sh`): the reason says which.
    #[error("kernel faults are unavailable: {0}")]
    Unavailable(String),
    /// `nft` refused a command.
    #[error("nft {action} failed: {message}")]
    Nft {
        /// What was being done.
        action: String,
        /// What nft printed.
        message: String,
    },
}

/// A table of nftables rules of this run's own, matching one port on loopback.
pub struct KernelFaults {
    table: String,
    port: u16,
    current: Mutex<Option<KernelFault>>,
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
}

impl std::fmt::Debug for KernelFaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelFaults")
            .field("table", &self.table)
            .field("port", &self.port)
            .field("current", &self.current())
            .finish()
    }
}

/// The watchdog: waits for its stdin to close (this process ended, or dropped us), then
/// deletes the table, whatever became of us.
const WATCHDOG: &str = r#"cat >/dev/null; exec nft delete table inet "$1" 2>/dev/null"#;

impl KernelFaults {
    /// Whether this machine can make kernel faults; the error says why not.
    pub fn available() -> Result<(), KernelError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(KernelError::NotRoot);
        }
        match Command::new("nft").arg("list").arg("tables").output() {
            Err(e) => Err(KernelError::NoNft(e.to_string())),
            Ok(out) if !out.status.success() => Err(KernelError::Unavailable(format!(
                "nft cannot list tables: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
            Ok(_) => Ok(()),
        }
    }

    /// A new table with an empty chain for `port` (nothing dropped yet), and its watchdog.
    pub fn new(port: u16) -> Result<Self, KernelError> {
        Self::available()?;
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let table = format!(
            "{TABLE_PREFIX}{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        // The watchdog first: from here on, the table goes when we go.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("chaos-kernel-watchdog")
            .arg(&table)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C for us does not kill it before it cleans up.
            .process_group(0)
            .spawn()
            .map_err(|e| {
                KernelError::Unavailable(format!("cannot start the watchdog (sh): {e}"))
            })?;
        let stdin = child.stdin.take().expect("piped stdin");
        let faults = Self {
            table,
            port,
            current: Mutex::new(None),
            watchdog: Mutex::new(Some((child, stdin))),
        };
        faults.nft(
            "create the table",
            &format!(
                "add table inet {t}\nadd chain inet {t} out {{ type filter hook output priority 0 ; policy accept ; }}\n",
                t = faults.table
            ),
        )?;
        Ok(faults)
    }

    /// The table's name (`chaos_kernel_<pid>_<n>`).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The port the rules match.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The fault in force, if any.
    pub fn current(&self) -> Option<KernelFault> {
        *self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces whatever is in force with `fault`, atomically (one nft transaction).
    pub fn apply(&self, fault: KernelFault) -> Result<(), KernelError> {
        let mut script = format!("flush chain inet {} out\n", self.table);
        for rule in fault.rules(self.port) {
            script.push_str(&format!("add rule inet {} out {rule}\n", self.table));
        }
        self.nft(&format!("apply {}", fault.name()), &script)?;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(fault);
        tracing::info!(fault = fault.name(), port = self.port, table = %self.table, "kernel fault applied");
        Ok(())
    }

    /// Removes every rule (the table stays, empty, until drop).
    pub fn heal(&self) -> Result<(), KernelError> {
        self.nft("heal", &format!("flush chain inet {} out\n", self.table))?;
        if let Some(fault) = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            tracing::info!(
                fault = fault.name(),
                port = self.port,
                "kernel fault healed"
            );
        }
        Ok(())
    }

    /// The rules in force, as nft lists them (for reports and tests).
    pub fn listing(&self) -> Result<String, KernelError> {
        let out = Command::new("nft")
            .args(["list", "table", "inet", &self.table])
            .output()
            .map_err(|e| KernelError::Unavailable(format!("nft: {e}")))?;
        if !out.status.success() {
            return Err(KernelError::Nft {
                action: "list".into(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn nft(&self, action: &str, script: &str) -> Result<(), KernelError> {
        let mut child = Command::new("nft")
            .arg("-f")
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| KernelError::Unavailable(format!("nft: {e}")))?;
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(script.as_bytes())
            .map_err(|e| KernelError::Nft {
                action: action.into(),
                message: e.to_string(),
            })?;
        let out = child.wait_with_output().map_err(|e| KernelError::Nft {
            action: action.into(),
            message: e.to_string(),
        })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(KernelError::Nft {
                action: action.into(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }
}

impl Drop for KernelFaults {
    fn drop(&mut self) {
        if let Err(e) = self.nft(
            "delete the table",
            &format!("delete table inet {}\n", self.table),
        ) {
            tracing::warn!(table = %self.table, error = %e, "could not delete the kernel-fault table; the watchdog will try");
        }
        if let Some((mut child, stdin)) = self
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// Tables of this module's left on the machine (by any process), for checks that none are.
pub fn leftover_tables() -> Result<Vec<String>, KernelError> {
    let out = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .map_err(|e| KernelError::Unavailable(format!("nft: {e}")))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("table inet "))
        .filter(|t| t.starts_with(TABLE_PREFIX))
        .map(str::to_string)
        .collect())
}
