//! Faults PgBouncer makes, with a real PgBouncer (transaction pooling) between each pool under
//! test and the throwaway cluster: a restart, `PAUSE`/`RESUME`, `RECONNECT`, `KILL`. The
//! scenarios run through the ordinary fault machinery ([`super::runner::run_fault`]) on an
//! [`Arena`] whose fault injector is the pool's own PgBouncer, so they get the matrix's
//! criteria, phases and timelines. Without `pgbouncer` on the machine they are reported
//! unavailable, with the reason.
//!
//! Our pool runs with `transaction_pooling` on (its shared path then sends statements
//! unnamed); the peers' requests are simple queries, which transaction pooling does not break.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::family::{Ctx, Family as FamilyTrait, Running};
use super::runner::{Arena, Opened, SetupError, make_subject_with, run_fault};
use crate::peers::{BoxFut, PoolKind};
use crate::fault::{BOUNCER_FAULTS, Env, Fault, Kind};
use crate::postgres::{Bouncer, PoolMode};
use crate::report::Unavailable;

fn injector(detail: String) -> SetupError {
    SetupError::Injector(Unavailable::Injector { detail })
}

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

impl Arena for BouncerArena<'_> {
    fn owns_server(&self) -> bool {
        self.env.owns_server()
    }

    fn open<'a>(
        &'a self,
        kind: PoolKind,
        app: &'a str,
    ) -> BoxFut<'a, Result<Opened, SetupError>> {
        Box::pin(async move {
            crate::postgres::pgbouncer_binary().map_err(|e| {
                SetupError::Injector(Unavailable::MissingProgram {
                    program: "pgbouncer".into(),
                    detail: e.to_string(),
                })
            })?;
            let cluster = self
                .env
                .db
                .require_cluster("pgbouncer")
                .map_err(|_| SetupError::Injector(Unavailable::ServerNotOurs))?;
            let c = Arc::clone(cluster);
            let bouncer =
                tokio::task::spawn_blocking(move || Bouncer::start(&c, PoolMode::Transaction))
                    .await
                    .map_err(|e| injector(e.to_string()))?
                    .map_err(|e| injector(format!("pgbouncer did not start: {e}")))?;
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
    ) -> BoxFut<'a, crate::Result<()>> {
        Box::pin(async move {
            let (Some(bouncer), Kind::Bouncer(f)) = (self.bouncer(handle), fault.kind) else {
                return Err(crate::Error::NotApplicable {
                    fault: fault.name.to_string(),
                    on: "on the PgBouncer arena: it is not a PgBouncer fault, or its PgBouncer is gone".into(),
                });
            };
            crate::fault::apply_bouncer(&bouncer, f, during).await
        })
    }

    /// The pool's client connections PgBouncer still holds (its server connections are
    /// PgBouncer's own, pooled for whoever comes next).
    fn left_on_server<'a>(&'a self, app: &'a str) -> BoxFut<'a, i64> {
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

    fn close<'a>(&'a self, handle: &'a str) -> BoxFut<'a, ()> {
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

/// The PgBouncer faults.
pub struct Family;

impl FamilyTrait for Family {
    type Item = &'static Fault;
    fn items() -> Vec<Self::Item> {
        BOUNCER_FAULTS.iter().collect()
    }
    fn name(item: Self::Item) -> &'static str {
        item.name
    }
    fn description(item: Self::Item) -> &'static str {
        item.description
    }
    fn run<'a>(item: Self::Item, ctx: &'a Ctx<'a>, kind: PoolKind) -> Running<'a> {
        Box::pin(async move {
            let arena = BouncerArena::new(ctx.env);
            run_fault(&arena, item, kind, ctx.timing, ctx.progress).await
        })
    }
}
