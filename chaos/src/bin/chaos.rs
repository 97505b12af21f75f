//! The `chaos` command line: argument parsing and tracing set-up only.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Fault injection for PostgreSQL connection pools.
#[derive(Debug, Parser)]
#[command(name = "chaos", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run against a throwaway PostgreSQL (or DATABASE_URL): the default command.
    Run,
    /// Serve the Toxiproxy-compatible HTTP API (any Toxiproxy client can drive it).
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address of the API (loopback by default: anyone who reaches it can cut connections).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port of the API (Toxiproxy's default is 8474).
    #[arg(long, default_value_t = 8474)]
    port: u16,
    /// A JSON list of proxies to create at start, as for `POST /populate`
    /// (e.g. fixtures/toxiproxy.json).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Seed of every random choice (jitter, toxicity, slicing), so a run can be replayed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => runtime.block_on(run()),
        Command::Serve(args) => runtime.block_on(serve(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    println!("chaos: starting the database...");
    let db = tokio::task::spawn_blocking(chaos::postgres::Database::from_env).await??;
    println!("chaos: using {}", db.describe());
    chaos::smoke::run(&db, |step| {
        println!("  ok  {:<70} {:>8.1?}", step.name, step.took);
    })
    .await?;
    println!("chaos: smoke run passed in {:.1?}", started.elapsed());
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let proxies = std::sync::Arc::new(chaos::proxy::Proxies::new(args.seed));
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read the proxy list {}", path.display()))?;
        let configs: Vec<chaos::proxy::ProxyConfig> = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a JSON list of proxies ({{\"name\", \"listen\", \"upstream\", \"enabled\"}})",
                path.display()
            )
        })?;
        let created = proxies.populate(configs).map_err(|(e, _)| {
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
    let addr = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| {
        format!("could not listen on {addr}: is another Toxiproxy or `chaos serve` running? choose another --port")
    })?;
    println!(
        "chaos serve: Toxiproxy API on http://{} (seed {}); Ctrl-C stops",
        listener.local_addr()?,
        args.seed
    );
    chaos::api::serve(listener, proxies, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
