//! The MD5 bucketing formulas (docs/flag-format.md), bit-for-bit those of the Python evaluator.
//!
//! `h(s)` is the first four bytes of `MD5(utf8(s))` read as a little-endian `u32`.
//! Every string hashed here has the shape `"{id}{suffix}"`, where the suffix
//! (`":{flag_key}"`, `":{flag_key}_variant"`, `":{flag_key}:{rule_id}"`) is built once
//! when the flag is compiled, so a bucket costs one MD5 and no heap allocation.

use md5::{Digest, Md5};

/// MD5's initial state (RFC 1321).
const MD5_INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// Longest message that fits one padded MD5 block (64 bytes less the 0x80 marker and
/// the 8-byte length): every realistic `"{user}:{flag}"` string.
const ONE_BLOCK: usize = 55;

/// The divisor of the variant formula: `h / 4294967295.0`, exactly as in Python.
const MAX_HASH: f64 = 4_294_967_295.0;

/// `h("{id}{suffix}")`: the first four bytes of the MD5 digest as a little-endian u32.
///
/// Up to 55 bytes the message is padded into one 64-byte block on the stack and run
/// through MD5's compression function once; the first digest word *is* the answer, so
/// there is no hasher state, no second copy and no finalization. Longer inputs (ids up
/// to the 1 KiB request limit) are streamed through the standard hasher.
pub fn hash(id: &str, suffix: &[u8]) -> u32 {
    let (id, len) = (id.as_bytes(), id.len() + suffix.len());
    if len > ONE_BLOCK {
        let digest = Md5::new().chain_update(id).chain_update(suffix).finalize();
        return u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]);
    }
    // Built where `compress` reads it (a `&[block]` temporary would be one more copy).
    let mut blocks = [[0u8; 64]];
    let block = &mut blocks[0];
    block[..id.len()].copy_from_slice(id);
    block[id.len()..len].copy_from_slice(suffix);
    block[len] = 0x80;
    block[56..].copy_from_slice(&((len as u64) * 8).to_le_bytes());
    let mut state = MD5_INIT;
    md5::block_api::compress(&mut state, &blocks);
    state[0]
}

/// The rollout bucket, `h("{id}:{flag_key}") % 100`, in `0..100`.
pub fn rollout_bucket(id: &str, suffix: &[u8]) -> u32 {
    hash(id, suffix) % 100
}

/// Whether `id` is inside a rollout of `percentage`: `<= 0` is nobody,
/// `>= 100` everybody (no hash is computed for either), else `bucket < percentage`
/// compared as a number, so 50.5 admits buckets 0–50 as Python did.
pub fn in_rollout(percentage: f64, id: &str, suffix: &[u8]) -> bool {
    if percentage <= 0.0 {
        return false;
    }
    if percentage >= 100.0 {
        return true;
    }
    admits(percentage, hash(id, suffix))
}

/// [`in_rollout`] for a hash already computed: whether bucket `h % 100` is below
/// `percentage` (compared as a number, so 50.5 admits buckets 0–50).
pub fn admits(percentage: f64, h: u32) -> bool {
    f64::from(h % 100) < percentage
}

/// The variant point `h("{id}:{flag_key}_variant") / 4294967295.0`, in `[0, 1]`.
pub fn variant_point(id: &str, suffix: &[u8]) -> f64 {
    f64::from(hash(id, suffix)) / MAX_HASH
}

