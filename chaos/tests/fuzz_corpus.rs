//! Replays the `api` fuzz target's committed inputs on stable: its seed corpus
//! (`fuzz/seeds/api`) and every script a fuzzer once broke (`fuzz/regressions/api`), through
//! the properties of `chaos::fuzzing`.

use std::path::PathBuf;

use chaos::fuzzing::ApiUnderTest;

#[tokio::test]
async fn api_scripts_keep_the_properties() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut scripts = Vec::new();
    for dir in ["seeds/api", "regressions/api"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            if !entry.file_name().to_string_lossy().starts_with('.') {
                scripts.push(entry.path());
            }
        }
    }
    scripts.sort();
    assert!(scripts.len() >= 5, "the seed corpus is missing");
    for path in scripts {
        let script = std::fs::read(&path).unwrap();
        let api = ApiUnderTest::default();
        // A broken property panics with the request and the response.
        eprintln!("{}", path.display());
        api.run_script(&script).await;
    }
}
