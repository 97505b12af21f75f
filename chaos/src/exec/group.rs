//! The command's process group: `chaos exec` starts the command as the leader of a group of
//! its own, waits for the command alone, and then stops whatever of the group is still
//! running (SIGTERM, then SIGKILL after a grace), so a `&` in the command neither keeps
//! `chaos exec` waiting nor outlives it.

use std::time::Duration;

use tokio::time::Instant;

/// How long the group has between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(5);

/// What stopping the group found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stopped {
    /// Processes of the group still running when it was stopped.
    pub left_running: usize,
    /// Of those, how many needed SIGKILL (still there after the grace).
    pub killed: usize,
}

/// The live (not zombie) processes whose process group is `pgid`, read from `/proc`.
pub fn members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // `pid (comm) state ppid pgrp ...`: comm may hold spaces and parentheses.
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((_, after)) = stat.rsplit_once(')') else {
                return false;
            };
            let mut fields = after.split_whitespace();
            let state = fields.next();
            let pgrp = fields.nth(1).and_then(|g| g.parse::<u32>().ok());
            state != Some("Z") && state != Some("X") && pgrp == Some(pgid)
        })
        .collect()
}

/// Stops every process of group `pgid`: SIGTERM, then SIGKILL to those left after `grace`.
pub async fn stop(pgid: u32, grace: Duration) -> Stopped {
    let left = members(pgid).len();
    if left == 0 {
        return Stopped::default();
    }
    signal(pgid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if members(pgid).is_empty() {
            return Stopped {
                left_running: left,
                killed: 0,
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed = members(pgid).len();
    signal(pgid, libc::SIGKILL);
    tracing::warn!(
        pgid,
        killed,
        "processes of the command's group outlived SIGTERM by {grace:?}: killed"
    );
    Stopped {
        left_running: left,
        killed,
    }
}

/// Sends `sig` to every process of group `pgid`.
pub fn signal(pgid: u32, sig: i32) {
    // SAFETY: kill(2) with a negative pid (a group we created) and a valid signal number.
    unsafe { libc::kill(-(pgid as i32), sig) };
}
