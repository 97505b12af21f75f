//! Faults PgBouncer makes, with a real PgBouncer (transaction pooling) between each pool under
//! test and the throwaway cluster: a restart, `PAUSE`/`RESUME`, `RECONNECT`, `KILL`. The
//! scenarios run through the ordinary fault machinery ([`super::run_fault`]) on an
//! [`Arena`] whose fault injector is the pool's own PgBouncer, so they get the matrix's
//! criteria, phases and timelines. Without `pgbouncer` on the machine they are reported
//! unavailable, with the reason.
//!
//! Our pool runs with `transaction_pooling` on (its shared path then sends statements
//! unnamed); the peers' requests are simple queries, which transaction pooling does not break.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::matrix::{Fault, Kind};
use super::{Arena, Env, Opened, PoolKind, SetupError, make_subject_with, subject};
use crate::postgres::{Bouncer, PoolMode};

/// A fault of PgBouncer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BouncerFault {
    /// Stopped (every client connection cut), started again on the same port at the heal.
    Restart,
    /// `PAUSE` (new transactions wait), `RESUME` at the heal.
    Pause,
    /// `RECONNECT`: every server connection is closed once released; clients stay.
    Reconnect,
    /// `KILL postgres` (every client and server connection of the database dropped, new
    /// ones wait), `RESUME postgres` at the heal.
    Kill,
}

const fn fault(
    name: &'static str,
    description: &'static str,
    label: &'static str,
    f: BouncerFault,
    recovery_bound_ms: f64,
) -> Fault {
    Fault {
        name,
        description,
        label,
        kind: Kind::Bouncer(f),
        needs_cluster: true,
        during_ms: None,
        recovery_bound_ms,
    }
}

/// The PgBouncer faults, in run order.
pub const BOUNCER_FAULTS: &[Fault] = &[
    fault(
        "pgbouncer_restart",
        "PgBouncer (transaction pooling) is stopped, cutting every client connection, and started again on the same port at the heal.",
        "pgbouncer stopped",
        BouncerFault::Restart,
        1000.0,
    ),
    fault(
        "pgbouncer_pause",
        "PgBouncer's PAUSE: transactions wait (connections stay open) until RESUME at the heal.",
        "pgbouncer PAUSE",
        BouncerFault::Pause,
        1000.0,
    ),
    fault(
        "pgbouncer_reconnect",
        "PgBouncer's RECONNECT: every server connection is closed once released and opened anew; clients keep theirs.",
        "pgbouncer RECONNECT",
        BouncerFault::Reconnect,
        1000.0,
    ),
    fault(
        "pgbouncer_kill",
        "PgBouncer's KILL of the database: every client and server connection dropped, new ones wait until RESUME at the heal; PgBouncer then opens server connections again after server_login_retry (2 s here).",
        "pgbouncer KILL",
        BouncerFault::Kill,
        1000.0 + crate::postgres::SERVER_LOGIN_RETRY.as_millis() as f64,
    ),
];

/// The arena: one PgBouncer per pool under test, in front of the run's cluster.
pub struct BouncerArena<'e> {
    env: &'e Env,
    bouncers: Mutex<HashMap<String, Arc<Bouncer>>>,
}

impl<'e> BouncerArena<'e> {
    /// An arena on `env`'s cluster.
    pub fn new(env: &'e Env) -> Self {
        Self {
            env,
            bouncers: Mutex::default(),
        }
    }

    fn bouncer(&self, handle: &str) -> Option<Arc<Bouncer>> {
        self.bouncers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(handle)
            .cloned()
    }
}

