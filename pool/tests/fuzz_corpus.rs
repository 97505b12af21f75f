//! Replays the fuzz targets' committed inputs on stable: the seed corpus (`fuzz/seeds/`) and
//! every input a fuzzer once broke (`fuzz/regressions/`), through the same properties the
//! targets check (`pool::testing::oracles`).

use std::path::PathBuf;

/// Every committed input of one target, with its file name.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                out.push((
                    format!("{dir}/{target}/{name}"),
                    std::fs::read(entry.path()).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Runs `check` on every committed input of `target`; names the first one that breaks it.
fn replay(target: &str, check: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    let inputs = inputs(target);
    assert!(
        inputs.len() >= 10,
        "the {target} seed corpus is missing: {}",
        inputs.len()
    );
    for (name, data) in inputs {
        let run = std::panic::catch_unwind(|| check(&data));
        assert!(run.is_ok(), "{name} breaks the {target} property");
    }
}

#[test]
fn redact_inputs_keep_the_property() {
    replay("redact", |data| {
        pool::testing::oracles::redaction(&String::from_utf8_lossy(data))
    });
}

#[test]
fn config_inputs_keep_the_property() {
    replay("config", pool::testing::oracles::config_bytes);
}
