//! The evaluation event pipeline (docs/operations.md): a buffer bounded in entries and in bytes,
//! filled on the request path and sent by [`EventPipeline::flush`] after the response.
//!
//! Recording costs one lock and one push per event: the request's shared part (user,
//! context, request id, time) is `Arc`ed once per request and nothing is serialized
//! until the flush. The flush cuts the buffer into batches within the sink's limits and
//! sends them one at a time — only one batch of records exists at once, whatever the
//! buffer holds — retrying the records the sink rejects with exponential backoff and
//! jitter. What still fails goes back in front for the next flush, until the bounds force
//! the oldest out, which is counted and logged.
//!
//! Accounting: every recorded evaluation ends up *delivered*
//! (the sink accepted its record), *dropped* (bounds, a record too large, or left
//! unsent at shutdown) or still buffered; at shutdown [`EventPipeline::shutdown`] logs
//! `delivered + dropped == recorded`. A flush may be cancelled at any await (the local
//! server stops its flusher mid-flush): what it took out of the buffer is settled when
//! it is dropped (`send::Taken`), so cancelling never makes events vanish.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::config::EventsConfig;
use crate::outcome::{Outcome, Subject};
use crate::sink::EventSink;
use buffer::Buffer;
use record::{sampled_in, summaries, Entry, Pending, RequestPart};
pub use tally::FlagCounts;
use tally::FlagTally;

/// Most send attempts for a record within one flush before it waits for the next flush.
const MAX_ATTEMPTS: u32 = 4;
/// First retry delay; doubles per attempt, with full jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(50);
/// Longest retry delay.
const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// The most a drain expects one sink call to take when deciding whether to start one.
const MAX_CALL_ESTIMATE: Duration = Duration::from_millis(200);
/// Longest pause of after-response flushes after the sink failed (see `flush_due`).
const HOLD_CAP: Duration = Duration::from_secs(60);

/// Counters for logs and tests. Monotonic since start-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventStats {
    /// Evaluations recorded into the buffer.
    pub recorded: u64,
    /// Evaluations left out by `EVENTS_SAMPLE_RATE`.
    pub sampled_out: u64,
    /// Records the sink accepted (full events and summaries).
    pub sent: u64,
    /// Evaluations whose record the sink accepted (in summary mode: counted by the
    /// summaries accepted).
    pub delivered: u64,
    /// Evaluations dropped: buffer bounds, a record too large to ever send, or left
    /// unsent at shutdown.
    pub dropped: u64,
    /// Of `dropped`: evaluations whose sink call was cut off in flight (at the shutdown
    /// deadline, by a cancelled flush, or still running when the process ends), which
    /// the sink may or may not have stored.
    pub unconfirmed: u64,
    /// Records sent again after the sink rejected them.
    pub retried: u64,
    /// Entries in the buffer now.
    pub buffered: usize,
    /// Estimated bytes held by the buffer now.
    pub buffered_bytes: usize,
}

#[derive(Debug, Default)]
struct Counters {
    recorded: AtomicU64,
    sampled_out: AtomicU64,
    sent: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    unconfirmed: AtomicU64,
    retried: AtomicU64,
    /// Drops not yet reported in a log line.
    unlogged_drops: AtomicU64,
}

/// After-response flushes are paused after the sink failed, so an outage does not add
/// the SDK's timeouts to every invocation; the pause doubles per failure.
#[derive(Debug, Default)]
struct Hold {
    until: Option<Instant>,
    failures: u32,
}

