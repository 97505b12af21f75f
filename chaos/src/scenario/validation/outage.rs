//! Outages of the network path and of the server: the pool notices, recovers by itself, and
//! queries work again (SC-004, SC-009, FR-003).

use std::time::Duration;

use tokio::time::Instant;

use crate::scenario::judge::{crit, timed};
use crate::fault::Env;
use crate::report::{FaultWindow, Op, Outcome, ScenarioReport};
use pool::{HealthStatus, Pool};
use super::common::*;

pub(super) async fn outage(env: &Env, server: bool) -> crate::Result<ScenarioReport> {
    let (name, what) = if server {
        (
            "sc_outage_server",
            "SC-004, SC-009, FR-003: the real server is stopped (immediate) for 2 s and restarted; the pool notices, recovers by itself, and queries work again.",
        )
    } else {
        (
            "sc_outage_proxy",
            "SC-004, SC-009, FR-003: the network path is cut (proxy down) for 2 s; the pool notices, recovers by itself, and queries work again.",
        )
    };
    let mut r = blank(name, what);
    if server && env.db.cluster().is_none() {
        r.mark_unavailable("SC-004", crate::report::Unavailable::ServerNotOurs);
        return Ok(r);
    }
    let app = format!("chaos-{}", name.replace('_', "-"));
    let proxy = env.proxy(&format!("chaos_{name}")).await?;
    let url = if server {
        env.db.url()
    } else {
        proxy.url.clone()
    };
    let pool =
        Pool::connect(config(env.seed, &url, &app).acquire_timeout(Duration::from_secs(2))).await?;
    let origin = Instant::now();
    let ms = |t: Instant| (t - origin).as_secs_f64() * 1000.0;
    let cut = Instant::now();
    if server {
        let c = std::sync::Arc::clone(env.db.require_cluster("outage")?);
        tokio::task::spawn_blocking(move || c.stop(crate::postgres::StopMode::Immediate)).await??;
    } else {
        env.faults.set_enabled(&proxy.name, false).await?;
    }
    let mut detected = None;
    let mut calls = Calls::default();
    while cut.elapsed() < Duration::from_secs(2) {
        let t = Instant::now();
        let ok = calls.call(&pool).await;
        r.ops.push(Op {
            start_ms: ms(t),
            end_ms: ms(Instant::now()),
            outcome: if ok { Outcome::Ok } else { Outcome::Fail },
            error: None,
        });
        if detected.is_none() && pool.health_check().await.status != HealthStatus::Healthy {
            detected = Some(cut.elapsed());
        }
        r.health.push((
            ms(Instant::now()),
            format!("{:?}", pool.health().status).to_lowercase(),
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status_during = pool.health_check().await.status;
    let heal = Instant::now();
    if server {
        let c = std::sync::Arc::clone(env.db.require_cluster("outage")?);
        tokio::task::spawn_blocking(move || c.restart()).await??;
    } else {
        env.faults.set_enabled(&proxy.name, true).await?;
    }
    let ready = Instant::now();
    let mut recovered = None;
    while ready.elapsed() < Duration::from_secs(30) {
        if pool.health_check().await.status == HealthStatus::Healthy && calls.call(&pool).await {
            recovered = Some(ready.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    r.fault = Some(FaultWindow {
        label: if server {
            "server stopped".into()
        } else {
            "proxy down".into()
        },
        start_ms: ms(cut),
        end_ms: ms(heal),
    });
    r.duration_ms = ms(Instant::now());
    let rec = recovered.map(|d| d.as_secs_f64() * 1000.0);
    if let Some(rec) = rec {
        r.metrics.insert("recovery_ms".into(), rec);
    }
    let detected_ms = detected
        .filter(|_| status_during != HealthStatus::Healthy)
        .map(|d| d.as_secs_f64() * 1000.0);
    r.criteria.push(timed(
        "FR-003",
        "outage detected by health",
        format!(
            "{status_during:?} after {:.0} ms",
            detected.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
        ),
        "Unhealthy or Degraded within 2 s",
        detected_ms,
        2000.0,
    ));
    r.criteria.push(timed(
        "SC-004",
        "reconnection after the database is back (healthy, and a query works)",
        rec.map_or("never".into(), |v| format!("{v:.0} ms")),
        "< 30 s (ours: < 1 s)",
        rec,
        1000.0,
    ));
    r.criteria.push(crit(
        "SC-009",
        "no crash: every call during the outage and the recovery returned (ok or an error) within its deadline, and none panicked",
        format!(
            "{} calls: {} ok, {} failed, {} past {:.1} s, {} panicked",
            calls.ok + calls.failed + calls.hung + calls.panicked,
            calls.ok,
            calls.failed,
            calls.hung,
            Calls::BOUND.as_secs_f64(),
            calls.panicked
        ),
        "0 past the deadline, 0 panicked",
        calls.hung == 0 && calls.panicked == 0 && calls.ok + calls.failed > 0,
    ));
    pool.shutdown(Duration::from_secs(5)).await;
    let left = env.wait_no_connections(&app, Duration::from_secs(5)).await;
    r.criteria.push(crit(
        "no_leak",
        "connections left on the server after shutdown",
        left.to_string(),
        "0",
        left == 0,
    ));
    env.drop_proxy(&proxy).await;
    Ok(r)
}

/// Calls made during an outage and its recovery, each in a task of its own so a panic or a
/// hang is seen, not suffered.
#[derive(Default)]
pub(super) struct Calls {
    ok: usize,
    failed: usize,
    hung: usize,
    panicked: usize,
}

impl Calls {
    /// The outage scenarios' acquire timeout (2 s), plus a second for the query.
    const BOUND: Duration = Duration::from_secs(3);

    /// An acquire and a `SELECT 1`; true when both succeeded.
    async fn call(&mut self, pool: &Pool) -> bool {
        let p = pool.clone();
        let task = tokio::spawn(async move {
            match p.acquire().await {
                Ok(c) => c.query_one("SELECT 1", &[]).await.is_ok(),
                Err(_) => false,
            }
        });
        let abort = task.abort_handle();
        match tokio::time::timeout(Self::BOUND, task).await {
            Ok(Ok(true)) => {
                self.ok += 1;
                true
            }
            Ok(Ok(false)) => {
                self.failed += 1;
                false
            }
            Ok(Err(e)) => {
                if e.is_panic() {
                    self.panicked += 1;
                } else {
                    self.failed += 1;
                }
                false
            }
            Err(_) => {
                abort.abort();
                self.hung += 1;
                false
            }
        }
    }
}
