//! flagd's published schema for flag definitions (flagd.dev/schema/v0/flags.json and the
//! targeting schema it refers to), written as checks of our own.
//!
//! The compiler ([`super::logic::compile`]) already refuses what cannot be evaluated; the
//! schema is stricter about shape: every variant of a flag has the same JSON type,
//! metadata values are strings, numbers or booleans, `fractional` weights are
//! non-negative integers (or rules), `starts_with`/`ends_with` compare against a string,
//! `sem_ver` takes one of its eight range operators and full `MAJOR.MINOR.PATCH` literals,
//! `$flagd.` names only `flagKey` and `timestamp`, and each operator gets the number of
//! arguments the schema allows. `flagctl` refuses a flag that breaks any of it, naming
//! the JSON pointer of the offending value; the function serves a flag whose *shape*
//! breaks it as `PARSE_ERROR` ([`check_shape`]) and leaves rules to the compiler,
//! because the flagd-testbed evaluates rules the schema rejects.
//!
//! Two readings are kept deliberately lenient because flagd itself accepts them: a
//! `$ref` may stand wherever a rule may (flagd inlines references before it evaluates),
//! and `targeting: null` means no targeting.

use serde_json::Value;

/// One place where a definition departs from the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer of the offending value, from the document's root.
    pub pointer: String,
    /// What the schema wants there.
    pub message: String,
}

/// The flag-set level of a document: `flags` keys, the set's `metadata` and every
/// `$evaluators` rule (flags are checked one by one with [`check_flag`]).
pub fn check_set(doc: &Value) -> Vec<Violation> {
    let mut out = Checker::default();
    if let Some(flags) = doc.get("flags").and_then(Value::as_object) {
        if flags.contains_key("") {
            out.push("/flags", "a flag key must not be empty".into());
        }
    }
    match doc.get("metadata") {
        None => {}
        Some(metadata) => {
            out.metadata(metadata, "/metadata");
            for field in ["flagSetId", "version"] {
                if metadata.get(field).is_some_and(|v| !v.is_string()) {
                    out.push(&format!("/metadata/{field}"), format!("`{field}` must be a string"));
                }
            }
        }
    }
    match doc.get("$evaluators") {
        None => {}
        Some(Value::Object(evaluators)) => {
            for (name, rule) in evaluators {
                let at = format!("/$evaluators/{}", escape(name));
                if name.is_empty() {
                    out.push("/$evaluators", "an evaluator name must not be empty".into());
                }
                out.targeting(rule, &at);
            }
        }
        Some(_) => out.push("/$evaluators", "`$evaluators` must be an object".into()),
    }
    out.0
}

/// One flag definition, stored under `key` (pointers are `/flags/<key>/...`): its shape
/// and every rule of its targeting. What `flagctl` holds a new flag to.
pub fn check_flag(key: &str, flag: &Value) -> Vec<Violation> {
    check(key, flag, true)
}

/// The shape of one flag definition only (state, variants and their types, default,
/// metadata), not its targeting: what the function holds a flag it reads to. The
/// flagd-testbed serves flags whose rules the schema rejects (partial `sem_ver`
/// versions, negative weights, wrong argument counts) and expects them evaluated, so
/// the read path leaves rules to the compiler.
pub fn check_shape(key: &str, flag: &Value) -> Vec<Violation> {
    check(key, flag, false)
}

fn check(key: &str, flag: &Value, targeting: bool) -> Vec<Violation> {
    let mut out = Checker::default();
    let at = format!("/flags/{}", escape(key));
    let Value::Object(flag) = flag else {
        out.push(&at, "a flag definition must be an object".into());
        return out.0;
    };
    match flag.get("state").and_then(Value::as_str) {
        Some("ENABLED" | "DISABLED") => {}
        _ => out.push(&format!("{at}/state"), "`state` must be \"ENABLED\" or \"DISABLED\"".into()),
    }
    out.variants(flag.get("variants"), &format!("{at}/variants"));
    match flag.get("defaultVariant") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(_) => out.push(&format!("{at}/defaultVariant"), "`defaultVariant` must be a string or null".into()),
    }
    if let Some(metadata) = flag.get("metadata") {
        out.metadata(metadata, &format!("{at}/metadata"));
    }
    match flag.get("targeting") {
        None | Some(Value::Null) => {}
        Some(rule) if targeting => out.targeting(rule, &format!("{at}/targeting")),
        Some(_) => {}
    }
    out.0
}

/// JSON pointer escaping of one reference token.
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// How many arguments an operator takes, as the schema says.
enum Arity {
    /// Exactly this many.
    Exactly(usize),
    /// At least `.0`, at most `.1`.
    Between(usize, usize),
    /// At least this many.
    AtLeast(usize),
    /// One argument, alone or in a one-element array.
    Unary,
}

