//! Flag files. A path is either a directory holding one flag per file (`<key>.json`,
//! `<key>.yaml`, `<key>.yml`; a file there may also hold `{"flags": [...]}`), or one file
//! holding `{"flags": [...]}` (or a bare list, as a local flags file may). YAML is read
//! with `serde_yaml_ng` into the same JSON model, so both formats mean the same thing.
//!
//! Numbers are kept as JSON numbers: 64-bit integers exactly, other numbers as the double
//! they denote (printed back in its shortest exact form), which is also how they travel to
//! DynamoDB — so `export` then `diff` compares equal numbers equal.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::cli::Format;
use super::{CtlError, Problem};

/// One flag document read from a file.
#[derive(Debug, Clone)]
pub struct FlagFile {
    /// Where it came from, for messages: the file, with `[i]` inside a list.
    pub origin: String,
    /// The file name without extension, for a one-flag file (compared with the key).
    pub stem: Option<String>,
    /// The document as written.
    pub doc: Value,
}

/// Reads every flag under `path`. Files that cannot be parsed are problems (the whole set
/// is then unusable); flags inside are returned as written, unchecked.
pub fn load(path: &Path) -> Result<Vec<FlagFile>, CtlError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| CtlError::input(path.display().to_string(), "-", format!("cannot read: {e}")))?;
    let files = if meta.is_dir() { flag_files_in(path)? } else { vec![path.to_path_buf()] };
    let mut flags = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        match load_file(&file) {
            Ok(found) => flags.extend(found),
            Err(found) => problems.extend(found),
        }
    }
    if problems.is_empty() {
        Ok(flags)
    } else {
        Err(CtlError::Input(problems))
    }
}

/// The flag files of a directory, sorted by name (not recursive; other files ignored).
fn flag_files_in(dir: &Path) -> Result<Vec<PathBuf>, CtlError> {
    let unreadable = |e: std::io::Error| CtlError::input(dir.display().to_string(), "-", format!("cannot list: {e}"));
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        if path.is_file() && extension(&path).is_some() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The format a file name says, if it names a flag file.
fn extension(path: &Path) -> Option<Format> {
    match path.extension()?.to_str()? {
        "json" => Some(Format::Json),
        "yaml" | "yml" => Some(Format::Yaml),
        _ => None,
    }
}

fn load_file(path: &Path) -> Result<Vec<FlagFile>, Vec<Problem>> {
    let origin = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| vec![Problem::new(&origin, "-", format!("cannot read: {e}"))])?;
    let doc = match extension(path) {
        Some(Format::Yaml) => parse_yaml(&text),
        _ => serde_json::from_str(&text).map_err(|e| format!("not valid JSON: {e}")),
    }
    .map_err(|message| vec![Problem::new(&origin, "-", message)])?;
    if crate::flagd::is_flagd_document(&doc) {
        return flagd_items(origin, &doc);
    }
    let items = match doc {
        Value::Array(items) => items,
        Value::Object(mut map) if !map.contains_key("key") && map.contains_key("flags") => match map.remove("flags") {
            Some(Value::Array(items)) => items,
            _ => return Err(vec![Problem::new(&origin, "flags", "must be a list of flags")]),
        },
        doc @ Value::Object(_) => {
            let stem = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned);
            return Ok(vec![FlagFile { origin, stem, doc }]);
        }
        _ => return Err(vec![Problem::new(&origin, "-", "must be a flag (an object), {\"flags\": [...]} or a list")]),
    };
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, doc)| FlagFile { origin: format!("{origin}[{i}]"), stem: None, doc })
        .collect())
}

