//! `chaos serve` (the Toxiproxy-compatible API) and `chaos smoke`.

use super::args::ServeArgs;

pub(super) async fn serve(
    args: ServeArgs,
    mut signals: crate::signals::Signals,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let proxies = std::sync::Arc::new(crate::proxy::Proxies::new(args.seed));
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read the proxy list {}", path.display()))?;
        let configs: Vec<crate::proxy::ProxyConfig> = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a JSON list of proxies ({{\"name\", \"listen\", \"upstream\", \"enabled\"}})",
                path.display()
            )
        })?;
        let created = proxies.populate(configs).map_err(|e| {
            anyhow::anyhow!("could not create the proxies of {}: {e}", path.display())
        })?;
        for p in created {
            println!(
                "proxy {} listening on {} -> {}",
                p.name(),
                p.listen(),
                p.upstream()
            );
        }
    }
    let listener = bind_api(&args.host, args.port).await?;
    println!(
        "chaos serve: Toxiproxy API on http://{} (seed {}); Ctrl-C stops",
        listener.local_addr()?,
        args.seed
    );
    crate::api::serve(listener, proxies, async move {
        let signal = signals.recv().await;
        eprintln!("chaos serve: {signal}: stopping");
    })
    .await?;
    Ok(())
}

/// Binds the API's address, saying which of host and port is wrong when it fails.
pub(super) async fn bind_api(host: &str, port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    let addrs: Vec<std::net::SocketAddr> = match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => addrs.collect(),
        Err(e) => anyhow::bail!(
            "--host {host} is not an IP address or a name that resolves ({e}); give an address of this machine, e.g. 127.0.0.1 or 0.0.0.0"
        ),
    };
    let mut last = None;
    for addr in &addrs {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some((*addr, e)),
        }
    }
    let Some((addr, e)) = last else {
        anyhow::bail!("--host {host} resolves to no address");
    };
    match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::bail!(
            "port {port} on {addr} is in use: is another Toxiproxy or `chaos serve` running? choose another --port"
        ),
        std::io::ErrorKind::AddrNotAvailable => anyhow::bail!(
            "--host {host} ({addr}) is not an address of this machine; give one of its addresses, e.g. 127.0.0.1 or 0.0.0.0"
        ),
        std::io::ErrorKind::PermissionDenied => anyhow::bail!(
            "port {port} needs privileges to listen on ({e}); choose a port above 1023"
        ),
        _ => anyhow::bail!("could not listen on {addr}: {e}"),
    }
}

pub(super) async fn smoke() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    println!("chaos: starting the database...");
    let db = tokio::task::spawn_blocking(crate::postgres::Database::from_env).await??;
    println!("chaos: using {}", db.describe());
    crate::smoke::run(&db, |step| {
        println!("  ok  {:<70} {:>8.1?}", step.name, step.took);
    })
    .await?;
    println!("chaos: smoke run passed in {:.1?}", started.elapsed());
    Ok(())
}
