//! Many flags for one user: their bucket hashes computed together, several MD5s per
//! SIMD instruction ([`crate::bucket::hash_many`]), before the flags are evaluated one by
//! one. A batch is where most of a request's time goes into MD5, and the hashes of
//! different flags are independent.

use super::{BucketId, Evaluation, Evaluator, FlagSource, NoTrace};
use crate::bucket;
use crate::flag::CompiledFlag;

/// Flags whose hashes are computed together: at most two hashes each (rollout and
/// variant), so 32 messages, four full AVX2 vectors or eight NEON ones.
const CHUNK: usize = 16;

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
    /// changes. Every 16 flags, the rollout and variant hashes each enabled flag could
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

    /// The hashes `flags` may need, computed together.
    fn prehash(&self, flags: &[Option<&'a CompiledFlag>]) -> [Prehashed; CHUNK] {
        let mut pre = [Prehashed::default(); CHUNK];
        let ids: [Option<BucketId<'c>>; CHUNK] = std::array::from_fn(|i| {
            let body = flags.get(i).copied().flatten()?.body().ok().filter(|b| b.enabled)?;
            self.bucket_id(body).ok()
        });
        // (flag index, is the variant hash) of each job.
        let mut jobs: [(&str, &[u8]); 2 * CHUNK] = [("", &[]); 2 * CHUNK];
        let mut owners = [(0usize, false); 2 * CHUNK];
        let mut n = 0;
        for (i, (flag, id)) in flags.iter().zip(&ids).enumerate() {
            let (Some(flag), Some(id)) = (flag, id) else { continue };
            let Ok(body) = flag.body() else { continue };
            if body.rollout > 0.0 && body.rollout < 100.0 {
                (jobs[n], owners[n]) = ((id.as_str(), &body.rollout_suffix[..]), (i, false));
                n += 1;
            }
            if body.split_len >= 2 && body.split_error.is_none() {
                (jobs[n], owners[n]) = ((id.as_str(), &body.variant_suffix[..]), (i, true));
                n += 1;
            }
        }
        let mut hashes = [0u32; 2 * CHUNK];
        bucket::hash_many(&jobs[..n], &mut hashes[..n]);
        for ((i, variant), h) in owners.into_iter().zip(hashes).take(n) {
            if variant {
                pre[i].variant = Some(h);
            } else {
                pre[i].rollout = Some(h);
            }
        }
        pre
    }
}
