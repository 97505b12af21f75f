//! deadpool-postgres, at its defaults (no timeouts, fast recycling) and with wait, create and
//! recycle timeouts.

use std::time::Duration;

use crate::report::Outcome;

use super::handlers::{Handler, run_handler, run_query};
use super::kind::{ACQUIRE_TIMEOUT, MAX_SIZE, OpenArgs, Peer, PoolKind, Setup};
use super::subject::{Answer, BoxFut, OpenError, Subject};

/// deadpool-postgres.
pub const PEER: Peer = Peer {
    name: "deadpool",
    about: "deadpool-postgres, at its defaults and with recommended timeouts.",
    setups: &SETUPS,
};

static SETUPS: [Setup; 2] = [
    Setup {
        name: "deadpool",
        about: "deadpool-postgres at its defaults (no timeouts)",
        ours: false,
        single_host: None,
        open: |a| Box::pin(async move { open(a, false) }),
    },
    Setup {
        name: "deadpool+timeouts",
        about: "deadpool-postgres with wait, create and recycle timeouts",
        ours: false,
        single_host: None,
        open: |a| Box::pin(async move { open(a, true) }),
    },
];

fn open(a: OpenArgs<'_>, timeouts: bool) -> Result<Box<dyn Subject>, OpenError> {
    Ok(Box::new(Deadpool::new(a.url, MAX_SIZE, a.app, timeouts, ACQUIRE_TIMEOUT)?))
}

/// deadpool-postgres, with or without timeouts.
pub struct Deadpool {
    pool: deadpool_postgres::Pool,
    /// Which of the two setups this is (at its defaults or with timeouts).
    kind: PoolKind,
}

impl Deadpool {
    /// `timeouts`: wait, create and recycle bounded by `acquire_timeout` (recommended);
    /// otherwise its defaults (no timeouts, fast recycling).
    pub fn new(
        url: &str,
        max_size: usize,
        app: &str,
        timeouts: bool,
        acquire_timeout: Duration,
    ) -> Result<Self, OpenError> {
        let mut pg: tokio_postgres::Config = url.parse()?;
        pg.application_name(app);
        let manager = deadpool_postgres::Manager::from_config(
            pg,
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let mut builder = deadpool_postgres::Pool::builder(manager)
            .max_size(max_size)
            .runtime(deadpool_postgres::Runtime::Tokio1);
        if timeouts {
            builder = builder
                .wait_timeout(Some(acquire_timeout))
                .create_timeout(Some(acquire_timeout))
                .recycle_timeout(Some(acquire_timeout));
        }
        Ok(Self {
            pool: builder
                .build()
                .map_err(|e| OpenError::Peer(e.to_string()))?,
            kind: if timeouts {
                PoolKind::of(&SETUPS[1])
            } else {
                PoolKind::of(&SETUPS[0])
            },
        })
    }
}

impl Subject for Deadpool {
    fn handle<'a>(&'a self, handler: Handler) -> BoxFut<'a, Answer> {
        Box::pin(async move {
            match self.pool.get().await {
                Ok(conn) => run_handler(&conn, handler).await,
                Err(_) => (Outcome::Fail, Some("acquire".into())),
            }
        })
    }
    fn name(&self) -> String {
        self.kind.name().into()
    }
    fn request<'a>(&'a self, sql: &'a str, limit: Duration) -> BoxFut<'a, Answer> {
        Box::pin(async move {
            match self.pool.get().await {
                Ok(conn) => {
                    let answer = run_query(&conn, sql, limit).await;
                    if answer.0 != Outcome::Ok {
                        let _ = deadpool_postgres::Object::take(conn);
                    }
                    answer
                }
                Err(e) => {
                    let kind = match e {
                        deadpool_postgres::PoolError::Timeout(_) => "timeout",
                        deadpool_postgres::PoolError::Backend(_) => "connect",
                        deadpool_postgres::PoolError::Closed => "closed",
                        _ => "other",
                    };
                    (Outcome::Fail, Some(kind.into()))
                }
            }
        })
    }
    fn health(&self) -> Option<String> {
        None
    }
    fn open_connections(&self) -> usize {
        self.pool.status().size
    }
    fn shutdown(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            self.pool.close();
        })
    }
}
