//! Validation and compilation of a [`FlagDoc`] into the form evaluation reads.

use serde_json::Value;

use super::clause::Clause;
use super::variant::{compile_variants, Variant};
use super::{ClauseDoc, FlagDoc, KeyProblem, ServeDoc, MAX_KEY_BYTES};
use crate::bucket;
use crate::flagd::FlagdFlag;

/// A flag ready to evaluate: identity plus either a compiled body or the reason the
/// document is malformed.
///
/// Malformed flags are kept (not dropped) so that asking for one answers
/// `PARSE_ERROR` with the problem, instead of a misleading `FLAG_NOT_FOUND`.
#[derive(Debug)]
pub struct CompiledFlag {
    key: Box<str>,
    flag_id: Box<str>,
    version: u64,
    body: Result<FlagBody, Box<str>>,
    /// What was read leniently, as the Python service read it: reported once
    /// per flag version by whoever loads it, and refused by `flagctl validate`.
    oddities: Box<[Box<str>]>,
    /// A flag in flagd's format instead: the one seam between the two formats, so both
    /// travel the same store → cache → app path and the app picks the evaluator.
    flagd: Option<Box<FlagdFlag>>,
}

/// The evaluable part of a well-formed flag. Every string the evaluator hashes or
/// compares is prepared here, so evaluation neither parses nor formats.
#[derive(Debug)]
pub struct FlagBody {
    /// Master switch.
    pub(crate) enabled: bool,
    /// Rollout percentage, 0–100.
    pub(crate) rollout: f64,
    /// Python `targeting_rules` (AND); empty means none.
    pub(crate) targeting_rules: Box<[Clause]>,
    /// Variants with their cumulative allocation precomputed in list order; the first
    /// `split_len` are the document's, and one more may follow: a `default_variant` that
    /// names none of them, served as Python served it.
    pub(crate) variants: Box<[Variant]>,
    /// How many of `variants` the split walks (the document's own).
    pub(crate) split_len: usize,
    /// Index of `default_variant` in `variants` (only meaningful when there are variants).
    pub(crate) default_variant: Option<usize>,
    /// Allocations that do not sum to 1 (±0.01): Python's error, raised only for users
    /// who reach the split, with Python's message.
    pub(crate) split_error: Option<Box<str>>,
    /// Flags that must evaluate a given way first.
    pub(crate) prerequisites: Box<[Prerequisite]>,
    /// Outcomes of the `targets` entries, in order.
    pub(crate) targets: Box<[Serve]>,
    /// User id → index of the first `targets` entry listing it.
    pub(crate) target_index: foldhash::HashMap<Box<str>, usize>,
    /// Ordered rules.
    pub(crate) rules: Box<[Rule]>,
    /// Context attribute hashed instead of the user id.
    pub(crate) bucket_by: Option<Box<str>>,
    /// `":{key}"`, hashed after the id for the rollout bucket.
    pub(crate) rollout_suffix: Box<[u8]>,
    /// `":{key}_variant"`, hashed after the id for the variant point.
    pub(crate) variant_suffix: Box<[u8]>,
}

/// A prerequisite: the flag `key` must evaluate to `enabled` (and `variant`, if set).
#[derive(Debug)]
pub struct Prerequisite {
    /// The prerequisite flag.
    pub(crate) key: Box<str>,
    /// Required `enabled`.
    pub(crate) enabled: bool,
    /// Required variant.
    pub(crate) variant: Option<Box<str>>,
}

/// What a target or rule serves.
#[derive(Debug)]
pub struct Serve {
    /// `target` for targets, the rule id for rules.
    pub(crate) id: Box<str>,
    /// A target, or the rule at an index of [`FlagBody::rules`].
    pub(crate) decided_by: DecidedBy,
    /// `false` serves off.
    pub(crate) enabled: bool,
    /// Index of the variant to serve.
    pub(crate) variant: Option<usize>,
    /// Rollout within the matched users, with its hash suffix `":{key}:{id}"`.
    pub(crate) rollout: Option<(f64, Box<[u8]>)>,
}

