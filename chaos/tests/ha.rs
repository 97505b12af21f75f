//! The real HA stack (etcd and three Patroni nodes, each on a host of its own): it elects a
//! leader, replaces a killed one, demotes an isolated one, and leaves nothing behind.
//!
//! These need root, `ip`, `nft`, Debian's `patroni` and `etcd-server`. Where one is missing
//! each test prints `UNAVAILABLE` with the reason; with `CHAOS_REQUIRE_HA=1` (set by `.ci/run`,
//! which runs as root and installs them) that is a failure instead, so CI cannot pass them by
//! not running them.

use std::process::Command;
use std::time::Duration;

use chaos::postgres::{HaCluster, HaOptions};
use tokio::time::Instant;

fn ha_available(test: &str) -> bool {
    match HaCluster::available() {
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
