//! `flagctl` end to end: the real binary, run as a user runs it, against a real DynamoDB
//! wire-protocol server (moto, started by the test) — and, for conflicts and STS
//! failures, through a proxy that injects them on a real socket.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;
use common::dynamo::{client, create_table, put_with_boto3, seed_with_boto3, Operations};
use common::moto::{shared_moto, unique_name};
use common::proxy::Proxy;
use serde_json::{json, Value};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/flagctl/flags");

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `flagctl args` with AWS pointed at `endpoint` and `env` set.
fn flagctl(endpoint: &str, env: &[(&str, &str)], args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_flagctl"))
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("FLAGS_TABLE")
        .env_remove("FLAGS_AUDIT_TABLE")
        .env_remove("MANIFEST_TABLE")
        .envs(env.iter().copied())
        .output()
        .expect("run flagctl");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A flags table and its audit table on moto.
struct Tables {
    endpoint: String,
    flags: String,
    audit: String,
    client: Client,
}

impl Tables {
    async fn new(endpoint: &str) -> Tables {
        let client = client(endpoint, &Operations::default()).await;
        let (flags, audit) = (unique_name("ctl-flags"), unique_name("ctl-audit"));
        create_table(&client, &flags).await;
        create_audit_table(&client, &audit).await;
        Tables { endpoint: endpoint.to_owned(), flags, audit, client }
    }

    /// `flagctl args` against these tables (through `endpoint`, e.g. a proxy).
    fn run_via(&self, endpoint: &str, args: &[&str]) -> Run {
        flagctl(endpoint, &[("FLAGS_TABLE", &self.flags), ("FLAGS_AUDIT_TABLE", &self.audit)], args)
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_via(&self.endpoint, args)
    }

    async fn item(&self, key: &str) -> Option<HashMap<String, AttributeValue>> {
        let output = self.client.get_item().table_name(&self.flags).key("key", s(key)).send().await.expect("GetItem");
        output.item
    }

    async fn doc(&self, key: &str) -> Option<Value> {
        self.item(key).await.map(|item| serde_dynamo::from_item(item).expect("item as JSON"))
    }

    /// The audit records of `key`, oldest first, as JSON.
    async fn audit_records(&self, key: &str) -> Vec<Value> {
        let output = self
            .client
            .query()
            .table_name(&self.audit)
            .key_condition_expression("#k = :k")
            .expression_attribute_names("#k", "key")
            .expression_attribute_values(":k", s(key))
            .send()
            .await
            .expect("Query");
        output.items.unwrap_or_default().into_iter().map(|i| serde_dynamo::from_item(i).expect("record")).collect()
    }
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

/// The audit table as template.yaml declares it: `key` + sort key `at`.
async fn create_audit_table(client: &Client, table: &str) {
    let attribute = |name: &str| {
        AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build().unwrap()
    };
    let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build().unwrap();
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("key", KeyType::Hash))
        .key_schema(key("at", KeyType::Range))
        .attribute_definitions(attribute("key"))
        .attribute_definitions(attribute("at"))
        .send()
        .await
        .expect("CreateTable (audit)");
}

/// A fresh copy of the fixture flags in a temp dir, to edit.
fn fixture_copy(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    for entry in std::fs::read_dir(FIXTURES).expect("fixtures") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copy");
    }
    dir
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique_name(&format!("flagctl-{name}")));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn version(doc: &Option<Value>) -> Option<u64> {
    doc.as_ref().and_then(|d| d["version"].as_u64())
}

#[test]
fn help_is_complete_for_every_subcommand() {
    let top = flagctl("http://127.0.0.1:9", &[], &["--help"]);
    assert_eq!(top.code, 0, "{top:?}");
    let subcommands = ["validate", "diff", "apply", "export", "get", "list", "set", "history", "explain"];
    for sub in subcommands {
        assert!(top.stdout.contains(&format!("\n  {sub} ")), "--help lists {sub}: {}", top.stdout);
        let help = flagctl("http://127.0.0.1:9", &[], &[sub, "--help"]);
        assert_eq!(help.code, 0, "{sub} --help: {help:?}");
        assert!(help.stdout.contains(&format!("Usage: flagctl {sub}")), "{}", help.stdout);
    }
    let apply = flagctl("http://127.0.0.1:9", &[], &["apply", "--help"]).stdout;
    for option in ["--dry-run", "--prune", "--message", "--table", "--audit-table", "FLAGS_TABLE", "FLAGS_AUDIT_TABLE"]
    {
        assert!(apply.contains(option), "apply --help mentions {option}");
    }
    let explain = flagctl("http://127.0.0.1:9", &[], &["explain", "--help"]).stdout;
    for option in ["--user", "--context", "--file", "--table"] {
        assert!(explain.contains(option), "explain --help mentions {option}");
    }
    assert!(top.stdout.contains("Exit codes: 0 ok; 1"), "the exit codes are documented");
}

