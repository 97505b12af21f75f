//! The real HA stack under faults between hosts: etcd and three Patroni nodes, each on a host
//! of its own ([`HaCluster`]), the pool under test on this machine reaching them by either
//! route users take ([`HaCase`]): the multi-host URL with `target_session_attrs=read-write`
//! (`ha_kill_leader`, ...), or HAProxy checking Patroni's `/primary` (`ha_kill_leader_haproxy`,
//! ...; there the pool's time runs from HAProxy routing to the new leader).
//!
//! | scenario | the fault | until |
//! | --- | --- | --- |
//! | `ha_kill_leader` | the leader's host loses every process (`SIGKILL`) | another node is promoted (after the lease, `ttl`) |
//! | `ha_kill_leader_async` | as `ha_kill_leader`, with asynchronous replication | the same |
//! | `ha_switchover` | `POST /switchover` on the leader | another node is promoted |
//! | `ha_kill_replica` | the synchronous standby's host loses every process | the fault window ends |
//! | `ha_isolate_leader` | the leader cut off from etcd and the replicas, the clients still reaching it | another node is promoted |
//! | `ha_partition_clients` | the clients cut off from the leader only | the fault window ends |
//! | `ha_etcd_down` | etcd killed | the fault window ends |
//!
//! Every scenario but `ha_kill_leader_async` runs with `synchronous_mode`. Workers write (an
//! `INSERT` of a unique id; the row records `inet_server_addr()`) while the harness polls
//! every node's REST API every 10 ms for the leader terms. After the heal every node is read,
//! and the history is checked as Jepsen would ([`super::writes`]). Hard criteria: no write
//! acknowledged by a server after another became primary (split brain); no write reported
//! failed that is present; with `synchronous_mode`, no acknowledged write lost. The pool's
//! own time is the first acknowledged write after Patroni reports the new leader: within
//! 100 ms, or within the time a client with no pool took in the same window (`ha/bare.rs`):
//! more is a FAIL, a miss within that is `unknown`.
//!
//! These take a minute each (the cluster's bootstrap, and the lease a killed or isolated
//! leader holds), so the default suite leaves them out: name them with `--scenario`. They
//! need root, `ip`, `nft`, `patroni` and `etcd`; where one is missing they are unavailable,
//! with the reason.

mod bare;
mod fault;
mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;

pub use fault::{HaCase, HaFault};
use watch::{RouteWatch, StopOnDrop, Watch, WritableWatch, terms};

use super::family::{Ctx, Family as FamilyTrait, Running, Stage};
use super::judge::{crit, not_started};
use super::runner::{Progress, Timing, make_subject};
use super::writes::{Found, Reference, Writers, judge_history};
use crate::hosts::HostsError;
use crate::peers::{PoolKind, Subject};
use crate::postgres::{HaCluster, HaError, HaOptions, HaRoute};
use crate::report::{FaultWindow, Op, Phases, ScenarioReport, Unavailable};

/// How often each node's REST API is polled for its role.
const POLL: Duration = Duration::from_millis(10);
/// Longest wait for a promotion (the lease, then the election).
const PROMOTION_WAIT: Duration = Duration::from_secs(60);
/// The fault window of the faults that do not move the leader (beyond `retry_timeout`, so a
/// leader without etcd demotes itself within it).
const HOLD: Duration = Duration::from_secs(8);

/// Runs `case` against a pool of `kind`.
pub async fn run(
    seed: u64,
    case: HaCase,
    kind: PoolKind,
    timing: Timing,
    progress: &dyn Progress,
) -> ScenarioReport {
    let (name, fault) = (case.name(), case.fault);
    let options = HaOptions {
        synchronous: fault.synchronous(),
        route: case.route,
        ..HaOptions::default()
    };
    let description = format!("{} Setup: {}.", case.description(), options.describe());
    let mut report = ScenarioReport::new(name, kind.name(), kind.is_ours(), &description);
    if case.route == HaRoute::Url
        && let Some(why) = kind.single_host()
    {
        report.mark_unavailable(
            "ha",
            Unavailable::NotSupported {
                detail: format!(
                    "{why}; it reaches the cluster through HAProxy instead ({}_haproxy)",
                    fault.name()
                ),
            },
        );
        return report;
    }
    if let Err(e) = HaCluster::available(case.route) {
        report.mark_unavailable("ha", unavailable(&e));
        return report;
    }
    progress.phase(name, kind.name(), "starting etcd and 3 Patroni nodes");
    let started = tokio::task::spawn_blocking(move || HaCluster::start(options)).await;
    let cluster = match started {
        Ok(Ok(c)) => Arc::new(c),
        Ok(Err(e)) => {
            report.mark_unavailable("ha", unavailable(&e));
            return report;
        }
        Err(e) => {
            report.mark_unavailable(
                "ha",
                Unavailable::Injector {
                    detail: format!("the HA cluster's start panicked: {e}"),
                },
            );
            return report;
        }
    };
    if let Err(e) = measure(&cluster, seed, case, kind, timing, progress, &mut report).await {
        report.criteria.push(crit(
            "setup",
            "the scenario runs",
            e,
            "runs",
            false,
        ));
    }
    // Dropping the cluster kills every process on its hosts and removes them.
    let _ = tokio::task::spawn_blocking(move || drop(cluster)).await;
    report
}

