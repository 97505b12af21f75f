//! The `chaos` command line as a library: [`args`] (every command and flag), and one driver
//! per command that hands the work to the library and turns its result into an exit status.
//! `src/bin/chaos.rs` parses, sets up tracing and calls [`dispatch`].

pub mod args;
mod exec;
mod exit;
mod run;
mod serve;
mod soak;
mod toxic;

pub use args::{Cli, Command};
pub use exit::Exit;

/// Runs one command (`chaos run` when none is given), heeding `signals`.
///
/// # Errors
/// What the command reports, with its exit status when it has one ([`Exit`]).
pub async fn dispatch(
    command: Option<Command>,
    signals: crate::signals::Signals,
) -> anyhow::Result<()> {
    match command.unwrap_or(Command::Run(args::RunArgs::default())) {
        Command::Run(args) => run::run(args, signals).await,
        Command::Smoke => {
            // The handlers are installed for every command, so each one must heed them.
            let mut signals = signals;
            tokio::select! {
                r = serve::smoke() => r,
                signal = signals.recv() => Err(Exit(
                    signal.exit_code(),
                    format!("interrupted by {signal}; the throwaway cluster is stopped"),
                )
                .into()),
            }
        }
        Command::Serve(args) => serve::serve(args, signals).await,
        Command::Soak(args) => soak::soak(args, signals).await,
        Command::Exec(args) => exec::exec(args, signals).await,
        Command::Proxy(args) => toxic::proxy_cli(args).await,
        Command::Toxic(args) => toxic::toxic_cli(args).await,
    }
}
