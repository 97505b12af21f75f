//! The shared path behind a middlebox that pools by transaction (PgBouncer
//! `pool_mode = transaction`, `PoolConfig::transaction_pooling`).
//!
//! There, each statement outside a transaction may run on another server connection, so a
//! statement prepared by name in one round trip is gone (or belongs to another client) at the
//! next: `prepared statement "s0" does not exist`, or `already exists`. Statements are sent
//! unnamed instead, Parse, Bind, Execute and Sync in one round trip (tokio-postgres's
//! `query_typed_raw`), which needs the parameter types: a [`PoolStatement`] has them; for SQL
//! text they are learned once per text (kept by the pool), by preparing it inside a
//! transaction on a connection of its own, so that the prepare, its close and the answer are
//! all on one server connection.

use std::sync::Arc;

use futures_util::{TryStreamExt, pin_mut};
use tokio_postgres::Client;
use tokio_postgres::types::Type;

use super::{Op, Out, PoolStatement, QueryError};
use crate::connector::PgConnector;
use crate::pool::Pool;

impl Op<'_> {
    /// The call as one unnamed statement of `types`.
    pub(super) async fn send_unnamed(
        self,
        client: &Client,
        sql: &str,
        types: &[Type],
    ) -> Result<Out, QueryError> {
        let params = match self {
            Op::Rows(p) | Op::One(p) | Op::Opt(p) | Op::Count(p) => p,
            Op::Describe => unreachable!("described by the learning prepare, never sent"),
        };
        if params.len() != types.len() {
            return Err(QueryError::RowCount {
                what: "parameters",
                expected: types.len(),
                got: params.len(),
            });
        }
        let stream = client
            .query_typed_raw(sql, params.iter().copied().zip(types.iter().cloned()))
            .await?;
        pin_mut!(stream);
        let mut rows = Vec::new();
        while let Some(row) = stream.try_next().await? {
            rows.push(row);
        }
        let count = |expected: usize, rows: &Vec<_>| QueryError::RowCount {
            what: "rows",
            expected,
            got: rows.len(),
        };
        Ok(match self {
            Op::Rows(_) => Out::Rows(rows),
            Op::One(_) if rows.len() == 1 => Out::One(rows.pop().expect("one row")),
            Op::One(_) => return Err(count(1, &rows)),
            Op::Opt(_) if rows.len() <= 1 => Out::Opt(rows.pop()),
            Op::Opt(_) => return Err(count(1, &rows)),
            Op::Count(_) => Out::Count(stream.rows_affected().unwrap_or(rows.len() as u64)),
            Op::Describe => unreachable!(),
        })
    }
}

impl Pool<PgConnector> {
    /// `sql` prepared inside a transaction on a connection of its own (one server connection
    /// for the prepare, its close and the commit, whatever pools the transactions).
    pub(super) async fn prepare_pinned(&self, sql: &str) -> Result<PoolStatement, QueryError> {
        // Dropped halfway, the connection goes back inside the transaction: the pool rolls it
        // back before reuse.
        let conn = self.acquire().await?;
        conn.batch_execute("BEGIN").await?;
        let described = match conn.prepare(sql).await {
            // The statement is dropped here, its Close queued before the ROLLBACK.
            Ok(statement) => Ok(PoolStatement::new(sql, &statement)),
            Err(e) => Err(e),
        };
        let ended = conn.batch_execute("ROLLBACK").await;
        let statement = described?;
        ended?;
        Ok(statement)
    }

    /// The parameter types of `sql`: given, known, or learned once ([`prepare_pinned`]).
    pub(super) async fn param_types(
        &self,
        sql: &str,
        given: Option<&[Type]>,
    ) -> Result<Arc<[Type]>, QueryError> {
        if let Some(types) = given {
            return Ok(types.into());
        }
        let cache = &self.shared.lender.param_types;
        if let Some(types) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(sql) {
            return Ok(Arc::clone(types));
        }
        let types: Arc<[Type]> = self.prepare_pinned(sql).await?.params().into();
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        // A bound, so that generated SQL cannot grow it without end.
        if cache.len() >= 4096 {
            cache.clear();
        }
        cache.insert(sql.to_string(), Arc::clone(&types));
        Ok(types)
    }
}
