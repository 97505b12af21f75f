//! The suite's runner, end to end, made deterministic: the real pool and the real scenario
//! runner (`run_fault`: load, bursts, fault, heal, shutdown, leak check, verdicts) over a
//! **fake database** under tokio's paused clock, so the same seed gives the same report. The
//! report's renderers are snapshotted on it, with raw latencies left out.
//!
//! The fake has no analogue of the byte-level toxics (bandwidth, slicer, limit_data,
//! slow_close, reset_peer); those run only against the real proxy (`chaos/tests/suite.rs`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaos::fault::Fault;
use chaos::fault::{Kind, MATRIX};
use chaos::peers::{ACQUIRE_TIMEOUT, Answer, BoxFut, MAX_SIZE, POOL, PoolKind, Subject};
use chaos::report::{ChaosReport, Outcome};
use chaos::scenario::{self, Arena, SetupError, Timing};
use pool::testing::{FakeConnector, FakeDb};
use pool::{Pool, PoolConfig};

/// Our pool over the fake database.
struct FakeSubject(Pool<FakeConnector>);

impl Subject for FakeSubject {
    fn handle<'a>(&'a self, _: chaos::peers::Handler) -> BoxFut<'a, Answer> {
        // The fake database has no sessions: application-made faults run on real servers.
        Box::pin(async { (Outcome::Info, Some("not modelled".into())) })
    }
    fn name(&self) -> String {
        "pool".into()
    }
    fn request<'a>(&'a self, _sql: &'a str, limit: Duration) -> BoxFut<'a, Answer> {
        Box::pin(async move {
            match self.0.acquire().await {
                Ok(conn) => match tokio::time::timeout(limit, conn.query()).await {
                    Ok(Ok(())) => (Outcome::Ok, None),
                    Ok(Err(_)) => {
                        pool::PooledConnection::discard(conn);
                        (Outcome::Info, Some("connection_lost".into()))
                    }
                    Err(_) => {
                        pool::PooledConnection::discard(conn);
                        (Outcome::Info, Some("query_timeout".into()))
                    }
                },
                Err(e) => (Outcome::Fail, Some(e.kind().to_string())),
            }
        })
    }
    fn health(&self) -> Option<String> {
        Some(
            serde_json::to_value(self.0.health().status)
                .ok()?
                .as_str()?
                .to_string(),
        )
    }
    fn open_connections(&self) -> usize {
        self.0.statistics().total_connections
    }
    fn shutdown(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            self.0.shutdown(Duration::from_secs(5)).await;
        })
    }
}

/// One fake database per scenario; faults are the fake's switches.
#[derive(Default)]
struct FakeArena {
    dbs: Mutex<HashMap<String, Arc<FakeDb>>>,
}

impl FakeArena {
    fn db(&self, handle: &str) -> Arc<FakeDb> {
        Arc::clone(&self.dbs.lock().unwrap()[handle])
    }
}

/// Whether the fake can play this fault.
fn faked(fault: &Fault) -> bool {
    match fault.kind {
        Kind::Toxic(spec) => matches!(
            (spec.kind)().type_name(),
            "refuse" | "timeout" | "peer_lost" | "latency"
        ),
        // The fake arena has no sockets for the kernel to drop packets of.
        Kind::Kernel(_) => false,
        _ => true,
    }
}