fn unavailable(e: &HaError) -> Unavailable {
    match e {
        HaError::Hosts(HostsError::NotRoot) => Unavailable::NotRoot {
            detail: e.to_string(),
        },
        HaError::Hosts(HostsError::MissingProgram { program, .. })
        | HaError::MissingProgram { program, .. } => Unavailable::MissingProgram {
            program: (*program).to_string(),
            detail: e.to_string(),
        },
        _ => Unavailable::Injector {
            detail: format!("the HA cluster could not be started: {e}"),
        },
    }
}

async fn client(url: &str) -> Result<tokio_postgres::Client, String> {
    let (client, driver) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connect to {}: {e}", pool::redact_url(url)))?;
    tokio::spawn(driver);
    Ok(client)
}

/// `pg_is_in_recovery()` on `url`, on the connection kept in `conn` (made again when lost);
/// `None` when the node did not answer within 250 ms.
async fn in_recovery(url: &str, conn: &mut Option<tokio_postgres::Client>) -> Option<bool> {
    let within = Duration::from_millis(250);
    if conn.as_ref().is_none_or(tokio_postgres::Client::is_closed) {
        let (client, driver) = tokio::time::timeout(within, tokio_postgres::connect(url, tokio_postgres::NoTls))
            .await
            .ok()?
            .ok()?;
        tokio::spawn(driver);
        *conn = Some(client);
    }
    let c = conn.as_ref()?;
    match tokio::time::timeout(within, c.query_one("SELECT pg_is_in_recovery()", &[])).await {
        Ok(Ok(row)) => Some(row.get(0)),
        _ => {
            *conn = None;
            None
        }
    }
}

async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T, HaError> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("{what}: {e}"))?
        .map_err(|e| format!("{what}: {e}"))
}

