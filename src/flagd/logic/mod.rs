//! JSON Logic, compiled once per flag version into a tree of [`Node`]s.
//!
//! Compilation resolves every operator name, splits every `var` path and inlines every
//! `$ref` to a shared evaluator, so evaluation dispatches on an enum and never looks at
//! JSON text. Both phases are bounded: compilation by [`MAX_DEPTH`] and [`MAX_NODES`]
//! (a `$ref` counts its expansion, so nested references cannot multiply a flag), and
//! evaluation by the step and size budget of `logic/eval.rs`.

mod coerce;
pub(crate) mod eval;

pub(crate) use coerce::{to_text, truthy};

use serde_json::{Map, Value};

/// Deepest nesting of operators a targeting rule may have (after `$ref` expansion).
pub const MAX_DEPTH: usize = 64;
/// Most operator and literal nodes one targeting rule may compile to.
pub const MAX_NODES: usize = 10_000;
/// Longest chain of `$ref`s through `$evaluators`; longer is treated as a cycle.
pub const MAX_REF_DEPTH: usize = 16;

/// One compiled JSON Logic expression.
#[derive(Debug, Clone)]
pub enum Node {
    /// A value with no operator in it (returned as is, never copied when read).
    Literal(Value),
    /// An array whose elements are expressions, evaluated into an array.
    Array(Box<[Node]>),
    /// `var`: a context lookup, with an optional default.
    Var(Box<Var>),
    /// Operators whose arguments are all evaluated first.
    Op(Op, Box<[Node]>),
    /// Operators that decide which arguments to evaluate (`if`, `and`, `or`).
    Lazy(Lazy, Box<[Node]>),
    /// Operators that run an expression over each element of an array.
    Each(Each, Box<[Node]>),
}

/// A `var` lookup.
#[derive(Debug, Clone)]
pub struct Var {
    /// Where to look.
    pub path: Path,
    /// Returned when the path finds nothing (or `null`).
    pub default: Option<Node>,
}

/// A `var` path: dotted segments known at compile time, or computed per evaluation.
#[derive(Debug, Clone)]
pub enum Path {
    /// `""`: the whole data (the element, inside `map` and friends).
    Whole,
    /// Pre-split segments.
    Segments(Box<[Box<str>]>),
    /// An expression whose result is the path.
    Dynamic(Node),
}

/// Eager operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Op {
    Eq,
    StrictEq,
    NotEq,
    StrictNotEq,
    Not,
    Truthy,
    Lt,
    Le,
    Gt,
    Ge,
    Max,
    Min,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Cat,
    Substr,
    In,
    Merge,
    Missing,
    MissingSome,
    /// flagd: deterministic bucketing.
    Fractional,
    /// flagd: semantic version comparison.
    SemVer,
    /// flagd: string prefix.
    StartsWith,
    /// flagd: string suffix.
    EndsWith,
}

/// Short-circuiting operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Lazy {
    If,
    And,
    Or,
}

/// Array operators: the first argument is the array, the second runs per element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Each {
    Map,
    Filter,
    Reduce,
    All,
    Some,
    None,
}

/// Why targeting did not compile; the flag answers `PARSE_ERROR` with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// An object with one key that names no operator.
    #[error("unknown operator `{0}`")]
    UnknownOperator(String),
    /// An operator given the wrong kind of arguments.
    #[error("operator `{0}`: {1}")]
    BadArguments(&'static str, &'static str),
    /// A `$ref` to an evaluator the document does not define.
    #[error("`$ref` to undefined evaluator `{0}`")]
    UnknownRef(String),
    /// Nested deeper than [`MAX_DEPTH`] or `$ref`s deeper than [`MAX_REF_DEPTH`].
    #[error("targeting nested too deeply")]
    TooDeep,
    /// More than [`MAX_NODES`] nodes.
    #[error("targeting too large")]
    TooLarge,
}

/// Compiles `logic`, resolving `{"$ref": name}` against `evaluators`.
pub fn compile(logic: &Value, evaluators: &Map<String, Value>) -> Result<Node, CompileError> {
    let mut compiler = Compiler { evaluators, nodes: 0 };
    compiler.node(logic, 0, 0)
}

struct Compiler<'e> {
    evaluators: &'e Map<String, Value>,
    nodes: usize,
}

