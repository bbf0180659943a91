//! The MD5 kernel of [`super::md5`] over several messages at once: one message per SIMD
//! lane, 4 lanes with SSE2 (every x86_64) or NEON (every arm64, Lambda's Graviton), 8
//! with AVX2 and 16 with AVX-512 (detected at run time; AVX-512 also has a rotate and a
//! three-input logic instruction, so each step is fewer instructions), and the scalar
//! kernel elsewhere. The bucket hashes
//! of one request's flags are independent, so a batch of flags costs a fraction of the
//! sequential hashes.
//!
//! A call runs one vector, or two side by side when more messages than one vector holds
//! are waiting: a step of one vector waits on the step before it (MD5 is a chain), so a
//! second, independent chain fills the execution units the first leaves idle, for
//! about a fifth more time than one vector takes.
//!
//! Each backend only supplies the lane operations (`splat`, `add`, `rotl`, the round
//! functions); the sequence of steps is the one macro every path shares. Dependency-free
//! (`core` and `std`'s feature detection) so the arm64 test harness can build it alone.

use super::md5::Block;

/// The most lanes a backend fills per call (two AVX-512 vectors).
pub const MAX_LANES: usize = 32;

/// Up to [`MAX_LANES`] padded messages, word-major: `words[j][lane]` is word `j` of the
/// message in `lane`, so each word of a vector of messages is one load. Messages are
/// written here as they are padded, with no block in between to transpose.
#[derive(Debug, Clone)]
pub struct Columns {
    words: [[u32; MAX_LANES]; 16],
}

impl Default for Columns {
    fn default() -> Self {
        Columns { words: [[0; MAX_LANES]; 16] }
    }
}

impl Columns {
    /// Puts `block` in `lane` (`lane < MAX_LANES`; another lane is ignored).
    #[inline]
    pub fn set(&mut self, lane: usize, block: &Block) {
        if lane >= MAX_LANES {
            return;
        }
        for (row, word) in self.words.iter_mut().zip(block) {
            row[lane] = *word;
        }
    }

    /// The block in `lane` (the scalar kernel reads lanes one by one).
    #[inline]
    fn block(&self, lane: usize) -> Block {
        core::array::from_fn(|j| self.words[j][lane % MAX_LANES])
    }
}

/// `(first, second)` vectors as one: every lane operation of module `$one` applied to
/// both, so that the kernel macro runs two independent chains step by step.
macro_rules! paired_ops {
    ($name:ident, $one:ident, $v:ty, $feature:literal) => {
        mod $name {
            use super::$one as one;

            pub type V = ($v, $v);

            #[inline]
            #[target_feature(enable = $feature)]
            pub fn splat(x: u32) -> V {
                let v = one::splat(x);
                (v, v)
            }
            #[inline]
            #[target_feature(enable = $feature)]
            pub fn add(a: V, b: V) -> V {
                (one::add(a.0, b.0), one::add(a.1, b.1))
            }
            #[inline]
            #[target_feature(enable = $feature)]
            pub fn rotl<const L: i32, const R: i32>(x: V) -> V {
                (one::rotl::<L, R>(x.0), one::rotl::<L, R>(x.1))
            }
            #[inline]
            #[target_feature(enable = $feature)]
            pub fn f(b: V, c: V, d: V) -> V {
                (one::f(b.0, c.0, d.0), one::f(b.1, c.1, d.1))
            }
            #[inline]
            #[target_feature(enable = $feature)]
            pub fn g_early(c: V, d: V) -> V {
                (one::g_early(c.0, d.0), one::g_early(c.1, d.1))
            }
            #[inline]
            #[target_feature(enable = $feature)]
            pub fn g_late(b: V, d: V) -> V {
                (one::g_late(b.0, d.0), one::g_late(b.1, d.1))
            }
            #[inline]
            #[target_feature(enable = $feature)]
            pub fn h(b: V, c: V, d: V) -> V {
                (one::h(b.0, c.0, d.0), one::h(b.1, c.1, d.1))
            }
            #[inline]
            #[target_feature(enable = $feature)]
            pub fn i(b: V, c: V, d: V) -> V {
                (one::i(b.0, c.0, d.0), one::i(b.1, c.1, d.1))
            }
        }
    };
}

