//! The application's side of a request, with its SQL: the handlers that leave a session dirty
//! or busy the way applications do, the check the next request makes, and how an answer is
//! classified. Every tokio-postgres peer runs them on its own connections; sqlx's are in
//! [`super::sqlx`].

use std::time::Duration;

use crate::report::Outcome;

/// What one request ended as, and the error kind when it did not succeed.
pub type Answer = (Outcome, Option<String>);

/// What an application's request handler does with a connection: the ways handlers leave a
/// session dirty, and the check the next one makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// `BEGIN`, marks the transaction, then returns early (an error path, a `?`).
    EarlyReturn,
    /// `BEGIN`, marks the transaction, then a statement fails.
    FailedTransaction,
    /// A 2 s query that a request timeout cuts after 50 ms.
    AbandonQuery,
    /// A whole handler (`BEGIN`, mark, a 2 s query, `COMMIT`) dropped by a deadline after
    /// 100 ms.
    DroppedHandler,
    /// The next request: fails as `dirty_session` when it starts inside a transaction a
    /// previous handler left (its mark is visible) or a failed one (SQLSTATE 25P02); its
    /// latency is the next user's wait.
    Check,
}

/// The mark a dirty handler's transaction carries (`SET LOCAL`: gone with the transaction).
pub(crate) const MARK: &str = "SET LOCAL chaos.marker = 'dirty'";
/// The check request: reads the mark (empty outside a dirty transaction).
pub(crate) const CHECK: &str = "SELECT current_setting('chaos.marker', true)";
/// How long the check may take before it counts as `query_timeout`.
pub(crate) const CHECK_LIMIT: Duration = Duration::from_secs(4);
/// How long an abandoned query runs before its request timeout cuts it, and the query.
pub(crate) const ABANDON_AFTER: Duration = Duration::from_millis(50);
pub(crate) const SLOW_QUERY: &str = "SELECT pg_sleep(2)";
/// How long a dropped handler runs before its deadline drops it.
pub(crate) const DROP_AFTER: Duration = Duration::from_millis(100);

/// Runs `handler` on `client`.
pub async fn run_handler(client: &tokio_postgres::Client, handler: Handler) -> Answer {
    let ok = (Outcome::Ok, None);
    match handler {
        Handler::EarlyReturn => match client.batch_execute(&format!("BEGIN; {MARK}")).await {
            Ok(()) => ok,
            Err(e) => query_error(&e),
        },
        Handler::FailedTransaction => {
            let _ = client
                .batch_execute(&format!("BEGIN; {MARK}; SELECT 1/0"))
                .await;
            ok
        }
        Handler::AbandonQuery => {
            let _ = tokio::time::timeout(ABANDON_AFTER, client.batch_execute(SLOW_QUERY)).await;
            ok
        }
        Handler::DroppedHandler => {
            let _ = tokio::time::timeout(DROP_AFTER, async {
                client.batch_execute(&format!("BEGIN; {MARK}")).await?;
                client.batch_execute(SLOW_QUERY).await?;
                client.batch_execute("COMMIT").await
            })
            .await;
            ok
        }
        Handler::Check => {
            match tokio::time::timeout(CHECK_LIMIT, client.simple_query(CHECK)).await {
                Ok(Ok(messages)) => {
                    let dirty = messages.iter().any(|m| {
                        matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("dirty"))
                    });
                    checked(dirty)
                }
                // Inside a failed transaction a previous handler left: dirty too.
                Ok(Err(e))
                    if e.code()
                        == Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION) =>
                {
                    checked(true)
                }
                Ok(Err(e)) => query_error(&e),
                Err(_) => (Outcome::Info, Some("query_timeout".into())),
            }
        }
    }
}

/// How a query error is classified: a failure before anything was sent is `fail`; once the
/// query was sent, the outcome is unknown (`info`).
pub(crate) fn query_error(e: &tokio_postgres::Error) -> Answer {
    let code = e.as_db_error().map(|db| db.code().code());
    if code == Some(READ_ONLY_SQLSTATE) {
        return read_only_server();
    }
    if code.is_some_and(session_ended) {
        return session_terminated();
    }
    classify(code.is_some())
}

/// Whether an error's SQLSTATE says the server ended the session while the statement was
/// out (`57P01` admin shutdown, `57P02` crash shutdown, `57P05` idle session timeout, class
/// `08` connection exceptions): the statement may have committed first (a commit waiting for
/// its synchronous standby is already committed locally when a fast shutdown terminates it),
/// so its outcome is unknown, never a definite failure.
pub(crate) fn session_ended(code: &str) -> bool {
    matches!(code, "57P01" | "57P02" | "57P05") || code.starts_with("08")
}

/// The answer to a statement whose session the server ended: unknown (`info`).
pub(crate) fn session_terminated() -> Answer {
    (Outcome::Info, Some("session_terminated".into()))
}

/// SQLSTATE 25006, `read_only_sql_transaction`: a write sent to a standby (or a read-only
/// session).
pub(crate) const READ_ONLY_SQLSTATE: &str = "25006";

/// A write refused because the session is on a server that cannot write: under
/// `target_session_attrs=read-write`, the pool handed out a session it should not have.
pub(crate) fn read_only_server() -> Answer {
    (Outcome::Fail, Some(READ_ONLY_LABEL.into()))
}

/// The error label of [`read_only_server`], which the failover family counts.
pub const READ_ONLY_LABEL: &str = "read_only_server";

/// An error the server answered with is the query's (`fail`); any other means the connection
/// went while the query was out, so its outcome is unknown (`info`).
pub(crate) fn classify(server_answered: bool) -> Answer {
    if server_answered {
        (Outcome::Fail, Some("query_error".into()))
    } else {
        (Outcome::Info, Some("connection_lost".into()))
    }
}

/// The check's verdict on what it read: a session that still carries the mark is dirty.
pub(crate) fn checked(dirty: bool) -> Answer {
    if dirty {
        (Outcome::Fail, Some("dirty_session".into()))
    } else {
        (Outcome::Ok, None)
    }
}

pub(crate) async fn run_query(
    client: &tokio_postgres::Client,
    sql: &str,
    limit: Duration,
) -> Answer {
    match tokio::time::timeout(limit, client.simple_query(sql)).await {
        Ok(Ok(_)) => (Outcome::Ok, None),
        Ok(Err(e)) => query_error(&e),
        Err(_) => (Outcome::Info, Some("query_timeout".into())),
    }
}
