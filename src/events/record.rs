//! The evaluation event (docs/operations.md) and everything about turning recorded evaluations
//! into records: the Python schema, per-window summaries, sampling, partition keys, and
//! what a recorded event costs in memory (the buffer is bounded in bytes).
//! Kept apart from the buffering and sending in `events/mod.rs`.
//!
//! A request's context is serialized at most once, the first time one of its events is
//! turned into a record ([`RequestPart::prepared`]), and that one serialization is copied
//! into each of its events' records as they are cut into batches, so a 1,000-key batch
//! with a large context costs one serialization and one batch of records at a time — not
//! 1,000 serializations held at once.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::outcome::Outcome;
use crate::sink::EventRecord;

/// Kinesis partition keys are at most 256 characters.
pub(super) const MAX_PARTITION_KEY_CHARS: usize = 256;

/// What one buffered event costs besides its request's shared part: the entry itself,
/// the outcome's `Arc` and indices, and the allocator's rounding (an estimate).
const EVENT_BYTES: usize = std::mem::size_of::<Entry>() + 64;
/// A full event's JSON without the context, user id, keys and request id: the field
/// names, a timestamp, booleans and numbers (an estimate, on the high side).
const EVENT_JSON_BYTES: usize = 240;
/// `,"flagd_reason":"TARGETING_MATCH"`, the longest, for flagd flags' events.
const FLAGD_REASON_JSON_BYTES: usize = 34;
/// Resident cost of one parsed JSON value beyond its text: the `Value` itself plus map
/// or vector bookkeeping (an estimate, on the high side for small values).
const VALUE_BYTES: usize = std::mem::size_of::<Value>() + 32;

/// The parts of a request every event of it shares, `Arc`ed once per request.
#[derive(Debug)]
pub(super) struct RequestPart {
    pub(super) user_id: Option<Arc<str>>,
    pub(super) context: Option<Arc<Map<String, Value>>>,
    pub(super) request_id: Arc<str>,
    pub(super) timestamp: SystemTime,
    /// What this part holds in memory, including its serialization once made.
    pub(super) bytes: usize,
    /// The context's JSON text length, estimated without serializing it.
    pub(super) context_json_bytes: usize,
    /// Made on first use and shared by every record of the request.
    prepared: OnceLock<Prepared>,
}

/// A request's shared record parts, worked out once.
#[derive(Debug)]
struct Prepared {
    timestamp: String,
    partition_key: String,
    context: Option<Box<RawValue>>,
}

impl RequestPart {
    /// The shared part of one request; `context` is `None` when events carry none.
    pub(super) fn new(
        user_id: Option<Arc<str>>,
        context: Option<Arc<Map<String, Value>>>,
        request_id: Arc<str>,
        timestamp: SystemTime,
    ) -> Self {
        let (resident, json) = context.as_deref().map_or((0, 4), map_cost);
        let ids = user_id.as_deref().map_or(0, str::len) + request_id.len();
        // The parsed context, its serialization (made at the first flush) and the ids
        // (also copied into the partition key).
        let bytes = std::mem::size_of::<RequestPart>() + resident + json + 2 * ids + 64;
        RequestPart {
            user_id,
            context,
            request_id,
            timestamp,
            bytes,
            context_json_bytes: json,
            prepared: OnceLock::new(),
        }
    }

    fn prepared(&self) -> &Prepared {
        self.prepared.get_or_init(|| Prepared {
            timestamp: rfc3339(self.timestamp),
            partition_key: partition_key(self.user_id.as_deref(), &self.request_id),
            context: self.context.as_deref().and_then(|c| serde_json::value::to_raw_value(c).ok()),
        })
    }
}

/// One recorded evaluation.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) request: Arc<RequestPart>,
    pub(super) outcome: Outcome,
    /// Sent before and rejected (or its call failed): counted as a retry when sent again.
    resend: bool,
}

impl Pending {
    /// A newly recorded evaluation of `request`.
    pub(super) fn new(request: Arc<RequestPart>, outcome: Outcome) -> Self {
        Pending { request, outcome, resend: false }
    }

    /// Memory this event holds besides its request's shared part.
    pub(super) fn bytes(&self) -> usize {
        EVENT_BYTES + self.outcome.error().as_ref().map_or(0, |(_, m)| m.len()) + self.outcome.key().len()
    }

