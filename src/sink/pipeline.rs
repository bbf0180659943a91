//! The evaluation event pipeline (SPEC §7): a bounded in-memory buffer filled on the
//! request path and drained by [`EventPipeline::flush`] after the response.
//!
//! Recording costs one lock and one push per event: the request's shared part (user,
//! context, request id, time) is `Arc`ed once per request and nothing is serialized
//! until the flush. The flush turns events into JSON records (and/or per-window
//! summaries), cuts them to the sink's limits, retries the records the sink rejects with
//! exponential backoff and jitter, and keeps what still failed for the next flush —
//! until the buffer bound forces the oldest out, which is counted and logged.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::event::{full_records, sampled_in, summaries, Pending, RequestPart};
use super::{EventRecord, EventSink};
use crate::app::{Outcome, Subject};
use crate::config::EventsConfig;

/// Most send attempts for a record within one flush before it waits for the next flush.
const MAX_ATTEMPTS: u32 = 4;
/// First retry delay; doubles per attempt, with full jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(50);
/// Longest retry delay.
const BACKOFF_CAP: Duration = Duration::from_secs(2);
#[derive(Debug, Default)]
struct Buffer {
    /// Recorded, not yet serialized.
    events: VecDeque<Pending>,
    /// Serialized, sent at least once, rejected: older than anything in `events`.
    retry: VecDeque<EventRecord>,
}

impl Buffer {
    fn len(&self) -> usize {
        self.events.len() + self.retry.len()
    }

    /// Drops the oldest entries (rejected records before recorded events) until at most
    /// `max` are left; returns how many went.
    fn trim(&mut self, max: usize) -> u64 {
        let mut dropped = 0;
        while self.len() > max {
            if self.retry.pop_front().is_none() {
                self.events.pop_front();
            }
            dropped += 1;
        }
        dropped
    }
}

/// Counters for logs and tests. Monotonic since start-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventStats {
    /// Evaluations recorded into the buffer.
    pub recorded: u64,
    /// Evaluations left out by `EVENTS_SAMPLE_RATE`.
    pub sampled_out: u64,
    /// Records the sink accepted.
    pub sent: u64,
    /// Records or events dropped: buffer overflow, or a record too large to ever send.
    pub dropped: u64,
    /// Records sent again after the sink rejected them.
    pub retried: u64,
    /// Entries in the buffer now.
    pub buffered: usize,
}

#[derive(Debug, Default)]
struct Counters {
    recorded: AtomicU64,
    sampled_out: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
    retried: AtomicU64,
    /// Drops not yet reported in a log line.
    unlogged_drops: AtomicU64,
}

/// Buffers evaluation events and ships them to an [`EventSink`].
pub struct EventPipeline {
    /// `None`: events are off (no stream configured); recording is a no-op.
    sink: Option<Arc<dyn EventSink>>,
    config: EventsConfig,
    /// A `std` mutex: held for a push or a swap, never across an `.await`.
    buffer: Mutex<Buffer>,
    /// One flush at a time, so records are sent in order and never twice.
    flushing: tokio::sync::Mutex<()>,
    counters: Counters,
}

impl std::fmt::Debug for EventPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventPipeline").field("enabled", &self.sink.is_some()).field("stats", &self.stats()).finish()
    }
}

