//! `semver_equals`, `semver_greater_than`, `semver_less_than`: semantic versions, read
//! leniently, compared by precedence (build metadata ignored).

use std::cmp::Ordering;

use semver::Version;
use serde_json::Value;

/// A version operand.
pub(super) fn operand(op: &str, value: &Value) -> Result<Version, String> {
    value.as_str().and_then(parse_semver).ok_or_else(|| format!("`{op}` needs a semantic version string, got {value}"))
}

/// How the attribute's version orders against the operand; `None` if it is not one.
pub(super) fn compare(attr: &Value, operand: &Version) -> Option<Ordering> {
    Some(parse_semver(attr.as_str()?)?.cmp_precedence(operand))
}

/// Parses a version leniently: surrounding space and a leading `v` are ignored, and a
/// missing minor or patch counts as 0 (`"2"` is `2.0.0`, `"v1.4"` is `1.4.0`).
pub(super) fn parse_semver(text: &str) -> Option<Version> {
    let text = text.trim();
    let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
    if let Ok(v) = Version::parse(text) {
        return Some(v);
    }
    let split = text.find(['-', '+']).unwrap_or(text.len());
    let (core, rest) = text.split_at(split);
    let padded = match core.matches('.').count() {
        0 => format!("{core}.0.0{rest}"),
        1 => format!("{core}.0{rest}"),
        _ => return None,
    };
    Version::parse(&padded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_semver() {
        assert_eq!(parse_semver("v1.4"), Version::parse("1.4.0").ok());
        assert_eq!(parse_semver(" 2 "), Version::parse("2.0.0").ok());
        assert_eq!(parse_semver("1.2-beta.1"), Version::parse("1.2.0-beta.1").ok());
        assert_eq!(parse_semver("1.2.3.4"), None);
        assert_eq!(parse_semver("abc"), None);
    }
}