    /// An estimate of its record's size (the context is repeated in every record).
    pub(super) fn wire_bytes(&self) -> usize {
        let r = &self.request;
        EVENT_JSON_BYTES
            + r.context_json_bytes
            + 2 * r.user_id.as_deref().map_or(0, str::len)
            + r.request_id.len()
            + 2 * self.outcome.key().len()
            + if self.outcome.flagd().is_some() { FLAGD_REASON_JSON_BYTES } else { 0 }
    }
}

/// What waits in the buffer: a recorded evaluation, or a record already made (a
/// summary), which stands for `events` evaluations in the delivered/dropped accounts.
#[derive(Debug)]
pub(super) enum Entry {
    /// One evaluation, turned into its record when a batch is cut.
    Event(Pending),
    /// A summary record.
    Summary {
        /// The record.
        record: EventRecord,
        /// Evaluations it accounts for (0 when they are also sent as full events).
        events: u64,
        /// When its oldest evaluation was recorded.
        since: SystemTime,
        /// Sent before and rejected.
        resend: bool,
    },
}

impl Entry {
    /// A summary record accounting for `events` evaluations, the oldest recorded `since`.
    pub(super) fn summary(record: EventRecord, events: u64, since: SystemTime) -> Self {
        Entry::Summary { record, events, since, resend: false }
    }

    /// The same entry, marked as sent before.
    pub(super) fn resend(mut self) -> Self {
        match &mut self {
            Entry::Event(pending) => pending.resend = true,
            Entry::Summary { resend, .. } => *resend = true,
        }
        self
    }

    /// Whether it was sent before.
    pub(super) fn is_resend(&self) -> bool {
        match self {
            Entry::Event(pending) => pending.resend,
            Entry::Summary { resend, .. } => *resend,
        }
    }

    /// The evaluation, if it is one.
    pub(super) fn pending(&self) -> Option<&Pending> {
        match self {
            Entry::Event(pending) => Some(pending),
            Entry::Summary { .. } => None,
        }
    }

    /// Evaluations this entry accounts for.
    pub(super) fn events(&self) -> u64 {
        match self {
            Entry::Event(_) => 1,
            Entry::Summary { events, .. } => *events,
        }
    }

    /// When the oldest evaluation in it was recorded.
    pub(super) fn since(&self) -> SystemTime {
        match self {
            Entry::Event(pending) => pending.request.timestamp,
            Entry::Summary { since, .. } => *since,
        }
    }

    /// The request it shares memory with, if any.
    pub(super) fn request(&self) -> Option<&Arc<RequestPart>> {
        match self {
            Entry::Event(pending) => Some(&pending.request),
            Entry::Summary { .. } => None,
        }
    }

    /// Memory held by the entry itself.
    pub(super) fn bytes(&self) -> usize {
        match self {
            Entry::Event(pending) => pending.bytes(),
            Entry::Summary { record, .. } => EVENT_BYTES + record.data.len() + record.partition_key.len(),
        }
    }

    /// Its record's (estimated) size on the wire.
    pub(super) fn wire_bytes(&self) -> usize {
        match self {
            Entry::Event(pending) => pending.wire_bytes(),
            Entry::Summary { record, .. } => record.data.len() + record.partition_key.len(),
        }
    }

    /// The record to send (an event is serialized now, its request's parts once).
    pub(super) fn record(&self) -> Option<EventRecord> {
        match self {
            Entry::Event(pending) => full_record(pending),
            Entry::Summary { record, .. } => Some(record.clone()),
        }
    }
}

/// Resident bytes and JSON text bytes of a parsed context, estimated in one walk
/// without serializing it. Strings count their escapes, so the JSON estimate is close.
fn map_cost(map: &Map<String, Value>) -> (usize, usize) {
    let (mut resident, mut json) = (VALUE_BYTES, 2);
    for (key, value) in map {
        let (r, j) = value_cost(value);
        resident += VALUE_BYTES + key.len() + r;
        json += string_json(key) + 2 + j;
    }
    (resident, json)
}

