//! The decision path of one flagd flag for one context, in words (`flagctl explain`).
//!
//! The evaluator decides; this only narrates. It follows the `if` chain at the top of the
//! targeting (each condition with what it evaluated to), and for a `fractional` that
//! decides it names the bucketing in force, the bytes hashed, the hash, the bucket and
//! each entry's range. Sub-expressions are evaluated with the same compiled nodes, so
//! nothing here re-implements an operator.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::Value;

use super::fractional::{self, Bucketing};
use super::logic::eval::{self, Env};
use super::logic::{Lazy, Node, Op};
use super::resolve::{evaluate, FlagdInput};
use super::FlagdFlag;

/// The narration of `flag` for `input`, one step a line, ending with the result.
pub fn explain(flag: &FlagdFlag, input: &FlagdInput<'_>) -> String {
    let mut out = String::new();
    let bucketing = match input.bucketing {
        Bucketing::V2 => "v2 (murmur3 over the raw bucketing string)",
        Bucketing::V3 => "v3 (murmur3 over the CBOR of the bucketing value)",
    };
    let _ = writeln!(out, "flagd flag {}; fractional bucketing {bucketing}", flag.key());
    if let Ok(body) = &flag.body {
        match (&body.targeting, body.enabled) {
            (_, false) => out.push_str("state DISABLED: the caller's default\n"),
            (None, true) => out.push_str("no targeting: the default variant\n"),
            (Some(node), true) => {
                let env = input.env(&flag.key);
                narrate(node, &env, 0, &mut out);
            }
        }
    }
    let answer = evaluate(flag, input);
    let value = answer.value.map_or("none (the caller's default)".to_owned(), Value::to_string);
    let variant = answer.variant.map_or("none".to_owned(), |v| format!("{v:?}"));
    let _ = write!(out, "result: reason={}, variant={variant}, value={value}", answer.reason.as_str());
    match answer.error {
        Some((code, message)) => drop(writeln!(out, ", error {}: {message}", code.as_str())),
        None => out.push('\n'),
    }
    out
}

fn shown(value: Result<Cow<'_, Value>, eval::Halt>) -> String {
    match value {
        Ok(value) => value.to_string(),
        Err(eval::Halt) => "stopped at an evaluation bound".to_owned(),
    }
}

fn narrate(node: &Node, env: &Env<'_>, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth + 1);
    match node {
        Node::Lazy(Lazy::If, args) => {
            let mut pairs = args.chunks_exact(2);
            for (i, pair) in pairs.by_ref().enumerate() {
                let test = eval::evaluate(&pair[0], env);
                let taken = test.as_ref().is_ok_and(|v| super::logic::truthy(v));
                let _ = writeln!(
                    out,
                    "{pad}if #{}: condition is {} -> {}",
                    i + 1,
                    shown(test),
                    if taken { "taken" } else { "not taken" }
                );
                if taken {
                    return narrate(&pair[1], env, depth + 1, out);
                }
            }
            match pairs.remainder() {
                [otherwise] => {
                    let _ = writeln!(out, "{pad}else:");
                    narrate(otherwise, env, depth + 1, out);
                }
                _ => drop(writeln!(out, "{pad}no branch taken: null")),
            }
        }
        Node::Op(Op::Fractional, args) => {
            let values: Result<Vec<_>, _> = args.iter().map(|a| eval::evaluate(a, env)).collect();
            match values {
                Ok(values) => fractional::describe(&values, env, &pad, out),
                Err(eval::Halt) => drop(writeln!(out, "{pad}fractional: stopped at an evaluation bound")),
            }
        }
        other => {
            let _ = writeln!(out, "{pad}evaluates to {}", shown(eval::evaluate(other, env)));
        }
    }
}
