//! Exponential backoff with full jitter, the one formula every retry loop uses
//! (DynamoDB `UnprocessedKeys`, Kinesis rejected records).

use std::time::Duration;

/// The wait before retry number `retry` (1 for the first retry): uniform in
/// `[0, min(cap, base · 2^(retry−1))]`, so many throttled callers spread out instead of
/// retrying in lockstep (AWS's "full jitter").
pub fn full_jitter(base: Duration, cap: Duration, retry: u32) -> Duration {
    let ceiling = base.saturating_mul(1 << retry.saturating_sub(1).min(16)).min(cap);
    ceiling.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_base_up_to_the_cap() {
        let (base, cap) = (Duration::from_millis(25), Duration::from_secs(1));
        for retry in 0..60u32 {
            let ceiling = base.saturating_mul(1 << retry.saturating_sub(1).min(16)).min(cap);
            for _ in 0..50 {
                assert!(full_jitter(base, cap, retry) <= ceiling, "retry {retry}");
            }
        }
        // The first retry waits at most `base`; later ones can wait longer, never past `cap`.
        assert!((0..200).all(|_| full_jitter(base, cap, 1) <= base));
        assert!((0..200).any(|_| full_jitter(base, cap, 3) > base));
        assert!((0..200).all(|_| full_jitter(base, cap, 40) <= cap));
    }
}
