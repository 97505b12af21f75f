//! The `chaos` command line: tracing set-up, argument parsing, and the command handed to the
//! library ([`chaos::cli`]), whose result becomes the exit status.

use std::process::ExitCode;

use clap::Parser;

/// How long `chaos` waits, at its end, for throwaway clusters still being made to be stopped.
const CLUSTER_CLEANUP: std::time::Duration = std::time::Duration::from_secs(60);

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
    let cli = chaos::cli::Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    // First of all, so no signal can kill the process before it can clean up.
    let signals = match runtime.block_on(async { chaos::signals::Signals::install() }) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("error: could not install the signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(chaos::cli::dispatch(cli.command, signals));
    // Work still running (a pool's tasks, a cluster start that a signal cut short) gets a
    // moment to end; a cluster it leaves is stopped by its watchdog when this process exits.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    // A cluster still being made on a blocking thread (initdb, pg_basebackup) has no watchdog
    // yet: wait for it to be made and dropped, or its directory stays behind.
    let left = chaos::postgres::wait_for_clusters(CLUSTER_CLEANUP);
    if left > 0 {
        eprintln!(
            "chaos: {left} throwaway cluster(s) still starting after {CLUSTER_CLEANUP:?}; their directories (chaos-pg-* in the temporary directory) may be left behind"
        );
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(chaos::cli::Exit::status_of(&e))
        }
    }
}
