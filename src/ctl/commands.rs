//! Each sub-command: read, check, compare, write, print. Output goes to stdout, warnings
//! and errors to stderr, so `flagctl list > flags.txt` keeps only the listing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};

use super::audit::{caller_identity, timestamp, AuditRecord};
use super::cli::{AuditedTableArgs, Command, Format};
use super::diff::{compact, field_changes, render_changes, FieldChange};
use super::files::FlagFile;
use super::table::{Change, FlagTable, StoredFlag};
use super::validate::{check, Checked};
use super::{files, CtlError, Problem};

/// Connecting to AWS: a dead endpoint fails fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One attempt of one call.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// One call, retries included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `command`.
pub async fn dispatch(command: Command) -> Result<(), CtlError> {
    match command {
        Command::Validate { path: Some(path), .. } => validate(&path).map(|checked| {
            println!("ok: {} flag(s) valid", checked.flags.len());
        }),
        Command::Validate { path: None, table, default_table } => {
            let Some(table) = table.flatten().or(default_table) else {
                return Err(CtlError::input("validate", "--table", "give a table name, or set FLAGS_TABLE"));
            };
            validate_table(&table).await
        }
        Command::Diff { path, prune, table } => {
            let plan = plan(&path, &flag_table(&table.table).await, prune).await?;
            print!("{}", plan.render(prune));
            Ok(())
        }
        Command::Apply { path, dry_run, prune, message, tables } => {
            apply(&path, dry_run, prune, message, &tables).await
        }
        Command::Export { dir, format, table } => export(&dir, format, &flag_table(&table.table).await).await,
        Command::Get { key, table } => match flag_table(&table.table).await.get(&key).await? {
            Some(flag) => {
                println!("{}", serde_json::to_string_pretty(&flag.full()).unwrap_or_default());
                Ok(())
            }
            None => Err(not_found(&key, &table.table)),
        },
        Command::List { table } => {
            print!("{}", render_list(&flag_table(&table.table).await.scan().await?));
            Ok(())
        }
        Command::Set { key, assignments, message, tables } => set(&key, &assignments, message, &tables).await,
        Command::History { key, limit, audit_table } => {
            let records = flag_table(&audit_table).await.history(&key, limit as usize).await?;
            print!("{}", render_history(&key, &records));
            Ok(())
        }
        Command::Explain { key, user, context, file, table, fractional } => {
            let bucketing = if fractional == "v3" { crate::flagd::Bucketing::V3 } else { crate::flagd::Bucketing::V2 };
            let source = super::explain::Source { file: file.as_deref(), table: table.as_deref() };
            super::explain::run(&key, &user, context.as_deref(), source, bucketing).await
        }
    }
}

/// AWS settings from the usual chain, with every call bounded in time.
pub async fn sdk_config() -> aws_config::SdkConfig {
    use aws_config::timeout::TimeoutConfig;
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build();
    crate::aws::loader().timeout_config(timeouts).load().await
}

/// The flags (or audit) table `name`.
pub async fn flag_table(name: &str) -> FlagTable {
    FlagTable::new(aws_sdk_dynamodb::Client::new(&sdk_config().await), name)
}

/// Refuses a write pointed at a region other than the write region (when one is set),
/// before any call: global tables settle concurrent writes in two regions by last
/// writer wins, which would void the conditional writes.
fn in_write_region(config: &aws_config::SdkConfig, tables: &AuditedTableArgs) -> Result<(), CtlError> {
    let Some(home) = &tables.write_region else { return Ok(()) };
    let here = config.region().map(ToString::to_string);
    if here.as_deref() == Some(home.as_str()) {
        return Ok(());
    }
    Err(CtlError::WrongRegion {
        here: here.unwrap_or_else(|| "no region (AWS_REGION unset)".to_owned()),
        home: home.clone(),
    })
}

fn not_found(key: &str, table: &str) -> CtlError {
    CtlError::input(key, "key", format!("no such flag in table `{table}`"))
}

/// Loads and checks `path`; warnings go to stderr, errors fail.
fn validate(path: &Path) -> Result<Checked, CtlError> {
    let checked = check(files::load(path)?);
    for warning in &checked.warnings {
        eprintln!("warning: {warning}");
    }
    if checked.errors.is_empty() {
        Ok(checked)
    } else {
        Err(CtlError::Input(checked.errors))
    }
}

