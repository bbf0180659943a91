//! Reading a flagd flag definition document into compiled flags.

use serde_json::{Map, Value};

use super::logic::{self, CompileError};
use super::{schema, FlagdBody, FlagdFlag};

/// Why a document could not be read at all (a bad single flag never causes this).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// The document is not an object whose `flags` is an object.
    #[error("a flagd document is an object whose `flags` is an object")]
    Shape,
    /// `$evaluators` or `metadata` is present but not an object.
    #[error("`{0}` must be an object")]
    NotAnObject(&'static str),
}

/// Every flag of one document, in document order.
#[derive(Debug, Default)]
pub struct FlagdSet {
    /// The compiled flags (malformed ones included, answering `PARSE_ERROR`).
    pub flags: Vec<FlagdFlag>,
}

impl FlagdSet {
    /// The flag stored under `key`.
    pub fn get(&self, key: &str) -> Option<&FlagdFlag> {
        self.flags.iter().find(|f| &*f.key == key)
    }
}

/// Whether `doc` has flagd's shape (`flags` is an object), as opposed to the Python
/// schema's list of items: how a flags file says which format it is in.
pub fn is_flagd_document(doc: &Value) -> bool {
    doc.get("flags").is_some_and(Value::is_object)
}

/// Compiles every flag of a flagd document.
pub fn parse_document(doc: &Value) -> Result<FlagdSet, DocumentError> {
    if !is_flagd_document(doc) {
        return Err(DocumentError::Shape);
    }
    let empty = Map::new();
    let evaluators = optional_object(doc, "$evaluators")?.unwrap_or(&empty);
    let set_metadata = optional_object(doc, "metadata")?.unwrap_or(&empty);
    let flags = doc.get("flags").and_then(Value::as_object).ok_or(DocumentError::Shape)?;
    let flags = flags.iter().map(|(key, flag)| parse_flag(key, flag, evaluators, set_metadata)).collect();
    Ok(FlagdSet { flags })
}

fn optional_object<'d>(doc: &'d Value, field: &'static str) -> Result<Option<&'d Map<String, Value>>, DocumentError> {
    match doc.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(DocumentError::NotAnObject(field)),
    }
}

/// Compiles one flag definition; every problem becomes a malformed flag.
pub fn parse_flag(
    key: &str,
    flag: &Value,
    evaluators: &Map<String, Value>,
    set_metadata: &Map<String, Value>,
) -> FlagdFlag {
    let mut metadata: Map<String, Value> =
        set_metadata.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect();
    if let Some(Value::Object(own)) = flag.get("metadata") {
        for (k, v) in own.iter().filter(|(_, v)| !v.is_null()) {
            metadata.insert(k.clone(), v.clone());
        }
    }
    let body = body(key, flag, evaluators).map_err(Box::from);
    FlagdFlag { key: key.into(), metadata, body }
}

fn body(key: &str, definition: &Value, evaluators: &Map<String, Value>) -> Result<FlagdBody, String> {
    let Value::Object(flag) = definition else {
        return Err("a flag definition must be an object".into());
    };
    let enabled = match flag.get("state") {
        Some(Value::String(s)) if s == "ENABLED" => true,
        Some(Value::String(s)) if s == "DISABLED" => false,
        _ => return Err("`state` must be \"ENABLED\" or \"DISABLED\"".into()),
    };
    let variants = match flag.get("variants") {
        Some(Value::Object(variants)) if !variants.is_empty() => variants.clone(),
        _ => return Err("`variants` must be a non-empty object".into()),
    };
    let default_variant = match flag.get("defaultVariant") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) if variants.contains_key(name) => Some(name.as_str().into()),
        Some(Value::String(_)) => return Err("`defaultVariant` names no variant".into()),
        Some(_) => return Err("`defaultVariant` must be a string or null".into()),
    };
    match flag.get("metadata") {
        None | Some(Value::Null | Value::Object(_)) => {}
        Some(_) => return Err("`metadata` must be an object".into()),
    }
    // The rest of the shape flagd's schema asks for (one type for every variant,
    // plain metadata values): a flag that breaks it is malformed however it evaluates.
    if let Some(violation) = schema::check_shape(key, definition).into_iter().next() {
        return Err(format!("{} (at {})", violation.message, violation.pointer));
    }
    let targeting = match flag.get("targeting") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) if map.is_empty() => None,
        Some(logic @ Value::Object(_)) => Some(logic::compile(logic, evaluators).map_err(targeting_error)?),
        Some(_) => return Err("`targeting` must be a JSON Logic object".into()),
    };
    Ok(FlagdBody { enabled, variants, default_variant, targeting })
}

fn targeting_error(error: CompileError) -> String {
    format!("`targeting`: {error}")
}