/// Makes `fault` on `bouncer`, holds it for `during`, heals it.
pub async fn apply(
    bouncer: &Arc<Bouncer>,
    fault: BouncerFault,
    during: Duration,
) -> crate::Result<()> {
    let admin = |command: &'static str| {
        let b = Arc::clone(bouncer);
        async move {
            b.admin(command)
                .await
                .map(drop)
                .map_err(|e| crate::Error::Check(format!("pgbouncer's {command} failed: {e}")))
        }
    };
    match fault {
        BouncerFault::Restart => {
            let b = Arc::clone(bouncer);
            tokio::task::spawn_blocking(move || b.stop()).await?;
            tokio::time::sleep(during).await;
            let b = Arc::clone(bouncer);
            tokio::task::spawn_blocking(move || b.restart()).await??;
        }
        BouncerFault::Pause => {
            admin("PAUSE").await?;
            tokio::time::sleep(during).await;
            admin("RESUME").await?;
        }
        BouncerFault::Reconnect => {
            admin("RECONNECT").await?;
            tokio::time::sleep(during).await;
        }
        BouncerFault::Kill => {
            admin("KILL postgres").await?;
            tokio::time::sleep(during).await;
            admin("RESUME postgres").await?;
        }
    }
    Ok(())
}

impl Arena for BouncerArena<'_> {
    fn owns_server(&self) -> bool {
        self.env.owns_server()
    }

    fn open<'a>(
        &'a self,
        kind: PoolKind,
        app: &'a str,
    ) -> subject::BoxFut<'a, Result<Opened, SetupError>> {
        Box::pin(async move {
            crate::postgres::pgbouncer_binary().map_err(|e| SetupError::Injector(e.to_string()))?;
            let cluster = self
                .env
                .db
                .require_cluster("pgbouncer")
                .map_err(|e| SetupError::Injector(e.to_string()))?;
            let c = Arc::clone(cluster);
            let bouncer =
                tokio::task::spawn_blocking(move || Bouncer::start(&c, PoolMode::Transaction))
                    .await
                    .map_err(|e| SetupError::Injector(e.to_string()))?
                    .map_err(|e| SetupError::Injector(format!("pgbouncer did not start: {e}")))?;
            let bouncer = Arc::new(bouncer);
            let subject = make_subject_with(kind, &bouncer.url(), app, self.env.seed, true)
                .await
                .map_err(|e| SetupError::Pool(e.to_string()))?;
            self.bouncers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(app.to_string(), bouncer);
            Ok((subject, app.to_string()))
        })
    }

    fn inject<'a>(
        &'a self,
        handle: &'a str,
        fault: &'a Fault,
        _app: &'a str,
        during: Duration,
    ) -> subject::BoxFut<'a, crate::Result<()>> {
        Box::pin(async move {
            let (Some(bouncer), Kind::Bouncer(f)) = (self.bouncer(handle), fault.kind) else {
                return Err(crate::Error::Check(format!(
                    "{} is not a PgBouncer fault, or its PgBouncer is gone",
                    fault.name
                )));
            };
            apply(&bouncer, f, during).await
        })
    }

    /// The pool's client connections PgBouncer still holds (its server connections are
    /// PgBouncer's own, pooled for whoever comes next).
    fn left_on_server<'a>(&'a self, app: &'a str) -> subject::BoxFut<'a, i64> {
        Box::pin(async move {
            let Some(bouncer) = self.bouncer(app) else {
                return 0;
            };
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            loop {
                let clients = match bouncer.admin("SHOW CLIENTS").await {
                    Ok(rows) => rows
                        .iter()
                        .filter(|m| {
                            matches!(m, tokio_postgres::SimpleQueryMessage::Row(r)
                                if r.try_get("database").ok().flatten() == Some("postgres"))
                        })
                        .count() as i64,
                    Err(_) => -1,
                };
                if clients == 0 || tokio::time::Instant::now() >= deadline {
                    return clients;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    }

    fn close<'a>(&'a self, handle: &'a str) -> subject::BoxFut<'a, ()> {
        Box::pin(async move {
            let bouncer = self
                .bouncers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(handle);
            if let Some(b) = bouncer {
                let _ = tokio::task::spawn_blocking(move || drop(b)).await;
            }
        })
    }
}
