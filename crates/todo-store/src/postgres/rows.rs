//! Converting between rows and domain values. Columns are read by position, in the order
//! of the `*_COLUMNS` lists that the queries select.

use bytes::{BufMut, BytesMut};
use todo_domain::recurrence::{Frequency, Recurrence};
use todo_domain::{Priority, Task};
use tokio_postgres::Row;
use tokio_postgres::types::{IsNull, ToSql, Type, WrongType};

use crate::{Result, StoreError};

/// The columns [`task`] reads, in its order.
pub(super) const TASK_COLUMNS: &str = "id, user_id, title, description, completed, completed_at, priority, tags, \
    due_at, remind_before_minutes, recurrence_frequency, recurrence_interval, recurrence_anchor_day, \
    parent_task_id, version, created_at, updated_at";

/// A task from a row selected with [`TASK_COLUMNS`].
pub(super) fn task(row: &Row) -> Result<Task> {
    let recurrence = match (
        row.try_get::<_, Option<&str>>(10)?,
        row.try_get::<_, Option<i32>>(11)?,
    ) {
        (Some(frequency), Some(interval)) => {
            let frequency = Frequency::parse(frequency)
                .ok_or_else(|| StoreError::Corrupt(format!("bad frequency {frequency:?}")))?;
            Some(Recurrence::new(frequency, i64::from(interval)).map_err(StoreError::Corrupt)?)
        }
        _ => None,
    };
    let priority: i16 = row.try_get(6)?;
    Ok(Task {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        title: row.try_get(2)?,
        description: row.try_get(3)?,
        completed: row.try_get(4)?,
        completed_at: row.try_get(5)?,
        priority: Priority::from_rank(i64::from(priority))
            .ok_or_else(|| StoreError::Corrupt(format!("bad priority {priority}")))?,
        tags: row.try_get(7)?,
        due_at: row.try_get(8)?,
        remind_before_minutes: row.try_get(9)?,
        recurrence,
        recurrence_anchor_day: row
            .try_get::<_, Option<i16>>(12)?
            .and_then(|d| u32::try_from(d).ok()),
        parent_task_id: row.try_get(13)?,
        version: row.try_get(14)?,
        created_at: row.try_get(15)?,
        updated_at: row.try_get(16)?,
    })
}

/// A `timestamptz` parameter given as microseconds since the Unix epoch, where `i64::MAX`
/// and `i64::MIN` (how the domain's due-date sort key writes "no due date") are +infinity
/// and -infinity, and a value beyond PostgreSQL's range is clamped to the infinity on its
/// side, which compares the same way against every stored time. A cursor key can hold any
/// integer, so binding one never fails.
#[derive(Debug, Clone, Copy)]
pub(super) struct SortTime(pub(super) i64);

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH: i64 = 946_684_800_000_000;
/// PostgreSQL's earliest timestamp (4714-11-24 BC), in its own microseconds.
const PG_MIN: i64 = -211_813_488_000_000_000;
/// Just past PostgreSQL's latest timestamp (294277-01-01), in its own microseconds.
const PG_END: i64 = 9_223_371_331_200_000_000;

impl SortTime {
    /// The value PostgreSQL's binary format carries: microseconds since 2000-01-01, with
    /// `i64::MAX` and `i64::MIN` for the infinities.
    fn wire(self) -> i64 {
        match self.0 {
            i64::MAX => i64::MAX,
            i64::MIN => i64::MIN,
            unix => match unix.checked_sub(PG_EPOCH) {
                Some(pg) if pg >= PG_END => i64::MAX,
                Some(pg) if pg < PG_MIN => i64::MIN,
                Some(pg) => pg,
                None => i64::MIN,
            },
        }
    }
}

impl ToSql for SortTime {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.put_i64(self.wire());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }

    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if !Self::accepts(ty) {
            return Err(Box::new(WrongType::new::<Self>(ty.clone())));
        }
        self.to_sql(ty, out)
    }
}

#[cfg(test)]
mod tests {
    use super::SortTime;

    #[test]
    fn sort_times_map_the_domain_sentinels_to_the_infinities_and_clamp_the_rest() {
        assert_eq!(SortTime(i64::MAX).wire(), i64::MAX);
        assert_eq!(SortTime(i64::MIN).wire(), i64::MIN);
        assert_eq!(SortTime(946_684_800_000_000).wire(), 0);
        assert_eq!(SortTime(0).wire(), -946_684_800_000_000);
        // PostgreSQL's range reaches further than any i64 of Unix microseconds below
        // i64::MAX, so only the lower side ever clamps.
        assert_eq!(
            SortTime(i64::MAX - 1).wire(),
            i64::MAX - 1 - 946_684_800_000_000
        );
        assert_eq!(SortTime(i64::MIN + 1).wire(), i64::MIN);
        assert_eq!(SortTime(-300_000_000_000_000_000).wire(), i64::MIN);
    }
}
