//! Log lines to stdout in batches, from one background thread.
//!
//! Writing each line with its own system call costs a request more than rendering it. So
//! while logging is initialised, lines are queued (each whole, so lines never interleave)
//! and a thread writes everything queued with one call every [`FLUSH_EVERY`]. The thread
//! sleeps between rounds instead of waiting on the queue, so queuing a line never has to
//! wake it: on a busy machine a wake-up per line would cost more than the write it saves.
//! The queue is bounded: a logger that outruns stdout waits, as it would on a direct write,
//! and no line is dropped. Dropping the [`crate::Guard`] writes out what is queued and goes
//! back to direct writes, so lines logged during the last moments of shutdown still
//! appear.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;

use tracing_subscriber::fmt::MakeWriter;

/// Lines queued at most before loggers wait.
const QUEUE_LINES: usize = 16 * 1024;

/// How long a line may wait in the queue.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(5);

/// Bytes written per system call at most.
const BATCH_BYTES: usize = 256 * 1024;

struct Queue {
    lines: SyncSender<Vec<u8>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    /// Set once the guard is dropped: write directly from then on.
    closed: AtomicBool,
}

static QUEUE: OnceLock<Queue> = OnceLock::new();

/// Starts the writer thread (once per process).
pub(crate) fn start() {
    QUEUE.get_or_init(|| {
        let (lines, queued) = mpsc::sync_channel(QUEUE_LINES);
        let worker = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_batches(&queued))
            .ok();
        Queue {
            lines,
            closed: AtomicBool::new(worker.is_none()),
            worker: Mutex::new(worker),
        }
    });
}

/// Writes out everything queued and switches to direct writes.
pub(crate) fn stop() {
    let Some(queue) = QUEUE.get() else { return };
    if queue.closed.swap(true, Ordering::AcqRel) {
        return;
    }
    let _ = queue.lines.send(Vec::new()); // the stop marker: an empty line is never logged
    let worker = queue
        .worker
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(worker) = worker {
        let _ = worker.join();
    }
}

fn write_batches(queued: &Receiver<Vec<u8>>) {
    let mut batch = Vec::with_capacity(64 * 1024);
    let mut stopping = false;
    while !stopping {
        std::thread::sleep(FLUSH_EVERY);
        loop {
            match queued.try_recv() {
                // After the stop marker, keep draining what raced in behind it.
                Ok(line) if line.is_empty() => stopping = true,
                Ok(line) => {
                    batch.extend_from_slice(&line);
                    if batch.len() >= BATCH_BYTES {
                        write_out(&mut batch);
                    }
                }
                Err(_) => break,
            }
        }
        write_out(&mut batch);
    }
}

fn write_out(batch: &mut Vec<u8>) {
    if batch.is_empty() {
        return;
    }
    // Nowhere to report a failed log write; dropping the batch beats panicking.
    let mut out = io::stdout().lock();
    let _ = out.write_all(batch).and_then(|()| out.flush());
    batch.clear();
}

/// The [`MakeWriter`] for stdout: queued while the writer thread runs, direct otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchedStdout;

/// One line's writer; see [`BatchedStdout`].
#[derive(Debug)]
pub struct LineWriter;

impl<'a> MakeWriter<'a> for BatchedStdout {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter
    }
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    /// The JSON layer hands over each line whole, with one call.
    fn write_all(&mut self, line: &[u8]) -> io::Result<()> {
        if line.is_empty() {
            return Ok(());
        }
        if let Some(queue) = QUEUE.get()
            && !queue.closed.load(Ordering::Acquire)
        {
            match queue.lines.try_send(line.to_vec()) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(line)) => {
                    // Wait for room rather than drop a line.
                    if queue.lines.send(line).is_ok() {
                        return Ok(());
                    }
                }
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
        io::stdout().lock().write_all(line)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
