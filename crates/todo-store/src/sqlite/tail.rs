//! The newest committed events, kept in memory for in-process consumers.
//!
//! Every event this process commits is appended here right after its commit, so consumers
//! that keep up read the log without a query or a JSON parse, as a broker serves its tail
//! from memory. The tail holds one contiguous run of sequence numbers: if another process
//! wrote to the same database in between (a gap), the run restarts, and anyone needing
//! the missing events reads them from the database.

use std::collections::VecDeque;
use std::sync::Mutex;

use todo_domain::Topic;

use crate::{StoredEvent, TailRead};

/// Events kept; older ones are read from the database.
pub(super) const CAPACITY: usize = 4096;

#[derive(Debug)]
struct Entry {
    topic: Topic,
    event: StoredEvent,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct Tail {
    entries: Mutex<VecDeque<Entry>>,
}

impl Tail {
    /// Appends events just committed, in sequence order.
    pub(super) fn extend(&self, committed: Vec<(Topic, StoredEvent)>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for (topic, event) in committed {
            if entries
                .back()
                .is_some_and(|last| last.event.seq + 1 != event.seq)
            {
                entries.clear(); // a gap: someone else wrote in between
            }
            if entries.len() == CAPACITY {
                entries.pop_front();
            }
            entries.push_back(Entry { topic, event });
        }
    }

    /// Up to `limit` events on `topics` after `after`, if the tail holds the one right
    /// after it (or `after` is the newest event here).
    pub(super) fn read(&self, after: i64, topics: &[Topic], limit: usize) -> Option<TailRead> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let first = entries.front()?.event.seq;
        let last = entries.back()?.event.seq;
        if after + 1 < first || after > last {
            return None;
        }
        let start = usize::try_from(after + 1 - first).ok()?;
        let mut events = Vec::new();
        let mut through = last;
        for entry in entries.range(start..) {
            if events.len() == limit {
                through = entry.event.seq - 1;
                break;
            }
            if topics.contains(&entry.topic) {
                events.push(entry.event.clone());
            }
        }
        Some(TailRead { events, through })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use todo_domain::{CloudEvent, CreateTask, EventType, time};
    use uuid::Uuid;

    use super::*;

    fn event(seq: i64) -> StoredEvent {
        let task = CreateTask::from_json(&serde_json::json!({"title": format!("t{seq}")}))
            .unwrap()
            .into_task(Uuid::now_v7(), "alice", time::now());
        StoredEvent {
            seq,
            event: Arc::new(CloudEvent::task(
                EventType::TaskCreated,
                "api",
                &task,
                time::now(),
                None,
            )),
        }
    }

    fn seqs(read: &TailRead) -> Vec<i64> {
        read.events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn reads_after_a_position_filtered_by_topic_and_limited() {
        let tail = Tail::default();
        let topics = [Topic::TaskEvents, Topic::Reminders, Topic::TaskEvents];
        tail.extend(
            (1..=3)
                .map(|s| (topics[s as usize - 1], event(s)))
                .collect(),
        );
        let read = tail.read(0, &[Topic::TaskEvents], 10).unwrap();
        assert_eq!((seqs(&read), read.through), (vec![1, 3], 3));
        let read = tail
            .read(1, &[Topic::Reminders, Topic::TaskEvents], 1)
            .unwrap();
        assert_eq!((seqs(&read), read.through), (vec![2], 2));
        let read = tail.read(3, &[Topic::TaskEvents], 10).unwrap();
        assert_eq!((seqs(&read), read.through), (vec![], 3), "caught up");
        assert!(
            tail.read(4, &[Topic::TaskEvents], 10).is_none(),
            "beyond the tail"
        );
    }

    #[test]
    fn a_position_before_the_tail_or_an_empty_tail_goes_to_the_database() {
        let tail = Tail::default();
        assert!(tail.read(0, &[Topic::TaskEvents], 10).is_none());
        tail.extend(vec![(Topic::TaskEvents, event(5))]);
        assert!(tail.read(3, &[Topic::TaskEvents], 10).is_none());
        assert_eq!(
            seqs(&tail.read(4, &[Topic::TaskEvents], 10).unwrap()),
            vec![5]
        );
    }

    #[test]
    fn a_gap_restarts_the_run_and_the_oldest_events_make_room() {
        let tail = Tail::default();
        tail.extend(vec![
            (Topic::TaskEvents, event(1)),
            (Topic::TaskEvents, event(2)),
        ]);
        tail.extend(vec![(Topic::TaskEvents, event(4))]); // 3 was written elsewhere
        assert!(
            tail.read(2, &[Topic::TaskEvents], 10).is_none(),
            "3 must come from the database"
        );
        assert_eq!(
            seqs(&tail.read(3, &[Topic::TaskEvents], 10).unwrap()),
            vec![4]
        );

        let tail = Tail::default();
        let n = CAPACITY as i64 + 10;
        tail.extend((1..=n).map(|s| (Topic::TaskEvents, event(s))).collect());
        assert!(tail.read(9, &[Topic::TaskEvents], 10).is_none());
        assert_eq!(
            seqs(&tail.read(10, &[Topic::TaskEvents], 1).unwrap()),
            vec![11]
        );
    }
}
