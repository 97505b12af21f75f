//! What the suite and the soak read of this process, and the one percentile they report.

/// Resident memory of this process, MiB (`None` where `/proc` is not there).
pub fn rss_mib() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    Some(pages * page / (1024.0 * 1024.0))
}

/// Open file descriptors of this process.
pub fn open_fds() -> Option<f64> {
    // One of the entries is the directory being read.
    Some(
        std::fs::read_dir("/proc/self/fd")
            .ok()?
            .count()
            .saturating_sub(1) as f64,
    )
}

/// Connections waiting in the accept queue of the TCP socket listening on `port` on this
/// machine (the `rx_queue` of a listening socket in `/proc/net/tcp` and `tcp6`: connections
/// the kernel completed that the server has not accepted yet). `None` when no socket of this
/// machine listens there, or where `/proc` is not there.
pub fn accept_queue(port: u16) -> Option<u64> {
    let mut found = None;
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(queues)) =
                (fields.get(1), fields.get(3), fields.get(4))
            else {
                continue;
            };
            let listening = *state == "0A";
            let on_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
                == Some(port);
            if listening && on_port {
                let rx = queues.split(':').nth(1)?;
                *found.get_or_insert(0) += u64::from_str_radix(rx, 16).ok()?;
            }
        }
    }
    found
}

/// The `p` quantile (nearest rank) of `sorted`; `None` when it is empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Some(sorted[i])
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(super::percentile(&v, 0.5), Some(51.0));
        assert_eq!(super::percentile(&v, 0.99), Some(99.0));
        assert_eq!(super::percentile(&[], 0.5), None);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(super::accept_queue(port), Some(0));
        let _waiting = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert_eq!(
            super::accept_queue(port),
            Some(1),
            "completed, not yet accepted"
        );
        assert!(super::rss_mib().is_some_and(|m| m > 0.0));
    }
}
