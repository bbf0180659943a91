//! `flagctl explain`: the decision path of one flag for one user, step by step as the evaluation order
//! of docs/flag-format.md orders them — each clause with the attribute value it saw, the rollout bucket and its
//! threshold, the variant point and the cumulative allocations.
//!
//! The evaluator decides; this file only narrates. The flag is evaluated once with a
//! [`Trace`] observer that records every clause verdict and every hash as the evaluator
//! makes them; the outcome (its reason, rule, variant) says which step decided, and the
//! recording says how. Nothing here re-implements an operator, a hash or a split.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::commands::flag_table;
use super::diff::compact;
use super::{files, CtlError};
use crate::eval::{EvalInput, Evaluation, Evaluator, FlagSet, Reason, Trace};
use crate::flag::{not_python, Clause, CompiledFlag, FlagBody, Serve};

/// Where `explain` reads flags: files (a directory or a flags file), else a table.
pub struct Source<'a> {
    /// `--file`.
    pub file: Option<&'a Path>,
    /// `--table` (or `FLAGS_TABLE`).
    pub table: Option<&'a str>,
}

/// Explains `key` for `user` with `context` (a JSON object), reading the flags from
/// `source`; a flagd flag is explained under `bucketing`.
pub async fn run(
    key: &str,
    user: &str,
    context: Option<&str>,
    source: Source<'_>,
    bucketing: crate::flagd::Bucketing,
) -> Result<(), CtlError> {
    let Source { file, table } = source;
    let context = match context.map(serde_json::from_str::<Value>) {
        None => Map::new(),
        Some(Ok(Value::Object(map))) => map,
        Some(_) => return Err(CtlError::input("--context", "-", "must be a JSON object, e.g. '{\"plan\": \"pro\"}'")),
    };
    let docs: Vec<Value> = match (file, table) {
        (Some(path), _) => files::load(path)?.into_iter().map(|f| f.doc).collect(),
        (None, Some(table)) => {
            flag_table(table).await.scan().await?.into_values().map(|f| Value::Object(f.full())).collect()
        }
        (None, None) => {
            return Err(CtlError::input("explain", "--table", "give --file PATH, or --table (or FLAGS_TABLE)"))
        }
    };
    let set = FlagSet::new(docs.iter().filter_map(|d| CompiledFlag::from_value(d.clone()).ok()).map(Arc::new));
    let (Some(doc), Some(flag)) = (docs.iter().find(|d| d["key"] == key), set.get(key)) else {
        return Err(CtlError::input(key, "key", "no such flag"));
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    if let Some(flagd) = flag.flagd() {
        let input =
            crate::flagd::FlagdInput { context: &context, targeting_key: Some(user), timestamp: now as i64, bucketing };
        print!("{}", crate::flagd::explain(flagd, &input));
        return Ok(());
    }
    let input = EvalInput { user_id: Some(user), context: &context, now };
    let recorder = Recorder::default();
    let outcome = Evaluator::with_trace(input, &set, &recorder).evaluate(flag);
    let mut out = String::new();
    let _ = writeln!(out, "flag {key} (version {}) for user {user:?}", flag.version());
    if let Ok(body) = flag.body() {
        Narrator { doc, body, input, set: &set, outcome: &outcome, trace: &recorder, out: &mut out }.steps();
    }
    result_line(&outcome, &mut out);
    print!("{out}");
    Ok(())
}

/// Records what the evaluator decided: clause verdicts (by the clause's address in the
/// compiled flag) and hashes (with the suffix that says which hash).
#[derive(Debug, Default)]
struct Recorder {
    clauses: RefCell<Vec<(usize, bool)>>,
    hashes: RefCell<Vec<(String, Vec<u8>, u32)>>,
}

impl Trace for Recorder {
    fn clause(&self, clause: &Clause, matched: bool) {
        self.clauses.borrow_mut().push((std::ptr::from_ref(clause) as usize, matched));
    }

    fn hash(&self, id: &str, suffix: &[u8], h: u32) {
        self.hashes.borrow_mut().push((id.to_owned(), suffix.to_vec(), h));
    }
}

impl Recorder {
    /// The verdict on `clause`, if the evaluator evaluated it.
    fn verdict(&self, clause: &Clause) -> Option<bool> {
        let address = std::ptr::from_ref(clause) as usize;
        self.clauses.borrow().iter().rev().find(|(a, _)| *a == address).map(|(_, m)| *m)
    }

    /// The id hashed with `suffix` and the hash, if the evaluator computed one.
    fn hashed(&self, suffix: &[u8]) -> Option<(String, u32)> {
        self.hashes.borrow().iter().rev().find(|(_, s, _)| s == suffix).map(|(id, _, h)| (id.clone(), *h))
    }
}

fn result_line(outcome: &Evaluation<'_>, out: &mut String) {
    let variant = outcome.variant.map_or("none".to_owned(), |v| format!("{:?}", v.key()));
    let _ = write!(out, "result: enabled={}, reason={}, variant={variant}", outcome.enabled, outcome.reason().as_str());
    match &outcome.error() {
        Some(error) => drop(writeln!(out, ", error {}: {}", error.code.as_str(), error.message)),
        None => out.push('\n'),
    }
}

/// Narrates the evaluation order (docs/flag-format.md) up to the step the outcome says decided.
struct Narrator<'a, 'c> {
    doc: &'a Value,
    body: &'a FlagBody,
    input: EvalInput<'c>,
    set: &'a FlagSet,
    outcome: &'a Evaluation<'a>,
    trace: &'a Recorder,
    out: &'a mut String,
}

impl Narrator<'_, '_> {
    fn line(&mut self, text: impl AsRef<str>) {
        self.out.push_str(text.as_ref());
        self.out.push('\n');
    }

    fn steps(mut self) {
        let (body, reason) = (self.body, self.outcome.reason());
        self.line(format!("1. user id: {:?}", self.input.user_id.unwrap_or("")));
        self.line(format!("2. enabled: {}{}", body.enabled, if body.enabled { "" } else { " → off (flag_disabled)" }));
        if !body.enabled {
            return;
        }
        self.prerequisites();
        if reason == Reason::PrerequisiteFailed {
            return;
        }
        self.targets();
        if reason == Reason::TargetMatch {
            return;
        }
        self.rules();
        if reason == Reason::RuleMatch {
            return;
        }
        self.targeting_rules();
        if reason == Reason::TargetingRulesNotMet {
            return;
        }
        if self.rollout("7. rollout", body.rollout, &body.rollout_suffix) {
            self.split("8. variant");
        }
    }

    /// Step 3: each prerequisite as the evaluator answers it for this user.
    fn prerequisites(&mut self) {
        let prerequisites = list(&self.doc["prerequisites"]);
        if prerequisites.is_empty() {
            return self.line("3. prerequisites: none");
        }
        self.line("3. prerequisites (each must hold):");
        for p in prerequisites {
            let key = p["key"].as_str().unwrap_or("");
            let want = format!(
                "enabled={}{}",
                p["enabled"].as_bool().unwrap_or(true),
                p["variant"].as_str().map_or(String::new(), |v| format!(", variant={v:?}"))
            );
            match self.set.get(key) {
                None => self.line(format!("   {key}: needs {want}; no such flag → fails")),
                Some(flag) => {
                    let result = Evaluator::new(self.input, self.set).evaluate(flag);
                    let got = format!("enabled={}, variant={:?}", result.enabled, result.variant_key());
                    self.line(format!("   {key}: needs {want}; got {got} ({})", result.reason().as_str()));
                }
            }
        }
        if self.outcome.reason() == Reason::PrerequisiteFailed {
            self.line("   → a prerequisite fails (prerequisite_failed)");
        }
    }

    /// Step 4: individual targeting.
    fn targets(&mut self) {
        let (doc, body) = (self.doc, self.body);
        let user = self.input.user_id.unwrap_or("");
        if body.targets.is_empty() {
            self.line("4. targets: none");
        } else if self.outcome.reason() == Reason::TargetMatch {
            let entry = list(&doc["targets"]).iter().position(|t| list(&t["user_ids"]).iter().any(|u| u == user));
            let serve = entry.map_or(Value::Null, |i| doc["targets"][i]["serve"].clone());
            self.line(format!(
                "4. targets[{}] lists {user:?} → serve {} (target_match)",
                entry.unwrap_or(0),
                compact(Some(&serve))
            ));
            let index = body.target_index.get(user).copied().unwrap_or(0);
            self.serve(&body.targets[index]);
        } else {
            self.line(format!("4. targets: no entry lists {user:?}"));
        }
    }

    /// Step 5: ordered rules; the outcome's `rule_id` names the one that decided.
    fn rules(&mut self) {
        let (doc, body) = (self.doc, self.body);
        let docs = list(&doc["rules"]);
        if docs.is_empty() {
            return self.line("5. rules: none");
        }
        self.line("5. rules (the first whose clauses all match decides):");
        for (rule, doc) in body.rules.iter().zip(docs) {
            self.line(format!("   rule {:?}:", &*rule.serve.id));
            self.clauses(&rule.clauses, list(&doc["clauses"]), false);
            if self.outcome.reason() == Reason::RuleMatch && self.outcome.rule_id() == Some(&*rule.serve.id) {
                self.line(format!(
                    "   → rule {:?} matches: serve {} (rule_match)",
                    &*rule.serve.id,
                    compact(Some(&doc["serve"]))
                ));
                return self.serve(&rule.serve);
            }
        }
        self.line("   → no rule matches");
    }

    /// Step 6: Python's `targeting_rules`.
    fn targeting_rules(&mut self) {
        let (doc, body) = (self.doc, self.body);
        let docs = list(&doc["targeting_rules"]);
        if docs.is_empty() {
            return self.line("6. targeting_rules: none");
        }
        self.line("6. targeting_rules (all must match):");
        self.clauses(&body.targeting_rules, docs, true);
        if self.outcome.reason() != Reason::TargetingRulesNotMet {
            self.line("   → all match");
        } else if self.input.context.is_empty() {
            self.line("   → not met: a non-empty rule list never matches an empty context (targeting_rules_not_met)");
        } else {
            self.line("   → not met (targeting_rules_not_met)");
        }
    }

    /// Each clause with the attribute value it saw and the evaluator's verdict. In
    /// `targeting_rules` (`python`), `negate` is ignored and an operator Python did not
    /// know never matches: the line says so.
    fn clauses(&mut self, compiled: &[Clause], docs: &[Value], python: bool) {
        for (clause, doc) in compiled.iter().zip(docs) {
            let attribute = doc["attribute"].as_str().unwrap_or("<no attribute>");
            let operator = doc["operator"].as_str().unwrap_or("<no operator>");
            let negated = doc["negate"].as_bool() == Some(true);
            let negate = if negated && !python { "not " } else { "" };
            let mut notes = Vec::new();
            match doc["operator"].as_str() {
                Some(name) if python && !matches!(name, "equals" | "in" | "greater_than" | "less_than") => {
                    notes.push(not_python(name))
                }
                _ => {}
            }
            if python && doc.get("negate").is_some_and(|n| !n.is_null()) {
                notes.push("`negate` is ignored in targeting_rules (Python never read it)".to_owned());
            }
            let seen = match self.input.context.get(attribute) {
                Some(value) => compact(Some(value)),
                None if attribute == "now" && matches!(operator, "before" | "after") => {
                    format!("<absent: now = {}>", self.input.now)
                }
                None => "<absent>".to_owned(),
            };
            let verdict = match self.trace.verdict(clause) {
                Some(true) => "match",
                Some(false) => "no match",
                None => "not evaluated",
            };
            let value = compact(doc.get("value"));
            let notes: String = notes.iter().map(|n| format!(" [{n}]")).collect();
            self.line(format!("     {attribute} {negate}{operator} {value}: saw {seen} → {verdict}{notes}"));
        }
    }

    /// A target's or rule's `serve`: its own rollout, then its variant or the split.
    fn serve(&mut self, serve: &Serve) {
        if !serve.enabled {
            return self.line("   serve enabled=false → off");
        }
        if let Some((percentage, suffix)) = &serve.rollout {
            if !self.rollout("   serve rollout", *percentage, suffix) {
                return;
            }
        }
        match serve.variant {
            Some(i) => {
                let key = self.body.variants[i].key().to_owned();
                self.line(format!("   serve variant {key:?}"));
            }
            None => self.split("   variant"),
        }
    }

    /// A rollout: `h("{id}{suffix}") % 100 < percentage`; whether the user is in.
    fn rollout(&mut self, step: &str, percentage: f64, suffix: &[u8]) -> bool {
        if percentage <= 0.0 || percentage >= 100.0 {
            let admitted = percentage >= 100.0;
            let who = if admitted { "everyone" } else { "nobody (not_in_rollout)" };
            self.line(format!("{step}: {percentage}% → {who} (no hash)"));
            return admitted;
        }
        let Some((id, h)) = self.trace.hashed(suffix) else {
            self.line(format!("{step}: {percentage}%: no bucket was computed (see the result)"));
            return false;
        };
        let hashed = format!("{id}{}", String::from_utf8_lossy(suffix));
        let bucket = h % 100;
        let admitted = crate::bucket::admits(percentage, h);
        let verdict = if admitted { "in" } else { "out (not_in_rollout)" };
        self.line(format!(
            "{step}: bucket = h({hashed:?}) % 100 = {bucket}; threshold {percentage} → {bucket} < {percentage}? {verdict}"
        ));
        admitted
    }

    /// The variant split: the point and the cumulative allocations, in list order.
    fn split(&mut self, step: &str) {
        let (doc, body) = (self.doc, self.body);
        let docs = list(&doc["variants"]);
        let variants = &body.variants[..body.split_len];
        if variants.is_empty() {
            return self.line(format!("{step}: the flag has no variants → no variant"));
        }
        let Some((id, h)) = self.trace.hashed(&body.variant_suffix) else {
            return match variants {
                [only] => self.line(format!("{step}: one variant, served whatever the hash ({:?})", only.key())),
                _ => self.line(format!("{step}: no point was computed (see the result)")),
            };
        };
        let hashed = format!("{id}{}", String::from_utf8_lossy(&body.variant_suffix));
        let point = f64::from(h) / 4_294_967_295.0;
        self.line(format!("{step}: point = h({hashed:?}) / 4294967295 = {h} / 4294967295 = {point:.6}"));
        // The evaluator's walk: the first variant whose cumulative allocation is above the
        // point (as precomputed hash thresholds, `below`), else the last.
        let chosen = variants.iter().position(|v| u64::from(h) < v.below).unwrap_or(variants.len() - 1);
        let width = docs.iter().map(|v| compact(Some(&v["key"])).chars().count()).max().unwrap_or(0).max(14);
        let mut cumulative = 0.0;
        for (i, v) in docs.iter().enumerate() {
            let allocation = v["allocation"].as_f64().unwrap_or(0.0);
            cumulative += allocation;
            let mark = if i == chosen { "  ← first with point < cumulative" } else { "" };
            let key = compact(Some(&v["key"]));
            self.line(format!("     {key:<width$} allocation {allocation:<6} cumulative {cumulative:.6}{mark}"));
        }
        match variants[chosen].key() {
            "" => self.line("   → the empty variant key: default_variant is served"),
            key => self.line(format!("   → {key:?}")),
        }
    }
}

fn list(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}
