//! Consumer lag from librdkafka's statistics: for each partition assigned to this member,
//! the high watermark the broker reported against the group's committed offset.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::Value;

use crate::PartitionLag;

/// The latest lag of each partition a subscription holds.
#[derive(Debug, Default)]
pub struct LagTable {
    /// Whether the group commits: then lag is counted from its committed offset.
    commits: bool,
    partitions: Mutex<BTreeMap<(String, i32), i64>>,
}

impl LagTable {
    /// A table for a group that commits (`true`), or one that only reads.
    pub fn new(commits: bool) -> Self {
        LagTable {
            commits,
            partitions: Mutex::default(),
        }
    }

    /// The lags, by topic and partition.
    pub fn snapshot(&self) -> Vec<PartitionLag> {
        self.partitions
            .lock()
            .expect("lag table poisoned")
            .iter()
            .map(|((topic, partition), lag)| PartitionLag {
                topic: topic.clone(),
                partition: *partition,
                lag: *lag,
            })
            .collect()
    }

    /// Replaces the table with what a statistics document says, when it parses.
    pub fn update_from_json(&self, raw: &[u8]) {
        let Ok(doc) = serde_json::from_slice::<Value>(raw) else {
            return;
        };
        *self.partitions.lock().expect("lag table poisoned") = lags(&doc, self.commits);
    }
}

/// Reads each assigned partition's lag out of a librdkafka statistics document.
fn lags(doc: &Value, commits: bool) -> BTreeMap<(String, i32), i64> {
    let mut out = BTreeMap::new();
    let Some(topics) = doc.get("topics").and_then(Value::as_object) else {
        return out;
    };
    for (topic, t) in topics {
        let Some(partitions) = t.get("partitions").and_then(Value::as_object) else {
            continue;
        };
        for p in partitions.values() {
            let int = |k: &str| p.get(k).and_then(Value::as_i64);
            let Some(partition) = int("partition").filter(|&id| id >= 0) else {
                continue; // the "unassigned" pseudo-partition
            };
            // Partitions of the topic that another member holds are listed too, idle.
            let fetching = p
                .get("fetch_state")
                .and_then(Value::as_str)
                .is_some_and(|s| !matches!(s, "none" | "stopped" | "stopping"));
            let Some(high) = int("hi_offset").filter(|&h| h >= 0) else {
                continue;
            };
            if !fetching {
                continue;
            }
            // A group that commits lags by what it has not committed: before its first
            // commit, everything from the partition's start. A group that only reads lags
            // by what it has not fetched yet (librdkafka's own figure).
            let lag = match (commits, int("committed_offset").filter(|&c| c >= 0)) {
                (true, Some(committed)) => high - committed,
                (true, None) => high - int("lo_offset").unwrap_or(0).max(0),
                (false, _) => int("consumer_lag").unwrap_or(0),
            };
            out.insert((topic.clone(), partition as i32), lag.max(0));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_high_watermark_minus_the_committed_offset_of_assigned_partitions() {
        let doc = serde_json::json!({"topics": {"task-events": {"partitions": {
            "0": {"partition": 0, "fetch_state": "active", "hi_offset": 120, "committed_offset": 100, "consumer_lag": 3},
            "1": {"partition": 1, "fetch_state": "none", "hi_offset": 50, "committed_offset": -1001},
            "2": {"partition": 2, "fetch_state": "active", "hi_offset": 7, "lo_offset": 2, "committed_offset": -1001, "consumer_lag": 1},
            "-1": {"partition": -1, "fetch_state": "none", "hi_offset": -1}
        }}}});
        let table = LagTable::new(true);
        table.update_from_json(doc.to_string().as_bytes());
        let lag = |topic: &str, partition, lag| PartitionLag {
            topic: topic.into(),
            partition,
            lag,
        };
        // Partition 2 has never been committed: all of it since its start counts.
        assert_eq!(
            table.snapshot(),
            vec![lag("task-events", 0, 20), lag("task-events", 2, 5)]
        );
        // A group that only reads lags by what it has not fetched.
        let reader = LagTable::new(false);
        reader.update_from_json(doc.to_string().as_bytes());
        assert_eq!(
            reader.snapshot(),
            vec![lag("task-events", 0, 3), lag("task-events", 2, 1)]
        );
        // A document that does not parse leaves the last figures.
        table.update_from_json(b"{not json");
        assert_eq!(table.snapshot().len(), 2);
    }
}
