//! Our pool, by both paths: `acquire` (an exclusive checkout per request) and the shared
//! `Pool::query` (statements pipelined on shared sessions, no checkout).

use std::time::Duration;

use crate::report::Outcome;

use super::handlers::{ABANDON_AFTER, CHECK, CHECK_LIMIT, Handler, SLOW_QUERY, checked, query_error, run_handler, run_query};
use super::kind::{ACQUIRE_TIMEOUT, MAX_SIZE, OpenArgs, Peer, PoolKind, QUERY_TIMEOUT, Setup};
use super::subject::{Answer, BoxFut, OpenError, Subject};

/// Ours, by both paths.
pub const PEER: Peer = Peer {
    name: "pool",
    about: "Ours, by both paths: `acquire` and the shared `Pool::query`.",
    setups: &SETUPS,
};

static SETUPS: [Setup; 2] = [
    Setup {
        name: "pool",
        about: "ours, through `acquire` (an exclusive checkout per request)",
        ours: true,
        single_host: None,
        open: |args| Box::pin(async move { Ok(Box::new(OurPool(open(args).await?)) as Box<dyn Subject>) }),
    },
    Setup {
        name: "pool+query",
        about: "ours, through its shared path (`Pool::query`: statements pipelined on shared sessions, no checkout)",
        ours: true,
        single_host: None,
        open: |args| Box::pin(async move { Ok(Box::new(OurPoolShared(open(args).await?)) as Box<dyn Subject>) }),
    },
];

/// Ours, through `acquire`.
pub const POOL: PoolKind = PoolKind::of(&SETUPS[0]);
/// Ours, through the shared `Pool::query`.
pub const POOL_QUERY: PoolKind = PoolKind::of(&SETUPS[1]);

async fn open(args: OpenArgs<'_>) -> Result<pool::Pool, OpenError> {
    Ok(pool::Pool::connect(
        pool_config(args.url, args.app, args.seed)?.transaction_pooling(args.transaction_pooling),
    )
    .await?)
}

/// The suite's configuration of our pool through `url`, tagged `app`: the sizes and
/// deadlines every fault scenario and the soak use, and the run's seed for its jitter, so a
/// run replays with `--seed`.
pub fn pool_config(url: &str, app: &str, seed: u64) -> Result<pool::PoolConfig, pool::ConfigError> {
    Ok(pool::PoolConfig::from_url(url)?
        .application_name(app.to_string())
        .min_size(2)
        .max_size(MAX_SIZE)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .query_timeout(QUERY_TIMEOUT)
        .connect_timeout(ACQUIRE_TIMEOUT)
        .validation_timeout(Duration::from_millis(500))
        .probe_timeout(Duration::from_millis(500))
        .jitter_seed(Some(crate::rng::seed_for(seed, app))))
}

/// Our pool.
pub struct OurPool(pub pool::Pool);

impl Subject for OurPool {
    fn name(&self) -> String {
        "pool".into()
    }
    fn handle<'a>(&'a self, handler: Handler) -> BoxFut<'a, Answer> {
        Box::pin(async move {
            match self.0.acquire().await {
                Ok(conn) => run_handler(&conn, handler).await,
                Err(e) => (Outcome::Fail, Some(e.kind().to_string())),
            }
        })
    }
    fn request<'a>(&'a self, sql: &'a str, limit: Duration) -> BoxFut<'a, Answer> {
        Box::pin(async move {
            match self.0.acquire().await {
                Ok(conn) => {
                    let answer = run_query(&conn, sql, limit).await;
                    if answer.0 != Outcome::Ok {
                        // The server may still be busy with it: do not give it to the next user.
                        pool::PooledConnection::discard(conn);
                    }
                    answer
                }
                Err(e) => (Outcome::Fail, Some(e.kind().to_string())),
            }
        })
    }
    fn health(&self) -> Option<String> {
        let status = self.0.health().status;
        Some(serde_json::to_value(status).ok()?.as_str()?.to_string())
    }
    fn open_connections(&self) -> usize {
        self.0.statistics().total_connections
    }
    fn shutdown(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            self.0.shutdown(Duration::from_secs(5)).await;
        })
    }
}

/// Our pool through its shared path: each request is one `Pool::query` call, bounded by the
/// pool's own `query_timeout`; handlers that need a session of their own (transactions) use
/// `acquire`, while the abandoned query and the check after each dirty handler use the
/// shared path, so a dirty or busy session reaching the shared path would show.
pub struct OurPoolShared(pub pool::Pool);

/// What a shared-path error is called in reports, as `acquire`'s are.
fn shared_error(e: &pool::QueryError) -> Answer {
    match e {
        pool::QueryError::Pool(e) => (Outcome::Fail, Some(e.kind().to_string())),
        pool::QueryError::Statement(e) => query_error(e),
        pool::QueryError::Timeout { .. } => (Outcome::Info, Some("query_timeout".into())),
        _ => (Outcome::Fail, Some("refused".into())),
    }
}

impl Subject for OurPoolShared {
    fn name(&self) -> String {
        POOL_QUERY.name().into()
    }
    fn handle<'a>(&'a self, handler: Handler) -> BoxFut<'a, Answer> {
        Box::pin(async move {
            match handler {
                Handler::AbandonQuery => {
                    let _ =
                        tokio::time::timeout(ABANDON_AFTER, self.0.query(SLOW_QUERY, &[])).await;
                    (Outcome::Ok, None)
                }
                Handler::Check => {
                    match tokio::time::timeout(CHECK_LIMIT, self.0.query_opt(CHECK, &[])).await {
                        Ok(Ok(row)) => checked(
                            row.and_then(|r| r.get::<_, Option<String>>(0)).as_deref()
                                == Some("dirty"),
                        ),
                        Ok(Err(e))
                            if e.as_db_error().is_some_and(|db| {
                                db.code()
                                    == &tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION
                            }) =>
                        {
                            checked(true)
                        }
                        Ok(Err(e)) => shared_error(&e),
                        Err(_) => (Outcome::Info, Some("query_timeout".into())),
                    }
                }
                _ => match self.0.acquire().await {
                    Ok(conn) => run_handler(&conn, handler).await,
                    Err(e) => (Outcome::Fail, Some(e.kind().to_string())),
                },
            }
        })
    }
    fn request<'a>(&'a self, sql: &'a str, _limit: Duration) -> BoxFut<'a, Answer> {
        Box::pin(async move {
            match self.0.query(sql, &[]).await {
                Ok(_) => (Outcome::Ok, None),
                Err(e) => shared_error(&e),
            }
        })
    }
    fn health(&self) -> Option<String> {
        OurPool(self.0.clone()).health()
    }
    fn open_connections(&self) -> usize {
        self.0.statistics().total_connections
    }
    fn shutdown(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            self.0.shutdown(Duration::from_secs(5)).await;
        })
    }
}
