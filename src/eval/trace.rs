//! An observer of evaluations, for `flagctl explain`: it is told each clause verdict and
//! each hash as the evaluator makes them, so an explanation shows the evaluator's own
//! decisions rather than a second implementation of them.
//!
//! It costs nothing when unused: [`Evaluator`](super::Evaluator)'s observer is a type
//! parameter defaulting to [`NoTrace`], whose empty methods are inlined away, so the
//! serving path compiles to what it was without the hook (the `eval` bench checks it).

use crate::flag::Clause;

/// Told what the evaluator decides, as it decides it. Every method does nothing by
/// default; methods take `&self` so the evaluator's own methods stay `&self` (an
/// observer that records uses interior mutability).
pub trait Trace {
    /// `clause` was matched against the context, with this verdict (clauses after the
    /// first that fails in a list are not evaluated, so not reported).
    #[inline(always)]
    fn clause(&self, _clause: &Clause, _matched: bool) {}

    /// `h("{id}{suffix}")` was computed (rollout, serve rollout or variant point; the
    /// suffix says which and for which flag).
    #[inline(always)]
    fn hash(&self, _id: &str, _suffix: &[u8], _h: u32) {}
}

/// The observer of the serving path: observes nothing, costs nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTrace;

impl Trace for NoTrace {}

impl<T: Trace + ?Sized> Trace for &T {
    #[inline(always)]
    fn clause(&self, clause: &Clause, matched: bool) {
        (**self).clause(clause, matched);
    }

    #[inline(always)]
    fn hash(&self, id: &str, suffix: &[u8], h: u32) {
        (**self).hash(id, suffix, h);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use serde_json::{json, Map};

    use super::*;
    use crate::bucket;
    use crate::eval::{EvalInput, Evaluator, NoFlags};
    use crate::flag::CompiledFlag;

    #[derive(Default)]
    struct Seen {
        clauses: RefCell<Vec<(String, bool)>>,
        hashes: RefCell<Vec<(String, Vec<u8>, u32)>>,
    }

    impl Trace for Seen {
        fn clause(&self, clause: &Clause, matched: bool) {
            self.clauses.borrow_mut().push((clause.attribute.to_string(), matched));
        }
        fn hash(&self, id: &str, suffix: &[u8], h: u32) {
            self.hashes.borrow_mut().push((id.to_owned(), suffix.to_vec(), h));
        }
    }

    #[test]
    fn a_trace_sees_each_verdict_and_hash_the_evaluator_makes() {
        let flag = CompiledFlag::from_value(json!({
            "key": "f", "enabled": true, "rollout_percentage": 50,
            "targeting_rules": [{"attribute": "a", "operator": "equals", "value": 1},
                                {"attribute": "b", "operator": "equals", "value": 2},
                                {"attribute": "c", "operator": "equals", "value": 3}]
        }))
        .expect("keyed");
        let context: Map<String, serde_json::Value> = serde_json::from_value(json!({"a": 1, "b": 2, "c": 3})).unwrap();
        let input = EvalInput { user_id: Some("user-123"), context: &context, now: 0.0 };
        let seen = Seen::default();
        let traced = Evaluator::with_trace(input, &NoFlags, &seen).evaluate(&flag);
        let plain = Evaluator::new(input, &NoFlags).evaluate(&flag);
        assert_eq!((traced.enabled, traced.reason), (plain.enabled, plain.reason), "observing changes nothing");
        let verdicts = [("a".to_owned(), true), ("b".to_owned(), true), ("c".to_owned(), true)];
        assert_eq!(*seen.clauses.borrow(), verdicts);
        let h = bucket::hash("user-123", b":f");
        assert_eq!(*seen.hashes.borrow(), [("user-123".to_owned(), b":f".to_vec(), h)]);

        // A failing clause ends the list: the ones after it are not evaluated, not reported.
        let context: Map<String, serde_json::Value> = serde_json::from_value(json!({"a": 0, "b": 2})).unwrap();
        let seen = Seen::default();
        Evaluator::with_trace(EvalInput { context: &context, ..input }, &NoFlags, &seen).evaluate(&flag);
        assert_eq!(*seen.clauses.borrow(), [("a".to_owned(), false)]);
        assert!(seen.hashes.borrow().is_empty());
    }
}
