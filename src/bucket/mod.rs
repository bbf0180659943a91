//! The MD5 bucketing formulas (docs/flag-format.md), bit-for-bit those of the Python evaluator.
//!
//! `h(s)` is the first four bytes of `MD5(utf8(s))` read as a little-endian `u32`.
//! Every string hashed here has the shape `"{id}{suffix}"`, where the suffix
//! (`":{flag_key}"`, `":{flag_key}_variant"`, `":{flag_key}:{rule_id}"`) is built once
//! when the flag is compiled, so a bucket costs one MD5 and no heap allocation.

// `md5` first: its kernel macro is used by `lanes`.
#[macro_use]
pub mod md5;
pub mod lanes;

use ::md5::{Digest, Md5};

use lanes::{Columns, Kernel, MAX_LANES};

/// The divisor of the variant formula: `h / 4294967295.0`, exactly as in Python.
const MAX_HASH: f64 = 4_294_967_295.0;

/// `h("{id}{suffix}")`: the first four bytes of the MD5 digest as a little-endian u32.
///
/// Up to 55 bytes the message is padded into one block on the stack and run through the
/// one-block kernel ([`md5::first_word`]: no hasher state, no finalization, and the
/// three last steps, which do not touch the first word, skipped). Longer inputs (ids up
/// to the 1 KiB request limit) are streamed through the standard hasher.
#[inline]
pub fn hash(id: &str, suffix: &[u8]) -> u32 {
    match md5::pad(id.as_bytes(), suffix) {
        Some(block) => md5::first_word(&block),
        None => long_hash(id.as_bytes(), suffix),
    }
}

