//! What keeps the Lambda package small (docs/performance.md, "The package"): the release
//! profile — the one `sam build` uses — is stripped; benches and profiling keep their line
//! tables in their own profiles; the AWS SDK crates build without their default features,
//! so the lock file holds one TLS stack; and `scripts/package.py`, behind `make package`,
//! fails a package over its budget.

use std::path::{Path, PathBuf};
use std::process::Command;

fn read(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `key = value` lines of one `[section]` of a TOML file, values as written.
fn section(toml: &str, name: &str) -> Vec<(String, String)> {
    let header = format!("[{name}]");
    let mut lines = toml.lines().skip_while(|l| l.trim() != header);
    assert!(lines.next().is_some(), "Cargo.toml has a {header} section");
    lines
        .map(str::trim)
        .take_while(|l| !l.starts_with('['))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.split('#').next().unwrap_or_default().trim().to_owned()))
        .collect()
}

fn setting(toml: &str, name: &str, key: &str) -> Option<String> {
    section(toml, name).into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

#[test]
fn the_shipping_profile_is_stripped_and_benches_keep_line_tables() {
    let toml = read("Cargo.toml");
    // `cargo lambda build --release` (what `sam build` runs) can only pick `release`.
    assert_eq!(setting(&toml, "profile.release", "strip").as_deref(), Some("\"symbols\""));
    assert_eq!(setting(&toml, "profile.release", "debug").as_deref(), Some("false"));
    // An override of the root package makes cargo pass `-C strip=debuginfo` for the
    // binary, symbol table kept: flagfn's opt-level is the profile's own, the
    // dependencies' the `"*"` override's.
    assert!(!toml.lines().any(|l| l.trim() == "[profile.release.package.flagfn]"), "no override of flagfn itself");
    assert_eq!(setting(&toml, "profile.release", "opt-level").as_deref(), Some("3"));
    assert_eq!(setting(&toml, "profile.release.package.\"*\"", "opt-level").as_deref(), Some("\"z\""));
    // The crates an evaluation runs through stay at full speed (the benches' figures).
    for hot in
        ["md-5", "serde_json", "murmur3", "regex-automata", "hashbrown", "lru", "tokio", "hyper", "lambda_runtime"]
    {
        let section = format!("profile.release.package.{hot}");
        assert_eq!(setting(&toml, &section, "opt-level").as_deref(), Some("3"), "{hot} is on the request path");
    }
    // A panic in a handler fails that invocation only (lambda_runtime catches it); abort
    // would end the environment, its warm cache and its unsent events.
    assert_eq!(setting(&toml, "profile.release", "panic"), None, "panics unwind");
    for profile in ["profile.bench", "profile.profiling"] {
        assert_eq!(setting(&toml, profile, "debug").as_deref(), Some("\"line-tables-only\""), "{profile}");
        assert_eq!(setting(&toml, profile, "strip").as_deref(), Some("\"none\""), "{profile}");
    }
    assert_eq!(setting(&toml, "profile.profiling", "inherits").as_deref(), Some("\"release\""));
}

#[test]
fn aws_crates_build_without_their_default_features() {
    let toml = read("Cargo.toml");
    let deps: Vec<&str> = toml
        .lines()
        .filter(|l| l.starts_with("aws-config") || l.starts_with("aws-sdk-") || l.starts_with("aws-smithy-http-client"))
        .collect();
    assert!(deps.len() >= 5, "found the AWS dependencies: {deps:?}");
    for dep in deps {
        assert!(dep.contains("default-features = false"), "{dep}");
    }
}

/// Versions of a package in the lock file.
fn locked(lock: &str, name: &str) -> Vec<String> {
    let header = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    let mut versions = Vec::new();
    while let Some(line) = lines.next() {
        if line == header {
            let version = lines.next().unwrap_or_default();
            versions.push(version.trim_start_matches("version = ").trim_matches('"').to_owned());
        }
    }
    versions
}

#[test]
fn the_lock_file_holds_one_tls_stack() {
    let lock = read("Cargo.lock");
    for other in ["aws-lc-rs", "aws-lc-sys", "aws-lc-fips-sys", "openssl-sys", "native-tls", "s2n-tls"] {
        assert_eq!(locked(&lock, other), Vec::<String>::new(), "{other} is a second TLS stack");
    }
    assert_eq!(locked(&lock, "ring").len(), 1, "ring, once");
    assert_eq!(locked(&lock, "rustls").len(), 1, "one rustls");
    assert_eq!(locked(&lock, "hyper-rustls").len(), 1, "one hyper-rustls");
    // hyper 0.14 came only with the SDK's legacy client and its own rustls.
    assert!(locked(&lock, "hyper").iter().all(|v| v.starts_with("1.")), "{:?}", locked(&lock, "hyper"));
}

/// A file of `len` bytes that deflate cannot shrink (xorshift output).
fn incompressible(path: &Path, len: usize) {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    std::fs::write(path, bytes).expect("write the file");
}

fn package(bootstrap: &Path) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/package.py");
    let zip = bootstrap.with_extension("zip");
    let out = Command::new("python3").arg(script).arg(bootstrap).arg("--zip").arg(&zip).output().expect("python3 runs");
    let _ = std::fs::remove_file(zip);
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("flagfn-package-{}-{name}", std::process::id()))
}

