//! `chaos exec`: any program, in any language, under a fault plan.
//!
//! The database (a throwaway cluster, or `DATABASE_URL`) gets the proxy in front; the command
//! runs with `DATABASE_URL` pointing through the proxy, `TOXIPROXY_URL` at an API driving that
//! proxy (it may add faults of its own) and `CHAOS_PROXY` naming it; the plan's faults are
//! applied on their timeline from the command's start; when the command ends, faults still in
//! force are healed and those not begun are skipped. Its output passes through and is
//! recorded with the time of each line, beside the fault windows, in the report files
//! (`report.json`, `report.md`, `timeline.svg`, `output.txt`).

mod files;
mod report;
mod svg;

pub use report::{ExecReport, OutputLine};

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::time::Instant;

use crate::plan::{Plan, PlanEvent};
use crate::signals::Interrupt;

/// What to run, under what.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// The plan (checked already: [`Plan::from_file`]).
    pub plan: Plan,
    /// The command and its arguments.
    pub command: Vec<OsString>,
    /// Where the report files go.
    pub out: PathBuf,
    /// Seeds the proxy's random choices (jitter, toxicity rolls).
    pub seed: u64,
}
/// Why `chaos exec` could not run the command at all.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Nothing to run.
    #[error("no command given: chaos exec --plan PLAN -- CMD [ARGS...]")]
    NoCommand,
    /// The plan asks for what this machine or database cannot do.
    #[error("the plan cannot be applied here, so the command was not started: {0}")]
    Unsupported(String),
    /// The command did not start.
    #[error("could not start `{command}`: {source}; check that it is installed and on PATH")]
    Spawn {
        /// The program.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The environment (database, proxy, API) could not be made.
    #[error(transparent)]
    Setup(#[from] crate::Error),
}

/// Runs the command under the plan until it ends (or `stop` fires: the command then gets
/// SIGTERM, and SIGKILL 5 s later), and writes the report files.
pub async fn exec(
    options: ExecOptions,
    stop: impl std::future::Future<Output = Interrupt>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<ExecReport, ExecError> {
    let Some(program) = options.command.first().cloned() else {
        return Err(ExecError::NoCommand);
    };
    if let Err(e) = options.plan.kernel_ready() {
        return Err(ExecError::Unsupported(e.to_string()));
    }
    let harness = crate::plan::Harness::start(options.seed).await?;
    if options
        .plan
        .faults
        .iter()
        .any(|f| matches!(&f.what, crate::plan::What::Matrix(m) if m.needs_cluster))
        && harness.env().db.cluster().is_none()
    {
        return Err(ExecError::Unsupported(
            "server_restart stops the server, and DATABASE_URL points at one this process does not own; unset DATABASE_URL to use a throwaway cluster".into(),
        ));
    }
    let api = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|source| crate::Error::Io {
            what: "could not bind the API for the command",
            source,
        })?;
    let api_url = format!(
        "http://{}",
        api.local_addr().map_err(|source| crate::Error::Io {
            what: "could not read the API's address",
            source,
        })?
    );
    let (api_stop, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api_task = tokio::spawn(crate::api::serve(
        api,
        Arc::clone(harness.proxies()),
        async move {
            let _ = api_stopped.await;
        },
    ));

    let mut child = tokio::process::Command::new(&program)
        .args(&options.command[1..])
        .env("DATABASE_URL", harness.database_url())
        .env("TOXIPROXY_URL", &api_url)
        .env("CHAOS_PROXY", harness.proxy_name())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ExecError::Spawn {
            command: program.to_string_lossy().into_owned(),
            source,
        })?;
    let origin = Instant::now();
    progress(&format!(
        "started `{}` with DATABASE_URL through the proxy ({}) and TOXIPROXY_URL={api_url}",
        display(&options.command),
        crate::postgres::redact_url(harness.database_url())
    ));
    let output = Arc::new(Mutex::new(Vec::new()));
    let readers = [
        child
            .stdout
            .take()
            .map(|s| pump(s, "stdout", origin, Arc::clone(&output))),
        child
            .stderr
            .take()
            .map(|s| pump(s, "stderr", origin, Arc::clone(&output))),
    ];
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let on_event = |e: &PlanEvent| {
        let what = match (e.end_s, &e.error) {
            (None, _) => format!(
                "{:.1}s: {} begins (line {})",
                e.start_s.unwrap_or(0.0),
                e.label,
                e.line
            ),
            (Some(end), None) => format!("{end:.1}s: {} healed", e.label),
            (Some(end), Some(err)) => format!("{end:.1}s: {} could not be applied: {err}", e.label),
        };
        progress(&what);
    };
    let plan_run = harness.run_from(
        &options.plan,
        origin,
        async move {
            let _ = done_rx.wait_for(|d| *d).await;
        },
        &on_event,
    );
    let mut interrupted = None;
    let command = async {
        tokio::pin!(stop);
        let status = tokio::select! {
            status = child.wait() => status,
            signal = &mut stop => {
                interrupted = Some(signal.to_string());
                progress(&format!("{signal}: stopping the command (SIGTERM, then SIGKILL after 5 s)"));
                if let Some(pid) = child.id() {
                    // SAFETY: kill with a pid we own and a valid signal number.
                    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                }
                match tokio::time::timeout(std::time::Duration::from_secs(5), child.wait()).await {
                    Ok(status) => status,
                    Err(_) => {
                        let _ = child.start_kill();
                        child.wait().await
                    }
                }
            }
        };
        let _ = done_tx.send(true);
        status
    };
    let (faults, status) = tokio::join!(plan_run, command);
    let ran_s = origin.elapsed().as_secs_f64();
    for reader in readers.into_iter().flatten() {
        let _ = reader.await;
    }
    let database = harness.env().db.describe();
    harness.close().await;
    let _ = api_stop.send(());
    let _ = api_task.await;
    let status = status.map_err(|source| crate::Error::Io {
        what: "waiting for the command",
        source,
    })?;
    use std::os::unix::process::ExitStatusExt;
    let mut output = std::mem::take(&mut *output.lock().unwrap_or_else(|e| e.into_inner()));
    output.sort_by(|a: &OutputLine, b| a.t_s.total_cmp(&b.t_s));
    let report = ExecReport {
        command: options
            .command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        exit_code: status.code(),
        exit_signal: status.signal(),
        ran_s,
        database,
        seed: options.seed,
        faults,
        output,
        interrupted,
    };
    files::write(&report, &options.out)?;
    Ok(report)
}

fn display(command: &[OsString]) -> String {
    command
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Passes a stream of the command's through to ours, recording each line with its time.
fn pump(
    stream: impl AsyncRead + Unpin + Send + 'static,
    name: &'static str,
    origin: Instant,
    into: Arc<Mutex<Vec<OutputLine>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if name == "stdout" {
                println!("{line}");
            } else {
                eprintln!("{line}");
            }
            into.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(OutputLine {
                    t_s: origin.elapsed().as_secs_f64(),
                    stream: name,
                    text: line,
                });
        }
    })
}