/// Checks every item of `table` as `validate` checks files, each named `TABLE:KEY`;
/// an item that cannot even be read as a flag is a problem too, not the end of the check.
async fn validate_table(table: &str) -> Result<(), CtlError> {
    let (items, mut unreadable) = flag_table(table).await.scan_leniently().await?;
    let scanned = items.len() + unreadable.len();
    let files = items.into_iter().map(|(key, flag)| FlagFile {
        origin: format!("{table}:{key}"),
        stem: None,
        doc: Value::Object(flag.full()),
    });
    let mut checked = check(files.collect());
    for warning in &checked.warnings {
        eprintln!("warning: {warning}");
    }
    checked.errors.append(&mut unreadable);
    if checked.errors.is_empty() {
        println!("ok: {scanned} item(s) in `{table}` valid");
        return Ok(());
    }
    let items: std::collections::BTreeSet<&str> = checked.errors.iter().map(|p| p.file.as_str()).collect();
    eprintln!("{} of {scanned} item(s) in `{table}` need a fix:", items.len());
    Err(CtlError::Input(checked.errors))
}

/// What `apply` would do.
struct Plan {
    /// Creations, updates and (with prune) deletions, in key order.
    changes: Vec<Planned>,
    /// Flags identical in files and table.
    unchanged: usize,
    /// Flags only in the table, kept (no `--prune`).
    kept: Vec<String>,
}

struct Planned {
    key: String,
    before: Option<StoredFlag>,
    after: Option<Map<String, Value>>,
    fields: Vec<FieldChange>,
}

impl Planned {
    fn action(&self) -> &'static str {
        match (&self.before, &self.after) {
            (None, _) => "create",
            (Some(_), Some(_)) => "update",
            (Some(_), None) => "delete",
        }
    }
}

async fn plan(path: &Path, table: &FlagTable, prune: bool) -> Result<Plan, CtlError> {
    let checked = validate(path)?;
    let mut stored = table.scan().await?;
    let mut plan = Plan { changes: Vec::new(), unchanged: 0, kept: Vec::new() };
    for (key, doc) in checked.flags {
        let before = stored.remove(&key);
        let fields = field_changes(before.as_ref().map(|b| &b.doc), Some(&doc));
        if fields.is_empty() {
            plan.unchanged += 1;
        } else {
            plan.changes.push(Planned { key, before, after: Some(doc), fields });
        }
    }
    for (key, before) in stored {
        if prune {
            let fields = field_changes(Some(&before.doc), None);
            plan.changes.push(Planned { key, before: Some(before), after: None, fields });
        } else {
            plan.kept.push(key);
        }
    }
    plan.changes.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(plan)
}

impl Plan {
    fn render(&self, prune: bool) -> String {
        let mut out = String::new();
        for change in &self.changes {
            let head = match (change.action(), &change.before) {
                ("create", _) => format!("+ {} (new)\n", change.key),
                ("update", Some(b)) => format!("~ {} (version {} → {})\n", change.key, b.version, b.version + 1),
                (_, b) => {
                    format!("- {} (version {}, deleted by --prune)\n", change.key, b.as_ref().map_or(0, |b| b.version))
                }
            };
            out.push_str(&head);
            render_changes(&change.fields, &mut out);
        }
        if !self.kept.is_empty() && !prune {
            out.push_str(&format!("in the table only (kept; --prune deletes): {}\n", self.kept.join(", ")));
        }
        let count = |action: &str| self.changes.iter().filter(|c| c.action() == action).count();
        out.push_str(&format!(
            "{} to create, {} to update, {} to delete, {} unchanged\n",
            count("create"),
            count("update"),
            count("delete"),
            self.unchanged
        ));
        out
    }
}

async fn apply(
    path: &Path,
    dry_run: bool,
    prune: bool,
    message: Option<String>,
    tables: &AuditedTableArgs,
) -> Result<(), CtlError> {
    let config = sdk_config().await;
    if !dry_run {
        in_write_region(&config, tables)?;
    }
    let table = FlagTable::new(aws_sdk_dynamodb::Client::new(&config), &tables.table);
    let plan = plan(path, &table, prune).await?;
    print!("{}", plan.render(prune));
    if dry_run || plan.changes.is_empty() {
        println!("{}", if dry_run { "dry run: nothing written" } else { "nothing to write" });
        return Ok(());
    }
    let who = caller_identity(&config).await;
    let at = timestamp(time::OffsetDateTime::now_utc());
    let changes: Vec<Change> = plan
        .changes
        .into_iter()
        .map(|p| {
            let audit = record(&p.key, p.action(), &at, &who, p.before.as_ref(), &p.after, p.fields, &message);
            Change { key: p.key, before: p.before, after: p.after, audit }
        })
        .collect();
    let written = table.write(&tables.audit_table, tables.manifest_table.as_deref(), &changes).await?;
    println!("applied: {} flag(s) written as {who}", written.len());
    Ok(())
}

/// The audit record of one change.
#[allow(clippy::too_many_arguments)] // each is one field of the record
fn record(
    key: &str,
    action: &str,
    at: &str,
    who: &str,
    before: Option<&StoredFlag>,
    after: &Option<Map<String, Value>>,
    changes: Vec<FieldChange>,
    message: &Option<String>,
) -> AuditRecord {
    let version_before = before.map(|b| b.version);
    AuditRecord {
        key: key.to_owned(),
        at: at.to_owned(),
        who: who.to_owned(),
        action: action.to_owned(),
        version_before,
        version_after: after.as_ref().map(|_| version_before.map_or(1, |v| v + 1)),
        changes,
        message: message.clone(),
    }
}

