//! Trims the embedded event log: events every local consumer has committed past, and older
//! than the retention period, are deleted. The audit log keeps its own copy of each.

use std::sync::Arc;
use std::time::Duration;

use todo_store::EventLog;

use crate::shutdown::ShutdownSignal;

/// How often the log is trimmed.
const EVERY: Duration = Duration::from_secs(3600);

/// Runs until shutdown, trimming once shortly after start and then hourly.
pub async fn run(
    log: Arc<dyn EventLog>,
    consumers: Vec<&'static str>,
    retention: Duration,
    mut shutdown: ShutdownSignal,
) {
    let mut wait = Duration::from_secs(60);
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = EVERY;
        let before = todo_domain::time::now()
            - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        match log.prune_events(before, &consumers).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "event log trimmed"),
            Err(e) => tracing::warn!(error = %e, "trimming the event log failed"),
        }
    }
}
