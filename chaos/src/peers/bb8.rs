//! bb8-postgres, at its defaults (30 s connection timeout) and with a connection timeout and
//! a test on checkout.

use std::time::Duration;

use crate::report::Outcome;

use super::handlers::{Handler, run_handler, run_query};
use super::kind::{ACQUIRE_TIMEOUT, MAX_SIZE, OpenArgs, Peer, PoolKind, Setup};
use super::subject::{Answer, BoxFut, OpenError, Subject};

/// bb8-postgres.
pub const PEER: Peer = Peer {
    name: "bb8",
    about: "bb8-postgres, at its defaults and with recommended timeouts.",
    setups: &SETUPS,
};

static SETUPS: [Setup; 2] = [
    Setup {
        name: "bb8",
        about: "bb8-postgres at its defaults (30 s connection timeout)",
        ours: false,
        single_host: None,
        open: |a| Box::pin(async move { open(a, false) }),
    },
    Setup {
        name: "bb8+timeouts",
        about: "bb8-postgres with a connection timeout and test on checkout",
        ours: false,
        single_host: None,
        open: |a| Box::pin(async move { open(a, true) }),
    },
];

fn open(a: OpenArgs<'_>, timeouts: bool) -> Result<Box<dyn Subject>, OpenError> {
    Ok(Box::new(Bb8::new(a.url, MAX_SIZE, a.app, timeouts, ACQUIRE_TIMEOUT)?))
}

/// bb8-postgres, at its defaults (30 s connection timeout) or with recommended timeouts.
pub struct Bb8 {
    pool: bb8::Pool<bb8_postgres::PostgresConnectionManager<tokio_postgres::NoTls>>,
    /// Which of the two setups this is (at its defaults or with timeouts).
    kind: PoolKind,
}

impl Bb8 {
    /// Builds the pool lazily (bb8 would otherwise block start-up on the database).
    pub fn new(
        url: &str,
        max_size: usize,
        app: &str,
        timeouts: bool,
        acquire_timeout: Duration,
    ) -> Result<Self, OpenError> {
        let mut pg: tokio_postgres::Config = url.parse()?;
        pg.application_name(app);
        if timeouts {
            pg.connect_timeout(acquire_timeout);
        }
        let manager = bb8_postgres::PostgresConnectionManager::new(pg, tokio_postgres::NoTls);
        let mut builder = bb8::Pool::builder().max_size(max_size as u32);
        if timeouts {
            builder = builder
                .connection_timeout(acquire_timeout)
                .test_on_check_out(true);
        }
        Ok(Self {
            pool: builder.build_unchecked(manager),
            kind: if timeouts {
                PoolKind::of(&SETUPS[1])
            } else {
                PoolKind::of(&SETUPS[0])
            },
        })
    }
}

impl Subject for Bb8 {
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
                Ok(conn) => run_query(&conn, sql, limit).await,
                Err(bb8::RunError::TimedOut) => (Outcome::Fail, Some("timeout".into())),
                Err(bb8::RunError::User(_)) => (Outcome::Fail, Some("connect".into())),
            }
        })
    }
    fn health(&self) -> Option<String> {
        None
    }
    fn open_connections(&self) -> usize {
        self.pool.state().connections as usize
    }
    fn shutdown(&self) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }
}
