//! The real HA stack (etcd and three Patroni nodes, each on a host of its own): it elects a
//! leader, replaces a killed one, demotes an isolated one, and leaves nothing behind; and
//! `chaos exec` runs a command against it, through HAProxy, under a plan's `[cluster]`.
//!
//! These need root, `ip`, `nft`, Debian's `patroni` and `etcd-server` (and `haproxy`). Where one is missing
//! each test prints `UNAVAILABLE` with the reason; with `CHAOS_REQUIRE_HA=1` (set by `.ci/run`,
//! which runs as root and installs them) that is a failure instead, so CI cannot pass them by
//! not running them.

use std::process::Command;
use std::time::Duration;

use chaos::postgres::{HaCluster, HaOptions, HaRoute};
use tokio::time::Instant;

fn ha_available(test: &str) -> bool {
    route_available(test, HaRoute::Url)
}

fn route_available(test: &str, route: HaRoute) -> bool {
    match HaCluster::available(route) {
        Ok(()) => true,
        Err(e) if std::env::var_os("CHAOS_REQUIRE_HA").is_some() => {
            panic!("{test}: CHAOS_REQUIRE_HA is set and {e}")
        }
        Err(e) => {
            eprintln!("UNAVAILABLE: {test}: {e}");
            false
        }
    }
}

/// One HA cluster at a time: each takes both cores while it bootstraps.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn start(options: HaOptions) -> HaCluster {
    tokio::task::spawn_blocking(move || HaCluster::start(options))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the HA cluster did not start: {e}"))
}

