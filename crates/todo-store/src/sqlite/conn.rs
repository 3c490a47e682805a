//! Opening connections, and the read-only ones readers share.
//!
//! A read is a few microseconds of SQLite work, so a point read runs right on the calling
//! task's thread when a connection is free: handing it to another thread and back would
//! cost more than the read. Reads that may scan (lists, the event log) run on tokio's
//! blocking pool so a long one never stalls the async workers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::{Result, StoreError};

/// How long a connection waits for another process's write lock before giving up.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Statements kept prepared per connection (each distinct SQL text is one).
const STATEMENT_CACHE: usize = 128;

/// How a connection is opened.
#[derive(Debug, Clone)]
pub(super) struct Options {
    pub(super) path: PathBuf,
    /// `PRAGMA synchronous`: `NORMAL` (survives a process crash) or `FULL` (power loss).
    pub(super) synchronous: &'static str,
}

impl Options {
    /// The read-write connection (creating the file if missing), in WAL mode.
    pub(super) fn open_writer(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_error(&self.path, e))?;
        // journal_mode answers with a row, so it is read rather than executed.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unsupported(format!(
                "SQLite refused WAL mode for {} (got {mode})",
                self.path.display()
            )));
        }
        self.tune(&conn, 16_000)?;
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = {}; PRAGMA journal_size_limit = {};",
            super::checkpoint::WRITER_CHECKPOINT_PAGES,
            super::checkpoint::WAL_LIMIT_BYTES
        ))?;
        Ok(conn)
    }

    /// A read-only connection.
    pub(super) fn open_reader(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_error(&self.path, e))?;
        self.tune(&conn, 8_000)?;
        Ok(conn)
    }

    fn tune(&self, conn: &Connection, cache_kib: i64) -> Result<()> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Plans never depend on bound values. Without this, a statement whose `LIMIT ?`
        // (or a value the planner looked at) is bound again is re-prepared on its next
        // step: every list and every log read paid a parse and a plan (a tenth of a
        // list's CPU). Nothing here relies on value-dependent plans (no ANALYZE, no LIKE).
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {}; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -{cache_kib};
             PRAGMA foreign_keys = ON;",
            self.synchronous
        ))?;
        Ok(())
    }
}

fn open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("cannot open {}: {e}", path.display()))
}

/// Longest time a read snapshot is reused while this process commits nothing: it bounds
/// how late a reader sees a write made by *another* process sharing the file.
const SNAPSHOT_AGE: Duration = Duration::from_millis(2);

/// A few read-only connections, each behind its own lock.
///
/// Starting and ending a read transaction takes SQLite's shared-memory locks, which costs
/// more than a point read itself, and twice as much with two threads reading at once. So a
/// connection keeps its read transaction (its snapshot) open between reads while nothing
/// has been committed here since it began (the writer thread counts its commits) and for
/// at most [`SNAPSHOT_AGE`]. A read that follows a commit always starts a fresh snapshot,
/// so a caller reads what it has just written. A snapshot is ended as soon as a commit
/// makes it stale: by the read that sees the commit count move, and on idle connections by
/// the writer after each commit and the checkpoint thread ([`Readers::release_idle`]), so
/// none holds the log back from a checkpoint or from starting over.
#[derive(Debug)]
pub(super) struct Readers {
    conns: Vec<Mutex<Slot>>,
    /// Reads blocked waiting for a busy connection (`todo_store_pool_waiting`).
    waiting: std::sync::atomic::AtomicI64,
    options: Options,
    /// Commits made by this process's writer so far.
    commits: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct Slot {
    conn: Option<Connection>,
    /// The open read transaction, if any: the commit count it saw and when it began.
    snapshot: Option<(u64, Instant)>,
}

impl Slot {
    /// Ends the open read transaction, if any.
    fn end_snapshot(&mut self) {
        if self.snapshot.take().is_some()
            && let Some(conn) = &self.conn
            && !conn.is_autocommit()
            && conn.execute_batch("COMMIT").is_err()
        {
            self.conn = None; // could not end it: start over on a new connection
        }
    }
}

impl Readers {
    /// `n` read-only connections, opened on first use; `commits` is the writer's count.
    pub(super) fn new(options: Options, n: usize, commits: Arc<AtomicU64>) -> Arc<Self> {
        Arc::new(Readers {
            conns: (0..n.max(1)).map(|_| Mutex::new(Slot::default())).collect(),
            waiting: std::sync::atomic::AtomicI64::new(0),
            options,
            commits,
        })
    }