#[test]
fn validate_accepts_the_fixtures_and_warns_without_failing() {
    let ok = flagctl("http://127.0.0.1:9", &[], &["validate", FIXTURES]);
    assert_eq!((ok.code, ok.stdout.as_str(), ok.stderr.as_str()), (0, "ok: 5 flag(s) valid\n", ""));

    let dir = temp_dir("warn");
    let doc = json!({"key": "other", "enabled": true, "rollout_precentage": 5, "prerequisites": [{"key": "gone"}]});
    std::fs::write(dir.join("name.json"), doc.to_string()).unwrap();
    let warned = flagctl("http://127.0.0.1:9", &[], &["validate", path(&dir)]);
    assert_eq!(warned.code, 0, "{warned:?}");
    let file = dir.join("name.json").display().to_string();
    for line in [
        format!("warning: {file}: key: key `other` differs from the file name `name`"),
        format!("warning: {file}: rollout_precentage: unknown field"),
        format!("warning: {file}: prerequisites[0].key: `gone` is not in this set of flags"),
    ] {
        assert!(warned.stderr.contains(&line), "{line}\n{}", warned.stderr);
    }
}

/// Writes each document as its own file and checks that `validate` rejects it (exit 1)
/// with a `file: field: message` line naming `field` and containing `fragment` and `also`.
fn assert_rejected(cases: &[(&str, Value, &str, &str)], also: &str) {
    let mut failures = Vec::new();
    for (name, doc, field, fragment) in cases {
        let dir = temp_dir(name);
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, doc.to_string()).unwrap();
        let run = flagctl("http://127.0.0.1:9", &[], &["validate", path(&dir)]);
        let prefix = format!("{}: {field}", file.display());
        let found =
            run.stderr.lines().any(|line| line.starts_with(&prefix) && line.contains(fragment) && line.contains(also));
        if run.code != 1 || !found {
            failures.push(format!("{name}: exit {} — expected `{prefix}…{fragment}…` in:\n{}", run.code, run.stderr));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn validate_rejects_every_malformation_naming_the_field() {
    let variants = json!([{"key": "a", "allocation": 0.5}, {"key": "b", "allocation": 0.5}]);
    let clause = |operator: &str, value: Value| json!([{"attribute": "a", "operator": operator, "value": value}]);
    assert_rejected(
        &[
            ("missing-key", json!({"enabled": true}), "key", "is required"),
            ("numeric-key", json!({"key": 7}), "key", "must be a string"),
            ("long-key", json!({"key": "k".repeat(257)}), "key", "1–256 bytes"),
            ("rollout-high", json!({"key": "rollout-high", "rollout_percentage": 120}), "rollout_percentage", "0–100"),
            (
                "rollout-text",
                json!({"key": "rollout-text", "rollout_percentage": "50"}),
                "rollout_percentage",
                "invalid type",
            ),
            ("variant-key", json!({"key": "variant-key", "variants": [{"allocation": 1}]}), "variants[0]", "key"),
            (
                "allocation",
                json!({"key": "allocation", "variants": [{"key": "a", "allocation": 1.5}]}),
                "variants[0].allocation",
                "0–1",
            ),
            (
                "regex",
                json!({"key": "regex", "targeting_rules": clause("matches", json!("("))}),
                "targeting_rules[0]",
                "regex",
            ),
            (
                "semver",
                json!({"key": "semver", "targeting_rules": clause("semver_greater_than", json!("one"))}),
                "targeting_rules[0]",
                "semver",
            ),
            (
                "serve-variant",
                json!({"key": "serve-variant", "variants": variants,
                   "rules": [{"id": "r", "clauses": [], "serve": {"variant": "nope"}}]}),
                "rules[0].serve",
                "nope",
            ),
            (
                "self-prerequisite",
                json!({"key": "self-prerequisite", "prerequisites": [{"key": "self-prerequisite"}]}),
                "prerequisites[0]",
                "cycle",
            ),
            ("wrong-type", json!({"key": "wrong-type", "enabled": "yes"}), "enabled", "invalid type"),
            ("not-object", json!(7), "-", "must be a flag (an object)"),
        ],
        "",
    );
}

#[test]
fn validate_rejects_every_lenient_reading_of_spec_1_1() {
    let clause = |clause: Value| json!([clause]);
    assert_rejected(
        &[
            (
                "no-attribute",
                json!({"key": "no-attribute", "targeting_rules": clause(json!({"operator": "equals", "value": 1}))}),
                "targeting_rules[0]",
                "attribute",
            ),
            (
                "numeric-attribute",
                json!({"key": "numeric-attribute",
                   "targeting_rules": clause(json!({"attribute": 5, "operator": "equals", "value": 1}))}),
                "targeting_rules[0]",
                "attribute",
            ),
            (
                "unknown-operator",
                json!({"key": "unknown-operator",
                   "targeting_rules": clause(json!({"attribute": "a", "operator": "resembles", "value": 1}))}),
                "targeting_rules[0]",
                "resembles",
            ),
            (
                "extension-operator",
                json!({"key": "extension-operator",
                   "targeting_rules": clause(json!({"attribute": "plan", "operator": "exists"}))}),
                "targeting_rules[0]",
                "operator `exists` is not one Python knew: never matches in targeting_rules; move this clause to `rules`",
            ),
            (
                "negate",
                json!({"key": "negate",
                   "targeting_rules": clause(json!({"attribute": "plan", "operator": "equals", "value": "pro", "negate": true}))}),
                "targeting_rules[0]",
                "has `negate`, which Python never read: ignored in targeting_rules; move this clause to `rules`",
            ),
            (
                "allocation-sum",
                json!({"key": "allocation-sum", "variants": [{"key": "a", "allocation": 0.5}, {"key": "b", "allocation": 0.3}]}),
                "variants",
                "0.8",
            ),
            (
                "default-variant",
                json!({"key": "default-variant", "default_variant": "ghost",
                   "variants": [{"key": "a", "allocation": 1}]}),
                "default_variant",
                "ghost",
            ),
        ],
        "(the function reads this leniently in existing items; new ones must not have it)",
    );
}

/// `validate --table` reads a live table (items as the Python service wrote them, with
/// boto3) and lists every item the function answers only leniently, with its fix; the
/// clean items pass; nothing is written.
#[tokio::test]
async fn validate_table_lists_every_item_read_leniently() {
    let moto = shared_moto();
    let endpoint = moto.endpoint();
    let table = unique_name("ctl-validate");
    let exists = json!({"attribute": "plan", "operator": "exists"});
    let negated = json!({"attribute": "plan", "operator": "equals", "value": "pro", "negate": true});
    seed_with_boto3(
        &endpoint,
        &table,
        &json!([
            {"key": "clean", "enabled": true, "rollout_percentage": 10.0, "version": 3,
             "targeting_rules": [{"attribute": "plan", "operator": "in", "value": ["pro"]}]},
            {"key": "uses-exists", "enabled": true, "rollout_percentage": 100.0, "targeting_rules": [exists]},
            {"key": "uses-negate", "enabled": true, "rollout_percentage": 100.0,
             "targeting_rules": [{"attribute": "country", "operator": "equals", "value": "DE"}, negated]},
        ]),
    );
    let before = flagctl(&endpoint, &[], &["list", "--table", &table]).stdout;
    let run = flagctl(&endpoint, &[], &["validate", "--table", &table]);
    assert_eq!(run.code, 1, "{run:?}");
    let fix = "move this clause to `rules`";
    for line in [
        format!("{table}:uses-exists: targeting_rules[0]: operator `exists` is not one Python knew: never matches in targeting_rules; {fix}"),
        format!("{table}:uses-negate: targeting_rules[1]: has `negate`, which Python never read: ignored in targeting_rules; {fix}"),
        format!("2 of 3 item(s) in `{table}` need a fix:"),
    ] {
        assert!(run.stderr.contains(&line), "{line}\n{}", run.stderr);
    }
    assert!(!run.stderr.contains(&format!("{table}:clean")), "{}", run.stderr);
    assert_eq!(flagctl(&endpoint, &[], &["list", "--table", &table]).stdout, before, "validate writes nothing");

    // `--table` without a value reads FLAGS_TABLE; a clean table passes.
    let clean = unique_name("ctl-validate-clean");
    seed_with_boto3(&endpoint, &clean, &json!([{"key": "clean", "enabled": true, "rollout_percentage": 10.0}]));
    let run = flagctl(&endpoint, &[("FLAGS_TABLE", &clean)], &["validate", "--table"]);
    assert_eq!((run.code, run.stdout.as_str()), (0, format!("ok: 1 item(s) in `{clean}` valid\n").as_str()), "{run:?}");
    let run = flagctl(&endpoint, &[], &["validate", "--table"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("give a table name, or set FLAGS_TABLE"), "{run:?}");
    let run = flagctl(&endpoint, &[], &["validate"]);
    assert_eq!(run.code, 2, "clap: a path or --table is required: {run:?}");
}

#[test]
fn validate_rejects_cycles_across_files_and_duplicate_keys() {
    let dir = temp_dir("cycle");
    std::fs::write(dir.join("x.json"), json!({"key": "x", "prerequisites": [{"key": "y"}]}).to_string()).unwrap();
    std::fs::write(dir.join("y.yaml"), "key: y\nprerequisites:\n  - key: x\n").unwrap();
    std::fs::write(dir.join("more.json"), json!({"flags": [{"key": "w"}, [7]]}).to_string()).unwrap();
    std::fs::write(dir.join("w.json"), json!({"key": "w"}).to_string()).unwrap();
    let run = flagctl("http://127.0.0.1:9", &[], &["validate", path(&dir)]);
    assert_eq!(run.code, 1, "{run:?}");
    let (w, more) = (dir.join("w.json").display().to_string(), dir.join("more.json").display().to_string());
    assert!(run.stderr.contains(&format!("{w}: key: `w` is also defined in {more}[0]")), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("{more}[1]: -: a flag must be an object")), "{}", run.stderr);
    assert!(run.stderr.contains("prerequisites: prerequisite cycle: y → x → y"), "{}", run.stderr);
}

#[tokio::test]
async fn apply_creates_updates_leaves_unchanged_and_prunes_with_audit_records() {
    let moto = shared_moto();
    let tables = Tables::new(&moto.endpoint()).await;
    let dir = fixture_copy("apply");

    let first = tables.run(&["apply", path(&dir), "--message", "import"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(first.stdout.contains("5 to create, 0 to update, 0 to delete, 0 unchanged"), "{}", first.stdout);
    for key in ["beta-banner", "checkout", "kill-switch", "new-search", "pricing"] {
        assert_eq!(version(&tables.doc(key).await), Some(1), "{key} created at version 1");
        let records = tables.audit_records(key).await;
        assert_eq!(records.len(), 1, "{key}: one audit record");
        assert_eq!(records[0]["action"], "create");
        assert_eq!(records[0]["version_after"], 1);
        assert_eq!(records[0]["message"], "import");
        assert_eq!(records[0]["who"], "arn:aws:sts::123456789012:user/moto");
    }
    let checkout_before = tables.doc("checkout").await;

    // Change one flag, delete another file, leave the rest.
    std::fs::write(dir.join("beta-banner.yaml"), "key: beta-banner\nenabled: true\nrollout_percentage: 75\n").unwrap();
    std::fs::remove_file(dir.join("kill-switch.json")).unwrap();
    let dry = tables.run(&["apply", path(&dir), "--prune", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(dry.stdout.contains("dry run: nothing written"), "{}", dry.stdout);
    assert_eq!(version(&tables.doc("beta-banner").await), Some(1), "a dry run writes nothing");
    assert!(tables.doc("kill-switch").await.is_some(), "a dry run deletes nothing");

    let without_prune = tables.run(&["diff", path(&dir)]);
    assert!(
        without_prune.stdout.contains("in the table only (kept; --prune deletes): kill-switch"),
        "{without_prune:?}"
    );

    let second = tables.run(&["apply", path(&dir), "--prune", "-m", "ramp up"]);
    assert_eq!(second.code, 0, "{second:?}");
    let expected = "~ beta-banner (version 1 → 2)\n    ~ rollout_percentage: 50 → 75\n\
                    - kill-switch (version 1, deleted by --prune)\n    - enabled: true\n    - rollout_percentage: 100\n\
                    0 to create, 1 to update, 1 to delete, 3 unchanged\n";
    assert!(second.stdout.starts_with(expected), "{}", second.stdout);
    let banner = tables.doc("beta-banner").await.expect("banner");
    assert_eq!((banner["version"].as_u64(), banner["rollout_percentage"].as_u64()), (Some(2), Some(75)));
    assert!(tables.doc("kill-switch").await.is_none(), "pruned");
    assert_eq!(tables.doc("checkout").await, checkout_before, "unchanged flags are not rewritten");

    let banner_audit = tables.audit_records("beta-banner").await;
    assert_eq!(banner_audit.len(), 2);
    assert_eq!(
        (&banner_audit[1]["version_before"], &banner_audit[1]["version_after"], &banner_audit[1]["message"]),
        (&json!(1), &json!(2), &json!("ramp up"))
    );
    assert_eq!(banner_audit[1]["changes"], json!([{"field": "rollout_percentage", "before": 50, "after": 75}]));
    let kill_audit = tables.audit_records("kill-switch").await;
    assert_eq!(kill_audit.len(), 2);
    assert_eq!((&kill_audit[1]["action"], &kill_audit[1]["version_before"]), (&json!("delete"), &json!(1)));
    assert!(kill_audit[1].get("version_after").is_none(), "{:?}", kill_audit[1]);
    assert_eq!(tables.audit_records("checkout").await.len(), 1, "no record without a change");

    let again = tables.run(&["apply", path(&dir)]);
    assert!(
        again.stdout.ends_with("0 to create, 0 to update, 0 to delete, 4 unchanged\nnothing to write\n"),
        "{again:?}"
    );
}

#[tokio::test]
async fn apply_of_many_flags_writes_transactions_of_at_most_100_items() {
    let moto = shared_moto();
    let tables = Tables::new(&moto.endpoint()).await;
    let dir = temp_dir("many");
    for i in 0..120 {
        let doc = json!({"key": format!("flag-{i:03}"), "enabled": i % 2 == 0, "rollout_percentage": i % 101});
        std::fs::write(dir.join(format!("flag-{i:03}.json")), doc.to_string()).unwrap();
    }
    let proxy = Proxy::start(&moto.endpoint());
    let run = tables.run_via(&proxy.endpoint(), &["apply", path(&dir)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.ends_with("applied: 120 flag(s) written as arn:aws:sts::123456789012:user/moto\n"), "{run:?}");
    // 120 flags + 120 records = 240 items: 100 + 100 + 40.
    assert_eq!(proxy.count("DynamoDB_20120810.TransactWriteItems"), 3);
    let count = |table: String| {
        let client = tables.client.clone();
        async move { client.scan().table_name(table).send().await.expect("Scan").count }
    };
    assert_eq!(count(tables.flags.clone()).await, 120);
    assert_eq!(count(tables.audit.clone()).await, 120);
}

#[tokio::test]
async fn a_concurrent_change_stops_apply_with_exit_2_and_writes_nothing_of_its_transaction() {
    let moto = shared_moto();
    let tables = Tables::new(&moto.endpoint()).await;
    let dir = fixture_copy("conflict");
    assert_eq!(tables.run(&["apply", path(&dir)]).code, 0);

    // Someone else (here: the Python service's way of writing) changes `checkout` after
    // flagctl has read the table and before its transaction arrives.
    let proxy = Proxy::start(&moto.endpoint());
    let (endpoint, table) = (moto.endpoint(), tables.flags.clone());
    let concurrent = json!({"key": "checkout", "enabled": false, "rollout_percentage": 100, "version": 7});
    let once = std::sync::atomic::AtomicBool::new(false);
    proxy.set_hook(move |target, body, forward| {
        if target.ends_with("TransactWriteItems") && !once.swap(true, std::sync::atomic::Ordering::SeqCst) {
            put_with_boto3(&endpoint, &table, &json!([concurrent]));
        }
        forward(body)
    });
    std::fs::write(dir.join("beta-banner.yaml"), "key: beta-banner\nenabled: false\n").unwrap();
    let edited = std::fs::read_to_string(dir.join("checkout.json"))
        .unwrap()
        .replace("\"rollout_percentage\": 100", "\"rollout_percentage\": 40");
    std::fs::write(dir.join("checkout.json"), edited).unwrap();

    let run = tables.run_via(&proxy.endpoint(), &["apply", path(&dir), "-m", "racing"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.starts_with("conflict: checkout changed in the table since it was read"), "{}", run.stderr);
    assert!(run.stderr.contains("Run `flagctl diff` again"), "{}", run.stderr);
    let checkout = tables.doc("checkout").await.expect("checkout");
    assert_eq!((checkout["version"].as_u64(), checkout["enabled"].as_bool()), (Some(7), Some(false)), "theirs kept");
    assert_eq!(tables.audit_records("checkout").await.len(), 1, "no audit record for the refused change");
    // The other flag of the same transaction is not half-applied either.
    assert_eq!(version(&tables.doc("beta-banner").await), Some(1));
    assert_eq!(tables.audit_records("beta-banner").await.len(), 1);
}

#[tokio::test]
async fn export_then_diff_is_unchanged_for_items_the_python_service_wrote() {
    let moto = shared_moto();
    let table = unique_name("ctl-export");
    let flags = json!([
        {"key": "legacy", "flag_id": "f-1", "enabled": true, "rollout_percentage": 100.0, "version": 3,
         "created_at": "2024-03-01T12:00:00Z",
         "targeting_rules": [{"attribute": "account", "operator": "greater_than", "value": 9007199254740993_u64},
                             {"attribute": "score", "operator": "less_than", "value": 0.1}],
         "variants": [{"key": "a", "allocation": 0.1, "payload": {"price": 19.99, "tiny": 1e-7}},
                      {"key": "b", "allocation": 0.2}, {"key": "c", "allocation": 0.7}]},
        {"key": "team/odd key", "enabled": false, "rollout_percentage": 33.3}
    ]);
    seed_with_boto3(&moto.endpoint(), &table, &flags);
    for format in ["json", "yaml"] {
        let dir = temp_dir("export").join("out");
        let env = [("FLAGS_TABLE", table.as_str())];
        let export = flagctl(&moto.endpoint(), &env, &["export", path(&dir), "--format", format]);
        assert_eq!(export.code, 0, "{export:?}");
        assert_eq!(export.stdout, format!("exported 2 flag(s) into 2 file(s) in {}\n", dir.display()));
        let legacy = std::fs::read_to_string(dir.join(format!("legacy.{format}"))).unwrap();
        for exact in ["9007199254740993", "19.99", "100.0", "0.1"] {
            assert!(legacy.contains(exact), "{format} export keeps {exact}:\n{legacy}");
        }
        let diff = flagctl(&moto.endpoint(), &env, &["diff", path(&dir)]);
        assert_eq!(diff.code, 0, "{diff:?}");
        assert_eq!(diff.stdout, "0 to create, 0 to update, 0 to delete, 2 unchanged\n", "{format}");
    }
}

#[tokio::test]
async fn set_is_the_kill_switch_and_history_tells_who_did_what_newest_first() {
    let moto = shared_moto();
    let tables = Tables::new(&moto.endpoint()).await;
    assert_eq!(tables.run(&["apply", FIXTURES, "-m", "import"]).code, 0);

    let off = tables.run(&["set", "kill-switch", "enabled=false", "-m", "incident 42"]);
    assert_eq!(off.code, 0, "{off:?}");
    assert_eq!(off.stdout, "kill-switch: version 2\n    ~ enabled: true → false\n");
    let ramp = tables.run(&["set", "kill-switch", "rollout_percentage=12.5"]);
    assert_eq!(ramp.code, 0, "{ramp:?}");
    let doc = tables.doc("kill-switch").await.expect("flag");
    assert_eq!(
        (doc["enabled"].as_bool(), doc["rollout_percentage"].as_f64(), doc["version"].as_u64()),
        (Some(false), Some(12.5), Some(3))
    );
    let same = tables.run(&["set", "kill-switch", "enabled=false"]);
    assert_eq!((same.code, same.stdout.as_str()), (0, "kill-switch: no change (version 3)\n"));

    let history = tables.run(&["history", "kill-switch"]);
    assert_eq!(history.code, 0, "{history:?}");
    let lines: Vec<&str> = history.stdout.lines().collect();
    let who = "arn:aws:sts::123456789012:user/moto";
    assert!(lines[0].ends_with(&format!("  {who}  update  version 2 → 3")), "{}", history.stdout);
    assert_eq!(lines[1], "    ~ rollout_percentage: 100 → 12.5");
    assert!(lines[2].ends_with(&format!("  {who}  update  version 1 → 2")), "{}", history.stdout);
    assert_eq!(&lines[3..5], ["    message: incident 42", "    ~ enabled: true → false"]);
    assert!(lines[5].ends_with(&format!("  {who}  create  version - → 1")), "{}", history.stdout);
    assert!(lines[0] > lines[2] && lines[2] > lines[5], "newest first, by time");
    let limited = tables.run(&["history", "kill-switch", "--limit", "1"]);
    assert_eq!(limited.stdout.lines().filter(|l| !l.starts_with(' ')).count(), 1, "{}", limited.stdout);

    let bad = tables.run(&["set", "kill-switch", "enabled=maybe", "rollout_percentage=101", "colour=red"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert_eq!(bad.stderr.lines().count(), 3, "every problem listed: {}", bad.stderr);
    let missing = tables.run(&["set", "no-such-flag", "enabled=false"]);
    assert_eq!(
        (missing.code, missing.stderr.as_str()),
        (1, format!("no-such-flag: key: no such flag in table `{}`\n", tables.flags).as_str())
    );
    assert_eq!(tables.audit_records("kill-switch").await.len(), 3, "refused sets leave no record");
}

#[tokio::test]
async fn list_and_get_show_what_is_stored() {
    let moto = shared_moto();
    let tables = Tables::new(&moto.endpoint()).await;
    assert_eq!(tables.run(&["apply", FIXTURES]).code, 0);
    let list = tables.run(&["list"]);
    assert_eq!(list.code, 0, "{list:?}");
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert!(
        lines[0].starts_with("KEY          ENABLED  ROLLOUT  VARIANTS           VERSION  UPDATED"),
        "{}",
        list.stdout
    );
    assert!(lines[2].starts_with("checkout     true     100      control,treatment  1        20"), "{}", list.stdout);
    assert!(lines[5].starts_with("pricing      true     12.5     low,mid,high       1        "), "{}", list.stdout);
    assert!(lines[5].ends_with("by arn:aws:sts::123456789012:user/moto"), "{}", list.stdout);

    let get = tables.run(&["get", "pricing"]);
    assert_eq!(get.code, 0, "{get:?}");
    let doc: Value = serde_json::from_str(&get.stdout).expect("JSON");
    assert_eq!((doc["version"].as_u64(), doc["rollout_percentage"].as_f64()), (Some(1), Some(12.5)));
    assert_eq!(doc["targeting_rules"][0]["value"].as_u64(), Some(9_007_199_254_740_992));
    let missing = tables.run(&["get", "nope"]);
    assert_eq!(missing.code, 1, "{missing:?}");
}

#[tokio::test]
async fn aws_failures_exit_2_and_sts_failures_fall_back_to_unknown() {
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let dead = flagctl(&format!("http://127.0.0.1:{port}"), &[("FLAGS_TABLE", "flags")], &["list"]);
    assert_eq!(dead.code, 2, "{dead:?}");
    // No answer at all: said in flagctl's words, without the SDK's error text.
    assert!(
        dead.stderr.starts_with("region us-east-1 unreachable (connection failed, Scan): nothing was read"),
        "{}",
        dead.stderr
    );
    assert!(dead.stderr.contains("Check the region and the network, then retry."), "{}", dead.stderr);
    assert!(!dead.stderr.contains("dispatch failure"), "{}", dead.stderr);

    let moto = shared_moto();
    let tables = Tables::new(&moto.endpoint()).await;
    let proxy = Proxy::start(&moto.endpoint());
    // STS speaks the query protocol: no X-Amz-Target. Refuse it; let DynamoDB through.
    proxy.set_hook(|target, body, forward| {
        if target.is_empty() && String::from_utf8_lossy(&body).contains("GetCallerIdentity") {
            (403, b"<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>".to_vec())
        } else {
            forward(body)
        }
    });
    let run = tables.run_via(&proxy.endpoint(), &["apply", FIXTURES]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("warning: cannot tell who you are (STS GetCallerIdentity"), "{}", run.stderr);
    let records = tables.audit_records("checkout").await;
    assert_eq!(records[0]["who"], "unknown (STS GetCallerIdentity failed)");
    assert_eq!(tables.doc("checkout").await.expect("written")["updated_by"], "unknown (STS GetCallerIdentity failed)");
}

#[tokio::test]
async fn apply_writes_native_items_that_the_function_answers_exactly_as_the_files() {
    use common::app::file_app;
    use common::dynamo::dynamo_app;
    use flagfn::clock::Clock;

    let moto = shared_moto();
    let tables = Tables::new(&moto.endpoint()).await;
    assert_eq!(tables.run(&["apply", FIXTURES]).code, 0);

    // The shape the Python service reads: native BOOL, N, L of M — no JSON strings.
    let item = tables.item("checkout").await.expect("item");
    assert_eq!(item["enabled"], AttributeValue::Bool(true));
    assert_eq!(item["rollout_percentage"], AttributeValue::N("100".into()));
    assert_eq!(item["version"], AttributeValue::N("1".into()));
    let AttributeValue::L(variants) = &item["variants"] else { panic!("variants is a list: {item:?}") };
    let AttributeValue::M(first) = &variants[0] else { panic!("a variant is a map") };
    assert_eq!((&first["key"], &first["allocation"]), (&s("control"), &AttributeValue::N("0.5".into())));
    assert!(matches!(&first["payload"], AttributeValue::M(_)));
    let pricing = tables.item("pricing").await.expect("item");
    let AttributeValue::L(rules) = &pricing["targeting_rules"] else { panic!("list") };
    let AttributeValue::M(rule) = &rules[0] else { panic!("map") };
    assert_eq!(rule["value"], AttributeValue::N("9007199254740992".into()), "integers exactly");

    // The same answers from the table as from the files, through the function's API.
    let docs = files_as_one_document();
    let flags_file = temp_dir("answers").join("flags.json");
    std::fs::write(&flags_file, docs.to_string()).unwrap();
    let (from_file, _) = file_app(path(&flags_file), Clock::manual());
    let reader = client(&moto.endpoint(), &Operations::default()).await;
    let (from_table, _) = dynamo_app(reader, &tables.flags, &[], Clock::manual());
    let contexts = [
        json!({}),
        json!({"plan": "pro"}),
        json!({"plan": "free", "email": "x@example.com"}),
        json!({"account_id": 9007199254740993_u64}),
    ];
    let mut compared = 0;
    for user in (0..60).map(|i| format!("user-{i}")).chain(["alice".to_owned()]) {
        for context in &contexts {
            for key in ["beta-banner", "checkout", "kill-switch", "new-search", "pricing"] {
                let body = json!({"user_id": user, "flag_key": key, "context": context}).to_string();
                let (a, b) = (answer(&from_file, &body).await, answer(&from_table, &body).await);
                for field in ["enabled", "reason", "variant", "value"] {
                    assert_eq!(a.get(field), b.get(field), "{key} for {user} in {context}: {field}");
                }
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 61 * 4 * 5);
}

/// `POST /evaluate` with `body`, through the function's API.
async fn answer(app: &flagfn::app::App, body: &str) -> Value {
    use flagfn::api::{handle, BodyEncoding, Method, Request};
    let request = Request {
        method: Method::Post,
        path: "/evaluate",
        query: "",
        if_none_match: None,
        body: body.as_bytes(),
        request_id: "req-ctl",
        encoding: BodyEncoding::Json,
    };
    serde_json::from_slice(&handle(app, request).await.body).expect("JSON answer")
}

/// The fixture files as one `{"flags": [...]}` document (the function's local format).
fn files_as_one_document() -> Value {
    let mut flags = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(FIXTURES).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: Value = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => serde_json::from_str(&text).unwrap(),
            _ => serde_yaml_ng::from_str(&text).unwrap(),
        };
        flags.push(doc);
    }
    json!({ "flags": flags })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flagd_file_applies_as_one_self_contained_item_per_flag_and_serves_from_the_table() {
    let moto = shared_moto();
    let tables = Tables::new(&moto.endpoint()).await;
    let dir = temp_dir("flagd-apply");
    let file = dir.join("shop.json");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/flagd.json");
    std::fs::copy(example, &file).expect("copy the flagd example");

    assert_eq!(tables.run(&["validate", path(&file)]).code, 0);
    let first = tables.run(&["apply", path(&file), "-m", "flagd import"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(first.stdout.contains("4 to create"), "{}", first.stdout);
    let item = tables.doc("new-checkout").await.expect("written");
    assert_eq!((&item["format"], version(&Some(item.clone()))), (&json!("flagd"), Some(1)));
    let definition: Value = serde_json::from_str(item["flagd"].as_str().expect("text")).expect("JSON");
    assert_eq!(definition["targeting"]["if"][0], json!({"ends_with": [{"var": "email"}, "@example.com"]}));
    assert_eq!(definition["metadata"], json!({"flagSetId": "shop-web", "team": "checkout", "owner": "payments"}));

    let ask = |app: std::sync::Arc<flagfn::app::App>| async move {
        let body = json!({"context": {"targetingKey": "u-1", "email": "bo@mail.test"}});
        common::app::post(&app, "/ofrep/v1/evaluate/flags/new-checkout", &body).await.body
    };
    let reader = || async { client(&moto.endpoint(), &Operations::default()).await };
    let (app, _) = common::dynamo::dynamo_app(reader().await, &tables.flags, &[], flagfn::clock::Clock::system());
    assert_eq!(ask(app).await["value"], json!(false));

    // Turn it on for everyone: the next apply updates that one item, and it serves.
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("JSON");
    doc["flags"]["new-checkout"]["defaultVariant"] = json!("on");
    std::fs::write(&file, doc.to_string()).expect("write");
    let second = tables.run(&["apply", path(&file), "-m", "launch"]);
    assert!(second.stdout.contains("0 to create, 1 to update"), "{}", second.stdout);
    assert_eq!(version(&tables.doc("new-checkout").await), Some(2));
    let (app, _) = common::dynamo::dynamo_app(reader().await, &tables.flags, &[], flagfn::clock::Clock::system());
    assert_eq!(ask(app).await["value"], json!(true));

    // Exported, the items come back as files that diff as unchanged.
    let out = dir.join("out");
    let export = tables.run(&["export", path(&out)]);
    assert_eq!(export.code, 0, "{export:?}");
    // One flagd document holds them, each flag self-contained, as flagd would read it.
    let exported: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("_flagd.json")).expect("one flagd document"))
            .expect("JSON");
    let keys: Vec<&String> = exported["flags"].as_object().expect("flags is an object").keys().collect();
    assert_eq!(keys.len(), 4, "{exported}");
    assert_eq!(exported["flags"]["new-checkout"]["defaultVariant"], json!("on"));
    assert_eq!(exported["flags"]["new-checkout"]["metadata"]["flagSetId"], json!("shop-web"));
    let diff = tables.run(&["diff", path(&out)]);
    assert_eq!(diff.stdout, "0 to create, 0 to update, 0 to delete, 4 unchanged\n", "{diff:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
