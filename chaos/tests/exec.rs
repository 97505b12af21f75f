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

/// The times (s from the command's start) of the command's output lines that read `text`.
fn times_of(report: &Value, text: &str) -> Vec<f64> {
    report["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["text"] == text)
        .map(|l| l["t_s"].as_f64().unwrap())
        .collect()
}

/// The command's `ok`/`fail` lines: served before the fault window and after it, and failed
/// only within it or within the children's 1 s timeout after it.
fn assert_the_outage_is_seen_in_its_window(report: &Value, start: f64, end: f64) {
    let (oks, fails) = (times_of(report, "ok"), times_of(report, "fail"));
    assert!(
        oks.iter().any(|t| *t < start),
        "served before the fault: {oks:?}"
    );
    assert!(
        oks.iter().any(|t| *t > end),
        "served after the heal: {oks:?}"
    );
    assert!(!fails.is_empty(), "the outage is seen");
    assert!(
        fails.iter().all(|t| *t >= start && *t <= end + 1.2),
        "{fails:?} vs {start}..{end}"
    );
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
    assert!(
        !times_of(&report, "api ok").is_empty(),
        "TOXIPROXY_URL answers the command"
    );
    assert_the_outage_is_seen_in_its_window(&report, start, end);
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

/// The service's server, in a child mode: starts after 1 s (a slow start), then answers each
/// line on SERVICE_PORT with `ok` or `fail`: a `SELECT 1` through DATABASE_URL (the proxy).
/// It never exits by itself: chaos exec must stop it with the command's process group.
#[test]
#[ignore = "run by chaos exec in a_two_process_service_under_chaos_exec"]
fn exec_service_server() {
    let url = std::env::var("DATABASE_URL").expect("chaos exec sets DATABASE_URL");
    let port = std::env::var("SERVICE_PORT").unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        println!("server {} listening", std::process::id());
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let url = url.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(_)) = lines.next_line().await {
                    let answer = tokio::time::timeout(Duration::from_secs(1), async {
                        let (client, conn) =
                            tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                        tokio::spawn(conn);
                        client.simple_query("SELECT 1").await.map(drop)
                    })
                    .await;
                    let line = if matches!(answer, Ok(Ok(()))) {
                        "ok\n"
                    } else {
                        "fail\n"
                    };
                    if write.write_all(line.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// The service's client, in a child mode: once the server accepts, sends a request every 100 ms
/// for 2.5 s and prints
/// each answer. With CRASH_SERVER set, it crashes the database server itself halfway, through
/// CHAOS_DIRECT_URL (a planted crash no fault asked for), and still exits 0.
#[test]
#[ignore = "run by chaos exec in a_two_process_service_under_chaos_exec"]
fn exec_service_client() {
    let port = std::env::var("SERVICE_PORT").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        // Started beside the server, as a load generator is: it waits for it.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let socket = loop {
            match tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await {
                Ok(socket) => break socket,
                Err(e) if std::time::Instant::now() > deadline => panic!("no server: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let (read, mut write) = socket.into_split();
        let mut answers = BufReader::new(read).lines();
        let started = std::time::Instant::now();
        let mut crashed = std::env::var("CRASH_SERVER").is_err();
        while started.elapsed() < Duration::from_millis(2500) {
            if !crashed && started.elapsed() > Duration::from_millis(1200) {
                crashed = true;
                let direct = std::env::var("CHAOS_DIRECT_URL").expect("chaos exec sets it");
                let (client, conn) = tokio_postgres::connect(&direct, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                // COPY TO PROGRAM runs in the data directory: SIGQUIT to the postmaster.
                let _ = client
                    .simple_query(
                        "COPY (SELECT 1) TO PROGRAM 'kill -QUIT $(head -1 postmaster.pid)'",
                    )
                    .await;
                println!("crashed the server");
            }
            write.write_all(b"q\n").await.unwrap();
            match answers.next_line().await {
                Ok(Some(answer)) => println!("{answer}"),
                _ => eprintln!("no answer"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// Seconds of the day (UTC) of an RFC 3339 time `chaos exec` writes (`...THH:MM:SS.ffffffZ`).
fn second_of_day(rfc3339: &str) -> f64 {
    assert!(rfc3339.ends_with('Z') && rfc3339.len() == 27, "{rfc3339}");
    let time = &rfc3339[11..26];
    let h: f64 = time[0..2].parse().unwrap();
    let m: f64 = time[3..5].parse().unwrap();
    let s: f64 = time[6..].parse().unwrap();
    h * 3600.0 + m * 60.0 + s
}

fn now_second_of_day() -> f64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    t % 86400.0
}

/// A server and its client started from one `sh -c`, as a service owner runs them: the plan
/// waits for the server (`--ready tcp:`), its faults land where the client sees them, the
/// server left running is stopped with the group, a fault past the command's end is reported
/// (exit 3), and a crash of the database that no fault asked for is reported (exit 4).
#[test]
fn a_two_process_service_under_chaos_exec() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(
        dir.path(),
        "[[fault]]\nat = \"500ms\"\nduration = \"700ms\"\nkind = \"down\"\n\n\
         [[fault]]\nat = \"60s\"\nduration = \"1s\"\nkind = \"latency\"\n",
    );
    let me = std::env::current_exe().unwrap();
    let run = |out: &std::path::Path, crash: bool| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let role = |name: &str| format!("\"$ME\" --exact {name} --ignored --nocapture --quiet");
        let script = format!(
            "{} & {}",
            role("exec_service_server"),
            role("exec_service_client")
        );
        let mut command = Command::new(env!("CARGO_BIN_EXE_chaos"));
        command
            .args(["exec", "--seed", "3", "--name", "two-process service"])
            .arg("--ready")
            .arg(format!("tcp:{port}"))
            .arg("--plan")
            .arg(&plan)
            .arg("--out")
            .arg(out)
            .args(["--", "sh", "-c", &script])
            .env("ME", &me)
            .env("SERVICE_PORT", port.to_string())
            .env_remove("DATABASE_URL");
        if crash {
            command.env("CRASH_SERVER", "1");
        }
        let before = now_second_of_day();
        let output = command.output().unwrap();
        let after = now_second_of_day();
        let report: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        (output, report, before, after)
    };

    let out = dir.path().join("clean");
    let (output, report, before, after) = run(&out, false);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The fault at 60 s was not reached: named, and exit 3 although the command exited 0.
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert_eq!(report["exit_code"], 0, "{stderr}");
    assert!(
        stderr.contains("[two-process service] not reached: line 6: latency downstream"),
        "{stderr}"
    );
    // Readiness: the server starts listening after 1 s, and the plan's clock waited for it.
    let ready_s = report["plan_started_s"].as_f64().unwrap();
    assert!(ready_s >= 1.0, "{report}");
    assert!(stderr.contains("ready after"), "{stderr}");
    // The wall clock: the start lies within the test's own clock readings around the run.
    // Seconds of the day, compared modulo a day so a run across midnight (UTC) holds too.
    let since = |a: f64, b: f64| (a - b).rem_euclid(86400.0);
    let started = second_of_day(report["started_at"].as_str().unwrap());
    assert!(
        since(started, before - 0.01) <= since(after, before - 0.01),
        "{started} vs {before}..{after}"
    );
    let plan_started = second_of_day(report["plan_started_at"].as_str().unwrap());
    assert!(
        (since(plan_started, started) - ready_s).abs() < 0.001,
        "{report}"
    );
    // The fault took effect at its planned time after readiness, within its measured offset,
    // and the client's failures lie in its window (or within its 1 s query timeout after).
    let down = &report["faults"][0];
    let (planned, effective, end) = (
        down["planned_s"].as_f64().unwrap(),
        down["effective_s"].as_f64().unwrap(),
        down["end_s"].as_f64().unwrap(),
    );
    assert!((planned - ready_s - 0.5).abs() < 0.001, "{down}");
    let offset = down["offset_ms"].as_f64().unwrap();
    assert!(
        (effective - planned - offset / 1000.0).abs() < 0.001,
        "{down}"
    );
    assert!(offset >= 0.0, "{down}");
    assert_the_outage_is_seen_in_its_window(&report, effective, end);
    // The server the command left running was stopped with its group.
    assert!(
        report["group"]["left_running"].as_u64().unwrap() >= 1,
        "{report}"
    );
    let server_pid: u32 = report["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| {
            l["text"]
                .as_str()?
                .strip_prefix("server ")?
                .strip_suffix(" listening")
        })
        .next()
        .expect("the server said it listens")
        .parse()
        .unwrap();
    let alive = std::fs::read_to_string(format!("/proc/{server_pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(')')
            .unwrap()
            .1
            .trim_start()
            .starts_with('Z')
    });
    assert!(!alive, "the server {server_pid} outlived chaos exec");
    // The server behaved: nothing to report.
    assert!(
        report["server"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["expected"] == true || e["what"] == "answers"),
        "{report}"
    );
    assert!(out.join("server.log").is_file());

    // A crash of the database no fault asked for: reported, kept, exit 4.
    let out = dir.path().join("crash");
    let (output, report, _, _) = run(&out, true);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(report["exit_code"], 0, "{stderr}");
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("the server, without a fault asking") && stderr.contains("stopped"),
        "{stderr}"
    );
    let log = std::fs::read_to_string(out.join("server.log")).unwrap();
    assert!(
        log.contains("terminating") || log.contains("shutdown") || log.contains("quit"),
        "{log}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("without a fault asking"), "{md}");
}

/// SIGTERM to `chaos exec` stops the command's whole group: a background process of the
/// command is gone when chaos exec has exited (143), and the partial report is written.
#[test]
fn a_signal_stops_the_command_s_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(
        dir.path(),
        "[[fault]]\nat = \"60s\"\nduration = \"1s\"\nkind = \"down\"\n",
    );
    let out = dir.path().join("out");
    // A duration no other process on this machine sleeps: how the leftover is found.
    let marker = format!(
        "{}.{}",
        40 + std::process::id() % 1000,
        std::process::id() % 97
    );
    let chaos = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(["exec", "--seed", "1", "--plan"])
        .arg(&plan)
        .arg("--out")
        .arg(&out)
        .args(["--", "sh", "-c"])
        .arg(format!("sleep {marker} & echo started; sleep {marker}"))
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let sleeping = || -> usize {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .filter(|c| c.split(|b| *b == 0).any(|arg| arg == marker.as_bytes()))
            .filter(|c| c.starts_with(b"sleep"))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sleeping() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the command never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill with the pid of our own child and a valid signal.
    unsafe { libc::kill(chaos.id() as i32, libc::SIGTERM) };
    let output = chaos.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(143), "{stderr}");
    assert_eq!(
        sleeping(),
        0,
        "a process of the command outlived chaos exec: {stderr}"
    );
    assert!(out.join("report.json").is_file(), "{stderr}");
}
