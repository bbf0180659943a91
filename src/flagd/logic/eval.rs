//! Evaluation of a compiled [`Node`] tree against one request's context.
//!
//! Values are `Cow`s: literals and context lookups are borrowed, only computed values
//! are owned, so a rule like `{"==": [{"var": "email"}, "a@b.c"]}` allocates nothing.
//! Every evaluation is bounded: at most [`MAX_STEPS`] nodes visited (array operators
//! multiply work by the context's array lengths), strings built by `cat`/`substr` at most
//! [`MAX_BUILT_BYTES`], arrays built by `merge`/`map`/`filter` at most [`MAX_BUILT_ITEMS`].
//! Crossing a bound stops the evaluation with [`Halt`]; nothing panics.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::coerce::{compare, loose_eq, number_value, strict_eq, to_number, to_text, truthy};
use super::{Each, Lazy, Node, Op, Path, Var};
use crate::flagd::fractional::{self, Bucketing};
use crate::flagd::semver;

/// Most nodes one evaluation may visit.
pub const MAX_STEPS: usize = 100_000;
/// Longest string one operator may build.
pub const MAX_BUILT_BYTES: usize = 64 * 1024;
/// Longest array one operator may build.
pub const MAX_BUILT_ITEMS: usize = 10_000;

static NULL: Value = Value::Null;

/// What a targeting rule sees besides the caller's context: flagd's `$flagd`
/// properties, the targeting key and the bucketing in force.
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    /// The caller's evaluation context.
    pub context: &'a Map<String, Value>,
    /// `$flagd.flagKey`.
    pub flag_key: &'a str,
    /// `$flagd.timestamp`, epoch seconds.
    pub timestamp: i64,
    /// `targetingKey`, when the context itself has none under that name.
    pub targeting_key: Option<&'a str>,
    /// Which `fractional` bucketing answers.
    pub bucketing: Bucketing,
}

/// An evaluation stopped at one of its bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Halt;

type Out<'a> = Result<Cow<'a, Value>, Halt>;

/// Evaluates `node` in `env`.
pub fn evaluate<'a>(node: &'a Node, env: &Env<'a>) -> Out<'a> {
    Machine { env, steps: 0 }.eval(node, None)
}

struct Machine<'e, 'a> {
    env: &'e Env<'a>,
    steps: usize,
}

