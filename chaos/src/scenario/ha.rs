//! The real HA stack under faults between hosts: etcd and three Patroni nodes, each on a host
//! of its own ([`HaCluster`]), the pool under test on this machine reaching them by the
//! multi-host URL with `target_session_attrs=read-write`.
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
//! 100 ms.
//!
//! These take a minute each (the cluster's bootstrap, and the lease a killed or isolated
//! leader holds), so the default suite leaves them out: name them with `--scenario`. They
//! need root, `ip`, `nft`, `patroni` and `etcd`; where one is missing they are unavailable,
//! with the reason.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::family::{Ctx, Family as FamilyTrait, Running, Stage};
use super::judge::{crit, not_started};
use super::runner::{Progress, Timing, make_subject};
use super::writes::{Found, Term, Writers, judge_history};
use crate::hosts::HostsError;
use crate::peers::{PoolKind, Subject};
use crate::postgres::{HaCluster, HaError, HaOptions, NodeState};
use crate::report::{FaultWindow, Op, Phases, ScenarioReport, Unavailable};

/// A fault of the HA stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaFault {
    /// The leader's host loses every process.
    KillLeader,
    /// As [`HaFault::KillLeader`], with asynchronous replication.
    KillLeaderAsync,
    /// A switchover through the REST API.
    Switchover,
    /// The synchronous standby's host loses every process.
    KillReplica,
    /// The leader cut off from etcd and the replicas; the clients still reach it.
    IsolateLeader,
    /// The clients cut off from the leader only.
    PartitionClients,
    /// etcd lost.
    EtcdDown,
}

impl HaFault {
    /// Every one, in run order.
    pub const ALL: [HaFault; 7] = [
        HaFault::KillLeader,
        HaFault::Switchover,
        HaFault::IsolateLeader,
        HaFault::KillReplica,
        HaFault::PartitionClients,
        HaFault::EtcdDown,
        HaFault::KillLeaderAsync,
    ];

    /// The name in plans, reports and `--scenario`.
    pub fn name(self) -> &'static str {
        match self {
            HaFault::KillLeader => "ha_kill_leader",
            HaFault::KillLeaderAsync => "ha_kill_leader_async",
            HaFault::Switchover => "ha_switchover",
            HaFault::KillReplica => "ha_kill_replica",
            HaFault::IsolateLeader => "ha_isolate_leader",
            HaFault::PartitionClients => "ha_partition_clients",
            HaFault::EtcdDown => "ha_etcd_down",
        }
    }

    /// What it does.
    pub fn description(self) -> &'static str {
        match self {
            HaFault::KillLeader => {
                "Patroni + etcd, each node a host of its own (synchronous_mode): the leader's host loses every process (SIGKILL). Writes by the multi-host URL must reach the new leader within 100 ms of Patroni reporting it; no acknowledged write may be lost, none acknowledged after the promotion by another server, none reported failed yet present."
            }
            HaFault::KillLeaderAsync => {
                "As ha_kill_leader with asynchronous replication: acknowledged writes lost with the old leader are a figure (lost to the mode), split brain and failed-yet-present writes still fail it."
            }
            HaFault::Switchover => {
                "Patroni + etcd (synchronous_mode): a switchover through the REST API. Writes must reach the new leader within 100 ms of Patroni reporting it, with nothing lost."
            }
            HaFault::KillReplica => {
                "Patroni + etcd (synchronous_mode): the synchronous standby's host loses every process; Patroni names another. Nothing acknowledged may be lost; writes must go on."
            }
            HaFault::IsolateLeader => {
                "Patroni + etcd (synchronous_mode): the leader is cut off from etcd and the replicas while the clients still reach it (the split-brain case). Patroni must demote it; no client may get a write acknowledged there once another node is primary."
            }
            HaFault::PartitionClients => {
                "Patroni + etcd (synchronous_mode): the clients are cut off from the leader only (packets dropped both ways); the cluster keeps its leader. No write may hang past its deadline; writes resume when the path heals."
            }
            HaFault::EtcdDown => {
                "Patroni + etcd (synchronous_mode): etcd is killed; the leader, unable to renew its lease, stops taking writes. Writes resume once etcd is back and a leader is elected; nothing acknowledged may be lost."
            }
        }
    }

    fn label(self) -> &'static str {
        match self {
            HaFault::KillLeader | HaFault::KillLeaderAsync => "leader killed",
            HaFault::Switchover => "switchover",
            HaFault::KillReplica => "sync standby killed",
            HaFault::IsolateLeader => "leader isolated",
            HaFault::PartitionClients => "clients cut from leader",
            HaFault::EtcdDown => "etcd down",
        }
    }

    fn synchronous(self) -> bool {
        self != HaFault::KillLeaderAsync
    }

    /// Whether the fault ends with another node promoted (the reference for the pool's time).
    fn moves_the_leader(self) -> bool {
        matches!(
            self,
            HaFault::KillLeader
                | HaFault::KillLeaderAsync
                | HaFault::Switchover
                | HaFault::IsolateLeader
        )
    }
}

