//! WAL checkpoints, mostly off the write path.
//!
//! By default the connection that commits runs a checkpoint whenever the write-ahead log
//! passes 1,000 pages: it copies them into the database file and syncs both files, holding
//! up every write queued behind it. Here this thread copies pages into the database file
//! continuously, on its own connection, with passive checkpoints that block no one. The
//! writer still checkpoints itself, but only every [`WRITER_CHECKPOINT_PAGES`] pages, and
//! by then little is left to copy; that checkpoint is what lets SQLite start the log over,
//! which a checkpoint running beside a stream of writes never can (measured: without it
//! the log grew past 1 GB in a minute of creates). The log file is cut back to
//! [`WAL_LIMIT_BYTES`] whenever it starts over.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::conn::{Options, Readers};
use crate::{Result, StoreError};

/// How often the thread looks for new commits to checkpoint.
const EVERY: Duration = Duration::from_millis(20);

/// Log size (pages) at which the writer checkpoints and the log can start over.
pub(super) const WRITER_CHECKPOINT_PAGES: i64 = 4000;

/// Size the log file is truncated to once it has been checkpointed and restarted.
pub(super) const WAL_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

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
        if let Err(e) = c.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
            tracing::warn!(error = %e, "WAL checkpoint failed; retrying with a new connection");
            conn = None;
        }
    }
}
