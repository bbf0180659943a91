//! Compiled clauses: an attribute, an operator with its prepared operand
//! ([`super::operator`]), and `negate`; and how a clause meets a request context.

use serde_json::{Map, Value};

use super::operator::Operator;
use super::ClauseDoc;

/// One compiled clause.
#[derive(Debug)]
pub struct Clause {
    /// Top-level context key, looked up literally.
    pub(crate) attribute: Box<str>,
    /// The attribute is `now` and the operator `before`/`after`: an absent `now` is the
    /// evaluation time (for any other operator it is absent, as in Python).
    pub(crate) is_now: bool,
    /// The operator with its prepared operand.
    pub(crate) operator: Operator,
    /// Invert the operator's result (absent attributes still never match).
    pub(crate) negate: bool,
}

impl Clause {
    /// Checks and compiles one clause of an extension field (`rules`): everything must be
    /// right, or the flag is malformed.
    pub fn compile(doc: &ClauseDoc) -> Result<Self, String> {
        let attribute = doc.attribute.as_deref().ok_or("`attribute` must be a string")?;
        let name = doc.operator.as_deref().ok_or("`operator` must be a string")?;
        let operator = Operator::compile(name, operand(doc))?.ok_or_else(|| format!("unknown operator `{name}`"))?;
        Ok(Clause::new(attribute, operator, doc.negate.unwrap_or(false)))
    }

    /// Compiles one clause of Python's `targeting_rules` as the Python service read it
    /// (SPEC §1.1): a clause without a string `attribute`, or with an operator Python did
    /// not know, never matches, and comes back with the oddity to report. A bad operand
    /// of an extension operator is still an error.
    pub fn compile_python(doc: &ClauseDoc) -> Result<(Self, Option<String>), String> {
        let known = match doc.operator.as_deref() {
            Some(name) => Operator::compile(name, operand(doc))?,
            None => None,
        };
        let (operator, oddity) = match (doc.attribute.as_deref(), known) {
            (Some(attribute), Some(operator)) => {
                return Ok((Clause::new(attribute, operator, doc.negate.unwrap_or(false)), None))
            }
            (None, _) => (Operator::Never, "has no string `attribute`; it never matches".to_owned()),
            (Some(_), None) => match doc.operator.as_deref() {
                Some(name) => (Operator::Never, format!("has an unknown operator `{name}`; it never matches")),
                None => (Operator::Never, "has no string `operator`; it never matches".to_owned()),
            },
        };
        // `negate` must not turn "never" into "always".
        Ok((Clause::new(doc.attribute.as_deref().unwrap_or_default(), operator, false), Some(oddity)))
    }

    /// Whether the clause holds for `context`. A missing (or `null`) attribute never
    /// matches, negated or not, except for `exists`/`not_exists`; an absent `now` is the
    /// evaluation time for `before`/`after`.
    pub(crate) fn matches(&self, context: &Map<String, Value>, now: f64) -> bool {
        let default_now;
        let attribute = match context.get(&*self.attribute) {
            Some(v) if !v.is_null() => Some(v),
            _ if self.is_now => {
                default_now = Value::from(now);
                Some(&default_now)
            }
            _ => None,
        };
        match attribute {
            Some(value) => self.operator.matches(value) != self.negate,
            None => match self.operator {
                Operator::NotExists => !self.negate,
                Operator::Exists => self.negate,
                _ => false,
            },
        }
    }

    fn new(attribute: &str, operator: Operator, negate: bool) -> Self {
        let is_now = attribute == "now" && operator.is_time();
        Clause { is_now, attribute: attribute.into(), operator, negate }
    }
}

/// A clause's operand; absent is `null`.
fn operand(doc: &ClauseDoc) -> Value {
    doc.value.clone().unwrap_or(Value::Null)
}
