//! The suite through the remote controller, as a user drives it against a real Toxiproxy:
//! the `chaos` binary runs `chaos serve` (standing in for Toxiproxy, since CI has no Docker)
//! and `chaos run` with `TOXIPROXY_URL`, both as child processes on real sockets. Also what a
//! run says when it can measure nothing, or when its settings are wrong.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

/// `chaos serve` on a free loopback port; killed on drop.
struct Serve {
    child: Child,
    url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Serve {
    // A port that was free a moment ago; `chaos serve` says so clearly if it was taken since.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(["serve", "--port", &port.to_string(), "--seed", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("chaos serve starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines
        .next()
        .expect("chaos serve prints its address")
        .unwrap();
    assert!(line.contains("Toxiproxy API on http://"), "{line}");
    Serve {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// `chaos run --quick` with `env`, the given scenarios, and a report directory of its own.
fn run(env: &[(&str, &str)], scenarios: &[&str], out: &std::path::Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chaos"));
    cmd.args(["run", "--quick", "--seed", "5", "--out"])
        .arg(out)
        .env_remove("TOXIPROXY_URL")
        .env_remove("TOXIPROXY_LISTEN")
        .env_remove("TOXIPROXY_UPSTREAM")
        .env_remove("DATABASE_URL");
    for s in scenarios {
        cmd.args(["--scenario", s]);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("chaos run runs")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_suite_runs_through_a_remote_toxiproxy_api_with_a_bare_listen_host() {
    let server = serve();
    let out = tempfile::tempdir().unwrap();
    // The case: TOXIPROXY_LISTEN with a host alone.
    let o = run(
        &[
            ("TOXIPROXY_URL", &server.url),
            ("TOXIPROXY_LISTEN", "127.0.0.1"),
        ],
        &["down", "peer_lost", "latency_jitter", "server_restart"],
        out.path(),
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("PASSED"), "{t}");
    let report = std::fs::read_to_string(out.path().join("report.json")).unwrap();
    assert!(
        report.contains(&format!("Toxiproxy at {}", server.url)),
        "{report}"
    );
    // Every scenario measured something: requests went through the remote proxies.
    let json: serde_json::Value = serde_json::from_str(&report).unwrap();
    for s in json["scenarios"].as_array().unwrap() {
        let ok = s["phases"]["before"]["ok"].as_u64().unwrap();
        assert!(
            ok > 0,
            "{} measured nothing before its fault: {s}",
            s["name"]
        );
    }
}

#[test]
fn a_run_that_can_measure_nothing_exits_non_zero_and_says_what_to_change() {
    let server = serve();
    let out = tempfile::tempdir().unwrap();
    // 192.0.2.1 is TEST-NET-1: no interface here has it, so the server cannot listen there
    // (nothing is sent anywhere: the bind fails).
    let o = run(
        &[
            ("TOXIPROXY_URL", &server.url),
            ("TOXIPROXY_LISTEN", "192.0.2.1"),
        ],
        &["down", "latency_jitter"],
        out.path(),
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("NOTHING MEASURED"), "{t}");
    assert!(!t.contains("PASSED"), "{t}");
    assert!(t.contains("nothing was measured"), "{t}");
    assert!(t.contains("set TOXIPROXY_LISTEN"), "{t}");
}

#[test]
fn a_listen_value_it_cannot_use_is_refused_before_anything_starts() {
    let out = tempfile::tempdir().unwrap();
    let o = run(
        &[
            ("TOXIPROXY_URL", "http://127.0.0.1:9"),
            ("TOXIPROXY_LISTEN", "127.0.0.1:http"),
        ],
        &["down"],
        out.path(),
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("TOXIPROXY_LISTEN=`127.0.0.1:http`"), "{t}");
    assert!(t.contains("expected HOST or HOST:PORT"), "{t}");
    // Refused before the API was asked (the port 9 above answers nothing) and before any
    // report was written.
    assert!(!t.contains("could not reach the Toxiproxy API"), "{t}");
    assert!(!out.path().join("report.json").exists(), "{t}");
}
