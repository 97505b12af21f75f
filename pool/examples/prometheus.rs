//! The pool's metrics on a Prometheus endpoint.
//!
//! ```text
//! DATABASE_URL=postgres://app@localhost/app cargo run -p pool --example prometheus --features metrics
//! curl -s localhost:9187/metrics | grep pg_pool_
//! ```
//!
//! The recorder is installed before the pool is built (the acquire-wait histogram is
//! registered when the pool is); the pool publishes its figures every `probe_interval` and,
//! here, once more right before each scrape. The exporter is used without its own HTTP server
//! (`default-features = false`): a few lines of tokio serve `/metrics`, which keeps hyper out
//! of the build. With the exporter's `http-listener` feature, `PrometheusBuilder::install`
//! does the serving instead.

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    let url = std::env::var("DATABASE_URL").map_err(
        |_| "set DATABASE_URL to the database to pool, e.g. postgres://app@localhost/app",
    )?;
    let config = pool::PoolConfig::from_url(&url)?.application_name("example".to_string());
    let pool = pool::Pool::connect(config).await?;

    // Some traffic, so that the figures move.
    for _ in 0..4 {
        let pool = pool.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(conn) = pool.acquire().await {
                    let _ = conn.simple_query("SELECT pg_sleep(0.01)").await;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    let addr = std::env::var("METRICS_ADDR").unwrap_or_else(|_| "127.0.0.1:9187".to_string());
    let listener = TcpListener::bind(&addr).await.map_err(|e| {
        format!("cannot listen on {addr} ({e}); set METRICS_ADDR to a free address")
    })?;
    println!("metrics on http://{addr}/metrics");
    loop {
        let (mut socket, _) = listener.accept().await?;
        let pool = pool.clone();
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await;
            pool.publish_metrics();
            let body = handle.render();
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}
