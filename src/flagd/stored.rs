//! One flagd flag as one self-contained stored item (the DynamoDB layout).
//!
//! A flagd document is a set: flags share `$evaluators` and the set's `metadata`. A
//! table holds one item per flag so a Lambda reads exactly the flags it is asked for, so
//! each item must stand alone: its `$ref`s are inlined and the set's metadata merged
//! into its own *when it is written*, and reading it never needs a second item.
//!
//! ```text
//! key     S  the flag key (the table's partition key)
//! format  S  "flagd"   — what tells a flagd item from a Python-schema one
//! flagd   S  the flag's definition as JSON text: state, variants, defaultVariant,
//!            targeting (no `$ref` left), metadata (flag-set metadata merged in)
//! version N  bumped by every write, as for Python-schema items
//! ```
//!
//! The definition is JSON *text*, not a DynamoDB map: maps lose the difference
//! between `1` and `1.0` (a float variant would come back an integer), and nest at
//! most 32 levels, which JSON Logic may exceed.

use serde_json::{Map, Value};

use super::logic::{MAX_DEPTH, MAX_NODES, MAX_REF_DEPTH};
use super::{is_flagd_document, parse_flag, FlagdFlag};

/// The `format` attribute of a flagd item.
pub const FORMAT: &str = "flagd";

/// Every flag of a flagd document as a self-contained definition, in document order;
/// a flag whose `$ref`s cannot be inlined is an error of its own, naming it.
pub type Definitions = Vec<(String, Result<Value, String>)>;

/// See [`Definitions`]; `Err` when the document is not a flagd document at all.
pub fn self_contained(doc: &Value) -> Result<Definitions, String> {
    if !is_flagd_document(doc) {
        return Err("not a flagd document: `flags` must be an object".into());
    }
    let empty = Map::new();
    let evaluators = doc.get("$evaluators").and_then(Value::as_object).unwrap_or(&empty);
    let set_metadata = doc.get("metadata").and_then(Value::as_object).unwrap_or(&empty);
    let flags = doc.get("flags").and_then(Value::as_object).unwrap_or(&empty);
    Ok(flags.iter().map(|(key, flag)| (key.clone(), definition(key, flag, evaluators, set_metadata))).collect())
}

fn definition(
    key: &str,
    flag: &Value,
    evaluators: &Map<String, Value>,
    set_metadata: &Map<String, Value>,
) -> Result<Value, String> {
    let mut flag = flag.clone();
    if let Some(targeting) = flag.get_mut("targeting") {
        let mut budget = MAX_NODES;
        *targeting = inline(targeting, evaluators, 0, &mut budget).map_err(|why| format!("flag `{key}`: {why}"))?;
    }
    if let Value::Object(definition) = &mut flag {
        let mut metadata = set_metadata.clone();
        if let Some(Value::Object(own)) = definition.get("metadata") {
            metadata.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if !metadata.is_empty() {
            definition.insert("metadata".into(), Value::Object(metadata));
        }
    }
    Ok(flag)
}

/// `logic` with every `{"$ref": name}` replaced by its evaluator, bounded like compilation.
fn inline(logic: &Value, evaluators: &Map<String, Value>, depth: usize, budget: &mut usize) -> Result<Value, String> {
    *budget = budget.checked_sub(1).ok_or("targeting too large")?;
    if depth > MAX_DEPTH + MAX_REF_DEPTH {
        return Err("targeting nested too deeply".into());
    }
    match logic {
        Value::Object(map) if map.len() == 1 && map.contains_key("$ref") => {
            let name = map.get("$ref").and_then(Value::as_str).ok_or("`$ref` names must be strings")?;
            let evaluator = evaluators.get(name).ok_or_else(|| format!("`$ref` to undefined evaluator `{name}`"))?;
            inline(evaluator, evaluators, depth + 1, budget)
        }
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                out.insert(k.clone(), inline(v, evaluators, depth + 1, budget)?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => items
            .iter()
            .map(|item| inline(item, evaluators, depth + 1, budget))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

/// Reads a stored flagd item's definition (`flagd` attribute, JSON text). Anything
/// wrong makes a flag that answers `PARSE_ERROR`, never a missing flag.
pub fn from_item(key: &str, item: &Value) -> FlagdFlag {
    let none = Map::new();
    let definition = match item.get("flagd") {
        Some(Value::String(text)) => serde_json::from_str::<Value>(text).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    // A stored definition stands alone: no evaluators to resolve `$ref`s against.
    parse_flag(key, &definition, &none, &none)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn items_stand_alone_and_read_back_as_the_document_would() {
        let doc = json!({"$evaluators": {"staff": {"ends_with": [{"var": "email"}, "@x.io"]}},
                         "metadata": {"team": "web"},
                         "flags": {"f": {"state": "ENABLED", "variants": {"a": 1.0, "b": 2}, "defaultVariant": "a",
                                         "targeting": {"if": [{"$ref": "staff"}, "b", null]},
                                         "metadata": {"owner": "me"}}}});
        let items = self_contained(&doc).expect("a flagd document");
        let (key, definition) = &items[0];
        let definition = definition.as_ref().expect("inlined");
        assert_eq!(definition["targeting"], json!({"if": [{"ends_with": [{"var": "email"}, "@x.io"]}, "b", null]}));
        assert_eq!(definition["metadata"], json!({"team": "web", "owner": "me"}));
        let item = json!({"key": key, "format": FORMAT, "flagd": definition.to_string()});
        let flag = from_item(key, &item);
        assert_eq!(flag.problem(), None);
        assert_eq!(flag.variant("a").map(|(_, v)| v.clone()), Some(json!(1.0)));
    }

    #[test]
    fn a_ref_that_cannot_be_inlined_is_refused_with_the_flag_named() {
        let doc = json!({"flags": {"g": {"state": "ENABLED", "variants": {"a": 1}, "targeting": {"$ref": "nope"}}}});
        let why = self_contained(&doc).expect("a flagd document").remove(0).1.expect_err("undefined evaluator");
        assert!(why.contains("`g`") && why.contains("nope"), "{why}");
        let mut evaluators = Map::new();
        evaluators.insert("e0".into(), json!(true));
        for i in 1..=20 {
            let below = format!("e{}", i - 1);
            evaluators.insert(format!("e{i}"), json!({"or": [{"$ref": below}, {"$ref": below}]}));
        }
        let doc = json!({"$evaluators": evaluators,
                         "flags": {"h": {"state": "ENABLED", "variants": {"a": 1}, "targeting": {"$ref": "e20"}}}});
        assert!(self_contained(&doc).expect("a flagd document")[0].1.is_err(), "2^20 nodes once inlined");
    }

    #[test]
    fn a_broken_item_is_a_parse_error_flag() {
        for item in
            [json!({"key": "k", "format": "flagd"}), json!({"key": "k", "format": "flagd", "flagd": "{not json"})]
        {
            assert!(from_item("k", &item).problem().is_some(), "{item}");
        }
        let with_ref = json!({"key": "k", "format": "flagd",
                              "flagd": r#"{"state":"ENABLED","variants":{"a":1},"targeting":{"$ref":"x"}}"#});
        assert!(from_item("k", &with_ref).problem().is_some());
    }
}