/// A kernel this machine can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// One message at a time.
    Scalar,
    /// 4 lanes of SSE2 (part of x86_64 itself).
    #[cfg(target_arch = "x86_64")]
    Sse2,
    /// 8 lanes of AVX2.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// 16 lanes of AVX-512 (foundation instructions only).
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// 4 lanes of NEON (part of arm64 itself).
    #[cfg(target_arch = "aarch64")]
    Neon,
}

impl Kernel {
    /// The widest kernel this CPU runs. The detection is cached by `std` (one relaxed
    /// load per call).
    #[inline]
    pub fn best() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Kernel::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Kernel::Avx2;
            }
            Kernel::Sse2
        }
        #[cfg(target_arch = "aarch64")]
        {
            Kernel::Neon
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            Kernel::Scalar
        }
    }

    /// Every kernel this CPU runs, narrowest first (for tests and benches).
    pub fn available() -> Vec<Kernel> {
        let mut kernels = vec![Kernel::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            kernels.push(Kernel::Sse2);
            if std::arch::is_x86_feature_detected!("avx2") {
                kernels.push(Kernel::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                kernels.push(Kernel::Avx512);
            }
        }
        #[cfg(target_arch = "aarch64")]
        kernels.push(Kernel::Neon);
        kernels
    }

    /// How many messages one call hashes: two vectors' worth.
    pub fn lanes(self) -> usize {
        match self {
            Kernel::Scalar => 1,
            #[cfg(target_arch = "x86_64")]
            Kernel::Sse2 => 8,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => 16,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => 32,
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => 8,
        }
    }

    /// `out[i]` = the first MD5 word of `blocks[i]`, for up to [`Kernel::lanes`] blocks
    /// (more is a caller's bug: only the first `lanes` are hashed).
    pub fn first_words(self, blocks: &[Block], out: &mut [u32]) {
        let mut columns = Columns::default();
        for (lane, block) in blocks.iter().enumerate().take(MAX_LANES) {
            columns.set(lane, block);
        }
        let n = blocks.len().min(out.len());
        self.first_words_of(&columns, &mut out[..n]);
    }

    /// `out[lane]` = the first MD5 word of the message in `lane` of `columns`, for the
    /// first `out.len()` lanes (at most [`Kernel::lanes`]). Lanes past them are hashed
    /// too if they share a vector with one asked for (a vector costs the same whatever
    /// its lanes hold) and their answers dropped.
    #[inline]
    pub fn first_words_of(self, columns: &Columns, out: &mut [u32]) {
        let n = out.len().min(self.lanes());
        let out = &mut out[..n];
        match self {
            Kernel::Scalar => {
                for (lane, word) in out.iter_mut().enumerate() {
                    *word = super::md5::first_word(&columns.block(lane));
                }
            }
            #[cfg(target_arch = "x86_64")]
            // SAFETY: SSE2 is part of the x86_64 baseline.
            Kernel::Sse2 => unsafe { x86::sse2_first_words(columns, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kernel::Avx2` is only chosen (`best`, `available`) where AVX2 was detected.
            Kernel::Avx2 => unsafe { x86::avx2_first_words(columns, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kernel::Avx512` is only chosen where AVX-512F was detected.
            Kernel::Avx512 => unsafe { x86::avx512_first_words(columns, out) },
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => arm::neon_first_words(columns, out),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Columns;
    use core::arch::x86_64::*;

    /// SSE2 lane operations (4 × u32).
    mod sse2 {
        use core::arch::x86_64::*;

        #[inline]
        #[target_feature(enable = "sse2")]
        pub fn splat(x: u32) -> __m128i {
            _mm_set1_epi32(x as i32)
        }
        #[inline]
        #[target_feature(enable = "sse2")]
        pub fn add(a: __m128i, b: __m128i) -> __m128i {
            _mm_add_epi32(a, b)
        }
        #[inline]
        #[target_feature(enable = "sse2")]
        pub fn rotl<const L: i32, const R: i32>(x: __m128i) -> __m128i {
            _mm_or_si128(_mm_slli_epi32::<L>(x), _mm_srli_epi32::<R>(x))
        }
        #[inline]
        #[target_feature(enable = "sse2")]
        pub fn f(b: __m128i, c: __m128i, d: __m128i) -> __m128i {
            _mm_xor_si128(d, _mm_and_si128(b, _mm_xor_si128(c, d)))
        }
        #[inline]
        #[target_feature(enable = "sse2")]
        pub fn g_early(c: __m128i, d: __m128i) -> __m128i {
            _mm_andnot_si128(d, c)
        }
        #[inline]
        #[target_feature(enable = "sse2")]
        pub fn g_late(b: __m128i, d: __m128i) -> __m128i {
            _mm_and_si128(b, d)
        }
        #[inline]
        #[target_feature(enable = "sse2")]
        pub fn h(b: __m128i, c: __m128i, d: __m128i) -> __m128i {
            _mm_xor_si128(_mm_xor_si128(b, c), d)
        }
        #[inline]
        #[target_feature(enable = "sse2")]
        pub fn i(b: __m128i, c: __m128i, d: __m128i) -> __m128i {
            _mm_xor_si128(c, _mm_or_si128(b, _mm_xor_si128(d, _mm_set1_epi32(-1))))
        }
    }

    /// AVX2 lane operations (8 × u32).
    mod avx2 {
        use core::arch::x86_64::*;

        #[inline]
        #[target_feature(enable = "avx2")]
        pub fn splat(x: u32) -> __m256i {
            _mm256_set1_epi32(x as i32)
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        pub fn add(a: __m256i, b: __m256i) -> __m256i {
            _mm256_add_epi32(a, b)
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        pub fn rotl<const L: i32, const R: i32>(x: __m256i) -> __m256i {
            _mm256_or_si256(_mm256_slli_epi32::<L>(x), _mm256_srli_epi32::<R>(x))
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        pub fn f(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
            _mm256_xor_si256(d, _mm256_and_si256(b, _mm256_xor_si256(c, d)))
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        pub fn g_early(c: __m256i, d: __m256i) -> __m256i {
            _mm256_andnot_si256(d, c)
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        pub fn g_late(b: __m256i, d: __m256i) -> __m256i {
            _mm256_and_si256(b, d)
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        pub fn h(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
            _mm256_xor_si256(_mm256_xor_si256(b, c), d)
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        pub fn i(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
            _mm256_xor_si256(c, _mm256_or_si256(b, _mm256_xor_si256(d, _mm256_set1_epi32(-1))))
        }
    }

    /// AVX-512F lane operations (16 × u32): a rotate instruction, and the round
    /// functions as one three-input logic instruction each (`vpternlogd`; the immediate is
    /// the function's truth table over b = 0xF0, c = 0xCC, d = 0xAA).
    mod avx512 {
        use core::arch::x86_64::*;

        #[inline]
        #[target_feature(enable = "avx512f")]
        pub fn splat(x: u32) -> __m512i {
            _mm512_set1_epi32(x as i32)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub fn add(a: __m512i, b: __m512i) -> __m512i {
            _mm512_add_epi32(a, b)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub fn rotl<const L: i32, const R: i32>(x: __m512i) -> __m512i {
            _mm512_rol_epi32::<L>(x)
        }
        /// `(b & c) | (!b & d)`: truth table 0xCA.
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub fn f(b: __m512i, c: __m512i, d: __m512i) -> __m512i {
            _mm512_ternarylogic_epi32::<0xCA>(b, c, d)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub fn g_early(c: __m512i, d: __m512i) -> __m512i {
            _mm512_andnot_si512(d, c)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub fn g_late(b: __m512i, d: __m512i) -> __m512i {
            _mm512_and_si512(b, d)
        }
        /// `b ^ c ^ d`: truth table 0x96.
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub fn h(b: __m512i, c: __m512i, d: __m512i) -> __m512i {
            _mm512_ternarylogic_epi32::<0x96>(b, c, d)
        }
        /// `c ^ (b | !d)`: truth table 0x39.
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub fn i(b: __m512i, c: __m512i, d: __m512i) -> __m512i {
            _mm512_ternarylogic_epi32::<0x39>(b, c, d)
        }
    }

    paired_ops!(sse2x2, sse2, core::arch::x86_64::__m128i, "sse2");
    paired_ops!(avx2x2, avx2, core::arch::x86_64::__m256i, "avx2");
    paired_ops!(avx512x2, avx512, core::arch::x86_64::__m512i, "avx512f");

    /// The kernel over up to 8 lanes: one vector of 4, or two.
    #[target_feature(enable = "sse2")]
    pub fn sse2_first_words(columns: &Columns, out: &mut [u32]) {
        let rows = &columns.words;
        let mut lanes = [0u32; 8];
        // SAFETY (loads and stores): each row is 32 `u32`s, so 4 from offset 0 or 4 are
        // readable; `lanes` has room for two vectors. All unaligned.
        if out.len() <= 4 {
            let m: [__m128i; 16] = core::array::from_fn(|j| unsafe { _mm_loadu_si128(rows[j].as_ptr().cast()) });
            let a = md5_first_word!(sse2, &m);
            unsafe { _mm_storeu_si128(lanes.as_mut_ptr().cast(), a) };
        } else {
            let m: [sse2x2::V; 16] = core::array::from_fn(|j| unsafe {
                (_mm_loadu_si128(rows[j].as_ptr().cast()), _mm_loadu_si128(rows[j][4..].as_ptr().cast()))
            });
            let (a0, a1) = md5_first_word!(sse2x2, &m);
            unsafe { _mm_storeu_si128(lanes.as_mut_ptr().cast(), a0) };
            unsafe { _mm_storeu_si128(lanes[4..].as_mut_ptr().cast(), a1) };
        }
        let n = out.len().min(8);
        out[..n].copy_from_slice(&lanes[..n]);
    }

    /// The kernel over up to 16 lanes: one vector of 8, or two.
    #[target_feature(enable = "avx2")]
    pub fn avx2_first_words(columns: &Columns, out: &mut [u32]) {
        let rows = &columns.words;
        let mut lanes = [0u32; 16];
        // SAFETY (loads and stores): each row is 32 `u32`s, so 8 from offset 0 or 8 are
        // readable; `lanes` has room for two vectors. All unaligned.
        if out.len() <= 8 {
            let m: [__m256i; 16] = core::array::from_fn(|j| unsafe { _mm256_loadu_si256(rows[j].as_ptr().cast()) });
            let a = md5_first_word!(avx2, &m);
            unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), a) };
        } else {
            let m: [avx2x2::V; 16] = core::array::from_fn(|j| unsafe {
                (_mm256_loadu_si256(rows[j].as_ptr().cast()), _mm256_loadu_si256(rows[j][8..].as_ptr().cast()))
            });
            let (a0, a1) = md5_first_word!(avx2x2, &m);
            unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), a0) };
            unsafe { _mm256_storeu_si256(lanes[8..].as_mut_ptr().cast(), a1) };
        }
        let n = out.len().min(16);
        out[..n].copy_from_slice(&lanes[..n]);
    }

    /// The kernel over up to 32 lanes: one vector of 16, or two.
    #[target_feature(enable = "avx512f")]
    pub fn avx512_first_words(columns: &Columns, out: &mut [u32]) {
        let rows = &columns.words;
        let mut lanes = [0u32; 32];
        // SAFETY (loads and stores): each row is 32 `u32`s, so 16 from offset 0 or 16 are
        // readable; `lanes` has room for two vectors. All unaligned.
        if out.len() <= 16 {
            let m: [__m512i; 16] = core::array::from_fn(|j| unsafe { _mm512_loadu_si512(rows[j].as_ptr().cast()) });
            let a = md5_first_word!(avx512, &m);
            unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), a) };
        } else {
            let m: [avx512x2::V; 16] = core::array::from_fn(|j| unsafe {
                (_mm512_loadu_si512(rows[j].as_ptr().cast()), _mm512_loadu_si512(rows[j][16..].as_ptr().cast()))
            });
            let (a0, a1) = md5_first_word!(avx512x2, &m);
            unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), a0) };
            unsafe { _mm512_storeu_si512(lanes[16..].as_mut_ptr().cast(), a1) };
        }
        let n = out.len().min(32);
        out[..n].copy_from_slice(&lanes[..n]);
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::Columns;
    use core::arch::aarch64::*;

    /// NEON lane operations (4 × u32).
    mod neon {
        use core::arch::aarch64::*;

        #[inline]
        #[target_feature(enable = "neon")]
        pub fn splat(x: u32) -> uint32x4_t {
            vdupq_n_u32(x)
        }
        #[inline]
        #[target_feature(enable = "neon")]
        pub fn add(a: uint32x4_t, b: uint32x4_t) -> uint32x4_t {
            vaddq_u32(a, b)
        }
        /// Shift left, then shift right and insert: a rotation in two instructions.
        #[inline]
        #[target_feature(enable = "neon")]
        pub fn rotl<const L: i32, const R: i32>(x: uint32x4_t) -> uint32x4_t {
            vsriq_n_u32::<R>(vshlq_n_u32::<L>(x), x)
        }
        #[inline]
        #[target_feature(enable = "neon")]
        pub fn f(b: uint32x4_t, c: uint32x4_t, d: uint32x4_t) -> uint32x4_t {
            veorq_u32(d, vandq_u32(b, veorq_u32(c, d)))
        }
        #[inline]
        #[target_feature(enable = "neon")]
        pub fn g_early(c: uint32x4_t, d: uint32x4_t) -> uint32x4_t {
            vbicq_u32(c, d)
        }
        #[inline]
        #[target_feature(enable = "neon")]
        pub fn g_late(b: uint32x4_t, d: uint32x4_t) -> uint32x4_t {
            vandq_u32(b, d)
        }
        #[inline]
        #[target_feature(enable = "neon")]
        pub fn h(b: uint32x4_t, c: uint32x4_t, d: uint32x4_t) -> uint32x4_t {
            veorq_u32(veorq_u32(b, c), d)
        }
        /// `c ^ (b | !d)`, with NEON's or-not.
        #[inline]
        #[target_feature(enable = "neon")]
        pub fn i(b: uint32x4_t, c: uint32x4_t, d: uint32x4_t) -> uint32x4_t {
            veorq_u32(c, vornq_u32(b, d))
        }
    }

    paired_ops!(neonx2, neon, core::arch::aarch64::uint32x4_t, "neon");

    /// The kernel over up to 8 lanes: one vector of 4, or two.
    pub fn neon_first_words(columns: &Columns, out: &mut [u32]) {
        // SAFETY: NEON is part of the arm64 baseline.
        unsafe { neon_kernel(columns, out) }
    }

    #[target_feature(enable = "neon")]
    fn neon_kernel(columns: &Columns, out: &mut [u32]) {
        let rows = &columns.words;
        let mut lanes = [0u32; 8];
        // SAFETY (loads and stores): each row is 32 `u32`s, so 4 from offset 0 or 4 are
        // readable; `lanes` has room for two vectors.
        if out.len() <= 4 {
            let m: [uint32x4_t; 16] = core::array::from_fn(|j| unsafe { vld1q_u32(rows[j].as_ptr()) });
            let a = md5_first_word!(neon, &m);
            unsafe { vst1q_u32(lanes.as_mut_ptr(), a) };
        } else {
            let m: [neonx2::V; 16] =
                core::array::from_fn(|j| unsafe { (vld1q_u32(rows[j].as_ptr()), vld1q_u32(rows[j][4..].as_ptr())) });
            let (a0, a1) = md5_first_word!(neonx2, &m);
            unsafe { vst1q_u32(lanes.as_mut_ptr(), a0) };
            unsafe { vst1q_u32(lanes[4..].as_mut_ptr(), a1) };
        }
        let n = out.len().min(8);
        out[..n].copy_from_slice(&lanes[..n]);
    }
}
