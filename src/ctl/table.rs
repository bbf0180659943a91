//! The DynamoDB side of flagctl: read the flags table, write changes conditionally with
//! their audit records in the same `TransactWriteItems`, read the audit table.
//!
//! Items are converted with `serde_dynamo` both ways, as native attributes (maps, lists,
//! numbers, booleans) — the shape the Python service wrote and reads, so a Python
//! evaluator still reading the table keeps working for flags that use only its fields.
//! `AttributeValue` never leaves this file.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use serde_json::{Map, Value};

use super::audit::AuditRecord;
use super::validate::MANAGED;
use super::{CtlError, Problem};
use crate::freshness::{manifest_put, read_consistent, Written};

/// A DynamoDB item as the SDK returns it.
type Item = HashMap<String, AttributeValue>;

/// Most items one `TransactWriteItems` accepts; each change is two (flag + audit record).
const TRANSACTION_ITEMS: usize = 100;

/// A flag as stored, split into its document and what flagctl manages.
#[derive(Debug, Clone)]
pub struct StoredFlag {
    /// The document without the managed fields (what files hold).
    pub doc: Map<String, Value>,
    /// `version` (0 when absent, as in the flag format).
    pub version: u64,
    /// When flagctl last changed it.
    pub updated_at: Option<String>,
    /// Who flagctl last changed it for.
    pub updated_by: Option<String>,
    /// The `version` attribute exactly as read: what a write is conditional on.
    version_attr: Option<AttributeValue>,
}

impl StoredFlag {
    /// The whole item as JSON, managed fields included (for `get`).
    pub fn full(&self) -> Map<String, Value> {
        let mut full = self.doc.clone();
        full.insert("version".to_owned(), Value::from(self.version));
        if let Some(at) = &self.updated_at {
            full.insert("updated_at".to_owned(), Value::from(at.as_str()));
        }
        if let Some(by) = &self.updated_by {
            full.insert("updated_by".to_owned(), Value::from(by.as_str()));
        }
        full
    }
}

/// One flag to write: `before` is what it was compared with (`None` for a new flag),
/// `after` what to write (`None` deletes it), `audit` its record.
#[derive(Debug)]
pub struct Change {
    /// The flag key.
    pub key: String,
    /// The stored flag the change was computed against.
    pub before: Option<StoredFlag>,
    /// The new document, without managed fields; `None` deletes.
    pub after: Option<Map<String, Value>>,
    /// The audit record (its `version_after` and `who` are what gets written).
    pub audit: AuditRecord,
}

/// The flags table (and, for writes, the audit table).
#[derive(Debug, Clone)]
pub struct FlagTable {
    client: Client,
    table: String,
}

impl FlagTable {
    /// The table `table` read and written with `client`.
    pub fn new(client: Client, table: &str) -> Self {
        FlagTable { client, table: table.to_owned() }
    }

    /// The region the client calls (`AWS_REGION`), for messages.
    fn region(&self) -> String {
        self.client.config().region().map_or_else(|| "(no region)".to_owned(), ToString::to_string)
    }

    /// Every flag, by key (a consistent, paginated `Scan`: writes are conditional on it).
    pub async fn scan(&self) -> Result<BTreeMap<String, StoredFlag>, CtlError> {
        let mut flags = BTreeMap::new();
        for item in self.scan_items().await? {
            let (key, flag) = stored(item)?;
            flags.insert(key, flag);
        }
        Ok(flags)
    }

    /// Every flag that reads as one, and a problem for each item that does not (no string
    /// `key`, an attribute type this build does not know, ...): what `validate --table`
    /// reports, where one bad item must not hide the others.
    pub async fn scan_leniently(&self) -> Result<(BTreeMap<String, StoredFlag>, Vec<Problem>), CtlError> {
        let (mut flags, mut problems) = (BTreeMap::new(), Vec::new());
        for item in self.scan_items().await? {
            let key = match item.get("key") {
                Some(AttributeValue::S(key)) => key.clone(),
                _ => "<no string key>".to_owned(),
            };
            match stored(item) {
                Ok((key, flag)) => {
                    flags.insert(key, flag);
                }
                Err(CtlError::Input(found)) => {
                    let origin = format!("{}:{key}", self.table);
                    problems.extend(found.into_iter().map(|p| Problem::new(&origin, "-", p.message)));
                }
                Err(other) => return Err(other),
            }
        }
        Ok((flags, problems))
    }

