//! The single writer, with group commit.
//!
//! SQLite allows one writer at a time, and a commit costs far more than the rows it
//! writes. So one thread owns the read-write connection, and every write is a job sent to
//! it. The thread takes whatever jobs are queued (up to [`MAX_BATCH`]), runs them in one
//! transaction, commits once, and only then answers each caller. A caller is therefore told
//! "written" only for what is committed, and concurrent writers share one commit. A job
//! refused on its own (a version conflict) undoes only itself: when one is refused, the
//! batch is rolled back and run again with each job inside its own savepoint (see
//! [`run_jobs`]).
//!
//! If SQLite abandons the transaction itself (disk full, I/O error), or the commit fails,
//! every job of the batch is answered with the error and the connection is reopened, so no
//! later write can run inside a transaction nobody will commit.
//!
//! The writer checkpoints the write-ahead log itself only to let it start over (see
//! [`super::checkpoint`]), and only after answering a batch that left the log past
//! [`WRITER_CHECKPOINT_PAGES`], once the checkpoint thread has copied nearly all of it
//! (every write waits while the writer checkpoints). SQLite's own automatic checkpoint is
//! off on this connection: it runs inside every commit once the log is past its
//! threshold, before the callers are answered, and when readers keep the log from starting
//! over it keeps running on every commit, each one syncing the log and often the database
//! file (measured under the mixed benchmark: 80 syncs a second on this thread, 1.4 s of
//! every 11 spent in them).

use std::cell::Cell;
use std::os::raw::c_int;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use rusqlite::hooks::Wal;
use tokio::sync::{mpsc, oneshot};

#[cfg(doc)]
use super::checkpoint::WRITER_CHECKPOINT_PAGES;
use super::checkpoint::{Progress, WRITER_CHECKPOINT_ANYWAY_PAGES};
use super::conn::{Options, Readers};
use crate::{Result, StoreError, StoredEvent};
use todo_domain::Topic;

/// Most jobs committed together.
const MAX_BATCH: usize = 128;

/// Jobs waiting beyond this many make callers wait to enqueue (backpressure).
const QUEUE: usize = 4096;

/// A job that waited longer than this is refused unrun: its caller gets a 503, truthfully,
/// since nothing was written.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// A write whose caller waited longer than this (queue and commit) is logged as a stall
/// (`TODO_SQLITE_SLOW_WRITE_MS`; 0 turns it off).
pub(super) const DEFAULT_SLOW_WRITE: Duration = Duration::from_millis(50);

/// At most one stall line per this, with how many stalls it stands for.
const STALL_LOG_EVERY: Duration = Duration::from_secs(1);

/// How long, in all, the writer's checkpoint waits for readers to leave the log before
/// giving up. Only the waiting counts, not the copying and syncing around it: a slow
/// `fdatasync` (10 ms is common on network disks) must not use the time up before the
/// wait for readers begins, or the log never starts over while anyone reads.
const WRITER_CHECKPOINT_WAIT: Duration = Duration::from_millis(5);

/// How often, meanwhile, it looks again. SQLite's own busy handler sleeps 1 ms, then 2,
/// then 2 (three looks in 5 ms), while a read here takes tens of microseconds.
const WRITER_CHECKPOINT_POLL: Duration = Duration::from_micros(50);

/// Past [`WRITER_CHECKPOINT_ANYWAY_PAGES`], how long the writer's checkpoint waits for a
/// pass of the checkpoint thread's to end (a pass syncs both files: tens of milliseconds
/// on a slow disk, about one on a fast one).
const WRITER_CHECKPOINT_LOCK_WAIT: Duration = Duration::from_millis(100);

/// Least time between two of the writer's checkpoints: when one did not let the log start
/// over, the next is tried this much later rather than after every commit.
const WRITER_CHECKPOINT_GAP: Duration = Duration::from_millis(20);

thread_local! {
    /// Frames in the write-ahead log after this thread's last commit (from the WAL hook).
    static LOG_FRAMES: Cell<c_int> = const { Cell::new(0) };
    /// How much longer the running checkpoint may wait for readers.
    static CHECKPOINT_WAIT_LEFT: Cell<Option<Duration>> = const { Cell::new(None) };
}

