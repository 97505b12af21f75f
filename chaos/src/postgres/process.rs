//! Processes and ports: who the server runs as when we are root, free ports, signals to
//! process trees, and reading a server's log.

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;

use super::error::{ClusterError, io_err};

/// How many times a start is retried on another port when the chosen one was taken meanwhile.
pub(super) const PORT_ATTEMPTS: usize = 5;

pub(super) const PORT_TAKEN: &str = "port already in use";

/// The OS user the server runs as when we are root.
#[derive(Debug, Clone)]
pub(super) struct RunAs {
    pub(super) name: String,
    pub(super) uid: u32,
    pub(super) gid: u32,
}

pub(super) fn is_root() -> bool {
    // Safety: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub(super) fn unprivileged_user() -> Result<RunAs, ClusterError> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let lookup = |wanted: &str| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 || fields[0] != wanted {
                return None;
            }
            Some(RunAs {
                name: wanted.to_string(),
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
            })
        })
    };
    lookup("postgres")
        .or_else(|| lookup("nobody"))
        .ok_or(ClusterError::NoUnprivilegedUser)
}

pub(super) fn free_port() -> Result<u16, ClusterError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io_err("find a free loopback port"))
}

/// Whether a process exists (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        // No procfs (macOS): ask the kernel.
        Err(_) if !Path::new("/proc/self").exists() => kill(pid, 0),
        Err(_) => false,
    }
}

pub(super) fn kill(pid: u32, signal: i32) -> bool {
    // Safety: kill has no memory-safety preconditions; a stale pid at worst yields ESRCH.
    unsafe { libc::kill(pid as libc::pid_t, signal) == 0 }
}

/// The pids whose parent is `parent` (Linux only; empty elsewhere).
pub(super) fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let (_, rest) = s.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

pub(super) fn read_from(path: &Path, offset: u64) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        use std::io::Seek;
        let _ = f.seek(std::io::SeekFrom::Start(offset));
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

pub(super) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
