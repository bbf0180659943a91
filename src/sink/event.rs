//! The evaluation event (SPEC §7) and everything about turning recorded evaluations
//! into records: the Python schema, per-window summaries, sampling, partition keys.
//! Kept apart from the buffering and sending in `pipeline.rs`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Map, Value};

use super::EventRecord;
use crate::app::Outcome;

/// Kinesis partition keys are at most 256 characters.
pub(super) const MAX_PARTITION_KEY_CHARS: usize = 256;

/// The parts of a request every event of it shares, `Arc`ed once per request.
#[derive(Debug)]
pub(super) struct RequestPart {
    pub(super) user_id: Option<Arc<str>>,
    pub(super) context: Option<Arc<Map<String, Value>>>,
    pub(super) request_id: Arc<str>,
    pub(super) timestamp: SystemTime,
}

#[derive(Debug)]
pub(super) struct Pending {
    pub(super) request: Arc<RequestPart>,
    pub(super) outcome: Outcome,
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

/// The Python service's event, plus `version` and `request_id` (SPEC §7).
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
    context: Option<&'a Map<String, Value>>,
    version: u64,
    request_id: &'a str,
}

/// The full events of `events`, in order. What a request's events share — the
/// formatted timestamp and the partition key — is worked out once per request, not
/// once per event (a 100-flag batch is 100 events of one request).
pub(super) fn full_records(events: &VecDeque<Pending>) -> impl Iterator<Item = EventRecord> + '_ {
    let mut shared: Option<(Arc<RequestPart>, String, String)> = None;
    events.iter().filter_map(move |pending| {
        let request = &pending.request;
        if !shared.as_ref().is_some_and(|(last, _, _)| Arc::ptr_eq(last, request)) {
            let key = partition_key(request.user_id.as_deref(), &request.request_id);
            shared = Some((request.clone(), rfc3339(request.timestamp), key));
        }
        let (_, timestamp, partition_key) = shared.as_ref()?;
        full_record(pending, timestamp, partition_key)
    })
}

fn full_record(pending: &Pending, timestamp: &str, partition_key: &str) -> Option<EventRecord> {
    let (request, outcome) = (&pending.request, &pending.outcome);
    let view = outcome.view();
    let event = FullEvent {
        event_type: "feature_flag_evaluation",
        timestamp,
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
    Some(EventRecord { partition_key: partition_key.to_owned(), data })
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

pub(super) fn summaries(events: &VecDeque<Pending>) -> Vec<EventRecord> {
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
