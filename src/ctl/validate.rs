//! The strict checks of the write path. The flag compiler is shared with the function, so
//! a flag means here what it will mean when served; on top of it, everything the function
//! would read leniently (the oddities of docs/flag-format.md) is an error here, because lenient reading is
//! for items already written, never for new ones. Set-wide checks (duplicate keys,
//! prerequisite cycles and depth) and warnings (key ≠ file name, unknown fields, missing
//! prerequisites) complete it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::files::FlagFile;
use super::Problem;
use crate::eval::{self, FlagSet, FlagSource};
use crate::flag::CompiledFlag;

/// Fields flagctl writes itself on every change; a file's values are ignored.
pub const MANAGED: [&str; 3] = ["version", "updated_at", "updated_by"];

/// Top-level fields of the flag format (`description` is accepted as free text, as the Python
/// service's items carried one).
const FLAG_FIELDS: [&str; 12] = [
    "key",
    "flag_id",
    "enabled",
    "rollout_percentage",
    "targeting_rules",
    "variants",
    "default_variant",
    "prerequisites",
    "targets",
    "rules",
    "bucket_by",
    "description",
];
const CLAUSE_FIELDS: &[&str] = &["attribute", "operator", "value", "negate"];
const VARIANT_FIELDS: &[&str] = &["key", "allocation", "payload", "value"];
const PREREQUISITE_FIELDS: &[&str] = &["key", "enabled", "variant"];
const TARGET_FIELDS: &[&str] = &["user_ids", "serve"];
const RULE_FIELDS: &[&str] = &["id", "clauses", "serve"];
const SERVE_FIELDS: &[&str] = &["enabled", "variant", "rollout_percentage"];

/// A checked flag set: the documents by key (managed fields removed) and what was found.
#[derive(Debug, Default)]
pub struct Checked {
    /// Key → document as it will be written (without managed fields).
    pub flags: BTreeMap<String, Map<String, Value>>,
    /// Errors: the set must not be written.
    pub errors: Vec<Problem>,
    /// Warnings: printed, not fatal.
    pub warnings: Vec<Problem>,
}

/// Checks every flag and the set as a whole.
pub fn check(files: Vec<FlagFile>) -> Checked {
    let mut checked = Checked::default();
    let mut origins: BTreeMap<String, String> = BTreeMap::new();
    for file in files {
        let Some((key, doc)) = check_one(&file, &mut checked) else { continue };
        if let Some(first) = origins.get(&key) {
            checked.errors.push(Problem::new(&file.origin, "key", format!("`{key}` is also defined in {first}")));
            continue;
        }
        origins.insert(key.clone(), file.origin);
        checked.flags.insert(key, doc);
    }
    check_prerequisites(&mut checked, &origins);
    checked
}

/// Checks one document; returns its key and document when it is addressable at all.
fn check_one(file: &FlagFile, checked: &mut Checked) -> Option<(String, Map<String, Value>)> {
    let origin = &file.origin;
    let Value::Object(mut doc) = file.doc.clone() else {
        checked.errors.push(Problem::new(origin, "-", "a flag must be an object"));
        return None;
    };
    let key = match doc.get("key") {
        Some(Value::String(key)) => key.clone(),
        Some(_) => return error(checked, origin, "key", "must be a string"),
        None => return error(checked, origin, "key", "is required"),
    };
    // Managed by flagctl and set on every write; a file's values (a local flags file for
    // the function carries `version`) are ignored without a warning.
    for field in MANAGED {
        doc.remove(field);
    }
    if let Some(stem) = &file.stem {
        if *stem != key {
            let message = format!("key `{key}` differs from the file name `{stem}`");
            checked.warnings.push(Problem::new(origin, "key", message));
        }
    }
    let flagd = doc.get("format").and_then(Value::as_str) == Some(crate::flagd::stored::FORMAT);
    if !flagd {
        unknown_fields(&doc, origin, &mut checked.warnings);
    }
    match CompiledFlag::from_value(Value::Object(doc.clone())) {
        Err(message) => return error(checked, origin, "key", &message),
        Ok(flag) if flagd => {
            // flagd's schema first (every violation, each at its JSON pointer); what the
            // compiler refuses on top of it (a `$ref` to nothing, a default naming no
            // variant) only when the schema found nothing, so one mistake is reported once.
            let definition = doc.get("flagd").and_then(Value::as_str).and_then(|text| serde_json::from_str(text).ok());
            let violations = definition.map(|d| crate::flagd::schema::check_flag(&key, &d)).unwrap_or_default();
            for v in &violations {
                checked.errors.push(Problem::new(origin, v.pointer.as_str(), v.message.as_str()));
            }
            if let Some(problem) = flag.flagd().and_then(|f| f.problem()).filter(|_| violations.is_empty()) {
                checked.errors.push(Problem::new(origin, flagd_pointer(&key, problem), problem));
            }
        }
        Ok(flag) => {
            if let Err(message) = flag.body() {
                let (field, message) = split_field(message);
                checked.errors.push(Problem::new(origin, field, message));
            }
            for oddity in flag.oddities() {
                let (field, message) = split_field(oddity);
                let message = format!(
                    "{message} (the function reads this leniently in existing items; new ones must not have it)"
                );
                checked.errors.push(Problem::new(origin, field, message));
            }
        }
    }
    Some((key, doc))
}