/// The busy handler of the writer's checkpoint: looks again every
/// [`WRITER_CHECKPOINT_POLL`] until it has waited [`CHECKPOINT_WAIT_LEFT`] in all.
fn poll_while_wait_left(_calls: c_int) -> bool {
    let Some(left) = CHECKPOINT_WAIT_LEFT
        .with(Cell::get)
        .filter(|l| !l.is_zero())
    else {
        return false;
    };
    let slept = Instant::now();
    std::thread::sleep(WRITER_CHECKPOINT_POLL);
    let left = left.saturating_sub(slept.elapsed());
    CHECKPOINT_WAIT_LEFT.with(|l| l.set(Some(left)));
    true
}

/// `conn` with SQLite's WAL hook set to note the log's length after each commit, which
/// also turns SQLite's automatic checkpoint off on it.
fn watching_the_log(conn: Connection) -> Connection {
    fn note_log_frames(_: &Wal, frames: c_int) -> rusqlite::Result<()> {
        LOG_FRAMES.with(|f| f.set(frames));
        Ok(())
    }
    conn.wal_hook(Some(note_log_frames));
    conn
}

/// The stall threshold from `TODO_SQLITE_SLOW_WRITE_MS`.
pub(super) fn slow_write_threshold() -> Result<Option<Duration>> {
    match std::env::var("TODO_SQLITE_SLOW_WRITE_MS") {
        Err(_) => Ok(Some(DEFAULT_SLOW_WRITE)),
        Ok(raw) => match raw.trim().parse::<u64>() {
            Ok(0) => Ok(None),
            Ok(ms) if ms <= 3_600_000 => Ok(Some(Duration::from_millis(ms))),
            _ => Err(StoreError::Unsupported(format!(
                "TODO_SQLITE_SLOW_WRITE_MS must be a whole number of milliseconds up to 3600000, or 0 (got {raw:?})"
            ))),
        },
    }
}

/// Counts write stalls and logs them, at most once per [`STALL_LOG_EVERY`].
struct Stalls {
    threshold: Option<Duration>,
    last_logged: Option<Instant>,
    since_logged: u64,
    worst_since_logged: Duration,
}

impl Stalls {
    /// Notes a committed (or failed) batch: `waited` is its oldest job's time from queueing
    /// to the answer, `commit` the transaction's own time.
    fn note(&mut self, waited: Duration, commit: Duration, jobs: usize) {
        let Some(threshold) = self.threshold else {
            return;
        };
        if waited <= threshold {
            return;
        }
        self.since_logged += 1;
        self.worst_since_logged = self.worst_since_logged.max(waited);
        let now = Instant::now();
        if self
            .last_logged
            .is_some_and(|at| now.duration_since(at) < STALL_LOG_EVERY)
        {
            return;
        }
        tracing::warn!(
            waited_ms = waited.as_secs_f64() * 1e3,
            commit_ms = commit.as_secs_f64() * 1e3,
            jobs,
            stalls = self.since_logged,
            worst_ms = self.worst_since_logged.as_secs_f64() * 1e3,
            threshold_ms = threshold.as_secs_f64() * 1e3,
            "slow write commit"
        );
        self.last_logged = Some(now);
        self.since_logged = 0;
        self.worst_since_logged = Duration::ZERO;
    }
}

/// What a job sees: the connection, inside the batch's transaction.
pub(super) struct WriteCtx<'c> {
    pub(super) conn: &'c Connection,
    appended: Vec<(Topic, StoredEvent)>,
}

impl WriteCtx<'_> {
    /// Notes an event this job appended to the outbox; once the batch commits, it goes to
    /// the in-memory tail and in-process consumers are woken.
    pub(super) fn appended(&mut self, topic: Topic, event: StoredEvent) {
        self.appended.push((topic, event));
    }
}