#[test]
fn the_package_check_fails_over_budget_and_prints_both_sizes() {
    let big = scratch("big");
    incompressible(&big, 13 << 20);
    let (ok, text) = package(&big);
    assert!(!ok, "13 MiB passed: {text}");
    assert!(text.contains("13.00 MiB") && text.contains("zipped"), "both sizes: {text}");
    assert!(text.contains("over 12 MiB") && text.contains("zip is over 4 MiB"), "{text}");
    let _ = std::fs::remove_file(&big);

    let dense = scratch("dense");
    incompressible(&dense, 5 << 20);
    let (ok, text) = package(&dense);
    assert!(!ok && text.contains("zip is over 4 MiB") && !text.contains("bootstrap is over"), "{text}");
    let _ = std::fs::remove_file(&dense);
}

#[test]
fn the_package_check_rejects_an_unstripped_binary_and_passes_a_stripped_one() {
    // A minimal 64-bit ELF header for aarch64 and nothing else: no sections, so stripped.
    let mut elf = vec![0u8; 64];
    elf[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
    elf[18..20].copy_from_slice(&183u16.to_le_bytes());
    let small = scratch("small");
    std::fs::write(&small, &elf).expect("write");
    let (ok, text) = package(&small);
    assert!(ok, "{text}");
    let _ = std::fs::remove_file(&small);

    // This test binary itself: built with symbols (the test profile does not strip).
    let me = std::env::current_exe().expect("the test binary");
    let (ok, text) = package(&me);
    assert!(!ok && text.contains("not stripped"), "{text}");
}

/// The SDK crates carry no HTTP client of their own (no default features), so a config
/// built any other way than through `flagfn::aws::loader` fails every call at run time
/// ("No HTTP client was available"). Nothing but `src/aws.rs` may build one.
#[test]
fn every_sdk_config_is_built_through_the_one_loader() {
    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("readable").flatten() {
            let path = entry.path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    let forbidden =
        ["aws_config::defaults(", "aws_config::load_from_env", "aws_config::load_defaults", "aws_config::from_env("];
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| !f.ends_with("src/aws.rs") && !f.ends_with("tests/package.rs"))
        .filter(|f| std::fs::read_to_string(f).is_ok_and(|text| forbidden.iter().any(|p| text.contains(p))))
        .map(|f| f.display().to_string())
        .collect();
    assert!(offenders.is_empty(), "build SDK configs with flagfn::aws::loader(): {offenders:?}");
}
