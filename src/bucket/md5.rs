//! MD5 for the one thing bucketing asks of it: the first digest word of a message that
//! fits one padded block (≤ 55 bytes, every realistic `"{user}:{flag}"`).
//!
//! A general MD5 computes four digest words over any number of blocks; here the block
//! count (one), the padding and the length word are known before the compression starts,
//! and only the first word is read. The first word is final after step 61 of 64 (the
//! last three steps update the other three words), so they are skipped. The kernel is
//! written once, as a macro over a small set of lane operations, and instantiated for a
//! plain `u32` here and for SIMD vectors of 4 or 8 lanes in [`super::lanes`], so every
//! path runs the very same sequence of steps.
//!
//! Dependency-free (only `core`) so the arm64 test harness can build it on its own.

/// A padded one-block message as sixteen little-endian words.
pub type Block = [u32; 16];

/// Longest message that fits one padded block: 64 bytes less the `0x80` marker and the
/// 8-byte bit length.
pub const ONE_BLOCK: usize = 55;

/// MD5's initial state word A (RFC 1321); the answer is `A0 + a` after step 61.
pub const A0: u32 = 0x6745_2301;
/// The other three words of the initial state.
pub const B0: u32 = 0xefcd_ab89;
/// See [`B0`].
pub const C0: u32 = 0x98ba_dcfe;
/// See [`B0`].
pub const D0: u32 = 0x1032_5476;

/// The 64 step constants of RFC 1321 (`K[i]` = the integer part of `|sin(i + 1)| · 2³²`),
/// in step order; the kernel reads the first 61.
#[rustfmt::skip]
pub static K: [u32; 64] = [
    0xd76a_a478, 0xe8c7_b756, 0x2420_70db, 0xc1bd_ceee,
    0xf57c_0faf, 0x4787_c62a, 0xa830_4613, 0xfd46_9501,
    0x6980_98d8, 0x8b44_f7af, 0xffff_5bb1, 0x895c_d7be,
    0x6b90_1122, 0xfd98_7193, 0xa679_438e, 0x49b4_0821,
    0xf61e_2562, 0xc040_b340, 0x265e_5a51, 0xe9b6_c7aa,
    0xd62f_105d, 0x0244_1453, 0xd8a1_e681, 0xe7d3_fbc8,
    0x21e1_cde6, 0xc337_07d6, 0xf4d5_0d87, 0x455a_14ed,
    0xa9e3_e905, 0xfcef_a3f8, 0x676f_02d9, 0x8d2a_4c8a,
    0xfffa_3942, 0x8771_f681, 0x6d9d_6122, 0xfde5_380c,
    0xa4be_ea44, 0x4bde_cfa9, 0xf6bb_4b60, 0xbebf_bc70,
    0x289b_7ec6, 0xeaa1_27fa, 0xd4ef_3085, 0x0488_1d05,
    0xd9d4_d039, 0xe6db_99e5, 0x1fa2_7cf8, 0xc4ac_5665,
    0xf429_2244, 0x432a_ff97, 0xab94_23a7, 0xfc93_a039,
    0x655b_59c3, 0x8f0c_cc92, 0xffef_f47d, 0x8584_5dd1,
    0x6fa8_7e4f, 0xfe2c_e6e0, 0xa301_4314, 0x4e08_11a1,
    0xf753_7e82, 0xbd3a_f235, 0x2ad7_d2bb, 0xeb86_d391,
];

