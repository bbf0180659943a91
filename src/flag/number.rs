//! Exact number comparison (docs/flag-format.md): integers compare as integers at any size JSON
//! parsing keeps them (never rounded through `f64`), an integer and a fraction compare by
//! their exact values, and two fractions by the values they are written as.

use std::cmp::Ordering;

use serde_json::Number;

/// A JSON number, read once for comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    /// A whole number as JSON (or DynamoDB) wrote it without a fraction or exponent.
    Int(i128),
    /// Anything else: the nearest `f64` to the written decimal (serde_json parses with
    /// `float_roundtrip`, so two decimals that differ in any of their first 17
    /// significant digits stay different).
    Float(f64),
}

/// `2^127` as an `f64`: every float at or beyond it is above every `i128`.
const I128_BOUND: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;

impl Num {
    /// Reads a JSON number.
    #[inline]
    pub fn of(n: &Number) -> Option<Num> {
        if let Some(i) = n.as_i64() {
            Some(Num::Int(i128::from(i)))
        } else if let Some(u) = n.as_u64() {
            Some(Num::Int(i128::from(u)))
        } else {
            n.as_f64().map(Num::Float)
        }
    }

    /// The exact order of two numbers; `None` only when a float is NaN (never parsed
    /// from JSON, but kept total for safety).
    #[inline]
    pub fn compare(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (Num::Float(a), Num::Float(b)) => a.partial_cmp(&b),
            (Num::Int(a), Num::Float(b)) => int_cmp_float(a, b),
            (Num::Float(a), Num::Int(b)) => int_cmp_float(b, a).map(Ordering::reverse),
        }
    }
}

/// `i` against `f`, exactly (not `i as f64`, which rounds above 2^53).
fn int_cmp_float(i: i128, f: f64) -> Option<Ordering> {
    // Every integer up to 2^53 converts to f64 exactly: the common case, one compare.
    const EXACT: i128 = 1 << 53;
    if (-EXACT..=EXACT).contains(&i) {
        return (i as f64).partial_cmp(&f);
    }
    if f.is_nan() {
        return None;
    }
    if f >= I128_BOUND {
        return Some(Ordering::Less);
    }
    if f < -I128_BOUND {
        return Some(Ordering::Greater);
    }
    // In range: compare with the whole part exactly, then let the fraction decide.
    let whole = f.trunc();
    match i.cmp(&(whole as i128)) {
        Ordering::Equal if f > whole => Some(Ordering::Less),
        Ordering::Equal if f < whole => Some(Ordering::Greater),
        order => Some(order),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn num(text: &str) -> Num {
        let n: Number = serde_json::from_str(text).expect("a number");
        Num::of(&n).expect("finite")
    }

    #[test]
    fn integers_beyond_two_to_the_53_stay_exact() {
        assert_eq!(num("9007199254740993").compare(num("9007199254740992")), Some(Ordering::Greater));
        assert_eq!(num("18446744073709551615").compare(num("18446744073709551614")), Some(Ordering::Greater));
        assert_eq!(num("-9223372036854775808").compare(num("-9223372036854775807")), Some(Ordering::Less));
        // An integer against a float that rounds to the same f64.
        assert_eq!(num("9007199254740993").compare(num("9007199254740992.0")), Some(Ordering::Greater));
        assert_eq!(num("9007199254740992").compare(num("9007199254740992.0")), Some(Ordering::Equal));
    }

    #[test]
    fn fractions_compare_by_the_written_decimal() {
        assert_eq!(num("19.99").compare(num("19.99")), Some(Ordering::Equal));
        assert_eq!(num("1E+1").compare(num("10")), Some(Ordering::Equal));
        assert_eq!(num("0.30000000000000004").compare(num("0.3")), Some(Ordering::Greater));
        assert_eq!(num("2.5").compare(num("2")), Some(Ordering::Greater));
        assert_eq!(num("-2.5").compare(num("-2")), Some(Ordering::Less));
        assert_eq!(num("1e300").compare(num("170141183460469231731687303715884105727")), Some(Ordering::Greater));
        assert_eq!(num("-1e300").compare(num("-9223372036854775808")), Some(Ordering::Less));
        assert_eq!(num("100000000000000000000").compare(num("1e20")), Some(Ordering::Equal));
    }

    proptest! {
        /// Integer against integer agrees with `i128` arithmetic over the whole range
        /// JSON integers are parsed into (i64 and u64).
        #[test]
        fn integer_order_is_i128_order(a in any::<i64>(), b in any::<u64>(), c in any::<i64>()) {
            let (na, nb, nc) = (num(&a.to_string()), num(&b.to_string()), num(&c.to_string()));
            prop_assert_eq!(na.compare(nb), Some(i128::from(a).cmp(&i128::from(b))));
            prop_assert_eq!(na.compare(nc), Some(i128::from(a).cmp(&i128::from(c))));
            prop_assert_eq!(nb.compare(na), Some(i128::from(b).cmp(&i128::from(a))));
        }

        /// Integer against a float: the exact rational order (checked by scaling the
        /// float's exact binary value into i128 where it fits).
        #[test]
        fn integer_against_float_is_exact(i in any::<i64>(), whole in -(1i64 << 60)..(1i64 << 60), eighths in 0u8..8) {
            // `whole + eighths/8` is exactly representable when |whole| < 2^49.
            let whole = whole >> 11;
            let f = whole as f64 + f64::from(eighths) / 8.0;
            let expected = (i128::from(i) * 8).cmp(&(i128::from(whole) * 8 + i128::from(eighths)));
            prop_assert_eq!(Num::Int(i128::from(i)).compare(Num::Float(f)), Some(expected));
            prop_assert_eq!(Num::Float(f).compare(Num::Int(i128::from(i))), Some(expected.reverse()));
        }
    }
}
