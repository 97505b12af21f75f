//! Faults the deployment makes: the primary is lost and a streaming standby takes over.
//!
//! Each run starts its own pair of throwaway clusters, a primary and a hot standby streaming
//! from it (`pg_basebackup -R`, [`Cluster::start_standby`]), and gives the pool under test both
//! hosts in one URL, the primary first, with `target_session_attrs=read-write`, as a service
//! in front of a Patroni or RDS-style pair is configured. Workers write (`INSERT` of a unique
//! id, autocommit) at a steady pace while:
//! - `failover`: the primary crashes (immediate stop) and, after a detection delay, the
//!   standby is promoted;
//! - `switchover`: the primary stops cleanly, the standby is promoted, and the old primary
//!   rejoins as a standby of the new one (listed first in the URL, now read-only);
//! - `failover_async`: as `failover`, with asynchronous replication (commits still durable on
//!   the primary: `synchronous_commit = on`, the standby not synchronous).
//!
//! Judged as Jepsen would, from the history of writes and what the new primary holds:
//! - `failover` and `switchover` replicate synchronously (`synchronous_standby_names = '*'`,
//!   `synchronous_commit = on`): every acknowledged write must be on the new primary. One
//!   missing is a defect of the pool, the server or the harness, never of the mode.
//! - `failover_async` replicates asynchronously: a write the old primary acknowledged before
//!   its crash completed may never have reached the standby. Those are counted as a figure
//!   (`writes_lost_to_async`), not charged to the pool.
//! - In every variant, a write begun once the old primary was known dead (its stop had
//!   returned) and acknowledged must be on the new primary: acknowledged by any other server
//!   is a hard failure.
//!
//! - In every variant, no write may be refused as read-only (SQLSTATE 25006): a session on a
//!   standby handed to a read-write user is the pool breaking `target_session_attrs`.
//!
//! Recovery is timed from the end of the promotion to the first successful write; then no
//! write may fail, none may hang, and no connection may be left.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::family::{Ctx, Family as FamilyTrait, Running};
use super::judge::{crit, not_started, timed};
use super::runner::{Progress, Timing, make_subject};
use super::writes::{Write, Writers};
use crate::peers::handlers::READ_ONLY_LABEL;
use crate::peers::{PoolKind, Subject};
use crate::postgres::{Cluster, ClusterOptions, StopMode};
use crate::report::{Unavailable, FaultWindow, Op, Outcome, Phases, ScenarioReport};

/// Which way the primary is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The primary crashes; the standby is promoted.
    Failover,
    /// The primary stops cleanly; the standby is promoted; the old primary rejoins as a standby.
    Switchover,
    /// As [`Change::Failover`], with asynchronous replication: the writes lost to the mode
    /// are measured, not charged.
    FailoverAsync,
}

impl Change {
    /// Every variant, in run order.
    pub const ALL: [Change; 3] = [Change::Failover, Change::Switchover, Change::FailoverAsync];

    /// The scenario's name.
    pub fn name(self) -> &'static str {
        match self {
            Change::Failover => "failover",
            Change::Switchover => "switchover",
            Change::FailoverAsync => "failover_async",
        }
    }

    /// Whether the standby is synchronous (every acknowledged write is on it).
    fn synchronous(self) -> bool {
        self != Change::FailoverAsync
    }

    /// What it does, for `--list` and reports.
    pub fn description(self) -> &'static str {
        match self {
            Change::Failover => {
                "The primary of a primary/standby pair (synchronous replication) crashes; 500 ms later the standby is promoted. Writes through a URL listing both (target_session_attrs=read-write) must reach the new primary within 1 s of the promotion, and every acknowledged write must be there."
            }
            Change::FailoverAsync => {
                "As failover, with asynchronous replication: the writes the old primary acknowledged that never reached the standby are measured (lost to the mode, not to the pool); any write acknowledged once the old primary was dead must be on the new one."
            }
            Change::Switchover => {
                "The primary stops cleanly, the standby (synchronous) is promoted, and the old primary rejoins as a standby of the new one (still listed first in the URL). Writes must follow the role, not the list; every acknowledged write must be on the new primary."
            }
        }
    }

    fn label(self) -> &'static str {
        match self {
            Change::Failover | Change::FailoverAsync => "primary crashed, standby promoted",
            Change::Switchover => "switchover, old primary rejoins",
        }
    }
}