/// Polls until a node other than `old` reports itself the running primary.
async fn new_leader(cluster: &HaCluster, old: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let states = cluster.states(Duration::from_millis(300)).await;
        if let Some((name, _)) = states
            .iter()
            .find(|(n, s)| n != old && s.as_ref().is_some_and(|s| s.is_primary()))
        {
            return name.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no new leader within {within:?}: {states:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, driver) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    tokio::spawn(driver);
    client
}

/// Waits until every node other than `leader` has replayed the leader's WAL up to where it is
/// now. The cluster replicates asynchronously: a commit is acknowledged before any replica has
/// it, and Patroni may promote a replica that lacks the last one (within
/// `maximum_lag_on_failover`). A test that kills the leader and then reads its writes on the
/// new one must first see them replicated, or it judges the replication mode, not the failover.
async fn wait_replicated(cluster: &HaCluster, leader: &str, within: Duration) {
    let c = connect(&cluster.node_url(leader).expect("the leader's URL")).await;
    let lsn: String = c
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    drop(c);
    let deadline = Instant::now() + within;
    for node in cluster.node_names().iter().filter(|n| *n != leader) {
        let replica = connect(&cluster.node_url(node).expect("a replica's URL")).await;
        loop {
            let behind: bool = replica
                .query_one(
                    "SELECT coalesce(pg_last_wal_replay_lsn() < $1::text::pg_lsn, true)",
                    &[&lsn],
                )
                .await
                .unwrap()
                .get(0);
            if !behind {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{node} did not replay the leader's WAL to {lsn} within {within:?}\n{}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn leftovers(bridge_prefix: &str) -> String {
    let run = |args: &[&str]| {
        String::from_utf8_lossy(&Command::new("ip").args(args).output().unwrap().stdout)
            .lines()
            .filter(|l| l.contains(bridge_prefix))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!("{}{}", run(&["netns", "list"]), run(&["-br", "link"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_rejoins_and_nothing_is_left() {
    if !ha_available("a_killed_leader_is_replaced_and_rejoins_and_nothing_is_left") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let cluster = start(HaOptions::default()).await;
    let leader = cluster.leader().await.expect("one leader");
    let c = connect(&cluster.url()).await;
    c.batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    drop(c);
    wait_replicated(&cluster, &leader, Duration::from_secs(30)).await;

    let killed = cluster.kill_node(&leader);
    assert!(killed >= 2, "the leader's Patroni and postmaster: {killed}");
    let next = new_leader(&cluster, &leader, Duration::from_secs(60)).await;
    let c = connect(&cluster.url()).await;
    let row = c
        .query_one("SELECT count(*), host(inet_server_addr()) FROM t", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_eq!(
        Some(row.get::<_, String>(1)),
        cluster.pg_addr(&next).map(|a| a.ip().to_string()),
        "the URL with target_session_attrs=read-write reaches the new leader"
    );
    drop(c);

    cluster.start_node(&leader).unwrap();
    let c2 = &cluster;
    tokio::task::block_in_place(|| c2.wait_healthy(Duration::from_secs(90)))
        .unwrap_or_else(|e| panic!("the old leader did not rejoin: {e}"));

    let bridge = cluster.dir().to_path_buf();
    let prefix = {
        // The bridge's name is the subnet's: chaos-A-B.
        let addr = cluster.client_addr().octets();
        format!("chaos-{}-{}", addr[1], addr[2])
    };
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
    assert_eq!(leftovers(&prefix), "", "namespaces or links left");
    assert!(!bridge.exists(), "the run's directory is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_is_demoted_before_another_is_promoted() {
    if !ha_available("an_isolated_leader_is_demoted_before_another_is_promoted") {
        return;
    }
    let _serial = SERIAL.lock().await;
    let cluster = start(HaOptions::default()).await;
    let leader = cluster.leader().await.expect("one leader");
    let isolated_at = Instant::now();
    cluster.isolate(&leader).unwrap();
    // The clients still reach the isolated node: it answers, and stops being primary.
    let mut demoted_at = None;
    let mut promoted_at = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while promoted_at.is_none() || demoted_at.is_none() {
        let states = cluster.states(Duration::from_millis(300)).await;
        for (name, state) in &states {
            let primary = state.as_ref().is_some_and(|s| s.is_primary());
            if *name == leader && state.is_some() && !primary && demoted_at.is_none() {
                demoted_at = Some(isolated_at.elapsed());
            }
            if *name != leader && primary && promoted_at.is_none() {
                promoted_at = Some(isolated_at.elapsed());
            }
        }
        assert!(
            Instant::now() < deadline,
            "demoted {demoted_at:?}, promoted {promoted_at:?}: {states:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (demoted, promoted) = (demoted_at.unwrap(), promoted_at.unwrap());
    eprintln!("isolated leader demoted after {demoted:?}, another promoted after {promoted:?}");
    assert!(
        demoted < promoted,
        "the isolated leader must stop being primary before another is promoted"
    );
    cluster.heal_partitions().unwrap();
    let c2 = &cluster;
    tokio::task::block_in_place(|| c2.wait_healthy(Duration::from_secs(90)))
        .unwrap_or_else(|e| panic!("the isolated leader did not rejoin: {e}"));
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_exec_runs_a_command_against_the_cluster_through_haproxy() {
    let test = "chaos_exec_runs_a_command_against_the_cluster_through_haproxy";
    if !route_available(test, HaRoute::Haproxy) {
        return;
    }
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.toml");
    std::fs::write(
        &plan,
        "[cluster]\nkind = \"patroni\"\nroute = \"haproxy\"\n\n[[fault]]\nat = \"2s\"\nduration = \"3s\"\nkind = \"ha_switchover\"\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let writer = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/libpq-writer.sh");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(["exec", "--seed", "1", "--name", "libpq-writer", "--plan"])
        .arg(&plan)
        .arg("--out")
        .arg(&out)
        .args(["--", "sh", writer])
        .env("WRITES", "70")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("DATABASE_URL=postgres://postgres@10."),
        "{stderr}"
    );
    assert!(stderr.contains(":5000/"), "HAProxy's address: {stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let fault = &report["faults"][0];
    assert!(fault["error"].is_null(), "{fault}");
    assert!(fault["effective_s"].as_f64().is_some(), "{fault}");
    // The role watch saw the leader move, and nothing it saw was unasked for.
    let primaries: std::collections::BTreeSet<String> = report["server"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| {
            e["what"]
                .as_str()
                .unwrap()
                .split(", ")
                .filter(|n| n.ends_with(" primary"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(primaries.len(), 2, "{:?}", report["server"]);
    assert!(
        report["server"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["expected"] == true),
        "{:?}",
        report["server"]
    );
    // The writes went through HAProxy to the old leader, then to the new one.
    let servers: std::collections::BTreeSet<String> =
        std::fs::read_to_string(out.join("output.txt"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split(" ok ").nth(1))
            .filter_map(|w| w.split('|').nth(1).map(str::to_string))
            .collect();
    assert_eq!(servers.len(), 2, "writes acknowledged by: {servers:?}");
    assert!(out.join("timeline.svg").exists());
    assert!(
        std::fs::read_to_string(out.join("server.log"))
            .unwrap()
            .contains("==> haproxy.log <=="),
        "the cluster's logs are kept"
    );
}
