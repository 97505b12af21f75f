//! The pool's figures through the `metrics` facade, read back as Prometheus text from the real
//! exporter (the recorder is global: this binary holds one test), against this binary's
//! throwaway PostgreSQL.

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use pool::{Pool, PoolConfig};

/// The value of the sample `line_start` (metric name and labels, as rendered), if any.
fn sample(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_and_health_reach_a_prometheus_exporter() {
    let handle = PrometheusBuilder::new().install_recorder().unwrap();
    let db = chaos::postgres::shared().expect("a throwaway PostgreSQL (server binaries needed)");
    let config = PoolConfig::from_url(&db.url())
        .unwrap()
        .application_name("metrics-test".to_string())
        .min_size(1)
        .max_size(3)
        .acquire_timeout(Duration::from_millis(1200))
        .probe_interval(Duration::from_millis(50));
    let pool = Pool::connect(config).await.unwrap();

    let held: Vec<_> = futures_util::future::try_join_all((0..3).map(|_| pool.acquire()))
        .await
        .unwrap();
    // All three out: the next acquire times out.
    assert!(pool.acquire().await.is_err());
    pool.publish_metrics();
    let text = handle.render();
    let l = r#"{pool="metrics-test"}"#;
    assert_eq!(
        sample(&text, &format!("pg_pool_connections_max{l}")),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("pg_pool_connections_min{l}")),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"pg_pool_connections{pool="metrics-test",state="active"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"pg_pool_acquires_total{pool="metrics-test",outcome="ok"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"pg_pool_acquires_total{pool="metrics-test",outcome="timeout"}"#
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, &format!("pg_pool_database_up{l}")), Some(1.0));
    assert!(
        text.contains("# TYPE pg_pool_acquires_total counter"),
        "{text}"
    );
    assert!(text.contains("# TYPE pg_pool_connections gauge"));
    // The histogram of acquire wait (a summary in this exporter's default rendering).
    assert_eq!(
        sample(&text, &format!("pg_pool_acquire_wait_seconds_count{l}")),
        Some(3.0),
        "{text}"
    );

    drop(held);
    // The background task publishes on its own: the connections show idle again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = handle.render();
        let idle = sample(
            &text,
            r#"pg_pool_connections{pool="metrics-test",state="idle"}"#,
        );
        let released = sample(&text, &format!("pg_pool_releases_total{l}"));
        if idle == Some(3.0) && released == Some(3.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not published by the background task: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pool.shutdown(Duration::from_secs(5)).await;
}