impl Compiler<'_> {
    fn node(&mut self, logic: &Value, depth: usize, refs: usize) -> Result<Node, CompileError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(CompileError::TooLarge);
        }
        if depth > MAX_DEPTH {
            return Err(CompileError::TooDeep);
        }
        match logic {
            Value::Array(items) => {
                let nodes = self.list(items, depth, refs)?;
                if nodes.iter().all(|n| matches!(n, Node::Literal(_))) {
                    return Ok(Node::Literal(logic.clone()));
                }
                Ok(Node::Array(nodes))
            }
            Value::Object(map) if map.len() == 1 => {
                let Some((name, args)) = map.iter().next() else {
                    return Ok(Node::Literal(logic.clone()));
                };
                self.operator(name, args, depth, refs)
            }
            other => Ok(Node::Literal(other.clone())),
        }
    }

    fn list(&mut self, items: &[Value], depth: usize, refs: usize) -> Result<Box<[Node]>, CompileError> {
        items.iter().map(|item| self.node(item, depth + 1, refs)).collect()
    }

    /// Arguments: an array is the argument list; anything else is one argument.
    fn args(&mut self, args: &Value, depth: usize, refs: usize) -> Result<Box<[Node]>, CompileError> {
        match args {
            Value::Array(items) => self.list(items, depth, refs),
            one => Ok(Box::new([self.node(one, depth + 1, refs)?])),
        }
    }

    fn operator(&mut self, name: &str, args: &Value, depth: usize, refs: usize) -> Result<Node, CompileError> {
        if name == "$ref" {
            return self.reference(args, depth, refs);
        }
        if name == "var" {
            return self.var(args, depth, refs);
        }
        if let Some(lazy) = lazy_op(name) {
            return Ok(Node::Lazy(lazy, self.args(args, depth, refs)?));
        }
        if let Some(each) = each_op(name) {
            let nodes = self.args(args, depth, refs)?;
            if nodes.len() < 2 {
                return Err(CompileError::BadArguments(each_name(each), "too few arguments"));
            }
            return Ok(Node::Each(each, nodes));
        }
        match eager_op(name) {
            Some(op) => Ok(Node::Op(op, self.args(args, depth, refs)?)),
            None => Err(CompileError::UnknownOperator(name.chars().take(64).collect())),
        }
    }

    fn reference(&mut self, name: &Value, depth: usize, refs: usize) -> Result<Node, CompileError> {
        let Value::String(name) = name else {
            return Err(CompileError::BadArguments("$ref", "the name must be a string"));
        };
        if refs >= MAX_REF_DEPTH {
            return Err(CompileError::TooDeep);
        }
        let evaluators = self.evaluators;
        match evaluators.get(name.as_str()) {
            Some(logic) => self.node(logic, depth, refs + 1),
            None => Err(CompileError::UnknownRef(name.chars().take(64).collect())),
        }
    }

    fn var(&mut self, args: &Value, depth: usize, refs: usize) -> Result<Node, CompileError> {
        let (path, default) = match args {
            Value::Array(items) => (items.first().unwrap_or(&Value::Null), items.get(1)),
            one => (one, None),
        };
        let path = match path {
            Value::String(s) if s.is_empty() => Path::Whole,
            Value::Null => Path::Whole,
            Value::String(s) => Path::Segments(s.split('.').map(Box::from).collect()),
            Value::Number(n) => Path::Segments(Box::new([n.to_string().into()])),
            other => Path::Dynamic(self.node(other, depth + 1, refs)?),
        };
        let default = default.map(|d| self.node(d, depth + 1, refs)).transpose()?;
        Ok(Node::Var(Box::new(Var { path, default })))
    }
}

fn lazy_op(name: &str) -> Option<Lazy> {
    Some(match name {
        "if" | "?:" => Lazy::If,
        "and" => Lazy::And,
        "or" => Lazy::Or,
        _ => return None,
    })
}

fn each_op(name: &str) -> Option<Each> {
    Some(match name {
        "map" => Each::Map,
        "filter" => Each::Filter,
        "reduce" => Each::Reduce,
        "all" => Each::All,
        "some" => Each::Some,
        "none" => Each::None,
        _ => return None,
    })
}

fn each_name(each: Each) -> &'static str {
    match each {
        Each::Map => "map",
        Each::Filter => "filter",
        Each::Reduce => "reduce",
        Each::All => "all",
        Each::Some => "some",
        Each::None => "none",
    }
}

fn eager_op(name: &str) -> Option<Op> {
    Some(match name {
        "==" => Op::Eq,
        "===" => Op::StrictEq,
        "!=" => Op::NotEq,
        "!==" => Op::StrictNotEq,
        "!" => Op::Not,
        "!!" => Op::Truthy,
        "<" => Op::Lt,
        "<=" => Op::Le,
        ">" => Op::Gt,
        ">=" => Op::Ge,
        "max" => Op::Max,
        "min" => Op::Min,
        "+" => Op::Add,
        "-" => Op::Sub,
        "*" => Op::Mul,
        "/" => Op::Div,
        "%" => Op::Mod,
        "cat" => Op::Cat,
        "substr" => Op::Substr,
        "in" => Op::In,
        "merge" => Op::Merge,
        "missing" => Op::Missing,
        "missing_some" => Op::MissingSome,
        "fractional" => Op::Fractional,
        "sem_ver" => Op::SemVer,
        "starts_with" => Op::StartsWith,
        "ends_with" => Op::EndsWith,
        _ => return None,
    })
}