/// How often each node's REST API is polled for its role.
const POLL: Duration = Duration::from_millis(10);
/// Longest wait for a promotion (the lease, then the election).
const PROMOTION_WAIT: Duration = Duration::from_secs(60);
/// The fault window of the faults that do not move the leader (beyond `retry_timeout`, so a
/// leader without etcd demotes itself within it).
const HOLD: Duration = Duration::from_secs(8);

/// The role changes the harness observed: each node polled on its own, a change recorded
/// when its state differs from the last one it answered with.
#[derive(Default)]
struct Watch {
    events: Mutex<Vec<(f64, String, Option<NodeState>)>>,
}

impl Watch {
    fn push(&self, ms: f64, node: &str, state: Option<NodeState>) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((ms, node.to_string(), state));
    }

    fn events(&self) -> Vec<(f64, String, Option<NodeState>)> {
        let mut e = self.events.lock().unwrap_or_else(|e| e.into_inner()).clone();
        e.sort_by(|a, b| a.0.total_cmp(&b.0));
        e
    }
}

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
    }
}

/// The leader terms in `events`: a term begins when a node answers as the running primary
/// after it last answered as anything else (a node that could not be asked keeps the state it
/// last answered with: a partition from the harness is not a change of role).
fn terms(events: &[(f64, String, Option<NodeState>)], addrs: &HashMap<String, String>) -> Vec<Term> {
    let mut known: HashMap<&str, bool> = HashMap::new();
    let mut terms: Vec<Term> = Vec::new();
    for (ms, node, state) in events {
        let Some(state) = state else { continue };
        let primary = state.is_primary();
        let was = known.insert(node.as_str(), primary).unwrap_or(false);
        if primary && !was {
            terms.push(Term {
                from_ms: *ms,
                leader: node.clone(),
                addr: addrs.get(node).cloned().unwrap_or_default(),
            });
        }
    }
    terms
}

