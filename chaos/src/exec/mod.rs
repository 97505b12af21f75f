//! `chaos exec`: any program, in any language, under a fault plan.
//!
//! With a plan's `[cluster]`, the command gets the HA cluster instead ([`under`]):
//! `DATABASE_URL` is its multi-host URL with `target_session_attrs=read-write` (or HAProxy's
//! address, `route = "haproxy"`), `CHAOS_DIRECT_URL` the nodes' multi-host URL, the `ha_*`
//! faults act on the cluster, and the watch records every change of the nodes' roles.
//!
//! Otherwise the database (a throwaway cluster, or `DATABASE_URL`) gets the proxy in front; the command
//! runs in a process group of its own with `DATABASE_URL` pointing through the proxy,
//! `CHAOS_DIRECT_URL` at the server itself (for checks that must bypass the faults),
//! `TOXIPROXY_URL` at an API driving that proxy (it may add faults of its own) and
//! `CHAOS_PROXY` naming it. The plan's clock starts with the command, or once the service is
//! ready (`--ready`); when the command ends, faults still in force are healed, those not begun
//! are reported as not reached, and whatever of its group still runs is stopped. The server is
//! watched throughout ([`watch`]). The command's output passes through and is recorded with
//! the time of each line, beside the fault windows and the server's changes, in the report
//! files (`report.json`, `report.md`, `timeline.svg`, `output.txt`, `server.log`).

mod error;
mod files;
pub mod group;
mod ready;
mod report;
mod svg;
mod under;
pub mod watch;

pub use error::ExecError;
pub use ready::{READY_FORMS, Ready};
pub use report::{ExecFault, ExecReport, OutputLine, rfc3339};

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch as signal;
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
    /// The run's name in the console, the report and the timeline (default: the command's
    /// first word).
    pub name: Option<String>,
    /// When the service is ready: the plan's clock starts then (default: at once).
    pub ready: Option<Ready>,
    /// How long to wait for `ready` before giving up (the command is stopped, exit 2).
    pub ready_timeout: Duration,
    /// Whether faults the command did not live to see are allowed (else exit 3).
    pub allow_unreached: bool,
}

impl ExecOptions {
    /// Options with the defaults: no name, no readiness wait (30 s when one is set), faults
    /// not reached count against the run.
    pub fn new(plan: Plan, command: Vec<OsString>, out: PathBuf, seed: u64) -> Self {
        Self {
            plan,
            command,
            out,
            seed,
            name: None,
            ready: None,
            ready_timeout: Duration::from_secs(30),
            allow_unreached: false,
        }
    }
}

/// The default name of a run: the command's first word, without its directory.
pub fn default_name(command: &[OsString]) -> String {
    command
        .first()
        .map(|p| {
            std::path::Path::new(p)
                .file_name()
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned()
        })
        .unwrap_or_default()
}

