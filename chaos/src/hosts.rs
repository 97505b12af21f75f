//! Hosts of their own on one machine: network namespaces, each with its own address on a
//! bridge of the run's own, with no route to anything outside, and partitions between them.
//!
//! The nodes of an HA cluster are different hosts, and partitions happen between hosts, not
//! between ports. [`Hosts::create`] makes one namespace per host name, joined by a bridge that
//! also carries an address in the machine's own namespace (the client side: this process, its
//! pools, Patroni's REST polls). Every namespace has the bridge's /24 as its only route, so
//! traffic only ever goes to our own test hosts.
//!
//! | step | what is made |
//! | --- | --- |
//! | subnet | `10.213.B.0/24` .. `10.220.B.0/24`, the first that no address or route on the machine overlaps |
//! | bridge | `chaos-A-B`, `10.A.B.1/24` (the client side) |
//! | host `i` | namespace `chaos-A-B-i`, a veth pair, `10.A.B.(10+i)/24` |
//! | partition | nftables table `chaos_hosts` inside the host's namespace, dropping packets to and from the peers named |
//!
//! Everything is removed on drop, and by a watchdog (`sh`, holding a pipe from this process)
//! when this process dies without dropping it: every process left in the namespaces is
//! killed, the namespaces and the bridge are deleted and the run's directory is removed. The
//! bridge's name is the subnet's lock: two runs on one machine never share a subnet.
//!
//! Needs root (`CAP_NET_ADMIN` and `CAP_SYS_ADMIN`), `ip` (iproute2) and, for partitions,
//! `nft`. [`Hosts::available`] says whether this machine has them, and why not.

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

/// Why hosts could not be made or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostsError {
    /// Not root: namespaces and bridges need `CAP_NET_ADMIN` and `CAP_SYS_ADMIN`.
    #[error(
        "hosts of their own (network namespaces on a bridge) need root: run as root (CI does) or with CAP_NET_ADMIN and CAP_SYS_ADMIN"
    )]
    NotRoot,
    /// A program is missing.
    #[error("the {program} program is missing: {hint}")]
    MissingProgram {
        /// The program.
        program: &'static str,
        /// How to install it.
        hint: &'static str,
    },
    /// Every candidate subnet is in use on this machine (or by other runs).
    #[error(
        "no free /24 for the hosts' bridge in 10.213.0.0/16..10.220.0.0/16: every candidate overlaps an address or route of this machine or is held by another run ({checked} checked)"
    )]
    NoFreeSubnet {
        /// How many were tried.
        checked: usize,
    },
    /// A command failed.
    #[error("could not {action}: `{command}` failed: {message}")]
    Command {
        /// What was being done.
        action: String,
        /// The command.
        command: String,
        /// What it printed.
        message: String,
    },
}

/// One host: a namespace and its address.
#[derive(Debug, Clone)]
pub struct Host {
    /// The name it was created with (`etcd`, `n1`, ...).
    pub name: String,
    /// Its network namespace.
    pub namespace: String,
    /// Its address on the bridge.
    pub addr: Ipv4Addr,
}

/// Network namespaces on a bridge of our own; removed on drop.
pub struct Hosts {
    bridge: String,
    client: Ipv4Addr,
    hosts: Vec<Host>,
    dir: PathBuf,
    /// The watchdog's stdin: a line `stop` (or the pipe closing) removes everything.
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
}

/// The watchdog. Arguments: bridge dir namespace... Waits for a line (or end of input),
/// then kills every process in the namespaces, deletes them and the bridge, removes `dir`.
const WATCHDOG: &str = r#"
bridge=$1; dir=$2; shift 2
IFS= read -r cmd || cmd=orphaned
for ns in "$@"; do
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
done
sleep 0.2
for ns in "$@"; do ip netns del "$ns" 2>/dev/null; done
ip link del "$bridge" 2>/dev/null
rm -rf "$dir"
"#;

/// The nftables table a partition lives in, inside the host's namespace.
const PARTITION_TABLE: &str = "chaos_hosts";

