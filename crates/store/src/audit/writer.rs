//! Batched audit writes, off the request path.
//!
//! [`AuditWriter::record`] only tries to push into a bounded queue: it never blocks and never
//! waits for the disk. When the queue is full the record is dropped and counted (see
//! [`AuditWriter::stats`]), so a slow disk can cost audit records but never delay a call.
//!
//! A background task takes records off the queue and appends them with
//! [`crate::Store::append_audit`], one transaction per batch: as soon as
//! [`AuditWriterConfig::max_batch`] records are waiting, and otherwise every
//! [`AuditWriterConfig::flush_interval`] (1 s by default). [`AuditWriter::flush`] writes
//! everything queued so far; [`AuditWriter::close`] does the same and stops the task, and is
//! what a clean shutdown calls.
//!
//! **Durability:** a record is on disk at most one flush interval after `record` returned (plus
//! the time of the write in progress). A crash or a kill loses at most the last second of records
//! with the default settings; a clean shutdown that calls `close` loses none.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::AuditRecord;
use crate::Store;

/// How the [`AuditWriter`] queues and batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditWriterConfig {
    /// Records the queue between callers and the background writer holds. When it is full,
    /// `record` drops the record and counts it. Default: 8192 records.
    pub queue_capacity: usize,
    /// Longest a queued record waits before it is written; also the most a crash can lose.
    /// Default: 1 s.
    pub flush_interval: Duration,
    /// Records per transaction: a batch is written as soon as this many are waiting.
    /// Default: 256 records.
    pub max_batch: usize,
}

impl Default for AuditWriterConfig {
    fn default() -> Self {
        AuditWriterConfig {
            queue_capacity: 8192,
            flush_interval: Duration::from_secs(1),
            max_batch: 256,
        }
    }
}

/// Counters of an [`AuditWriter`], since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Records committed to the store.
    pub written: u64,
    /// Records dropped because the queue was full or the writer was closed.
    pub dropped: u64,
    /// Records lost because the store failed to write their batch (the error is logged).
    pub failed: u64,
    /// Records waiting in the queue now.
    pub queued: usize,
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

enum Control {
    Flush(oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
}

/// A handle to the background audit writer. Cheap to clone; every clone feeds the same queue.
/// Dropping every handle also stops the writer after a last write, but only [`AuditWriter::close`]
/// waits for that write, so call it on shutdown.
#[derive(Clone)]
pub struct AuditWriter {
    shared: Arc<Shared>,
}

struct Shared {
    records: mpsc::Sender<AuditRecord>,
    control: mpsc::UnboundedSender<Control>,
    counters: Arc<Counters>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl AuditWriter {
    /// Starts the background writer on the current tokio runtime.
    pub fn spawn(store: Arc<dyn Store>, config: AuditWriterConfig) -> AuditWriter {
        let (records, records_rx) = mpsc::channel(config.queue_capacity.max(1));
        let (control, control_rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(run(
            store,
            records_rx,
            control_rx,
            config,
            Arc::clone(&counters),
        ));
        AuditWriter {
            shared: Arc::new(Shared {
                records,
                control,
                counters,
                task: Mutex::new(Some(task)),
            }),
        }
    }

    /// Queues a record for writing. Never blocks: if the queue is full (or the writer closed),
    /// the record is dropped and counted in [`AuditStats::dropped`].
    pub fn record(&self, record: AuditRecord) {
        if self.shared.records.try_send(record).is_err() {
            let dropped = self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Say so on the first drop and then ever more rarely, not once per record.
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped,
                    "audit queue full or closed: audit records are being dropped"
                );
            }
        }
    }

    /// Writes everything queued before this call, then returns. Write failures are logged and
    /// counted in [`AuditStats::failed`].
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.shared.control.send(Control::Flush(ack)).is_ok() {
            let _ = done.await;
        }
    }

    /// Writes everything queued and stops the writer; later `record` calls drop and count.
    /// Returns once the last batch is written. Calling it again does nothing.
    pub async fn close(&self) {
        let (ack, done) = oneshot::channel();
        if self.shared.control.send(Control::Close(ack)).is_ok() {
            let _ = done.await;
        }
        let task = self
            .shared
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// The writer's counters.
    pub fn stats(&self) -> AuditStats {
        let c = &self.shared.counters;
        let records = &self.shared.records;
        AuditStats {
            written: c.written.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            queued: records.max_capacity() - records.capacity(),
        }
    }
}

impl std::fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWriter")
            .field("stats", &self.stats())
            .finish()
    }
}

async fn run(
    store: Arc<dyn Store>,
    mut records: mpsc::Receiver<AuditRecord>,
    mut control: mpsc::UnboundedReceiver<Control>,
    config: AuditWriterConfig,
    counters: Arc<Counters>,
) {
    let max_batch = config.max_batch.max(1);
    let mut batch: Vec<AuditRecord> = Vec::with_capacity(max_batch);
    let mut ticker = tokio::time::interval(config.flush_interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            message = control.recv() => {
                if matches!(message, Some(Control::Close(_)) | None) {
                    records.close();
                }
                while let Ok(record) = records.try_recv() {
                    batch.push(record);
                    if batch.len() >= max_batch {
                        write(&*store, &mut batch, &counters).await;
                    }
                }
                write(&*store, &mut batch, &counters).await;
                match message {
                    Some(Control::Flush(ack)) => {
                        let _ = ack.send(());
                    }
                    Some(Control::Close(ack)) => {
                        let _ = ack.send(());
                        return;
                    }
                    None => return,
                }
            }
            record = records.recv() => match record {
                Some(record) => {
                    batch.push(record);
                    if batch.len() >= max_batch {
                        write(&*store, &mut batch, &counters).await;
                    }
                }
                None => {
                    write(&*store, &mut batch, &counters).await;
                    return;
                }
            },
            _ = ticker.tick() => write(&*store, &mut batch, &counters).await,
        }
    }
}

async fn write(store: &dyn Store, batch: &mut Vec<AuditRecord>, counters: &Counters) {
    if batch.is_empty() {
        return;
    }
    let records = std::mem::take(batch);
    let n = records.len() as u64;
    match store.append_audit(records).await {
        Ok(()) => {
            counters.written.fetch_add(n, Ordering::Relaxed);
        }
        Err(error) => {
            counters.failed.fetch_add(n, Ordering::Relaxed);
            tracing::error!(records = n, %error, "audit batch could not be written and is lost");
        }
    }
}