    /// Every item of the table (a consistent, paginated `Scan`).
    async fn scan_items(&self) -> Result<Vec<Item>, CtlError> {
        let mut pages = self.client.scan().table_name(&self.table).consistent_read(true).into_paginator().send();
        let mut items = Vec::new();
        while let Some(page) = pages.try_next().await.map_err(|e| CtlError::call("Scan", &self.region(), e))? {
            items.extend(page.items.unwrap_or_default());
        }
        Ok(items)
    }

    /// One flag (a consistent `GetItem`).
    pub async fn get(&self, key: &str) -> Result<Option<StoredFlag>, CtlError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("key", AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| CtlError::call("GetItem", &self.region(), e))?;
        output.item.map(stored).transpose().map(|found| found.map(|(_, flag)| flag))
    }

    /// Writes `changes` with their audit records into `audit_table`, 50 flags per
    /// transaction. Each flag write is conditional on the version it was compared with
    /// (on absence for a new flag), so a concurrent change cancels its transaction: no
    /// flag of that transaction nor its record is written, and the error names it.
    /// With `manifest_table`, each transaction also bumps the change manifest
    /// (49 flags per transaction then), so warm environments see the change within
    /// `FRESHNESS_SECONDS` even without the table's stream. Returns the keys written.
    pub async fn write(
        &self,
        audit_table: &str,
        manifest_table: Option<&str>,
        changes: &[Change],
    ) -> Result<Vec<String>, CtlError> {
        let mut written = Vec::new();
        let per_transaction = (TRANSACTION_ITEMS - usize::from(manifest_table.is_some())) / 2;
        for batch in changes.chunks(per_transaction) {
            let mut items = Vec::with_capacity(batch.len() * 2 + 1);
            for change in batch {
                items.push(self.flag_write(change)?);
                items.push(audit_put(audit_table, &change.audit)?);
            }
            let result = match manifest_table {
                None => self.client.transact_write_items().set_transact_items(Some(items)).send().await.map(|_| ()),
                Some(manifest) => self.write_with_manifest(manifest, items, batch).await?,
            };
            if let Err(err) = result {
                return Err(write_error(err, batch, written, &self.region()));
            }
            written.extend(batch.iter().map(|c| c.key.clone()));
        }
        Ok(written)
    }

    /// Sends `items` plus the manifest bump for `batch`, conditional on the manifest
    /// version read just before; when only the manifest moved meanwhile (another writer
    /// bumped it), reads it again and retries.
    async fn write_with_manifest(
        &self,
        manifest_table: &str,
        items: Vec<TransactWriteItem>,
        batch: &[Change],
    ) -> Result<Result<(), SdkError<TransactWriteItemsError>>, CtlError> {
        let at = crate::freshness::millis(std::time::SystemTime::now());
        let writes: Vec<Written> = batch.iter().map(|c| Written { key: c.key.clone(), at }).collect();
        let mut attempt = 1;
        loop {
            let seen = read_consistent(&self.client, manifest_table, &self.table).await;
            let seen = seen.map_err(|e| manifest_error(e, &self.region()))?;
            let put = manifest_put(manifest_table, &self.table, &seen, &seen.with(&writes));
            let put = put.map_err(|e| CtlError::aws("TransactWriteItems", e))?;
            let mut all = items.clone();
            all.push(TransactWriteItem::builder().put(put).build());
            let result = self.client.transact_write_items().set_transact_items(Some(all)).send().await;
            match result {
                Err(err) if attempt < MANIFEST_ATTEMPTS && only_manifest_failed(&err, items.len()) => attempt += 1,
                other => return Ok(other.map(|_| ())),
            }
        }
    }

    fn flag_write(&self, change: &Change) -> Result<TransactWriteItem, CtlError> {
        // DynamoDB rejects names and values the condition does not use.
        let (condition, value) = match &change.before {
            None => ("attribute_not_exists(#k)", None),
            Some(StoredFlag { version_attr: Some(version), .. }) => ("#v = :v", Some(version.clone())),
            Some(_) => ("attribute_exists(#k) AND attribute_not_exists(#v)", None),
        };
        let names: HashMap<String, String> = [("#k", "key"), ("#v", "version")]
            .into_iter()
            .filter(|(name, _)| condition.contains(name))
            .map(|(name, field)| (name.to_owned(), field.to_owned()))
            .collect();
        let values = value.map(|v| HashMap::from([(":v".to_owned(), v)]));
        let built = match &change.after {
            Some(doc) => {
                let mut item = doc.clone();
                item.insert("version".to_owned(), Value::from(change.audit.version_after.unwrap_or_default()));
                item.insert("updated_at".to_owned(), Value::from(change.audit.at.as_str()));
                item.insert("updated_by".to_owned(), Value::from(change.audit.who.as_str()));
                let item: Item = to_item(&Value::Object(item))?;
                let put = Put::builder().table_name(&self.table).set_item(Some(item)).condition_expression(condition);
                let put = put.set_expression_attribute_names(Some(names)).set_expression_attribute_values(values);
                TransactWriteItem::builder().put(put.build().map_err(|e| CtlError::aws("TransactWriteItems", e))?)
            }
            None => {
                let key = HashMap::from([("key".to_owned(), AttributeValue::S(change.key.clone()))]);
                let delete =
                    Delete::builder().table_name(&self.table).set_key(Some(key)).condition_expression(condition);
                let delete = delete.set_expression_attribute_names(Some(names)).set_expression_attribute_values(values);
                TransactWriteItem::builder().delete(delete.build().map_err(|e| CtlError::aws("TransactWriteItems", e))?)
            }
        };
        Ok(built.build())
    }

    /// The audit records of `key`, newest first, at most `limit`.
    pub async fn history(&self, key: &str, limit: usize) -> Result<Vec<AuditRecord>, CtlError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#k = :k")
            .expression_attribute_names("#k", "key")
            .expression_attribute_values(":k", AttributeValue::S(key.to_owned()))
            .scan_index_forward(false)
            .limit(i32::try_from(limit.min(1000)).unwrap_or(1000))
            .into_paginator()
            .send();
        let mut records = Vec::new();
        while let Some(page) = pages.try_next().await.map_err(|e| CtlError::call("Query", &self.region(), e))? {
            for item in page.items.unwrap_or_default() {
                let record = serde_dynamo::from_item(item).map_err(|e| unreadable("audit record", key, e))?;
                records.push(record);
                if records.len() >= limit {
                    return Ok(records);
                }
            }
        }
        Ok(records)
    }
}