fn arity(op: &str) -> Option<Arity> {
    Some(match op {
        "==" | "===" | "!=" | "!==" | ">" | ">=" | "%" | "/" | "map" | "filter" | "all" | "none" | "some" | "in" => {
            Arity::Exactly(2)
        }
        "substr" | "<" | "<=" => Arity::Between(2, 3),
        "*" => Arity::AtLeast(2),
        "if" | "or" | "and" | "+" | "-" | "max" | "min" | "merge" | "cat" => Arity::AtLeast(1),
        "!" | "!!" => Arity::Unary,
        "reduce" => Arity::Exactly(3),
        _ => return None,
    })
}

const SEM_VER_OPERATORS: [&str; 8] = ["=", "!=", ">", "<", ">=", "<=", "~", "^"];

#[derive(Default)]
struct Checker(Vec<Violation>);

impl Checker {
    fn push(&mut self, pointer: &str, message: String) {
        self.0.push(Violation { pointer: pointer.into(), message });
    }

    fn variants(&mut self, variants: Option<&Value>, at: &str) {
        let Some(Value::Object(variants)) = variants else {
            return self.push(at, "`variants` must be a non-empty object".into());
        };
        if variants.is_empty() {
            return self.push(at, "`variants` must be a non-empty object".into());
        }
        if variants.contains_key("") {
            self.push(at, "a variant name must not be empty".into());
        }
        let kinds: Vec<&str> = variants.values().map(kind).collect();
        if let Some((name, value)) =
            variants.iter().find(|(_, v)| !matches!(kind(v), "boolean" | "string" | "number" | "object"))
        {
            self.push(
                &format!("{at}/{}", escape(name)),
                format!("a variant must be a boolean, string, number or object, not {}", kind(value)),
            );
        } else if kinds.iter().any(|k| *k != kinds[0]) {
            self.push(at, format!("every variant must have the same type (found {})", distinct(&kinds).join(" and ")));
        }
    }

