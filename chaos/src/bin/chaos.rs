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
