//! Where faults are made: the database, the fault controller (the embedded proxy or a
//! Toxiproxy-API server), and the proxies made in front of the database, with what the server
//! holds read directly from it.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::controller::FaultController;
use crate::postgres::Database;
use crate::proxy::ProxyConfig;

/// Where the suite runs: the database, the fault controller and the upstream address.
pub struct Env {
    /// The database.
    pub db: Database,
    /// The fault controller: the embedded proxy, or a Toxiproxy-API server.
    pub faults: Arc<dyn FaultController>,
    /// The proxy listen address to ask for (`127.0.0.1:0` for the embedded proxy).
    pub listen: String,
    /// What the proxy forwards to (the database's host:port, as the proxy sees it).
    pub upstream: String,
    /// The seed.
    pub seed: u64,
    /// The proxies made and not yet dropped, each with the URL through it, so an interrupted
    /// run can delete them all (and a kernel fault can find a proxy's port).
    pub made: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
}

/// A proxy made for one scenario, with the URL that goes through it.
pub struct ScenarioProxy {
    /// Proxy name.
    pub name: String,
    /// Database URL through the proxy.
    pub url: String,
}

impl Env {
    /// `host:port` of a database URL: its first TCP host.
    ///
    /// # Errors
    /// The URL does not parse or names no TCP host ([`crate::postgres::tcp_target`]).
    pub fn host_port(url: &str) -> crate::Result<String> {
        let (host, port) = crate::postgres::tcp_target(url)?;
        Ok(if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        })
    }

    /// Creates a proxy named `name` and the URL that goes through it.
    pub async fn proxy(&self, name: &str) -> crate::Result<ScenarioProxy> {
        let _ = self.faults.delete_proxy(name).await;
        let created = self
            .faults
            .create_proxy(ProxyConfig::new(
                name,
                self.listen.clone(),
                self.upstream.clone(),
            ))
            .await?;
        let listen = created.listen.replace("0.0.0.0", "127.0.0.1");
        let url = self
            .db
            .url()
            .replace(&Env::host_port(&self.db.url())?, &listen);
        self.made
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), url.clone());
        Ok(ScenarioProxy {
            name: name.to_string(),
            url,
        })
    }

    /// A proxy this environment made, by name, with the URL through it (empty when unknown).
    pub fn made_proxy(&self, name: &str) -> ScenarioProxy {
        let url = self
            .made
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .unwrap_or_default();
        ScenarioProxy {
            name: name.to_string(),
            url,
        }
    }

    /// Removes a scenario's proxy.
    pub async fn drop_proxy(&self, p: &ScenarioProxy) {
        let _ = self.faults.delete_proxy(&p.name).await;
        self.made
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&p.name);
    }

    /// Deletes every proxy this environment made and did not drop: the faults on them end
    /// (on a Toxiproxy server of someone else's too), and their connections close.
    pub async fn heal_all(&self) {
        let names: Vec<String> =
            std::mem::take(&mut *self.made.lock().unwrap_or_else(|e| e.into_inner()))
                .into_keys()
                .collect();
        for name in names {
            if let Err(e) = self.faults.delete_proxy(&name).await {
                tracing::warn!(proxy = %name, error = %e, "could not delete a proxy of the interrupted run");
            }
        }
    }

    /// Server-side connections with this `application_name` (direct, not through the proxy).
    pub async fn server_connections(&self, app: &str) -> crate::Result<i64> {
        self.count_on_server(include_str!("../../../fixtures/sql/connections.sql"), app)
            .await
    }

    /// Runs `sql`, a count with `app` as its one parameter, on a direct connection of its own.
    pub async fn count_on_server(&self, sql: &str, app: &str) -> crate::Result<i64> {
        count_at(&self.db.url(), sql, app).await
    }

    /// Waits (bounded) until the server shows no connection for `app`; returns what is left.
    pub async fn wait_no_connections(&self, app: &str, within: Duration) -> i64 {
        wait_no_connections_at(&self.db.url(), app, within).await
    }

    /// Terminates the server sessions tagged `app` (every client session but this one's when
    /// `app` is empty), returning how many.
    pub async fn terminate(&self, app: &str) -> crate::Result<i64> {
        let (client, conn) = tokio_postgres::connect(&self.db.url(), tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        Ok(client
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE ($1 = '' OR application_name = $1) \
                 AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                &[&app],
            )
            .await?
            .get(0))
    }
}

/// Runs `sql`, a count with `app` as its one parameter, on a connection of its own to `url`.
pub async fn count_at(url: &str, sql: &str, app: &str) -> crate::Result<i64> {
    let within = Duration::from_secs(5);
    let (client, conn) =
        tokio::time::timeout(within, tokio_postgres::connect(url, tokio_postgres::NoTls))
            .await
            .map_err(|_| crate::Error::TimedOut {
                what: "connecting to the server to ask it what it holds",
                within,
            })??;
    let driver = tokio::spawn(conn);
    let n: i64 = client.query_one(sql, &[&app]).await?.get(0);
    drop(client);
    let _ = driver.await;
    Ok(n)
}

/// Waits (bounded) until the server at `url` shows no connection for `app`; returns what is
/// left (-1 when it could not be asked).
pub async fn wait_no_connections_at(url: &str, app: &str, within: Duration) -> i64 {
    let deadline = Instant::now() + within;
    loop {
        let n = count_at(
            url,
            include_str!("../../../fixtures/sql/connections.sql"),
            app,
        )
        .await
        .unwrap_or(-1);
        if n == 0 || Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
