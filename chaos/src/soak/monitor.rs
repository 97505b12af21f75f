//! The server's connections of the soak, counted on a direct connection of its own.

use std::time::Duration;

use super::options::APP;

/// Counts the server's connections of [`APP`] on a direct connection it keeps (and makes
/// again after a restart).
pub(super) struct Monitor {
    pub(super) url: String,
    pub(super) client: Option<tokio_postgres::Client>,
}

impl Monitor {
    pub(super) async fn count(&mut self) -> Option<f64> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let (client, conn) = tokio::time::timeout(
                Duration::from_secs(2),
                tokio_postgres::connect(&self.url, tokio_postgres::NoTls),
            )
            .await
            .ok()?
            .ok()?;
            tokio::spawn(conn);
            self.client = Some(client);
        }
        let client = self.client.as_ref()?;
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
                self.client = None;
                None
            }
        }
    }
}
