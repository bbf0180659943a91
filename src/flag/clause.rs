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
        let negate = match &doc.negate {
            None | Some(Value::Null) => false,
            Some(Value::Bool(negate)) => *negate,
            Some(_) => return Err("`negate` must be a boolean".to_owned()),
        };
        Ok(Clause::new(attribute, operator, negate))
    }

    /// Compiles one clause of Python's `targeting_rules` exactly as the Python service
    /// read it (see docs/flag-format.md, "Reading what the Python service wrote"): only
    /// Python's four operators evaluate; any other operator, an extension operator
    /// included, never matches whatever its operand; a clause without a string
    /// `attribute` never matches; `negate` is ignored. Never an error: Python loaded all of
    /// these. Each thing read this way comes back as an oddity to report.
    pub fn compile_python(doc: &ClauseDoc) -> (Self, Vec<String>) {
        let mut oddities = Vec::new();
        if doc.negate.as_ref().is_some_and(|n| !n.is_null()) {
            oddities
                .push(format!("has `negate`, which Python never read: ignored in targeting_rules; {MOVE_TO_RULES}"));
        }
        let python = doc.operator.as_deref().and_then(|name| python_operator(name, operand(doc)));
        let operator = match (doc.attribute.as_deref(), python, doc.operator.as_deref()) {
            (Some(attribute), Some(operator), _) => return (Clause::new(attribute, operator, false), oddities),
            (None, _, _) => {
                oddities.push("has no string `attribute`; it never matches".to_owned());
                Operator::Never
            }
            (Some(_), None, None) => {
                oddities.push("has no string `operator`; it never matches".to_owned());
                Operator::Never
            }
            (Some(_), None, Some(name)) => {
                let fix = match Operator::compile(name, Value::Null) {
                    Ok(None) => "use `equals`, `in`, `greater_than` or `less_than`",
                    // An extension operator (whatever its operand would be): it works in `rules`.
                    _ => MOVE_TO_RULES,
                };
                oddities.push(format!("{}; {fix}", not_python(name)));
                Operator::Never
            }
        };
        (Clause::new(doc.attribute.as_deref().unwrap_or_default(), operator, false), oddities)
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

/// The fix `flagctl validate` asks for: extension operators and `negate` belong in `rules`.
const MOVE_TO_RULES: &str = "move this clause to `rules`";

/// What an operator name that is not one of Python's four means in `targeting_rules`
/// (`flagctl explain` says the same).
pub fn not_python(name: &str) -> String {
    format!("operator `{name}` is not one Python knew: never matches in targeting_rules")
}

/// One of the Python service's four operators, with its operand; `None` for any other
/// name. They take any operand (Python compared whatever was stored), so this never fails.
fn python_operator(name: &str, value: Value) -> Option<Operator> {
    match name {
        "equals" | "in" | "greater_than" | "less_than" => Operator::compile(name, value).ok().flatten(),
        _ => None,
    }
}

/// A clause's operand; absent is `null`.
fn operand(doc: &ClauseDoc) -> Value {
    doc.value.clone().unwrap_or(Value::Null)
}
