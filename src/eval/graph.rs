//! The prerequisite graph below a flag, checked as a whole before the flag is evaluated.
//!
//! A cycle, a chain deeper than [`MAX_PREREQUISITE_DEPTH`] or a prerequisite in flagd's
//! format (whose on/off and variant mean something else) makes a flag malformed
//! (docs/flag-format.md). That is a property of the flag set, not of the request: the walk follows
//! every prerequisite reference, whatever the flags' `enabled` switches, rollouts or the
//! user, and does not depend on what an evaluator already memoised. So a flag answers
//! the same error alone, in a batch and in bulk, for every user.

use super::{ErrorCode, EvalError, FlagSource};
use crate::flag::{CompiledFlag, MAX_PREREQUISITE_DEPTH};

/// Checks the prerequisites below `flag` in `source`: `Err` names the cycle or the over-deep
/// chain. Missing prerequisites end a path (they fail the prerequisite, nothing more);
/// malformed ones too (their references are unknown).
pub(super) fn check<'a, S: FlagSource + ?Sized>(flag: &'a CompiledFlag, source: &'a S) -> Result<(), EvalError<'a>> {
    let mut walk = Walk { source, path: vec![flag.key()], heights: Vec::new() };
    walk.height(flag).map(drop)
}

/// One depth-first walk from one flag. Memory is bounded by the flags it reaches.
struct Walk<'a, S: ?Sized> {
    source: &'a S,
    /// The flags from the root to the one being walked.
    path: Vec<&'a str>,
    /// Flags already walked in this walk: key, levels of prerequisites below it, and the
    /// prerequisite on its deepest chain (to name the chain in a message).
    heights: Vec<(&'a str, usize, Option<&'a str>)>,
}

impl<'a, S: FlagSource + ?Sized> Walk<'a, S> {
    /// Levels of prerequisites below `flag` (the last of `path`), or the error.
    fn height(&mut self, flag: &'a CompiledFlag) -> Result<(usize, Option<&'a str>), EvalError<'a>> {
        let mut deepest = (0, None);
        for key in flag.prerequisite_keys() {
            if self.path.contains(&key) {
                return Err(self.broken(key, "prerequisite cycle"));
            }
            let below = match self.heights.iter().find(|h| h.0 == key) {
                Some(&(_, height, _)) => height,
                None => match self.source.flag(key) {
                    None => 0,
                    Some(prerequisite) if prerequisite.flagd().is_some() => {
                        return Err(self
                            .broken(key, "a prerequisite must be a Python-schema flag, and this one is a flagd flag"));
                    }
                    Some(prerequisite) => {
                        self.path.push(key);
                        let (height, via) = self.height(prerequisite)?;
                        self.path.pop();
                        self.heights.push((key, height, via));
                        height
                    }
                },
            };
            // `key` sits at level `path.len()` (the root is level 0).
            if self.path.len() + below > MAX_PREREQUISITE_DEPTH {
                return Err(self.broken(key, "prerequisite chain deeper than 8"));
            }
            if below + 1 > deepest.0 {
                deepest = (below + 1, Some(key));
            }
        }
        Ok(deepest)
    }

    /// The error for the path so far followed by `next` (and, for a chain, the deepest
    /// chain below `next`).
    fn broken(&self, next: &'a str, what: &str) -> EvalError<'a> {
        let mut path = self.path.clone();
        path.push(next);
        let mut below = self.heights.iter().find(|h| h.0 == next).and_then(|h| h.2);
        while let Some(key) = below.filter(|_| path.len() <= MAX_PREREQUISITE_DEPTH + 2) {
            path.push(key);
            below = self.heights.iter().find(|h| h.0 == key).and_then(|h| h.2);
        }
        let mut error = EvalError::new(ErrorCode::ParseError, format!("{what}: {}", path.join(" → ")));
        error.broken_chain = true;
        error
    }
}