impl Arena for FakeArena {
    fn owns_server(&self) -> bool {
        true
    }
    fn open<'a>(
        &'a self,
        _kind: PoolKind,
        app: &'a str,
    ) -> BoxFut<'a, Result<scenario::Opened, SetupError>> {
        Box::pin(async move {
            let db = FakeDb::new();
            // The suite's settings for our pool, with the jitter seeded.
            let config = PoolConfig::default()
                .min_size(2)
                .max_size(MAX_SIZE)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_timeout(ACQUIRE_TIMEOUT)
                .validation_timeout(Duration::from_millis(500))
                .probe_timeout(Duration::from_millis(500))
                .jitter_seed(Some(7));
            let pool = Pool::connect_with(config, db.connector())
                .await
                .map_err(|e| SetupError::Pool(e.to_string()))?;
            self.dbs.lock().unwrap().insert(app.to_string(), db);
            Ok((
                Box::new(FakeSubject(pool)) as Box<dyn Subject>,
                app.to_string(),
            ))
        })
    }
    fn inject<'a>(
        &'a self,
        handle: &'a str,
        fault: &'a Fault,
        _app: &'a str,
        during: Duration,
    ) -> BoxFut<'a, chaos::Result<()>> {
        Box::pin(async move {
            let db = self.db(handle);
            match fault.kind {
                Kind::Down | Kind::ServerRestart => db.down(),
                Kind::TerminateBackends => db.kill_all(),
                Kind::Flapping => {
                    let end = tokio::time::Instant::now() + during;
                    let mut up = true;
                    while tokio::time::Instant::now() < end {
                        up = !up;
                        if up {
                            db.heal()
                        } else {
                            db.down()
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    db.heal();
                    return Ok(());
                }
                Kind::Toxic(spec) => match (spec.kind)().type_name() {
                    "refuse" => db.refuse(),
                    "timeout" => db.blackhole(),
                    "peer_lost" => db.peer_lost(),
                    "latency" => db.latency(Duration::from_millis(100)),
                    other => {
                        return Err(chaos::Error::NotApplicable {
                            fault: other.to_string(),
                            on: "on the fake database".into(),
                        });
                    }
                },
                Kind::Kernel(k) => {
                    return Err(chaos::Error::NotApplicable {
                        fault: k.name().to_string(),
                        on: "on the fake database: it has no packets".into(),
                    });
                }
                Kind::Bouncer(_) => {
                    return Err(chaos::Error::NotApplicable {
                        fault: fault.name.to_string(),
                        on: "on the fake database: it has no PgBouncer".into(),
                    });
                }
            }
            tokio::time::sleep(during).await;
            db.heal();
            Ok(())
        })
    }
    fn left_on_server<'a>(&'a self, app: &'a str) -> BoxFut<'a, i64> {
        Box::pin(async move {
            let db = self.db(app);
            for _ in 0..100 {
                if db.open_ids().is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            db.open_ids().len() as i64
        })
    }
    fn close<'a>(&'a self, _handle: &'a str) -> BoxFut<'a, ()> {
        Box::pin(async {})
    }
}

struct Quiet;
impl scenario::Progress for Quiet {
    fn phase(&self, _: &str, _: &str, _: &str) {}
}

async fn deterministic_run(seed: u64) -> ChaosReport {
    let arena = FakeArena::default();
    let timing = Timing::new(true);
    let mut report = ChaosReport {
        version: "test".into(),
        seed,
        quick: true,
        database: "fake database (paused clock)".into(),
        proxy: "fake switches".into(),
        scenarios: Vec::new(),
        repeat: 1,
        repeats: Vec::new(),
        lag: None,
        interrupted: None,
    };
    for fault in MATRIX.iter().filter(|f| faked(f)) {
        report
            .scenarios
            .push(scenario::run_fault(&arena, fault, POOL, timing, &Quiet).await);
    }
    report
}

/// The report without raw latencies or durations: the fault schedule, outcome counts per
/// phase, error kinds, verdicts with their bounds, and anomalies.
fn projection(r: &ChaosReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "seed {} ({}), passed: {}",
        r.seed,
        r.database,
        r.passed()
    );
    for s in &r.scenarios {
        let f = s.fault.as_ref().expect("a fault window");
        let _ = writeln!(
            out,
            "\n{} / {}: {} (fault {:.0}..{:.0} ms on the scenario's clock)",
            s.pool, s.name, f.label, f.start_ms, f.end_ms
        );
        let p = &s.phases;
        let c = chaos::report::Counts::to_string;
        let _ = writeln!(
            out,
            "  ok/fail/info  before {}  during {}  recovering {}  after {}",
            c(&p.before),
            c(&p.during),
            c(&p.recovering),
            c(&p.after)
        );
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for op in &s.ops {
            if let Some(e) = &op.error {
                *kinds.entry(e.as_str()).or_default() += 1;
            }
        }
        let _ = writeln!(out, "  errors {kinds:?}");
        let health: Vec<&str> = s.health.iter().map(|(_, h)| h.as_str()).collect();
        let _ = writeln!(out, "  health {}", health.join(" -> "));
        for c in &s.criteria {
            let _ = writeln!(
                out,
                "  {:<7} {:<26} bound {}",
                c.verdict.mark(),
                c.id,
                c.bound
            );
        }
        for a in &s.anomalies {
            let _ = writeln!(out, "  anomaly: {a}");
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn a_deterministic_run_gives_the_same_report() {
    let report = deterministic_run(11).await;
    let text = projection(&report);
    assert!(report.passed(), "{text}");
    insta::assert_snapshot!(text);
    // Every renderer takes it (their exact output is pinned on fixed data in the lib tests).
    assert!(report.to_markdown().contains("| peer_lost |"));
    assert!(chaos::report::html::index_html(&report).contains("peer_lost"));
    assert!(chaos::report::svg::timeline(&report.scenarios[0]).contains("<svg"));
}