/// What decided an evaluation: an entry of `targets`, or the rule at an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    /// An entry of `targets` listed the user.
    Target,
    /// The `rules` entry at this index matched.
    Rule(usize),
}

/// An ordered rule.
#[derive(Debug)]
pub struct Rule {
    /// All must match.
    pub(crate) clauses: Box<[Clause]>,
    /// The outcome, whose `id` is the rule id.
    pub(crate) serve: Serve,
}

impl CompiledFlag {
    /// Compiles one raw document. Fails only when the item has no usable string `key`
    /// (it could never be asked for); every other problem yields a malformed flag.
    pub fn from_value(value: Value) -> Result<Self, String> {
        let key = match value.get("key") {
            Some(Value::String(key)) => key.clone(),
            Some(_) => return Err("`key` is not a string".into()),
            None => return Err("missing `key`".into()),
        };
        // `format: "flagd"` marks a stored flagd flag; any other `format` is an unknown
        // field of a Python-schema item, ignored as the Python service ignored it.
        if value.get("format").and_then(Value::as_str) == Some(crate::flagd::stored::FORMAT) {
            let version = value.get("version").and_then(Value::as_f64).and_then(|v| whole_number(v).ok());
            let flag = Self::from_flagd(crate::flagd::stored::from_item(&key, &value));
            return Ok(CompiledFlag { version: version.unwrap_or(0), ..flag });
        }
        match serde_path_to_error::deserialize::<_, FlagDoc>(&value) {
            Ok(doc) => Ok(Self::from_doc(doc)),
            Err(err) => {
                let flag_id = match value.get("flag_id") {
                    Some(Value::String(id)) => id.clone(),
                    _ => key.clone(),
                };
                let version =
                    value.get("version").and_then(Value::as_f64).and_then(|v| whole_number(v).ok()).unwrap_or(0);
                let message = format!("invalid flag document at `{}`: {}", err.path(), err.inner());
                Ok(Self::malformed(&key, &flag_id, version, message))
            }
        }
    }

    /// Compiles a typed document; problems of meaning make the flag malformed.
    pub fn from_doc(doc: FlagDoc) -> Self {
        let flag_id = doc.flag_id.clone().unwrap_or_else(|| doc.key.clone());
        let version = doc.version.map(whole_number).unwrap_or(Ok(0));
        let mut oddities = Vec::new();
        let body = match version {
            Ok(_) => compile_body(&doc, &mut oddities),
            Err(ref problem) => Err(format!("version: {problem}")),
        };
        CompiledFlag {
            key: doc.key.into(),
            flag_id: flag_id.into(),
            version: version.unwrap_or_default(),
            body: body.map_err(Into::into),
            oddities: oddities.into_iter().map(Into::into).collect(),
            flagd: None,
        }
    }

    /// Wraps a flagd flag. Its Python body is an error, so anything that would evaluate
    /// it as a Python-schema flag (a Python flag naming it as a prerequisite) answers
    /// `PARSE_ERROR` instead of guessing.
    pub fn from_flagd(flag: FlagdFlag) -> Self {
        CompiledFlag {
            key: flag.key().into(),
            flag_id: flag.key().into(),
            version: 0,
            body: Err("a flagd flag cannot be evaluated as a Python-schema flag".into()),
            oddities: Box::default(),
            flagd: Some(Box::new(flag)),
        }
    }

    /// The flagd flag this is, if it is one.
    pub fn flagd(&self) -> Option<&FlagdFlag> {
        self.flagd.as_deref()
    }

    /// A flag that evaluates to `PARSE_ERROR` with `message`.
    pub fn malformed(key: &str, flag_id: &str, version: u64, message: String) -> Self {
        CompiledFlag {
            key: key.into(),
            flag_id: flag_id.into(),
            version,
            body: Err(message.into()),
            oddities: Box::default(),
            flagd: None,
        }
    }