/// The JSON pointer of the field a flagd problem names (`/flags/<key>/<field>`), or of
/// the flag when it names none.
fn flagd_pointer(key: &str, problem: &str) -> String {
    let escaped = crate::flagd::schema::escape(key);
    let field = problem.strip_prefix('`').and_then(|rest| rest.split_once('`')).map(|(field, _)| field);
    match field {
        Some(field) if ["state", "variants", "defaultVariant", "targeting", "metadata"].contains(&field) => {
            format!("/flags/{escaped}/{field}")
        }
        _ => format!("/flags/{escaped}"),
    }
}

fn error<T>(checked: &mut Checked, origin: &str, field: &str, message: &str) -> Option<T> {
    checked.errors.push(Problem::new(origin, field, message));
    None
}

/// Splits a compiler message into the field it names and the rest, so problems read
/// `file: field: message` (`-` when the message names no field).
fn split_field(message: &str) -> (String, String) {
    if let Some(rest) = message.strip_prefix("invalid flag document at `") {
        if let Some((path, rest)) = rest.split_once("`: ") {
            return (path.trim_start_matches('.').to_owned(), rest.to_owned());
        }
    }
    let word_end = message.find([' ', ':']).unwrap_or(message.len());
    let word = &message[..word_end];
    let root = &word[..word.find(['[', '.']).unwrap_or(word.len())];
    if FLAG_FIELDS.contains(&root) || MANAGED.contains(&root) {
        // `field: message` and `field message` both become `field`, `message`.
        let rest = message[word_end..].trim_start_matches(':').trim_start();
        return (word.to_owned(), rest.to_owned());
    }
    if message.starts_with("variant allocations") {
        return ("variants".to_owned(), message.to_owned());
    }
    ("-".to_owned(), message.to_owned())
}

/// Warns on fields the evaluator would ignore: usually a typo (`rollout_precentage`).
fn unknown_fields(doc: &Map<String, Value>, origin: &str, warnings: &mut Vec<Problem>) {
    let mut found = Vec::new();
    unknown_in(doc, &FLAG_FIELDS, "", &mut found);
    let list = |field: &str| doc.get(field).and_then(Value::as_array).into_iter().flatten().enumerate();
    for (i, clause) in list("targeting_rules") {
        unknown_in_value(clause, CLAUSE_FIELDS, &format!("targeting_rules[{i}]."), &mut found);
    }
    for (i, variant) in list("variants") {
        unknown_in_value(variant, VARIANT_FIELDS, &format!("variants[{i}]."), &mut found);
    }
    for (i, prerequisite) in list("prerequisites") {
        unknown_in_value(prerequisite, PREREQUISITE_FIELDS, &format!("prerequisites[{i}]."), &mut found);
    }
    for (i, target) in list("targets") {
        unknown_in_value(target, TARGET_FIELDS, &format!("targets[{i}]."), &mut found);
        unknown_in_value(&target["serve"], SERVE_FIELDS, &format!("targets[{i}].serve."), &mut found);
    }
    for (i, rule) in list("rules") {
        unknown_in_value(rule, RULE_FIELDS, &format!("rules[{i}]."), &mut found);
        unknown_in_value(&rule["serve"], SERVE_FIELDS, &format!("rules[{i}].serve."), &mut found);
        for (j, clause) in rule["clauses"].as_array().into_iter().flatten().enumerate() {
            unknown_in_value(clause, CLAUSE_FIELDS, &format!("rules[{i}].clauses[{j}]."), &mut found);
        }
    }
    for field in found {
        warnings.push(Problem::new(origin, field, "unknown field: the evaluator ignores it (a typo?)"));
    }
}

