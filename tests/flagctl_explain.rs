//! `flagctl explain` end to end: the real binary over the fixture flags (files, and the
//! table on moto), for a targeted, a rolled-out and a split user. The buckets and points
//! it prints are checked against the formulas of docs/flag-format.md, computed here independently with MD5.

mod common;

use std::process::Command;

use common::moto::{shared_moto, unique_name};
use md5::{Digest, Md5};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/flagctl/flags");

/// `flagctl explain KEY --user USER [extra...]`: (exit code, stdout, stderr).
fn explain(endpoint: &str, key: &str, user: &str, extra: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_flagctl"))
        .args(["explain", key, "--user", user])
        .args(extra)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("FLAGS_TABLE")
        .output()
        .expect("run flagctl");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

fn from_files(key: &str, user: &str, context: Option<&str>) -> String {
    let mut extra = vec!["--file", FIXTURES];
    if let Some(context) = context {
        extra.extend(["--context", context]);
    }
    let (code, stdout, stderr) = explain("http://127.0.0.1:9", key, user, &extra);
    assert_eq!(code, 0, "{stderr}");
    stdout
}

/// `h`: the first four bytes of MD5, little-endian.
fn h(s: &str) -> u32 {
    let digest = Md5::digest(s.as_bytes());
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

#[test]
fn a_targeted_user_is_decided_by_the_targets_entry() {
    let out = from_files("new-search", "alice", None);
    assert!(out.contains("4. targets[0] lists \"alice\" → serve {\"enabled\":true} (target_match)\n"), "{out}");
    assert!(out.ends_with("result: enabled=true, reason=target_match, variant=none\n"), "{out}");
    assert!(!out.contains("5. rules"), "the path stops where the decision is made:\n{out}");

    // Not targeted: the rule decides, showing the attribute value it saw.
    let out = from_files("new-search", "zed", Some(r#"{"email": "zed@example.com"}"#));
    assert!(out.contains("4. targets: no entry lists \"zed\"\n"), "{out}");
    assert!(out.contains("     email ends_with \"@example.com\": saw \"zed@example.com\" → match\n"), "{out}");
    assert!(out.ends_with("result: enabled=true, reason=rule_match, variant=none\n"), "{out}");
    let out = from_files("new-search", "zed", Some(r#"{"email": "zed@elsewhere.org"}"#));
    assert!(out.contains("saw \"zed@elsewhere.org\" → no match"), "{out}");
    assert!(out.contains("7. rollout: 0% → nobody (not_in_rollout) (no hash)"), "{out}");
    assert!(out.ends_with("result: enabled=false, reason=not_in_rollout, variant=none\n"), "{out}");
}

#[test]
fn a_rolled_out_user_sees_the_bucket_of_spec_3_and_the_threshold() {
    let (mut inside, mut outside) = (0, 0);
    for i in 0..40 {
        let user = format!("user-{i}");
        let out = from_files("beta-banner", &user, None);
        let bucket = h(&format!("{user}:beta-banner")) % 100;
        let admitted = bucket < 50;
        let line = format!(
            "7. rollout: bucket = h(\"{user}:beta-banner\") % 100 = {bucket}; threshold 50 → {bucket} < 50? {}\n",
            if admitted { "in" } else { "out (not_in_rollout)" }
        );
        assert!(out.contains(&line), "{line}\n{out}");
        let result = if admitted { "enabled=true, reason=enabled" } else { "enabled=false, reason=not_in_rollout" };
        assert!(out.ends_with(&format!("result: {result}, variant=none\n")), "{out}");
        if admitted {
            inside += 1
        } else {
            outside += 1
        }
    }
    assert!(inside > 0 && outside > 0, "both sides of the threshold were explained");
    // The golden vector of docs/flag-format.md.
    assert_eq!(h("user-123:my-flag") % 100, 59);
}

#[test]
fn a_split_user_sees_the_point_of_spec_3_and_the_cumulative_allocations() {
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..30 {
        let user = format!("user-{i}");
        let out = from_files("checkout", &user, Some(r#"{"plan": "pro"}"#));
        assert!(out.contains("     plan in [\"pro\",\"enterprise\"]: saw \"pro\" → match\n"), "{out}");
        let hash = h(&format!("{user}:checkout_variant"));
        let point = f64::from(hash) / 4_294_967_295.0;
        let line = format!(
            "8. variant: point = h(\"{user}:checkout_variant\") / 4294967295 = {hash} / 4294967295 = {point:.6}\n"
        );
        assert!(out.contains(&line), "{line}\n{out}");
        let expected = if point < 0.5 { "control" } else { "treatment" };
        let control = format!(
            "     \"control\"      allocation 0.5    cumulative 0.500000{}\n",
            if expected == "control" { "  ← first with point < cumulative" } else { "" }
        );
        assert!(out.contains(&control), "{control}\n{out}");
        assert!(out.contains("     \"treatment\"    allocation 0.5    cumulative 1.000000"), "{out}");
        assert!(out.ends_with(&format!("result: enabled=true, reason=enabled, variant=\"{expected}\"\n")), "{out}");
        seen.insert(expected);
    }
    assert_eq!(seen.len(), 2, "users on both sides of the split were explained");

    let out = from_files("pricing", "u1", Some(r#"{"account_id": 1}"#));
    assert!(out.contains("     account_id greater_than 9007199254740992: saw 1 → no match\n"), "{out}");
    assert!(out.ends_with("result: enabled=false, reason=targeting_rules_not_met, variant=none\n"), "{out}");
}

#[tokio::test]
async fn explain_reads_the_table_too_and_refuses_bad_input() {
    let moto = shared_moto();
    let table = unique_name("ctl-explain");
    common::dynamo::seed_with_boto3(
        &moto.endpoint(),
        &table,
        &serde_json::json!([{"key": "beta-banner", "enabled": true, "rollout_percentage": 50.0, "version": 4}]),
    );
    let (code, out, err) = explain(&moto.endpoint(), "beta-banner", "user-123", &["--table", &table]);
    assert_eq!(code, 0, "{err}");
    let bucket = h("user-123:beta-banner") % 100;
    assert!(out.starts_with("flag beta-banner (version 4) for user \"user-123\"\n"), "{out}");
    assert!(out.contains(&format!("% 100 = {bucket}; threshold 50")), "{out}");

    let (code, _, err) = explain(&moto.endpoint(), "nope", "u", &["--table", &table]);
    assert_eq!((code, err.as_str()), (1, "nope: key: no such flag\n"));
    let (code, _, err) = explain("http://127.0.0.1:9", "checkout", "u", &["--file", FIXTURES, "--context", "[1]"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("--context: -: must be a JSON object"), "{err}");
}

#[test]
fn bucket_by_serve_rollouts_and_short_circuits_are_shown_as_the_evaluator_ran_them() {
    let dir = std::env::temp_dir().join(unique_name("flagctl-explain-org"));
    std::fs::create_dir_all(&dir).unwrap();
    let flag = serde_json::json!({
        "key": "org-rollout", "enabled": true, "rollout_percentage": 30, "bucket_by": "org",
        "targeting_rules": [{"attribute": "plan", "operator": "equals", "value": "pro"},
                            {"attribute": "country", "operator": "in", "value": ["DE"]}],
        "rules": [{"id": "beta", "clauses": [{"attribute": "beta", "operator": "equals", "value": true}],
                   "serve": {"rollout_percentage": 50}}]
    });
    std::fs::write(dir.join("org-rollout.json"), flag.to_string()).unwrap();
    let dir = dir.to_str().unwrap().to_owned();
    let run = |context: &str| {
        let (code, out, err) =
            explain("http://127.0.0.1:9", "org-rollout", "u-1", &["--file", &dir, "--context", context]);
        assert_eq!(code, 0, "{err}");
        out
    };

    // The first clause fails, so the evaluator never looks at the second.
    let out = run(r#"{"org": "acme", "plan": "free", "country": "DE"}"#);
    assert!(out.contains("     beta equals true: saw <absent> → no match\n"), "{out}");
    assert!(out.contains("     plan equals \"pro\": saw \"free\" → no match\n"), "{out}");
    assert!(out.contains("     country in [\"DE\"]: saw \"DE\" → not evaluated\n"), "{out}");
    assert!(out.ends_with("result: enabled=false, reason=targeting_rules_not_met, variant=none\n"), "{out}");

    // The organisation is hashed, not the user.
    let out = run(r#"{"org": "acme", "plan": "pro", "country": "DE"}"#);
    let bucket = h("acme:org-rollout") % 100;
    assert!(
        out.contains(&format!("7. rollout: bucket = h(\"acme:org-rollout\") % 100 = {bucket}; threshold 30")),
        "{out}"
    );
    let result = if bucket < 30 { "enabled=true, reason=enabled" } else { "enabled=false, reason=not_in_rollout" };
    assert!(out.ends_with(&format!("result: {result}, variant=none\n")), "{out}");

    // A matching rule's own rollout: h("{id}:{flag_key}:{rule_id}").
    let out = run(r#"{"org": "acme", "beta": true}"#);
    let bucket = h("acme:org-rollout:beta") % 100;
    assert!(out.contains("   → rule \"beta\" matches: serve {\"rollout_percentage\":50} (rule_match)\n"), "{out}");
    assert!(
        out.contains(&format!(
            "   serve rollout: bucket = h(\"acme:org-rollout:beta\") % 100 = {bucket}; threshold 50"
        )),
        "{out}"
    );
    assert!(out.ends_with(&format!("result: enabled={}, reason=rule_match, variant=none\n", bucket < 50)), "{out}");

    // A blank user where the answer needs one: the evaluator's error, and no bucket.
    let (code, out, _) =
        explain("http://127.0.0.1:9", "checkout", " ", &["--file", FIXTURES, "--context", r#"{"plan": "pro"}"#]);
    assert_eq!(code, 0);
    assert!(out.contains("8. variant: no point was computed (see the result)\n"), "{out}");
    assert!(out.ends_with("result: enabled=false, reason=error, variant=none, error TARGETING_KEY_MISSING: this flag needs a user id (targetingKey) and none was given\n"), "{out}");
}

/// In `targeting_rules`, an operator Python did not know never matches and `negate` is
/// ignored (Python's reading); explain says so on the clause's line.
#[test]
fn explain_says_which_targeting_rules_clauses_python_could_not_read() {
    let dir = std::env::temp_dir().join(unique_name("flagctl-explain-python"));
    std::fs::create_dir_all(&dir).unwrap();
    let flag = serde_json::json!({
        "key": "python-reading", "enabled": true, "rollout_percentage": 100,
        "targeting_rules": [{"attribute": "plan", "operator": "equals", "value": "pro", "negate": true},
                            {"attribute": "plan", "operator": "exists"}]
    });
    std::fs::write(dir.join("python-reading.json"), flag.to_string()).unwrap();
    let dir = dir.to_str().unwrap().to_owned();
    let (code, out, err) =
        explain("http://127.0.0.1:9", "python-reading", "u-1", &["--file", &dir, "--context", r#"{"plan": "pro"}"#]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "     plan equals \"pro\": saw \"pro\" → match \
             [`negate` is ignored in targeting_rules (Python never read it)]\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "     plan exists <absent>: saw \"pro\" → no match \
             [operator `exists` is not one Python knew: never matches in targeting_rules]\n"
        ),
        "{out}"
    );
    assert!(out.ends_with("result: enabled=false, reason=targeting_rules_not_met, variant=none\n"), "{out}");
}

#[test]
fn a_flagd_flag_is_explained_with_its_bucket_under_either_bucketing() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/flagd.json");
    for (fractional, heading) in [("v2", "bucketing v2"), ("v3", "bucketing v3")] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_flagctl"))
            .args(["explain", "banner-color", "--user", "user-7", "--file", example, "--fractional", fractional])
            .env_remove("FLAGS_TABLE")
            .env_remove("FLAGD_FRACTIONAL")
            .output()
            .expect("run flagctl");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{text}");
        assert!(text.contains(heading) && text.contains("of 100") && text.contains("<- chosen"), "{text}");
        assert!(text.contains("result: reason=TARGETING_MATCH"), "{text}");
    }
}