/// Transactions tried when only the manifest's condition fails (concurrent bumps).
const MANIFEST_ATTEMPTS: u32 = 5;

/// Whether a cancelled transaction failed on the manifest's condition (the item after
/// the `flag_items` flag and audit writes) and on nothing else.
fn only_manifest_failed(err: &SdkError<TransactWriteItemsError>, flag_items: usize) -> bool {
    let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = err.as_service_error() else {
        return false;
    };
    let reasons = cancelled.cancellation_reasons();
    let failed = |r: &aws_sdk_dynamodb::types::CancellationReason| r.code().is_some_and(|c| c != "None");
    reasons.get(flag_items).is_some_and(failed) && !reasons[..flag_items.min(reasons.len())].iter().any(failed)
}

fn audit_put(audit_table: &str, record: &AuditRecord) -> Result<TransactWriteItem, CtlError> {
    let item: Item = serde_dynamo::to_item(record).map_err(|e| unreadable("audit record", &record.key, e))?;
    // Never overwrite a record (two writers in the same nanosecond).
    let put = Put::builder()
        .table_name(audit_table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(#k)")
        .expression_attribute_names("#k", "key");
    Ok(TransactWriteItem::builder().put(put.build().map_err(|e| CtlError::aws("TransactWriteItems", e))?).build())
}

fn to_item(value: &Value) -> Result<Item, CtlError> {
    serde_dynamo::to_item(value).map_err(|e| unreadable("flag", value["key"].as_str().unwrap_or("?"), e))
}

/// A transaction that failed: cancelled on a failed condition is a conflict naming the
/// flags whose condition failed; anything else an AWS failure.
fn write_error(
    err: SdkError<TransactWriteItemsError>,
    batch: &[Change],
    written: Vec<String>,
    region: &str,
) -> CtlError {
    if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = err.as_service_error() {
        let reasons = cancelled.cancellation_reasons();
        let failed = |i: usize| reasons.get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed");
        let mut flags: Vec<String> = batch
            .iter()
            .enumerate()
            .filter(|(i, _)| failed(2 * i) || failed(2 * i + 1))
            .map(|(_, c)| c.key.clone())
            .collect();
        if flags.is_empty() && cancelled.message().is_some_and(|m| m.contains("ConditionalCheckFailed")) {
            flags = batch.iter().map(|c| c.key.clone()).collect();
        }
        if !flags.is_empty() {
            return CtlError::Conflict { flags, written };
        }
    }
    match CtlError::call("TransactWriteItems", region, err) {
        CtlError::Aws { operation, message, source, .. } => CtlError::Aws { operation, message, written, source },
        CtlError::Unreachable { region, operation, why, writing, source, .. } => {
            CtlError::Unreachable { region, operation, why, writing, written, source }
        }
        other => other,
    }
}

/// A failed read of the change manifest: unreachable when its `GetItem` got no answer.
fn manifest_error(err: crate::freshness::ManifestError, region: &str) -> CtlError {
    use aws_sdk_dynamodb::config::http::HttpResponse;
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    if let crate::freshness::ManifestError::DynamoDb { source, .. } = err {
        return match source.downcast::<SdkError<GetItemError, HttpResponse>>() {
            Ok(sdk) => CtlError::call("GetItem (change manifest)", region, *sdk),
            Err(other) => CtlError::Aws {
                operation: "GetItem (change manifest)",
                message: super::causes(&*other),
                written: Vec::new(),
                source: other,
            },
        };
    }
    CtlError::aws("GetItem (change manifest)", err)
}

/// Splits an item into its key and [`StoredFlag`].
fn stored(item: Item) -> Result<(String, StoredFlag), CtlError> {
    let key = match item.get("key") {
        Some(AttributeValue::S(key)) => key.clone(),
        _ => return Err(CtlError::input("table", "key", "an item has no string `key`; fix or delete it by hand")),
    };
    let version_attr = item.get("version").cloned();
    if !item.values().all(crate::store::is_known_attribute) {
        return Err(unreadable("flag", &key, "an attribute type this build does not know"));
    }
    let value: Value = serde_dynamo::from_item(item).map_err(|e| unreadable("flag", &key, e))?;
    let Value::Object(mut doc) = value else { return Err(unreadable("flag", &key, "not a map")) };
    let [version, updated_at, updated_by] = MANAGED.map(|field| doc.remove(field));
    let version = match &version {
        None => 0,
        Some(v) => whole(v).ok_or_else(|| unreadable("flag", &key, format!("`version` {v} is not a whole number")))?,
    };
    let text = |v: &Option<Value>| v.as_ref().and_then(Value::as_str).map(str::to_owned);
    let flag = StoredFlag { doc, version, updated_at: text(&updated_at), updated_by: text(&updated_by), version_attr };
    Ok((key, flag))
}

/// A whole number ≥ 0 (`3` or `3.0`, as boto3 may have stored it).
fn whole(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| value.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9.0e15).map(|f| f as u64))
}

fn unreadable(what: &str, key: &str, err: impl std::fmt::Display) -> CtlError {
    CtlError::input("table", key, format!("the {what} item cannot be read: {err}; fix it by hand"))
}
