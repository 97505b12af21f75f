//! Bad input to the `chaos` command gets one clear error and starts nothing: a
//! `DATABASE_URL` that is not a URL, one that names a host nobody serves or that does not
//! resolve, a scenario that does not exist, a `--host` that is not this machine's. Each run
//! gets a `TMPDIR` of its own, which must stay empty (no cluster was started).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chaos-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// Runs `chaos ARGS` with `env`; returns its output and whether `TMPDIR` stayed empty.
fn chaos(name: &str, args: &[&str], env: &[(&str, &str)]) -> (Output, String, bool) {
    let tmp = scratch(name);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chaos"));
    cmd.args(args)
        .env("TMPDIR", &tmp)
        .env_remove("DATABASE_URL")
        .env_remove("TOXIPROXY_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("chaos runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let untouched = std::fs::read_dir(&tmp).unwrap().next().is_none();
    let _ = std::fs::remove_dir_all(&tmp);
    (out, stderr, untouched)
}

fn errors(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("error")).collect()
}

#[test]
fn a_database_url_that_is_not_a_url_is_refused_naming_the_variable() {
    let (out, stderr, untouched) = chaos(
        "notaurl",
        &["run", "--quick"],
        &[("DATABASE_URL", "notaurl")],
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("DATABASE_URL is not a usable PostgreSQL URL"),
        "{stderr}"
    );
    assert!(!stderr.contains("starting"), "nothing starts: {stderr}");
    assert!(untouched);
}

#[test]
fn a_database_url_with_a_password_is_redacted_in_its_error() {
    let (_, stderr, _) = chaos(
        "badport",
        &["run", "--quick"],
        &[("DATABASE_URL", "postgres://app:hunter2@db:notaport/app")],
    );
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
}

#[test]
fn an_unreachable_database_url_is_one_error_naming_its_host_and_port() {
    // A port nothing listens on: found once, before any scenario.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://app:hunter2@127.0.0.1:{port}/app");
    let (out, stderr, untouched) = chaos("refused", &["run", "--quick"], &[("DATABASE_URL", &url)]);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors = errors(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(errors[0].contains("refused"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(
        !stderr.contains("throwaway database"),
        "none is started: {stderr}"
    );
    assert!(untouched);
}

#[test]
fn a_host_that_does_not_resolve_is_reported_as_dns() {
    let (out, stderr, _) = chaos(
        "dns",
        &["run", "--quick"],
        &[(
            "DATABASE_URL",
            "postgres://app@no-such-host.invalid:5432/app",
        )],
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors = errors(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("no-such-host.invalid:5432"), "{stderr}");
    // Where no DNS server answers, the lookup's own bound ends it.
    assert!(
        errors[0].contains("does not resolve (DNS")
            || errors[0].contains("resolving `no-such-host.invalid` took"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_scenario_is_refused_before_anything_starts() {
    let (out, stderr, untouched) = chaos(
        "scenario",
        &[
            "run",
            "--quick",
            "--scenario",
            "down",
            "--scenario",
            "nonexistent",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no scenario is called `nonexistent`"),
        "{stderr}"
    );
    assert!(!stderr.contains("starting"), "{stderr}");
    assert!(untouched, "a cluster was started");
}

#[test]
fn serve_says_which_of_host_and_port_is_wrong() {
    let (out, stderr, _) = chaos("host", &["serve", "--host", "999.1.1.1"], &[]);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--host 999.1.1.1 is not an IP address"),
        "{stderr}"
    );
    // An address of another machine: not this one's.
    let (_, stderr, _) = chaos(
        "foreign",
        &["serve", "--host", "192.0.2.1", "--port", "0"],
        &[],
    );
    assert!(
        stderr.contains("is not an address of this machine"),
        "{stderr}"
    );
    // A port in use: that one is the port's fault.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (_, stderr, _) = chaos("port", &["serve", "--port", &port], &[]);
    assert!(
        stderr.contains(&format!("port {port} on 127.0.0.1:{port} is in use")),
        "{stderr}"
    );
}
