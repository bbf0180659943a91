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

    /// Sends one batch, retrying rejected records (while a retry can start before
    /// `deadline`); what is still unsent goes to `kept`, in order.
    pub(super) async fn send_batch(
        &self,
        sink: &dyn EventSink,
        mut entries: Vec<Entry>,
        mut records: Vec<EventRecord>,
        deadline: Option<Instant>,
        kept: &mut Vec<Entry>,
        sent: &mut usize,
    ) -> Sent {
        let batch_len = entries.len();
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
            let answer = match deadline {
                None => sink.send(&records).await,
                Some(deadline) => match tokio::time::timeout_at(deadline, sink.send(&records)).await {
                    Ok(answer) => answer,
                    Err(_) => {
                        // The sink may or may not have stored them: dropped, and said so.
                        let events: u64 = entries.iter().map(Entry::events).sum();
                        self.counters.unconfirmed.fetch_add(events, Relaxed);
                        self.count_drops(events);
                        return Sent::Cut;
                    }
                },
            };
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
                    kept.extend(entries.into_iter().map(Entry::resend));
                    return Sent::Failed;
                }
            };
            if let Some(first) = failed.first() {
                tracing::warn!(failed = failed.len(), code = %first.code, "sink rejected some events; retrying");
            }
            let rejected = rejected_indices(entries.len(), &failed);
            let (mut again, mut again_records) = (Vec::new(), Vec::new());
            for ((entry, record), rejected) in entries.into_iter().zip(records).zip(rejected) {
                if rejected {
                    again.push(entry);
                    again_records.push(record);
                } else {
                    *sent += 1;
                    self.counters.sent.fetch_add(1, Relaxed);
                    self.counters.delivered.fetch_add(entry.events(), Relaxed);
                }
            }
            if again.is_empty() {
                return Sent::Done { all_kept: false };
            }
            (entries, records) = (again, again_records);
        }
        let all_kept = entries.len() == batch_len;
        kept.extend(entries.into_iter().map(Entry::resend));
        Sent::Done { all_kept }
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