trait Job: Send {
    /// Whether the caller is still waiting for the answer.
    fn wanted(&self) -> bool;
    fn queued_at(&self) -> Instant;
    /// Runs the work inside the open transaction; false means it must be undone. It may
    /// run again, after a rollback, and then only the last run's outcome counts.
    fn run(&mut self, ctx: &mut WriteCtx<'_>) -> bool;
    /// Answers the caller: with the work's own result if the batch committed, else with
    /// the batch's failure.
    fn answer(self: Box<Self>, batch: std::result::Result<(), &StoreError>);
}

struct Call<T, F> {
    work: F,
    outcome: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
    queued_at: Instant,
}

impl<T, F> Job for Call<T, F>
where
    T: Send,
    F: Fn(&mut WriteCtx<'_>) -> Result<T> + Send,
{
    fn wanted(&self) -> bool {
        !self.reply.is_closed()
    }

    fn queued_at(&self) -> Instant {
        self.queued_at
    }

    fn run(&mut self, ctx: &mut WriteCtx<'_>) -> bool {
        let outcome = (self.work)(ctx);
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn answer(self: Box<Self>, batch: std::result::Result<(), &StoreError>) {
        let result = match (batch, self.outcome) {
            // A job refused on its own (a conflict) keeps its own error either way.
            (_, Some(Err(e))) => Err(e),
            (Ok(()), Some(Ok(value))) => Ok(value),
            (Err(e), _) => Err(e.shared()),
            (Ok(()), None) => Err(StoreError::Unavailable(
                "the write was not run: it waited too long for the writer".into(),
            )),
        };
        let _ = self.reply.send(result); // a caller that went away needs no answer
    }
}

/// Handle to the writer thread.
#[derive(Debug)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl std::fmt::Debug for dyn Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl Writer {
    /// Starts the writer thread on `conn` (already migrated). After every commit, before
    /// any caller is answered, `commits` is bumped, the snapshots idle `readers` keep are
    /// ended (they are out of date), and `on_append` gets the events the commit appended
    /// (often none), in sequence order.
    pub(super) fn start(
        conn: Connection,
        options: Options,
        commits: Arc<AtomicU64>,
        readers: Arc<Readers>,
        progress: Arc<Progress>,
        on_append: impl Fn(Vec<(Topic, StoredEvent)>) + Send + 'static,
    ) -> Result<Self> {
        let threshold = slow_write_threshold()?;
        let (jobs, queue) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                Thread {
                    conn: Some(watching_the_log(conn)),
                    options,
                    commits,
                    readers,
                    progress,
                    checkpoint_retry_at: None,
                    on_append,
                    stalls: Stalls {
                        threshold,
                        last_logged: None,
                        since_logged: 0,
                        worst_since_logged: Duration::ZERO,
                    },
                }
                .run(queue)
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer { jobs })
    }

    /// The write "pool": the one writer connection, and the writes queued for it.
    pub(super) fn pool_state(&self) -> crate::PoolState {
        let queued = (self.jobs.max_capacity() - self.jobs.capacity()) as i64;
        crate::PoolState {
            pool: "write",
            size: 1,
            idle: i64::from(queued == 0),
            waiting: queued,
        }
    }

    /// Runs `work` in the next batch's transaction and returns its result once that batch
    /// is committed. `work` returning `Err` undoes only its own changes.
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&mut WriteCtx<'_>) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Call {
            work,
            outcome: None,
            reply,
            queued_at: Instant::now(),
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer stopped before answering".into()))?
    }
}

struct Thread<A> {
    /// `None` after a failure, until reopened.
    conn: Option<Connection>,
    options: Options,
    /// Bumped after every commit (the checkpoint thread watches it).
    commits: Arc<AtomicU64>,
    readers: Arc<Readers>,
    /// How far the checkpoint thread has copied the log.
    progress: Arc<Progress>,
    /// No checkpoint by this thread before this.
    checkpoint_retry_at: Option<Instant>,
    on_append: A,
    stalls: Stalls,
}

