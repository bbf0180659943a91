//! `flagctl explain`: the decision path of one flag for one user, step by step as SPEC §2
//! orders them — each clause with the attribute value it saw, the rollout bucket and its
//! threshold, the variant point and the cumulative allocations.
//!
//! The evaluator decides; this file only narrates. The outcome printed last is the
//! evaluator's own. Each clause's verdict is the evaluator's too: the clause is evaluated
//! as the only clause of a one-rule flag, so operators are never re-implemented here. The
//! buckets and points are the formulas of [`crate::eval::bucket`] (SPEC §3), the very
//! functions the evaluator hashes with. If the narration and the evaluator's outcome ever
//! disagree, the output says so.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::commands::flag_table;
use super::diff::compact;
use super::{files, CtlError};
use crate::eval::{bucket, EvalInput, Evaluation, Evaluator, FlagSet, NoFlags, Reason};
use crate::flag::CompiledFlag;

/// Explains `key` for `user` with `context` (a JSON object), reading the flags from
/// `file` (a directory or flags file) or else from `table`.
pub async fn run(
    key: &str,
    user: &str,
    context: Option<&str>,
    file: Option<&Path>,
    table: Option<&str>,
) -> Result<(), CtlError> {
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
    let doc = docs.iter().find(|d| d["key"] == key);
    let (Some(doc), Some(flag)) = (doc, set.get(key)) else {
        return Err(CtlError::input(key, "key", "no such flag"));
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    let input = EvalInput { user_id: Some(user), context: &context, now };
    let outcome = Evaluator::new(input, &set).evaluate(flag);
    print!("{}", explain(doc, flag, &set, input, &outcome));
    Ok(())
}

/// The narration of one evaluation.
fn explain(doc: &Value, flag: &CompiledFlag, set: &FlagSet, input: EvalInput<'_>, outcome: &Evaluation<'_>) -> String {
    let mut out = String::new();
    let key = flag.key();
    let _ = writeln!(out, "flag {key} (version {}) for user {:?}", flag.version(), input.user_id.unwrap_or(""));
    let narrated = match flag.body() {
        Err(problem) => {
            let _ = writeln!(out, "   malformed: {problem}");
            Some(Reason::Error)
        }
        Ok(_) => Narrator { doc, key, input, set, out: &mut out }.steps(),
    };
    let variant = outcome.variant.map_or("none".to_owned(), |v| format!("{:?}", v.key()));
    let _ = write!(out, "result: enabled={}, reason={}, variant={variant}", outcome.enabled, outcome.reason.as_str());
    match &outcome.error {
        Some(error) => drop(writeln!(out, ", error {}: {}", error.code.as_str(), error.message)),
        None => out.push('\n'),
    }
    if narrated.is_some_and(|reason| reason != outcome.reason) {
        let _ = writeln!(out, "note: the steps above do not match the evaluator's result; the result is authoritative");
    }
    out
}

/// Walks SPEC §2 over the raw document, appending one line per decision.
struct Narrator<'a, 'c> {
    doc: &'a Value,
    key: &'a str,
    input: EvalInput<'c>,
    set: &'a FlagSet,
    out: &'a mut String,
}

impl Narrator<'_, '_> {
    fn line(&mut self, text: impl AsRef<str>) {
        self.out.push_str(text.as_ref());
        self.out.push('\n');
    }

    /// The steps; returns the reason they lead to (`None` when a step needs the evaluator's
    /// judgement, e.g. a prerequisite chain that errors).
    fn steps(mut self) -> Option<Reason> {
        let doc = self.doc;
        let user = self.input.user_id.unwrap_or("");
        self.line(format!("1. user id: {user:?}{}", if user.trim().is_empty() { " (blank)" } else { "" }));
        let enabled = doc["enabled"].as_bool().unwrap_or(false);
        self.line(format!("2. enabled: {enabled}{}", if enabled { "" } else { " → off (flag_disabled)" }));
        if !enabled {
            return Some(Reason::FlagDisabled);
        }
        if !self.prerequisites()? {
            return Some(Reason::PrerequisiteFailed);
        }
        if let Some(reason) = self.targets() {
            return Some(reason);
        }
        if let Some(reason) = self.rules() {
            return Some(reason);
        }
        let rules = list(&doc["targeting_rules"]);
        if rules.is_empty() {
            self.line("6. targeting_rules: none");
        } else {
            self.line("6. targeting_rules (all must match):");
            let all = self.clauses(rules);
            if self.input.context.is_empty() {
                self.line(
                    "   → not met: a non-empty rule list never matches an empty context (targeting_rules_not_met)",
                );
                return Some(Reason::TargetingRulesNotMet);
            }
            if !all {
                self.line("   → not met (targeting_rules_not_met)");
                return Some(Reason::TargetingRulesNotMet);
            }
            self.line("   → all match");
        }
        let percentage = doc["rollout_percentage"].as_f64().unwrap_or(0.0);
        let suffix = bucket::rollout_suffix(self.key);
        if !self.rollout("7. rollout", percentage, &suffix) {
            return Some(Reason::NotInRollout);
        }
        self.split("8. variant");
        Some(Reason::Enabled)
    }

    /// Step 3; `None` when a prerequisite errors (the evaluator reports that itself).
    fn prerequisites(&mut self) -> Option<bool> {
        let prerequisites = list(&self.doc["prerequisites"]);
        if prerequisites.is_empty() {
            self.line("3. prerequisites: none");
            return Some(true);
        }
        self.line("3. prerequisites (each must hold):");
        for p in prerequisites {
            let key = p["key"].as_str().unwrap_or("");
            let want_enabled = p["enabled"].as_bool().unwrap_or(true);
            let want_variant = p["variant"].as_str();
            let Some(flag) = self.set.get(key) else {
                self.line(format!("   {key}: not found → fails (prerequisite_failed)"));
                return Some(false);
            };
            let result = Evaluator::new(self.input, self.set).evaluate(flag);
            if result.error.is_some() {
                self.line(format!("   {key}: evaluates to an error"));
                return None;
            }
            let holds = result.enabled == want_enabled && want_variant.is_none_or(|w| result.variant_key() == Some(w));
            let want = match want_variant {
                Some(v) => format!("enabled={want_enabled}, variant={v:?}"),
                None => format!("enabled={want_enabled}"),
            };
            let got = format!("enabled={}, variant={:?}", result.enabled, result.variant_key());
            self.line(format!("   {key}: needs {want}, got {got} → {}", if holds { "holds" } else { "fails" }));
            if !holds {
                self.line("   → prerequisite_failed");
                return Some(false);
            }
        }
        Some(true)
    }

    /// Step 4: the first `targets` entry listing the user decides.
    fn targets(&mut self) -> Option<Reason> {
        let targets = list(&self.doc["targets"]);
        if targets.is_empty() {
            self.line("4. targets: none");
            return None;
        }
        let user = self.input.user_id.unwrap_or("");
        let found = targets.iter().position(|t| list(&t["user_ids"]).iter().any(|id| id.as_str() == Some(user)));
        match found {
            None => {
                self.line(format!("4. targets: no entry lists {user:?}"));
                None
            }
            Some(i) => {
                self.line(format!(
                    "4. targets[{i}] lists {user:?} → serve {} (target_match)",
                    compact(Some(&targets[i]["serve"]))
                ));
                self.serve(&targets[i]["serve"], "target");
                Some(Reason::TargetMatch)
            }
        }
    }

    /// Step 5: the first rule whose clauses all match decides.
    fn rules(&mut self) -> Option<Reason> {
        let rules = list(&self.doc["rules"]);
        if rules.is_empty() {
            self.line("5. rules: none");
            return None;
        }
        self.line("5. rules (the first whose clauses all match decides):");
        for rule in rules {
            let id = rule["id"].as_str().unwrap_or("");
            self.line(format!("   rule {id:?}:"));
            if self.clauses(list(&rule["clauses"])) {
                self.line(format!("   → rule {id:?} matches: serve {} (rule_match)", compact(Some(&rule["serve"]))));
                self.serve(&rule["serve"], id);
                return Some(Reason::RuleMatch);
            }
        }
        self.line("   → no rule matches");
        None
    }

    /// A target's or rule's `serve`: its own rollout, then its variant or the split.
    fn serve(&mut self, serve: &Value, id: &str) {
        if serve["enabled"].as_bool() == Some(false) {
            self.line("   serve enabled=false → off");
            return;
        }
        if let Some(percentage) = serve["rollout_percentage"].as_f64() {
            if !self.rollout("   serve rollout", percentage, &bucket::serve_suffix(self.key, id)) {
                return;
            }
        }
        match serve["variant"].as_str() {
            Some(variant) => self.line(format!("   serve variant {variant:?}")),
            None => self.split("   variant"),
        }
    }

    /// Each clause with the attribute value it saw and the evaluator's verdict; whether all
    /// matched.
    fn clauses(&mut self, clauses: &[Value]) -> bool {
        let mut all = true;
        for clause in clauses {
            let attribute = clause["attribute"].as_str().unwrap_or("<no attribute>");
            let operator = clause["operator"].as_str().unwrap_or("<no operator>");
            let negate = if clause["negate"].as_bool() == Some(true) { "not " } else { "" };
            let seen = match self.input.context.get(attribute) {
                Some(value) => compact(Some(value)),
                None if attribute == "now" && matches!(operator, "before" | "after") => {
                    format!("<absent: now = {}>", self.input.now)
                }
                None => "<absent>".to_owned(),
            };
            let matched = self.clause_matches(clause);
            all &= matched;
            let value = compact(clause.get("value"));
            let verdict = if matched { "match" } else { "no match" };
            self.line(format!("     {attribute} {negate}{operator} {value}: saw {seen} → {verdict}"));
        }
        all
    }

    /// The evaluator's verdict on one clause: the only clause of a one-rule flag.
    fn clause_matches(&self, clause: &Value) -> bool {
        let probe = json!({"key": "explain-clause", "enabled": true, "rollout_percentage": 100,
                           "rules": [{"id": "clause", "clauses": [clause], "serve": {}}]});
        let Ok(flag) = CompiledFlag::from_value(probe) else { return false };
        Evaluator::new(self.input, &NoFlags).evaluate(&flag).reason == Reason::RuleMatch
    }

    /// The id hashed for buckets: the `bucket_by` attribute's string form, else the user.
    fn bucket_id(&self) -> (String, String) {
        if let Some(attribute) = self.doc["bucket_by"].as_str() {
            let id = match self.input.context.get(attribute) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(value @ (Value::Number(_) | Value::Bool(_))) => Some(value.to_string()),
                _ => None,
            };
            if let Some(id) = id {
                return (id, format!("bucket_by {attribute:?}"));
            }
        }
        (self.input.user_id.unwrap_or("").to_owned(), "user id".to_owned())
    }

    /// A rollout: `h("{id}{suffix}") % 100 < percentage`; whether the user is in.
    fn rollout(&mut self, step: &str, percentage: f64, suffix: &[u8]) -> bool {
        if percentage <= 0.0 || percentage >= 100.0 {
            let admitted = percentage >= 100.0;
            let who = if admitted { "everyone" } else { "nobody" };
            self.line(format!(
                "{step}: {percentage}% → {who} (no hash){}",
                if admitted { "" } else { " (not_in_rollout)" }
            ));
            return admitted;
        }
        let (id, source) = self.bucket_id();
        let hashed = format!("{id}{}", String::from_utf8_lossy(suffix));
        let bucket = bucket::rollout_bucket(&id, suffix);
        let admitted = bucket::admits(percentage, bucket::hash(&id, suffix));
        let verdict = if admitted { "in" } else { "out (not_in_rollout)" };
        self.line(format!(
            "{step}: bucket = h({hashed:?}) % 100 = {bucket} ({source}); threshold {percentage} → {bucket} < {percentage}? {verdict}"
        ));
        admitted
    }

    /// The variant split: the point and the cumulative allocations, in list order.
    fn split(&mut self, step: &str) {
        let variants = list(&self.doc["variants"]);
        if variants.is_empty() {
            self.line(format!("{step}: the flag has no variants → no variant"));
            return;
        }
        let (id, source) = self.bucket_id();
        let suffix = bucket::variant_suffix(self.key);
        let point = bucket::variant_point(&id, &suffix);
        let hashed = format!("{id}{}", String::from_utf8_lossy(&suffix));
        let h = bucket::hash(&id, &suffix);
        self.line(format!("{step}: point = h({hashed:?}) / 4294967295 = {h} / 4294967295 = {point:.6} ({source})"));
        let width = variants.iter().map(|v| compact(Some(&v["key"])).chars().count()).max().unwrap_or(0).max(14);
        let mut cumulative = 0.0;
        let mut chosen = None;
        for (i, v) in variants.iter().enumerate() {
            let allocation = v["allocation"].as_f64().unwrap_or(0.0);
            cumulative += allocation;
            let wins = chosen.is_none() && (point < cumulative || i + 1 == variants.len());
            if wins {
                chosen = Some(v["key"].as_str().unwrap_or(""));
            }
            let mark = if wins { "  ← first with point < cumulative" } else { "" };
            let key = compact(Some(&v["key"]));
            self.line(format!("     {key:<width$} allocation {allocation:<6} cumulative {cumulative:.6}{mark}"));
        }
        match chosen {
            Some("") => {
                let default = self.doc["default_variant"].as_str().unwrap_or("");
                self.line(format!("   → the empty variant key: default_variant {default:?} is served"));
            }
            Some(key) => self.line(format!("   → {key:?}")),
            None => {}
        }
    }
}

fn list(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}