/// `h` of a message longer than one block, with the `md-5` crate.
#[cold]
fn long_hash(id: &[u8], suffix: &[u8]) -> u32 {
    let digest = Md5::new().chain_update(id).chain_update(suffix).finalize();
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// `out[i] = h("{ids[i]}{suffixes[i]}")` for every job, several at a time in SIMD lanes
/// (the widest [`Kernel`] this CPU runs): the hashes of one request's flags are
/// independent. Exactly [`hash`] for each job, whatever the kernel.
pub fn hash_many(jobs: &[(&str, &[u8])], out: &mut [u32]) {
    hash_many_with(Kernel::best(), jobs, out);
}

/// [`hash_many`] with a chosen kernel (tests compare every kernel this CPU runs).
pub fn hash_many_with(kernel: Kernel, jobs: &[(&str, &[u8])], out: &mut [u32]) {
    let mut batch = HashBatch::with_kernel(kernel);
    let mut done = |tag: u32, h: u32| {
        if let Some(o) = out.get_mut(tag as usize) {
            *o = h;
        }
    };
    for (i, (id, suffix)) in jobs.iter().enumerate().take(u32::MAX as usize) {
        batch.push(id, suffix, i as u32, &mut done);
    }
    batch.finish(&mut done);
}

/// Hashes handed in one at a time and computed a vector at a time: [`HashBatch::push`]
/// pads each message straight into its SIMD lane, and every full set of lanes is hashed
/// at once. Each hash is exactly [`hash`]'s, delivered with the tag it was pushed with,
/// by the push that filled its vector or by [`HashBatch::finish`]. Nothing is allocated.
pub struct HashBatch {
    kernel: Kernel,
    /// How many messages one kernel call takes.
    width: usize,
    columns: Columns,
    tags: [u32; MAX_LANES],
    filled: usize,
}

impl Default for HashBatch {
    fn default() -> Self {
        HashBatch::with_kernel(Kernel::best())
    }
}

impl HashBatch {
    /// A batch on a chosen kernel (tests compare every kernel this CPU runs).
    pub fn with_kernel(kernel: Kernel) -> Self {
        HashBatch {
            kernel,
            width: kernel.lanes().min(MAX_LANES),
            columns: Columns::default(),
            tags: [0; MAX_LANES],
            filled: 0,
        }
    }

    /// Queues `h("{id}{suffix}")` under `tag`. A message longer than one block is
    /// hashed at once; `done(tag, h)` is called for every hash completed.
    #[inline]
    pub fn push(&mut self, id: &str, suffix: &[u8], tag: u32, done: &mut impl FnMut(u32, u32)) {
        let Some(block) = md5::pad(id.as_bytes(), suffix) else {
            done(tag, long_hash(id.as_bytes(), suffix));
            return;
        };
        self.columns.set(self.filled, &block);
        self.tags[self.filled % MAX_LANES] = tag;
        self.filled += 1;
        if self.filled >= self.width {
            self.run(self.kernel, done);
        }
    }

    /// Hashes what is still queued.
    pub fn finish(&mut self, done: &mut impl FnMut(u32, u32)) {
        match self.filled {
            0 => {}
            // One message is cheaper on its own than in a vector.
            1 => self.run(Kernel::Scalar, done),
            _ => self.run(self.kernel, done),
        }
    }

    fn run(&mut self, kernel: Kernel, done: &mut impl FnMut(u32, u32)) {
        let n = self.filled.min(MAX_LANES);
        let mut words = [0u32; MAX_LANES];
        kernel.first_words_of(&self.columns, &mut words[..n]);
        for (tag, word) in self.tags[..n].iter().zip(&words) {
            done(*tag, *word);
        }
        self.filled = 0;
    }
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
    fn the_step_constants_are_rfc_1321s() {
        for (i, k) in md5::K.iter().enumerate() {
            let expected = ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32;
            assert_eq!(*k, expected, "K[{i}]");
        }
    }

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

    /// The reference: the first four bytes of the `md-5` crate's digest.
    fn reference(id: &str, suffix: &[u8]) -> u32 {
        let d = Md5::new().chain_update(id.as_bytes()).chain_update(suffix).finalize();
        u32::from_le_bytes([d[0], d[1], d[2], d[3]])
    }

    #[test]
    fn rfc_1321_test_suite_first_words() {
        // RFC 1321, appendix A.5: the digests' first four bytes, read little-endian.
        for (message, digest) in [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            ("abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
        ] {
            let first = u32::from_str_radix(&digest[..8], 16).map(u32::swap_bytes).expect("hex");
            assert_eq!(hash(message, b""), first, "{message:?}");
            let block = md5::pad(message.as_bytes(), b"").expect("fits one block");
            for kernel in Kernel::available() {
                let mut out = [0u32; 1];
                kernel.first_words(&[block], &mut out);
                assert_eq!(out[0], first, "{kernel:?} {message:?}");
            }
        }
    }

    #[test]
    fn every_kernel_agrees_with_md5_at_every_length_and_lane_count() {
        // Every message length up to and past one block, in every lane of every kernel,
        // with the other lanes holding other lengths.
        for kernel in Kernel::available() {
            for len in 0..=md5::ONE_BLOCK {
                let messages: Vec<String> = (0..kernel.lanes()).map(|lane| "x".repeat((len + lane * 7) % 56)).collect();
                let blocks: Vec<md5::Block> =
                    messages.iter().map(|m| md5::pad(m.as_bytes(), b"").expect("fits")).collect();
                for n in 1..=kernel.lanes() {
                    let mut out = vec![0u32; n];
                    kernel.first_words(&blocks[..n], &mut out);
                    for (message, word) in messages.iter().zip(&out) {
                        assert_eq!(*word, reference(message, b""), "{kernel:?} n={n} len={}", message.len());
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// `hash_many` with every kernel and `hash` give exactly `md-5`'s answer for any
        /// batch size (full vectors, remainders, one), any id and suffix (multi-byte
        /// characters, empty, and past one block, which takes the standard hasher).
        #[test]
        fn every_path_is_md5(
            jobs in proptest::collection::vec(("\\PC{0,40}|[a-z0-9-]{0,80}", proptest::collection::vec(proptest::num::u8::ANY, 0..40)), 0..40),
        ) {
            let jobs: Vec<(&str, &[u8])> = jobs.iter().map(|(id, suffix)| (id.as_str(), suffix.as_slice())).collect();
            let expected: Vec<u32> = jobs.iter().map(|(id, suffix)| reference(id, suffix)).collect();
            for (id, suffix) in &jobs {
                proptest::prop_assert_eq!(hash(id, suffix), reference(id, suffix));
            }
            for kernel in Kernel::available() {
                let mut out = vec![0u32; jobs.len()];
                hash_many_with(kernel, &jobs, &mut out);
                proptest::prop_assert_eq!(&out, &expected, "{:?}", kernel);
            }
            let mut out = vec![0u32; jobs.len()];
            hash_many(&jobs, &mut out);
            proptest::prop_assert_eq!(out, expected);
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
