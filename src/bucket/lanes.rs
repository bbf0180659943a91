//! The MD5 kernel of [`super::md5`] over several messages at once: one message per SIMD
//! lane, 4 lanes with SSE2 (every x86_64) or NEON (every arm64, Lambda's Graviton), 8
//! with AVX2 and 16 with AVX-512 (detected at run time; AVX-512 also has a rotate and a
//! three-input logic instruction, so each step is fewer instructions), and the scalar
//! kernel elsewhere. The bucket hashes
//! of one request's flags are independent, so a batch of flags costs a fraction of the
//! sequential hashes.
//!
//! Each backend only supplies the lane operations (`splat`, `add`, `rotl`, the round
//! functions); the sequence of steps is the one macro every path shares. Dependency-free
//! (`core` and `std`'s feature detection) so the arm64 test harness can build it alone.

use super::md5::Block;

/// The most lanes a backend fills per call.
pub const MAX_LANES: usize = 16;

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

    /// How many messages one call hashes.
    pub fn lanes(self) -> usize {
        match self {
            Kernel::Scalar => 1,
            #[cfg(target_arch = "x86_64")]
            Kernel::Sse2 => 4,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => 8,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => 16,
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => 4,
        }
    }

    /// `out[i]` = the first MD5 word of `blocks[i]`, for up to [`Kernel::lanes`] blocks
    /// (more is a caller's bug: only the first `lanes` are hashed). Lanes left empty
    /// cost nothing extra: the vector does the same work whatever they hold.
    #[inline]
    pub fn first_words(self, blocks: &[Block], out: &mut [u32]) {
        let n = blocks.len().min(out.len()).min(self.lanes());
        match self {
            Kernel::Scalar => {
                for (word, block) in out[..n].iter_mut().zip(blocks) {
                    *word = super::md5::first_word(block);
                }
            }
            #[cfg(target_arch = "x86_64")]
            // SAFETY: SSE2 is part of the x86_64 baseline.
            Kernel::Sse2 => unsafe { x86::sse2_first_words(&transpose::<4>(&blocks[..n]), &mut out[..n]) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kernel::Avx2` is only chosen (`best`, `available`) where AVX2 was detected.
            Kernel::Avx2 => unsafe { x86::avx2_first_words(&transpose::<8>(&blocks[..n]), &mut out[..n]) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kernel::Avx512` is only chosen where AVX-512F was detected.
            Kernel::Avx512 => unsafe { x86::avx512_first_words(&transpose::<16>(&blocks[..n]), &mut out[..n]) },
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => arm::neon_first_words(&transpose::<4>(&blocks[..n]), &mut out[..n]),
        }
    }
}

/// Word `j` of every lane side by side (`[j][lane]`), so that each word loads as one
/// vector; lanes past `blocks.len()` are zero.
#[inline]
fn transpose<const L: usize>(blocks: &[Block]) -> [[u32; L]; 16] {
    let mut words = [[0u32; L]; 16];
    for (lane, block) in blocks.iter().enumerate().take(L) {
        for (j, word) in block.iter().enumerate() {
            words[j][lane] = *word;
        }
    }
    words
}

#[cfg(target_arch = "x86_64")]
mod x86 {
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

    /// The kernel over 16 lanes; `out.len() <= 16`.
    #[target_feature(enable = "avx512f")]
    pub fn avx512_first_words(words: &[[u32; 16]; 16], out: &mut [u32]) {
        // SAFETY: each `[u32; 16]` is 64 readable bytes; unaligned loads.
        let m: [__m512i; 16] = core::array::from_fn(|j| unsafe { _mm512_loadu_si512(words[j].as_ptr().cast()) });
        let a = md5_first_word!(avx512, &m);
        let mut lanes = [0u32; 16];
        // SAFETY: `lanes` is 64 writable bytes; unaligned store.
        unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), a) };
        let n = out.len().min(16);
        out[..n].copy_from_slice(&lanes[..n]);
    }

    /// The kernel over 4 lanes; `out.len() <= 4`.
    #[target_feature(enable = "sse2")]
    pub fn sse2_first_words(words: &[[u32; 4]; 16], out: &mut [u32]) {
        // SAFETY: each `[u32; 4]` is 16 readable bytes; unaligned loads.
        let m: [__m128i; 16] = core::array::from_fn(|j| unsafe { _mm_loadu_si128(words[j].as_ptr().cast()) });
        let a = md5_first_word!(sse2, &m);
        let mut lanes = [0u32; 4];
        // SAFETY: `lanes` is 16 writable bytes; unaligned store.
        unsafe { _mm_storeu_si128(lanes.as_mut_ptr().cast(), a) };
        let n = out.len().min(4);
        out[..n].copy_from_slice(&lanes[..n]);
    }

    /// The kernel over 8 lanes; `out.len() <= 8`.
    #[target_feature(enable = "avx2")]
    pub fn avx2_first_words(words: &[[u32; 8]; 16], out: &mut [u32]) {
        // SAFETY: each `[u32; 8]` is 32 readable bytes; unaligned loads.
        let m: [__m256i; 16] = core::array::from_fn(|j| unsafe { _mm256_loadu_si256(words[j].as_ptr().cast()) });
        let a = md5_first_word!(avx2, &m);
        let mut lanes = [0u32; 8];
        // SAFETY: `lanes` is 32 writable bytes; unaligned store.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), a) };
        let n = out.len().min(8);
        out[..n].copy_from_slice(&lanes[..n]);
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
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

    /// The kernel over 4 lanes; `out.len() <= 4`.
    pub fn neon_first_words(words: &[[u32; 4]; 16], out: &mut [u32]) {
        // SAFETY: NEON is part of the arm64 baseline.
        unsafe { neon_kernel(words, out) }
    }

    #[target_feature(enable = "neon")]
    fn neon_kernel(words: &[[u32; 4]; 16], out: &mut [u32]) {
        // SAFETY: each `[u32; 4]` is 16 readable bytes.
        let m: [uint32x4_t; 16] = core::array::from_fn(|j| unsafe { vld1q_u32(words[j].as_ptr()) });
        let a = md5_first_word!(neon, &m);
        let mut lanes = [0u32; 4];
        // SAFETY: `lanes` is 16 writable bytes.
        unsafe { vst1q_u32(lanes.as_mut_ptr(), a) };
        let n = out.len().min(4);
        out[..n].copy_from_slice(&lanes[..n]);
    }
}
