//! The documentation holds together: every relative link in `README.md`, `CHANGELOG.md`,
//! `docs/*.md` and the READMEs of `examples/` and `events/` resolves (the file exists, and
//! a `#anchor` is a heading of the target, slugged as GitHub does); every environment
//! variable `src/config/` reads is a row of the configuration table in
//! `docs/operations.md`; and no page points at a file outside the repository or at an
//! issue number. Each check is tried on a bad example too, so it cannot pass vacuously.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The pages users read, relative to the repository root.
fn documents() -> Vec<PathBuf> {
    let root = Path::new(ROOT);
    let mut pages = vec![
        root.join("README.md"),
        root.join("CHANGELOG.md"),
        root.join("examples/README.md"),
        root.join("events/README.md"),
    ];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("readable docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    assert!(!docs.is_empty(), "docs/ holds no .md pages");
    pages.extend(docs);
    pages
}

/// Lines outside fenced code blocks, with their 1-based numbers.
fn prose_lines(markdown: &str) -> Vec<(usize, &str)> {
    let mut in_fence = false;
    let mut lines = Vec::new();
    for (i, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if !in_fence {
            lines.push((i + 1, line));
        }
    }
    lines
}

/// A line with its inline code spans (`` `...` ``) blanked out, so a link-like text
/// inside code is not taken for a link.
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
            out.push(' ');
        } else {
            out.push(if in_code { ' ' } else { c });
        }
    }
    out
}

/// GitHub's anchor for a heading: lower case; everything but letters, digits, spaces,
/// `-` and `_` removed; spaces become `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings; a repeated heading gets `-1`, `-2`, ... as on GitHub.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (_, line) in prose_lines(markdown) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        let Some(text) = line.get(hashes..).filter(|_| (1..=6).contains(&hashes)) else { continue };
        if !text.starts_with(' ') {
            continue;
        }
        let base = slug(text.trim().trim_end_matches('#'));
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// The targets of the inline links `[text](target)` of a page, with their line numbers.
fn links(markdown: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in prose_lines(markdown) {
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or_default();
            found.push((number, target.to_owned()));
            rest = &after[end..];
        }
    }
    found
}

/// Every broken relative link of `pages`, as `page:line: target: why`.
fn broken_links(pages: &[PathBuf]) -> Vec<String> {
    let mut broken = Vec::new();
    for page in pages {
        let text = std::fs::read_to_string(page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = match target.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() { page.clone() } else { page.with_file_name("").join(file) };
            let problem = if target.is_empty() {
                Some("empty link".to_owned())
            } else if !path.exists() {
                Some(format!("{} does not exist", path.display()))
            } else {
                anchor.and_then(|anchor| match std::fs::read_to_string(&path) {
                    Ok(target_text) if anchors(&target_text).contains(anchor) => None,
                    Ok(_) => Some(format!("no heading in {} has the anchor #{anchor}", path.display())),
                    Err(_) => Some(format!("#{anchor} on {}, which is not a readable page", path.display())),
                })
            };
            if let Some(why) = problem {
                broken.push(format!("{}:{line}: ({target}): {why}", page.display()));
            }
        }
    }
    broken
}

/// The environment variables a config source reads: the upper-case string literals of
/// its non-test code (`"CACHE_TTL_SECONDS"`, `"METRICS"`, ...).
fn variables_read(source: &str) -> BTreeSet<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    code.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.len() >= 3
                && s.starts_with(|c: char| c.is_ascii_uppercase())
                && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

/// The variables named in the first column of the table under `## Configuration`.
fn configuration_table(markdown: &str) -> BTreeSet<String> {
    let mut in_section = false;
    let mut names = BTreeSet::new();
    for (_, line) in prose_lines(markdown) {
        if line.starts_with("## ") {
            in_section = line.trim() == "## Configuration";
            continue;
        }
        let Some(row) = line.strip_prefix("| `").filter(|_| in_section) else { continue };
        if let Some((name, _)) = row.split_once('`') {
            names.insert(name.to_owned());
        }
    }
    names
}

/// Mentions a user cannot follow: a file outside the repository, or an issue number.
fn outside_references(markdown: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (number, line) in markdown.lines().enumerate() {
        let lower = line.to_lowercase();
        let issue_number = lower.match_indices("issue").any(|(at, word)| {
            let after = lower[at + word.len()..].trim_start_matches(['s', ' ', '#']);
            after.starts_with(|c: char| c.is_ascii_digit())
        });
        if line.contains("SPEC") || line.contains("../shared") || issue_number {
            found.push(format!("line {}: {}", number + 1, line.trim()));
        }
    }
    found
}

