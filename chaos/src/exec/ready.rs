//! `--ready`: when the service under `chaos exec` is ready, so the plan's clock starts then and
//! not while it is still starting.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// How `chaos exec` knows the service is ready.
#[derive(Debug, Clone)]
pub enum Ready {
    /// A TCP port accepts a connection (`tcp:PORT`, `tcp:HOST:PORT`).
    Tcp(String),
    /// A line of the command's output (stdout or stderr) matches (`line:REGEX`).
    Line(regex::Regex),
    /// A shell command exits 0 (`cmd:COMMAND`, run with `sh -c` and the command's
    /// environment, every 200 ms).
    Command(String),
}

/// What `--ready` takes, for its errors and `--help`.
pub const READY_FORMS: &str =
    "tcp:PORT, tcp:HOST:PORT, line:REGEX (a line of the command's output) or cmd:COMMAND (exits 0)";

impl std::str::FromStr for Ready {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (form, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("--ready {s:?}: expected {READY_FORMS}"))?;
        match form {
            "tcp" => {
                let addr = if rest.contains(':') {
                    rest.to_string()
                } else {
                    format!("127.0.0.1:{rest}")
                };
                let port = addr.rsplit(':').next().unwrap_or_default();
                match port.parse::<u16>() {
                    Ok(p) if p > 0 => Ok(Ready::Tcp(addr)),
                    _ => Err(format!(
                        "--ready {s:?}: {port:?} is not a port (1-65535); expected tcp:PORT or tcp:HOST:PORT"
                    )),
                }
            }
            "line" if !rest.is_empty() => regex::Regex::new(rest)
                .map(Ready::Line)
                .map_err(|e| format!("--ready {s:?}: not a regular expression: {e}")),
            "cmd" if !rest.trim().is_empty() => Ok(Ready::Command(rest.to_string())),
            _ => Err(format!("--ready {s:?}: expected {READY_FORMS}")),
        }
    }
}

impl std::fmt::Display for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ready::Tcp(addr) => write!(f, "{addr} accepts"),
            Ready::Line(re) => write!(f, "a line matches /{re}/"),
            Ready::Command(c) => write!(f, "`{c}` exits 0"),
        }
    }
}

impl Ready {
    /// The pattern the output pumps match each line against, for `line:`.
    pub(super) fn pattern(&self) -> Option<&regex::Regex> {
        match self {
            Ready::Line(re) => Some(re),
            _ => None,
        }
    }

    /// Waits until ready. `matched` turns true once a line matched (for `line:`); `env` is
    /// the command's environment (for `cmd:`). Cancel safe: a probe in flight is dropped
    /// (a `cmd:` probe is killed).
    pub(super) async fn wait(&self, mut matched: watch::Receiver<bool>, env: &[(String, String)]) {
        let every = Duration::from_millis(100);
        match self {
            Ready::Line(_) => {
                let _ = matched.wait_for(|m| *m).await;
            }
            Ready::Tcp(addr) => loop {
                let started = Instant::now();
                let attempt = tokio::time::timeout(
                    Duration::from_secs(1),
                    tokio::net::TcpStream::connect(addr),
                )
                .await;
                if matches!(attempt, Ok(Ok(_))) {
                    return;
                }
                tokio::time::sleep_until(started + every).await;
            },
            Ready::Command(command) => loop {
                let started = Instant::now();
                let status = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(command)
                    .envs(env.iter().map(|(k, v)| (k, v)))
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .status()
                    .await;
                if status.is_ok_and(|s| s.success()) {
                    return;
                }
                tokio::time::sleep_until(started + 2 * every).await;
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Ready;

    #[test]
    fn each_form_parses_and_a_bad_one_says_what_is_wanted() {
        assert!(matches!("tcp:8080".parse(), Ok(Ready::Tcp(a)) if a == "127.0.0.1:8080"));
        assert!(matches!("tcp:[::1]:80".parse(), Ok(Ready::Tcp(a)) if a == "[::1]:80"));
        assert!(matches!(
            "line:listening on \\d+".parse(),
            Ok(Ready::Line(_))
        ));
        assert!(matches!(
            "cmd:curl -fs localhost:8080".parse(),
            Ok(Ready::Command(_))
        ));
        for bad in [
            "8080", "tcp:http", "tcp:0", "line:", "line:(", "cmd: ", "udp:53",
        ] {
            let err = bad.parse::<Ready>().unwrap_err();
            assert!(err.starts_with(&format!("--ready {bad:?}")), "{err}");
        }
    }
}
