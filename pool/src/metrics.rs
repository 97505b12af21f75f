//! The pool's statistics through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`), named by Prometheus conventions so that any exporter picks them up.
//!
//! Every metric carries the label `pool`, the pool's `application_name`. The background task
//! publishes the snapshot of [`Pool::statistics`](crate::Pool::statistics) and the health
//! status every `probe_interval` (and `outage_probe_interval` during an outage); the acquire
//! wait is recorded per acquire.
//!
//! | metric | type | what |
//! | --- | --- | --- |
//! | `pg_pool_connections{state="idle"\|"active"}` | gauge | open connections by state |
//! | `pg_pool_connections_max`, `pg_pool_connections_min` | gauge | `max_size`, `min_size` |
//! | `pg_pool_pending_acquires` | gauge | acquires waiting for a slot |
//! | `pg_pool_peak_active_connections` | gauge | the most checked out at once |
//! | `pg_pool_connection_tasks` | gauge | driver tasks (sockets) still running |
//! | `pg_pool_shared_sessions`, `pg_pool_shared_in_flight` | gauge | the shared path's sessions and statements now |
//! | `pg_pool_database_up` | gauge | 1 when the database answers, 0 in an outage |
//! | `pg_pool_health{status="healthy"\|"degraded"\|"unhealthy"}` | gauge | 1 for the current status, 0 for the others |
//! | `pg_pool_acquires_total{outcome="ok"\|"timeout"\|"unavailable"}` | counter | acquires by outcome |
//! | `pg_pool_releases_total` | counter | connections given back |
//! | `pg_pool_connections_created_total` | counter | connections opened |
//! | `pg_pool_connect_errors_total` | counter | connection attempts that failed |
//! | `pg_pool_connections_closed_total{reason=...}` | counter | closes by [`CloseReason`] (snake case) |
//! | `pg_pool_validation_failures_total` | counter | validations that failed |
//! | `pg_pool_leaks_suspected_total` | counter | connections held past the leak threshold |
//! | `pg_pool_sessions_rolled_back_total`, `pg_pool_requests_cancelled_total`, `pg_pool_sessions_reset_total` | counter | sessions the pool cleaned before reuse |
//! | `pg_pool_orphans_terminated_total` | counter | server sessions terminated after a partition |
//! | `pg_pool_shared_statements_total{outcome="completed"\|"abandoned"}` | counter | statements on the shared path |
//! | `pg_pool_acquire_wait_seconds` | histogram | time from `acquire()` to a connection, successful acquires |
//!
//! HikariCP's `hikaricp_connections_*` and pgxpool's `Stat()` are the lists these follow.
//!
//! # Examples
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! // Install any recorder first (here the Prometheus one, see examples/prometheus.rs)...
//! let pool = pool::Pool::connect(pool::PoolConfig::from_url("postgres://app@db/app")?).await?;
//! // ...and the pool's figures appear in it, labelled pool="pool" (its application_name).
//! # Ok(()) }
//! ```

use std::sync::Once;

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use crate::health::{DatabaseStatus, HealthReport, HealthStatus};
use crate::stats::{ClosedCounts, PoolStatistics};

fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        describe_gauge!(
            "pg_pool_connections",
            Unit::Count,
            "Open connections by state (idle, active)"
        );
        describe_gauge!(
            "pg_pool_connections_max",
            Unit::Count,
            "The pool's max_size"
        );
        describe_gauge!(
            "pg_pool_connections_min",
            Unit::Count,
            "The pool's min_size"
        );
        describe_gauge!(
            "pg_pool_pending_acquires",
            Unit::Count,
            "Acquires waiting for a free slot"
        );
        describe_gauge!(
            "pg_pool_peak_active_connections",
            Unit::Count,
            "The most connections checked out at once"
        );
        describe_gauge!(
            "pg_pool_connection_tasks",
            Unit::Count,
            "Driver tasks (open sockets) still running"
        );
        describe_gauge!(
            "pg_pool_shared_sessions",
            Unit::Count,
            "Sessions lent to the shared path (Pool::query)"
        );
        describe_gauge!(
            "pg_pool_shared_in_flight",
            Unit::Count,
            "Statements in flight on the shared path"
        );
        describe_gauge!(
            "pg_pool_database_up",
            "1 when the database answers the pool, 0 in an outage"
        );
        describe_gauge!(
            "pg_pool_health",
            "1 for the pool's current health status, 0 for the others"
        );
        describe_counter!(
            "pg_pool_acquires_total",
            Unit::Count,
            "Acquires by outcome (ok, timeout, unavailable)"
        );
        describe_counter!(
            "pg_pool_releases_total",
            Unit::Count,
            "Connections given back to the pool"
        );
        describe_counter!(
            "pg_pool_connections_created_total",
            Unit::Count,
            "Connections opened"
        );
        describe_counter!(
            "pg_pool_connect_errors_total",
            Unit::Count,
            "Connection attempts that failed or timed out"
        );
        describe_counter!(
            "pg_pool_connections_closed_total",
            Unit::Count,
            "Connections closed by the pool, by reason"
        );
        describe_counter!(
            "pg_pool_validation_failures_total",
            Unit::Count,
            "Validations that failed"
        );
        describe_counter!(
            "pg_pool_leaks_suspected_total",
            Unit::Count,
            "Connections held past leak_detection_threshold"
        );
        describe_counter!(
            "pg_pool_sessions_rolled_back_total",
            Unit::Count,
            "Sessions returned inside a transaction and rolled back"
        );
        describe_counter!(
            "pg_pool_requests_cancelled_total",
            Unit::Count,
            "Requests left in flight on returned sessions, cancelled"
        );
        describe_counter!(
            "pg_pool_sessions_reset_total",
            Unit::Count,
            "Sessions reset by session_reset"
        );
        describe_counter!(
            "pg_pool_orphans_terminated_total",
            Unit::Count,
            "Server sessions terminated after a network partition"
        );
        describe_counter!(
            "pg_pool_shared_statements_total",
            Unit::Count,
            "Statements on the shared path by outcome"
        );
    });
}

