//! WAL checkpoints, mostly off the write path.
//!
//! By default the connection that commits runs a checkpoint whenever the write-ahead log
//! passes 1,000 pages: it copies them into the database file and syncs both files, holding
//! up every write queued behind it. Here this thread copies pages into the database file
//! continuously, on its own connection, with passive checkpoints that block no one, and
//! syncs the database file after each pass, so the pages it copied are on disk before
//! anyone waits for them. The writer still checkpoints itself once the log passes
//! [`WRITER_CHECKPOINT_PAGES`] pages (see [`super::writer`]); that checkpoint is what lets
//! SQLite start the log over, which a checkpoint running beside a stream of writes never
//! can (measured: without it the log grew past 1 GB in a minute of creates). Every write
//! waits while it runs, so it must find little to copy or sync: once the log nears the
//! writer's threshold this thread checkpoints every [`EVERY_NEAR`] instead, and tells the
//! writer how far it got ([`Progress`]), so the writer waits for it to catch up rather
//! than copying a pass's worth of pages itself. The log file is cut back to
//! [`WAL_LIMIT_BYTES`] whenever it starts over.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::conn::{Options, Readers};
use crate::{Result, StoreError};

/// How often the thread looks for new commits to checkpoint.
const EVERY: Duration = Duration::from_millis(20);

/// How often once the log is past [`NEAR_PAGES`]: the pages left for the writer's own
/// checkpoint are then those of the last couple of milliseconds, not of 20.
const EVERY_NEAR: Duration = Duration::from_millis(2);

/// Log size (pages) at which the writer checkpoints and the log can start over.
pub(super) const WRITER_CHECKPOINT_PAGES: i64 = 16000;

/// Log size from which this thread checkpoints every [`EVERY_NEAR`].
const NEAR_PAGES: i64 = WRITER_CHECKPOINT_PAGES * 3 / 4;

/// The writer checkpoints once this thread has left it at most this many pages to copy...
const CAUGHT_UP_PAGES: i64 = 256;

/// ...or, if this thread cannot catch up (it fell behind, or readers hold it back), once
/// the log is this long all the same.
pub(super) const WRITER_CHECKPOINT_ANYWAY_PAGES: i64 = WRITER_CHECKPOINT_PAGES * 5 / 4;

/// What this thread's last checkpoint found: the log's length and how much of it is in the
/// database file (SQLite's `log` and `checkpointed` columns), for the writer to read; and
/// the log's length after the writer's last commit, for this thread.
#[derive(Debug, Default)]
pub(super) struct Progress {
    log: AtomicI64,
    copied: AtomicI64,
    writer_frames: AtomicI64,
}

impl Progress {
    fn note(&self, log: i64, copied: i64) {
        self.copied.store(copied, Ordering::Relaxed);
        self.log.store(log, Ordering::Release);
    }

    /// Whether the writer, whose last commit left `frames` pages in the log, should
    /// checkpoint now; `frames` is noted for this thread ([`Progress::writer_due`]).
    pub(super) fn writer_should_checkpoint(&self, frames: i64) -> bool {
        self.writer_frames.store(frames, Ordering::Relaxed);
        self.writer_due()
    }

    /// Whether the writer's last commit made it due to checkpoint.
    fn writer_due(&self) -> bool {
        let frames = self.writer_frames.load(Ordering::Relaxed);
        let log = self.log.load(Ordering::Acquire);
        let copied = self.copied.load(Ordering::Relaxed);
        writer_should_checkpoint(frames, log, copied)
    }
}

/// The writer's rule: past the threshold, checkpoint once this thread has copied all but
/// [`CAUGHT_UP_PAGES`] of the log, or past [`WRITER_CHECKPOINT_ANYWAY_PAGES`] whatever it
/// has copied. A report of a log longer than `frames` is from before the log started over,
/// and says nothing about this one.
fn writer_should_checkpoint(frames: i64, log: i64, copied: i64) -> bool {
    if frames < WRITER_CHECKPOINT_PAGES {
        return false;
    }
    let caught_up = log <= frames && frames - copied <= CAUGHT_UP_PAGES;
    caught_up || frames >= WRITER_CHECKPOINT_ANYWAY_PAGES
}

/// Size the log file is truncated to once it has been checkpointed and restarted.
pub(super) const WAL_LIMIT_BYTES: i64 = 128 * 1024 * 1024;