/// Runs `fault` against a pool of `kind`.
pub async fn run(
    seed: u64,
    fault: HaFault,
    kind: PoolKind,
    timing: Timing,
    progress: &dyn Progress,
) -> ScenarioReport {
    let name = fault.name();
    let options = HaOptions {
        synchronous: fault.synchronous(),
        ..HaOptions::default()
    };
    let description = format!("{} Setup: {}.", fault.description(), options.describe());
    let mut report = ScenarioReport::new(name, kind.name(), kind.is_ours(), &description);
    if let Some(why) = kind.single_host() {
        report.mark_unavailable(
            "ha",
            Unavailable::NotSupported {
                detail: why.to_string(),
            },
        );
        return report;
    }
    if let Err(e) = HaCluster::available() {
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
    if let Err(e) = measure(&cluster, seed, fault, kind, timing, progress, &mut report).await {
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
    fault: HaFault,
    kind: PoolKind,
    timing: Timing,
    progress: &dyn Progress,
    report: &mut ScenarioReport,
) -> Result<(), String> {
    let name = fault.name();
    let leader = cluster
        .leader()
        .await
        .ok_or_else(|| "no single leader after the start".to_string())?;
    // The leader first, as a service configured before the fault lists its primary: after
    // it, the first host is dead, isolated or a standby, and a pool must follow the role.
    let url = cluster.url_first(&leader);
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
            let mut last: Option<Option<NodeState>> = None;
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

    // The writers. A write this late is far beyond any deadline of the pool's: a hang, its
    // outcome unknown.
    let writers = Writers::start(&subject, timing.workers, timing.pace, origin, Duration::from_secs(30));

    progress.phase(name, kind.name(), "before");
    tokio::time::sleep(timing.before.max(Duration::from_secs(2))).await;
    progress.phase(name, kind.name(), &format!("fault: {}", fault.label()));
    let fault_start = ms(Instant::now());
    let c = Arc::clone(cluster);
    match fault {
        HaFault::KillLeader | HaFault::KillLeaderAsync => {
            let l = leader.clone();
            blocking("kill the leader", move || Ok(c.kill_node(&l))).await?;
        }
        HaFault::Switchover => {
            // Under synchronous_mode Patroni takes only the synchronous standby as candidate;
            // it picks it itself when none is named.
            cluster
                .switchover(&leader, None)
                .await
                .map_err(|e| e.to_string())?;
        }
        HaFault::KillReplica => {
            let roles = cluster.roles().await;
            let victim = roles
                .iter()
                .find(|(_, r)| r == "sync_standby")
                .or_else(|| roles.iter().find(|(_, r)| r == "replica"))
                .map(|(n, _)| n.clone())
                .ok_or_else(|| format!("no replica to kill: {roles:?}"))?;
            blocking("kill a replica", move || Ok(c.kill_node(&victim))).await?;
        }
        HaFault::IsolateLeader => {
            let l = leader.clone();
            blocking("isolate the leader", move || c.isolate(&l)).await?;
        }
        HaFault::PartitionClients => {
            let l = leader.clone();
            blocking("cut the clients from the leader", move || c.cut_clients(&l)).await?;
        }
        HaFault::EtcdDown => {
            blocking("kill etcd", move || {
                c.kill_etcd();
                Ok(())
            })
            .await?;
        }
    }
    // The heal: the promotion Patroni reports, or the end of the fault window.
    let heal = if fault.moves_the_leader() {
        progress.phase(name, kind.name(), "waiting for Patroni to promote another node");
        let deadline = Instant::now() + PROMOTION_WAIT;
        loop {
            let t = terms(&watch.events(), &addrs);
            if let Some(p) = t.iter().find(|t| t.from_ms > fault_start && t.leader != leader) {
                break p.from_ms;
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
        ms(Instant::now())
    };
    progress.phase(name, kind.name(), "after");
    tokio::time::sleep(timing.after.max(Duration::from_secs(3))).await;
    let writes = writers.stop().await;
    stopped.store(true, Relaxed);
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
    judge_history(
        report,
        fault.moves_the_leader(),
        fault.synchronous(),
        POLL,
        &writes,
        &terms,
        &found,
        fault_start,
        heal,
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
    type Item = HaFault;
    fn items() -> Vec<Self::Item> {
        HaFault::ALL.to_vec()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state(role: &str) -> Option<NodeState> {
        Some(NodeState {
            role: role.into(),
            state: "running".into(),
            timeline: None,
        })
    }

    #[test]
    fn a_term_begins_when_a_node_answers_as_primary_after_anything_else() {
        let addrs: HashMap<String, String> =
            [("n1".to_string(), "a1".to_string()), ("n2".into(), "a2".into())].into();
        let events = vec![
            (0.0, "n1".to_string(), state("master")),
            (1.0, "n2".to_string(), state("replica")),
            // n1 cut off from the harness: not a change of role.
            (5.0, "n1".to_string(), None),
            (9.0, "n1".to_string(), state("master")),
            (20.0, "n1".to_string(), state("replica")),
            (30.0, "n2".to_string(), state("master")),
            (40.0, "n1".to_string(), state("replica")),
        ];
        let t = terms(&events, &addrs);
        assert_eq!(
            t.iter().map(|t| (t.from_ms, t.leader.as_str(), t.addr.as_str())).collect::<Vec<_>>(),
            vec![(0.0, "n1", "a1"), (30.0, "n2", "a2")]
        );
    }
}
