//! The module graph stated in `src/lib.rs` holds. Every `crate::` path in
//! non-test code must name a module listed before (inside) the importing one, so no
//! import circle can come back unnoticed.

use std::path::Path;

/// The layers of `src/lib.rs`, from the leaves outwards.
const ORDER: &[&str] = &[
    "bucket",
    "backoff",
    "clock",
    "aws",
    "flagd",
    "config",
    "flag",
    "eval",
    "outcome",
    "store",
    "sink",
    "cache",
    "resolve",
    "freshness",
    "events",
    "metrics",
    "changes",
    "app",
    "api",
    "lambda",
    "lambda_stream",
    "server",
    "ctl",
];

fn rank(module: &str) -> Option<usize> {
    ORDER.iter().position(|m| *m == module)
}

/// The non-test text of a source file: everything before its first `#[cfg(test)]`
/// (test modules sit at the end of a file), and nothing of a file that is a test module.
fn production_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("readable source");
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    match text.find("#[cfg(test)]") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// Every `crate::<module>` named in `code`, outside comments.
fn imported_modules(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            found.push(name);
        }
    }
    found
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn imports_only_point_inwards() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut checked = 0;
    let mut outward = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative.components().next().expect("a component").as_os_str().to_string_lossy();
        let module = first.trim_end_matches(".rs");
        let Some(own) = rank(module) else {
            continue; // lib.rs, main.rs and the flagctl binary sit above every layer
        };
        for imported in imported_modules(&production_code(file)) {
            let Some(theirs) = rank(&imported) else {
                outward.push(format!("{}: crate::{imported} is not in the module map", relative.display()));
                continue;
            };
            checked += 1;
            if theirs > own {
                outward.push(format!("{}: `{module}` imports `{imported}`, listed after it", relative.display()));
            }
        }
    }
    assert!(checked > 50, "the scan found the imports ({checked})");
    assert!(outward.is_empty(), "imports pointing outwards:\n{}", outward.join("\n"));
}

#[test]
fn the_checker_sees_an_outward_import() {
    // The scan itself: a path in code counts, one in a comment or a test module does not.
    let code = "use crate::app::App; // crate::lambda\nfn f() { crate::events::x() }\n";
    assert_eq!(imported_modules(code), ["app", "events"]);
    assert!(rank("app") > rank("events"));
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs");
    let text = std::fs::read_to_string(lib).expect("lib.rs");
    for module in ORDER {
        assert!(text.contains(&format!("pub mod {module};")), "{module} is a module of the crate");
    }
}