/// Runs the command under the plan until it ends (or `stop` fires: the command's group then
/// gets SIGTERM, and SIGKILL [`group::GRACE`] later), and writes the report files.
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
    let under = under::Under::start(&options.plan, options.seed).await?;
    let name = options
        .name
        .clone()
        .unwrap_or_else(|| default_name(&options.command));
    let env = under.env();

    let mut child = tokio::process::Command::new(&program)
        .args(&options.command[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ExecError::Spawn {
            command: program.to_string_lossy().into_owned(),
            source,
        })?;
    let origin = Instant::now();
    let wall = SystemTime::now();
    let pgid = child.id().unwrap_or(0);
    progress(&format!(
        "[{name}] started `{}` (process group {pgid}) with {}",
        display(&options.command),
        under.given()
    ));

    let (watch_stop, watch_stopped) = signal::channel(false);
    let watcher = under.watch(origin, watch_stopped);
    let output = Arc::new(Mutex::new(Vec::new()));
    let (matched_tx, matched_rx) = signal::channel(false);
    let matched_tx = Arc::new(matched_tx);
    let pattern = options.ready.as_ref().and_then(Ready::pattern).cloned();
    let readers = [
        child.stdout.take().map(|s| {
            let (p, m) = (pattern.clone(), Arc::clone(&matched_tx));
            pump(s, "stdout", origin, Arc::clone(&output), p, m)
        }),
        child.stderr.take().map(|s| {
            let (p, m) = (pattern.clone(), Arc::clone(&matched_tx));
            pump(s, "stderr", origin, Arc::clone(&output), p, m)
        }),
    ];

    // The command's end (`done`), and the plan asking for it to be stopped (`abort`: never
    // ready).
    let (done_tx, done_rx) = signal::channel(false);
    let (abort_tx, mut abort_rx) = signal::channel(false);
    let plan_offset = OnceLock::new();
    let on_event = |e: &PlanEvent| {
        let at = |t: f64| t + plan_offset.get().copied().unwrap_or(0.0);
        let what = match (e.end_s, &e.error, e.effective_s) {
            (None, _, Some(t)) => format!(
                "{:.2}s: {} begins (line {}), {:+.0} ms from its planned time",
                at(t),
                e.label,
                e.line,
                (t - e.planned_s) * 1000.0
            ),
            (None, _, None) => return,
            (Some(end), None, _) => format!("{:.2}s: {} healed", at(end), e.label),
            (Some(end), Some(err), _) => {
                format!("{:.2}s: {} could not be applied: {err}", at(end), e.label)
            }
        };
        progress(&what);
    };
    let plan_part = async {
        let mut command_ended = done_rx.clone();
        let ready_at = match &options.ready {
            None => Ok(origin),
            Some(ready) => {
                progress(&format!(
                    "waiting for the service to be ready ({ready}; up to {:?}): the plan's clock starts then",
                    options.ready_timeout
                ));
                tokio::select! {
                    r = tokio::time::timeout(options.ready_timeout, ready.wait(matched_rx, &env)) => match r {
                        Ok(()) => Ok(Instant::now()),
                        Err(_) => Err(format!("not ready after {:?} ({ready})", options.ready_timeout)),
                    },
                    _ = command_ended.wait_for(|d| *d) => Err(format!("the command ended before it was ready ({ready})")),
                }
            }
        };
        let ready_at = match ready_at {
            Ok(t) => t,
            Err(why) => {
                let _ = abort_tx.send(true);
                return (origin, crate::plan::not_begun(&options.plan), Some(why));
            }
        };
        let offset = ready_at.duration_since(origin).as_secs_f64();
        let _ = plan_offset.set(offset);
        if options.ready.is_some() {
            progress(&format!(
                "ready after {offset:.2} s: the plan's clock starts"
            ));
        }
        let mut ended = done_rx.clone();
        let events = under
            .run(
                &options.plan,
                ready_at,
                async move {
                    let _ = ended.wait_for(|d| *d).await;
                },
                &on_event,
            )
            .await;
        (ready_at, events, None)
    };
    let mut interrupted = None;
    let command = async {
        tokio::pin!(stop);
        let status = tokio::select! {
            status = child.wait() => status,
            signal = &mut stop => {
                interrupted = Some(signal.to_string());
                progress(&format!("{signal}: stopping the command's group (SIGTERM, then SIGKILL after {:?})", group::GRACE));
                stop_command(&mut child, pgid).await
            }
            _ = abort_rx.wait_for(|a| *a) => {
                progress(&format!("the service was not ready: stopping the command's group (SIGTERM, then SIGKILL after {:?})", group::GRACE));
                stop_command(&mut child, pgid).await
            }
        };
        let _ = done_tx.send(true);
        // Only the command is waited for: what it left running in its group is stopped.
        let stopped = group::stop(pgid, group::GRACE).await;
        (status, stopped)
    };
    let ((ready_at, events, not_ready), (status, stopped)) = tokio::join!(plan_part, command);
    let ran_s = origin.elapsed().as_secs_f64();
    if stopped.left_running > 0 {
        progress(&format!(
            "the command left {} process(es) of its group running: stopped them ({} needed SIGKILL)",
            stopped.left_running, stopped.killed
        ));
    }
    for reader in readers.into_iter().flatten() {
        // A process that left the group may still hold the pipe: do not wait for it.
        let abort = reader.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), reader)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    let _ = watch_stop.send(true);
    let mut server = watcher.await.unwrap_or_default();
    let database = under.describe();
    std::fs::create_dir_all(&options.out).map_err(|source| crate::Error::Write {
        path: options.out.clone(),
        source,
    })?;
    let server_log = under.keep_log(&options.out);
    under.close().await;
    let status = status.map_err(|source| crate::Error::Io {
        what: "waiting for the command",
        source,
    })?;
    use std::os::unix::process::ExitStatusExt;
    let mut output = std::mem::take(&mut *output.lock().unwrap_or_else(|e| e.into_inner()));
    output.sort_by(|a: &OutputLine, b| a.t_s.total_cmp(&b.t_s));
    let plan_started_s = ready_at.duration_since(origin).as_secs_f64();
    let at_wall = |t: f64| rfc3339(wall + Duration::from_secs_f64(t.max(0.0)));
    let faults: Vec<ExecFault> = events
        .into_iter()
        .map(|mut e| {
            let shift = |v: &mut Option<f64>| *v = v.map(|t| t + plan_started_s);
            let offset_ms = e.effective_s.map(|t| (t - e.planned_s) * 1000.0);
            e.planned_s += plan_started_s;
            shift(&mut e.start_s);
            shift(&mut e.effective_s);
            shift(&mut e.end_s);
            ExecFault {
                effective_at: e.effective_s.map(at_wall),
                offset_ms,
                event: e,
            }
        })
        .collect();
    watch::judge(&mut server, faults.iter().map(|f| &f.event));
    let report = ExecReport {
        name,
        command: options
            .command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        started_at: rfc3339(wall),
        plan_started_s,
        plan_started_at: at_wall(plan_started_s),
        ready: options.ready.as_ref().map(ToString::to_string),
        exit_code: status.code(),
        exit_signal: status.signal(),
        ran_s,
        database,
        seed: options.seed,
        faults,
        server,
        server_log,
        group: stopped,
        output,
        interrupted,
        not_ready,
        allow_unreached: options.allow_unreached,
    };
    files::write(&report, &options.out)?;
    Ok(report)
}