/// Stops the checkpoint thread when dropped (with the store).
#[derive(Debug)]
pub(super) struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Starts the thread; `commits` is bumped by the writer after every commit. The thread
    /// also ends the read snapshots idle `readers` keep, which would hold checkpoints back.
    pub(super) fn start(
        options: Options,
        commits: Arc<AtomicU64>,
        readers: Arc<Readers>,
        progress: Arc<Progress>,
    ) -> Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(&options, &commits, &readers, &progress, &stopped))
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the checkpoint thread: {e}"))
            })?;
        Ok(Checkpointer { _stop: stop })
    }
}

fn run(
    options: &Options,
    commits: &AtomicU64,
    readers: &Readers,
    progress: &Progress,
    stopped: &mpsc::Receiver<()>,
) {
    let mut conn = None;
    let mut file: Option<std::fs::File> = None;
    let mut copied_before = 0;
    let mut every = EVERY;
    let mut seen = commits.load(Ordering::Acquire);
    let mut left_to_writer = None;
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
        readers.release_idle();
        let now = commits.load(Ordering::Acquire);
        if now == seen {
            continue;
        }
        // SQLite runs one checkpoint at a time and the second gives up at once, so a pass of
        // this thread's running when the writer is due makes the writer miss its turn
        // (measured with 10 ms syncs: 88 misses in a row, the log past 100 MB). While the
        // writer is due and still committing, it checkpoints after its next commit: leave
        // the log to it. Once it stops committing, this thread copies what is left.
        if progress.writer_due() && left_to_writer != Some(now) {
            left_to_writer = Some(now);
            continue;
        }
        left_to_writer = None;
        seen = now;
        if conn.is_none() {
            match options.open_writer() {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the checkpoint connection");
                    continue;
                }
            }
        }
        let Some(c) = &conn else { continue };
        // PASSIVE copies what it can without waiting for anyone; the rest goes next time.
        // It answers (busy, pages in the log, pages copied so far).
        let pass = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        let copied = match pass {
            // -1: the writer was checkpointing; this pass did nothing.
            Ok((log, _)) if log < 0 => continue,
            Ok((log, copied)) => {
                progress.note(log, copied);
                every = if log >= NEAR_PAGES { EVERY_NEAR } else { EVERY };
                copied
            }
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; retrying with a new connection");
                conn = None;
                continue;
            }
        };
        // SQLite syncs the database file only once a pass has copied the whole log. Syncing
        // after every pass keeps what is left for that sync, and the writer's, small.
        if copied > 0 && copied != copied_before {
            sync_database(&options.path, &mut file);
        }
        copied_before = copied;
    }
}

/// Flushes the database file's written pages to disk (`fdatasync`). A failure only costs
/// the writer a longer sync later, so it is logged and the file reopened next time.
fn sync_database(path: &std::path::Path, file: &mut Option<std::fs::File>) {
    if file.is_none() {
        match std::fs::File::open(path) {
            Ok(f) => *file = Some(f),
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the database file to sync it");
                return;
            }
        }
    }
    if let Some(f) = file
        && let Err(e) = f.sync_data()
    {
        tracing::warn!(error = %e, "syncing the database file failed");
        *file = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_the_threshold_the_writer_leaves_the_log_alone() {
        assert!(!writer_should_checkpoint(
            WRITER_CHECKPOINT_PAGES - 1,
            WRITER_CHECKPOINT_PAGES - 1,
            WRITER_CHECKPOINT_PAGES - 1
        ));
    }

    #[test]
    fn past_it_the_writer_waits_until_the_thread_has_caught_up() {
        let frames = WRITER_CHECKPOINT_PAGES + 500;
        assert!(!writer_should_checkpoint(
            frames,
            frames - 400,
            frames - 1000
        ));
        assert!(!writer_should_checkpoint(
            frames,
            frames,
            frames - CAUGHT_UP_PAGES - 1
        ));
        assert!(writer_should_checkpoint(
            frames,
            frames - 100,
            frames - CAUGHT_UP_PAGES
        ));
        assert!(writer_should_checkpoint(frames, frames, frames));
    }

    #[test]
    fn a_report_from_before_the_log_started_over_does_not_count_as_caught_up() {
        let frames = WRITER_CHECKPOINT_PAGES + 10;
        assert!(!writer_should_checkpoint(
            frames,
            frames + 5_000,
            frames + 5_000
        ));
    }

    #[test]
    fn far_past_it_the_writer_checkpoints_whatever_the_thread_has_done() {
        assert!(writer_should_checkpoint(
            WRITER_CHECKPOINT_ANYWAY_PAGES,
            0,
            0
        ));
        assert!(writer_should_checkpoint(
            WRITER_CHECKPOINT_ANYWAY_PAGES,
            WRITER_CHECKPOINT_ANYWAY_PAGES * 2,
            1
        ));
    }
}
