//! [`Harness`]: the database and the embedded proxy for a plan, in users' own tests.

use std::sync::Arc;

use super::run::{PlanEvent, run, run_with};
use super::spec::Plan;
use crate::fault::{Env, ScenarioProxy};
use crate::postgres::Database;
use crate::proxy::Proxies;

/// A database (a throwaway cluster, or `DATABASE_URL`) with the embedded proxy in front, for
/// running a service under a [`Plan`] in a `#[tokio::test]`. Dropping it deletes the proxy
/// and stops the cluster.
///
/// # Examples
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let harness = chaos::plan::Harness::start(7).await?;
/// let plan = chaos::plan::Plan::parse("[[fault]]\nat = \"500ms\"\nduration = \"1s\"\nkind = \"down\"\n")?;
/// // Point the service under test at harness.database_url(), then:
/// let events = harness.run(&plan, std::future::pending()).await;
/// assert!(events.iter().all(|e| e.error.is_none()));
/// # Ok(()) }
/// ```
pub struct Harness {
    env: Env,
    proxy: ScenarioProxy,
    proxies: Arc<Proxies>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("database", &self.env.db.describe())
            .field("proxy", &self.proxy.name)
            .finish()
    }
}

impl Harness {
    /// Starts the database (blocking work runs off the runtime) and a proxy named
    /// `chaos_plan` in front of it; `seed` seeds the proxy's random choices.
    ///
    /// # Errors
    /// No server binaries and no `DATABASE_URL`, a database that does not answer, a proxy
    /// that cannot listen.
    pub async fn start(seed: u64) -> crate::Result<Self> {
        let db = tokio::task::spawn_blocking(Database::from_env).await??;
        db.check_reachable(std::time::Duration::from_secs(10))
            .await?;
        let proxies = Arc::new(Proxies::new(seed));
        let upstream = Env::host_port(&db.url())?;
        let env = Env {
            db,
            faults: Arc::clone(&proxies) as Arc<dyn crate::controller::FaultController>,
            listen: "127.0.0.1:0".into(),
            upstream,
            seed,
            made: Default::default(),
        };
        let proxy = env.proxy("chaos_plan").await?;
        Ok(Self {
            env,
            proxy,
            proxies,
        })
    }

    /// The database URL through the proxy: what the service under test connects to.
    pub fn database_url(&self) -> &str {
        &self.proxy.url
    }

    /// The proxy's name (for a Toxiproxy client of the service's own).
    pub fn proxy_name(&self) -> &str {
        &self.proxy.name
    }

    /// The proxies, to serve the Toxiproxy API for them ([`crate::api::serve`]) or drive them
    /// directly.
    pub fn proxies(&self) -> &Arc<Proxies> {
        &self.proxies
    }

    /// The environment (database, fault controller), for what [`crate::scenario`] offers.
    pub fn env(&self) -> &Env {
        &self.env
    }

    /// Runs `plan` from now until its last fault ends or `stop` completes (see [`super::run::run`]).
    pub async fn run(
        &self,
        plan: &Plan,
        stop: impl std::future::Future<Output = ()>,
    ) -> Vec<PlanEvent> {
        run(
            plan,
            &self.env,
            &self.proxy,
            tokio::time::Instant::now(),
            stop,
        )
        .await
    }

    /// Like [`run`](Self::run), times counted from `origin`, with `progress` called as each
    /// fault begins and ends.
    pub async fn run_from(
        &self,
        plan: &Plan,
        origin: tokio::time::Instant,
        stop: impl std::future::Future<Output = ()>,
        progress: &(dyn Fn(&PlanEvent) + Sync),
    ) -> Vec<PlanEvent> {
        run_with(plan, &self.env, &self.proxy, origin, stop, progress).await
    }

    /// Deletes the proxy (its connections close); the cluster stops when the harness drops.
    pub async fn close(self) {
        self.env.drop_proxy(&self.proxy).await;
    }
}
