//! The server's connections of the soak, counted on direct connections of its own: to the
//! server, or to every node of the HA cluster.

use std::time::Duration;

use super::options::APP;

/// Counts the server's connections of [`APP`] on a direct connection it keeps to each URL
/// (and makes again after a restart).
pub(super) struct Monitor {
    urls: Vec<String>,
    clients: Vec<Option<tokio_postgres::Client>>,
}

impl Monitor {
    pub(super) fn new(urls: Vec<String>) -> Self {
        let clients = urls.iter().map(|_| None).collect();
        Monitor { urls, clients }
    }

    /// The sum over the servers that answered (`None` when none did). A node that cannot be
    /// asked (killed, cut off) holds none of the pool's connections that the pool can use.
    pub(super) async fn count(&mut self) -> Option<f64> {
        let mut sum = None;
        for i in 0..self.urls.len() {
            if let Some(n) = self.count_at(i).await {
                *sum.get_or_insert(0.0) += n;
            }
        }
        sum
    }

    async fn count_at(&mut self, i: usize) -> Option<f64> {
        if self.clients[i].as_ref().is_none_or(|c| c.is_closed()) {
            let (client, conn) = tokio::time::timeout(
                Duration::from_secs(2),
                tokio_postgres::connect(&self.urls[i], tokio_postgres::NoTls),
            )
            .await
            .ok()?
            .ok()?;
            tokio::spawn(conn);
            self.clients[i] = Some(client);
        }
        let client = self.clients[i].as_ref()?;
        let row = tokio::time::timeout(
            Duration::from_secs(2),
            client.query_one(
                include_str!("../../../fixtures/sql/connections.sql"),
                &[&APP],
            ),
        )
        .await;
        match row {
            Ok(Ok(row)) => Some(row.get::<_, i64>(0) as f64),
            _ => {
                self.clients[i] = None;
                None
            }
        }
    }
}
