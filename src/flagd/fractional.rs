//! flagd's `fractional` operator: deterministic weighted bucketing.
//!
//! Both bucketings flagd has shipped a contract for are served, chosen per deployment:
//! - [`Bucketing::V2`] (the default, what the published flagd daemon does): MurmurHash3
//!   x86-32 (seed 0) over the raw UTF-8 bytes of the bucketing string — by default
//!   `flagKey + targetingKey` — and the bucket `(hash × totalWeight) >> 32`.
//! - [`Bucketing::V3`] (flagd's accepted "fractional-non-string-rand-units" design): the
//!   same hash and bucket over the *deterministic CBOR* of the bucketing value, so
//!   numbers, booleans and objects bucket alike in every language; by default the pair
//!   `[flagKey, targetingKey]`.
//!
//! Switching re-buckets every user. Any argument that cannot bucket (no key, no
//! weight, a weight sum of zero or above `i32::MAX`) answers `null`, so the flag falls
//! back to its default variant, as flagd's evaluators do.

use std::borrow::Cow;

use serde_json::Value;

use super::cbor;
use super::logic::eval::Env;

/// Which `fractional` bucketing answers; see the module documentation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Bucketing {
    /// Murmur3 over the raw bucketing string (the flagd daemon today).
    #[default]
    V2,
    /// Murmur3 over the deterministic CBOR of the bucketing value.
    V3,
}

/// Largest total weight: flagd's bound, so `hash × total` fits every language's 64 bits.
const MAX_TOTAL_WEIGHT: u64 = i32::MAX as u64;

/// `fractional` over its evaluated arguments: the chosen entry's first element.
pub fn evaluate<'a>(args: &[Cow<'a, Value>], env: &Env<'a>) -> Cow<'a, Value> {
    let Some((bytes, entries)) = bucketing_bytes(args, env) else {
        return Cow::Owned(Value::Null);
    };
    match choose(&bytes, entries) {
        Some(name) => Cow::Owned(name.clone()),
        None => Cow::Owned(Value::Null),
    }
}

/// The bytes to hash (borrowed when they are a string argument) and the entries.
type Split<'v> = (Cow<'v, [u8]>, &'v [Cow<'v, Value>]);

/// The bytes to hash and the distribution entries that follow them.
fn bucketing_bytes<'v>(args: &'v [Cow<'_, Value>], env: &Env<'_>) -> Option<Split<'v>> {
    let (first, rest) = args.split_first()?;
    match (env.bucketing, &**first) {
        (_, Value::Array(_)) => Some((Cow::Owned(default_bytes(env)?), args)),
        // A bucketing value that evaluated to null (a missing attribute) falls back to
        // the targeting key in both bucketings, so a flag without either answers its
        // default variant whichever bucketing is in force.
        (_, Value::Null) => Some((Cow::Owned(default_bytes(env)?), rest)),
        (Bucketing::V2, Value::String(s)) => Some((Cow::Borrowed(s.as_bytes()), rest)),
        (Bucketing::V2, _) => None,
        (Bucketing::V3, value) => {
            let mut bytes = Vec::new();
            cbor::encode(value, &mut bytes);
            Some((Cow::Owned(bytes), rest))
        }
    }
}

/// No explicit bucketing value: the flag key with the targeting key, which must be a
/// string (anything else breaks the OpenFeature contract and cannot bucket).
fn default_bytes(env: &Env<'_>) -> Option<Vec<u8>> {
    let key = match env.context.get("targetingKey") {
        Some(Value::String(key)) => key.as_str(),
        Some(_) => return None,
        None => env.targeting_key?,
    };
    Some(match env.bucketing {
        Bucketing::V2 => [env.flag_key.as_bytes(), key.as_bytes()].concat(),
        Bucketing::V3 => {
            // Two heads of at most 9 bytes and the array's one.
            let mut bytes = Vec::with_capacity(env.flag_key.len() + key.len() + 19);
            cbor::text_pair(env.flag_key, key, &mut bytes);
            bytes
        }
    })
}

/// Narrates a `fractional` over its evaluated arguments: the bytes hashed, the hash,
/// the bucket and every entry's range, marking the chosen one (`flagctl explain`).
pub fn describe(args: &[Cow<'_, Value>], env: &Env<'_>, pad: &str, out: &mut String) {
    use std::fmt::Write as _;
    let Some((bytes, entries)) = bucketing_bytes(args, env) else {
        let _ = writeln!(out, "{pad}fractional: no bucketing value (no targetingKey, or one of another type): null");
        return;
    };
    let parts: Option<Vec<(&Value, u64)>> = entries.iter().map(|e| entry_parts(e)).collect();
    let (Some(parts), Some(h)) = (parts, hash(&bytes)) else {
        let _ = writeln!(out, "{pad}fractional: an entry is not [name, weight]: null");
        return;
    };
    let total: u64 = parts.iter().map(|(_, w)| w).sum();
    let shown = match std::str::from_utf8(&bytes) {
        Ok(text) if env.bucketing == Bucketing::V2 => format!("{text:?}"),
        _ => bytes.iter().map(|b| format!("{b:02x}")).collect(),
    };
    if total == 0 || total > MAX_TOTAL_WEIGHT {
        let _ = writeln!(out, "{pad}fractional over {shown}: total weight {total} cannot bucket: null");
        return;
    }
    let point = (u64::from(h) * total) >> 32;
    let _ = writeln!(out, "{pad}fractional over {shown}: murmur3 {h}, bucket {point} of {total}");
    let mut start = 0;
    for (name, weight) in parts {
        let mark = if (start..start + weight).contains(&point) { "  <- chosen" } else { "" };
        let _ = writeln!(out, "{pad}  {name} weight {weight}: [{start}, {}){mark}", start + weight);
        start += weight;
    }
}

/// Walks the entries' cumulative weights to the bucket of `bytes`' hash (two passes
/// over the entries rather than a list of them: nothing is allocated).
fn choose<'v>(bytes: &[u8], entries: &'v [Cow<'_, Value>]) -> Option<&'v Value> {
    let mut total: u64 = 0;
    for entry in entries {
        total = total.checked_add(entry_parts(entry)?.1)?;
    }
    if total == 0 || total > MAX_TOTAL_WEIGHT {
        return None;
    }
    let point = (u64::from(hash(bytes)?) * total) >> 32;
    let mut end = 0;
    for entry in entries {
        let (name, weight) = entry_parts(entry)?;
        end += weight;
        if point < end {
            return Some(name);
        }
    }
    None
}

/// `[name]` (weight 1) or `[name, weight]`; negative weights count as 0, fractional
/// ones are truncated, a non-number weight counts as 1.
fn entry_parts(entry: &Value) -> Option<(&Value, u64)> {
    let items = entry.as_array()?;
    let name = items.first()?;
    let weight = match items.get(1).and_then(Value::as_f64) {
        Some(w) if w <= 0.0 => 0,
        Some(w) => w.min(MAX_TOTAL_WEIGHT as f64 + 1.0) as u64,
        None => 1,
    };
    Some((name, weight))
}

/// MurmurHash3 x86-32, seed 0, as an unsigned number.
pub fn hash(bytes: &[u8]) -> Option<u32> {
    murmur3::murmur3_32(&mut &bytes[..], 0).ok()
}
