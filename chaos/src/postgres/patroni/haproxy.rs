//! The second route users take to a Patroni cluster: Debian's HAProxy on a host of its own,
//! health-checking each node's `/primary` endpoint and sending every connection to the one
//! node that answers 200, with `on-marked-down shutdown-sessions` so sessions on a node that
//! stops being the primary are closed, as Patroni's documentation sets it up.
//!
//! Patroni's example checks every 3 s and needs 2 good checks to mark a node up
//! (`inter 3s fall 3 rise 2`): up to 6 s of HAProxy's own between a promotion and the route.
//! Here the checks run every 100 ms, 2 bad ones mark a node down and 1 good one up, so the
//! route adds about 100 ms to Patroni's time, and the harness reads HAProxy's own view of its
//! servers (its stats socket, every 10 ms) to tell the route's lag from the pool's.
//!
//! `retries 0` where Patroni's example has 2: only one server is up at a time, so HAProxy's
//! retry goes to the same failing server, after a turn-around of min(`timeout connect`, 1 s),
//! holding the client's connection attempt that long. Measured here: through a switchover,
//! attempts held 1 s in HAProxy put the first write 180-260 ms after the promotion. Failing the
//! attempt at once lets the client's own retry find the new leader.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The port HAProxy listens on for PostgreSQL clients, on its host's address.
pub const HAPROXY_PORT: u16 = 5000;

/// The health checks: every `INTER`, `FALL` failures mark a server down, `RISE` successes up.
pub(super) const INTER_MS: u64 = 100;
const FALL: u32 = 2;
const RISE: u32 = 1;

/// How HAProxy is set up, for the report.
pub fn describe() -> String {
    format!(
        "HAProxy (mode tcp) checking each node's Patroni /primary every {INTER_MS} ms (fall {FALL}, rise {RISE}), on-marked-down shutdown-sessions"
    )
}

/// `haproxy.cfg`: listening on `addr`, one server per node (`name`, address), PostgreSQL on
/// `pg_port` and Patroni's REST API on `rest_port` of each, its stats socket at `socket`.
pub(super) fn config(
    addr: Ipv4Addr,
    nodes: &[(String, Ipv4Addr)],
    (pg_port, rest_port): (u16, u16),
    socket: &Path,
) -> String {
    let mut cfg = format!(
        "global\n    maxconn 1000\n    stats socket {socket} mode 600 level admin\n\n\
defaults\n    mode tcp\n    retries 0\n    timeout client 30m\n    timeout server 30m\n    timeout connect 2s\n    timeout check 1s\n\n\
listen primary\n    bind {addr}:{HAPROXY_PORT}\n    option httpchk OPTIONS /primary\n    http-check expect status 200\n    default-server inter {INTER_MS}ms fastinter {INTER_MS}ms downinter {INTER_MS}ms fall {FALL} rise {RISE} on-marked-down shutdown-sessions\n",
        socket = socket.display()
    );
    for (name, ip) in nodes {
        cfg.push_str(&format!(
            "    server {name} {ip}:{pg_port} maxconn 300 check port {rest_port}\n"
        ));
    }
    cfg
}

/// The servers HAProxy has up (sends connections to), from `show stat` on its socket; `None`
/// when the socket did not answer within `within`.
pub(super) async fn servers_up(socket: &Path, within: Duration) -> Option<Vec<String>> {
    let ask = async {
        let mut s = tokio::net::UnixStream::connect(socket).await.ok()?;
        s.write_all(b"show stat\n").await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        Some(parse_up(&out))
    };
    tokio::time::timeout(within, ask).await.ok().flatten()
}

/// [`servers_up`] for blocking code.
pub(super) fn servers_up_blocking(socket: &Path, within: Duration) -> Option<Vec<String>> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(within)).ok()?;
    s.write_all(b"show stat\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(parse_up(&out))
}

/// The up servers of the `primary` listener in `show stat`'s CSV.
fn parse_up(csv: &str) -> Vec<String> {
    let mut lines = csv.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let cols: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let at = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(st)) = (at("pxname"), at("svname"), at("status")) else {
        return Vec::new();
    };
    lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let (px, sv, st) = (f.get(px)?, f.get(sv)?, f.get(st)?);
            // "UP", or "UP 1/2" while failing checks that have not yet marked it down.
            (*px == "primary" && *sv != "FRONTEND" && *sv != "BACKEND" && st.starts_with("UP"))
                .then(|| (*sv).to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_checks_primary_and_shuts_sessions_down() {
        let cfg = config(
            Ipv4Addr::new(10, 1, 2, 14),
            &[
                ("n1".into(), Ipv4Addr::new(10, 1, 2, 11)),
                ("n2".into(), Ipv4Addr::new(10, 1, 2, 12)),
            ],
            (5432, 8008),
            Path::new("/tmp/x/haproxy.sock"),
        );
        assert!(cfg.contains("bind 10.1.2.14:5000"));
        assert!(cfg.contains("option httpchk OPTIONS /primary"));
        assert!(cfg.contains("on-marked-down shutdown-sessions"));
        assert!(cfg.contains("server n2 10.1.2.12:5432 maxconn 300 check port 8008"));
        assert!(cfg.contains("stats socket /tmp/x/haproxy.sock"));
    }

    #[test]
    fn up_servers_are_read_from_show_stat() {
        let csv = "# pxname,svname,qcur,status,weight\n\
primary,FRONTEND,,OPEN,\n\
primary,n1,0,DOWN,1\n\
primary,n2,0,UP,1\n\
primary,n3,0,UP 1/2,1\n\
primary,BACKEND,0,UP,1\n";
        assert_eq!(parse_up(csv), vec!["n2".to_string(), "n3".to_string()]);
        assert!(parse_up("").is_empty());
    }
}