/// Publishes one snapshot: gauges set, counters raised to the pool's totals.
pub(crate) fn publish(pool: &str, s: &PoolStatistics, health: &HealthReport) {
    describe();
    let label = || pool.to_string();
    let set = |name: &'static str, value: usize| {
        gauge!(name, "pool" => label()).set(value as f64);
    };
    gauge!("pg_pool_connections", "pool" => label(), "state" => "idle")
        .set(s.idle_connections as f64);
    gauge!("pg_pool_connections", "pool" => label(), "state" => "active")
        .set(s.active_connections as f64);
    set("pg_pool_connections_max", s.max_size);
    set("pg_pool_connections_min", s.min_size);
    set("pg_pool_pending_acquires", s.waiting_requests);
    set("pg_pool_peak_active_connections", s.peak_active_connections);
    set("pg_pool_connection_tasks", s.live_connection_tasks);
    set("pg_pool_shared_sessions", s.shared_sessions);
    set("pg_pool_shared_in_flight", s.shared_in_flight);
    set(
        "pg_pool_database_up",
        usize::from(health.database.status == DatabaseStatus::Connected),
    );
    for (status, name) in [
        (HealthStatus::Healthy, "healthy"),
        (HealthStatus::Degraded, "degraded"),
        (HealthStatus::Unhealthy, "unhealthy"),
    ] {
        gauge!("pg_pool_health", "pool" => label(), "status" => name)
            .set(f64::from(u8::from(health.status == status)));
    }

    let total = |name: &'static str, value: u64| {
        counter!(name, "pool" => label()).absolute(value);
    };
    for (outcome, value) in [
        ("ok", s.total_acquisitions),
        ("timeout", s.acquire_timeouts),
        ("unavailable", s.acquire_unavailable),
    ] {
        counter!("pg_pool_acquires_total", "pool" => label(), "outcome" => outcome).absolute(value);
    }
    total("pg_pool_releases_total", s.total_releases);
    total("pg_pool_connections_created_total", s.connections_created);
    total("pg_pool_connect_errors_total", s.connect_errors);
    for (reason, value) in closed_by_reason(&s.connections_closed) {
        counter!("pg_pool_connections_closed_total", "pool" => label(), "reason" => reason)
            .absolute(value);
    }
    total("pg_pool_validation_failures_total", s.validation_failures);
    total("pg_pool_leaks_suspected_total", s.leaks_suspected);
    total("pg_pool_sessions_rolled_back_total", s.sessions_rolled_back);
    total("pg_pool_requests_cancelled_total", s.requests_cancelled);
    total("pg_pool_sessions_reset_total", s.sessions_reset);
    total("pg_pool_orphans_terminated_total", s.orphans_terminated);
    let completed = s.shared_statements.saturating_sub(s.shared_abandoned);
    for (outcome, value) in [("completed", completed), ("abandoned", s.shared_abandoned)] {
        counter!("pg_pool_shared_statements_total", "pool" => label(), "outcome" => outcome)
            .absolute(value);
    }
}

/// The closes by reason, named as `CloseReason` serialises.
fn closed_by_reason(c: &ClosedCounts) -> [(&'static str, u64); 13] {
    [
        ("broken", c.broken),
        ("validation_failed", c.validation_failed),
        ("idle_timeout", c.idle_timeout),
        ("max_lifetime", c.max_lifetime),
        ("max_uses", c.max_uses),
        ("outage", c.outage),
        ("shutdown", c.shutdown),
        ("forced", c.forced),
        ("cancelled", c.cancelled),
        ("discarded", c.discarded),
        ("session_not_reset", c.session_not_reset),
        ("hook_rejected", c.hook_rejected),
        ("wrong_role", c.wrong_role),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_close_reason_has_its_serialised_name() {
        let names: Vec<_> = closed_by_reason(&ClosedCounts::default())
            .iter()
            .map(|(n, _)| *n)
            .collect();
        for reason in crate::stats::CloseReason::all() {
            let name = serde_json::to_value(reason).unwrap();
            assert!(names.contains(&name.as_str().unwrap()), "{name}");
        }
        let c = ClosedCounts {
            broken: 1,
            shutdown: 2,
            ..Default::default()
        };
        let sum: u64 = closed_by_reason(&c).iter().map(|(_, v)| v).sum();
        assert_eq!(sum, c.total());
    }
}
