//! Wake-ups across processes, with `LISTEN`/`NOTIFY` on channel `todo_outbox`.
//!
//! A write never notifies inside its own transaction: a transaction holding a `NOTIFY`
//! takes a server-wide heavyweight lock (on "database 0") from its pre-commit to the end of
//! its commit, fsync included, so every writer would commit one at a time. Instead, once a
//! write's events are readable, it pings the **notifier** task, which sends one `pg_notify`
//! of its own and then waits [`COALESCE`] before the next: however many writes, at most one
//! notification per window. The payload names the schema and this store, so a
//! **listener** (one connection of its own per store, reconnecting when it drops) wakes its
//! consumers only for other stores' writes in its own schema: its own are signalled
//! directly.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use super::tls::Connector;

/// The channel.
pub(super) const CHANNEL: &str = "todo_outbox";

/// The shortest time between two notifications from one store.
pub(super) const COALESCE: Duration = Duration::from_millis(5);

/// The listener's wait before reconnecting, doubled after each failure up to a minute.
const RECONNECT: Duration = Duration::from_millis(500);

/// The notifier and listener of one store; dropping it stops both.
pub(super) struct CrossProcess {
    pending: Arc<Notify>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for CrossProcess {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl CrossProcess {
    /// Starts both tasks. `schema` is the store's schema, `token` tells this store's
    /// notifications from others', `appended` is the signal to bump.
    pub(super) fn start(
        config: Connector,
        pool: Pool,
        schema: String,
        token: String,
        appended: Arc<watch::Sender<u64>>,
    ) -> Self {
        let pending = Arc::new(Notify::new());
        let payload = format!("{schema} {token}");
        let notifier = tokio::spawn(notifier(pool, Arc::clone(&pending), payload));
        let listener = tokio::spawn(listener(config, schema, token, appended));
        CrossProcess {
            pending,
            tasks: [notifier, listener],
        }
    }

    /// Asks for a notification: something this store appended is readable.
    pub(super) fn ping(&self) {
        self.pending.notify_one();
    }
}

async fn notifier(pool: Pool, pending: Arc<Notify>, payload: String) {
    loop {
        pending.notified().await;
        let sent = async {
            let client = pool.get().await.map_err(|e| e.to_string())?;
            client
                .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
                .await
                .map_err(|e| e.to_string())
        };
        if let Err(error) = sent.await {
            // Other processes still see the events on their next look at the table.
            tracing::debug!(%error, "could not notify other processes of new events");
        }
        tokio::time::sleep(COALESCE).await;
    }
}

/// Whether a notification's payload is another store's write in `schema`.
pub(super) fn wakes(payload: &str, schema: &str, token: &str) -> bool {
    payload
        .split_once(' ')
        .is_some_and(|(s, t)| s == schema && t != token)
}

async fn listener(
    config: Connector,
    schema: String,
    token: String,
    appended: Arc<watch::Sender<u64>>,
) {
    let mut pause = RECONNECT;
    loop {
        match listen(&config, &schema, &token, &appended).await {
            Ok(()) => pause = RECONNECT,
            Err(error) => {
                tracing::debug!(%error, "listening for other processes' events failed; retrying")
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(60));
    }
}

/// Listens on one connection until it ends.
async fn listen(
    config: &Connector,
    schema: &str,
    token: &str,
    appended: &watch::Sender<u64>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect().await?;
    let (tx, mut notifications) = mpsc::unbounded_channel();
    // The connection is driven by its own task, which hands notifications over and ends
    // with the connection.
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    let _stop_driver = AbortOnDrop(driver);
    // Writes made while no connection listened are found by the consumers' own periodic
    // look at the table.
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    while let Some(payload) = notifications.recv().await {
        let mut wake = wakes(&payload, schema, token);
        while let Ok(more) = notifications.try_recv() {
            wake |= wakes(&more, schema, token);
        }
        if wake {
            appended.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
    Ok(())
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod unit {
    use super::wakes;

    #[test]
    fn only_other_stores_in_the_same_schema_wake() {
        assert!(wakes("todo other", "todo", "mine"));
        assert!(!wakes("todo mine", "todo", "mine"));
        assert!(!wakes("elsewhere other", "todo", "mine"));
        assert!(!wakes("garbage", "todo", "mine"));
    }
}
