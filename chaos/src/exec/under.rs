//! What `chaos exec` puts the command in front of ([`Under`]): the single server behind the
//! embedded proxy (with the Toxiproxy API for the command), or the HA cluster of the plan's
//! `[cluster]` (Patroni + etcd on hosts of their own, reached by the multi-host URL or
//! HAProxy).

use std::sync::Arc;

use tokio::sync::watch as signal;
use tokio::time::Instant;

use super::error::ExecError;
use super::watch::{self, ServerEvent};
use crate::plan::{Harness, Plan, PlanEvent, Target};
use crate::postgres::{HaCluster, HaRoute};

/// The command's database and what the plan's faults act on.
pub(super) enum Under {
    /// The proxy in front of one server, and the API driving it.
    Proxy {
        harness: Harness,
        api_url: String,
        api_stop: tokio::sync::oneshot::Sender<()>,
        api_task: tokio::task::JoinHandle<std::io::Result<()>>,
    },
    /// The HA cluster, and the URL the command is given.
    Cluster {
        cluster: Arc<HaCluster>,
        url: String,
        direct: String,
    },
}

impl Under {
    /// Starts what `plan` asks for.
    pub(super) async fn start(plan: &Plan, seed: u64) -> Result<Self, ExecError> {
        if let Some(spec) = &plan.cluster {
            let options = spec.options();
            HaCluster::available(options.route)
                .map_err(|e| ExecError::Unsupported(e.to_string()))?;
            let cluster = tokio::task::spawn_blocking(move || HaCluster::start(options))
                .await
                .map_err(crate::Error::from)?
                .map_err(crate::Error::from)?;
            let cluster = Arc::new(cluster);
            let leader = cluster.leader().await.ok_or_else(|| {
                ExecError::Setup(crate::Error::Unexpected(
                    "the HA cluster has no single leader after its start".into(),
                ))
            })?;
            return Ok(Under::Cluster {
                url: cluster.route_url(&leader),
                direct: cluster.url_first(&leader),
                cluster,
            });
        }
        let harness = Harness::start(seed).await?;
        if plan
            .faults
            .iter()
            .any(|f| matches!(&f.what, crate::plan::What::Matrix(m) if m.needs_cluster))
            && harness.env().db.cluster().is_none()
        {
            return Err(ExecError::Unsupported(
                "server_restart stops the server, and DATABASE_URL points at one this process does not own; unset DATABASE_URL to use a throwaway cluster".into(),
            ));
        }
        let api = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| crate::Error::Io {
                what: "could not bind the API for the command",
                source,
            })?;
        let api_url = format!(
            "http://{}",
            api.local_addr().map_err(|source| crate::Error::Io {
                what: "could not read the API's address",
                source,
            })?
        );
        let (api_stop, api_stopped) = tokio::sync::oneshot::channel::<()>();
        let api_task = tokio::spawn(crate::api::serve(
            api,
            Arc::clone(harness.proxies()),
            async move {
                let _ = api_stopped.await;
            },
        ));
        Ok(Under::Proxy {
            harness,
            api_url,
            api_stop,
            api_task,
        })
    }

    /// The command's environment.
    pub(super) fn env(&self) -> Vec<(String, String)> {
        match self {
            Under::Proxy {
                harness, api_url, ..
            } => vec![
                ("DATABASE_URL".into(), harness.database_url().to_string()),
                ("CHAOS_DIRECT_URL".into(), harness.env().db.url()),
                ("TOXIPROXY_URL".into(), api_url.clone()),
                ("CHAOS_PROXY".into(), harness.proxy_name().to_string()),
            ],
            Under::Cluster { url, direct, .. } => vec![
                ("DATABASE_URL".into(), url.clone()),
                ("CHAOS_DIRECT_URL".into(), direct.clone()),
            ],
        }
    }

    /// What the command was given, for the console (no password).
    pub(super) fn given(&self) -> String {
        match self {
            Under::Proxy {
                harness, api_url, ..
            } => format!(
                "DATABASE_URL through the proxy ({}), CHAOS_DIRECT_URL at the server and TOXIPROXY_URL={api_url}",
                crate::postgres::redact_url(harness.database_url())
            ),
            Under::Cluster { cluster, url, .. } => format!(
                "DATABASE_URL={} ({}), CHAOS_DIRECT_URL the multi-host URL of the nodes",
                crate::postgres::redact_url(url),
                match cluster.options().route {
                    HaRoute::Url => "the multi-host URL, target_session_attrs=read-write",
                    HaRoute::Haproxy => "HAProxy, routing to the node whose /primary answers",
                }
            ),
        }
    }

    /// The database, as reports show it.
    pub(super) fn describe(&self) -> String {
        match self {
            Under::Proxy { harness, .. } => harness.env().db.describe(),
            Under::Cluster { cluster, .. } => cluster.options().describe(),
        }
    }

    /// Watches the server (or the cluster's roles) until `stop` turns true.
    pub(super) fn watch(
        &self,
        origin: Instant,
        stop: signal::Receiver<bool>,
    ) -> tokio::task::JoinHandle<Vec<ServerEvent>> {
        match self {
            Under::Proxy { harness, .. } => tokio::spawn(watch::watch(
                harness.env().db.url(),
                harness.env().db.cluster().cloned(),
                origin,
                stop,
            )),
            Under::Cluster { cluster, .. } => {
                tokio::spawn(watch::watch_ha(Arc::clone(cluster), origin, stop))
            }
        }
    }

    /// Runs the plan from `origin` until its last fault ends or `stop` completes.
    pub(super) async fn run(
        &self,
        plan: &Plan,
        origin: Instant,
        stop: impl std::future::Future<Output = ()>,
        progress: &(dyn Fn(&PlanEvent) + Sync),
    ) -> Vec<PlanEvent> {
        match self {
            Under::Proxy { harness, .. } => harness.run_from(plan, origin, stop, progress).await,
            Under::Cluster { cluster, .. } => {
                crate::plan::run_on(plan, Target::Cluster(cluster), origin, stop, progress).await
            }
        }
    }

    /// Copies the server's log (or the cluster's logs) beside the report; the file's name.
    pub(super) fn keep_log(&self, out: &std::path::Path) -> Option<String> {
        match self {
            Under::Proxy { harness, .. } => harness.env().db.cluster().and_then(|c| {
                std::fs::copy(c.log_path(), out.join("server.log"))
                    .ok()
                    .map(|_| "server.log".to_string())
            }),
            Under::Cluster { cluster, .. } => {
                std::fs::write(out.join("server.log"), cluster.full_logs())
                    .ok()
                    .map(|_| "server.log".to_string())
            }
        }
    }

    /// Stops everything: the proxy and its API, or the cluster (every host removed).
    pub(super) async fn close(self) {
        match self {
            Under::Proxy {
                harness,
                api_stop,
                api_task,
                ..
            } => {
                harness.close().await;
                let _ = api_stop.send(());
                let _ = api_task.await;
            }
            Under::Cluster { cluster, .. } => {
                let _ = tokio::task::spawn_blocking(move || drop(cluster)).await;
            }
        }
    }
}