impl<A: Fn(Vec<(Topic, StoredEvent)>)> Thread<A> {
    fn run(mut self, mut queue: mpsc::Receiver<Box<dyn Job>>) {
        let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = queue.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.commit_batch(&mut batch);
        }
    }

    fn commit_batch(&mut self, batch: &mut Vec<Box<dyn Job>>) {
        let now = Instant::now();
        let (jobs, skipped): (Vec<_>, Vec<_>) = batch
            .drain(..)
            .partition(|job| job.wanted() && now.duration_since(job.queued_at()) <= MAX_WAIT);
        for job in skipped {
            job.answer(Ok(())); // never run: answered as not written
        }
        if !jobs.is_empty() {
            self.transaction(jobs);
        }
    }

    fn transaction(&mut self, mut jobs: Vec<Box<dyn Job>>) {
        let conn = match self.connection() {
            Ok(conn) => conn,
            Err(e) => {
                for job in jobs {
                    job.answer(Err(&e));
                }
                return;
            }
        };
        let mut ctx = WriteCtx {
            conn,
            appended: Vec::new(),
        };
        let started = Instant::now();
        let result = run_jobs(&mut ctx, &mut jobs);
        let commit = started.elapsed();
        let appended = ctx.appended;
        if result.is_ok() {
            self.commits.fetch_add(1, Ordering::Release);
        }
        match &result {
            Ok(()) => {
                // Snapshots idle readers keep are out of date now: end them, so none holds
                // the log back from a checkpoint or from starting over.
                self.readers.release_idle();
                (self.on_append)(appended);
            }
            Err(e) => {
                // The transaction may still be open, or half-applied: drop the connection
                // (SQLite discards an uncommitted transaction) and start afresh next time.
                self.conn = None;
                tracing::warn!(error = %e, jobs = jobs.len(), "write batch failed; reopening the connection");
            }
        }
        let oldest = jobs.iter().map(|j| j.queued_at()).min();
        let count = jobs.len();
        for job in jobs {
            job.answer(result.as_ref().map(|_| ()));
        }
        if let Some(oldest) = oldest {
            self.stalls.note(oldest.elapsed(), commit, count);
        }
        if result.is_ok() {
            self.checkpoint_if_due();
        }
    }

    /// Once the log is past [`WRITER_CHECKPOINT_PAGES`] and the checkpoint thread has
    /// copied nearly all of it ([`Progress::writer_should_checkpoint`]), copies the rest,
    /// syncs, and waits up to [`WRITER_CHECKPOINT_WAIT`] in all for readers to leave the log
    /// (`RESTART`), so that the next transaction starts the log over. Idle readers'
    /// snapshots are ended first: one would keep the pages written after it from being
    /// copied, and the log from starting over. A reader busy for longer (a long list) makes
    /// the checkpoint give up. The next is never sooner than [`WRITER_CHECKPOINT_GAP`] after
    /// this one.
    fn checkpoint_if_due(&mut self) {
        let frames = i64::from(LOG_FRAMES.with(Cell::get));
        if !self.progress.writer_should_checkpoint(frames)
            || self
                .checkpoint_retry_at
                .is_some_and(|at| Instant::now() < at)
        {
            return;
        }
        let Some(conn) = &self.conn else { return };
        self.readers.release_all_idle();
        CHECKPOINT_WAIT_LEFT.with(|l| l.set(Some(WRITER_CHECKPOINT_WAIT)));
        let _ = conn.busy_handler(Some(poll_while_wait_left));
        // It answers (busy, pages in the log, pages copied). Busy after waiting for readers
        // needs nothing more: the next is tried after the gap. A log of -1 means it ran
        // into the checkpoint thread's pass and did nothing (SQLite does not wait for that),
        // so the next commit tries again; or, once the log is past the point where the
        // writer checkpoints whatever the thread has done, this one waits for the pass to
        // end, so that the log does not grow by however many pages a slow pass lasts.
        let restart =
            || conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(1));
        let mut outcome = restart();
        if frames >= WRITER_CHECKPOINT_ANYWAY_PAGES {
            let until = Instant::now() + WRITER_CHECKPOINT_LOCK_WAIT;
            while matches!(outcome, Ok(log) if log < 0) && Instant::now() < until {
                std::thread::sleep(WRITER_CHECKPOINT_POLL);
                outcome = restart();
            }
        }
        CHECKPOINT_WAIT_LEFT.with(|l| l.set(None));
        let _ = conn.busy_timeout(super::conn::BUSY_TIMEOUT);
        match outcome {
            Ok(log) if log < 0 => return,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint by the writer failed"),
        }
        // Even after one that did not give up: a reader of another process can still keep
        // the log from starting over, and the next checkpoint must not follow every commit.
        self.checkpoint_retry_at = Some(Instant::now() + WRITER_CHECKPOINT_GAP);
    }

    fn connection(&mut self) -> Result<&Connection> {
        if self.conn.is_none() {
            self.conn = Some(watching_the_log(self.options.open_writer()?));
        }
        Ok(self.conn.as_ref().expect("opened above"))
    }
}