    /// Parses and compiles one JSON document (convenient in tests and tools).
    pub fn from_json(text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Self::from_value(value)
    }

    /// The flag key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The stable id echoed in responses and events.
    pub fn flag_id(&self) -> &str {
        &self.flag_id
    }

    /// The document version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// What this document has that the Python service read leniently (docs/flag-format.md), one
    /// message per oddity naming the field; empty for a clean document.
    pub fn oddities(&self) -> &[Box<str>] {
        &self.oddities
    }

    /// The compiled body, or why the document is malformed.
    pub fn body(&self) -> Result<&FlagBody, &str> {
        self.body.as_ref().map_err(|message| &**message)
    }

    /// The keys of the flags this one requires (empty for malformed flags).
    pub fn prerequisite_keys(&self) -> impl Iterator<Item = &str> {
        self.body.as_ref().ok().into_iter().flat_map(|b| b.prerequisites.iter().map(|p| &*p.key))
    }

    /// Whether the flag names any prerequisite.
    pub fn has_prerequisites(&self) -> bool {
        self.body.as_ref().is_ok_and(|b| !b.prerequisites.is_empty())
    }

    /// Whether the flag is multivariate (has variants) rather than boolean.
    pub fn is_multivariate(&self) -> bool {
        self.body.as_ref().is_ok_and(|b| !b.variants.is_empty())
    }
}

impl FlagBody {
    /// The variants, in list order (followed by a `default_variant` that names none of
    /// them, when the document has one).
    pub fn variants(&self) -> &[Variant] {
        &self.variants
    }

    /// The id reported for what decided: `target`, or the rule's id.
    pub fn decider_id(&self, decided_by: DecidedBy) -> Option<&str> {
        match decided_by {
            DecidedBy::Target => Some("target"),
            DecidedBy::Rule(index) => self.rules.get(index).map(|r| &*r.serve.id),
        }
    }
}

fn compile_body(doc: &FlagDoc, oddities: &mut Vec<String>) -> Result<FlagBody, String> {
    check_key(&doc.key)?;
    let rollout = percentage(doc.rollout_percentage.unwrap_or(0.0)).map_err(|p| format!("rollout_percentage: {p}"))?;
    let (mut variants, split_error) = compile_variants(doc.variants.as_deref().unwrap_or_default(), oddities)?;
    let split_len = variants.len();
    let find_variant = |name: &str| variants[..split_len].iter().position(|v| &*v.key == name);
    let default_variant = match (&doc.default_variant, split_len) {
        // Without variants, Python never served `default_variant`; it stays inert here too.
        (_, 0) | (None, _) => None,
        (Some(name), _) => match find_variant(name) {
            Some(index) => Some(index),
            None => {
                // Python served the name itself where a split landed on an empty key.
                oddities.push(format!("default_variant `{name}` names no variant; it is served as a bare name"));
                Some(split_len)
            }
        },
    };
    if default_variant == Some(split_len) {
        let name = doc.default_variant.as_deref().unwrap_or_default();
        variants.push(Variant { key: name.into(), below: 0, value: None, index: split_len });
    }
    let variants: Box<[Variant]> = variants.into();
    let find_variant = |name: &str| variants[..split_len].iter().position(|v| &*v.key == name);
    let serve =
        |s: &ServeDoc, id: &str, decided_by: DecidedBy| compile_serve(s, id, decided_by, &doc.key, &find_variant);

    let mut targets = Vec::new();
    let mut target_index = foldhash::HashMap::default();
    for (i, target) in doc.targets.iter().flatten().enumerate() {
        targets
            .push(serve(&target.serve, "target", DecidedBy::Target).map_err(|p| format!("targets[{i}].serve: {p}"))?);
        for user in &target.user_ids {
            target_index.entry(user.as_str().into()).or_insert(i);
        }
    }
    let mut rules = Vec::new();
    for (i, rule) in doc.rules.iter().flatten().enumerate() {
        if rule.id.is_empty() {
            return Err(format!("rules[{i}]: `id` is empty"));
        }
        let clauses = compile_clauses(&rule.clauses, &format!("rules[{i}].clauses"))?;
        let serve =
            serve(&rule.serve, &rule.id, DecidedBy::Rule(rules.len())).map_err(|p| format!("rules[{i}].serve: {p}"))?;
        rules.push(Rule { clauses, serve });
    }
    let mut prerequisites = Vec::new();
    for (i, p) in doc.prerequisites.iter().flatten().enumerate() {
        if p.key == doc.key {
            return Err(format!("prerequisites[{i}]: prerequisite cycle: `{}` requires itself", doc.key));
        }
        prerequisites.push(Prerequisite {
            key: p.key.as_str().into(),
            enabled: p.enabled.unwrap_or(true),
            variant: p.variant.as_deref().map(Into::into),
        });
    }
    let targeting_rules = compile_python_clauses(doc.targeting_rules.as_deref().unwrap_or_default(), oddities);
    Ok(FlagBody {
        enabled: doc.enabled.unwrap_or(false),
        rollout,
        targeting_rules,
        variants,
        split_len,
        default_variant,
        split_error,
        prerequisites: prerequisites.into(),
        targets: targets.into(),
        target_index,
        rules: rules.into(),
        bucket_by: doc.bucket_by.as_deref().map(Into::into),
        rollout_suffix: bucket::rollout_suffix(&doc.key),
        variant_suffix: bucket::variant_suffix(&doc.key),
    })
}

