//! The Toxiproxy-compatible HTTP API: every endpoint, status code and error body, and an
//! unmodified Toxiproxy client (`toxiproxy_rust`, blocking) driving it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chaos::controller::{ControlError, ToxiproxyClient};
use chaos::proxy::Proxies;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn server() -> (ToxiproxyClient, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proxies = Arc::new(Proxies::new(1));
    tokio::spawn(chaos::api::serve(listener, proxies, std::future::pending()));
    (ToxiproxyClient::new(&format!("http://{addr}")), addr)
}

/// A server with one proxy, `p`, in front of an echo server (returned as `upstream`).
async fn server_with_proxy_p() -> (ToxiproxyClient, String) {
    let (c, _) = server().await;
    let upstream = echo().await.to_string();
    let (status, _) = call(
        &c,
        "POST",
        "/proxies",
        Some(json!({"name": "p", "upstream": upstream})),
    )
    .await;
    assert_eq!(status, 201);
    (c, upstream)
}

async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn call(c: &ToxiproxyClient, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    match c.request(method, path, body.as_ref()).await {
        Ok(r) => r,
        Err(ControlError::Api {
            status, message, ..
        }) => (status, json!({ "error": message })),
        Err(e) => panic!("{e}"),
    }
}

/// A raw request, for bodies and headers no client would send.
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn proxies_lifecycle_and_status_codes() {
    let (c, _) = server().await;
    let upstream = echo().await.to_string();
    let (status, body) = call(&c, "GET", "/proxies", None).await;
    assert_eq!((status, body), (200, json!({})));

    let (status, p) = call(
        &c,
        "POST",
        "/proxies",
        Some(json!({"name": "pg", "listen": "127.0.0.1:0", "upstream": upstream})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(p["name"], "pg");
    assert_eq!(p["enabled"], true);
    assert_eq!(p["toxics"], json!([]));
    let listen = p["listen"].as_str().unwrap().to_string();
    assert!(!listen.ends_with(":0"), "port 0 is resolved: {listen}");

    let (status, _) = call(
        &c,
        "POST",
        "/proxies",
        Some(json!({"name": "pg", "listen": "127.0.0.1:0", "upstream": upstream})),
    )
    .await;
    assert_eq!(status, 409);
    let (status, e) = call(
        &c,
        "POST",
        "/proxies",
        Some(json!({"name": "x", "listen": listen, "upstream": upstream})),
    )
    .await;
    assert_eq!(status, 500, "listen address in use: {e}");
    assert_eq!(
        call(&c, "GET", "/proxies/x", None).await.0,
        404,
        "a failed create changes nothing"
    );
    let (status, e) = call(
        &c,
        "POST",
        "/proxies",
        Some(json!({"name": "y", "listen": "127.0.0.1:0"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("upstream"), "{e}");

    let (status, p) = call(&c, "GET", "/proxies/pg", None).await;
    assert_eq!(
        (status, p["listen"].as_str().unwrap()),
        (200, listen.as_str())
    );
    assert_eq!(call(&c, "GET", "/proxies/nope", None).await.0, 404);

    let (status, p) = call(&c, "POST", "/proxies/pg", Some(json!({"enabled": false}))).await;
    assert_eq!((status, &p["enabled"]), (200, &json!(false)));
    assert!(TcpStream::connect(&listen).await.is_err(), "disabled");
    let (status, p) = call(&c, "PATCH", "/proxies/pg", Some(json!({"enabled": true}))).await;
    assert_eq!((status, &p["enabled"]), (200, &json!(true)));
    assert!(
        TcpStream::connect(&listen).await.is_ok(),
        "enabled again on the same port"
    );

    let (status, all) = call(&c, "GET", "/proxies", None).await;
    assert_eq!(status, 200);
    assert_eq!(all["pg"]["listen"], json!(listen));

    assert_eq!(call(&c, "DELETE", "/proxies/pg", None).await.0, 204);
    assert_eq!(call(&c, "DELETE", "/proxies/pg", None).await.0, 404);
}

#[tokio::test]
async fn toxics_crud_defaults_and_errors() {
    let (c, _) = server().await;
    let upstream = echo().await.to_string();
    call(
        &c,
        "POST",
        "/proxies",
        Some(json!({"name": "pg", "listen": "127.0.0.1:0", "upstream": upstream})),
    )
    .await;

    let (status, t) = call(
        &c,
        "POST",
        "/proxies/pg/toxics",
        Some(json!({"type": "latency", "attributes": {"latency": 100}})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        t,
        json!({"name": "latency_downstream", "type": "latency", "stream": "downstream", "toxicity": 1.0, "attributes": {"latency": 100, "jitter": 0}})
    );
    let (status, _) = call(
        &c,
        "POST",
        "/proxies/pg/toxics",
        Some(json!({"type": "latency"})),
    )
    .await;
    assert_eq!(status, 409, "same default name");
    let (status, t) = call(&c, "POST", "/proxies/pg/toxics", Some(json!({"name": "cut", "type": "limit_data", "stream": "upstream", "toxicity": 0.5, "attributes": {"bytes": 10}}))).await;
    assert_eq!(
        (status, &t["stream"], &t["toxicity"]),
        (200, &json!("upstream"), &json!(0.5))
    );

    for (body, needle) in [
        (json!({"type": "lag"}), "invalid toxic type"),
        (
            json!({"type": "latency", "name": "n", "attributes": {"latency": -1}}),
            "non-negative",
        ),
        (
            json!({"type": "latency", "name": "n", "stream": "up"}),
            "upstream or downstream",
        ),
        (
            json!({"type": "latency", "name": "n", "toxicity": 2}),
            "between 0 and 1",
        ),
    ] {
        let (status, e) = call(&c, "POST", "/proxies/pg/toxics", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}");
        assert!(e["error"].as_str().unwrap().contains(needle), "{body}: {e}");
    }
    assert_eq!(
        call(
            &c,
            "POST",
            "/proxies/nope/toxics",
            Some(json!({"type": "latency"}))
        )
        .await
        .0,
        404
    );

    let (status, list) = call(&c, "GET", "/proxies/pg/toxics", None).await;
    assert_eq!(
        (status, list.as_array().unwrap().len()),
        (200, 2),
        "bad requests changed nothing"
    );
    let (status, t) = call(&c, "GET", "/proxies/pg/toxics/cut", None).await;
    assert_eq!((status, &t["attributes"]["bytes"]), (200, &json!(10)));
    assert_eq!(
        call(&c, "GET", "/proxies/pg/toxics/nope", None).await.0,
        404
    );

    let (status, t) = call(
        &c,
        "PATCH",
        "/proxies/pg/toxics/latency_downstream",
        Some(json!({"attributes": {"jitter": 5}})),
    )
    .await;
    assert_eq!(
        (status, &t["attributes"]),
        (200, &json!({"latency": 100, "jitter": 5}))
    );
    let (status, t) = call(
        &c,
        "POST",
        "/proxies/pg/toxics/latency_downstream",
        Some(json!({"toxicity": 0.25})),
    )
    .await;
    assert_eq!((status, &t["toxicity"]), (200, &json!(0.25)));
    assert_eq!(
        call(
            &c,
            "POST",
            "/proxies/pg/toxics/latency_downstream",
            Some(json!({"attributes": {"latency": "slow"}}))
        )
        .await
        .0,
        400
    );

    assert_eq!(
        call(&c, "DELETE", "/proxies/pg/toxics/cut", None).await.0,
        204
    );
    assert_eq!(
        call(&c, "DELETE", "/proxies/pg/toxics/cut", None).await.0,
        404
    );

    call(&c, "POST", "/proxies/pg", Some(json!({"enabled": false}))).await;
    assert_eq!(call(&c, "POST", "/reset", None).await.0, 204);
    let (_, p) = call(&c, "GET", "/proxies/pg", None).await;
    assert_eq!((&p["enabled"], &p["toxics"]), (&json!(true), &json!([])));
}

#[tokio::test]
async fn populate_keeps_identical_and_replaces_changed() {
    let (c, _) = server().await;
    let upstream = echo().await.to_string();
    let other = echo().await.to_string();
    let (status, body) = call(
        &c,
        "POST",
        "/populate",
        Some(json!([
            {"name": "a", "listen": "127.0.0.1:0", "upstream": upstream},
            {"name": "b", "listen": "127.0.0.1:0", "upstream": upstream},
        ])),
    )
    .await;
    assert_eq!(status, 201);
    let a_listen = body["proxies"][0]["listen"].as_str().unwrap().to_string();
    let b_listen = body["proxies"][1]["listen"].as_str().unwrap().to_string();
    call(
        &c,
        "POST",
        "/proxies/a/toxics",
        Some(json!({"type": "latency"})),
    )
    .await;
    call(
        &c,
        "POST",
        "/proxies/b/toxics",
        Some(json!({"type": "latency"})),
    )
    .await;
    let (status, _) = call(
        &c,
        "POST",
        "/populate",
        Some(json!([
            {"name": "a", "listen": a_listen, "upstream": upstream},
            {"name": "b", "listen": b_listen, "upstream": other},
        ])),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        call(&c, "GET", "/proxies/a", None).await.1["toxics"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "identical: toxics kept"
    );
    let b = call(&c, "GET", "/proxies/b", None).await.1;
    assert_eq!(
        (
            b["upstream"].as_str().unwrap(),
            b["toxics"].as_array().unwrap().len()
        ),
        (other.as_str(), 0),
        "changed: replaced"
    );
    assert_eq!(
        call(&c, "POST", "/populate", Some(json!({"not": "a list"})))
            .await
            .0,
        400
    );
    assert_eq!(
        call(&c, "POST", "/populate", Some(json!([{"name": "c"}])))
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn malformed_bodies_browsers_version_and_metrics() {
    let (c, addr) = server().await;
    let bad = raw(addr, "POST /proxies HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\nConnection: close\r\n\r\n{\"name\":").await;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    assert!(
        bad.contains("\"status\":400") && bad.contains("\"error\""),
        "{bad}"
    );

    let browser = raw(addr, "GET /proxies HTTP/1.1\r\nHost: x\r\nUser-Agent: Mozilla/5.0 (X11)\r\nConnection: close\r\n\r\n").await;
    assert!(browser.starts_with("HTTP/1.1 403"), "{browser}");

    let (status, v) = call(&c, "GET", "/version", None).await;
    assert_eq!(status, 200);
    assert!(v["version"].as_str().unwrap().starts_with("2."));

    let upstream = echo().await.to_string();
    let (_, p) = call(
        &c,
        "POST",
        "/proxies",
        Some(json!({"name": "m", "listen": "127.0.0.1:0", "upstream": upstream})),
    )
    .await;
    let mut s = TcpStream::connect(p["listen"].as_str().unwrap())
        .await
        .unwrap();
    s.write_all(b"12345").await.unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).await.unwrap();
    let metrics = raw(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        metrics.contains("toxiproxy_proxy_sent_bytes_total{direction=\"upstream\""),
        "{metrics}"
    );
    assert!(metrics.contains("proxy=\"m\""), "{metrics}");
    assert!(metrics.contains("} 5\n"), "{metrics}");
    assert_eq!(call(&c, "GET", "/nowhere", None).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmodified_toxiproxy_client_drives_it() {
    let (_, addr) = server().await;
    let upstream = echo().await;
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    // toxiproxy_rust is blocking: run it on a blocking thread.
    let result = tokio::task::spawn_blocking(move || {
        let client = toxiproxy_rust::client::Client::new(addr);
        assert!(client.is_running());
        let proxies = client
            .populate(vec![toxiproxy_rust::proxy::ProxyPack::new(
                "compat".into(),
                listen.to_string(),
                upstream.to_string(),
            )])
            .map_err(|e| format!("populate: {e}"))?;
        assert_eq!(proxies.len(), 1);
        let proxy = client
            .find_proxy("compat")
            .map_err(|e| format!("find: {e}"))?;
        proxy.with_latency("downstream".into(), 50, 0, 1.0);
        proxy.with_limit_data("upstream".into(), 4096, 1.0);
        let toxics = proxy.toxics().map_err(|e| format!("toxics: {e}"))?;
        let names: Vec<_> = toxics.iter().map(|t| t.name.clone()).collect();
        assert_eq!(names, vec!["latency_downstream", "limit_data_upstream"]);
        let mut during_down = None;
        proxy
            .with_down(|| during_down = Some(std::net::TcpStream::connect(listen).is_err()))
            .map_err(|e| format!("down: {e}"))?;
        assert_eq!(during_down, Some(true), "down means refused");
        let all = client.all().map_err(|e| format!("all: {e}"))?;
        assert!(all.contains_key("compat"));
        let proxy = client
            .find_and_reset_proxy("compat")
            .map_err(|e| format!("reset proxy: {e}"))?;
        assert!(proxy.toxics().map_err(|e| e.to_string())?.is_empty());
        client.reset().map_err(|e| format!("reset: {e}"))?;
        Ok::<_, String>(())
    })
    .await
    .unwrap();
    result.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// Found by the `api` fuzz target's properties: errors axum answers itself were not in the
/// API's form, an address that cannot be listened on was a 500, and a proxy name with a
/// quote or newline broke `/metrics` for every scraper.
#[tokio::test]
async fn every_error_is_json_bad_listen_addresses_are_400_and_metrics_escape_names() {
    let api = chaos::fuzzing::ApiUnderTest::default();
    let (status, body) = api.check("PUT", "/proxies", b"{}").await;
    assert_eq!(status, 405);
    assert!(body["error"].as_str().unwrap().contains("PUT"), "{body}");
    for listen in ["nonsense", "127.0.0.1:70000", "localhost:http"] {
        let request = json!({"name": "p", "upstream": "127.0.0.1:1", "listen": listen});
        let (status, body) = api
            .check("POST", "/proxies", request.to_string().as_bytes())
            .await;
        assert_eq!(status, 400, "{listen}: {body}");
        assert!(body["error"].as_str().unwrap().contains(listen), "{body}");
    }
    let request = json!({"name": "a\"b\nc\\d", "upstream": "127.0.0.1:1", "listen": "127.0.0.1:0"});
    let (status, _) = api
        .check("POST", "/proxies", request.to_string().as_bytes())
        .await;
    assert_eq!(status, 201);
    // check() validates the exposition text; the escaped name is in it.
    api.check("GET", "/metrics", b"").await;
}

/// Each typed method of the client, against our server: what it sends is what the server
/// reads, what it parses is what the server answers, and errors keep their status.
#[tokio::test]
async fn the_typed_client_methods_round_trip() {
    let (c, _) = server().await;
    let upstream = echo().await.to_string();
    let config = chaos::proxy::ProxyConfig {
        name: "typed".into(),
        listen: "127.0.0.1:0".into(),
        upstream: upstream.clone(),
        enabled: true,
    };
    let created = c.create_proxy(&config).await.unwrap();
    assert_eq!(
        (created.name.as_str(), created.upstream.as_str()),
        ("typed", upstream.as_str())
    );
    assert_ne!(created.listen, "127.0.0.1:0", "the bound port is answered");
    match c.create_proxy(&config).await {
        Err(ControlError::Api { status: 409, .. }) => {}
        other => panic!("expected 409, got {other:?}"),
    }
    let shown = c.proxy("typed").await.unwrap();
    assert_eq!(shown["listen"], created.listen.as_str());
    let updated = c
        .update_proxy("typed", &json!({"enabled": false}))
        .await
        .unwrap();
    assert_eq!(updated["enabled"], false);

    let toxic = chaos::proxy::ToxicJson {
        name: "slow".into(),
        kind: "latency".into(),
        stream: "upstream".into(),
        toxicity: 0.5,
        attributes: json!({"latency": 120, "jitter": 5})
            .as_object()
            .unwrap()
            .clone(),
        duration_ms: None,
    };
    let added = c.add_toxic("typed", &toxic).await.unwrap();
    assert_eq!(
        (
            added.name.as_str(),
            added.kind.as_str(),
            added.stream.as_str(),
            added.toxicity
        ),
        ("slow", "latency", "upstream", 0.5)
    );
    assert_eq!(added.attributes["latency"], 120);
    assert_eq!(c.proxy("typed").await.unwrap()["toxics"][0]["name"], "slow");
    c.remove_toxic("typed", "slow").await.unwrap();
    match c.remove_toxic("typed", "slow").await {
        Err(ControlError::Api { status: 404, .. }) => {}
        other => panic!("expected 404, got {other:?}"),
    }
    c.add_toxic("typed", &toxic).await.unwrap();
    c.reset().await.unwrap();
    let after = c.proxy("typed").await.unwrap();
    assert_eq!(
        (after["enabled"].clone(), after["toxics"].clone()),
        (json!(true), json!([]))
    );
    c.delete_proxy("typed").await.unwrap();
    match c.proxy("typed").await {
        Err(ControlError::Api { status: 404, .. }) => {}
        other => panic!("expected 404, got {other:?}"),
    }
}

/// A populate that cannot bind one of its addresses changes nothing: proxies it created are
/// gone, the one it replaced is back where it was, toxics included.
#[tokio::test]
async fn populate_is_all_or_nothing_when_an_address_cannot_be_bound() {
    let (c, _) = server().await;
    let upstream = echo().await.to_string();
    let other = echo().await.to_string();
    let (status, body) = call(
        &c,
        "POST",
        "/populate",
        Some(json!([{"name": "kept", "listen": "127.0.0.1:0", "upstream": upstream}])),
    )
    .await;
    assert_eq!(status, 201);
    let kept_listen = body["proxies"][0]["listen"].as_str().unwrap().to_string();
    call(
        &c,
        "POST",
        "/proxies/kept/toxics",
        Some(json!({"type": "latency", "attributes": {"latency": 7}})),
    )
    .await;
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let (status, body) = call(
        &c,
        "POST",
        "/populate",
        Some(json!([
            {"name": "new", "listen": "127.0.0.1:0", "upstream": upstream},
            {"name": "kept", "listen": kept_listen, "upstream": other},
            {"name": "clash", "listen": taken_addr, "upstream": upstream},
        ])),
    )
    .await;
    assert_eq!(status, 500, "{body}");
    let (_, list) = call(&c, "GET", "/proxies", None).await;
    let names: Vec<&String> = list.as_object().unwrap().keys().collect();
    assert_eq!(names, ["kept"], "nothing of the failed populate stays");
    let kept = &list["kept"];
    assert_eq!(kept["listen"], kept_listen.as_str());
    assert_eq!(
        kept["upstream"],
        upstream.as_str(),
        "the replaced proxy is restored"
    );
    assert_eq!(
        kept["toxics"][0]["attributes"]["latency"], 7,
        "with its toxics"
    );
    // It still forwards.
    let mut s = TcpStream::connect(&kept_listen).await.unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ping");
    let (status, _) = call(
        &c,
        "POST",
        "/populate",
        Some(json!([
            {"name": "twice", "listen": "127.0.0.1:0", "upstream": upstream},
            {"name": "twice", "listen": "127.0.0.1:0", "upstream": upstream},
        ])),
    )
    .await;
    assert_eq!(status, 400, "a name listed twice");
    drop(taken);
}

/// Values the proxy cannot apply are refused, not wrapped into no delay at all.
#[tokio::test]
async fn attribute_values_past_what_the_proxy_can_apply_are_400() {
    let (c, _) = server_with_proxy_p().await;
    for (kind, attributes) in [
        ("latency", json!({"latency": u64::MAX})),
        (
            "latency",
            json!({"latency": 10, "jitter": 9_223_372_036_854_775_807u64}),
        ),
        ("timeout", json!({"timeout": 315_360_000_001u64})),
        ("slicer", json!({"delay": u64::MAX})),
    ] {
        let (status, body) = call(
            &c,
            "POST",
            "/proxies/p/toxics",
            Some(json!({"type": kind, "attributes": attributes})),
        )
        .await;
        assert_eq!(status, 400, "{kind} {attributes}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("more than the proxy can apply"),
            "{body}"
        );
    }
    let (status, _) = call(
        &c,
        "POST",
        "/proxies/p/toxics",
        Some(json!({"type": "latency", "attributes": {"latency": 315_360_000_000u64}})),
    )
    .await;
    assert_eq!(status, 200, "ten years is the most, and it is accepted");
    let (status, _) = call(
        &c,
        "PATCH",
        "/proxies/p/toxics/latency_downstream",
        Some(json!({"attributes": {"latency": u64::MAX}})),
    )
    .await;
    assert_eq!(status, 400, "an update is checked alike");
}

/// Toxiproxy ignores a type, stream or name in an update (a silent no-op): here it is 400.
#[tokio::test]
async fn an_update_cannot_change_a_toxics_type_stream_or_name() {
    let (c, _) = server_with_proxy_p().await;
    call(
        &c,
        "POST",
        "/proxies/p/toxics",
        Some(json!({"type": "latency", "attributes": {"latency": 5}})),
    )
    .await;
    for change in [
        json!({"type": "timeout"}),
        json!({"stream": "upstream"}),
        json!({"name": "other"}),
        json!({"type": 3}),
    ] {
        let (status, body) = call(
            &c,
            "PATCH",
            "/proxies/p/toxics/latency_downstream",
            Some(change.clone()),
        )
        .await;
        assert_eq!(status, 400, "{change}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("cannot change"),
            "{body}"
        );
    }
    // The whole toxic sent back, with a new attribute, is an update.
    let (status, toxic) = call(
        &c,
        "PATCH",
        "/proxies/p/toxics/latency_downstream",
        Some(json!({"name": "latency_downstream", "type": "latency", "stream": "downstream", "attributes": {"latency": 9}})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(toxic["attributes"]["latency"], 9);
}

/// A client that announces a body and never sends it gets 408 at the body deadline; one that
/// never finishes its headers is disconnected; a body over the limit is 413 from its
/// Content-Length alone; and connections past the cap wait instead of piling up.
#[tokio::test]
async fn slow_or_oversized_requests_are_bounded() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = chaos::api::Limits {
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        max_connections: 2,
    };
    let router = chaos::api::router(Arc::new(Proxies::new(1)));
    tokio::spawn(chaos::api::serve_with(
        listener,
        router,
        limits,
        std::future::pending(),
    ));

    let started = std::time::Instant::now();
    let answer = raw(
        addr,
        "POST /proxies HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"na",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("\"status\":408") && answer.contains("did not arrive"),
        "{answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let answer = raw(
        addr,
        "POST /proxies HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"status\":413"), "{answer}");

    // Headers that never end: the connection is closed at the header deadline.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "still open past the header deadline");

    // Two connections hold the cap; a third is served once one of them goes.
    let a = TcpStream::connect(addr).await.unwrap();
    let b = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let third = tokio::spawn(raw(
        addr,
        "GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!third.is_finished(), "served past the connection cap");
    drop((a, b));
    let answer = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("served once the cap freed")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Timed toxics: `duration_ms` removes a toxic after that long; toxics without it look as
/// they always did; a bad duration is a 400 that says what is allowed; an update may send the
/// same duration back but not change it.
#[tokio::test]
async fn a_timed_toxic_removes_itself_and_plain_ones_look_as_before() {
    let (c, _) = server_with_proxy_p().await;
    let (status, plain) = call(
        &c,
        "POST",
        "/proxies/p/toxics",
        Some(json!({"type": "latency", "name": "plain", "attributes": {"latency": 5}})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(plain.get("duration_ms").is_none(), "{plain}");
    let (status, timed) = call(
        &c,
        "POST",
        "/proxies/p/toxics",
        Some(json!({"type": "timeout", "name": "timed", "duration_ms": 300, "attributes": {"timeout": 0}})),
    )
    .await;
    assert_eq!(status, 200, "{timed}");
    assert_eq!(timed["duration_ms"], 300);
    let (_, listed) = call(&c, "GET", "/proxies/p/toxics", None).await;
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    // The same duration sent back in an update is fine; another is refused.
    let (status, _) = call(
        &c,
        "PATCH",
        "/proxies/p/toxics/timed",
        Some(json!({"duration_ms": 300, "toxicity": 0.5})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &c,
        "PATCH",
        "/proxies/p/toxics/timed",
        Some(json!({"duration_ms": 9000})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("set when it is added"),
        "{body}"
    );
    for bad in [json!(0), json!(-5), json!("1s"), json!(1.5)] {
        let (status, body) = call(
            &c,
            "POST",
            "/proxies/p/toxics",
            Some(json!({"type": "latency", "name": "bad", "duration_ms": bad})),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("whole number of milliseconds"),
            "{body}"
        );
    }
    // Gone after its duration (bounded wait with margin); the plain one stays.
    let started = std::time::Instant::now();
    loop {
        let (_, listed) = call(&c, "GET", "/proxies/p/toxics", None).await;
        let names: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        if names == ["plain"] {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{names:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
}