fn value_cost(value: &Value) -> (usize, usize) {
    match value {
        Value::Null => (0, 4),
        Value::Bool(_) => (0, 5),
        Value::Number(_) => (0, 24),
        Value::String(s) => (s.len(), string_json(s)),
        Value::Array(items) => items.iter().fold((VALUE_BYTES, 2), |(r, j), item| {
            let (ri, ji) = value_cost(item);
            (r + VALUE_BYTES + ri, j + ji + 1)
        }),
        Value::Object(map) => map_cost(map),
    }
}

/// The length of `s` as a JSON string: quotes, and escapes for quotes, backslashes and
/// control characters (`\u00XX`, the longest form).
fn string_json(s: &str) -> usize {
    2 + s.len() + s.bytes().map(|b| if b < 0x20 { 5 } else { usize::from(b == b'"' || b == b'\\') }).sum::<usize>()
}

/// Deterministic sampling per (user, flag): the same pair is always in or always out,
/// so an analyst sees whole histories for the sampled users. FNV-1a: stable forever.
pub(super) fn sampled_in(user_id: Option<&str>, flag_key: &str, rate: f64) -> bool {
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
pub(super) fn rfc3339(at: SystemTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    time::OffsetDateTime::from(at).format(&format).unwrap_or_default()
}

/// A Kinesis partition key: the user id, hashed when longer than Kinesis allows; the
/// request id when there is no user.
pub(super) fn partition_key(user_id: Option<&str>, request_id: &str) -> String {
    match user_id {
        Some(id) if !id.is_empty() && id.chars().count() <= MAX_PARTITION_KEY_CHARS => id.to_owned(),
        Some(id) if !id.is_empty() => format!("{:032x}", xxhash_rust::xxh3::xxh3_128(id.as_bytes())),
        _ if !request_id.is_empty() => request_id.chars().take(MAX_PARTITION_KEY_CHARS).collect(),
        _ => "-".to_owned(),
    }
}

/// The Python service's event, plus `version` and `request_id` (and `flagd_reason` for a
/// flagd flag).
#[derive(Serialize)]
struct FullEvent<'a> {
    event_type: &'static str,
    timestamp: &'a str,
    user_id: Option<&'a str>,
    flag_id: &'a str,
    flag_key: &'a str,
    enabled: bool,
    reason: &'static str,
    variant: Option<&'a str>,
    /// The request's one serialization, copied in as it is.
    context: Option<&'a RawValue>,
    version: u64,
    request_id: &'a str,
    /// flagd's own reason (`STATIC`, `DEFAULT`, `TARGETING_MATCH`, `DISABLED`, `ERROR`)
    /// beside the nearest native one, for flagd flags only: `reason` alone cannot tell a
    /// `STATIC` answer from a `DEFAULT` one.
    #[serde(skip_serializing_if = "Option::is_none")]
    flagd_reason: Option<&'static str>,
}

/// The full event of `pending`. What a request's events share — the formatted
/// timestamp, the partition key and the context's JSON — is worked out once per
/// request, not once per event (a 1,000-flag batch is 1,000 events of one request).
pub(super) fn full_record(pending: &Pending) -> Option<EventRecord> {
    let (request, outcome) = (&pending.request, &pending.outcome);
    let shared = request.prepared();
    let view = outcome.view();
    let event = FullEvent {
        event_type: "feature_flag_evaluation",
        timestamp: &shared.timestamp,
        user_id: request.user_id.as_deref(),
        flag_id: view.flag_id(),
        flag_key: outcome.key(),
        enabled: outcome.enabled,
        reason: outcome.reason().as_str(),
        variant: outcome.flagd_value().map(|(name, _)| name).or(view.variant_key()),
        context: shared.context.as_deref(),
        version: view.version(),
        request_id: &request.request_id,
        flagd_reason: outcome.flagd().map(|f| f.reason.as_str()),
    };
    // Sized from the record's estimate (which also counts the partition key), so the
    // text is written without growing the buffer: `to_vec` starts at 128 bytes and
    // doubled its way up, a fifth of the flush's time.
    let mut data = Vec::with_capacity(pending.wire_bytes());
    serde_json::to_writer(&mut data, &event).ok()?;
    Some(EventRecord { partition_key: shared.partition_key.clone(), data })
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
    /// As in the full event: flagd's own reason, for flagd flags only.
    #[serde(skip_serializing_if = "Option::is_none")]
    flagd_reason: Option<&'static str>,
}

