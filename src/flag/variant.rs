//! Variants of a split: their keys, values and cumulative hash bounds, and Python's
//! check that the allocations sum to 1.

use serde_json::Value;

use super::VariantDoc;
use crate::bucket;

/// One variant of a split.
#[derive(Debug)]
pub struct Variant {
    /// The variant key.
    pub(crate) key: Box<str>,
    /// How many hashes fall before the cumulative allocation up to and including this
    /// variant (summed in list order exactly as Python did): the walk's test
    /// `h / 4294967295.0 < cumulative` is exactly `h < below` (see [`bucket::hashes_below`]).
    pub(crate) below: u64,
    /// OFREP value (`value`, else `payload`); `None` means the key is the value.
    pub(crate) value: Option<Value>,
    /// This variant's position in [`super::FlagBody::variants`].
    pub(crate) index: usize,
}

impl Variant {
    /// The variant key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Its position in [`super::FlagBody::variants`], so an evaluation can be kept as indices
    /// next to an `Arc` of its flag.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The variant's OFREP value, if it has one other than its key.
    pub fn value(&self) -> Option<&Value> {
        self.value.as_ref()
    }
}

/// The split's variants, and Python's error for allocations that do not sum to 1: Python
/// checked `abs(total - 1.0) > 0.01` only when a user reached the split.
pub(super) fn compile_variants(
    docs: &[VariantDoc],
    oddities: &mut Vec<String>,
) -> Result<(Vec<Variant>, Option<Box<str>>), String> {
    let mut cumulative = 0.0;
    let mut variants = Vec::with_capacity(docs.len() + 1);
    for (i, v) in docs.iter().enumerate() {
        if !(0.0..=1.0).contains(&v.allocation) {
            return Err(format!("variants[{i}].allocation must be 0–1, got {}", v.allocation));
        }
        cumulative += v.allocation;
        variants.push(Variant {
            index: variants.len(),
            key: v.key.as_str().into(),
            below: bucket::hashes_below(cumulative),
            value: v.value.clone().or_else(|| v.payload.clone()),
        });
    }
    let split_error = allocation_error(docs).map(|total| {
        oddities
            .push(format!("variant allocations sum to {total}, not 1 (±0.01): users who reach the split get an error"));
        format!("Variant allocations must sum to 1.0, got {total}").into()
    });
    Ok((variants, split_error))
}

/// The allocations' sum, written as a decimal, when it is off 1 by more than 0.01.
///
/// Python summed the stored `Decimal`s, so `0.33 + 0.33 + 0.33` is exactly `0.99` and
/// passes. Summing in whole units of 10^-12 reproduces that for every allocation written
/// with up to 12 decimals (an `f64` sum would give 0.9900000000000001 and fail).
fn allocation_error(docs: &[VariantDoc]) -> Option<String> {
    const UNIT: f64 = 1e12;
    if docs.is_empty() {
        return None;
    }
    // Allocations are checked to be 0–1 first, so the sum of units fits easily.
    let units: i64 = docs.iter().map(|v| (v.allocation * UNIT).round() as i64).sum();
    let one = UNIT as i64;
    if (units - one).abs() <= one / 100 {
        return None;
    }
    let fraction = format!("{:012}", units % one);
    let fraction = fraction.trim_end_matches('0');
    Some(format!("{}.{}", units / one, if fraction.is_empty() { "0" } else { fraction }))
}