/// SIGTERM to the command's group, SIGKILL after [`group::GRACE`]; the command's status.
async fn stop_command(
    child: &mut tokio::process::Child,
    pgid: u32,
) -> std::io::Result<std::process::ExitStatus> {
    group::signal(pgid, libc::SIGTERM);
    match tokio::time::timeout(group::GRACE, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            group::signal(pgid, libc::SIGKILL);
            child.wait().await
        }
    }
}

/// The command on one console line: whitespace runs (newlines too) as one space, cut to 100
/// characters.
fn display(command: &[OsString]) -> String {
    let text = command
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 100 {
        format!("{}…", one_line.chars().take(99).collect::<String>())
    } else {
        one_line
    }
}

/// Passes a stream of the command's through to ours, recording each line with its time, and
/// turning `matched` true at the first line `ready` matches.
fn pump(
    stream: impl AsyncRead + Unpin + Send + 'static,
    name: &'static str,
    origin: Instant,
    into: Arc<Mutex<Vec<OutputLine>>>,
    ready: Option<regex::Regex>,
    matched: Arc<signal::Sender<bool>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if name == "stdout" {
                println!("{line}");
            } else {
                eprintln!("{line}");
            }
            if ready.as_ref().is_some_and(|re| re.is_match(&line)) {
                matched.send_replace(true);
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