fn unknown_in_value(value: &Value, known: &[&str], prefix: &str, found: &mut Vec<String>) {
    if let Value::Object(map) = value {
        unknown_in(map, known, prefix, found);
    }
}

fn unknown_in(map: &Map<String, Value>, known: &[&str], prefix: &str, found: &mut Vec<String>) {
    found.extend(map.keys().filter(|k| !known.contains(&k.as_str())).map(|k| format!("{prefix}{k}")));
}

/// Prerequisites across the set: a cycle or a chain deeper than 8 is an error (the
/// function would answer `PARSE_ERROR`: the check is the evaluator's own), naming a flag
/// not in the set a warning (it may be in the table already; if it is missing when
/// evaluated, the prerequisite fails).
fn check_prerequisites(checked: &mut Checked, origins: &BTreeMap<String, String>) {
    let compiled = checked.flags.values().filter_map(|doc| CompiledFlag::from_value(Value::Object(doc.clone())).ok());
    let set = FlagSet::new(compiled.map(Arc::new));
    for (key, doc) in &checked.flags {
        let origin = &origins[key];
        let required = doc.get("prerequisites").and_then(Value::as_array).into_iter().flatten();
        for (i, required) in required.enumerate() {
            match required.get("key").and_then(Value::as_str) {
                Some(required) if set.flag(required).is_none() => {
                    let message = format!("`{required}` is not in this set of flags");
                    checked.warnings.push(Problem::new(origin, format!("prerequisites[{i}].key"), message));
                }
                _ => {}
            }
        }
        if let Some(Err(error)) = set.flag(key).map(|flag| check_prerequisites_of(flag, &set)) {
            checked.errors.push(Problem::new(origin, "prerequisites", error));
        }
    }
}

