//! Writing finished requests down: usage events are coalesced for a short window and written
//! as one aggregated batch, so a bucket that fifty requests touched is incremented once.
//!
//! Only *usage* waits here (counters, request records, indexes: what dashboards read). What
//! admission depends on — leases and the limit reservation — is settled by the request itself,
//! at once, so a key's next request never sees a slot still held by the previous one.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::Instant,
};

use crate::store::{DynStore, UsageEvent};

/// Events held at most, queued or pending: past it, finishing requests wait for the writer
/// (back-pressure on background tasks, never on a client's answer).
const QUEUE: usize = 65_536;
/// Events written in one batch at most (one pipelined write; the Redis engine chunks it).
const MAX_BATCH: usize = 4_096;
/// A failed write is retried with doubling pauses from this one…
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// …up to this one, for about a minute in all, before the batch is given up (and logged).
const RETRY_MAX: Duration = Duration::from_secs(5);
const RETRY_ATTEMPTS: u32 = 16;

enum Msg {
    Usage(Box<UsageEvent>),
    /// Write what is pending now and answer.
    Flush(oneshot::Sender<()>),
}

/// The handle relay code records through; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Msg>,
    task: Arc<parking_lot::Mutex<Option<JoinHandle<()>>>>,
    writes: Arc<AtomicU64>,
}

impl Recorder {
    /// Starts the writer. `window` is how long the first event of a batch waits for company:
    /// zero writes each event as soon as the previous write is done.
    pub fn start(store: DynStore, offset_hours: i32, window: Duration) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let writes = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(writer(store, offset_hours, window, rx, writes.clone()));
        Recorder {
            tx,
            task: Arc::new(parking_lot::Mutex::new(Some(task))),
            writes,
        }
    }

    /// Batches written so far (each one store round trip on Redis, unless it is huge).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Queues a finished request's usage. Never waits unless the queue is full (the store has
    /// been unreachable for a long while), and then only in a background task.
    pub fn record(&self, event: UsageEvent) {
        match self.tx.try_send(Msg::Usage(Box::new(event))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(msg)) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(msg).await;
                });
            }
            Err(mpsc::error::TrySendError::Closed(Msg::Usage(ev))) => {
                tracing::error!(request_id = %ev.record.request_id, "usage recorded after shutdown; dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Returns once everything queued before the call is written (or given up).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Writes what is queued and stops the writer (shutdown; later events are dropped).
    pub async fn close(&self) {
        self.flush().await;
        let task = self.task.lock().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }
}

async fn writer(
    store: DynStore,
    offset_hours: i32,
    window: Duration,
    mut rx: mpsc::Receiver<Msg>,
    writes: Arc<AtomicU64>,
) {
    let mut pending: Vec<UsageEvent> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let deadline = Instant::now() + window;
        let mut flush_now = take(first, &mut pending, &mut waiting);
        while !flush_now && pending.len() < MAX_BATCH {
            // Whatever is already queued joins without waiting; then the window's rest.
            let next = match rx.try_recv() {
                Ok(m) => m,
                Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(m)) => m,
                    Ok(None) | Err(_) => break,
                },
            };
            flush_now = take(next, &mut pending, &mut waiting);
        }
        write(&store, offset_hours, &mut pending, &writes).await;
        for w in waiting.drain(..) {
            let _ = w.send(());
        }
    }
    write(&store, offset_hours, &mut pending, &writes).await;
}

/// Adds a message to the batch; true when it asks for the batch to be written now.
fn take(msg: Msg, pending: &mut Vec<UsageEvent>, waiting: &mut Vec<oneshot::Sender<()>>) -> bool {
    match msg {
        Msg::Usage(ev) => {
            pending.push(*ev);
            false
        }
        Msg::Flush(tx) => {
            waiting.push(tx);
            true
        }
    }
}

async fn write(
    store: &DynStore,
    offset_hours: i32,
    pending: &mut Vec<UsageEvent>,
    writes: &AtomicU64,
) {
    if pending.is_empty() {
        return;
    }
    let mut pause = RETRY_FIRST;
    for attempt in 1..=RETRY_ATTEMPTS {
        let t = std::time::Instant::now();
        let result = store.record_usage_batch(pending, offset_hours).await;
        writes.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::store_round_trip(store.engine(), "account", t.elapsed());
        match result {
            Ok(()) => {
                crate::telemetry::accounting_batch(pending.len());
                pending.clear();
                return;
            }
            Err(e) if attempt < RETRY_ATTEMPTS => {
                tracing::warn!(events = pending.len(), attempt, error = %e, "usage write failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
            Err(e) => {
                tracing::error!(events = pending.len(), error = %e, "usage could not be recorded; batch given up");
            }
        }
    }
    pending.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{buckets, embedded::EmbeddedStore};
    use app::domain::{RequestRecord, TokenUsage};
    use chrono::Utc;

    fn event(key: &str, n: u64) -> UsageEvent {
        let usage = TokenUsage {
            input_tokens: n,
            output_tokens: 1,
            ..Default::default()
        };
        UsageEvent {
            record: RequestRecord {
                request_id: format!("r{n}"),
                key_id: key.into(),
                model: "m".into(),
                usage,
                ..Default::default()
            },
            key_id: key.into(),
            account_id: "a".into(),
            service: "claude".into(),
            model: "m".into(),
            usage,
            cost_nanos: n,
            at: Utc::now(),
        }
    }

    async fn store() -> (tempfile::TempDir, DynStore) {
        let dir = tempfile::tempdir().unwrap();
        let s: DynStore = Arc::new(EmbeddedStore::open(&dir.path().join("db"), 1000).unwrap());
        (dir, s)
    }

    #[tokio::test]
    async fn a_window_coalesces_events_and_flush_writes_them_all() {
        let (_dir, s) = store().await;
        let rec = Recorder::start(s.clone(), 0, Duration::from_secs(3600));
        for n in 1..=100 {
            rec.record(event("k", n));
        }
        // The window is an hour: nothing is written until asked.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let total = buckets::key_total("k");
        assert_eq!(
            s.usage(std::slice::from_ref(&total)).await.unwrap()[0].requests,
            0
        );
        rec.flush().await;
        let c = s.usage(&[total]).await.unwrap()[0];
        assert_eq!(c.requests, 100);
        assert_eq!(c.input_tokens, (1..=100).sum::<u64>());
        assert_eq!(s.recent_records("k", 1000).await.unwrap().len(), 100);
    }

    #[tokio::test]
    async fn a_short_window_writes_without_being_asked() {
        let (_dir, s) = store().await;
        let rec = Recorder::start(s.clone(), 0, Duration::from_millis(5));
        rec.record(event("k", 7));
        let total = buckets::key_total("k");
        for _ in 0..200 {
            if s.usage(std::slice::from_ref(&total)).await.unwrap()[0].requests == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the event was never written");
    }

    #[tokio::test]
    async fn close_writes_what_is_queued() {
        let (_dir, s) = store().await;
        let rec = Recorder::start(s.clone(), 0, Duration::from_secs(3600));
        for n in 1..=10 {
            rec.record(event("k", n));
        }
        rec.close().await;
        let c = s.usage(&[buckets::key_total("k")]).await.unwrap()[0];
        assert_eq!(c.requests, 10);
        // After close, recording is a logged no-op, not a panic.
        rec.record(event("k", 11));
    }
}
