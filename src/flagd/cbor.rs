//! Deterministic CBOR (RFC 8949 §4.2.1) of a JSON value: the bytes `fractional` v3 hashes.
//!
//! Written here rather than taken from a CBOR crate because the bucketing needs the
//! *core deterministic* profile exactly — map keys sorted bytewise by their encoded form,
//! integral numbers as integers whatever their JSON spelling (`1`, `1.0` and `1e0` must
//! bucket together, as must `0` and `-0.0`), and every other float in the shortest width
//! that holds it losslessly — and general-purpose encoders such as `ciborium` write keys
//! in insertion order and keep floats as floats.

use serde_json::{Map, Number, Value};

/// Appends the deterministic encoding of `value` to `out`.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(0xf6),
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Number(n) => number(n, out),
        Value::String(s) => text(s, out),
        Value::Array(items) => {
            head(4, items.len() as u64, out);
            for item in items {
                encode(item, out);
            }
        }
        Value::Object(map) => object(map, out),
    }
}

/// A major type and its argument, in the shortest form (preferred serialization).
fn head(major: u8, arg: u64, out: &mut Vec<u8>) {
    let m = major << 5;
    match arg {
        0..=23 => out.push(m | arg as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, arg as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(arg as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(arg as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&arg.to_be_bytes());
        }
    }
}

/// The encoding of the two-element array `[a, b]` of text strings, exactly as
/// [`encode`] writes it for that value, without building the value first (`fractional`'s
/// default bucketing value, `[flagKey, targetingKey]`, on every split evaluation).
pub fn text_pair(a: &str, b: &str, out: &mut Vec<u8>) {
    head(4, 2, out);
    text(a, out);
    text(b, out);
}

fn text(s: &str, out: &mut Vec<u8>) {
    head(3, s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

/// Keys sorted by their encoded bytes: for text keys, shorter first, then bytewise.
fn object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes())));
    head(5, keys.len() as u64, out);
    for key in keys {
        text(key, out);
        if let Some(value) = map.get(key.as_str()) {
            encode(value, out);
        }
    }
}

fn number(n: &Number, out: &mut Vec<u8>) {
    if let Some(u) = n.as_u64() {
        head(0, u, out);
    } else if let Some(i) = n.as_i64() {
        // Negative: major type 1 carries -1 - i.
        head(1, (-1 - i) as u64, out);
    } else if let Some(f) = n.as_f64() {
        float(f, out);
    }
}

/// 2^64 as an f64: integral floats below it (in magnitude) are encoded as integers.
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

fn float(f: f64, out: &mut Vec<u8>) {
    if f.fract() == 0.0 && f.is_finite() {
        if (0.0..TWO_POW_64).contains(&f) {
            return head(0, f as u64, out);
        }
        if (-TWO_POW_64..0.0).contains(&f) {
            // -1 - f is exact here: |f| ≥ 2^53 has no fractional part to lose.
            return head(1, (-1.0 - f) as u64, out);
        }
    }
    let single = f as f32;
    if f64::from(single) == f || f.is_nan() {
        if let Some(half) = to_half(single) {
            out.push(0xf9);
            out.extend_from_slice(&half.to_be_bytes());
            return;
        }
        out.push(0xfa);
        out.extend_from_slice(&single.to_bits().to_be_bytes());
        return;
    }
    out.push(0xfb);
    out.extend_from_slice(&f.to_bits().to_be_bytes());
}

/// The IEEE half-precision bits of `f` when it converts without loss.
fn to_half(f: f32) -> Option<u16> {
    let bits = f.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        // Infinity or NaN (JSON has neither; kept for completeness).
        return (mant == 0).then_some(sign | 0x7c00).or(Some(0x7e00));
    }
    if exp == 0 && mant == 0 {
        return Some(sign);
    }
    let e = exp - 127;
    if (-14..=15).contains(&e) {
        // Normal half: 10 mantissa bits, the other 13 must be zero.
        if mant & 0x1fff != 0 {
            return None;
        }
        return Some(sign | (((e + 15) as u16) << 10) | (mant >> 13) as u16);
    }
    if (-24..-14).contains(&e) && exp != 0 {
        // Subnormal half: value = m * 2^-24 with m < 1024.
        let full = mant | 0x80_0000; // 24 significant bits, value = full * 2^(e-23)
        let shift = (-14 - e) + 13; // bits dropped to land on the 2^-24 grid
        if full & ((1u32 << shift) - 1) != 0 {
            return None;
        }
        return Some(sign | (full >> shift) as u16);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bytes(v: Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&v, &mut out);
        out
    }

    #[test]
    fn a_text_pair_encodes_as_the_array_value_does() {
        for (a, b) in [("", ""), ("flag", "user-1"), ("k", &"x".repeat(300)), ("ünï", "🙂")] {
            let mut direct = Vec::new();
            text_pair(a, b, &mut direct);
            assert_eq!(direct, bytes(json!([a, b])), "{a:?}, {b:?}");
        }
    }

    #[test]
    fn rfc_8949_appendix_a_vectors() {
        let cases: &[(Value, &[u8])] = &[
            (json!(0), &[0x00]),
            (json!(23), &[0x17]),
            (json!(24), &[0x18, 0x18]),
            (json!(1000), &[0x19, 0x03, 0xe8]),
            (json!(1000000), &[0x1a, 0x00, 0x0f, 0x42, 0x40]),
            (json!(-1), &[0x20]),
            (json!(-1000), &[0x39, 0x03, 0xe7]),
            (json!(1.5), &[0xf9, 0x3e, 0x00]),
            (json!(3.4028234663852886e38), &[0xfa, 0x7f, 0x7f, 0xff, 0xff]),
            (json!(1.0e300), &[0xfb, 0x7e, 0x37, 0xe4, 0x3c, 0x88, 0x00, 0x75, 0x9c]),
            (json!(1.1), &[0xfb, 0x3f, 0xf1, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a]),
            (json!(5.960464477539063e-8), &[0xf9, 0x00, 0x01]),
            (json!(0.00006103515625), &[0xf9, 0x04, 0x00]),
            (json!(-4.1), &[0xfb, 0xc0, 0x10, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66]),
            (json!(false), &[0xf4]),
            (json!(null), &[0xf6]),
            (json!("a"), &[0x61, 0x61]),
            (json!([1, [2, 3]]), &[0x82, 0x01, 0x82, 0x02, 0x03]),
        ];
        for (value, expected) in cases {
            assert_eq!(bytes(value.clone()), *expected, "{value}");
        }
    }

    #[test]
    fn integral_floats_encode_as_integers_and_negative_zero_as_zero() {
        assert_eq!(bytes(json!(1.0)), bytes(json!(1)));
        assert_eq!(bytes(json!(-0.0)), bytes(json!(0)));
        assert_eq!(bytes(json!(-2.0)), bytes(json!(-2)));
        assert_eq!(bytes(json!(9007199254740992.0)), bytes(json!(9007199254740992u64)));
        // Beyond 64 bits an integral float stays a float.
        assert_eq!(bytes(json!(1e20))[0], 0xfb);
    }

    #[test]
    fn map_keys_sort_by_encoded_bytes_shorter_first() {
        let a = bytes(json!({"aa": 2, "z": 1}));
        assert_eq!(a, [0xa2, 0x61, b'z', 0x01, 0x62, b'a', b'a', 0x02]);
    }
}
