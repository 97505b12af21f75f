//! Where a soak runs ([`Setup`]): the pool behind the proxy in front of one server, with the
//! fault matrix; or the pool on the HA cluster (`chaos soak --cluster patroni`), with the HA
//! faults between its hosts.

use std::sync::Arc;
use std::time::Duration;

use super::options::APP;
use crate::fault::{self, Env, Fault, HaFault, MATRIX, ScenarioProxy};
use crate::postgres::{HaCluster, HaOptions};

/// A fault the soak can pick.
#[derive(Debug, Clone, Copy)]
pub(super) enum Choice {
    /// A fault of the matrix, on the proxy (or the server).
    Matrix(&'static Fault),
    /// A fault of the HA cluster.
    Ha(HaFault),
}

impl Choice {
    pub(super) fn name(self) -> &'static str {
        match self {
            Choice::Matrix(f) => f.name,
            Choice::Ha(f) => f.name(),
        }
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Choice::Matrix(f) => f.label,
            Choice::Ha(f) => f.label(),
        }
    }
}

/// The pool's database and what the faults act on.
pub(super) enum Setup {
    /// The proxy in front of one server.
    Proxy {
        env: Env,
        proxy: ScenarioProxy,
        desc: String,
    },
    /// The HA cluster, reached by its route.
    Cluster {
        cluster: Arc<HaCluster>,
        url: String,
    },
}

impl Setup {
    /// Starts the single server and the proxy, or the HA cluster when `cluster` is given.
    pub(super) async fn start(seed: u64, cluster: Option<&HaOptions>) -> crate::Result<Self> {
        if let Some(options) = cluster {
            let options = options.clone();
            let cluster = tokio::task::spawn_blocking(move || HaCluster::start(options)).await??;
            let cluster = Arc::new(cluster);
            let leader = cluster.leader().await.ok_or_else(|| {
                crate::Error::Unexpected(
                    "the HA cluster has no single leader after its start".into(),
                )
            })?;
            return Ok(Setup::Cluster {
                url: cluster.route_url(&leader),
                cluster,
            });
        }
        let (env, desc) = crate::suite::environment(seed).await?;
        let proxy = env.proxy("chaos_soak").await?;
        Ok(Setup::Proxy { env, proxy, desc })
    }

    /// What the pool connects to.
    pub(super) fn url(&self) -> &str {
        match self {
            Setup::Proxy { proxy, .. } => &proxy.url,
            Setup::Cluster { url, .. } => url,
        }
    }

    /// The database and the path to it, as the report gives them.
    pub(super) fn labels(&self) -> (String, String) {
        match self {
            Setup::Proxy { env, desc, .. } => (env.db.report_label(), desc.clone()),
            Setup::Cluster { cluster, .. } => (
                cluster.options().describe(),
                "none: the pool reaches the cluster by its route".into(),
            ),
        }
    }

    /// The faults to pick from.
    pub(super) fn choices(&self) -> Vec<Choice> {
        match self {
            Setup::Proxy { env, .. } => {
                let owned = env.db.cluster().is_some();
                MATRIX
                    .iter()
                    .filter(|f| owned || !f.needs_cluster)
                    // Kernel faults are the suite's for now: the soak's leak verdict is about
                    // the proxy's faults, and it runs on machines without root too.
                    .filter(|f| !matches!(f.kind, fault::Kind::Kernel(_)))
                    .map(Choice::Matrix)
                    .collect()
            }
            // The asynchronous kill is the cluster's mode, not a fault of its own.
            Setup::Cluster { .. } => HaFault::ALL
                .into_iter()
                .filter(|f| *f != HaFault::KillLeaderAsync)
                .map(Choice::Ha)
                .collect(),
        }
    }

    /// Makes `choice` until `heal` completes, then undoes it. On the cluster the window ends
    /// once it is whole again (a leader, every replica streaming), so faults never stack.
    pub(super) async fn apply_until(
        &self,
        choice: Choice,
        heal: impl std::future::Future<Output = ()>,
    ) -> crate::Result<()> {
        match (self, choice) {
            (Setup::Proxy { env, proxy, .. }, Choice::Matrix(f)) => {
                let result = fault::apply_until(env, proxy, f, APP, heal).await;
                if result.is_err() {
                    fault::heal_everything(env, proxy).await;
                }
                result
            }
            (Setup::Cluster { cluster, .. }, Choice::Ha(h)) => {
                // `until` restores the cluster; the window ends once it is whole.
                let made = h.until(cluster, heal).await;
                settle(cluster, false).await?;
                made.map(|_| ()).map_err(Into::into)
            }
            (_, c) => Err(crate::Error::Unexpected(format!(
                "{} cannot be made here",
                c.name()
            ))),
        }
    }

    /// The direct URLs the server's connections are counted on: the server, or every node.
    pub(super) fn monitor_urls(&self) -> Vec<String> {
        match self {
            Setup::Proxy { env, .. } => vec![env.db.url()],
            Setup::Cluster { cluster, .. } => cluster
                .node_names()
                .iter()
                .filter_map(|n| cluster.node_url(n))
                .collect(),
        }
    }

    /// Heals whatever is in force (after the run).
    pub(super) async fn heal_everything(&self) {
        match self {
            Setup::Proxy { env, proxy, .. } => fault::heal_everything(env, proxy).await,
            Setup::Cluster { cluster, .. } => {
                let _ = settle(cluster, true).await;
            }
        }
    }

    /// The soak's connections left on the server (every node) after `within`.
    pub(super) async fn connections_left(&self, within: Duration) -> i64 {
        match self {
            Setup::Proxy { env, .. } => env.wait_no_connections(APP, within).await,
            Setup::Cluster { .. } => {
                let mut left = 0;
                for url in self.monitor_urls() {
                    left += fault::wait_no_connections_at(&url, APP, within)
                        .await
                        .max(0);
                }
                left
            }
        }
    }

    /// Removes the proxy, or the cluster and its hosts.
    pub(super) async fn close(self) {
        match self {
            Setup::Proxy { env, proxy, .. } => env.drop_proxy(&proxy).await,
            Setup::Cluster { cluster, .. } => {
                let _ = tokio::task::spawn_blocking(move || drop(cluster)).await;
            }
        }
    }
}

/// Waits until the cluster is whole again (a leader, every replica streaming), so the next
/// fault does not land on a cluster still recovering; restores it first when `restore`.
async fn settle(cluster: &Arc<HaCluster>, restore: bool) -> crate::Result<()> {
    let c = Arc::clone(cluster);
    tokio::task::spawn_blocking(move || {
        if restore {
            c.restore()?;
        }
        c.wait_healthy(Duration::from_secs(120))
    })
    .await??;
    Ok(())
}