/// Runs every job in one transaction and commits.
///
/// Jobs seldom refuse (a version conflict, a missing row), and a savepoint per job is not
/// free: inside one, SQLite copies each page before the job first changes it, in 1 KB
/// chunks each from its own allocation (measured: 6-9 % of a create's CPU). So the batch
/// runs without savepoints first; when a job refuses, that transaction is rolled back and
/// the batch runs again with each job inside its own savepoint, so the refused one undoes
/// only itself and the others commit.
fn run_jobs(ctx: &mut WriteCtx<'_>, jobs: &mut [Box<dyn Job>]) -> Result<()> {
    if run_batch(ctx, jobs, false)? {
        return Ok(());
    }
    ctx.conn.prepare_cached("ROLLBACK")?.execute([])?;
    ctx.appended.clear();
    run_batch(ctx, jobs, true).map(|_| ())
}

/// One transaction of `jobs`, committed: each in a savepoint when `isolated`. Without, a
/// refused job stops the batch with the transaction still open, answering false.
fn run_batch(ctx: &mut WriteCtx<'_>, jobs: &mut [Box<dyn Job>], isolated: bool) -> Result<bool> {
    let conn = ctx.conn;
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    for job in jobs.iter_mut() {
        if isolated {
            conn.prepare_cached("SAVEPOINT job")?.execute([])?;
        }
        let appended_before = ctx.appended.len();
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(ctx)))
            .map_err(|_| StoreError::Failed("a write job panicked".into()))?;
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back by itself (disk full, I/O error):
            // every job before this one is undone too.
            return Err(StoreError::Unavailable(
                "the transaction was rolled back by SQLite (disk full or I/O error)".into(),
            ));
        }
        if !done {
            if !isolated {
                return Ok(false);
            }
            ctx.appended.truncate(appended_before);
            conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
        }
        if isolated {
            conn.prepare_cached("RELEASE job")?.execute([])?;
        }
    }
    conn.prepare_cached("COMMIT")?.execute([])?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_waits_for_readers_however_long_the_copying_before_took() {
        CHECKPOINT_WAIT_LEFT.with(|l| l.set(Some(WRITER_CHECKPOINT_WAIT)));
        // Copying and syncing, before the wait for readers, took longer than the budget.
        std::thread::sleep(WRITER_CHECKPOINT_WAIT * 2);
        let started = Instant::now();
        let mut looks = 0;
        while poll_while_wait_left(looks) {
            looks += 1;
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "it never gave up"
            );
        }
        let waited = started.elapsed();
        assert!(
            waited >= WRITER_CHECKPOINT_WAIT,
            "gave up after waiting {waited:?}"
        );
        assert!(looks > 1, "looked {looks} times");
        assert!(!poll_while_wait_left(looks), "a spent budget waits no more");
    }

    #[test]
    fn outside_the_writers_checkpoint_a_busy_lock_is_not_waited_for() {
        CHECKPOINT_WAIT_LEFT.with(|l| l.set(None));
        assert!(!poll_while_wait_left(0));
    }
}