/// What one flush did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Records accepted by the sink.
    pub sent: usize,
    /// Records kept in the buffer for the next flush.
    pub kept: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl EventPipeline {
    /// A pipeline sending to `sink` (`None` turns events off).
    pub fn new(sink: Option<Arc<dyn EventSink>>, config: EventsConfig) -> Self {
        EventPipeline {
            sink,
            config,
            buffer: Mutex::new(Buffer::default()),
            flushing: tokio::sync::Mutex::new(()),
            counters: Counters::default(),
        }
    }

    /// Whether events are being collected at all.
    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// The counters so far.
    pub fn stats(&self) -> EventStats {
        let c = &self.counters;
        EventStats {
            recorded: c.recorded.load(Relaxed),
            sampled_out: c.sampled_out.load(Relaxed),
            sent: c.sent.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            retried: c.retried.load(Relaxed),
            buffered: lock(&self.buffer).len(),
        }
    }

    /// Records one request's evaluations. Never blocks on the sink, never fails.
    pub fn record(&self, subject: &Subject, timestamp: SystemTime, outcomes: &[Outcome]) {
        if self.sink.is_none() || outcomes.is_empty() {
            return;
        }
        let request = Arc::new(RequestPart {
            user_id: subject.user_id.clone(),
            context: self.config.include_context.then(|| subject.context.clone()),
            request_id: subject.request_id.clone(),
            timestamp,
        });
        let rate = self.config.sample_rate;
        let mut buffer = lock(&self.buffer);
        let mut kept = 0;
        for outcome in outcomes {
            if rate < 1.0 && !sampled_in(subject.user_id.as_deref(), outcome.key(), rate) {
                continue;
            }
            buffer.events.push_back(Pending { request: request.clone(), outcome: outcome.clone() });
            kept += 1;
        }
        // Trimmed after the push, so only sampled-in events count against the bound and a
        // request with more events than the bound keeps its newest ones.
        let dropped = buffer.trim(self.config.buffer_max);
        drop(buffer);
        self.counters.recorded.fetch_add(kept, Relaxed);
        self.counters.sampled_out.fetch_add(outcomes.len() as u64 - kept, Relaxed);
        self.count_drops(dropped);
    }

    fn count_drops(&self, dropped: u64) {
        if dropped > 0 {
            self.counters.dropped.fetch_add(dropped, Relaxed);
            self.counters.unlogged_drops.fetch_add(dropped, Relaxed);
        }
    }

    /// Sends everything buffered. Records the sink keeps rejecting, and everything after
    /// a failed call, stay buffered for the next flush.
    pub async fn flush(&self) -> FlushReport {
        self.flush_until(None).await
    }

    /// [`EventPipeline::flush`], retrying rejected records only while a retry can start
    /// before `deadline`.
    async fn flush_until(&self, deadline: Option<Instant>) -> FlushReport {
        let Some(sink) = &self.sink else { return FlushReport::default() };
        let _one_at_a_time = self.flushing.lock().await;
        let unlogged = self.counters.unlogged_drops.swap(0, Relaxed);
        if unlogged > 0 {
            tracing::warn!(
                dropped = unlogged,
                bound = self.config.buffer_max,
                "event buffer full: oldest events dropped"
            );
        }
        let (events, mut records) = {
            let mut buffer = lock(&self.buffer);
            (std::mem::take(&mut buffer.events), Vec::from(std::mem::take(&mut buffer.retry)))
        };
        let retried = records.len();
        records.extend(self.serialize(events));
        if records.is_empty() {
            return FlushReport::default();
        }
        self.counters.retried.fetch_add(retried as u64, Relaxed);
        let sent_before = self.counters.sent.load(Relaxed);
        let kept = self.send_with_retries(sink.as_ref(), records, deadline).await;
        let sent = self.counters.sent.load(Relaxed) - sent_before;
        let report = FlushReport { sent: usize::try_from(sent).unwrap_or(usize::MAX), kept: kept.len() };
        if !kept.is_empty() {
            // The kept records are older than anything recorded during this flush, so they
            // go back in front and are the first to go if the bound is exceeded.
            let mut buffer = lock(&self.buffer);
            for record in kept.into_iter().rev() {
                buffer.retry.push_front(record);
            }
            let dropped = buffer.trim(self.config.buffer_max);
            drop(buffer);
            self.count_drops(dropped);
        }
        report
    }

    /// Flushes until the buffer is empty or `budget` has passed (shutdown, Ctrl-C). No
    /// retry starts after the budget; a sink call already under way is waited for.
    pub async fn drain(&self, budget: Duration) -> EventStats {
        let deadline = Instant::now() + budget;
        while lock(&self.buffer).len() > 0 && Instant::now() < deadline {
            let report = self.flush_until(Some(deadline)).await;
            if report.kept > 0 {
                tokio::time::sleep(BACKOFF_BASE.min(deadline.saturating_duration_since(Instant::now()))).await;
            }
        }
        self.stats()
    }

    /// Sends `records`, retrying rejected ones (while a retry can start before
    /// `deadline`); returns those still unsent, in their original order.
    async fn send_with_retries(
        &self,
        sink: &dyn EventSink,
        mut records: Vec<EventRecord>,
        deadline: Option<Instant>,
    ) -> Vec<EventRecord> {
        let limits = sink.limits();
        records.retain(|r| {
            let fits = r.data.len() + r.partition_key.len() <= limits.max_record_bytes;
            if !fits {
                tracing::warn!(bytes = r.data.len(), "event record larger than the sink accepts: dropped");
                self.count_drops(1);
            }
            fits
        });
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                let delay = backoff(attempt);
                if deadline.is_some_and(|d| Instant::now() + delay >= d) {
                    break;
                }
                tokio::time::sleep(delay).await;
                self.counters.retried.fetch_add(records.len() as u64, Relaxed);
            }
            let mut rejected = Vec::new();
            let mut rest = records.into_iter().peekable();
            while rest.peek().is_some() {
                let batch = take_batch(&mut rest, limits);
                let batch_len = batch.len();
                match sink.send(&batch).await {
                    Ok(failed) => {
                        if let Some(first) = failed.first() {
                            tracing::warn!(failed = failed.len(), code = %first.code, "sink rejected some events; retrying");
                        }
                        let again = rejected_in_order(batch, &failed);
                        self.counters.sent.fetch_add((batch_len - again.len()) as u64, Relaxed);
                        rejected.extend(again);
                    }
                    Err(error) => {
                        // The sink is unreachable: keep this batch and everything after it.
                        tracing::warn!(error = %error, "sending events failed; keeping them buffered");
                        rejected.extend(batch);
                        rejected.extend(rest);
                        return rejected;
                    }
                }
            }
            if rejected.is_empty() {
                return rejected;
            }
            records = rejected;
        }
        records
    }

    /// Turns recorded events into records: full events and/or per-window summaries.
    fn serialize(&self, events: VecDeque<Pending>) -> Vec<EventRecord> {
        let mut records = Vec::new();
        if self.config.mode.summary() {
            records.extend(summaries(&events));
        }
        if self.config.mode.full() {
            records.extend(full_records(&events));
        }
        records
    }
}

