//! DynamoDB Streams events (docs/operations.md): every write to the flags table — by flagctl, the
//! console, a script, the Python service — reaches the manifest, because the flags
//! table's stream invokes this same function with the changed keys.
//!
//! A batch of records becomes one conditional manifest write (each record the next
//! version). The answer uses the event source mapping's `ReportBatchItemFailures`
//! shape: `{"batchItemFailures": []}` when recorded; when the manifest write fails, the
//! batch's first record is reported, so Lambda retries the whole batch (a record
//! counted twice costs a spurious re-read, a record lost would cost freshness).
//!
//! No `MANIFEST_TABLE` configured: the keys are still invalidated in this environment's
//! cache, the event is acknowledged (`batchItemFailures: []`) and a warning logged —
//! retrying could never succeed, and the sample-event runs have no manifest table.

use std::borrow::Cow;
use std::time::SystemTime;

use serde::Deserialize;

use super::{millis, Freshness, Invalidation, Written};
use crate::cache::FlagCache;

/// The fields of a stream event that matter here.
#[derive(Debug, Deserialize)]
struct StreamEvent<'a> {
    #[serde(borrow, rename = "Records", default)]
    records: Vec<Record<'a>>,
}

#[derive(Debug, Deserialize)]
struct Record<'a> {
    #[serde(borrow, rename = "eventSource")]
    event_source: Option<Cow<'a, str>>,
    #[serde(borrow)]
    dynamodb: Option<Change<'a>>,
}

#[derive(Debug, Deserialize)]
struct Change<'a> {
    #[serde(borrow, rename = "Keys")]
    keys: Option<Keys<'a>>,
    /// Seconds since the epoch (DynamoDB's clock).
    #[serde(rename = "ApproximateCreationDateTime")]
    created: Option<f64>,
    #[serde(borrow, rename = "SequenceNumber")]
    sequence_number: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct Keys<'a> {
    #[serde(borrow)]
    key: Option<StringAttribute<'a>>,
}

#[derive(Debug, Deserialize)]
struct StringAttribute<'a> {
    #[serde(borrow, rename = "S")]
    s: Cow<'a, str>,
}

/// The source name of DynamoDB stream records.
pub const EVENT_SOURCE: &str = "aws:dynamodb";

/// Records the changed keys of a DynamoDB stream event in the manifest and invalidates
/// them here; returns the `ReportBatchItemFailures` answer.
pub async fn record_stream_event(freshness: &Freshness, cache: &FlagCache, event: &str, now: SystemTime) -> String {
    let event: StreamEvent<'_> = match serde_json::from_str(event) {
        Ok(event) => event,
        Err(error) => {
            tracing::warn!(category = ?error.classify(), line = error.line(), column = error.column(), "unreadable stream event");
            return r#"{"batchItemFailures":[]}"#.to_owned();
        }
    };
    let changes: Vec<&Change<'_>> = event
        .records
        .iter()
        .filter(|r| r.event_source.as_deref() == Some(EVENT_SOURCE))
        .filter_map(|r| r.dynamodb.as_ref())
        .collect();
    let writes: Vec<Written> = changes
        .iter()
        .filter_map(|c| {
            let key = c.keys.as_ref()?.key.as_ref()?.s.to_string();
            let at = c.created.filter(|s| s.is_finite() && *s > 0.0).map_or(millis(now), |s| (s * 1000.0) as u64);
            Some(Written { key, at })
        })
        .collect();
    if writes.len() < changes.len() {
        tracing::warn!(skipped = changes.len() - writes.len(), "stream records without a string `key` skipped");
    }
    let keys: Vec<String> = writes.iter().map(|w| w.key.clone()).collect();
    freshness.invalidate(cache, &Invalidation::Keys(keys), now, 0).await;
    let Some(manifest) = freshness.manifest() else {
        tracing::warn!(
            records = writes.len(),
            "stream event acknowledged without a manifest: MANIFEST_TABLE is not set"
        );
        return r#"{"batchItemFailures":[]}"#.to_owned();
    };
    if writes.is_empty() {
        return r#"{"batchItemFailures":[]}"#.to_owned();
    }
    match manifest.record(&writes).await {
        Ok(recorded) => {
            tracing::info!(records = writes.len(), version = recorded.version, "flag changes recorded in the manifest");
            r#"{"batchItemFailures":[]}"#.to_owned()
        }
        Err(error) => {
            tracing::warn!(%error, records = writes.len(), "manifest write failed; the batch will be retried");
            let first = changes.iter().find_map(|c| c.sequence_number.as_deref()).unwrap_or("");
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": first}]}).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_event_reads_as_key_changes() {
        let text = include_str!("../../events/dynamodb-stream.json");
        let event: StreamEvent<'_> = serde_json::from_str(text).expect("sample event");
        let keys: Vec<&str> =
            event.records.iter().filter_map(|r| Some(&*r.dynamodb.as_ref()?.keys.as_ref()?.key.as_ref()?.s)).collect();
        assert_eq!(keys, ["dark-mode", "new-checkout", "gift-wrap"]);
        assert!(event.records.iter().all(|r| r.event_source.as_deref() == Some(EVENT_SOURCE)));
    }
}