/// `"{id}{suffix}"` padded into one block, or `None` when it does not fit.
#[inline]
pub fn pad(id: &[u8], suffix: &[u8]) -> Option<Block> {
    let len = id.len() + suffix.len();
    if len > ONE_BLOCK {
        return None;
    }
    let mut bytes = [0u8; 64];
    bytes[..id.len()].copy_from_slice(id);
    bytes[id.len()..len].copy_from_slice(suffix);
    bytes[len] = 0x80;
    bytes[56..].copy_from_slice(&((len as u64) * 8).to_le_bytes());
    let mut block = [0u32; 16];
    for (word, chunk) in block.iter_mut().zip(bytes.chunks_exact(4)) {
        *word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    Some(block)
}

/// The lane operations for one `u32`: the kernel's scalar instance.
pub(crate) mod scalar {
    /// One lane holding `x`.
    #[inline(always)]
    pub fn splat(x: u32) -> u32 {
        x
    }
    /// Wrapping addition.
    #[inline(always)]
    pub fn add(a: u32, b: u32) -> u32 {
        a.wrapping_add(b)
    }
    /// `rotl(x, L)`; `R` is `32 - L` (the vector instances shift both ways).
    #[inline(always)]
    pub fn rotl<const L: u32, const R: u32>(x: u32) -> u32 {
        x.rotate_left(L)
    }
    /// Round 1's `F(b, c, d) = (b & c) | (!b & d)`, as `d ^ (b & (c ^ d))`.
    #[inline(always)]
    pub fn f(b: u32, c: u32, d: u32) -> u32 {
        d ^ (b & (c ^ d))
    }
    /// The half of round 2's `G` that does not depend on `b`: `c & !d`.
    #[inline(always)]
    pub fn g_early(c: u32, d: u32) -> u32 {
        c & !d
    }
    /// The half of `G` that does: `b & d` (the halves have no bit in common, so `+` is `|`).
    #[inline(always)]
    pub fn g_late(b: u32, d: u32) -> u32 {
        b & d
    }
    /// Round 3's `H(b, c, d) = b ^ c ^ d`.
    #[inline(always)]
    pub fn h(b: u32, c: u32, d: u32) -> u32 {
        b ^ c ^ d
    }
    /// Round 4's `I(b, c, d) = c ^ (b | !d)`.
    #[inline(always)]
    pub fn i(b: u32, c: u32, d: u32) -> u32 {
        c ^ (b | !d)
    }
}

/// The kernel: `A0 + a` after MD5's first 61 steps over the sixteen words `$m` (an
/// indexable of lane vectors), with the lane operations of module `$ops` (`splat`,
/// `add`, `rotl::<L, R>`, `f`, `g_early`, `g_late`, `h`, `i`). Every step adds what
/// does not depend on the newest word first, so the dependency chain per step is the
/// round function's last operation, one addition, the rotation and one addition.
///
/// The step constants are read from [`K`] through an opaque reference: given literal
/// constants, LLVM's reassociation moves the constant to the end of each step's sum (to
/// fold it), that is after the round function, which puts one more addition on the
/// dependency chain of every step (about 15 % of a hash). Loaded, `K[i] + M[g]` is added
/// while the previous step is still running.
macro_rules! md5_first_word {
    ($ops:ident, $m:expr) => {{
        #[allow(unused_imports)]
        use $ops::*;
        let m = $m;
        // Opaque to the optimizer (see above): the loads cost nothing on the chain.
        let k: &[u32; 64] = core::hint::black_box(&$crate::bucket::md5::K);
        let (mut a, mut b, mut c, mut d) = (
            splat($crate::bucket::md5::A0),
            splat($crate::bucket::md5::B0),
            splat($crate::bucket::md5::C0),
            splat($crate::bucket::md5::D0),
        );
        macro_rules! step {
            (F, $w:ident, $x:ident, $y:ident, $z:ident, $i:expr, $n:expr, $l:literal, $r:literal) => {
                $w = add($x, rotl::<$l, $r>(add(add($w, add(m[$i], splat(k[$n]))), f($x, $y, $z))));
            };
            (G, $w:ident, $x:ident, $y:ident, $z:ident, $i:expr, $n:expr, $l:literal, $r:literal) => {
                $w = add(
                    $x,
                    rotl::<$l, $r>(add(add(add($w, add(m[$i], splat(k[$n]))), g_early($y, $z)), g_late($x, $z))),
                );
            };
            (H, $w:ident, $x:ident, $y:ident, $z:ident, $i:expr, $n:expr, $l:literal, $r:literal) => {
                $w = add($x, rotl::<$l, $r>(add(add($w, add(m[$i], splat(k[$n]))), h($x, $y, $z))));
            };
            (I, $w:ident, $x:ident, $y:ident, $z:ident, $i:expr, $n:expr, $l:literal, $r:literal) => {
                $w = add($x, rotl::<$l, $r>(add(add($w, add(m[$i], splat(k[$n]))), i($x, $y, $z))));
            };
        }
        step!(F, a, b, c, d, 0, 0, 7, 25);
        step!(F, d, a, b, c, 1, 1, 12, 20);
        step!(F, c, d, a, b, 2, 2, 17, 15);
        step!(F, b, c, d, a, 3, 3, 22, 10);
        step!(F, a, b, c, d, 4, 4, 7, 25);
        step!(F, d, a, b, c, 5, 5, 12, 20);
        step!(F, c, d, a, b, 6, 6, 17, 15);
        step!(F, b, c, d, a, 7, 7, 22, 10);
        step!(F, a, b, c, d, 8, 8, 7, 25);
        step!(F, d, a, b, c, 9, 9, 12, 20);
        step!(F, c, d, a, b, 10, 10, 17, 15);
        step!(F, b, c, d, a, 11, 11, 22, 10);
        step!(F, a, b, c, d, 12, 12, 7, 25);
        step!(F, d, a, b, c, 13, 13, 12, 20);
        step!(F, c, d, a, b, 14, 14, 17, 15);
        step!(F, b, c, d, a, 15, 15, 22, 10);

        step!(G, a, b, c, d, 1, 16, 5, 27);
        step!(G, d, a, b, c, 6, 17, 9, 23);
        step!(G, c, d, a, b, 11, 18, 14, 18);
        step!(G, b, c, d, a, 0, 19, 20, 12);
        step!(G, a, b, c, d, 5, 20, 5, 27);
        step!(G, d, a, b, c, 10, 21, 9, 23);
        step!(G, c, d, a, b, 15, 22, 14, 18);
        step!(G, b, c, d, a, 4, 23, 20, 12);
        step!(G, a, b, c, d, 9, 24, 5, 27);
        step!(G, d, a, b, c, 14, 25, 9, 23);
        step!(G, c, d, a, b, 3, 26, 14, 18);
        step!(G, b, c, d, a, 8, 27, 20, 12);
        step!(G, a, b, c, d, 13, 28, 5, 27);
        step!(G, d, a, b, c, 2, 29, 9, 23);
        step!(G, c, d, a, b, 7, 30, 14, 18);
        step!(G, b, c, d, a, 12, 31, 20, 12);

        step!(H, a, b, c, d, 5, 32, 4, 28);
        step!(H, d, a, b, c, 8, 33, 11, 21);
        step!(H, c, d, a, b, 11, 34, 16, 16);
        step!(H, b, c, d, a, 14, 35, 23, 9);
        step!(H, a, b, c, d, 1, 36, 4, 28);
        step!(H, d, a, b, c, 4, 37, 11, 21);
        step!(H, c, d, a, b, 7, 38, 16, 16);
        step!(H, b, c, d, a, 10, 39, 23, 9);
        step!(H, a, b, c, d, 13, 40, 4, 28);
        step!(H, d, a, b, c, 0, 41, 11, 21);
        step!(H, c, d, a, b, 3, 42, 16, 16);
        step!(H, b, c, d, a, 6, 43, 23, 9);
        step!(H, a, b, c, d, 9, 44, 4, 28);
        step!(H, d, a, b, c, 12, 45, 11, 21);
        step!(H, c, d, a, b, 15, 46, 16, 16);
        step!(H, b, c, d, a, 2, 47, 23, 9);

        step!(I, a, b, c, d, 0, 48, 6, 26);
        step!(I, d, a, b, c, 7, 49, 10, 22);
        step!(I, c, d, a, b, 14, 50, 15, 17);
        step!(I, b, c, d, a, 5, 51, 21, 11);
        step!(I, a, b, c, d, 12, 52, 6, 26);
        step!(I, d, a, b, c, 3, 53, 10, 22);
        step!(I, c, d, a, b, 10, 54, 15, 17);
        step!(I, b, c, d, a, 1, 55, 21, 11);
        step!(I, a, b, c, d, 8, 56, 6, 26);
        step!(I, d, a, b, c, 15, 57, 10, 22);
        step!(I, c, d, a, b, 6, 58, 15, 17);
        step!(I, b, c, d, a, 13, 59, 21, 11);
        step!(I, a, b, c, d, 4, 60, 6, 26);
        // Steps 62–64 update d, c and b, which the first digest word does not read.
        add(splat($crate::bucket::md5::A0), a)
    }};
}

/// The first word of MD5's digest of one padded block (read little-endian, it is the
/// first four bytes of the digest).
#[inline]
pub fn first_word(m: &Block) -> u32 {
    md5_first_word!(scalar, m)
}