async fn export(dir: &Path, format: Format, table: &FlagTable) -> Result<(), CtlError> {
    let flags: Vec<(String, Map<String, Value>)> = table.scan().await?.into_iter().map(|(k, f)| (k, f.doc)).collect();
    let written = files::export(dir, &flags, format)?;
    println!("exported {} flag(s) into {} file(s) in {}", flags.len(), written.len(), dir.display());
    Ok(())
}

/// `enabled=…` / `rollout_percentage=…`, checked: the kill switch only ever sets these.
fn assignments(key: &str, assignments: &[String]) -> Result<Map<String, Value>, CtlError> {
    let mut fields = Map::new();
    let mut problems = Vec::new();
    for assignment in assignments {
        let (field, text) = assignment.split_once('=').unwrap_or((assignment, ""));
        let value = match field {
            "enabled" => match text {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err("must be true or false".to_owned()),
            },
            "rollout_percentage" => match serde_json::from_str::<Value>(text) {
                Ok(Value::Number(n)) if n.as_f64().is_some_and(|p| (0.0..=100.0).contains(&p)) => Ok(Value::Number(n)),
                _ => Err(format!("must be a number 0–100, got `{text}`")),
            },
            _ => Err("only `enabled` and `rollout_percentage` can be set; change anything else in the files and apply"
                .to_owned()),
        };
        match value {
            Ok(value) => drop(fields.insert(field.to_owned(), value)),
            Err(message) => problems.push(Problem::new(key, field, message)),
        }
    }
    if problems.is_empty() {
        Ok(fields)
    } else {
        Err(CtlError::Input(problems))
    }
}

async fn set(
    key: &str,
    assigned: &[String],
    message: Option<String>,
    tables: &AuditedTableArgs,
) -> Result<(), CtlError> {
    let fields = assignments(key, assigned)?;
    let config = sdk_config().await;
    in_write_region(&config, tables)?;
    let table = FlagTable::new(aws_sdk_dynamodb::Client::new(&config), &tables.table);
    let before = table.get(key).await?.ok_or_else(|| not_found(key, &tables.table))?;
    let mut after = before.doc.clone();
    after.extend(fields);
    let changes = field_changes(Some(&before.doc), Some(&after));
    if changes.is_empty() {
        println!("{key}: no change (version {})", before.version);
        return Ok(());
    }
    let who = caller_identity(&config).await;
    let at = timestamp(time::OffsetDateTime::now_utc());
    let mut text = String::new();
    render_changes(&changes, &mut text);
    let audit = record(key, "update", &at, &who, Some(&before), &Some(after.clone()), changes, &message);
    let version = before.version + 1;
    table
        .write(
            &tables.audit_table,
            tables.manifest_table.as_deref(),
            &[Change { key: key.to_owned(), before: Some(before), after: Some(after), audit }],
        )
        .await?;
    print!("{key}: version {version}\n{text}");
    Ok(())
}

fn render_list(flags: &BTreeMap<String, StoredFlag>) -> String {
    let mut rows = vec![["KEY", "ENABLED", "ROLLOUT", "VARIANTS", "VERSION", "UPDATED"].map(str::to_owned)];
    for (key, flag) in flags {
        let doc = &flag.doc;
        let variants: Vec<&str> = doc
            .get("variants")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|v| v.get("key").and_then(Value::as_str).unwrap_or("?"))
            .collect();
        let updated = match (&flag.updated_at, &flag.updated_by) {
            (Some(at), Some(by)) => format!("{at} by {by}"),
            (Some(at), None) => at.clone(),
            _ => "-".to_owned(),
        };
        rows.push([
            key.clone(),
            doc.get("enabled").map_or("false".to_owned(), |v| compact(Some(v))),
            doc.get("rollout_percentage").map_or("0".to_owned(), |v| compact(Some(v))),
            if variants.is_empty() { "-".to_owned() } else { variants.join(",") },
            flag.version.to_string(),
            updated,
        ]);
    }
    let widths: Vec<usize> = (0..6).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn render_history(key: &str, records: &[AuditRecord]) -> String {
    if records.is_empty() {
        return format!("{key}: no audit records\n");
    }
    let mut out = String::new();
    for r in records {
        let version = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
        out.push_str(&format!(
            "{}  {}  {}  version {} → {}\n",
            r.at,
            r.who,
            r.action,
            version(r.version_before),
            version(r.version_after)
        ));
        if let Some(message) = &r.message {
            out.push_str(&format!("    message: {message}\n"));
        }
        render_changes(&r.changes, &mut out);
    }
    out
}
