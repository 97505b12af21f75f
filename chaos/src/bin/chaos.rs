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
    /// Run the chaos suite against a throwaway PostgreSQL (or DATABASE_URL): the default.
    Run(RunArgs),
    /// A quick start/crash/restart check of the throwaway cluster.
    Smoke,
    /// Serve the Toxiproxy-compatible HTTP API (any Toxiproxy client can drive it).
    Serve(ServeArgs),
}

#[derive(Debug, Default, clap::Args)]
struct RunArgs {
    /// Which pools to run: ours, deadpool-postgres, bb8-postgres, or all side by side (peers
    /// run at their defaults and with recommended timeouts).
    #[arg(long, value_enum, default_value = "pool")]
    pool: Option<chaos::scenario::PoolChoice>,
    /// Run only this scenario (repeatable); see --list.
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Seed of every random choice (jitter, toxicity, slicing): the same seed replays a run.
    #[arg(long)]
    seed: Option<u64>,
    /// CI-sized run (under a minute for one pool).
    #[arg(long)]
    quick: bool,
    /// Where the report files go (default target/chaos/<time>/).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// What to print at the end.
    #[arg(long, value_enum, default_value = "text")]
    format: Option<Format>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
    Markdown,
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
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        .with(chaos::scenario::logs::CaptureLayer)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = match cli.command.unwrap_or(Command::Run(RunArgs::default())) {
        Command::Run(args) => runtime.block_on(run(args)),
        Command::Smoke => runtime.block_on(smoke()),
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

async fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.list {
        for (name, what) in chaos::suite::all_scenarios() {
            println!("{name:<20} {what}");
        }
        return Ok(());
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    let out = args.out.unwrap_or_else(chaos::suite::default_out);
    let options = chaos::suite::Options {
        pool: args.pool.unwrap_or(chaos::scenario::PoolChoice::Pool),
        scenarios: args.scenarios,
        seed,
        quick: args.quick,
        out: out.clone(),
    };
    eprintln!("chaos: starting the database and the proxy (seed {seed})...");
    let report = chaos::suite::run(options).await?;
    match args.format.unwrap_or(Format::Text) {
        Format::Text => println!("{}", report.to_text()),
        Format::Json => println!("{}", report.to_json()),
        Format::Markdown => println!("{}", report.to_markdown()),
    }
    eprintln!(
        "chaos: report written to {}/ (index.html, report.json, report.md, *.svg, history/)",
        out.display()
    );
    if !report.passed() {
        anyhow::bail!("some scenarios of the pool missed their criteria (see the report)");
    }
    Ok(())
}

async fn smoke() -> anyhow::Result<()> {
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