/// The bound on the time from the promotion to the first successful write.
const FAILOVER_BOUND_MS: f64 = 1000.0;
/// The time a failure detector takes before promoting (Patroni's defaults wait about 30 s; a
/// test cannot, and the pool's part starts at the promotion anyway).
const DETECTION_DELAY: Duration = Duration::from_millis(500);
/// Writes still unanswered after this count as hangs.
const WRITE_CUTOFF: Duration = Duration::from_secs(4);

/// The pair of one run.
struct Pair {
    primary: Arc<Cluster>,
    standby: Arc<Cluster>,
}

async fn start_pair() -> crate::Result<Pair> {
    tokio::task::spawn_blocking(|| {
        let primary = Cluster::start_with(ClusterOptions::replicated())?;
        let standby = primary.start_standby()?;
        Ok::<_, crate::postgres::ClusterError>(Pair {
            primary: Arc::new(primary),
            standby: Arc::new(standby),
        })
    })
    .await?
    .map_err(Into::into)
}

async fn client(cluster: &Cluster) -> crate::Result<tokio_postgres::Client> {
    let (client, driver) = tokio_postgres::connect(&cluster.url(), tokio_postgres::NoTls).await?;
    tokio::spawn(driver);
    Ok(client)
}

/// Sets the replication mode `change` runs with. Every variant commits durably on the
/// primary (`synchronous_commit = on`; the throwaway clusters' default is `off`), so that what
/// is lost is lost to the replication mode, not to the harness. A synchronous variant also
/// makes the standby synchronous: the primary acknowledges a commit once the standby has
/// flushed it. Set after the base backup, so the standby, once promoted with no standby of its
/// own, does not wait for one.
async fn set_replication(primary: &Cluster, synchronous: bool) -> crate::Result<()> {
    let c = client(primary).await?;
    c.batch_execute("ALTER SYSTEM SET synchronous_commit = 'on'")
        .await?;
    if synchronous {
        c.batch_execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            .await?;
    }
    c.batch_execute("SELECT pg_reload_conf()").await?;
    if !synchronous {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sync: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
                &[],
            )
            .await?
            .get(0);
        if sync > 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(crate::Error::TimedOut {
                what: "the standby becoming synchronous",
                within: Duration::from_secs(10),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the standby has replayed the writes table.
async fn replicated(standby: &Cluster) -> crate::Result<()> {
    let c = client(standby).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let there: bool = c
            .query_one("SELECT to_regclass('chaos_writes') IS NOT NULL", &[])
            .await?
            .get(0);
        if there {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(crate::Error::TimedOut {
                what: "the standby replaying the writes table",
                within: Duration::from_secs(10),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}


/// Runs `change` against a pool of `kind`.
pub async fn run(
    seed: u64,
    change: Change,
    kind: PoolKind,
    timing: Timing,
    progress: &dyn Progress,
) -> ScenarioReport {
    let name = change.name();
    let mut report = ScenarioReport::new(name, kind.name(), kind.is_ours(), change.description());
    if let Some(why) = kind.single_host() {
        report.mark_unavailable(
            "failover",
            Unavailable::NotSupported {
                detail: why.to_string(),
            },
        );
        return report;
    }
    progress.phase(name, kind.name(), "starting a primary and its standby");
    let pair = match start_pair().await {
        Ok(p) => p,
        Err(e) => {
            report.mark_unavailable(
                "setup",
                Unavailable::Injector {
                    detail: format!("a primary with a streaming standby could not be started: {e}"),
                },
            );
            return report;
        }
    };
    match measure(&pair, seed, change, kind, timing, progress, &mut report).await {
        Ok(()) => {}
        Err(e) => report.criteria.push(crit(
            "setup",
            "the scenario runs",
            e.to_string(),
            "runs",
            false,
        )),
    }
    // Dropping the pair stops both servers and removes their directories.
    let _ = tokio::task::spawn_blocking(move || drop(pair)).await;
    report
}

async fn measure(
    pair: &Pair,
    seed: u64,
    change: Change,
    kind: PoolKind,
    timing: Timing,
    progress: &dyn Progress,
    report: &mut ScenarioReport,
) -> crate::Result<()> {
    let name = change.name();
    let (p, s) = (pair.primary.port(), pair.standby.port());
    client(&pair.primary)
        .await?
        .batch_execute("CREATE TABLE chaos_writes (id bigint PRIMARY KEY, port int DEFAULT inet_server_port())")
        .await?;
    replicated(&pair.standby).await?;
    set_replication(&pair.primary, change.synchronous()).await?;
    let url = format!(
        "postgres://postgres@127.0.0.1:{p},127.0.0.1:{s}/postgres?target_session_attrs=read-write"
    );
    let app = format!("chaos-{}-{name}", kind.name().replace('+', "-"));
    let subject: Arc<dyn Subject> = match make_subject(kind, &url, &app, seed).await {
        Ok(s) => Arc::from(s),
        Err(e) => {
            report.criteria.push(not_started(e));
            return Ok(());
        }
    };

    let origin = Instant::now();
    let ms = move |t: Instant| t.saturating_duration_since(origin).as_secs_f64() * 1000.0;
    let writers = Writers::start(&subject, timing.workers, timing.pace, origin, WRITE_CUTOFF);

    progress.phase(name, kind.name(), "before");
    tokio::time::sleep(timing.before).await;
    progress.phase(name, kind.name(), &format!("fault: {}", change.label()));
    let fault_start = ms(Instant::now());
    let (old, new) = (Arc::clone(&pair.primary), Arc::clone(&pair.standby));
    let mode = match change {
        Change::Failover | Change::FailoverAsync => StopMode::Immediate,
        Change::Switchover => StopMode::Fast,
    };
    let o = Arc::clone(&old);
    tokio::task::spawn_blocking(move || o.stop(mode)).await??;
    // From here no write can succeed on the old primary: it has exited (`pg_ctl stop`
    // returns once the postmaster, which outlives its backends, is gone). The clock of
    // "acknowledged after the old primary died" starts here, not at the stop's request.
    let stopped_at = ms(Instant::now());
    if change != Change::Switchover {
        tokio::time::sleep(DETECTION_DELAY).await;
    }
    // The promotion's end, seen by a session on the standby asking every 5 ms.
    let watcher = client(&new).await?;
    let n = Arc::clone(&new);
    tokio::task::spawn_blocking(move || n.start_promotion()).await??;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let in_recovery: bool = watcher
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await?
            .get(0);
        if !in_recovery {
            break;
        }
        if Instant::now() >= deadline {
            return Err(crate::Error::TimedOut {
                what: "the standby's promotion",
                within: Duration::from_secs(30),
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let promoted_at = ms(Instant::now());
    drop(watcher);
    if change == Change::Switchover {
        let (o, n) = (Arc::clone(&old), Arc::clone(&new));
        tokio::task::spawn_blocking(move || o.rejoin_as_standby_of(&n)).await??;
    }
    progress.phase(name, kind.name(), "after");
    tokio::time::sleep(timing.after.max(Duration::from_millis(1500))).await;
    let writes = writers.stop().await;
    progress.phase(name, kind.name(), "shutdown");
    subject.shutdown().await;
    drop(subject);

    // What the new primary holds, and what is left on either server.
    let on_new: HashSet<i64> = client(&new)
        .await?
        .query("SELECT id FROM chaos_writes", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let within = Duration::from_secs(5);
    let mut left = crate::fault::wait_no_connections_at(&new.url(), &app, within).await;
    if change == Change::Switchover {
        // The old primary, as before: one that cannot be asked holds nothing to count.
        left += crate::fault::wait_no_connections_at(&old.url(), &app, within)
            .await
            .max(0);
    }

    report.duration_ms = ms(Instant::now());
    report.fault = Some(FaultWindow {
        label: change.label().into(),
        start_ms: fault_start,
        end_ms: promoted_at,
    });
    let ops: Vec<Op> = writes.iter().map(|w| w.op.clone()).collect();
    report.phases = Phases::of(&ops, fault_start, promoted_at);
    // The first write acknowledged once the old primary was gone: by the new primary. It may
    // land before the watcher saw the promotion end (by at most its 5 ms poll): 0 then.
    let first_ok = writes
        .iter()
        .filter(|w| w.op.outcome == Outcome::Ok && w.op.end_ms > stopped_at)
        .map(|w| w.op.end_ms)
        .fold(f64::INFINITY, f64::min);
    let failover_ms = (first_ok - promoted_at).max(0.0);
    let failed_after = writes
        .iter()
        .filter(|w| w.op.start_ms > first_ok && w.op.outcome != Outcome::Ok)
        .count();
    let after_count = writes.iter().filter(|w| w.op.start_ms > first_ok).count();
    // Acknowledged writes the new primary does not hold, by when they began.
    let missing = |w: &&Write| w.op.outcome == Outcome::Ok && !on_new.contains(&w.id);
    let acked = writes.iter().filter(|w| w.op.outcome == Outcome::Ok).count();
    let acked_after_death = writes
        .iter()
        .filter(|w| w.op.start_ms >= stopped_at && w.op.outcome == Outcome::Ok)
        .count();
    let missing_after_death = writes
        .iter()
        .filter(|w| w.op.start_ms >= stopped_at)
        .filter(missing)
        .count();
    let missing_before_death = writes
        .iter()
        .filter(|w| w.op.start_ms < stopped_at)
        .filter(missing)
        .count();
    let hangs = writes
        .iter()
        .filter(|w| w.op.error.as_deref() == Some("hang"))
        .count();
    // Writes a standby refused (SQLSTATE 25006): the pool handed a read-write user a session
    // on a server that cannot write, which `target_session_attrs=read-write` forbids.
    let on_standby = writes
        .iter()
        .filter(|w| w.op.error.as_deref() == Some(READ_ONLY_LABEL))
        .count();
    report.metrics.insert("writes".into(), writes.len() as f64);
    report
        .metrics
        .insert("writes_failed_after_recovery".into(), failed_after as f64);
    report.metrics.insert(
        "writes_not_on_primary".into(),
        (missing_before_death + missing_after_death) as f64,
    );
    report
        .metrics
        .insert("stop_returned_ms".into(), stopped_at - fault_start);
    report.metrics.insert("hangs".into(), hangs as f64);
    if first_ok.is_finite() {
        report.metrics.insert("failover_ms".into(), failover_ms);
        // The report's recovery column: from the heal (the promotion) to the first success.
        report.metrics.insert("recovery_ms".into(), failover_ms);
    }
    report.criteria.push(timed(
        "failover_time",
        "time from the end of the promotion to the first successful write",
        if first_ok.is_finite() {
            format!("{failover_ms:.0} ms")
        } else {
            "no write succeeded after the promotion".into()
        },
        &format!("<= {FAILOVER_BOUND_MS:.0} ms"),
        first_ok.is_finite().then_some(failover_ms),
        FAILOVER_BOUND_MS,
    ));
    report.criteria.push(crit(
        "writes_after_recovery",
        "writes begun after the first successful one that failed",
        format!("{failed_after} of {after_count}"),
        "0",
        first_ok.is_finite() && after_count > 0 && failed_after == 0,
    ));
    report.criteria.push(crit(
        "writes_on_primary",
        "writes begun once the old primary was dead and acknowledged that the new primary does not hold (acknowledged by another server, or lost)",
        format!("{missing_after_death} of {acked_after_death}"),
        "0",
        acked_after_death > 0 && missing_after_death == 0,
    ));
    if change.synchronous() {
        report.criteria.push(crit(
            "acknowledged_kept",
            "acknowledged writes begun before the old primary died that the new primary does not hold (replication is synchronous: none may be lost)",
            format!("{missing_before_death} of {}", acked - acked_after_death),
            "0",
            missing_before_death == 0,
        ));
    } else {
        // Lost to the mode the scenario chose: a figure, not a criterion.
        report
            .metrics
            .insert("writes_lost_to_async".into(), missing_before_death as f64);
        if missing_before_death > 0 {
            report.anomalies.push(format!(
                "{missing_before_death} acknowledged write(s) lost with the old primary: acknowledged before its crash completed, never replicated (asynchronous replication; not charged to the pool)"
            ));
        }
    }
    report
        .metrics
        .insert("writes_refused_read_only".into(), on_standby as f64);
    report.criteria.push(crit(
        "no_standby_session",
        "writes refused as read-only (SQLSTATE 25006): a session handed out on a standby despite target_session_attrs=read-write",
        format!("{on_standby} of {}", writes.len()),
        "0",
        on_standby == 0,
    ));
    report.criteria.push(crit(
        "no_hang",
        &format!("writes unanswered after {WRITE_CUTOFF:?}"),
        hangs.to_string(),
        "0",
        hangs == 0,
    ));
    report.criteria.push(crit(
        "no_leak",
        "connections left on the servers after shutdown (pg_stat_activity by application_name)",
        left.to_string(),
        "0",
        left == 0,
    ));
    report.ops = ops;
    Ok(())
}

/// Faults the deployment makes: a failover and a switchover.
pub struct Family;

impl FamilyTrait for Family {
    type Item = Change;
    fn items() -> Vec<Self::Item> {
        Change::ALL.to_vec()
    }
    fn name(item: Self::Item) -> &'static str {
        item.name()
    }
    fn description(item: Self::Item) -> &'static str {
        item.description()
    }
    fn run<'a>(item: Self::Item, ctx: &'a Ctx<'a>, kind: PoolKind) -> Running<'a> {
        Box::pin(run(ctx.env.seed, item, kind, ctx.timing, ctx.progress))
    }
}