impl<'a> Machine<'_, 'a> {
    fn eval(&mut self, node: &'a Node, item: Option<&Value>) -> Out<'a> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(Halt);
        }
        match node {
            Node::Literal(value) => Ok(Cow::Borrowed(value)),
            Node::Array(nodes) => {
                let items = nodes.iter().map(|n| self.eval(n, item).map(Cow::into_owned)).collect::<Result<_, _>>()?;
                Ok(Cow::Owned(Value::Array(items)))
            }
            Node::Var(var) => self.var(var, item),
            Node::Lazy(lazy, args) => self.lazy(*lazy, args, item),
            Node::Each(each, args) => self.each(*each, args, item),
            Node::Op(op, args) => {
                let values = args.iter().map(|n| self.eval(n, item)).collect::<Result<Vec<_>, _>>()?;
                self.op(*op, &values)
            }
        }
    }

    fn var(&mut self, var: &'a Var, item: Option<&Value>) -> Out<'a> {
        let found = match &var.path {
            Path::Whole => Some(match item {
                Some(value) => Cow::Owned(value.clone()),
                None => Cow::Owned(Value::Object(self.env.context.clone())),
            }),
            Path::Segments(segments) => self.lookup(segments, item),
            Path::Dynamic(node) => {
                let path = self.eval(node, item)?;
                let mut text = String::new();
                to_text(&path, &mut text);
                let segments: Vec<Box<str>> = text.split('.').map(Box::from).collect();
                self.lookup(&segments, item).map(|v| Cow::Owned(v.into_owned()))
            }
        };
        match (found, &var.default) {
            (Some(value), _) if !value.is_null() => Ok(value),
            (_, Some(default)) => self.eval(default, item),
            _ => Ok(Cow::Borrowed(&NULL)),
        }
    }

    /// A dotted lookup: in the array element when inside `map` and friends, else in
    /// the context, where `$flagd.*` and a missing `targetingKey` come from [`Env`].
    fn lookup(&self, segments: &[Box<str>], item: Option<&Value>) -> Option<Cow<'a, Value>> {
        let (first, rest) = segments.split_first()?;
        if let Some(item) = item {
            return walk(item, segments).map(|v| Cow::Owned(v.clone()));
        }
        if &**first == "$flagd" {
            return self.flagd_property(rest);
        }
        match self.env.context.get(&**first) {
            Some(value) => walk(value, rest).map(Cow::Borrowed),
            None if &**first == "targetingKey" && rest.is_empty() => {
                self.env.targeting_key.map(|k| Cow::Owned(Value::String(k.to_owned())))
            }
            None => None,
        }
    }

    fn flagd_property(&self, rest: &[Box<str>]) -> Option<Cow<'a, Value>> {
        let key = || Value::String(self.env.flag_key.to_owned());
        let timestamp = || Value::from(self.env.timestamp);
        match rest {
            [] => {
                let mut map = Map::new();
                map.insert("flagKey".into(), key());
                map.insert("timestamp".into(), timestamp());
                Some(Cow::Owned(Value::Object(map)))
            }
            [one] if &**one == "flagKey" => Some(Cow::Owned(key())),
            [one] if &**one == "timestamp" => Some(Cow::Owned(timestamp())),
            _ => None,
        }
    }

    fn lazy(&mut self, lazy: Lazy, args: &'a [Node], item: Option<&Value>) -> Out<'a> {
        match lazy {
            Lazy::If => {
                let mut pairs = args.chunks_exact(2);
                for pair in pairs.by_ref() {
                    let test = self.eval(&pair[0], item)?;
                    if truthy(&test) {
                        return self.eval(&pair[1], item);
                    }
                }
                match pairs.remainder() {
                    [otherwise] => self.eval(otherwise, item),
                    _ => Ok(Cow::Borrowed(&NULL)),
                }
            }
            Lazy::And | Lazy::Or => {
                let mut last = Cow::Borrowed(&NULL);
                for arg in args {
                    last = self.eval(arg, item)?;
                    if truthy(&last) == (lazy == Lazy::Or) {
                        break;
                    }
                }
                Ok(last)
            }
        }
    }

    fn each(&mut self, each: Each, args: &'a [Node], item: Option<&Value>) -> Out<'a> {
        let source = self.eval(&args[0], item)?;
        let elements: &[Value] = match &*source {
            Value::Array(items) => items,
            _ => &[],
        };
        if each == Each::Reduce {
            let mut acc = match args.get(2) {
                Some(initial) => self.eval(initial, item)?.into_owned(),
                None => Value::Null,
            };
            for element in elements {
                let mut scope = Map::new();
                scope.insert("current".into(), element.clone());
                scope.insert("accumulator".into(), acc);
                acc = self.eval(&args[1], Some(&Value::Object(scope)))?.into_owned();
            }
            return Ok(Cow::Owned(acc));
        }
        let mut kept = Vec::new();
        for element in elements {
            let result = self.eval(&args[1], Some(element))?;
            match each {
                Each::Map => kept.push(result.into_owned()),
                Each::Filter if truthy(&result) => kept.push(element.clone()),
                Each::All if !truthy(&result) => return Ok(Cow::Owned(Value::Bool(false))),
                Each::Some if truthy(&result) => return Ok(Cow::Owned(Value::Bool(true))),
                Each::None if truthy(&result) => return Ok(Cow::Owned(Value::Bool(false))),
                _ => {}
            }
            if kept.len() > MAX_BUILT_ITEMS {
                return Err(Halt);
            }
        }
        Ok(Cow::Owned(match each {
            Each::All => Value::Bool(!elements.is_empty()),
            Each::Some => Value::Bool(false),
            Each::None => Value::Bool(true),
            _ => Value::Array(kept),
        }))
    }

    fn op(&mut self, op: Op, args: &[Cow<'a, Value>]) -> Out<'a> {
        let arg = |i: usize| args.get(i).map_or(&NULL, |v| &**v);
        let bool = |b: bool| Ok(Cow::Owned(Value::Bool(b)));
        match op {
            Op::Eq => bool(loose_eq(arg(0), arg(1))),
            Op::NotEq => bool(!loose_eq(arg(0), arg(1))),
            Op::StrictEq => bool(strict_eq(arg(0), arg(1))),
            Op::StrictNotEq => bool(!strict_eq(arg(0), arg(1))),
            Op::Not => bool(!truthy(first_or_list(args))),
            Op::Truthy => bool(truthy(first_or_list(args))),
            Op::Lt | Op::Le | Op::Gt | Op::Ge => bool(ordered(op, args)),
            Op::Max | Op::Min | Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod => Ok(Cow::Owned(arithmetic(op, args))),
            Op::Cat => cat(args),
            Op::Substr => substr(arg(0), arg(1), args.get(2).map(|v| &**v)),
            Op::In => bool(contains(arg(0), arg(1))),
            Op::Merge => merge(args),
            Op::Missing => Ok(Cow::Owned(Value::Array(self.missing(args)))),
            Op::MissingSome => self.missing_some(arg(0), arg(1)),
            Op::Fractional => Ok(fractional::evaluate(args, self.env)),
            Op::SemVer => Ok(Cow::Owned(semver::evaluate(args))),
            Op::StartsWith | Op::EndsWith => Ok(Cow::Owned(affix(op, args))),
        }
    }

    /// `missing`: the keys (one array, or spread as arguments) that are absent or `""`.
    fn missing(&self, args: &[Cow<'a, Value>]) -> Vec<Value> {
        let keys: Vec<&Value> = match args.first().map(|v| &**v) {
            Some(Value::Array(keys)) => keys.iter().collect(),
            _ => args.iter().map(|v| &**v).collect(),
        };
        let mut absent = Vec::new();
        for key in keys {
            let mut text = String::new();
            to_text(key, &mut text);
            let segments: Vec<Box<str>> = text.split('.').map(Box::from).collect();
            let found = self.lookup(&segments, None);
            if found.as_deref().is_none_or(|v| v.is_null() || v.as_str() == Some("")) {
                absent.push(key.clone());
            }
        }
        absent
    }

    /// `missing_some`: `[]` when at least `need` of `keys` are present, else the absent.
    fn missing_some(&self, need: &Value, keys: &Value) -> Out<'a> {
        let total = keys.as_array().map_or(0, Vec::len);
        let absent = self.missing(&[Cow::Owned(keys.clone())]);
        let need = to_number(need).unwrap_or(0.0);
        let found = total.saturating_sub(absent.len()) as f64;
        Ok(Cow::Owned(Value::Array(if found >= need { Vec::new() } else { absent })))
    }
}

fn walk<'v>(mut value: &'v Value, segments: &[Box<str>]) -> Option<&'v Value> {
    for segment in segments {
        value = match value {
            Value::Object(map) => map.get(&**segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// `!` and `!!` take one argument, written bare or in a list.
fn first_or_list<'v>(args: &'v [Cow<'_, Value>]) -> &'v Value {
    args.first().map_or(&NULL, |v| &**v)
}

fn ordered(op: Op, args: &[Cow<'_, Value>]) -> bool {
    let holds = |a: &Value, b: &Value| {
        compare(a, b).is_some_and(|o| match op {
            Op::Lt => o.is_lt(),
            Op::Le => o.is_le(),
            Op::Gt => o.is_gt(),
            _ => o.is_ge(),
        })
    };
    match args {
        [a, b] => holds(a, b),
        // `{"<": [a, b, c]}`: between, for `<` and `<=` as JSON Logic defines it.
        [a, b, c] if matches!(op, Op::Lt | Op::Le) => holds(a, b) && holds(b, c),
        _ => false,
    }
}

fn arithmetic(op: Op, args: &[Cow<'_, Value>]) -> Value {
    let numbers: Option<Vec<f64>> = args.iter().map(|v| to_number(v)).collect();
    let Some(n) = numbers else { return Value::Null };
    let result = match (op, n.as_slice()) {
        (Op::Max, []) | (Op::Min, []) => return Value::Null,
        (Op::Max, _) => n.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        (Op::Min, _) => n.iter().copied().fold(f64::INFINITY, f64::min),
        (Op::Add, _) => n.iter().sum(),
        (Op::Mul, _) => n.iter().product(),
        (Op::Sub, [a]) => -a,
        (Op::Sub, [a, b]) => a - b,
        (Op::Div, [a, b]) => a / b,
        (Op::Mod, [a, b]) => a % b,
        _ => return Value::Null,
    };
    number_value(result)
}

fn cat<'a>(args: &[Cow<'a, Value>]) -> Out<'a> {
    let mut text = String::new();
    for arg in args {
        to_text(arg, &mut text);
        if text.len() > MAX_BUILT_BYTES {
            return Err(Halt);
        }
    }
    Ok(Cow::Owned(Value::String(text)))
}

fn substr<'a>(text: &Value, start: &Value, length: Option<&Value>) -> Out<'a> {
    let mut s = String::new();
    to_text(text, &mut s);
    if s.len() > MAX_BUILT_BYTES {
        return Err(Halt);
    }
    let chars: Vec<char> = s.chars().collect();
    let len = chars.len() as i64;
    let clamp = |i: i64| i.clamp(0, len) as usize;
    let start = to_number(start).unwrap_or(0.0) as i64;
    let from = clamp(if start < 0 { len + start } else { start });
    let to = match length.and_then(to_number) {
        Some(l) if l < 0.0 => clamp(len + l as i64),
        Some(l) => clamp((from as i64).saturating_add(l as i64)),
        None => chars.len(),
    };
    Ok(Cow::Owned(Value::String(chars[from..to.max(from)].iter().collect())))
}

fn contains(needle: &Value, haystack: &Value) -> bool {
    match haystack {
        Value::String(h) => {
            let mut n = String::new();
            to_text(needle, &mut n);
            h.contains(n.as_str())
        }
        Value::Array(items) => items.iter().any(|i| strict_eq(i, needle)),
        _ => false,
    }
}

fn merge<'a>(args: &[Cow<'a, Value>]) -> Out<'a> {
    let mut out = Vec::new();
    for arg in args {
        match &**arg {
            Value::Array(items) => out.extend(items.iter().cloned()),
            other => out.push(other.clone()),
        }
        if out.len() > MAX_BUILT_ITEMS {
            return Err(Halt);
        }
    }
    Ok(Cow::Owned(Value::Array(out)))
}

/// flagd's `starts_with` / `ends_with`: two strings, else `null` (not `false`), so a
/// bad rule falls back to the default variant instead of naming a variant `"false"`.
fn affix(op: Op, args: &[Cow<'_, Value>]) -> Value {
    let [text, affix] = args else { return Value::Null };
    let (Value::String(text), Value::String(affix)) = (&**text, &**affix) else {
        return Value::Null;
    };
    Value::Bool(if op == Op::StartsWith { text.starts_with(affix.as_str()) } else { text.ends_with(affix.as_str()) })
}