#[allow(clippy::too_many_lines)]
async fn measure(
    cluster: &Arc<HaCluster>,
    seed: u64,
    case: HaCase,
    kind: PoolKind,
    timing: Timing,
    progress: &dyn Progress,
    report: &mut ScenarioReport,
) -> Result<(), String> {
    let (name, fault) = (case.name(), case.fault);
    let leader = cluster
        .leader()
        .await
        .ok_or_else(|| "no single leader after the start".to_string())?;
    // By the URL, the leader first, as a service configured before the fault lists its
    // primary: after it, the first host is dead, isolated or a standby, and a pool must
    // follow the role. Through HAProxy, its one address.
    let url = cluster.route_url(&leader);
    client(&url)
        .await?
        .batch_execute(
            "CREATE TABLE chaos_writes (id bigint PRIMARY KEY, srv text NOT NULL DEFAULT host(inet_server_addr()))",
        )
        .await
        .map_err(|e| format!("create the writes table: {e}"))?;
    let app = format!("chaos-{}-{name}", kind.name().replace('+', "-"));
    let subject: Arc<dyn Subject> = match make_subject(kind, &url, &app, seed).await {
        Ok(s) => Arc::from(s),
        Err(e) => {
            report.criteria.push(not_started(e));
            return Ok(());
        }
    };
    let addrs: HashMap<String, String> = cluster
        .node_names()
        .into_iter()
        .filter_map(|n| {
            let a = cluster.pg_addr(&n)?.ip().to_string();
            Some((n, a))
        })
        .collect();

    let origin = Instant::now();
    let ms = move |t: Instant| t.saturating_duration_since(origin).as_secs_f64() * 1000.0;
    let stopped = Arc::new(AtomicBool::new(false));
    // The pollers stop however this ends (an error returned below, or the future dropped).
    let _stop_polling = StopOnDrop(Arc::clone(&stopped));

    // The terms, from every node's REST API, each polled on its own.
    let watch = Arc::new(Watch::default());
    let mut pollers = Vec::new();
    for node in cluster.node_names() {
        let (cluster, watch, stopped) = (Arc::clone(cluster), Arc::clone(&watch), Arc::clone(&stopped));
        pollers.push(tokio::spawn(async move {
            let mut last = None;
            while !stopped.load(Relaxed) {
                let asked = Instant::now();
                let state = cluster.node_state(&node, Duration::from_millis(250)).await;
                if last.as_ref() != Some(&state) {
                    watch.push(ms(asked), &node, state.clone());
                    last = Some(state);
                }
                tokio::time::sleep(POLL).await;
            }
        }));
    }
    // When each node takes writes: Patroni reports a promotion as it asks for it, and the
    // server finishes its promotion after that (longer on a loaded machine).
    let writable = Arc::new(WritableWatch::default());
    for node in cluster.node_names() {
        let Some(url) = cluster.node_url(&node) else {
            continue;
        };
        let (writable, stopped) = (Arc::clone(&writable), Arc::clone(&stopped));
        pollers.push(tokio::spawn(async move {
            let (mut last, mut conn) = (None, None);
            while !stopped.load(Relaxed) {
                let asked = Instant::now();
                if let Some(w) = in_recovery(&url, &mut conn).await.map(|r| !r)
                    && last != Some(w)
                {
                    writable.push(ms(asked), (node.clone(), w));
                    last = Some(w);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    // Through HAProxy: which servers it sends connections to, polled as often.
    let route = Arc::new(RouteWatch::default());
    if case.route == HaRoute::Haproxy {
        let (cluster, route, stopped) = (Arc::clone(cluster), Arc::clone(&route), Arc::clone(&stopped));
        pollers.push(tokio::spawn(async move {
            let mut last = None;
            while !stopped.load(Relaxed) {
                let asked = Instant::now();
                if let Some(up) = cluster.route_servers().await
                    && last.as_ref() != Some(&up)
                {
                    route.push(ms(asked), up.clone());
                    last = Some(up);
                }
                tokio::time::sleep(POLL).await;
            }
        }));
    }

    // The writers. A write this late is far beyond any deadline of the pool's: a hang, its
    // outcome unknown.
    let writers = Writers::start(&subject, timing.workers, timing.pace, origin, Duration::from_secs(30));

    progress.phase(name, kind.name(), "before");
    tokio::time::sleep(timing.before.max(Duration::from_secs(2))).await;
    progress.phase(name, kind.name(), &format!("fault: {}", fault.label()));
    let fault_start = ms(Instant::now());
    // The baseline: a client with no pool, from the first sign of another leader on. Started
    // before the fault: a switchover's request returns only once the new leader is up.
    let bare = fault.moves_the_leader().then(|| {
        let (watch, writable, route) = (Arc::clone(&watch), Arc::clone(&writable), Arc::clone(&route));
        let (old, addrs) = (leader.clone(), addrs.clone());
        // Patroni's report by the same rule as the heal below (a term of another node), the
        // new leader out of recovery, or HAProxy routing to it, whichever comes first.
        let seen = move || {
            let other = |n: &str| n != old;
            terms(&watch.events(), &addrs)
                .iter()
                .any(|t| t.from_ms > fault_start && other(&t.leader))
                || writable.seen_after(fault_start, |(n, w)| *w && other(n))
                || route.seen_after(fault_start, |up| up.iter().any(|n| other(n)))
        };
        tokio::spawn(bare::first_write(url.clone(), seen, Arc::clone(&stopped), origin))
    });
    fault
        .inject(cluster, Some(leader.clone()))
        .await
        .map_err(|e| format!("{}: {e}", fault.label()))?;
    // The heal: the promotion Patroni reports, or the end of the fault window.
    let (heal, new_leader) = if fault.moves_the_leader() {
        progress.phase(name, kind.name(), "waiting for Patroni to promote another node");
        let deadline = Instant::now() + PROMOTION_WAIT;
        loop {
            let t = terms(&watch.events(), &addrs);
            if let Some(p) = t.iter().find(|t| t.from_ms > fault_start && t.leader != leader) {
                break (p.from_ms, Some(p.leader.clone()));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no other node was promoted within {PROMOTION_WAIT:?} of the fault\n{}",
                    cluster.logs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    } else {
        tokio::time::sleep(HOLD).await;
        let c = Arc::clone(cluster);
        blocking("heal", move || c.restore()).await?;
        (ms(Instant::now()), None)
    };
    progress.phase(name, kind.name(), "after");
    tokio::time::sleep(timing.after.max(Duration::from_secs(3))).await;
    let writes = writers.stop().await;
    stopped.store(true, Relaxed);
    let bare = match bare {
        Some(task) => task.await.ok().flatten(),
        None => None,
    };
    progress.phase(name, kind.name(), "shutdown");
    subject.shutdown().await;
    drop(subject);
    for p in pollers {
        let _ = p.await;
    }

    // Everything healed; every node read once the cluster is whole again.
    progress.phase(name, kind.name(), "healing the cluster and reading every node");
    let c = Arc::clone(cluster);
    blocking("heal", move || c.restore()).await?;
    let c = Arc::clone(cluster);
    let healed = blocking("wait for the cluster to heal", move || {
        c.wait_healthy(Duration::from_secs(120))
    })
    .await;
    if let Err(e) = &healed {
        report
            .anomalies
            .push(format!("the cluster did not heal: {e}"));
    }
    let final_leader = cluster.leader().await;
    let mut found = Found::default();
    let mut left = 0;
    for node in cluster.node_names() {
        let Some(node_url) = cluster.node_url(&node) else {
            continue;
        };
        let Ok(c) = client(&node_url).await else {
            report
                .anomalies
                .push(format!("{node} could not be read after the heal"));
            continue;
        };
        if let Ok(rows) = c.query("SELECT id, srv FROM chaos_writes", &[]).await {
            for r in rows {
                let (id, srv): (i64, String) = (r.get(0), r.get(1));
                found.anywhere.insert(id);
                if final_leader.as_deref() == Some(node.as_str()) {
                    found.on_leader.insert(id, srv);
                }
            }
        }
        left += crate::fault::wait_no_connections_at(&node_url, &app, Duration::from_secs(5))
            .await
            .max(0);
    }

    let events = watch.events();
    let terms = terms(&events, &addrs);
    report.duration_ms = ms(Instant::now());
    report.fault = Some(FaultWindow {
        label: fault.label().into(),
        start_ms: fault_start,
        end_ms: heal,
    });
    let ops: Vec<Op> = writes.iter().map(|w| w.op.clone()).collect();
    report.phases = Phases::of(&ops, fault_start, heal);
    // The pool can write once the new leader takes writes and, through HAProxy, once HAProxy
    // routes to it: the pool's own time is counted from the later of the two (each one's lag
    // after Patroni's report is a figure).
    let server_ready = new_leader.as_ref().and_then(|l| {
        let ready = writable.ready(l, heal);
        if let Some(r) = ready {
            report
                .metrics
                .insert("writable_after_promotion_ms".into(), r - heal);
        }
        ready
    });
    let route_ready = match (&new_leader, case.route) {
        (Some(l), HaRoute::Haproxy) => {
            let ready = route.ready(l, heal);
            match ready {
                Some(r) => {
                    report.metrics.insert("route_after_promotion_ms".into(), r - heal);
                }
                None => report
                    .anomalies
                    .push(format!("HAProxy was not seen routing to the new leader {l}")),
            }
            ready
        }
        _ => None,
    };
    judge_history(
        report,
        fault.moves_the_leader(),
        fault.synchronous(),
        POLL,
        &writes,
        &terms,
        &found,
        (
            fault_start,
            heal,
            match (server_ready, route_ready) {
                (s, Some(r)) => Some((r.max(s.unwrap_or(r)), Reference::Route)),
                (Some(s), None) => Some((s, Reference::Server)),
                (None, None) => None,
            },
        ),
        bare.map(|b| (b, bare::WHAT)),
        final_leader.is_some(),
    );
    report.metrics.insert("terms".into(), terms.len() as f64);
    if let Some(demoted) = events
        .iter()
        .find(|(t, n, s)| *t > fault_start && *n == leader && s.as_ref().is_some_and(|s| !s.is_primary()))
    {
        report
            .metrics
            .insert("old_leader_demoted_ms".into(), demoted.0 - fault_start);
    }
    report.criteria.push(crit(
        "no_leak",
        "connections left on the servers after shutdown (pg_stat_activity by application_name, every node)",
        left.to_string(),
        "0",
        left == 0,
    ));
    report.ops = ops;
    Ok(())
}

/// The real HA stack under faults between hosts.
pub struct Family;

impl FamilyTrait for Family {
    type Item = HaCase;
    fn items() -> Vec<Self::Item> {
        HaCase::all()
    }
    fn name(item: Self::Item) -> &'static str {
        item.name()
    }
    fn description(item: Self::Item) -> &'static str {
        item.description()
    }
    fn stage(_item: Self::Item) -> Stage {
        Stage::Named
    }
    fn run<'a>(item: Self::Item, ctx: &'a Ctx<'a>, kind: PoolKind) -> Running<'a> {
        Box::pin(run(ctx.env.seed, item, kind, ctx.timing, ctx.progress))
    }
}
