//! The soak's workload: the mix of requests each worker sends, what each ended as, and the
//! window of outcomes between two samples.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::options::*;
use super::report::Totals;
use crate::rng::Rng;

/// Requests that ended since the last sample.
#[derive(Default)]
pub(super) struct Window {
    pub(super) latencies: Vec<f64>,
    pub(super) ok: u64,
    pub(super) failed: u64,
    pub(super) cancelled: u64,
    pub(super) errors: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Work {
    Short,
    Long,
    Transaction,
    /// A query cut by a timeout; the connection goes back as it is (the pool cancels the
    /// query on the server before anyone else gets the session).
    CutQuery,
    /// `BEGIN`, a mark, then an early return without `COMMIT` or `ROLLBACK`.
    EarlyReturn,
    /// The whole request future dropped at a random point.
    Dropped,
    /// The check of `Short` through the shared path (`Pool::query_one`, no checkout).
    Shared,
    /// A shared-path statement cut by a timeout: the pool cancels it on the server, and the
    /// session's other statements go on.
    SharedCut,
}

pub(super) enum Done {
    Ok,
    Cancelled,
}

pub(super) struct Load {
    pub(super) pool: pool::Pool,
    pub(super) window: Mutex<Window>,
    pub(super) totals: Mutex<Totals>,
    pub(super) rng: Mutex<Rng>,
}

/// The failure kind of a request that found an earlier request's transaction still open.
pub(super) const DIRTY: &str = "dirty session";

pub(super) fn db_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("server error {}", db.code().code()),
        None if e.is_closed() => "connection closed".into(),
        None => "connection error".into(),
    }
}

impl Load {
    pub(super) fn pick(&self) -> (Work, f64) {
        let mut rng = lock(&self.rng);
        let (a, b) = (rng.next_f64(), rng.next_f64());
        let work = match a {
            a if a < 0.40 => Work::Short,
            a if a < 0.52 => Work::Shared,
            a if a < 0.65 => Work::Long,
            a if a < 0.78 => Work::Transaction,
            a if a < 0.82 => Work::EarlyReturn,
            a if a < 0.88 => Work::CutQuery,
            a if a < 0.91 => Work::SharedCut,
            _ => Work::Dropped,
        };
        (work, b)
    }

    /// Runs one request and records it; returns whether it failed.
    pub(super) async fn request(&self, work: Work, x: f64) -> bool {
        let started = Instant::now();
        let result = match work {
            Work::Dropped => {
                let cut = Duration::from_micros(200 + (x * 60_000.0) as u64);
                match tokio::time::timeout(cut, self.work(Work::Long, x)).await {
                    Ok(r) => r,
                    Err(_) => Ok(Done::Cancelled),
                }
            }
            w @ (Work::Shared | Work::SharedCut) => {
                match tokio::time::timeout(HANG_CUTOFF, self.shared(w, x)).await {
                    Ok(r) => r,
                    Err(_) => Err("hang".to_string()),
                }
            }
            w => match tokio::time::timeout(HANG_CUTOFF, self.work(w, x)).await {
                Ok(r) => r,
                Err(_) => Err("hang".to_string()),
            },
        };
        let took = started.elapsed().as_secs_f64() * 1000.0;
        let failed = result.is_err();
        let mut w = lock(&self.window);
        let mut t = lock(&self.totals);
        t.requests += 1;
        t.longest_ms = t.longest_ms.max(took);
        match result {
            Ok(Done::Ok) => {
                w.ok += 1;
                t.ok += 1;
                w.latencies.push(took);
            }
            Ok(Done::Cancelled) => {
                w.cancelled += 1;
                t.cancelled += 1;
            }
            Err(kind) => {
                if kind == "hang" {
                    t.hangs += 1;
                }
                w.failed += 1;
                t.failed += 1;
                *w.errors.entry(kind.clone()).or_default() += 1;
                *t.errors.entry(kind).or_default() += 1;
            }
        }
        failed
    }

    /// A request on the shared path: the marker check, or a sleep cut after 5-45 ms.
    pub(super) async fn shared(&self, work: Work, x: f64) -> Result<Done, String> {
        let failed = |e: pool::QueryError| match e {
            pool::QueryError::Pool(e) => format!("shared {}", e.kind()),
            pool::QueryError::Statement(e) => format!("shared {}", db_error(&e)),
            pool::QueryError::Timeout { .. } => "shared query timeout".into(),
            e => format!("shared refused: {e}"),
        };
        if matches!(work, Work::SharedCut) {
            let cut = Duration::from_millis(5 + (x * 40.0) as u64);
            return match tokio::time::timeout(cut, self.pool.query("SELECT pg_sleep(0.1)", &[]))
                .await
            {
                Ok(Ok(_)) => Ok(Done::Ok),
                Ok(Err(e)) => Err(failed(e)),
                Err(_) => Ok(Done::Cancelled),
            };
        }
        let row = tokio::time::timeout(
            QUERY_BOUND,
            self.pool
                .query_one("SELECT current_setting('chaos.marker', true)", &[]),
        )
        .await
        .map_err(|_| "shared query timeout".to_string())?
        .map_err(failed)?;
        match row.get::<_, Option<String>>(0).as_deref() {
            Some("dirty") => Err(DIRTY.into()),
            _ => Ok(Done::Ok),
        }
    }

    pub(super) async fn work(&self, work: Work, x: f64) -> Result<Done, String> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| format!("acquire {}", e.kind()))?;
        let bound = match work {
            Work::CutQuery => Duration::from_millis(5 + (x * 40.0) as u64),
            _ => QUERY_BOUND,
        };
        let ran = tokio::time::timeout(bound, async {
            // (The shared kinds run on `shared`; here they would be their exclusive twins.)
            match work {
                Work::Short | Work::Shared => {
                    // Also the check that no earlier request's transaction is still open.
                    let stmt = conn
                        .prepare_cached("SELECT current_setting('chaos.marker', true)")
                        .await?;
                    let mark: Option<String> = conn.query_one(&stmt, &[]).await?.get(0);
                    return Ok(mark.as_deref() == Some("dirty"));
                }
                Work::EarlyReturn => {
                    conn.batch_execute("BEGIN; SET LOCAL chaos.marker = 'dirty'")
                        .await?;
                }
                Work::Long | Work::Dropped => {
                    let stmt = conn.prepare_cached("SELECT pg_sleep($1::float8)").await?;
                    conn.query_one(&stmt, &[&(0.2 * x)]).await?;
                }
                Work::Transaction => {
                    let tx = conn.transaction().await?;
                    tx.query_one("SELECT txid_current()", &[]).await?;
                    tx.query_one("SELECT count(*) FROM pg_class", &[]).await?;
                    if x < 0.25 {
                        tx.rollback().await?;
                    } else {
                        tx.commit().await?;
                    }
                }
                Work::CutQuery | Work::SharedCut => {
                    conn.query_one("SELECT pg_sleep(0.1)", &[]).await?;
                }
            }
            Ok::<_, tokio_postgres::Error>(false)
        })
        .await;
        match ran {
            Ok(Ok(false)) => Ok(Done::Ok),
            Ok(Ok(true)) => Err(DIRTY.into()),
            Ok(Err(e)) => {
                pool::PooledConnection::discard(conn);
                Err(db_error(&e))
            }
            // Cut on purpose: returned as it is, with the query still running on the server.
            Err(_) if matches!(work, Work::CutQuery) => Ok(Done::Cancelled),
            Err(_) => {
                // Slow under a fault: a client gives up on this connection.
                pool::PooledConnection::discard(conn);
                Err("query timeout".into())
            }
        }
    }
}