#[test]
fn every_relative_link_resolves() {
    let pages = documents();
    let broken = broken_links(&pages);
    assert!(broken.is_empty(), "broken links in the documentation:\n{}", broken.join("\n"));
    let checked: usize = pages.iter().map(|p| links(&std::fs::read_to_string(p).expect("readable")).len()).sum();
    assert!(checked > 50, "only {checked} links found: is the link parser broken?");
}

#[test]
fn every_configuration_variable_is_in_the_table() {
    let config = Path::new(ROOT).join("src/config");
    let mut read = BTreeSet::new();
    for entry in std::fs::read_dir(&config).expect("src/config exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            read.extend(variables_read(&std::fs::read_to_string(&path).expect("readable source")));
        }
    }
    assert!(read.contains("CACHE_TTL_SECONDS") && read.contains("METRICS"), "variables found: {read:?}");
    let operations = std::fs::read_to_string(Path::new(ROOT).join("docs/operations.md")).expect("docs/operations.md");
    let table = configuration_table(&operations);
    let missing: Vec<_> = read.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "src/config/ reads these variables, but the configuration table of docs/operations.md has no row for them: {missing:?}"
    );
}

#[test]
fn no_page_points_outside_the_repository_or_at_issue_numbers() {
    let mut found = Vec::new();
    for page in documents() {
        let text = std::fs::read_to_string(&page).expect("readable");
        found.extend(outside_references(&text).into_iter().map(|m| format!("{}: {m}", page.display())));
    }
    assert!(found.is_empty(), "point at a docs/ page instead:\n{}", found.join("\n"));
}

// The checkers themselves, on bad examples.

#[test]
fn slugs_are_github_anchors() {
    assert_eq!(slug("`targeting_rules`: the Python clauses"), "targeting_rules-the-python-clauses");
    assert_eq!(slug("Lambda Duration and the amortized flush"), "lambda-duration-and-the-amortized-flush");
    assert_eq!(slug("Events: memory, flush & shutdown"), "events-memory-flush--shutdown");
    let page = "# Title\n## Same\n```\n## not a heading\n```\n## Same\n#nospace\n";
    let found = anchors(page);
    assert_eq!(found, ["same", "same-1", "title"].map(String::from).into_iter().collect());
}

#[test]
fn links_are_found_outside_code_only() {
    let page = "see [a](a.md) and [b](b.md#x \"title\")\n`[no](code.md)`\n```\n[no](fence.md)\n```\n";
    let found: Vec<_> = links(page).into_iter().map(|(_, t)| t).collect();
    assert_eq!(found, ["a.md", "b.md#x"]);
}

#[test]
fn the_link_checker_reports_a_missing_file_and_a_missing_anchor() {
    let dir = std::env::temp_dir().join(format!("flagfn-docs-test-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).expect("temp dir");
    std::fs::write(dir.join("sub/target.md"), "# Target\n## Real heading\n").expect("write");
    let page = dir.join("page.md");
    std::fs::write(
        &page,
        "[ok](sub/target.md) [ok](sub/target.md#real-heading) [ok](#here) [web](https://x.test/y)\n\
         ## Here\n\
         [gone](sub/missing.md) [bad anchor](sub/target.md#nowhere) [bad local](#elsewhere)\n",
    )
    .expect("write");
    let broken = broken_links(&[page]);
    std::fs::remove_dir_all(&dir).expect("clean up");
    assert_eq!(broken.len(), 3, "{broken:#?}");
    assert!(broken[0].contains("page.md:3: (sub/missing.md)") && broken[0].contains("does not exist"), "{broken:#?}");
    assert!(broken[1].contains("(sub/target.md#nowhere)") && broken[1].contains("#nowhere"), "{broken:#?}");
    assert!(broken[2].contains("(#elsewhere)"), "{broken:#?}");
}

#[test]
fn the_variable_check_sees_a_missing_row() {
    let source = "let a = get(\"NEW_VARIABLE\");\nlet b = number(&get, \"CACHE_TTL_SECONDS\", 1)?;\n\
                  let s = \"lower case\";\n#[cfg(test)]\nmod tests { const X: &str = \"TEST_ONLY\"; }\n";
    let read = variables_read(source);
    assert_eq!(read, ["CACHE_TTL_SECONDS", "NEW_VARIABLE"].map(String::from).into_iter().collect());
    let page = "## Configuration\n| variable | default |\n|---|---|\n| `CACHE_TTL_SECONDS` | 300 |\n\
                ## Other\n| `NEW_VARIABLE` | elsewhere |\n";
    let table = configuration_table(page);
    assert_eq!(read.difference(&table).collect::<Vec<_>>(), [&"NEW_VARIABLE".to_owned()]);
}

#[test]
fn outside_references_are_found() {
    let page = "fine\nsee SPEC §3\nissue 14 did it\nIssues #9\n../shared/x.md\nan issue with it\n";
    let found = outside_references(page);
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(found[0].starts_with("line 2:") && found[3].starts_with("line 5:"), "{found:#?}");
}
