//! What the harness asks of a running [`HaCluster`] through Patroni's REST API: every node's
//! role, the leader, a switchover, and whether the cluster is whole.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use super::cluster::HaCluster;
use super::options::{HaError, REST_PORT};
use super::rest::{NodeState, blocking_get, cluster_healthy, http, parse_state};

/// What the harness asks of the cluster through the REST API.
impl HaCluster {
    /// Every node's state, asked at once (`None` for a node that did not answer in time).
    pub async fn states(&self, within: Duration) -> Vec<(String, Option<NodeState>)> {
        let asks = self.nodes.iter().map(|n| {
            let addr = SocketAddr::from((n.host.addr, REST_PORT));
            async move {
                let state = match http(addr, "GET", "/patroni", None, within).await {
                    Ok((_, body)) => parse_state(&body),
                    Err(_) => None,
                };
                (n.name.clone(), state)
            }
        });
        futures_util::future::join_all(asks).await
    }

    /// One node's state (`None`: no answer within `within`).
    pub async fn node_state(&self, name: &str, within: Duration) -> Option<NodeState> {
        let node = self.node(name)?;
        let addr = SocketAddr::from((node.host.addr, REST_PORT));
        let (_, body) = http(addr, "GET", "/patroni", None, within).await.ok()?;
        parse_state(&body)
    }

    /// Every member's name and role as the cluster lists them (`GET /cluster` on the first
    /// node that answers): `leader`, `sync_standby`, `replica`.
    pub async fn roles(&self) -> Vec<(String, String)> {
        for n in &self.nodes {
            let addr = SocketAddr::from((n.host.addr, REST_PORT));
            let Ok((200, body)) =
                http(addr, "GET", "/cluster", None, Duration::from_millis(500)).await
            else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(&body) else {
                continue;
            };
            return v["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| {
                    Some((
                        m["name"].as_str()?.to_string(),
                        m["role"].as_str()?.to_string(),
                    ))
                })
                .collect();
        }
        Vec::new()
    }

    /// The node that reports itself the running primary, when exactly one does.
    pub async fn leader(&self) -> Option<String> {
        let primaries: Vec<String> = self
            .states(Duration::from_millis(500))
            .await
            .into_iter()
            .filter(|(_, s)| s.as_ref().is_some_and(NodeState::is_primary))
            .map(|(n, _)| n)
            .collect();
        (primaries.len() == 1).then(|| primaries[0].clone())
    }

    /// A switchover through the REST API (`POST /switchover` on the leader), to `candidate`
    /// or to any replica.
    ///
    /// # Errors
    /// The API refused it.
    pub async fn switchover(&self, leader: &str, candidate: Option<&str>) -> Result<(), HaError> {
        let node = self.node(leader).ok_or_else(|| HaError::BadOptions {
            problem: format!("no node {leader}"),
        })?;
        let mut body = serde_json::json!({ "leader": leader });
        if let Some(c) = candidate {
            body["candidate"] = Value::from(c);
        }
        let addr = SocketAddr::from((node.host.addr, REST_PORT));
        let request = format!("POST /switchover {body}");
        let (status, answer) = http(
            addr,
            "POST",
            "/switchover",
            Some(&body.to_string()),
            Duration::from_secs(30),
        )
        .await
        .map_err(|e| HaError::Rest {
            node: leader.into(),
            request: request.clone(),
            message: e.to_string(),
        })?;
        if status != 200 {
            return Err(HaError::Rest {
                node: leader.into(),
                request,
                message: format!("HTTP {status}: {}", answer.trim()),
            });
        }
        Ok(())
    }

    /// Waits (blocking) until one node leads and all others stream from it on its timeline
    /// (with `synchronous_mode`, one of them synchronously).
    ///
    /// # Errors
    /// [`HaError::NotReady`] with what was last seen and the ends of the logs.
    pub fn wait_healthy(&self, within: Duration) -> Result<(), HaError> {
        let deadline = std::time::Instant::now() + within;
        let mut seen = String::new();
        while std::time::Instant::now() < deadline {
            let addrs: Vec<SocketAddr> = self
                .nodes
                .iter()
                .map(|n| SocketAddr::from((n.host.addr, REST_PORT)))
                .collect();
            for addr in addrs {
                let Ok((200, body)) = blocking_get(addr, "/cluster") else {
                    continue;
                };
                seen = body.clone();
                if cluster_healthy(&body, self.options.nodes, self.options.synchronous) {
                    return Ok(());
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(HaError::NotReady {
            what: "did not have a leader and every replica streaming".into(),
            within,
            seen,
            logs: self.logs(),
        })
    }
}
