//! The evaluation event pipeline (SPEC §7): a bounded in-memory buffer filled on the
//! request path and drained by [`EventPipeline::flush`] after the response.
//!
//! Recording costs one lock and one push per event: the request's shared part (user,
//! context, request id, time) is `Arc`ed once per request and nothing is serialized
//! until the flush. The flush turns events into JSON records (and/or per-window
//! summaries), cuts them to the sink's limits, retries the records the sink rejects with
//! exponential backoff and jitter, and keeps what still failed for the next flush —
//! until the buffer bound forces the oldest out, which is counted and logged.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::{Map, Value};

use super::{EventRecord, EventSink};
use crate::app::{Outcome, Subject};
use crate::config::EventsConfig;

/// Most send attempts for a record within one flush before it waits for the next flush.
const MAX_ATTEMPTS: u32 = 4;
/// First retry delay; doubles per attempt, with full jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(50);
/// Longest retry delay.
const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// Kinesis partition keys are at most 256 characters.
const MAX_PARTITION_KEY_CHARS: usize = 256;

/// The parts of a request every event of it shares, `Arc`ed once per request.
#[derive(Debug)]
struct RequestPart {
    user_id: Option<Arc<str>>,
    context: Option<Arc<Map<String, Value>>>,
    request_id: Arc<str>,
    timestamp: SystemTime,
}

#[derive(Debug)]
struct Pending {
    request: Arc<RequestPart>,
    outcome: Outcome,
}

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

    /// Drops the oldest entries until `room` more fit under `max`; returns how many.
    fn make_room(&mut self, room: usize, max: usize) -> u64 {
        let mut dropped = 0;
        while self.len() + room > max && self.len() > 0 {
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
        let dropped = buffer.make_room(outcomes.len(), self.config.buffer_max);
        let mut kept = 0;
        for outcome in outcomes {
            if rate < 1.0 && !sampled_in(subject.user_id.as_deref(), outcome.key(), rate) {
                continue;
            }
            buffer.events.push_back(Pending { request: request.clone(), outcome: outcome.clone() });
            kept += 1;
        }
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
        let kept = self.send_with_retries(sink.as_ref(), records).await;
        let sent = self.counters.sent.load(Relaxed) - sent_before;
        let report = FlushReport { sent: usize::try_from(sent).unwrap_or(usize::MAX), kept: kept.len() };
        if !kept.is_empty() {
            let mut buffer = lock(&self.buffer);
            let dropped = buffer.make_room(kept.len(), self.config.buffer_max);
            for record in kept.into_iter().rev() {
                buffer.retry.push_front(record);
            }
            drop(buffer);
            self.count_drops(dropped);
        }
        report
    }

    /// Flushes until the buffer is empty or `budget` has passed (shutdown, Ctrl-C).
    pub async fn drain(&self, budget: Duration) -> EventStats {
        let deadline = Instant::now() + budget;
        while lock(&self.buffer).len() > 0 && Instant::now() < deadline {
            let report = self.flush().await;
            if report.kept > 0 {
                tokio::time::sleep(BACKOFF_BASE.min(deadline.saturating_duration_since(Instant::now()))).await;
            }
        }
        self.stats()
    }

    /// Sends `records`, retrying rejected ones; returns those still unsent.
    async fn send_with_retries(&self, sink: &dyn EventSink, mut records: Vec<EventRecord>) -> Vec<EventRecord> {
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
                tokio::time::sleep(backoff(attempt)).await;
                self.counters.retried.fetch_add(records.len() as u64, Relaxed);
            }
            let mut rejected = Vec::new();
            let mut rest = records.into_iter().peekable();
            while rest.peek().is_some() {
                let batch = take_batch(&mut rest, limits);
                match sink.send(&batch).await {
                    Ok(failed) => {
                        self.counters.sent.fetch_add((batch.len() - failed.len()) as u64, Relaxed);
                        if let Some(first) = failed.first() {
                            tracing::warn!(failed = failed.len(), code = %first.code, "sink rejected some events; retrying");
                        }
                        let mut batch: Vec<Option<EventRecord>> = batch.into_iter().map(Some).collect();
                        rejected.extend(failed.iter().filter_map(|f| batch.get_mut(f.index).and_then(Option::take)));
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
            records.extend(events.iter().filter_map(full_record));
        }
        records
    }
}

/// Takes as many records as one sink call may carry.
fn take_batch(
    records: &mut std::iter::Peekable<impl Iterator<Item = EventRecord>>,
    limits: super::SinkLimits,
) -> Vec<EventRecord> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    while let Some(next) = records.peek() {
        let size = next.data.len() + next.partition_key.len();
        if batch.len() == limits.max_records || (!batch.is_empty() && bytes + size > limits.max_bytes) {
            break;
        }
        bytes += size;
        batch.extend(records.next());
    }
    batch
}

fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE.saturating_mul(1 << attempt.min(16)).min(BACKOFF_CAP);
    ceiling.mul_f64(fastrand::f64())
}

/// Deterministic sampling per (user, flag): the same pair is always in or always out,
/// so an analyst sees whole histories for the sampled users. FNV-1a: stable forever.
fn sampled_in(user_id: Option<&str>, flag_key: &str, rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in user_id.unwrap_or("").bytes().chain([b':']).chain(flag_key.bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    (hash as f64 / u64::MAX as f64) < rate
}

/// `timestamp` as RFC 3339 UTC with microseconds (what Python's isoformat gave, plus `Z`).
fn rfc3339(at: SystemTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    time::OffsetDateTime::from(at).format(&format).unwrap_or_default()
}

/// A Kinesis partition key: the user id, hashed when longer than Kinesis allows; the
/// request id when there is no user.
fn partition_key(user_id: Option<&str>, request_id: &str) -> String {
    match user_id {
        Some(id) if !id.is_empty() && id.chars().count() <= MAX_PARTITION_KEY_CHARS => id.to_owned(),
        Some(id) if !id.is_empty() => format!("{:032x}", xxhash_rust::xxh3::xxh3_128(id.as_bytes())),
        _ if !request_id.is_empty() => request_id.chars().take(MAX_PARTITION_KEY_CHARS).collect(),
        _ => "-".to_owned(),
    }
}

/// The Python service's event, plus `version` and `request_id` (SPEC §7).
#[derive(Serialize)]
struct FullEvent<'a> {
    event_type: &'static str,
    timestamp: String,
    user_id: Option<&'a str>,
    flag_id: &'a str,
    flag_key: &'a str,
    enabled: bool,
    reason: &'static str,
    variant: Option<&'a str>,
    context: Option<&'a Map<String, Value>>,
    version: u64,
    request_id: &'a str,
}

fn full_record(pending: &Pending) -> Option<EventRecord> {
    let (request, outcome) = (&pending.request, &pending.outcome);
    let view = outcome.view();
    let event = FullEvent {
        event_type: "feature_flag_evaluation",
        timestamp: rfc3339(request.timestamp),
        user_id: request.user_id.as_deref(),
        flag_id: view.flag_id(),
        flag_key: outcome.key(),
        enabled: outcome.enabled,
        reason: outcome.reason.as_str(),
        variant: view.variant_key(),
        context: request.context.as_deref(),
        version: view.version(),
        request_id: &request.request_id,
    };
    let data = serde_json::to_vec(&event).ok()?;
    Some(EventRecord { partition_key: partition_key(request.user_id.as_deref(), &request.request_id), data })
}

/// One record per (flag, version, variant, enabled, reason) in the flush window.
#[derive(Serialize)]
struct SummaryEvent<'a> {
    event_type: &'static str,
    flag_key: &'a str,
    flag_id: &'a str,
    version: u64,
    variant: Option<&'a str>,
    enabled: bool,
    reason: &'static str,
    count: u64,
    window_start: String,
    window_end: String,
}

fn summaries(events: &VecDeque<Pending>) -> Vec<EventRecord> {
    type Key<'a> = (&'a str, u64, Option<&'a str>, bool, &'static str);
    let mut groups: HashMap<Key<'_>, (u64, &str)> = HashMap::new();
    let (mut start, mut end) = (None::<SystemTime>, None::<SystemTime>);
    for pending in events {
        let view = pending.outcome.view();
        let key = (pending.outcome.key(), view.version(), view.variant_key(), view.enabled, view.reason.as_str());
        groups.entry(key).or_insert((0, view.flag_id())).0 += 1;
        let at = pending.request.timestamp;
        start = Some(start.map_or(at, |s| s.min(at)));
        end = Some(end.map_or(at, |e| e.max(at)));
    }
    let (Some(start), Some(end)) = (start, end) else { return Vec::new() };
    let (window_start, window_end) = (rfc3339(start), rfc3339(end));
    let mut records: Vec<EventRecord> = groups
        .into_iter()
        .filter_map(|((flag_key, version, variant, enabled, reason), (count, flag_id))| {
            let event = SummaryEvent {
                event_type: "feature_flag_summary",
                flag_key,
                flag_id,
                version,
                variant,
                enabled,
                reason,
                count,
                window_start: window_start.clone(),
                window_end: window_end.clone(),
            };
            let data = serde_json::to_vec(&event).ok()?;
            Some(EventRecord { partition_key: partition_key(Some(flag_key), ""), data })
        })
        .collect();
    records.sort_by(|a, b| a.data.cmp(&b.data));
    records
}
