//! The audit record written with every change, and who makes the change.
//!
//! Records live in the audit table under the flag's `key`, sorted by `at` — a fixed-width
//! RFC 3339 UTC time with nanoseconds, so the sort key orders records in time and
//! `history` reads them newest first with one `Query`. Each record is written in the same
//! transaction as the change it describes: there is never a change without its record, nor
//! a record of a change that did not happen.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::macros::format_description;
use time::OffsetDateTime;

use super::diff::FieldChange;

/// How long to wait for STS before recording the fallback identity. STS answers in
/// milliseconds; a missing network or endpoint should not hold a kill switch for long.
const IDENTITY_TIMEOUT: Duration = Duration::from_secs(5);

/// What the audit records say when the caller's identity cannot be determined.
pub const UNKNOWN_CALLER: &str = "unknown (STS GetCallerIdentity failed)";

/// One change of one flag, as stored in the audit table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The flag key (partition key).
    pub key: String,
    /// When (sort key): RFC 3339 UTC, nanoseconds, fixed width.
    pub at: String,
    /// Who: the caller's ARN from STS `GetCallerIdentity`, or [`UNKNOWN_CALLER`].
    pub who: String,
    /// `create`, `update` or `delete`.
    pub action: String,
    /// The version the change was made against (absent for a new flag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_before: Option<u64>,
    /// The version written (absent for a deletion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_after: Option<u64>,
    /// The changed top-level fields with both sides.
    #[serde(default)]
    pub changes: Vec<FieldChange>,
    /// The `--message` given, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The moment of a change, formatted as the audit sort key (and the flag's `updated_at`).
pub fn timestamp(now: OffsetDateTime) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");
    now.to_offset(time::UtcOffset::UTC).format(&format).unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// The caller's identity (ARN) from STS `GetCallerIdentity`, with a timeout. On failure
/// the change still goes ahead — a kill switch must not wait on STS — recorded as
/// [`UNKNOWN_CALLER`], with a warning saying why.
pub async fn caller_identity(config: &aws_config::SdkConfig) -> String {
    let client = aws_sdk_sts::Client::new(config);
    let why = match tokio::time::timeout(IDENTITY_TIMEOUT, client.get_caller_identity().send()).await {
        Ok(Ok(output)) => match output.arn {
            Some(arn) => return arn,
            None => "the answer had no ARN".to_owned(),
        },
        Ok(Err(err)) => super::causes(&err),
        Err(_) => format!("no answer within {} s", IDENTITY_TIMEOUT.as_secs()),
    };
    eprintln!(
        "warning: cannot tell who you are (STS GetCallerIdentity: {why}); audit records will say `{UNKNOWN_CALLER}`"
    );
    UNKNOWN_CALLER.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_sort_as_time_does() {
        let early = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_000_000_005).unwrap();
        let later = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_100_000_000).unwrap();
        let much_later = OffsetDateTime::from_unix_timestamp_nanos(1_800_000_000_000_000_000).unwrap();
        let (a, b, c) = (timestamp(early), timestamp(later), timestamp(much_later));
        assert_eq!(a, "2023-11-14T22:13:20.000000005Z");
        assert_eq!((a.len(), b.len(), c.len()), (30, 30, 30));
        assert!(a < b && b < c);
    }
}
