//! `audit`: records every event once (the event id is unique in the audit log).

use std::sync::Arc;

use async_trait::async_trait;
use todo_bus::Delivery;
use todo_domain::{AuditEntry, Topic, time};
use todo_store::Store;

use super::consumer::{Handled, Handler, Reason, Rejected, event_span};

/// Consumer writing the audit log.
pub struct Audit {
    store: Arc<dyn Store>,
}

impl Audit {
    /// A handler over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Audit { store }
    }
}

#[async_trait]
impl Handler for Audit {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn topics(&self) -> &'static [Topic] {
        &[Topic::TaskEvents, Topic::Reminders]
    }

    async fn handle(&self, batch: &[Delivery]) -> anyhow::Result<Handled> {
        let now = time::now();
        let mut handled = Handled::default();
        // One span per event recorded, each in its event's trace, open for the batch's write.
        let mut spans = Vec::with_capacity(batch.len());
        let entries: Vec<AuditEntry> = batch
            .iter()
            .filter_map(|d| {
                let entry = AuditEntry::from_event(&d.event, now);
                if entry.is_some() {
                    spans.push(event_span(self.name(), "audit process", d));
                } else {
                    // The audit log is per user: an event naming none has no place in it.
                    handled.reject(Rejected::new(
                        d,
                        Reason::NoUserId,
                        "the event has no data.user_id",
                    ));
                }
                entry
            })
            .collect();
        let new: std::collections::HashSet<uuid::Uuid> = self
            .store
            .record_audit(&entries)
            .await?
            .into_iter()
            .collect();
        // An entry not recorded now was recorded before: a redelivery.
        for entry in entries.iter().filter(|e| !new.contains(&e.event_id)) {
            handled.duplicate(entry.event_id);
        }
        tracing::debug!(
            received = entries.len(),
            recorded = new.len(),
            "audit batch"
        );
        for span in spans {
            span.in_scope(|| tracing::debug!("event audited"));
        }
        Ok(handled)
    }
}
