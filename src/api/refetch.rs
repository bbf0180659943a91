//! OFREP's change-triggered re-fetch on the bulk route (docs/api.md, "Change stream"):
//! the `flagConfigEtag` / `flagConfigLastModified` query parameters a client copies from
//! a change event, and what a bulk response adds for change detection (the flag set's
//! `metadata` and `eventStreams`).

use serde::Serialize;

use super::ApiError;
use crate::changes::{Advert, Changes, Claim, Version};

/// Where the local server serves the change stream.
pub const STREAM_PATH: &str = "/ofrep/v1/stream";
/// The stream's query parameter naming the version a client last fetched; a
/// `Last-Event-ID` header, when sent, says the same more recently and wins.
pub const SINCE: &str = "since";
/// What bulk responses advertise as `inactivityDelaySec`: the protocol's own default,
/// stated so clients need not assume it.
pub const INACTIVITY_DELAY_SEC: u32 = 120;

const LAST_MODIFIED_RULE: &str =
    "flagConfigLastModified must be Unix seconds (an integer of at least 0) or an RFC 3339 date-time";

/// The claim in `query` (raw, without `?`). Other parameters are ignored, as before.
/// Errors never repeat the value sent.
pub fn parse_claim(query: &str) -> Result<Claim, ApiError> {
    let mut claim = Claim::default();
    if query.is_empty() {
        return Ok(claim);
    }
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "flagConfigEtag" => {
                if claim.etag.is_some() {
                    return Err(ApiError::BadParameter("flagConfigEtag is given more than once".into()));
                }
                // Any string is schema-valid: it is only compared, never logged or echoed,
                // and the transport bounds its length.
                claim.etag = Some(value.into_owned());
            }
            "flagConfigLastModified" => {
                if claim.last_modified.is_some() {
                    return Err(ApiError::BadParameter("flagConfigLastModified is given more than once".into()));
                }
                claim.last_modified = Some(last_modified(&value)?);
            }
            _ => {}
        }
    }
    // An empty etag says nothing.
    claim.etag = claim.etag.filter(|etag| !etag.is_empty());
    Ok(claim)
}

/// Unix seconds from an integer ≥ 0 or an RFC 3339 date-time (one before 1970 is 0:
/// every configuration is newer than it).
fn last_modified(value: &str) -> Result<u64, ApiError> {
    let bad = || ApiError::BadParameter(LAST_MODIFIED_RULE.into());
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits past u64 are still "integer ≥ 0": a time far in the future.
        return Ok(value.parse().unwrap_or(u64::MAX));
    }
    let at = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).map_err(|_| bad())?;
    Ok(u64::try_from(at.unix_timestamp()).unwrap_or(0))
}

/// The flag set's `metadata`: the configuration version the answer was computed from,
/// under the names a client sends back.
#[derive(Serialize)]
pub(super) struct SetMetadata<'a> {
    #[serde(rename = "flagConfigEtag")]
    etag: &'a str,
    #[serde(rename = "flagConfigLastModified")]
    last_modified: u64,
}

/// One `eventStreams` entry: this server's own stream in the `endpoint.requestUri` form,
/// so the client's own configured base URL (a proxy, a custom domain) is used; a stream
/// served elsewhere (`EVENT_STREAM_URL`) as its `url`.
#[derive(Serialize)]
pub(super) struct EventStream<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<Endpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    #[serde(rename = "inactivityDelaySec")]
    inactivity_delay_sec: u32,
}

#[derive(Serialize)]
struct Endpoint {
    #[serde(rename = "requestUri")]
    request_uri: String,
}

/// The stream to advertise, when there is one. This server's own carries `since=`, the
/// version the answer was computed from, so a client whose stream opens only after a
/// later change (or that connects from a cached answer) is told at once.
pub(super) fn event_streams<'a>(changes: &'a Changes, version: Option<&Version>) -> Option<[EventStream<'a>; 1]> {
    let (endpoint, url) = match changes.advertised()? {
        Advert::Here => {
            let request_uri = match version {
                Some(v) => format!("{STREAM_PATH}?{SINCE}={}", v.id),
                None => STREAM_PATH.to_owned(),
            };
            (Some(Endpoint { request_uri }), None)
        }
        Advert::Url(url) => (None, Some(url)),
    };
    Some([EventStream { kind: "sse", endpoint, url, inactivity_delay_sec: INACTIVITY_DELAY_SEC }])
}

/// The metadata for `version`, if one is known.
pub(super) fn set_metadata(version: Option<&Version>) -> Option<SetMetadata<'_>> {
    version.map(|v| SetMetadata { etag: &v.id, last_modified: v.last_modified })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(query: &str) -> Result<Claim, String> {
        parse_claim(query).map_err(|e| e.to_string())
    }

    #[test]
    fn integers_from_zero_and_rfc3339_dates_are_accepted() {
        assert_eq!(claim("flagConfigLastModified=0").unwrap().last_modified, Some(0));
        assert_eq!(claim("flagConfigLastModified=1771622898").unwrap().last_modified, Some(1_771_622_898));
        let iso = claim("flagConfigLastModified=2026-02-20T21:28:18Z").unwrap();
        assert_eq!(iso.last_modified, Some(1_771_622_898));
        let offset = claim("flagConfigLastModified=2026-02-20T22%3A28%3A18%2B01%3A00").unwrap();
        assert_eq!(offset.last_modified, Some(1_771_622_898));
        assert_eq!(claim("flagConfigLastModified=1969-12-31T23:59:59Z").unwrap().last_modified, Some(0));
        assert_eq!(claim("flagConfigLastModified=99999999999999999999999").unwrap().last_modified, Some(u64::MAX));
        let both = claim("flagConfigEtag=%22abc%22&flagConfigLastModified=5&other=x").unwrap();
        assert_eq!(both, Claim { etag: Some("\"abc\"".into()), last_modified: Some(5) });
        assert_eq!(claim("").unwrap(), Claim::default());
        assert_eq!(claim("flagConfigEtag=").unwrap(), Claim::default());
    }

    #[test]
    fn bad_values_are_refused_without_repeating_them() {
        for bad in ["-1", "1.5", "", "1e3", "yesterday", "2026-02-20", "2026-02-20T21:28:18", " 5", "%00"] {
            let query = format!("flagConfigLastModified={bad}");
            let error = parse_claim(&query).expect_err(bad);
            assert!(matches!(error, ApiError::BadParameter(_)), "{bad}");
            assert_eq!(error.to_string(), LAST_MODIFIED_RULE, "{bad}");
        }
        // Any string is an etag (the schema says `string`), control characters and length
        // included: it is only ever compared.
        assert_eq!(claim("flagConfigEtag=a%0Ab").unwrap().etag.as_deref(), Some("a\nb"));
        let long = "e".repeat(4096);
        assert_eq!(claim(&format!("flagConfigEtag={long}")).unwrap().etag, Some(long));
        assert!(claim("flagConfigEtag=a&flagConfigEtag=b").unwrap_err().contains("more than once"));
        assert!(claim("flagConfigLastModified=1&flagConfigLastModified=1").unwrap_err().contains("more than once"));
    }
}
