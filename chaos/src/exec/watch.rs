//! The run's server, watched for the whole command: a direct connection attempt (not through
//! the proxy, so the plan's proxy faults do not touch it) every 250 ms and, for a throwaway
//! cluster, its postmaster. Each change is recorded; one that no planned fault explains (the
//! server stopped, restarted or refused outside a `server_restart` window) is a finding of
//! the run, not of the command.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::plan::PlanEvent;
use crate::postgres::Cluster;

/// How often the server is probed.
const EVERY: Duration = Duration::from_millis(250);
/// How long after a `server_restart` heals its effects still count as asked for.
const SETTLE_S: f64 = 3.0;

/// One change in the server's state.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServerEvent {
    /// Seconds from the command's start.
    pub t_s: f64,
    /// `answers`, `refuses: ...`, `stopped`, `restarted (pid A -> B)`.
    pub what: String,
    /// Whether a planned fault explains it (a `server_restart` in force, or just healed).
    pub expected: bool,
}

impl ServerEvent {
    /// Whether this is the server answering (again).
    pub fn is_up(&self) -> bool {
        self.what == "answers"
    }
}

/// Watches the server at `direct_url` (and `cluster`'s postmaster) until `stop` turns true;
/// returns the changes, each marked expected or not only later ([`judge`]).
pub(super) async fn watch(
    direct_url: String,
    cluster: Option<Arc<Cluster>>,
    origin: Instant,
    mut stop: watch::Receiver<bool>,
) -> Vec<ServerEvent> {
    let mut events: Vec<ServerEvent> = Vec::new();
    let mut pid = cluster.as_ref().and_then(|c| c.postmaster_pid());
    let mut last = String::new();
    loop {
        let started = Instant::now();
        let t_s = started.saturating_duration_since(origin).as_secs_f64();
        let mut push = |what: String| {
            events.push(ServerEvent {
                t_s,
                what,
                expected: false,
            })
        };
        if let Some(c) = &cluster {
            let now = c.postmaster_pid().filter(|_| c.is_running());
            match (pid, now) {
                (Some(a), Some(b)) if a != b => {
                    push(format!("restarted (postmaster pid {a} -> {b})"))
                }
                (Some(_), None) => push("stopped (its postmaster exited)".into()),
                (None, Some(b)) => push(format!("started (postmaster pid {b})")),
                _ => {}
            }
            pid = now;
        }
        let state = probe(&direct_url).await;
        if state != last {
            push(state.clone());
            last = state;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(started + EVERY) => {}
            _ = stop.wait_for(|s| *s) => return events,
        }
    }
}

/// How long after an HA fault heals its effects still count as asked for: a killed node
/// started again rejoins (rewound when it diverged) within this.
const HA_SETTLE_S: f64 = 45.0;

/// Watches the HA cluster's roles (every node's REST API, every 250 ms) until `stop` turns
/// true: each change of `n1 primary, n2 replica, ...` is an event.
pub(super) async fn watch_ha(
    cluster: Arc<crate::postgres::HaCluster>,
    origin: Instant,
    mut stop: watch::Receiver<bool>,
) -> Vec<ServerEvent> {
    let mut events: Vec<ServerEvent> = Vec::new();
    let mut last = String::new();
    loop {
        let started = Instant::now();
        let states = cluster.states(Duration::from_millis(500)).await;
        let what = states
            .iter()
            .map(|(n, s)| match s {
                Some(s) if s.is_primary() => format!("{n} primary"),
                Some(s) => format!("{n} {} ({})", s.role, s.state),
                None => format!("{n} unreachable"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        if what != last {
            events.push(ServerEvent {
                t_s: started.saturating_duration_since(origin).as_secs_f64(),
                what: what.clone(),
                expected: false,
            });
            last = what;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(started + EVERY) => {}
            _ = stop.wait_for(|s| *s) => return events,
        }
    }
}

/// `answers`, or `refuses: why`.
async fn probe(url: &str) -> String {
    let attempt = tokio::time::timeout(
        Duration::from_secs(1),
        tokio_postgres::connect(url, tokio_postgres::NoTls),
    )
    .await;
    match attempt {
        Ok(Ok((client, conn))) => {
            drop(client);
            // The session ends when the connection future is dropped; let it say goodbye.
            let _ = tokio::time::timeout(Duration::from_millis(100), conn).await;
            "answers".into()
        }
        Ok(Err(e)) => match e.as_db_error() {
            Some(db) => format!("refuses: {} ({})", db.message(), db.code().code()),
            None => {
                // tokio-postgres says only "error connecting to server": the cause is below.
                let mut why = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    why = format!("{why}: {s}");
                    source = s.source();
                }
                format!("refuses: {why}")
            }
        },
        Err(_) => "refuses: no answer within 1 s".into(),
    }
}

/// Marks each event expected when a `server_restart` of the plan was in force then (or had
/// healed less than 3 s before), or an HA fault (or had healed less than 45 s before: the
/// cluster settling); the first `answers` (or the cluster's first roles) is the baseline,
/// not an event to judge.
pub(super) fn judge<'a>(
    events: &mut [ServerEvent],
    faults: impl IntoIterator<Item = &'a PlanEvent>,
) {
    let ha: Vec<&str> = crate::fault::HaFault::ALL
        .iter()
        .map(|f| f.label())
        .collect();
    let windows: Vec<(f64, f64)> = faults
        .into_iter()
        .filter_map(|f| {
            let settle = if f.label == restart_label() {
                SETTLE_S
            } else if ha.contains(&f.label.as_str()) {
                HA_SETTLE_S
            } else {
                return None;
            };
            Some((f.start_s?, f.end_s.unwrap_or(f64::INFINITY) + settle))
        })
        .collect();
    let roles = |e: &ServerEvent| e.what.contains(" primary") || e.what.contains(" replica");
    for (i, e) in events.iter_mut().enumerate() {
        e.expected = (i == 0 && (e.is_up() || roles(e)))
            || windows.iter().any(|(a, b)| e.t_s >= *a && e.t_s <= *b)
            || e.what.starts_with("started");
    }
}

/// The events no planned fault explains, except the server answering again after one.
pub fn unexpected(events: &[ServerEvent]) -> Vec<&ServerEvent> {
    events
        .iter()
        .filter(|e| !e.expected && !e.is_up())
        .collect()
}

fn restart_label() -> &'static str {
    crate::fault::MATRIX
        .iter()
        .find(|f| f.name == "server_restart")
        .map_or("server restart", |f| f.label)
}
