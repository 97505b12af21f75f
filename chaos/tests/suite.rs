//! The chaos suite end to end, CI-sized (`--quick`): every scenario against our pool on a
//! throwaway PostgreSQL through the embedded proxy, and the report files it writes.

use chaos::peers::PoolChoice;
use chaos::suite::{Options, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_suite_passes_and_writes_its_reports() {
    // As the `chaos` binary does: capture the pool's lifecycle events for SC-010.
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let _ = tracing_subscriber::registry()
            .with(chaos::scenario::logs::CaptureLayer)
            .try_init();
    }
    // Kept when the run did not pass, so CI's failure can be read (report.md, the histories).
    let out = tempfile::Builder::new()
        .prefix("quick-suite-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let report = run(Options {
        pool: PoolChoice::POOL,
        scenarios: Vec::new(),
        seed: 7,
        quick: true,
        out: out.path().to_path_buf(),
        fault_plan: None,
        load: Default::default(),
        repeat: 1,
    })
    .await
    .expect("the suite runs");
    // Why not, when not: the failed criteria and the scenarios that could not run, each
    // with its reason (a missing pgbouncer or nft says so here).
    // A timing figure missed by less than the machine's own lag is not judged (UNKNOWN), so
    // a loaded machine makes the run INCOMPLETE, never FAILED.
    if !report.passed_but_for_lag() {
        let kept = out.keep();
        panic!(
            "{}\nthe reports are kept in {}",
            report.why_not_passed(),
            kept.display()
        );
    }
    // Every scenario against the pool through `acquire`; the fault matrix, the
    // application-made and the deployment-made faults through the shared path too.
    let by = |pool: &str| report.scenarios.iter().filter(|s| s.pool == pool).count();
    // The HA stack's scenarios run only when named (a minute each).
    assert_eq!(
        by("pool"),
        chaos::suite::all_scenarios().len() - chaos::scenario::ha::HaCase::all().len()
    );
    assert_eq!(
        by("pool+query"),
        chaos::fault::MATRIX.len()
            + 1
            + chaos::scenario::failover::Change::ALL.len()
            + chaos::fault::BOUNCER_FAULTS.len()
            + chaos::fault::SERVICE_FAULTS.len(),
        "the matrix, abandoned_sessions, failover, switchover, the PgBouncer faults and the service family on the shared path"
    );
    for file in [
        "report.json",
        "report.md",
        "report.txt",
        "index.html",
        "pool-down.svg",
        "history/pool-down.jsonl",
    ] {
        assert!(out.path().join(file).is_file(), "{file} written");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["seed"], 7);
    // Every fault scenario recorded requests in each phase and judged leaks.
    for s in report
        .scenarios
        .iter()
        .filter(|s| s.fault.is_some() && !s.name.starts_with("sc_"))
    {
        assert!(
            s.phases.before.total() > 0 && s.phases.after.total() > 0,
            "{} recorded no load",
            s.name
        );
        assert!(
            s.criteria.iter().any(|c| c.id == "no_leak"),
            "{} has no leak check",
            s.name
        );
    }
}

#[tokio::test]
async fn unknown_scenarios_are_a_clear_error() {
    let err = run(Options {
        pool: PoolChoice::POOL,
        scenarios: vec!["no_such_fault".into()],
        seed: 1,
        quick: true,
        out: tempfile::tempdir().unwrap().path().to_path_buf(),
        fault_plan: None,
        load: Default::default(),
        repeat: 1,
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("--list"), "{err}");
}

/// The peers' adapters (deadpool-postgres and bb8-postgres, at their defaults and with
/// timeouts) really run: each serves load before and after a fault, and each is judged. Their
/// verdicts are not asserted: their failing rows are the comparison's point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_pools_run_and_are_measured() {
    let out = tempfile::tempdir().unwrap();
    let report = run(Options {
        pool: PoolChoice::ALL,
        scenarios: vec!["down".into()],
        seed: 7,
        quick: true,
        out: out.path().to_path_buf(),
        fault_plan: None,
        load: Default::default(),
        repeat: 1,
    })
    .await
    .expect("the suite runs");
    let pools: Vec<&str> = report.scenarios.iter().map(|s| s.pool.as_str()).collect();
    for peer in ["deadpool", "bb8", "sqlx"] {
        assert!(
            pools.iter().filter(|p| p.starts_with(peer)).count() >= 2,
            "{peer} at its defaults and with timeouts: {pools:?}"
        );
    }
    for s in &report.scenarios {
        assert!(
            s.phases.before.total() > 0 && s.phases.after.total() > 0,
            "{} / {} recorded no load",
            s.name,
            s.pool
        );
        assert!(
            s.criteria.iter().any(|c| c.id == "no_leak"),
            "{} / {} has no leak verdict",
            s.name,
            s.pool
        );
    }
}

/// `--repeat 2`: each repeat is its own report with its own seed (the first the run's), and
/// the summary counts passes out of 2 and gives each timing figure's spread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_run_reports_passes_out_of_n_with_their_seeds() {
    let out = tempfile::tempdir().unwrap();
    let report = run(Options {
        pool: PoolChoice::POOL,
        scenarios: vec!["down".into()],
        seed: 11,
        quick: true,
        out: out.path().to_path_buf(),
        fault_plan: None,
        load: Default::default(),
        repeat: 2,
    })
    .await
    .expect("the suite runs");
    let seeds: Vec<Option<u64>> = report.scenarios.iter().map(|s| s.seed).collect();
    assert_eq!(
        seeds.len(),
        4,
        "down through acquire and through query, twice each"
    );
    assert_eq!(seeds[0], Some(11));
    assert_ne!(seeds[1], Some(11));
    assert_eq!(report.repeats.len(), 2);
    for summary in &report.repeats {
        assert_eq!(summary.runs, 2);
        let recovery = summary
            .criteria
            .iter()
            .find(|t| t.id == "recovery")
            .unwrap();
        assert_eq!(recovery.runs(), 2);
        assert!(summary.spreads.iter().any(|f| f.figure == "recovery_ms"));
    }
    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(
        md.contains("## Repeats") && md.contains("recovery_ms"),
        "{md}"
    );
    assert!(out.path().join("pool-down-r2.svg").exists());
    assert!(report.lag.is_some_and(|l| l.samples > 0));
    assert!(report.scenarios.iter().all(|s| s.lag.is_some()));
}