fn check_key(key: &str) -> Result<(), String> {
    super::check_key(key).map_err(|problem| match problem {
        KeyProblem::Length(len) => format!("key must be 1–{MAX_KEY_BYTES} bytes, got {len}"),
        KeyProblem::ControlCharacter => "key contains a control character".into(),
    })
}

fn compile_serve(
    doc: &ServeDoc,
    id: &str,
    decided_by: DecidedBy,
    flag_key: &str,
    find_variant: &dyn Fn(&str) -> Option<usize>,
) -> Result<Serve, String> {
    let variant = match &doc.variant {
        None => None,
        Some(name) => Some(find_variant(name).ok_or_else(|| format!("variant `{name}` names no variant"))?),
    };
    let rollout = match doc.rollout_percentage {
        None => None,
        Some(p) => {
            Some((percentage(p).map_err(|e| format!("rollout_percentage: {e}"))?, bucket::serve_suffix(flag_key, id)))
        }
    };
    Ok(Serve { id: id.into(), decided_by, enabled: doc.enabled.unwrap_or(true), variant, rollout })
}

fn compile_clauses(docs: &[ClauseDoc], field: &str) -> Result<Box<[Clause]>, String> {
    docs.iter().enumerate().map(|(i, c)| Clause::compile(c).map_err(|p| format!("{field}[{i}]: {p}"))).collect()
}

/// Python's `targeting_rules`, read as Python read them (never an error); oddities are
/// collected.
fn compile_python_clauses(docs: &[ClauseDoc], oddities: &mut Vec<String>) -> Box<[Clause]> {
    let mut clauses = Vec::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        let (clause, found) = Clause::compile_python(doc);
        oddities.extend(found.into_iter().map(|o| format!("targeting_rules[{i}] {o}")));
        clauses.push(clause);
    }
    clauses.into()
}

fn percentage(p: f64) -> Result<f64, String> {
    if p.is_finite() && (0.0..=100.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("must be a number 0–100, got {p}"))
    }
}

/// A DynamoDB/JSON number that must be a whole number ≥ 0 (`3` or `3.0`).
fn whole_number(v: f64) -> Result<u64, String> {
    const MAX_EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if v.fract() == 0.0 && (0.0..MAX_EXACT).contains(&v) {
        Ok(v as u64)
    } else {
        Err(format!("must be a whole number ≥ 0, got {v}"))
    }
}
