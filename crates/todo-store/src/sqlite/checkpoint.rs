//! WAL checkpoints, mostly off the write path.
//!
//! By default the connection that commits runs a checkpoint whenever the write-ahead log
//! passes 1,000 pages: it copies them into the database file and syncs both files, holding
//! up every write queued behind it. Here this thread copies pages into the database file
//! continuously, on its own connection, with passive checkpoints that block no one, and
//! syncs the database file after each pass, so the pages it copied are on disk before
//! anyone waits for them. The writer still checkpoints itself once the log passes
//! [`WRITER_CHECKPOINT_PAGES`] pages (see [`super::writer`]), and by then little is left
//! to copy or to sync; that checkpoint is what lets SQLite start the log over, which a
//! checkpoint running beside a stream of writes never can (measured: without it the log
//! grew past 1 GB in a minute of creates). The log file is cut back to [`WAL_LIMIT_BYTES`]
//! whenever it starts over.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::conn::{Options, Readers};
use crate::{Result, StoreError};

/// How often the thread looks for new commits to checkpoint.
const EVERY: Duration = Duration::from_millis(20);

/// Log size (pages) at which the writer checkpoints and the log can start over.
pub(super) const WRITER_CHECKPOINT_PAGES: i64 = 16000;

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
    ) -> Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(&options, &commits, &readers, &stopped))
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the checkpoint thread: {e}"))
            })?;
        Ok(Checkpointer { _stop: stop })
    }
}

fn run(options: &Options, commits: &AtomicU64, readers: &Readers, stopped: &mpsc::Receiver<()>) {
    let mut conn = None;
    let mut file: Option<std::fs::File> = None;
    let mut copied_before = 0;
    let mut seen = commits.load(Ordering::Acquire);
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
        readers.release_idle();
        let now = commits.load(Ordering::Acquire);
        if now == seen {
            continue;
        }
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
        let copied = match c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(2))
        {
            Ok(copied) => copied,
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
