//! Sending: cutting the buffer into batches within the sink's limits, one batch of
//! records at a time, and retrying what the sink rejects.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::time::Instant;

use super::record::Entry;
use super::{lock, EventPipeline, BACKOFF_BASE, BACKOFF_CAP, MAX_ATTEMPTS};
use crate::sink::{EventRecord, EventSink, FailedRecord, SinkLimits};

/// How one batch went.
pub(super) enum Sent {
    /// Everything was accepted, or what was not is in the `kept` list.
    Done { all_kept: bool },
    /// The sink failed as a whole: nothing more is sent in this flush.
    Failed,
    /// The deadline cut a call in flight.
    Cut,
}

impl EventPipeline {
    /// Takes the oldest entries (at most `remaining`) that fit in one sink call and makes
    /// their records; records too large for the sink are dropped and counted.
    pub(super) fn cut_batch(&self, limits: SinkLimits, remaining: &mut usize) -> (Vec<Entry>, Vec<EventRecord>) {
        let (mut entries, mut records, mut bytes) = (Vec::new(), Vec::new(), 0);
        while *remaining > 0 && entries.len() < limits.max_records.max(1) {
            let Some(entry) = lock(&self.buffer).pop_front() else {
                *remaining = 0;
                break;
            };
            *remaining -= 1;
            let record = entry.record();
            let size = record.as_ref().map_or(usize::MAX, |r| r.data.len() + r.partition_key.len());
            let Some(record) = record.filter(|_| size <= limits.max_record_bytes) else {
                tracing::warn!(bytes = size, "event record larger than the sink accepts: dropped");
                self.count_drops(entry.events());
                continue;
            };
            if !entries.is_empty() && bytes + size > limits.max_bytes {
                lock(&self.buffer).push_front(entry);
                *remaining += 1;
                break;
            }
            if entry.is_resend() {
                self.counters.retried.fetch_add(1, Relaxed);
            }
            bytes += size;
            entries.push(entry);
            records.push(record);
        }
        (entries, records)
    }

    /// Sends the batch `taken` holds, retrying rejected records (while a retry can start
    /// before `deadline`); what is still unsent goes to `taken.kept`, in order.
    pub(super) async fn send_batch(
        &self,
        sink: &dyn EventSink,
        taken: &mut Taken<'_>,
        mut records: Vec<EventRecord>,
        deadline: Option<Instant>,
        sent: &mut usize,
    ) -> Sent {
        let batch_len = taken.batch.len();
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                let delay = backoff(attempt);
                if deadline.is_some_and(|d| Instant::now() + delay >= d) {
                    break;
                }
                tokio::time::sleep(delay).await;
                self.counters.retried.fetch_add(records.len() as u64, Relaxed);
            }
            let started = Instant::now();
            taken.in_call = true;
            let answer = match deadline {
                None => sink.send(&records).await,
                Some(deadline) => match tokio::time::timeout_at(deadline, sink.send(&records)).await {
                    Ok(answer) => answer,
                    Err(_) => {
                        taken.cut();
                        return Sent::Cut;
                    }
                },
            };
            taken.in_call = false;
            let failed = match answer {
                Ok(failed) => {
                    // Only answered calls tell how long a call takes (a failing one may
                    // include the SDK's own retries and backoff).
                    *lock(&self.last_call) = started.elapsed();
                    failed
                }
                Err(error) => {
                    // The sink is unreachable: keep this batch; the rest stays buffered.
                    tracing::warn!(error = %error, "sending events failed; keeping them buffered");
                    taken.keep_batch();
                    return Sent::Failed;
                }
            };
            if let Some(first) = failed.first() {
                tracing::warn!(failed = failed.len(), code = %first.code, "sink rejected some events; retrying");
            }
            let rejected = rejected_indices(taken.batch.len(), &failed);
            let mut again_records = Vec::new();
            let entries = std::mem::take(&mut taken.batch);
            for ((entry, record), rejected) in entries.into_iter().zip(records).zip(rejected) {
                if rejected {
                    taken.batch.push(entry);
                    again_records.push(record);
                } else {
                    *sent += 1;
                    self.counters.sent.fetch_add(1, Relaxed);
                    self.counters.delivered.fetch_add(entry.events(), Relaxed);
                }
            }
            if taken.batch.is_empty() {
                return Sent::Done { all_kept: false };
            }
            records = again_records;
        }
        let all_kept = taken.batch.len() == batch_len;
        taken.keep_batch();
        Sent::Done { all_kept }
    }
}

/// What one flush has taken out of the buffer and not settled yet. A flush can be
/// cancelled at any `.await` (the local server stops its flusher mid-flush at shutdown),
/// so nothing taken may live only in the flush's locals: dropping this settles it.
/// Entries waiting (kept, or a batch between retries) go back to the front of the
/// buffer; a batch whose sink call was in flight counts as dropped and unconfirmed (the
/// sink may or may not have stored it), as at a drain's deadline. Nothing vanishes.
pub(super) struct Taken<'a> {
    pipeline: &'a EventPipeline,
    /// The batch being sent: its records are in a call, or waiting for a retry.
    pub(super) batch: Vec<Entry>,
    /// Whether a sink call carrying `batch` is in flight.
    in_call: bool,
    /// Entries this flush could not send, in order, for the front of the buffer.
    pub(super) kept: Vec<Entry>,
}

impl<'a> Taken<'a> {
    pub(super) fn new(pipeline: &'a EventPipeline) -> Self {
        Taken { pipeline, batch: Vec::new(), in_call: false, kept: Vec::new() }
    }

    /// The call in flight was cut off: its batch counts as dropped, unconfirmed.
    fn cut(&mut self) {
        let events: u64 = self.batch.drain(..).map(|entry| entry.events()).sum();
        self.in_call = false;
        self.pipeline.counters.unconfirmed.fetch_add(events, Relaxed);
        self.pipeline.count_drops(events);
    }

    /// The batch waits for the next flush, behind what was kept before it.
    fn keep_batch(&mut self) {
        self.kept.extend(self.batch.drain(..).map(Entry::resend));
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if self.in_call {
            self.cut();
        }
        self.keep_batch();
        self.pipeline.put_back(std::mem::take(&mut self.kept));
    }
}

/// For each record of a batch of `len`, whether the sink reported it failed; duplicate
/// and out-of-range indices are ignored.
fn rejected_indices(len: usize, failed: &[FailedRecord]) -> Vec<bool> {
    let mut rejected = vec![false; len];
    for f in failed {
        if let Some(slot) = rejected.get_mut(f.index) {
            *slot = true;
        }
    }
    rejected
}

fn backoff(retry: u32) -> Duration {
    crate::backoff::full_jitter(BACKOFF_BASE, BACKOFF_CAP, retry)
}
