//! Where the server binaries are: `PG_BIN`, `pg_config --bindir`, `PATH`, then the newest
//! `/usr/lib/postgresql/*/bin` and the usual Homebrew and RHEL locations.

use std::path::PathBuf;
use std::process::Command;

use super::error::ClusterError;

/// Where server binaries are looked for, in order; the first directory holding both
/// `initdb` and `postgres` wins.
pub fn binary_candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("PG_BIN") {
        dirs.push(PathBuf::from(dir));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        dirs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    for pattern in [
        "/usr/lib/postgresql",
        "/usr/local/opt",
        "/opt/homebrew/opt",
        "/usr",
    ] {
        let mut versioned: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(pattern)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let version = match pattern {
                    "/usr/lib/postgresql" => name.clone(),
                    "/usr" => name.strip_prefix("pgsql-")?.to_string(),
                    _ => name.strip_prefix("postgresql@")?.to_string(),
                };
                Some((version_key(&version)?, entry.path().join("bin")))
            })
            .collect();
        versioned.sort_by(|a, b| b.0.cmp(&a.0));
        dirs.extend(versioned.into_iter().map(|(_, dir)| dir));
    }
    dirs
}

/// `"16"` -> `[16]`, `"9.6"` -> `[9, 6]`; anything else is not a version.
pub(super) fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

pub(super) fn find_binaries() -> Result<PathBuf, ClusterError> {
    let candidates = binary_candidates();
    candidates
        .iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
        .cloned()
        .ok_or_else(|| ClusterError::BinariesNotFound {
            searched: describe_search(&candidates),
        })
}

pub(super) fn describe_search(candidates: &[PathBuf]) -> String {
    let mut places = vec![
        "$PG_BIN".to_string(),
        "`pg_config --bindir`".to_string(),
        "$PATH".to_string(),
        "/usr/lib/postgresql/*/bin".to_string(),
    ];
    if candidates.is_empty() {
        places.push("(nothing existed)".to_string());
    }
    places.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically() {
        assert!(version_key("16").unwrap() > version_key("9.6").unwrap());
        assert_eq!(version_key("main"), None);
    }

    #[test]
    fn missing_binaries_error_says_what_to_do() {
        let msg = ClusterError::BinariesNotFound {
            searched: describe_search(&[]),
        }
        .to_string();
        assert!(msg.contains("apt-get install postgresql"), "{msg}");
        assert!(
            msg.contains("PG_BIN") && msg.contains("DATABASE_URL"),
            "{msg}"
        );
    }
}