/// A flagd document's flags as the items they are stored as (one self-contained item
/// per flag: `$ref`s inlined, flag-set metadata merged). A flag whose `$ref`s cannot be
/// inlined keeps its definition as written, so the check reports why it cannot compile.
/// What flagd's schema says of the set itself (its metadata, its `$evaluators`, empty
/// flag keys) refuses the whole document: every flag is written with them.
fn flagd_items(origin: String, doc: &Value) -> Result<Vec<FlagFile>, Vec<Problem>> {
    let violations = crate::flagd::schema::check_set(doc);
    if !violations.is_empty() {
        return Err(violations.into_iter().map(|v| Problem::new(&origin, v.pointer, v.message)).collect());
    }
    let definitions =
        crate::flagd::stored::self_contained(doc).map_err(|why| vec![Problem::new(&origin, "flags", why)])?;
    Ok(definitions
        .into_iter()
        .map(|(key, definition)| {
            let definition = definition.unwrap_or_else(|_| doc["flags"][&key].clone());
            let item = serde_json::json!({"key": key, "format": crate::flagd::stored::FORMAT, "flagd": definition.to_string()});
            FlagFile { origin: origin.clone(), stem: None, doc: item }
        })
        .collect())
}

/// YAML into the JSON model. Values JSON cannot hold (`.nan`, `.inf`, non-string keys,
/// tags) are errors rather than silently becoming something else.
fn parse_yaml(text: &str) -> Result<Value, String> {
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    check_yaml(&yaml)?;
    serde_json::to_value(&yaml).map_err(|e| format!("YAML that JSON cannot hold: {e}"))
}

fn check_yaml(value: &serde_yaml_ng::Value) -> Result<(), String> {
    use serde_yaml_ng::Value as Y;
    match value {
        Y::Number(n) if n.as_f64().is_some_and(|f| !f.is_finite()) => {
            Err(format!("not a finite number: {n} (JSON and DynamoDB have no such number)"))
        }
        Y::Sequence(items) => items.iter().try_for_each(check_yaml),
        Y::Mapping(map) => map.iter().try_for_each(|(k, v)| match k {
            Y::String(_) => check_yaml(v),
            other => Err(format!("a map key must be a string, got {other:?}")),
        }),
        Y::Tagged(tagged) => Err(format!("YAML tags are not flag data: {}", tagged.tag)),
        _ => Ok(()),
    }
}

