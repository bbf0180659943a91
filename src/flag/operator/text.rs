//! `starts_with`, `ends_with`, `matches`: string operators (a regex is compiled once, with
//! its size bounded).

use regex::Regex;
use serde_json::Value;

/// Largest compiled `matches` program, in bytes. Keeps a hostile pattern from costing
/// memory or load time; the regex engine itself is linear-time.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// Longest `matches` pattern accepted, in bytes.
pub(super) const REGEX_MAX_PATTERN: usize = 4096;

/// A string operand.
pub(super) fn string(op: &str, value: Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        _ => Err(format!("`{op}` needs a string value")),
    }
}

/// A `matches` pattern, compiled within the size bounds.
pub(super) fn regex(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > REGEX_MAX_PATTERN {
        return Err(format!("`matches` pattern longer than {REGEX_MAX_PATTERN} bytes"));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("bad `matches` regex: {e}"))
}