    /// The read pool now: connections open, open ones free, reads waiting for one. A
    /// connection in use counts as open (it has been opened to be used).
    pub(super) fn pool_state(&self) -> crate::PoolState {
        let (mut size, mut idle) = (0, 0);
        for slot in &self.conns {
            match slot.try_lock() {
                Ok(slot) if slot.conn.is_some() => {
                    size += 1;
                    idle += 1;
                }
                Ok(_) => {}
                Err(_) => size += 1,
            }
        }
        crate::PoolState {
            pool: "read",
            size,
            idle,
            waiting: self.waiting.load(Ordering::Relaxed).max(0),
        }
    }

    /// Ends every snapshot kept on a connection nobody is using, up to date or not: after a
    /// checkpoint, so that none holds the log back from starting over.
    pub(super) fn release_all_idle(&self) {
        self.end_idle_snapshots(|_| true);
    }

    /// Ends snapshots that are out of date on connections nobody is using.
    pub(super) fn release_idle(&self) {
        let commits = self.commits.load(Ordering::Acquire);
        self.end_idle_snapshots(|(seen, began)| seen != commits || began.elapsed() >= SNAPSHOT_AGE);
    }

    /// Ends the snapshot of each connection nobody is using whose `(commit count, start)`
    /// passes `end`.
    fn end_idle_snapshots(&self, end: impl Fn((u64, Instant)) -> bool) {
        for slot in &self.conns {
            if let Ok(mut slot) = slot.try_lock()
                && slot.snapshot.is_some_and(&end)
            {
                slot.end_snapshot();
            }
        }
    }

    /// Runs a short read here and now if a connection is free, else on the blocking pool.
    pub(super) async fn read_now<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        for slot in &self.conns {
            match slot.try_lock() {
                Ok(guard) => return self.run(guard, f),
                Err(TryLockError::Poisoned(p)) => return self.run(p.into_inner(), f),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        self.read(f).await
    }

    /// Runs a read on the blocking pool, waiting for a connection there.
    pub(super) async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = Arc::clone(self);
        tokio::task::spawn_blocking(move || readers.read_blocking(f))
            .await
            .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))?
    }

    fn read_blocking<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        for slot in &self.conns {
            if let Ok(guard) = slot.try_lock() {
                return self.run(guard, f);
            }
        }
        // All busy: wait on one, spread by thread so waiters don't pile onto the first.
        let i = thread_slot() % self.conns.len();
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let guard = self.conns[i].lock().unwrap_or_else(|p| p.into_inner());
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        self.run(guard, f)
    }

    fn run<T>(
        &self,
        mut slot: MutexGuard<'_, Slot>,
        f: impl FnOnce(&Connection) -> Result<T>,
    ) -> Result<T> {
        // Read before the snapshot begins, so the snapshot holds at least these commits.
        let commits = self.commits.load(Ordering::Acquire);
        let current = slot
            .snapshot
            .is_some_and(|(seen, began)| seen == commits && began.elapsed() < SNAPSHOT_AGE);
        if !current {
            slot.end_snapshot();
        }
        let slot = &mut *slot;
        let conn = match &mut slot.conn {
            Some(conn) => conn,
            empty => empty.insert(self.options.open_reader()?),
        };
        if !current {
            conn.prepare_cached("BEGIN")?.execute([])?;
            slot.snapshot = Some((commits, Instant::now()));
        }
        let result = f(conn);
        let ended = conn.is_autocommit();
        // Keep the snapshot only while nothing is committed: under writes it would be
        // renewed at the next read anyway, and held open meanwhile it holds the log back.
        let moved = self.commits.load(Ordering::Acquire) != commits;
        if result.is_err() || ended || moved {
            slot.end_snapshot();
        }
        if let Err(e) = &result
            && e.is_unavailable()
        {
            // An I/O failure may have left the connection unusable: open a fresh one next.
            slot.conn = None;
        }
        result
    }
}

fn thread_slot() -> usize {
    use std::hash::{BuildHasher, RandomState};
    thread_local!(static SLOT: usize = RandomState::new().hash_one(std::thread::current().id()) as usize);
    SLOT.with(|s| *s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    #[test]
    fn a_statement_bound_again_with_another_limit_is_not_prepared_again() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            path: dir.path().join("t.db"),
            synchronous: "NORMAL",
        };
        let writer = options.open_writer().unwrap();
        writer
            .execute_batch(
                "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT);
                 INSERT INTO t (v) VALUES ('a'), ('b'), ('c');",
            )
            .unwrap();
        let reader = options.open_reader().unwrap();
        for conn in [&writer, &reader] {
            for limit in [1i64, 2, 3, 1] {
                let mut stmt = conn
                    .prepare_cached("SELECT v FROM t WHERE k > ? ORDER BY k LIMIT ?")
                    .unwrap();
                let n = stmt
                    .query_map(rusqlite::params![0, limit], |r| r.get::<_, String>(0))
                    .unwrap()
                    .count();
                assert_eq!(n as i64, limit);
                assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0);
            }
        }
    }
}
