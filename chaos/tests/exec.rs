//! `chaos exec`: a real command (this test binary, in a child mode) under a real plan, through
//! the real proxy to a throwaway PostgreSQL; its exit status, output and the fault windows
//! come back in the report. A bad plan is refused before the command starts.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

/// The command under the plan: queries through DATABASE_URL every 100 ms for 2.5 s, printing
/// `ok`/`fail` with the time, checks that TOXIPROXY_URL answers, and exits with CHILD_EXIT.
#[test]
#[ignore = "run by chaos exec in a_command_runs_under_a_plan"]
fn exec_child_queries_through_the_proxy() {
    let url = std::env::var("DATABASE_URL").expect("chaos exec sets DATABASE_URL");
    let api = std::env::var("TOXIPROXY_URL").expect("chaos exec sets TOXIPROXY_URL");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let addr = api.trim_start_matches("http://").to_string();
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        if answer.starts_with("HTTP/1.1 200") {
            println!("api ok");
        }
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(2500) {
            let attempt = tokio::time::timeout(Duration::from_secs(1), async {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                client.simple_query("SELECT 1").await.map(drop)
            })
            .await;
            match attempt {
                Ok(Ok(())) => println!("ok"),
                _ => eprintln!("fail"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let code = std::env::var("CHILD_EXIT").map_or(0, |c| c.parse().unwrap());
    std::process::exit(code);
}

fn write_plan(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("plan.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_command_runs_under_a_plan_and_its_status_output_and_faults_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(
        dir.path(),
        "[[fault]]\nat = \"700ms\"\nduration = \"1s\"\nkind = \"down\"\n\n\
         [[fault]]\nat = \"60s\"\nduration = \"1s\"\nkind = \"latency\"\n",
    );
    let out = dir.path().join("out");
    let me = std::env::current_exe().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(["exec", "--seed", "5", "--plan"])
        .arg(&plan)
        .arg("--out")
        .arg(&out)
        .arg("--")
        .arg(&me)
        .args([
            "--exact",
            "exec_child_queries_through_the_proxy",
            "--ignored",
            "--nocapture",
        ])
        .env("CHILD_EXIT", "7")
        .env_remove("DATABASE_URL")
        .env_remove("TOXIPROXY_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(7),
        "the command's status: {stderr}"
    );
    assert!(stderr.contains("proxy down begins (line 1)"), "{stderr}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["exit_code"], 7);
    let down = &report["faults"][0];
    let (start, end) = (
        down["start_s"].as_f64().unwrap(),
        down["end_s"].as_f64().unwrap(),
    );
    assert!((0.65..1.5).contains(&start), "{down}");
    assert!((0.9..2.0).contains(&(end - start)), "{down}");
    assert!(down["error"].is_null(), "{down}");
    // The second fault was planned after the command's end: not applied.
    assert!(
        report["faults"][1]["start_s"].is_null(),
        "{}",
        report["faults"][1]
    );
    let lines = report["output"].as_array().unwrap();
    let at = |text: &str| -> Vec<f64> {
        lines
            .iter()
            .filter(|l| l["text"] == text)
            .map(|l| l["t_s"].as_f64().unwrap())
            .collect()
    };
    assert!(
        !at("api ok").is_empty(),
        "TOXIPROXY_URL answers the command"
    );
    let (oks, fails) = (at("ok"), at("fail"));
    assert!(
        oks.iter().any(|t| *t < start),
        "served before the fault: {oks:?}"
    );
    assert!(
        oks.iter().any(|t| *t > end),
        "served after the heal: {oks:?}"
    );
    assert!(!fails.is_empty(), "the outage is seen");
    // Each failure ends within the window or 1 s (the child's timeout) after it.
    assert!(
        fails.iter().all(|t| *t >= start && *t <= end + 1.2),
        "{fails:?} vs {start}..{end}"
    );
    for file in ["report.md", "timeline.svg", "output.txt"] {
        assert!(out.join(file).is_file(), "{file}");
    }
    let svg = std::fs::read_to_string(out.join("timeline.svg")).unwrap();
    assert!(
        svg.contains("proxy down") && svg.contains("exit 7"),
        "{svg}"
    );
}

#[test]
fn a_bad_plan_is_refused_before_the_command_starts_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(
        dir.path(),
        "[[fault]]\nat = \"soon\"\nduration = \"1s\"\nkind = \"down\"\n\n\
         [[fault]]\nat = \"1s\"\nduration = \"1s\"\nkind = \"lava\"\n",
    );
    let marker = dir.path().join("ran");
    let output = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(["exec", "--plan"])
        .arg(&plan)
        .arg("--")
        .args(["touch"])
        .arg(&marker)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 1: at = \"soon\""), "{stderr}");
    assert!(stderr.contains("line 6: kind = \"lava\""), "{stderr}");
    assert!(!marker.exists(), "the command must not run");
    let missing = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(["exec", "--plan", "/nonexistent/plan.toml", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("could not read /nonexistent/plan.toml")
    );
}

/// `chaos run --plan`: the suite's load on the pool under a plan instead of the matrix; the
/// report has one `plan` scenario per pool with the plan's span as its fault window. A bad
/// plan is refused before anything starts, and --plan with --scenario is a usage error.
#[test]
fn chaos_run_takes_a_plan_instead_of_the_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(
        dir.path(),
        "[[fault]]\nat = \"200ms\"\nduration = \"300ms\"\nkind = \"down\"\n\n\
         [[fault]]\nat = \"700ms\"\nduration = \"300ms\"\nkind = \"latency\"\nattributes = { latency = 50 }\n",
    );
    let out = dir.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args([
            "run", "--quick", "--seed", "4", "--format", "json", "--plan",
        ])
        .arg(&plan)
        .arg("--out")
        .arg(&out)
        .env_remove("DATABASE_URL")
        .env_remove("TOXIPROXY_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&run.stdout).unwrap();
    let scenarios = report["scenarios"].as_array().unwrap();
    // Our pool by both paths: through acquire, and through the shared Pool::query.
    let pools: Vec<&str> = scenarios
        .iter()
        .filter_map(|s| s["pool"].as_str())
        .collect();
    assert_eq!(pools, ["pool", "pool+query"], "{report}");
    let s = &scenarios[0];
    assert_eq!(s["name"], "plan");
    assert_eq!(scenarios[1]["name"], "plan");
    assert_eq!(s["fault"]["label"], "plan: 2 fault(s)");
    let window = s["fault"]["end_ms"].as_f64().unwrap() - s["fault"]["start_ms"].as_f64().unwrap();
    assert!(
        (900.0..3000.0).contains(&window),
        "the plan's span: {window} ms"
    );
    assert!(
        s["phases"]["during"]["fail"].as_u64().unwrap() > 0,
        "the cut is seen: {}",
        s["phases"]
    );

    let bad = write_plan(
        dir.path(),
        "[[fault]]\nat = \"1s\"\nduration = \"1s\"\nkind = \"lava\"\n",
    );
    let refused = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(["run", "--plan"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("line 1: kind = \"lava\""));
    let both = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(["run", "--scenario", "down", "--plan"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(
        both.status.code(),
        Some(2),
        "clap refuses --plan with --scenario"
    );
}