/// Buffers evaluation events and ships them to an [`EventSink`].
pub struct EventPipeline {
    /// `None`: events are off (no stream configured); recording is a no-op.
    sink: Option<Arc<dyn EventSink>>,
    config: EventsConfig,
    /// A `std` mutex: held for a push or a pop, never across an `.await`.
    buffer: Mutex<Buffer>,
    /// One flush at a time, so records are sent in order and never twice.
    flushing: tokio::sync::Mutex<()>,
    counters: Counters,
    hold: Mutex<Hold>,
    /// How long the last sink call took: a shutdown drain starts no call it cannot finish.
    last_call: Mutex<Duration>,
    /// Whether evaluations are tallied per flag for the metrics ([`EventPipeline::count_flags`]).
    tally_on: AtomicBool,
    /// Evaluations per flag and outcome since the metrics last took them. Its own lock:
    /// taken once per request, held for a few increments, never across an `.await`.
    tally: Mutex<FlagTally>,
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
    /// Entries this flush meant to send that are still buffered.
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
            hold: Mutex::new(Hold::default()),
            last_call: Mutex::new(Duration::ZERO),
            tally_on: AtomicBool::new(false),
            tally: Mutex::new(FlagTally::default()),
        }
    }

    /// Turns the per-flag tally on (the metrics are on), also when events are off.
    pub fn count_flags(&self, on: bool) {
        self.tally_on.store(on, Relaxed);
    }

    /// Evaluations per flag and outcome since the last call (for the metrics).
    pub fn take_flag_counts(&self) -> FlagCounts {
        lock(&self.tally).take()
    }

    /// Whether events are being collected at all.
    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// The counters so far.
    pub fn stats(&self) -> EventStats {
        let (buffered, totals) = {
            let buffer = lock(&self.buffer);
            (buffer.len(), buffer.totals())
        };
        let c = &self.counters;
        EventStats {
            recorded: c.recorded.load(Relaxed),
            sampled_out: c.sampled_out.load(Relaxed),
            sent: c.sent.load(Relaxed),
            delivered: c.delivered.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            unconfirmed: c.unconfirmed.load(Relaxed),
            retried: c.retried.load(Relaxed),
            buffered,
            buffered_bytes: totals.bytes,
        }
    }

    /// Records one request's evaluations. Never blocks on the sink, never fails.
    pub fn record(&self, subject: &Subject, timestamp: SystemTime, outcomes: &[Outcome]) {
        if outcomes.is_empty() {
            return;
        }
        if self.tally_on.load(Relaxed) {
            lock(&self.tally).count(outcomes);
        }
        if self.sink.is_none() {
            return;
        }
        let context = self.config.include_context.then(|| subject.context.clone());
        let request =
            Arc::new(RequestPart::new(subject.user_id.clone(), context, subject.request_id.clone(), timestamp));
        let rate = self.config.sample_rate;
        let mut buffer = lock(&self.buffer);
        let mut kept = 0;
        for outcome in outcomes {
            if rate < 1.0 && !sampled_in(subject.user_id.as_deref(), outcome.key(), rate) {
                continue;
            }
            buffer.push_event(Entry::Event(Pending::new(request.clone(), outcome.clone())));
            kept += 1;
        }
        // Trimmed after the push, so only sampled-in events count against the bounds and
        // a request with more events than the bounds keeps its newest ones.
        let (dropped, _) = buffer.trim(self.config.buffer_max, self.config.buffer_max_bytes);
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

    /// Whether an after-response flush is worth its cost `now`: the buffer
    /// holds `EVENTS_FLUSH_MIN` entries or a full sink call's worth of bytes, or its oldest
    /// event was recorded `EVENTS_FLUSH_MAX_AGE_MS` before `now` (the app's clock, which
    /// stamped the events) — and the sink is not in the pause that follows a failed flush
    /// (doubling per failure, up to a minute).
    pub fn flush_due(&self, now: SystemTime) -> bool {
        let Some(sink) = &self.sink else { return false };
        if lock(&self.hold).until.is_some_and(|until| Instant::now() < until) {
            return false;
        }
        let buffer = lock(&self.buffer);
        let Some(oldest) = buffer.oldest() else { return false };
        buffer.len() >= self.config.flush_min
            || buffer.totals().wire_bytes >= sink.limits().max_bytes
            || now.duration_since(oldest).unwrap_or_default() >= self.config.flush_max_age
    }

    /// Sends everything buffered. Records the sink keeps rejecting, and everything after
    /// a failed call, stay buffered for the next flush.
    pub async fn flush(&self) -> FlushReport {
        self.flush_until(None).await
    }

    /// [`EventPipeline::flush`]; with a `deadline`, no call or retry starts that cannot end
    /// before it, and a call still in flight at it is cut off.
    async fn flush_until(&self, deadline: Option<Instant>) -> FlushReport {
        let Some(sink) = &self.sink else { return FlushReport::default() };
        let _one_at_a_time = match deadline {
            None => self.flushing.lock().await,
            Some(deadline) => match tokio::time::timeout_at(deadline, self.flushing.lock()).await {
                Ok(guard) => guard,
                Err(_) => return FlushReport::default(),
            },
        };
        self.log_drops();
        self.summarize();
        let limits = sink.limits();
        let mut remaining = lock(&self.buffer).len();
        // Settles what the flush took out of the buffer even if the flush is cancelled.
        let mut taken = Taken::new(self);
        let mut sent = 0;
        let healthy = loop {
            if remaining == 0 || deadline.is_some_and(|d| !self.time_for_a_call(d)) {
                break true;
            }
            let (entries, records) = self.cut_batch(limits, &mut remaining);
            if entries.is_empty() {
                continue;
            }
            taken.batch = entries;
            match self.send_batch(sink.as_ref(), &mut taken, records, deadline, &mut sent).await {
                Sent::Done { all_kept: false } => {}
                Sent::Done { all_kept: true } | Sent::Failed => break false,
                Sent::Cut => break true,
            }
        };
        let report = FlushReport { sent, kept: taken.kept.len() + remaining };
        drop(taken);
        self.update_hold(healthy);
        report
    }

    fn log_drops(&self) {
        let unlogged = self.counters.unlogged_drops.swap(0, Relaxed);
        if unlogged > 0 {
            tracing::warn!(
                dropped = unlogged,
                max_events = self.config.buffer_max,
                max_bytes = self.config.buffer_max_bytes,
                "event buffer full: oldest events dropped"
            );
        }
    }

    /// In summary modes, turns the evaluations recorded since the last flush into their
    /// summaries (one window), placed ready to send; in `both` mode the evaluations follow
    /// them as full events.
    fn summarize(&self) {
        if !self.config.mode.summary() {
            return;
        }
        let events = lock(&self.buffer).take_events();
        let Some(since) = events.front().map(Entry::since) else { return };
        let full = self.config.mode.full();
        let records = summaries(events.iter().filter_map(Entry::pending));
        let mut buffer = lock(&self.buffer);
        for (record, count) in records {
            buffer.push_ready(Entry::summary(record, if full { 0 } else { count }, since));
        }
        if full {
            events.into_iter().for_each(|entry| buffer.push_ready(entry));
        }
        let (dropped, _) = buffer.trim(self.config.buffer_max, self.config.buffer_max_bytes);
        drop(buffer);
        self.count_drops(dropped);
    }

    /// Whether a sink call started now would likely end before `deadline`, judged by the
    /// last answered call (capped: one slow call, e.g. the first on a cold connection,
    /// must not stop a drain from trying).
    fn time_for_a_call(&self, deadline: Instant) -> bool {
        Instant::now() + (*lock(&self.last_call)).min(MAX_CALL_ESTIMATE) < deadline
    }

    /// Returns entries a flush could not send to the front of the buffer: they are
    /// older than anything recorded meanwhile, so they are the first to go if the bounds
    /// are exceeded.
    fn put_back(&self, kept: Vec<Entry>) {
        if kept.is_empty() {
            return;
        }
        let mut buffer = lock(&self.buffer);
        for entry in kept.into_iter().rev() {
            buffer.push_front(entry);
        }
        let (dropped, _) = buffer.trim(self.config.buffer_max, self.config.buffer_max_bytes);
        drop(buffer);
        self.count_drops(dropped);
    }

    fn update_hold(&self, healthy: bool) {
        let mut hold = lock(&self.hold);
        if healthy {
            *hold = Hold::default();
            return;
        }
        hold.failures = hold.failures.saturating_add(1);
        let base = self.config.flush_max_age.max(Duration::from_secs(1));
        let pause = base.saturating_mul(1 << (hold.failures - 1).min(16)).min(HOLD_CAP);
        hold.until = Some(Instant::now() + pause);
    }

    /// Flushes until the buffer is empty or `budget` has passed (shutdown, Ctrl-C). No
    /// sink call or retry starts that would not end within the budget (judged by the last
    /// call's duration), and a call still in flight at the deadline is cut off.
    pub async fn drain(&self, budget: Duration) -> EventStats {
        let deadline = Instant::now() + budget;
        while lock(&self.buffer).len() > 0 && self.time_for_a_call(deadline) {
            let report = self.flush_until(Some(deadline)).await;
            if report.kept > 0 {
                tokio::time::sleep(BACKOFF_BASE.min(deadline.saturating_duration_since(Instant::now()))).await;
            }
        }
        self.stats()
    }

    /// The last word before the process exits: drains within `budget`, counts whatever
    /// is left as dropped, and logs the account, in which `delivered + dropped ==
    /// recorded` holds.
    pub async fn shutdown(&self, budget: Duration) -> EventStats {
        if !self.enabled() {
            return self.stats();
        }
        // The drain keeps its own deadline; this bound only guards against a sink that
        // ignores cancellation.
        let _ = tokio::time::timeout(budget + Duration::from_millis(20), self.drain(budget)).await;
        let left = lock(&self.buffer).trim(0, 0).0;
        self.count_drops(left);
        // Events another flush still holds (one with a sink call in flight when the drain
        // could not take over, as Lambda's after-response flush) are neither delivered
        // nor buffered: dropped, and unconfirmed, since that call may yet store them.
        let c = &self.counters;
        let unaccounted = c.recorded.load(Relaxed).saturating_sub(c.delivered.load(Relaxed) + c.dropped.load(Relaxed));
        c.unconfirmed.fetch_add(unaccounted, Relaxed);
        self.count_drops(unaccounted);
        let stats = self.stats();
        tracing::info!(
            recorded = stats.recorded,
            delivered = stats.delivered,
            dropped = stats.dropped,
            left_at_shutdown = left + unaccounted,
            unconfirmed = stats.unconfirmed,
            records_sent = stats.sent,
            "events at shutdown: delivered + dropped == recorded"
        );
        stats
    }
}

mod buffer;
mod record;
mod send;
pub mod tally;
use send::{Sent, Taken};

#[cfg(test)]
mod tests;