/// Takes as many records as one sink call may carry — always at least one, so a sink
/// declaring a zero limit cannot stall the flush.
fn take_batch(
    records: &mut std::iter::Peekable<impl Iterator<Item = EventRecord>>,
    limits: super::SinkLimits,
) -> Vec<EventRecord> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    while let Some(next) = records.peek() {
        let size = next.data.len() + next.partition_key.len();
        let full = batch.len() >= limits.max_records || bytes + size > limits.max_bytes;
        if !batch.is_empty() && full {
            break;
        }
        bytes += size;
        batch.extend(records.next());
    }
    batch
}

/// The records of `batch` the sink reported failed, in batch order whatever order it
/// reported them in; duplicate and out-of-range indices are ignored.
fn rejected_in_order(batch: Vec<EventRecord>, failed: &[super::FailedRecord]) -> Vec<EventRecord> {
    if failed.is_empty() {
        return Vec::new();
    }
    let mut is_failed = vec![false; batch.len()];
    for f in failed {
        if let Some(slot) = is_failed.get_mut(f.index) {
            *slot = true;
        }
    }
    batch.into_iter().zip(is_failed).filter_map(|(record, failed)| failed.then_some(record)).collect()
}

fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE.saturating_mul(1 << attempt.min(16)).min(BACKOFF_CAP);
    ceiling.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests;
