//! Leadership on PostgreSQL: a session advisory lock, held by a connection of its own. The
//! lock lives exactly as long as that session, so a process that dies (or loses its
//! connection) gives the lead up at once, and the server hands it to the next asker. The
//! key is the lead's name within the current schema, so schemas sharing a database lead
//! separately.

use tokio::sync::oneshot;

use super::tls::Connector;
use crate::{Leadership, Result};

/// Takes the lead `name` on the database `config` names, if free.
pub(super) async fn try_lead(config: &Connector, name: &str) -> Result<Option<Leadership>> {
    let (client, connection) = config.connect().await?;
    let (lost_tx, lost_rx) = oneshot::channel();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "the connection holding a lead broke");
        }
        let _ = lost_tx.send(());
    });
    let granted: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtext(current_schema() || ':' || $1::text))",
            &[&name],
        )
        .await?
        .get(0);
    if !granted {
        return Ok(None); // dropping the client closes the session
    }
    Ok(Some(Leadership::new(lost_rx, Box::new(client))))
}
