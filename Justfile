# Recipes are thin calls of cargo; `just --list` shows them.

# Run the chaos suite against a throwaway PostgreSQL (or DATABASE_URL)
chaos *ARGS:
    cargo run -p chaos --release -- run {{ARGS}}

# Run every test (the same command CI runs)
test:
    cargo test --workspace --no-fail-fast

# Long-running leak soak, e.g. `just soak 30m` or `just soak 24h`
soak DURATION="10m":
    cargo run -p chaos --release -- soak --duration {{DURATION}}

# Benchmarks: criterion (results in target/criterion), then the interleaved ratios
bench:
    cargo bench --workspace

# The pool's ratios against deadpool and raw connections, contenders interleaved; BENCH_PIN=1 pins the server apart
ratios:
    cargo bench -p pool --bench ratios

# Serve the Toxiproxy-compatible HTTP API on 127.0.0.1:8474
serve *ARGS:
    cargo run -p chaos --release -- serve {{ARGS}}

# Formatting and lints, as CI checks them
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Run any command under a fault plan, e.g. `just exec fixtures/example-plan.toml ./my-service`
exec PLAN *CMD:
    cargo run -p chaos --release -- exec --plan {{PLAN}} -- {{CMD}}

# The suite's verdicts under two busy loops: no FAIL without a bug, each planted pool bug caught
verdicts:
    .ci/verdicts
