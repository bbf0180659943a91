//! Validation and compilation of a [`FlagDoc`] into the form evaluation reads.

use serde_json::Value;

use super::clause::Clause;
use super::{ClauseDoc, FlagDoc, ServeDoc, VariantDoc, MAX_KEY_BYTES};
use crate::eval::bucket;

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
    /// Variants with their cumulative allocation precomputed in list order.
    pub(crate) variants: Box<[Variant]>,
    /// Index of `default_variant` in `variants` (only meaningful when there are variants).
    pub(crate) default_variant: Option<usize>,
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

/// One variant of a split.
#[derive(Debug)]
pub struct Variant {
    /// The variant key.
    pub(crate) key: Box<str>,
    /// How many hashes fall before the cumulative allocation up to and including this
    /// variant (summed in list order exactly as Python did): the walk's test
    /// `h / 4294967295.0 < cumulative` is exactly `h < below` (see [`bucket::hashes_below`]).
    pub(crate) below: u64,
    /// OFREP value (`value`, else `payload`); `None` means the key is the value.
    pub(crate) value: Option<Value>,
}

impl Variant {
    /// The variant key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The variant's OFREP value, if it has one other than its key.
    pub fn value(&self) -> Option<&Value> {
        self.value.as_ref()
    }
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
    /// `false` serves off.
    pub(crate) enabled: bool,
    /// Index of the variant to serve.
    pub(crate) variant: Option<usize>,
    /// Rollout within the matched users, with its hash suffix `":{key}:{id}"`.
    pub(crate) rollout: Option<(f64, Box<[u8]>)>,
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
        let body = match version {
            Ok(_) => compile_body(&doc),
            Err(ref problem) => Err(format!("version: {problem}")),
        };
        CompiledFlag {
            key: doc.key.into(),
            flag_id: flag_id.into(),
            version: version.unwrap_or_default(),
            body: body.map_err(Into::into),
        }
    }

    /// A flag that evaluates to `PARSE_ERROR` with `message`.
    pub fn malformed(key: &str, flag_id: &str, version: u64, message: String) -> Self {
        CompiledFlag { key: key.into(), flag_id: flag_id.into(), version, body: Err(message.into()) }
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
    /// The variants, in list order.
    pub fn variants(&self) -> &[Variant] {
        &self.variants
    }

    /// The position of `variant` (one of this body's own) in [`FlagBody::variants`], so
    /// an evaluation can be kept as indices next to an `Arc` of its flag.
    pub fn variant_index(&self, variant: &Variant) -> Option<usize> {
        self.variants.iter().position(|v| std::ptr::eq(v, variant))
    }

    /// The position of the rule whose id is `id` (the very string an evaluation
    /// borrowed from this body), or `None` (e.g. for `target`).
    pub fn rule_index(&self, id: &str) -> Option<usize> {
        self.rules.iter().position(|r| std::ptr::eq(r.serve.id.as_ptr(), id.as_ptr()))
    }

    /// The id of the rule at `index`.
    pub fn rule_id(&self, index: usize) -> Option<&str> {
        self.rules.get(index).map(|r| &*r.serve.id)
    }
}

fn compile_body(doc: &FlagDoc) -> Result<FlagBody, String> {
    check_key(&doc.key)?;
    let rollout = percentage(doc.rollout_percentage.unwrap_or(0.0)).map_err(|p| format!("rollout_percentage: {p}"))?;
    let variants = compile_variants(doc.variants.as_deref().unwrap_or_default())?;
    let find_variant = |name: &str| variants.iter().position(|v| &*v.key == name);
    let default_variant = match (&doc.default_variant, variants.is_empty()) {
        // Without variants, Python never served `default_variant`; it stays inert here too.
        (_, true) | (None, _) => None,
        (Some(name), false) => {
            Some(find_variant(name).ok_or_else(|| format!("default_variant `{name}` names no variant"))?)
        }
    };
    let serve = |s: &ServeDoc, id: &str| compile_serve(s, id, &doc.key, &find_variant);

    let mut targets = Vec::new();
    let mut target_index = foldhash::HashMap::default();
    for (i, target) in doc.targets.iter().flatten().enumerate() {
        targets.push(serve(&target.serve, "target").map_err(|p| format!("targets[{i}].serve: {p}"))?);
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
        let serve = serve(&rule.serve, &rule.id).map_err(|p| format!("rules[{i}].serve: {p}"))?;
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
    let targeting_rules = compile_clauses(doc.targeting_rules.as_deref().unwrap_or_default(), "targeting_rules")?;
    Ok(FlagBody {
        enabled: doc.enabled.unwrap_or(false),
        rollout,
        targeting_rules,
        variants,
        default_variant,
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
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(format!("key must be 1–{MAX_KEY_BYTES} bytes, got {}", key.len()));
    }
    if key.chars().any(char::is_control) {
        return Err("key contains a control character".into());
    }
    Ok(())
}

fn compile_variants(docs: &[VariantDoc]) -> Result<Box<[Variant]>, String> {
    let mut cumulative = 0.0;
    let mut variants = Vec::with_capacity(docs.len());
    for (i, v) in docs.iter().enumerate() {
        if !(0.0..=1.0).contains(&v.allocation) {
            return Err(format!("variants[{i}].allocation must be 0–1, got {}", v.allocation));
        }
        cumulative += v.allocation;
        variants.push(Variant {
            key: v.key.as_str().into(),
            below: bucket::hashes_below(cumulative),
            value: v.value.clone().or_else(|| v.payload.clone()),
        });
    }
    if !variants.is_empty() && !(0.99..=1.01).contains(&cumulative) {
        return Err(format!("variant allocations must sum to 1 (±0.01), got {cumulative}"));
    }
    Ok(variants.into())
}

fn compile_serve(
    doc: &ServeDoc,
    id: &str,
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
    Ok(Serve { id: id.into(), enabled: doc.enabled.unwrap_or(true), variant, rollout })
}

fn compile_clauses(docs: &[ClauseDoc], field: &str) -> Result<Box<[Clause]>, String> {
    docs.iter().enumerate().map(|(i, c)| Clause::compile(c).map_err(|p| format!("{field}[{i}]: {p}"))).collect()
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