fn check_prerequisites_of(flag: &CompiledFlag, set: &FlagSet) -> Result<(), String> {
    eval::check_prerequisites(flag, set).map_err(|e| e.message.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flag(origin: &str, stem: Option<&str>, doc: Value) -> FlagFile {
        FlagFile { origin: origin.to_owned(), stem: stem.map(str::to_owned), doc }
    }

    #[test]
    fn flagd_files_are_checked_per_flag_with_file_and_json_pointer() {
        let path = std::env::temp_dir().join(format!("flagctl-flagd-{}.json", std::process::id()));
        let doc = json!({"$evaluators": {"staff": {"ends_with": [{"var": "email"}, "@x.io"]}},
                         "flags": {
                             "good": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                                      "targeting": {"if": [{"$ref": "staff"}, "on", null]}},
                             "bad/ref": {"state": "ENABLED", "variants": {"a": 1}, "targeting": {"$ref": "nobody"}},
                             "bad-default": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "z"}}});
        std::fs::write(&path, doc.to_string()).expect("temp file");
        let checked = check(super::super::files::load(&path).expect("readable"));
        let _ = std::fs::remove_file(&path);
        let origin = path.display().to_string();
        let mut errors: Vec<(String, String)> =
            checked.errors.iter().map(|p| (p.file.clone(), p.field.clone())).collect();
        errors.sort();
        assert_eq!(
            errors,
            [
                (origin.clone(), "/flags/bad-default/defaultVariant".to_owned()),
                (origin, "/flags/bad~1ref/targeting".to_owned())
            ]
        );
        assert!(checked.warnings.is_empty(), "{:?}", checked.warnings);
        let good = checked.flags.get("good").expect("checked");
        assert_eq!(good.get("format"), Some(&json!("flagd")));
        let definition = good.get("flagd").and_then(Value::as_str).expect("definition text");
        assert!(definition.contains("ends_with") && !definition.contains("$ref"), "{definition}");
    }

    #[test]
    fn flagd_schema_violations_are_errors_at_their_json_pointers() {
        let path = std::env::temp_dir().join(format!("flagctl-flagd-schema-{}.json", std::process::id()));
        let doc = json!({"flags": {
            "mixed": {"state": "ENABLED", "variants": {"on": true, "off": "no"}, "defaultVariant": "on"},
            "weights": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
                        "targeting": {"fractional": [["a", 50.5], ["b", -1]]}},
            "semver": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
                       "targeting": {"if": [{"sem_ver": [{"var": "v"}, "=", "1.0"]}, "a", null]}},
            "fine": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"}}});
        std::fs::write(&path, doc.to_string()).expect("temp file");
        let checked = check(super::super::files::load(&path).expect("readable"));
        let mut errors: Vec<&str> = checked.errors.iter().map(|p| p.field.as_str()).collect();
        errors.sort();
        assert_eq!(
            errors,
            [
                "/flags/mixed/variants",
                "/flags/semver/targeting/if/0/sem_ver/2",
                "/flags/weights/targeting/fractional/0/1",
                "/flags/weights/targeting/fractional/1/1"
            ]
        );
        assert!(checked.flags.contains_key("fine"));
        // What the schema says of the set itself refuses the whole document.
        std::fs::write(
            &path,
            json!({"flags": {"fine": doc["flags"]["fine"]}, "metadata": {"owner": {"team": "x"}}}).to_string(),
        )
        .expect("temp file");
        let refused = super::super::files::load(&path).expect_err("set metadata must be plain values");
        let _ = std::fs::remove_file(&path);
        assert!(refused.to_string().contains("/metadata/owner"), "{refused}");
    }

    #[test]
    fn compiler_messages_name_their_field() {
        let cases = [
            ("invalid flag document at `enabled`: invalid type", ("enabled", "invalid type")),
            (
                "rollout_percentage: must be a number 0–100, got 120",
                ("rollout_percentage", "must be a number 0–100, got 120"),
            ),
            ("variants[1].allocation must be 0–1, got 2", ("variants[1].allocation", "must be 0–1, got 2")),
            ("targeting_rules[2] has an unknown operator `x`", ("targeting_rules[2]", "has an unknown operator `x`")),
            (
                "variant allocations must sum to 1 (±0.01), got 0.9",
                ("variants", "variant allocations must sum to 1 (±0.01), got 0.9"),
            ),
            ("something else", ("-", "something else")),
        ];
        for (message, (field, rest)) in cases {
            assert_eq!(split_field(message), (field.to_owned(), rest.to_owned()), "{message}");
        }
    }

    #[test]
    fn warnings_do_not_stop_a_valid_set() {
        let checked = check(vec![flag(
            "a.json",
            Some("b"),
            json!({"key": "a", "enabled": true, "version": 3, "rollout_precentage": 5,
                   "prerequisites": [{"key": "elsewhere"}]}),
        )]);
        assert!(checked.errors.is_empty(), "{:?}", checked.errors);
        let warnings: Vec<String> = checked.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            [
                "a.json: key: key `a` differs from the file name `b`",
                "a.json: rollout_precentage: unknown field: the evaluator ignores it (a typo?)",
                "a.json: prerequisites[0].key: `elsewhere` is not in this set of flags",
            ]
        );
        assert!(!checked.flags["a"].contains_key("version"), "managed fields are not written from files");
    }

    #[test]
    fn cycles_depth_and_duplicates_across_the_set_are_errors() {
        let chain = |i: usize| json!({"key": format!("c{i}"), "prerequisites": [{"key": format!("c{}", i + 1)}]});
        let mut files: Vec<FlagFile> = (0..9).map(|i| flag(&format!("c{i}.json"), None, chain(i))).collect();
        files.push(flag("c9.json", None, json!({"key": "c9"})));
        files.push(flag("x.json", None, json!({"key": "x", "prerequisites": [{"key": "y"}]})));
        files.push(flag("y.json", None, json!({"key": "y", "prerequisites": [{"key": "x"}]})));
        files.push(flag("dup.json", None, json!({"key": "x"})));
        let checked = check(files);
        let errors: Vec<String> = checked.errors.iter().map(ToString::to_string).collect();
        assert!(errors.contains(&"dup.json: key: `x` is also defined in x.json".to_owned()), "{errors:?}");
        assert!(errors.iter().any(|e| e.starts_with("c0.json: prerequisites: prerequisite chain deeper than 8")));
        assert!(!errors.iter().any(|e| e.starts_with("c1.json")), "c1 → c9 is 8 deep, allowed: {errors:?}");
        assert!(errors.contains(&"x.json: prerequisites: prerequisite cycle: x → y → x".to_owned()), "{errors:?}");
    }
}
