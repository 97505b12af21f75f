//! A smoke run: start (or find) a database, connect, query, crash it, restart it, reconnect.

use std::time::{Duration, Instant};

use crate::postgres::{Database, StopMode};

/// One step of the smoke run and how long it took.
#[derive(Debug, Clone)]
pub struct Step {
    /// What was done.
    pub name: String,
    /// How long it took.
    pub took: Duration,
}

/// Runs the smoke steps against `db`, calling `progress` after each one.
pub async fn run(db: &Database, mut progress: impl FnMut(&Step)) -> crate::Result<Vec<Step>> {
    let mut steps = Vec::new();
    let mut step = |name: &str, started: Instant| {
        let step = Step {
            name: name.to_string(),
            took: started.elapsed(),
        };
        progress(&step);
        steps.push(step);
    };

    let started = Instant::now();
    let version = query_version(&db.url()).await?;
    step(&format!("connected: {version}"), started);

    if let Some(cluster) = db.cluster() {
        let started = Instant::now();
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.stop(StopMode::Immediate)).await??;
        step("server crashed (immediate stop)", started);

        let started = Instant::now();
        if query_version(&db.url()).await.is_ok() {
            return Err(crate::Error::Unexpected(
                "it still answered after an immediate stop".into(),
            ));
        }
        step("connect refused while down, as expected", started);

        let started = Instant::now();
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.restart()).await??;
        step("server restarted on the same port", started);

        let started = Instant::now();
        query_version(&db.url()).await?;
        step("reconnected after restart", started);
    } else {
        step(
            "restart check skipped: DATABASE_URL is a server this process does not own",
            Instant::now(),
        );
    }
    Ok(steps)
}

async fn query_version(url: &str) -> crate::Result<String> {
    let within = Duration::from_secs(5);
    let (client, connection) =
        tokio::time::timeout(within, tokio_postgres::connect(url, tokio_postgres::NoTls))
            .await
            .map_err(|_| crate::Error::TimedOut {
                what: "connecting to the server",
                within,
            })??;
    let driver = tokio::spawn(connection);
    let row = client
        .query_one("SELECT current_setting('server_version')", &[])
        .await?;
    let version: String = row.get(0);
    drop(client);
    let _ = driver.await;
    Ok(format!("PostgreSQL {version}"))
}
