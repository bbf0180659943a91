//! Many flags for one user: their bucket hashes computed together, several MD5s per
//! SIMD instruction ([`crate::bucket::hash_many`]), before the flags are evaluated one by
//! one. A batch is where most of a request's time goes into MD5, and the hashes of
//! different flags are independent.

use super::{Evaluation, Evaluator, FlagSource, NoTrace};
use crate::bucket;
use crate::flag::CompiledFlag;

/// Flags whose hashes are computed together: at most two hashes each (rollout and
/// variant), so up to 128 messages. A 100-flag request is two chunks; what a chunk costs
/// beyond its flags is a few arrays on the stack.
const CHUNK: usize = 64;

/// A root flag's hashes computed ahead of its evaluation; `None` where none was.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Prehashed {
    /// `h("{id}:{key}")`, for a rollout strictly between 0 and 100 %.
    pub rollout: Option<u32>,
    /// `h("{id}:{key}_variant")`, for a split of two or more variants.
    pub variant: Option<u32>,
}

impl<'a, 'c, S: FlagSource + ?Sized> Evaluator<'a, 'c, S, NoTrace> {
    /// Evaluates the flag each of `items` names (`flag_of`; `None`: nothing to
    /// evaluate), in order, and hands each item with its evaluation to `each`. The
    /// answers are exactly [`Evaluator::evaluate`]'s: only when the hashes are computed
    /// changes. Every 64 flags, the rollout and variant hashes each enabled flag could
    /// need are computed together first; a flag whose targeting then fails had its hash
    /// computed for nothing, which costs less than a sequential hash per flag that
    /// needs one.
    pub fn evaluate_each<I, F, E>(&mut self, items: I, flag_of: F, mut each: E)
    where
        I: IntoIterator,
        F: Fn(&I::Item) -> Option<&'a CompiledFlag>,
        E: FnMut(I::Item, Option<Evaluation<'a>>),
    {
        let mut items = items.into_iter();
        loop {
            let mut chunk: [Option<I::Item>; CHUNK] = [const { None }; CHUNK];
            let mut n = 0;
            for (slot, item) in chunk.iter_mut().zip(items.by_ref()) {
                *slot = Some(item);
                n += 1;
            }
            if n == 0 {
                return;
            }
            let flags: [Option<&'a CompiledFlag>; CHUNK] =
                std::array::from_fn(|i| chunk[i].as_ref().and_then(&flag_of));
            let pre = self.prehash(&flags[..n]);
            for ((item, flag), pre) in chunk.into_iter().zip(flags).zip(pre).take(n) {
                let Some(item) = item else { continue };
                let evaluation = flag.map(|flag| {
                    self.pre = pre;
                    self.eval_flag(flag, true)
                });
                each(item, evaluation);
            }
            if n < CHUNK {
                return;
            }
        }
    }

    /// The hashes `flags` may need, computed together: pushed into one
    /// [`bucket::HashBatch`] as each flag is looked at, and written where the flag's
    /// evaluation will take them as each vector completes.
    fn prehash(&self, flags: &[Option<&'a CompiledFlag>]) -> [Prehashed; CHUNK] {
        let mut pre = [Prehashed::default(); CHUNK];
        // A hash's tag: its flag's index, doubled, plus one for the variant hash.
        let mut done = |tag: u32, h: u32| {
            if let Some(p) = pre.get_mut((tag >> 1) as usize) {
                if tag & 1 == 1 {
                    p.variant = Some(h);
                } else {
                    p.rollout = Some(h);
                }
            }
        };
        let mut batch = bucket::HashBatch::default();
        for (i, flag) in flags.iter().enumerate().take(CHUNK) {
            let Some(body) = flag.and_then(|f| f.body().ok()).filter(|b| b.enabled) else { continue };
            let rollout = body.rollout > 0.0 && body.rollout < 100.0;
            let variant = body.split_len >= 2 && body.split_error.is_none();
            if !(rollout || variant) {
                continue;
            }
            let Ok(id) = self.bucket_id(body) else { continue };
            let tag = (i as u32) << 1;
            if rollout {
                batch.push(id.as_str(), &body.rollout_suffix, tag, &mut done);
            }
            if variant {
                batch.push(id.as_str(), &body.variant_suffix, tag | 1, &mut done);
            }
        }
        batch.finish(&mut done);
        pre
    }
}
