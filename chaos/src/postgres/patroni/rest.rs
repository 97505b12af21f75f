//! Patroni's REST API as the harness reads it: a node's state (`GET /patroni`), whether the
//! cluster is whole (`GET /cluster`), and the small HTTP/1.1 client both use.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// One node's state, as its REST API (`GET /patroni`) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// `master`/`primary` on the leader, `replica` otherwise.
    pub role: String,
    /// `running`, `starting`, `stopped`, ...
    pub state: String,
    /// The timeline PostgreSQL is on.
    pub timeline: Option<u64>,
}

impl NodeState {
    /// Whether this node reports itself as the running primary.
    pub fn is_primary(&self) -> bool {
        matches!(self.role.as_str(), "master" | "primary") && self.state == "running"
    }
}

/// Whether `GET /cluster`'s body shows a running leader and `nodes - 1` running replicas on
/// its timeline (one of them a synchronous standby when `synchronous`).
pub(crate) fn cluster_healthy(body: &str, nodes: usize, synchronous: bool) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return false;
    };
    let Some(members) = v["members"].as_array() else {
        return false;
    };
    let leader = members
        .iter()
        .filter(|m| m["role"] == "leader" && m["state"] == "running")
        .collect::<Vec<_>>();
    let [leader] = leader.as_slice() else {
        return false;
    };
    let timeline = leader["timeline"].as_u64();
    let replicas = members
        .iter()
        .filter(|m| m["role"] != "leader")
        .filter(|m| matches!(m["state"].as_str(), Some("running" | "streaming")))
        .filter(|m| m["timeline"].as_u64() == timeline && m["lag"].as_u64() == Some(0))
        .collect::<Vec<_>>();
    let sync = members.iter().any(|m| m["role"] == "sync_standby");
    members.len() == nodes && replicas.len() == nodes - 1 && (!synchronous || sync)
}

/// A node's state from `GET /patroni`.
pub(crate) fn parse_state(body: &str) -> Option<NodeState> {
    let v: Value = serde_json::from_str(body).ok()?;
    Some(NodeState {
        role: v["role"].as_str()?.to_string(),
        state: v["state"].as_str().unwrap_or("unknown").to_string(),
        timeline: v["timeline"].as_u64(),
    })
}

/// One HTTP/1.1 request (`Connection: close`), bounded by `within`: the status and the body.
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    within: Duration,
) -> std::io::Result<(u16, String)> {
    let deadline = Instant::now() + within;
    let work = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        parse_response(&raw)
    };
    tokio::time::timeout_at(deadline, work).await.map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {within:?}"),
        )
    })?
}

/// [`http`]'s `GET`, blocking, with a 1 s bound (for the start, which blocks anyway).
pub(super) fn blocking_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let within = Duration::from_secs(1);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, within)?;
    stream.set_read_timeout(Some(within))?;
    stream.set_write_timeout(Some(within))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// The status and body of a whole HTTP/1.x response (chunked bodies decoded).
fn parse_response(raw: &[u8]) -> std::io::Result<(u16, String)> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    if !chunked {
        return Ok((status, body.to_string()));
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).map_err(|_| bad("bad chunk size"))?;
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    Ok((status, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_is_healthy_with_a_leader_and_every_replica_streaming() {
        let body = r#"{"members": [
            {"name": "n1", "role": "leader", "state": "running", "timeline": 2},
            {"name": "n2", "role": "replica", "state": "running", "timeline": 2, "lag": 0},
            {"name": "n3", "role": "sync_standby", "state": "streaming", "timeline": 2, "lag": 0}]}"#;
        assert!(cluster_healthy(body, 3, false));
        assert!(cluster_healthy(body, 3, true));
        let behind = body.replace(
            r#""timeline": 2, "lag": 0}]"#,
            r#""timeline": 1, "lag": 0}]"#,
        );
        assert!(!cluster_healthy(&behind, 3, false));
        let no_sync = body.replace("sync_standby", "replica");
        assert!(cluster_healthy(&no_sync, 3, false));
        assert!(!cluster_healthy(&no_sync, 3, true));
        assert!(!cluster_healthy(body, 4, false));
    }

    #[test]
    fn responses_parse_plain_and_chunked() {
        let plain = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"role\": \"master\", \"state\": \"running\", \"timeline\": 3}";
        let (status, body) = parse_response(plain).unwrap();
        assert_eq!(status, 200);
        let state = parse_state(&body).unwrap();
        assert!(state.is_primary());
        assert_eq!(state.timeline, Some(3));
        let chunked = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked).unwrap(),
            (503, "hello world".into())
        );
    }
}