/// Whether a key can be a file name as it is (`<key>.json`) on every common file system.
fn safe_file_name(key: &str) -> bool {
    let mut chars = key.chars();
    key.len() <= 200
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The file that holds flags whose keys cannot be file names (it cannot clash with one:
/// safe names start with a letter or digit).
const OTHER_KEYS: &str = "_flags";

/// The file that holds every flagd flag, as one flagd document (`{"flags": {key: ...}}`):
/// what a flagd user edits and applies back, and what flagd itself reads. Its name
/// cannot clash with a one-flag file either.
const FLAGD_DOCUMENT: &str = "_flagd";

/// Writes `flags` (key → document, in key order) into `dir`, which must be empty or absent:
/// `<key>.<ext>` per flag, `_flags.<ext>` (`{"flags": [...]}`) for keys that cannot be
/// file names, and `_flagd.<ext>`, one flagd document, for every flagd flag. Returns the
/// files written.
pub fn export(dir: &Path, flags: &[(String, Map<String, Value>)], format: Format) -> Result<Vec<PathBuf>, CtlError> {
    let origin = dir.display().to_string();
    let fail = |e: std::io::Error| CtlError::input(&origin, "-", format!("cannot write: {e}"));
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(CtlError::input(&origin, "-", "the directory is not empty; export into a new or empty directory"));
    }
    std::fs::create_dir_all(dir).map_err(fail)?;
    let ext = match format {
        Format::Json => "json",
        Format::Yaml => "yaml",
    };
    let mut written = Vec::new();
    let mut others = Vec::new();
    let mut flagd = Map::new();
    for (key, doc) in flags {
        if let Some(definition) = flagd_definition(doc) {
            flagd.insert(key.clone(), definition);
        } else if safe_file_name(key) {
            let path = dir.join(format!("{key}.{ext}"));
            std::fs::write(&path, render(&Value::Object(doc.clone()), format)?).map_err(fail)?;
            written.push(path);
        } else {
            others.push(Value::Object(doc.clone()));
        }
    }
    if !others.is_empty() {
        let path = dir.join(format!("{OTHER_KEYS}.{ext}"));
        let collection = Value::Object(Map::from_iter([("flags".to_owned(), Value::Array(others))]));
        std::fs::write(&path, render(&collection, format)?).map_err(fail)?;
        written.push(path);
    }
    if !flagd.is_empty() {
        let path = dir.join(format!("{FLAGD_DOCUMENT}.{ext}"));
        let document = Value::Object(Map::from_iter([("flags".to_owned(), Value::Object(flagd))]));
        std::fs::write(&path, render(&document, format)?).map_err(fail)?;
        written.push(path);
    }
    Ok(written)
}

/// A stored flagd item's definition, when it reads as one (an item that does not is
/// exported as it is stored, so nothing is lost and `validate` says what is wrong).
fn flagd_definition(doc: &Map<String, Value>) -> Option<Value> {
    if doc.get("format").and_then(Value::as_str) != Some(crate::flagd::stored::FORMAT) {
        return None;
    }
    let definition: Value = serde_json::from_str(doc.get("flagd")?.as_str()?).ok()?;
    definition.is_object().then_some(definition)
}

fn render(value: &Value, format: Format) -> Result<String, CtlError> {
    let text = match format {
        Format::Json => serde_json::to_string_pretty(value).map(|t| t + "\n").map_err(|e| e.to_string()),
        Format::Yaml => serde_yaml_ng::to_string(value).map_err(|e| e.to_string()),
    };
    text.map_err(|e| CtlError::input("-", "-", format!("cannot render a flag: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("flagctl-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn a_directory_mixes_json_yaml_and_collections() {
        let dir = temp_dir("mixed");
        std::fs::write(dir.join("a.json"), r#"{"key": "a", "enabled": true}"#).unwrap();
        std::fs::write(dir.join("b.yaml"), "key: b\nrollout_percentage: 12.5\n").unwrap();
        std::fs::write(dir.join("more.json"), r#"{"flags": [{"key": "c"}, {"key": "d"}]}"#).unwrap();
        std::fs::write(dir.join("README.md"), "not a flag").unwrap();
        let flags = load(&dir).expect("loads");
        let keys: Vec<_> = flags.iter().map(|f| f.doc["key"].as_str().unwrap().to_owned()).collect();
        assert_eq!(keys, ["a", "b", "c", "d"]);
        assert_eq!(flags[1].doc["rollout_percentage"].as_f64(), Some(12.5));
        assert_eq!(flags[1].stem.as_deref(), Some("b"));
        assert!(flags[2].origin.ends_with("more.json[0]"), "{}", flags[2].origin);
        assert_eq!(flags[2].stem, None);
    }

    #[test]
    fn unparsable_files_are_listed_each() {
        let dir = temp_dir("bad");
        std::fs::write(dir.join("a.json"), "{").unwrap();
        std::fs::write(dir.join("b.yaml"), "key: b\nrollout_percentage: .nan\n").unwrap();
        std::fs::write(dir.join("c.yaml"), "key: c\n1: one\n").unwrap();
        let Err(CtlError::Input(problems)) = load(&dir) else { panic!("must fail") };
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].to_string().contains("a.json: -: not valid JSON"), "{}", problems[0]);
        assert!(problems[1].message.contains("not a finite number"), "{}", problems[1]);
        assert!(problems[2].message.contains("map key must be a string"), "{}", problems[2]);
    }

    #[test]
    fn export_names_files_by_key_and_collects_the_rest() {
        let dir = temp_dir("export").join("out");
        let doc = |key: &str| Map::from_iter([("key".to_owned(), Value::from(key))]);
        let flags = vec![("good-key".to_owned(), doc("good-key")), ("team/odd key".to_owned(), doc("team/odd key"))];
        let written = export(&dir, &flags, Format::Json).expect("exported");
        assert_eq!(written, [dir.join("good-key.json"), dir.join("_flags.json")]);
        let again = load(&dir).expect("loads back");
        assert_eq!(again.len(), 2);
        assert!(export(&dir, &flags, Format::Json).is_err(), "a non-empty directory is refused");
    }
}
