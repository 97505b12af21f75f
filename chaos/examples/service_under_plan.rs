//! A small service under a fault plan, in a test of its own: the pattern for testing your
//! service with chaos as a library.
//!
//! The "service" answers requests with `SELECT 1` through our pool. The harness starts a
//! throwaway PostgreSQL (or uses `DATABASE_URL`) with the embedded proxy in front; the plan
//! cuts the database off for a second and then slows it; the test asserts on what the
//! service saw: failures only while the database was cut off (fast ones, not hangs), and
//! every request served again within a second of the heal.
//!
//! Run it as a program (`cargo run -p chaos --example service_under_plan`) or as the test it
//! contains (`cargo test -p chaos --example service_under_plan`; `cargo test` runs it too).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaos::plan::{Harness, Plan};
use tokio::time::Instant;

const PLAN: &str = r#"
[[fault]]
at = "500ms"
duration = "1s"
kind = "down"

[[fault]]
at = "2s"
duration = "1s"
kind = "latency"
attributes = { latency = 200 }
"#;

/// One request the service answered: when it began (from the plan's origin), how long it
/// took, and whether it succeeded.
#[derive(Debug, Clone, Copy)]
struct Seen {
    at: f64,
    took: f64,
    ok: bool,
}

/// Runs the service under the plan and checks what it saw; returns a summary line.
async fn service_under_plan() -> Result<String, Box<dyn std::error::Error>> {
    let harness = Harness::start(42).await?;
    let plan = Plan::parse(PLAN)?;
    let config = pool::PoolConfig::from_url(harness.database_url())?
        .max_size(4)
        .acquire_timeout(Duration::from_millis(500))
        .validation_timeout(Duration::from_millis(250));
    let service = pool::Pool::connect(config).await?;
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let origin = Instant::now();
    let load = {
        let (service, seen) = (service.clone(), Arc::clone(&seen));
        tokio::spawn(async move {
            while origin.elapsed() < Duration::from_millis(3800) {
                let started = Instant::now();
                let ok = match service.acquire().await {
                    Ok(conn) => conn.simple_query("SELECT 1").await.is_ok(),
                    Err(_) => false,
                };
                seen.lock().unwrap().push(Seen {
                    at: started.duration_since(origin).as_secs_f64(),
                    took: started.elapsed().as_secs_f64(),
                    ok,
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let events = harness
        .run_from(&plan, origin, std::future::pending(), &|_| {})
        .await;
    load.await?;
    service.shutdown(Duration::from_secs(2)).await;
    harness.close().await;

    assert!(events.iter().all(|e| e.error.is_none()), "{events:?}");
    let (down_from, down_to) = (events[0].start_s.unwrap(), events[0].end_s.unwrap());
    let seen = seen.lock().unwrap().clone();
    let failed: Vec<&Seen> = seen.iter().filter(|s| !s.ok).collect();
    assert!(!failed.is_empty(), "the outage was seen");
    for f in &failed {
        // Failures only for requests in flight during the cut, or while the pool notices the heal.
        assert!(
            f.at + f.took >= down_from && f.at <= down_to + 0.5,
            "{f:?} outside {down_from}..{down_to}"
        );
        // And fast: bounded by the acquire timeout, never a hang.
        assert!(f.took < 1.0, "{f:?}");
    }
    let after = seen.iter().filter(|s| s.at > down_to + 1.0);
    assert!(
        after.clone().all(|s| s.ok),
        "served again within 1 s of the heal"
    );
    Ok(format!(
        "{} requests, {} failed, all during the cut ({down_from:.2}-{down_to:.2} s), every one served again within 1 s of the heal",
        seen.len(),
        failed.len()
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("{}", service_under_plan().await?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_service_survives_the_plan() {
        let summary = super::service_under_plan().await.unwrap();
        println!("{summary}");
    }
}
