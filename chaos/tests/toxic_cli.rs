//! `chaos proxy` and `chaos toxic` against a running API (`chaos::api::serve`, what `chaos
//! serve` runs), through the binary as a user types them: every verb, what each prints, and
//! the errors a user can hit (unreachable API, unknown proxy, a bad attribute).

use std::process::Command;
use std::sync::Arc;

/// The API on a free port, served from a runtime of its own for the test's length.
fn api() -> (String, Arc<chaos::proxy::Proxies>, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let proxies = Arc::new(chaos::proxy::Proxies::new(3));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(chaos::api::serve(
        listener,
        Arc::clone(&proxies),
        std::future::pending(),
    ));
    (url, proxies, runtime)
}

fn chaos(host: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(args)
        .args(["--host", host])
        .env_remove("TOXIPROXY_URL")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_verb_drives_the_api_and_says_what_it_did() {
    let (host, proxies, _rt) = api();
    let (ok, out, err) = chaos(
        &host,
        &[
            "proxy",
            "create",
            "pg",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:5432",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.starts_with("created proxy pg listening on 127.0.0.1:"),
        "{out}"
    );
    let (ok, out, _) = chaos(&host, &["proxy", "list"]);
    assert!(ok);
    assert!(
        out.lines()
            .any(|l| l.starts_with("pg ") && l.contains("127.0.0.1:5432") && l.contains("true")),
        "{out}"
    );

    let (ok, out, err) = chaos(
        &host,
        &[
            "toxic",
            "add",
            "pg",
            "--type",
            "latency",
            "-a",
            "latency=100",
            "-a",
            "jitter=10",
            "--stream",
            "upstream",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("added toxic latency_upstream (latency upstream, toxicity 1.0, jitter=10 latency=100) on pg"), "{out}");
    let (ok, out, err) = chaos(
        &host,
        &[
            "toxic",
            "add",
            "pg",
            "-t",
            "timeout",
            "-n",
            "brief",
            "--duration",
            "30s",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("removes itself after 30000 ms"), "{out}");
    let (ok, out, err) = chaos(
        &host,
        &[
            "toxic",
            "update",
            "pg",
            "latency_upstream",
            "-a",
            "latency=250",
            "--toxicity",
            "0.5",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("latency=250") && out.contains("toxicity 0.5"),
        "{out}"
    );
    let pg = proxies.get("pg").unwrap();
    assert_eq!(
        pg.toxic("latency_upstream").unwrap().kind.attributes()["latency"],
        250
    );

    let (ok, out, _) = chaos(&host, &["proxy", "inspect", "pg"]);
    assert!(ok);
    assert!(
        out.contains("upstream  127.0.0.1:5432") && out.contains("toxic brief (timeout downstream"),
        "{out}"
    );
    let (ok, out, _) = chaos(&host, &["proxy", "toggle", "pg"]);
    assert!(ok && out.contains("now disabled"), "{out}");
    assert!(!pg.enabled());
    let (ok, out, _) = chaos(&host, &["proxy", "toggle", "pg"]);
    assert!(ok && out.contains("now enabled"), "{out}");
    assert!(pg.enabled());

    let (ok, out, _) = chaos(&host, &["toxic", "remove", "pg", "brief"]);
    assert!(ok && out.contains("removed toxic brief from pg"), "{out}");
    assert_eq!(pg.toxics().len(), 1);
    let (ok, out, _) = chaos(&host, &["proxy", "delete", "pg"]);
    assert!(ok && out.contains("deleted proxy pg"), "{out}");
    assert!(proxies.list().is_empty());
}

#[test]
fn errors_say_what_happened_and_what_to_do() {
    let (host, _proxies, _rt) = api();
    let (ok, _, err) = chaos(&host, &["proxy", "inspect", "nope"]);
    assert!(!ok);
    assert!(
        err.contains("answered 404") && err.contains("proxy not found"),
        "{err}"
    );
    let (ok, _, err) = chaos(
        &host,
        &[
            "toxic",
            "add",
            "nope",
            "-t",
            "latency",
            "-a",
            "latency=fast",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("`latency` = `fast` is not a whole number"),
        "{err}"
    );
    let (ok, _, err) = chaos(
        &host,
        &["toxic", "add", "nope", "-t", "latency", "-a", "latency"],
    );
    assert!(!ok);
    assert!(err.contains("is not key=value"), "{err}");
    // Nothing listens on port 9 of loopback.
    let (ok, _, err) = chaos("http://127.0.0.1:9", &["proxy", "list"]);
    assert!(!ok);
    assert!(
        err.contains("could not reach the Toxiproxy API at 127.0.0.1:9")
            && err.contains("chaos serve"),
        "{err}"
    );
}