    fn metadata(&mut self, metadata: &Value, at: &str) {
        let Value::Object(metadata) = metadata else {
            return self.push(at, "`metadata` must be an object".into());
        };
        for (name, value) in metadata {
            if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                self.push(
                    &format!("{at}/{}", escape(name)),
                    "a metadata value must be a string, number or boolean".into(),
                );
            }
        }
    }

    /// A flag's `targeting` or an evaluator: `{}` (no targeting) or one rule.
    fn targeting(&mut self, targeting: &Value, at: &str) {
        match targeting {
            Value::Object(map) if map.is_empty() => {}
            Value::Object(_) => self.rule(targeting, at),
            _ => self.push(at, "targeting must be a JSON Logic rule (an object)".into()),
        }
    }

    /// Where the schema allows a rule, a `$ref` or a plain value.
    fn arg(&mut self, arg: &Value, at: &str) {
        if arg.is_object() {
            self.rule(arg, at);
        }
    }

    /// One JSON Logic rule: an object with exactly one operator.
    fn rule(&mut self, rule: &Value, at: &str) {
        let Value::Object(map) = rule else {
            return self.push(at, "must be a JSON Logic rule (an object)".into());
        };
        let mut ops = map.iter();
        let (Some((op, args)), None) = (ops.next(), ops.next()) else {
            return self.push(at, "a rule has exactly one operator".into());
        };
        let here = format!("{at}/{}", escape(op));
        match op.as_str() {
            "$ref" if args.is_string() => {}
            "$ref" => self.push(&here, "`$ref` must name an evaluator (a string)".into()),
            "var" => self.var(args, &here),
            "missing" => self.strings(args, &here, "`missing` takes an array of strings"),
            "missing_some" => self.missing_some(args, &here),
            "starts_with" | "ends_with" => self.string_compare(op, args, &here),
            "sem_ver" => self.sem_ver(args, &here),
            "fractional" => self.fractional(args, &here),
            _ => match arity(op) {
                Some(arity) => self.operands(op, arity, args, &here),
                None => self.push(&here, format!("unknown operator `{op}`")),
            },
        }
    }

    fn operands(&mut self, op: &str, arity: Arity, args: &Value, at: &str) {
        let items = match (args, &arity) {
            (Value::Array(items), _) => items.as_slice(),
            (single, Arity::Unary) => return self.arg(single, at),
            _ => return self.push(at, format!("`{op}` takes an array of arguments")),
        };
        let fits = match arity {
            Arity::Exactly(n) => items.len() == n,
            Arity::Between(low, high) => (low..=high).contains(&items.len()),
            Arity::AtLeast(n) => items.len() >= n,
            Arity::Unary => items.len() == 1,
        };
        if !fits {
            let wants = match arity {
                Arity::Exactly(n) => format!("{n}"),
                Arity::Between(low, high) => format!("{low} or {high}"),
                Arity::AtLeast(n) => format!("at least {n}"),
                Arity::Unary => "1".into(),
            };
            return self.push(at, format!("`{op}` takes {wants} argument(s), not {}", items.len()));
        }
        for (i, item) in items.iter().enumerate() {
            self.arg(item, &format!("{at}/{i}"));
        }
    }

    fn var(&mut self, args: &Value, at: &str) {
        let name = match args {
            Value::String(name) => name,
            Value::Array(items) => match items.split_first() {
                Some((Value::String(name), rest)) if rest.iter().all(|v| !v.is_array() && !v.is_object()) => name,
                _ => return self.push(at, "`var` takes a name, or [name, default] with a plain default".into()),
            },
            _ => return self.push(at, "`var` takes a name (a string)".into()),
        };
        if let Some(prop) = name.strip_prefix("$flagd.") {
            if !matches!(prop, "flagKey" | "timestamp") {
                self.push(at, "`$flagd.` provides only `$flagd.flagKey` and `$flagd.timestamp`".into());
            }
        }
    }

    fn strings(&mut self, args: &Value, at: &str, message: &str) {
        if !args.as_array().is_some_and(|items| items.iter().all(Value::is_string)) {
            self.push(at, message.into());
        }
    }

    fn missing_some(&mut self, args: &Value, at: &str) {
        match args.as_array().map(Vec::as_slice) {
            Some([Value::Number(_), keys]) => {
                self.strings(keys, &format!("{at}/1"), "`missing_some` takes [count, [names]]")
            }
            _ => self.push(at, "`missing_some` takes [count, [names]]".into()),
        }
    }

    fn string_compare(&mut self, op: &str, args: &Value, at: &str) {
        let Some(items @ [_, _]) = args.as_array().map(Vec::as_slice) else {
            return self.push(at, format!("`{op}` takes 2 arguments: a value and the string to compare with"));
        };
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(_) => {}
                Value::Object(_) => self.rule(item, &format!("{at}/{i}")),
                _ => self.push(&format!("{at}/{i}"), format!("`{op}` compares strings: a string or a rule")),
            }
        }
    }

    fn sem_ver(&mut self, args: &Value, at: &str) {
        let Some([left, operator, right]) = args.as_array().map(Vec::as_slice) else {
            return self.push(at, "`sem_ver` takes 3 arguments: version, operator, version".into());
        };
        if !operator.as_str().is_some_and(|o| SEM_VER_OPERATORS.contains(&o)) {
            self.push(&format!("{at}/1"), format!("`sem_ver` operator must be one of {}", SEM_VER_OPERATORS.join(" ")));
        }
        for (i, side) in [(0, left), (2, right)] {
            let here = format!("{at}/{i}");
            match side {
                Value::String(v) if semver::Version::parse(v).is_ok() => {}
                Value::String(_) => self.push(&here, "not a semantic version (MAJOR.MINOR.PATCH)".into()),
                Value::Object(map) if map.len() == 1 && (map.contains_key("var") || map.contains_key("$ref")) => {
                    self.rule(side, &here)
                }
                _ => self.push(&here, "`sem_ver` compares a version string or a `var`".into()),
            }
        }
    }

    fn fractional(&mut self, args: &Value, at: &str) {
        let Some(items) = args.as_array().filter(|items| !items.is_empty()) else {
            return self.push(
                at,
                "`fractional` takes an array: an optional bucketing rule, then [variant, weight] pairs".into(),
            );
        };
        let buckets = match items.split_first() {
            Some((Value::Array(_), _)) => items.as_slice(),
            Some((first, rest)) => {
                match first {
                    Value::Object(_) => self.rule(first, &format!("{at}/0")),
                    _ => self.push(
                        &format!("{at}/0"),
                        "the bucketing value must be a rule (e.g. a `var`), not a literal".into(),
                    ),
                }
                return self.weights(rest, at, 1);
            }
            None => return,
        };
        self.weights(buckets, at, 0);
    }

    fn weights(&mut self, buckets: &[Value], at: &str, first: usize) {
        for (i, bucket) in buckets.iter().enumerate() {
            let here = format!("{at}/{}", first + i);
            let Some(pair) = bucket.as_array().filter(|pair| (1..=2).contains(&pair.len())) else {
                self.push(&here, "a bucket is [variant] or [variant, weight]".into());
                continue;
            };
            self.arg(&pair[0], &format!("{here}/0"));
            match pair.get(1) {
                None => {}
                Some(Value::Number(n))
                    if n.as_u64().is_some() || n.as_f64().is_some_and(|f| f >= 0.0 && f.fract() == 0.0) => {}
                Some(weight @ Value::Object(_)) => self.rule(weight, &format!("{here}/1")),
                Some(_) => self.push(&format!("{here}/1"), "a weight must be a non-negative integer or a rule".into()),
            }
        }
    }
}

/// The JSON type of `value`, in the schema's words.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn distinct<'k>(kinds: &[&'k str]) -> Vec<&'k str> {
    let mut seen: Vec<&str> = Vec::new();
    for k in kinds {
        if !seen.contains(k) {
            seen.push(k);
        }
    }
    seen
}

#[cfg(test)]
mod tests;