impl Hosts {
    /// Whether this machine can make hosts: root, `ip` and `nft`.
    ///
    /// # Errors
    /// [`HostsError::NotRoot`] or [`HostsError::MissingProgram`].
    pub fn available() -> Result<(), HostsError> {
        // Safety: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err(HostsError::NotRoot);
        }
        for (program, hint) in [
            ("ip", "install iproute2 (apt-get install iproute2)"),
            ("nft", "install nftables (apt-get install nftables)"),
        ] {
            if Command::new(program).arg("-V").output().is_err() {
                return Err(HostsError::MissingProgram { program, hint });
            }
        }
        Ok(())
    }

    /// Makes one host per name, in `dir` (removed with the hosts).
    ///
    /// # Errors
    /// [`Hosts::available`]'s, no free subnet, or a command that failed (everything made so
    /// far is removed).
    pub fn create(names: &[&str], dir: &Path) -> Result<Self, HostsError> {
        Self::available()?;
        let taken = used_networks();
        let pid = std::process::id();
        let mut checked = 0;
        // Start at a place of this process's own, so concurrent runs rarely race for one.
        for k in 0..(8 * 256u32) {
            let slot = (pid.wrapping_mul(2_654_435_761) >> 8).wrapping_add(k) % (8 * 256);
            let (a, b) = (213 + (slot / 256) as u8, (slot % 256) as u8);
            checked += 1;
            if taken
                .iter()
                .any(|&(net, len)| overlaps(net, len, [10, a, b, 0], 24))
            {
                continue;
            }
            let bridge = format!("chaos-{a}-{b}");
            // The bridge's name is the lock: `ip link add` fails when another run holds it.
            if run(
                "create the hosts' bridge",
                "ip",
                &["link", "add", &bridge, "type", "bridge"],
            )
            .is_err()
            {
                continue;
            }
            let hosts = names
                .iter()
                .enumerate()
                .map(|(i, name)| Host {
                    name: (*name).to_string(),
                    namespace: format!("{bridge}-{i}"),
                    addr: Ipv4Addr::new(10, a, b, 10 + i as u8),
                })
                .collect::<Vec<_>>();
            let mut made = Hosts {
                bridge,
                client: Ipv4Addr::new(10, a, b, 1),
                hosts,
                dir: dir.to_path_buf(),
                watchdog: Mutex::new(None),
            };
            if let Err(e) = made.watch() {
                // No watchdog to remove it: the bridge goes now.
                let _ = run(
                    "remove the hosts' bridge",
                    "ip",
                    &["link", "del", &made.bridge],
                );
                return Err(e);
            }
            // On a failure from here, dropping `made` removes everything through the watchdog.
            made.build()?;
            return Ok(made);
        }
        Err(HostsError::NoFreeSubnet { checked })
    }

    fn watch(&mut self) -> Result<(), HostsError> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("chaos-hosts-watchdog")
            .arg(&self.bridge)
            .arg(&self.dir)
            .args(self.hosts.iter().map(|h| &h.namespace))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| HostsError::Command {
                action: "start the hosts' watchdog".into(),
                command: "sh".into(),
                message: e.to_string(),
            })?;
        let stdin = child.stdin.take().expect("piped stdin");
        *self.watchdog.lock().unwrap_or_else(|e| e.into_inner()) = Some((child, stdin));
        Ok(())
    }

    fn build(&self) -> Result<(), HostsError> {
        let client = format!("{}/24", self.client);
        run(
            "address the bridge",
            "ip",
            &["addr", "add", &client, "dev", &self.bridge],
        )?;
        run(
            "bring the bridge up",
            "ip",
            &["link", "set", &self.bridge, "up"],
        )?;
        for (i, host) in self.hosts.iter().enumerate() {
            let ns = host.namespace.as_str();
            let veth = format!("{}-{i}", self.bridge);
            let addr = format!("{}/24", host.addr);
            let action = format!("make host {} ({})", host.name, host.addr);
            run(&action, "ip", &["netns", "add", ns])?;
            run(
                &action,
                "ip",
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
                ],
            )?;
            run(
                &action,
                "ip",
                &["link", "set", &veth, "master", &self.bridge, "up"],
            )?;
            run(
                &action,
                "ip",
                &["-n", ns, "addr", "add", &addr, "dev", "eth0"],
            )?;
            run(&action, "ip", &["-n", ns, "link", "set", "eth0", "up"])?;
            run(&action, "ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// The hosts, in the order of their names.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The address of this machine's own side of the bridge (where clients come from).
    pub fn client_addr(&self) -> Ipv4Addr {
        self.client
    }

    /// The bridge's name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// A command that runs `program` on `host` (in its namespace), as `user` when given.
    pub fn command(&self, host: &Host, user: Option<&str>, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &host.namespace]);
        if let Some(user) = user {
            c.args(["runuser", "-u", user, "--"]);
        }
        c.arg(program);
        c
    }

    /// Kills every process on `host` at once (`SIGKILL`): a host lost, as a power cut would.
    /// Returns how many were killed.
    pub fn kill_all(&self, host: &Host) -> usize {
        let pids = Command::new("ip")
            .args(["netns", "pids", &host.namespace])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let pids: Vec<i32> = pids
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        for &pid in &pids {
            // Safety: kill has no memory preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        pids.len()
    }

    /// Partitions `host` from `peers`: every packet between them dropped, both ways (an
    /// nftables table in `host`'s namespace). Replaces the host's previous partition.
    ///
    /// # Errors
    /// `nft` refused the rules.
    pub fn partition(&self, host: &Host, peers: &[Ipv4Addr]) -> Result<(), HostsError> {
        self.heal(host)?;
        if peers.is_empty() {
            return Ok(());
        }
        let set = peers
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let script = format!(
            "table inet {PARTITION_TABLE} {{\n\
             chain input {{ type filter hook input priority -10; policy accept; ip saddr {{ {set} }} drop; }}\n\
             chain output {{ type filter hook output priority -10; policy accept; ip daddr {{ {set} }} drop; }}\n\
             }}\n"
        );
        let mut child = self
            .command(host, None, "nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| HostsError::Command {
                action: format!("partition {}", host.name),
                command: "nft -f -".into(),
                message: e.to_string(),
            })?;
        let _ = child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(script.as_bytes());
        let out = child.wait_with_output().map_err(|e| HostsError::Command {
            action: format!("partition {}", host.name),
            command: "nft -f -".into(),
            message: e.to_string(),
        })?;
        if !out.status.success() {
            return Err(HostsError::Command {
                action: format!("partition {}", host.name),
                command: "nft -f -".into(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    /// Removes `host`'s partition, if any.
    ///
    /// # Errors
    /// `nft` refused to delete the table it has.
    pub fn heal(&self, host: &Host) -> Result<(), HostsError> {
        let listed = self
            .command(host, None, "nft")
            .args(["list", "tables"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(PARTITION_TABLE))
            .unwrap_or(false);
        if !listed {
            return Ok(());
        }
        let out = self
            .command(host, None, "nft")
            .args(["delete", "table", "inet", PARTITION_TABLE])
            .output()
            .map_err(|e| HostsError::Command {
                action: format!("heal {}", host.name),
                command: "nft delete table".into(),
                message: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(HostsError::Command {
                action: format!("heal {}", host.name),
                command: "nft delete table".into(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    /// Removes every partition.
    ///
    /// # Errors
    /// The first host whose partition could not be removed.
    pub fn heal_all(&self) -> Result<(), HostsError> {
        for host in &self.hosts {
            self.heal(host)?;
        }
        Ok(())
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let taken = self
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((mut child, mut stdin)) = taken {
            let _ = stdin.write_all(b"stop\n");
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// Runs a command; its stderr is the error.
fn run(action: &str, program: &str, args: &[&str]) -> Result<(), HostsError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| HostsError::Command {
            action: action.to_string(),
            command: format!("{program} {}", args.join(" ")),
            message: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(HostsError::Command {
            action: action.to_string(),
            command: format!("{program} {}", args.join(" ")),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Every IPv4 network an address or a route of this machine covers (the default route
/// aside: a more specific route of ours wins over it).
fn used_networks() -> Vec<([u8; 4], u8)> {
    let mut nets = Vec::new();
    for args in [
        &["-4", "-o", "addr", "show"][..],
        &["-4", "route", "show", "table", "all"][..],
    ] {
        let out = Command::new("ip")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for word in out.split_whitespace() {
            if let Some(net) = parse_cidr(word) {
                nets.push(net);
            }
        }
    }
    nets
}

/// `a.b.c.d/len` or `a.b.c.d` (a /32).
fn parse_cidr(word: &str) -> Option<([u8; 4], u8)> {
    let (addr, len) = match word.split_once('/') {
        Some((a, l)) => (a, l.parse::<u8>().ok().filter(|&l| l <= 32)?),
        None => (word, 32),
    };
    let addr: Ipv4Addr = addr.parse().ok()?;
    Some((addr.octets(), len))
}

/// Whether two networks share an address.
fn overlaps(a: [u8; 4], a_len: u8, b: [u8; 4], b_len: u8) -> bool {
    let len = a_len.min(b_len);
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    (u32::from_be_bytes(a) & mask) == (u32::from_be_bytes(b) & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_overlap_when_the_shorter_prefix_covers_the_other() {
        assert!(overlaps([10, 213, 4, 0], 24, [10, 0, 0, 0], 8));
        assert!(overlaps([10, 213, 4, 7], 32, [10, 213, 4, 0], 24));
        assert!(!overlaps([10, 213, 4, 0], 24, [10, 213, 5, 0], 24));
        assert!(!overlaps([10, 213, 4, 0], 24, [192, 168, 0, 0], 16));
        assert!(overlaps([1, 2, 3, 4], 0, [10, 213, 4, 0], 24));
    }

    #[test]
    fn cidrs_parse_as_ip_prints_them() {
        assert_eq!(parse_cidr("10.1.2.3/24"), Some(([10, 1, 2, 3], 24)));
        assert_eq!(parse_cidr("10.1.2.3"), Some(([10, 1, 2, 3], 32)));
        assert_eq!(parse_cidr("default"), None);
        assert_eq!(parse_cidr("10.1.2.3/33"), None);
        assert_eq!(parse_cidr("dev"), None);
    }
}