/// The summary records of `events` (one window: the evaluations since the last flush,
/// each at its own timestamp), each with the number of evaluations it counts.
pub(super) fn summaries<'a>(events: impl Iterator<Item = &'a Pending>) -> Vec<(EventRecord, u64)> {
    type Key<'a> = (&'a str, u64, Option<&'a str>, bool, &'static str, Option<&'static str>);
    let mut groups: HashMap<Key<'_>, (u64, &str)> = HashMap::new();
    let (mut start, mut end) = (None::<SystemTime>, None::<SystemTime>);
    for pending in events {
        let view = pending.outcome.view();
        let variant = pending.outcome.flagd_value().map(|(name, _)| name).or(view.variant_key());
        let flagd_reason = pending.outcome.flagd().map(|f| f.reason.as_str());
        let key = (pending.outcome.key(), view.version(), variant, view.enabled, view.reason().as_str(), flagd_reason);
        groups.entry(key).or_insert((0, view.flag_id())).0 += 1;
        let at = pending.request.timestamp;
        start = Some(start.map_or(at, |s| s.min(at)));
        end = Some(end.map_or(at, |e| e.max(at)));
    }
    let (Some(start), Some(end)) = (start, end) else { return Vec::new() };
    let (window_start, window_end) = (rfc3339(start), rfc3339(end));
    let mut records: Vec<(EventRecord, u64)> = groups
        .into_iter()
        .filter_map(|((flag_key, version, variant, enabled, reason, flagd_reason), (count, flag_id))| {
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
                flagd_reason,
            };
            let data = serde_json::to_vec(&event).ok()?;
            Some((EventRecord { partition_key: partition_key(Some(flag_key), ""), data }, count))
        })
        .collect();
    records.sort_by(|a, b| a.0.data.cmp(&b.0.data));
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_json_estimate_is_close_to_the_serialized_length_and_never_under() {
        let context = json!({"plan": "pro", "tags": ["a", "b\"c", "\n"], "org": {"id": "x", "on": true}, "n": null});
        let map = context.as_object().cloned().unwrap_or_default();
        let exact = serde_json::to_string(&map).map(|s| s.len()).unwrap_or(0);
        let (_, estimate) = map_cost(&map);
        // Never under; over by a byte per value at most (a trailing comma, `true` as
        // `false`) plus escapes counted at their longest form.
        assert!(estimate >= exact && estimate <= exact + 8, "{estimate} vs {exact}");
    }

    #[test]
    fn a_full_record_is_written_into_a_buffer_sized_by_its_estimate() {
        use crate::eval::{EvalInput, Evaluator, NoFlags};
        use crate::flag::CompiledFlag;
        let doc = json!({"key": "checkout", "flag_id": "checkout-2026", "enabled": true, "rollout_percentage": 100,
            "version": 7, "variants": [{"key": "treatment", "allocation": 1.0}]});
        let flag = Arc::new(CompiledFlag::from_value(doc).expect("flag"));
        let context =
            json!({"country": "US", "plan": "pro", "note": "a \" and a \n"}).as_object().cloned().unwrap_or_default();
        let input = EvalInput { user_id: Some("user-000042"), context: &context, now: 0.0 };
        let outcome =
            Outcome::from_evaluation(Some(&flag), "checkout", &Evaluator::new(input, &NoFlags).evaluate(&flag), false);
        let request = RequestPart::new(
            Some(Arc::from("user-000042")),
            Some(Arc::new(context.clone())),
            Arc::from("req-1"),
            SystemTime::now(),
        );
        let pending = Pending::new(Arc::new(request), outcome);
        let record = full_record(&pending).expect("record");
        assert!(record.data.len() + record.partition_key.len() <= pending.wire_bytes(), "the estimate is not under");
        assert_eq!(record.data.capacity(), pending.wire_bytes(), "written without growing its buffer");
    }

    #[test]
    fn a_request_costs_at_least_its_context_twice_parsed_and_serialized() {
        let big = json!({"blob": "x".repeat(100_000), "list": vec![0; 1_000]});
        let part = RequestPart::new(None, big.as_object().cloned().map(Arc::new), Arc::from("r"), SystemTime::now());
        assert!(part.bytes >= 2 * 100_000 + 1_000 * std::mem::size_of::<Value>(), "{}", part.bytes);
        assert!(part.context_json_bytes >= 100_000 + 2 * 1_000);
    }
}
