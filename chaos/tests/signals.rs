//! `chaos run` and `chaos soak` end cleanly on SIGINT, SIGTERM and SIGHUP, sent to the whole
//! process group as a terminal sends them (Ctrl-C, a closed terminal) or to the process
//! alone (`kill`, a CI timeout): within a bound, with the shell's exit code for the signal,
//! the partial report written and marked interrupted, and nothing left behind: no server
//! process, no cluster directory.
//!
//! Each run gets a `TMPDIR` of its own, so "nothing left" is checked exactly: the directory
//! must be empty afterwards and no process may name it on its command line. These tests start
//! the real binary against a real throwaway cluster (PostgreSQL's server binaries are needed).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Generous beside the 2 s the runs take on a quiet machine: CI machines are noisy.
const BOUND: Duration = Duration::from_secs(15);

/// A fresh directory the cluster's user can use.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chaos-signals-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    for d in [dir.clone(), dir.join("tmp")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    dir
}

/// Processes whose command line mentions `path`.
fn processes_naming(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}

enum Target {
    Group,
    Process,
}

/// Starts `chaos ARGS` in a process group of its own, waits until stderr shows `ready`, sends
/// `signal`, and checks how it ended.
fn interrupt(name: &str, args: &[&str], ready: &str, signal: i32, target: Target) {
    let dir = scratch(name);
    let tmp = dir.join("tmp");
    let out = dir.join("report");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(args)
        .arg("--out")
        .arg(&out)
        .env("TMPDIR", &tmp)
        .env_remove("DATABASE_URL")
        .env_remove("TOXIPROXY_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start chaos");
    let pid = child.id() as i32;
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let started = Instant::now();
    loop {
        match lines.recv_timeout(Duration::from_secs(120)) {
            Ok(line) if line.starts_with(ready) => break,
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "{name}: `{ready}` never came in {:?}; stderr: {seen:#?}",
                    started.elapsed()
                );
            }
        }
    }
    assert!(
        std::fs::read_dir(&tmp).unwrap().next().is_some(),
        "{name}: the cluster was not in TMPDIR"
    );
    let sent = Instant::now();
    let to = match target {
        Target::Group => -pid,
        Target::Process => pid,
    };
    assert_eq!(unsafe { libc::kill(to, signal) }, 0, "{name}: kill");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if sent.elapsed() > BOUND {
            let _ = child.kill();
            panic!("{name}: still running {BOUND:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = sent.elapsed();
    eprintln!("{name}: ended {took:?} after the signal, {status}");
    let rest: Vec<String> = lines.try_iter().collect();
    assert_eq!(
        status.code(),
        Some(128 + signal),
        "{name}: exit status; stderr after the signal: {rest:#?}"
    );
    // The watchdog's last steps may trail the exit by a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().collect();
        let procs = processes_naming(&tmp);
        if left.is_empty() && procs.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: left behind: {left:?}, processes {procs:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = std::fs::read_to_string(out.join("report.json"))
        .unwrap_or_else(|e| panic!("{name}: no report.json: {e}; stderr {rest:#?}"));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let marked = report["interrupted"]
        .as_str()
        .map(str::to_string)
        .or_else(|| report["state"].as_str().map(str::to_string))
        .unwrap_or_default();
    assert!(
        marked.contains(signal_name(signal)) || marked == "interrupted",
        "{name}: the report is not marked interrupted: {marked:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "SIGHUP",
    }
}

#[test]
fn a_run_ends_cleanly_on_ctrl_c_to_its_terminal_group() {
    interrupt(
        "run-int",
        &["run", "--quick"],
        "chaos: [1/",
        libc::SIGINT,
        Target::Group,
    );
}

#[test]
fn a_run_ends_cleanly_when_its_terminal_closes() {
    interrupt(
        "run-hup",
        &["run", "--quick"],
        "chaos: [1/",
        libc::SIGHUP,
        Target::Group,
    );
}

#[test]
fn a_run_ends_cleanly_on_sigterm_to_the_process_alone() {
    interrupt(
        "run-term",
        &["run", "--quick"],
        "chaos: [1/",
        libc::SIGTERM,
        Target::Process,
    );
}

#[test]
fn a_soak_ends_cleanly_on_ctrl_c_to_its_terminal_group() {
    interrupt(
        "soak-int",
        &["soak", "--duration", "60s", "--sample-every", "1s"],
        "soak:",
        libc::SIGINT,
        Target::Group,
    );
}