/// The number of hashes `h` whose variant point `h / 4294967295.0` is below `cumulative`
/// (0 to 2³²), so that the walk's `point < cumulative` is `u64::from(h) < below` exactly —
/// the same f64 division, done once per variant when the flag is compiled instead of
/// once per evaluation. Exact because correctly rounded division by a positive constant
/// is monotonic in `h`: the points below `cumulative` are a prefix of `0..=u32::MAX`,
/// found by binary search with the very expression Python evaluates.
pub fn hashes_below(cumulative: f64) -> u64 {
    let (mut lo, mut hi) = (0u64, 1u64 << 32);
    while lo < hi {
        let mid = lo + (hi - lo) / 2; // < 2³², so exact as f64 and a valid hash
        if (mid as f64) / MAX_HASH < cumulative {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The suffix appended to an id for a flag's rollout bucket: `":{flag_key}"`.
pub fn rollout_suffix(flag_key: &str) -> Box<[u8]> {
    format!(":{flag_key}").into_bytes().into_boxed_slice()
}

/// The suffix for a flag's variant point: `":{flag_key}_variant"`.
pub fn variant_suffix(flag_key: &str) -> Box<[u8]> {
    format!(":{flag_key}_variant").into_bytes().into_boxed_slice()
}

/// The suffix for a `serve.rollout_percentage`: `":{flag_key}:{rule_id}"`
/// (`rule_id` is `target` for a `targets` entry).
pub fn serve_suffix(flag_key: &str, rule_id: &str) -> Box<[u8]> {
    format!(":{flag_key}:{rule_id}").into_bytes().into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_vector_from_the_spec() {
        // The golden vector of docs/flag-format.md: must hold forever.
        assert_eq!(rollout_bucket("user-123", &rollout_suffix("my-flag")), 59);
    }

    #[test]
    fn the_one_block_path_agrees_with_the_standard_hasher_at_every_length() {
        // Around and beyond the one-block limit, and with multi-byte characters.
        for len in 0..=200 {
            for (id_len, unit) in [(len, "u"), (len / 2, "é")] {
                let id = unit.repeat(id_len);
                let suffix = rollout_suffix("my-flag");
                let d = Md5::digest(format!("{id}:my-flag").as_bytes());
                assert_eq!(hash(&id, &suffix), u32::from_le_bytes([d[0], d[1], d[2], d[3]]), "{id_len} × {unit}");
            }
        }
    }

    #[test]
    fn hashes_below_is_exactly_the_point_comparison() {
        let check = |cumulative: f64, h: u32| {
            let point = f64::from(h) / MAX_HASH;
            assert_eq!(point < cumulative, u64::from(h) < hashes_below(cumulative), "h={h} cumulative={cumulative}");
        };
        for cumulative in [0.0, 1e-12, 0.1, 0.34, 0.34 + 0.33, 0.34 + 0.33 + 0.33, 0.5, 0.999_999_999_9, 1.0, 1.01] {
            let below = hashes_below(cumulative);
            // Around the boundary, where rounding decides, and at the ends.
            for h in below.saturating_sub(3)..=below.saturating_add(3).min(u64::from(u32::MAX)) {
                check(cumulative, u32::try_from(h).unwrap_or(u32::MAX));
            }
            check(cumulative, 0);
            check(cumulative, u32::MAX);
        }
        assert_eq!((hashes_below(0.0), hashes_below(1.0), hashes_below(1.01)), (0, u64::from(u32::MAX), 1 << 32));
    }

    proptest::proptest! {
        #[test]
        fn hashes_below_agrees_for_any_split(cumulative in 0.0f64..=1.01, h: u32) {
            let point = f64::from(h) / MAX_HASH;
            proptest::prop_assert_eq!(point < cumulative, u64::from(h) < hashes_below(cumulative));
        }
    }

    #[test]
    fn rollout_edges_need_no_hash() {
        assert!(!in_rollout(0.0, "anyone", b":f"));
        assert!(!in_rollout(-5.0, "anyone", b":f"));
        assert!(in_rollout(100.0, "anyone", b":f"));
    }

    #[test]
    fn fractional_percentage_admits_the_partial_bucket() {
        // bucket 59 is in at 59.5 and out at 59.
        let s = rollout_suffix("my-flag");
        assert!(in_rollout(59.5, "user-123", &s));
        assert!(!in_rollout(59.0, "user-123", &s));
        assert!(in_rollout(60.0, "user-123", &s));
    }
}
