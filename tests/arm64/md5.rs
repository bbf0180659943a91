//! The bucketing MD5 kernels on arm64 (NEON included), built on their own by `rustc` for
//! `aarch64-unknown-linux-gnu` and run under qemu by `make test-arm64`: Lambda runs on
//! Graviton, and nothing here is an arm64 machine.
//!
//! `src/bucket/md5.rs` and `src/bucket/lanes.rs` need nothing but `std`, so they are
//! compiled here exactly as the function compiles them. The facts checked: RFC 1321's
//! digests, the golden bucketing vectors (their Python-computed hashes, passed in a file
//! made from `tests/fixtures/golden.json`), and every kernel equal to the scalar one for
//! every message length, lane and lane count, over pseudo-random bytes.

#![allow(dead_code)]

// `md5` first: its kernel macro is used by `lanes`.
#[macro_use]
#[path = "../../src/bucket/md5.rs"]
pub mod md5;
#[path = "../../src/bucket/lanes.rs"]
pub mod lanes;

/// Where the kernel macro finds the constants in the function's crate.
mod bucket {
    pub use super::{lanes, md5};
}

use bucket::lanes::Kernel;
use bucket::md5::{first_word, pad, Block, ONE_BLOCK};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn from_hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

#[test]
fn the_widest_kernel_here_is_neon() {
    assert_eq!(Kernel::best(), Kernel::Neon);
    assert_eq!(Kernel::available(), [Kernel::Scalar, Kernel::Neon]);
}

#[test]
fn rfc_1321_digests() {
    for (message, digest) in [
        ("", "d41d8cd98f00b204e9800998ecf8427e"),
        ("a", "0cc175b9c0f1b6a831c399e269772661"),
        ("abc", "900150983cd24fb0d6963f7d28e17f72"),
        ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
        ("abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
    ] {
        let expected = u32::from_le_bytes(from_hex(&digest[..8]).try_into().expect("4 bytes"));
        let block = pad(message.as_bytes(), b"").expect("one block");
        for kernel in Kernel::available() {
            let mut out = [0u32; 1];
            kernel.first_words(&[block], &mut out);
            assert_eq!(out[0], expected, "{kernel:?} {message:?}");
        }
    }
}

#[test]
fn golden_bucketing_vectors() {
    let path = std::env::var("GOLDEN_TSV").expect("GOLDEN_TSV: hex(user) TAB hex(flag) TAB hash lines");
    let text = std::fs::read_to_string(&path).expect("read GOLDEN_TSV");
    let mut checked = 0;
    let mut blocks: Vec<(Block, u32)> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let (user, flag, hash) = (from_hex(fields[0]), from_hex(fields[1]), fields[2].parse::<u32>().expect("hash"));
        let mut suffix = b":".to_vec();
        suffix.extend(&flag);
        if let Some(block) = pad(&user, &suffix) {
            assert_eq!(first_word(&block), hash, "scalar {line}");
            blocks.push((block, hash));
            checked += 1;
        }
    }
    assert!(checked > 10, "the golden vectors were read ({checked})");
    for kernel in Kernel::available() {
        for chunk in blocks.chunks(kernel.lanes()) {
            let input: Vec<Block> = chunk.iter().map(|(b, _)| *b).collect();
            let mut out = vec![0u32; chunk.len()];
            kernel.first_words(&input, &mut out);
            let expected: Vec<u32> = chunk.iter().map(|(_, h)| *h).collect();
            assert_eq!(out, expected, "{kernel:?}");
        }
    }
}

#[test]
fn every_kernel_equals_the_scalar_one_at_every_length_and_lane_count() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..200 {
        for kernel in Kernel::available() {
            let lanes = kernel.lanes();
            let messages: Vec<Vec<u8>> =
                (0..lanes).map(|lane| rng.bytes((round + lane * 13) % (ONE_BLOCK + 1))).collect();
            let blocks: Vec<Block> = messages.iter().map(|m| pad(m, b"").expect("fits")).collect();
            for n in 1..=lanes {
                let mut out = vec![0u32; n];
                kernel.first_words(&blocks[..n], &mut out);
                for (block, word) in blocks.iter().zip(&out) {
                    assert_eq!(*word, first_word(block), "{kernel:?} round {round} n={n}");
                }
            }
        }
    }
}
