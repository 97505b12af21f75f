//! The throwaway cluster itself: start, connect, crash, restart, and no orphans.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chaos::postgres::{Cluster, StopMode, process_alive};

async fn select_one(url: &str) -> Result<i32, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(conn);
    let one: i32 = client.query_one("SELECT 1", &[]).await?.get(0);
    drop(client);
    let _ = driver.await;
    Ok(one)
}

#[tokio::test]
async fn start_connect_crash_restart_connect() {
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .unwrap()
        .expect("start a throwaway cluster");
    let url = cluster.url();
    assert_eq!(select_one(&url).await.unwrap(), 1);
    let pid = cluster.postmaster_pid().expect("running");
    assert!(cluster.pids().len() > 1, "postmaster has children");

    // A held connection dies with the server.
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);

    cluster.stop(StopMode::Immediate).unwrap();
    assert!(
        !process_alive(pid),
        "postmaster {pid} survived an immediate stop"
    );
    assert!(!cluster.is_running());
    assert!(
        select_one(&url).await.is_err(),
        "connect must fail while stopped"
    );
    assert!(client.query_one("SELECT 1", &[]).await.is_err());
    let _ = driver.await;

    let port = cluster.port();
    cluster.restart().unwrap();
    assert_eq!(cluster.port(), port, "restart keeps the port");
    assert_ne!(cluster.postmaster_pid(), Some(pid));
    assert_eq!(select_one(&url).await.unwrap(), 1);

    // A fast stop and another restart keep the data.
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    client
        .batch_execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        .await
        .unwrap();
    drop(client);
    let _ = driver.await;
    cluster.stop(StopMode::Fast).unwrap();
    cluster.restart().unwrap();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let x: i32 = client
        .query_one("SELECT x FROM kept", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(x, 42);

    let root = cluster.data_dir().parent().unwrap().to_path_buf();
    let pids = cluster.pids();
    drop(cluster);
    assert!(!root.exists(), "drop removes {}", root.display());
    for pid in pids {
        assert!(!process_alive(pid), "pid {pid} survived drop");
    }
}

#[tokio::test]
async fn shared_database_serves_many_tests() {
    let db = chaos::postgres::shared().expect("shared database");
    let again = chaos::postgres::shared().expect("shared database");
    assert!(std::ptr::eq(db, again), "one database per test binary");
    assert_eq!(select_one(&db.url()).await.unwrap(), 1);
}

/// Run in a child process by `no_orphan_after_*`: starts a cluster, reports it, then dies.
#[test]
#[ignore = "helper: run in a child process by the no_orphan tests"]
fn orphan_helper() {
    let Ok(how) = std::env::var("CHAOS_ORPHAN_HELPER") else {
        return;
    };
    let cluster = Cluster::start().expect("start");
    let root = cluster.data_dir().parent().unwrap().to_path_buf();
    println!(
        "CLUSTER {} {}",
        cluster.postmaster_pid().unwrap(),
        root.display()
    );
    // Like a `static` shared cluster: never dropped.
    std::mem::forget(cluster);
    match how.as_str() {
        "abort" => std::process::abort(),
        _ => panic!("a test panics while a cluster is running"),
    }
}

fn assert_no_orphan(how: &str) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "orphan_helper",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CHAOS_ORPHAN_HELPER", how)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut found = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // libtest may print "test orphan_helper ... " on the same line first.
        if let Some((_, rest)) = line.split_once("CLUSTER ") {
            let (pid, root) = rest.split_once(' ').unwrap();
            found = Some((pid.parse::<u32>().unwrap(), std::path::PathBuf::from(root)));
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the helper was meant to die ({how})");
    let (pid, root) = found.expect("the helper reported its cluster");
    let deadline = Instant::now() + Duration::from_secs(20);
    while (process_alive(pid) || root.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !process_alive(pid),
        "postgres {pid} outlived a test process that died by {how}"
    );
    assert!(
        !root.exists(),
        "{} outlived a test process that died by {how}",
        root.display()
    );
}

#[test]
fn no_orphan_after_a_panicking_test() {
    assert_no_orphan("panic");
}

#[test]
fn no_orphan_after_abort() {
    assert_no_orphan("abort");
}
