//! `DynamoDbManifest`: the change manifest in its own table (`MANIFEST_TABLE`, partition
//! key `id`), one item per flags table (`id` = the flags table's name), so no `Scan` of
//! flags ever returns it and no flag key can collide with it.
//!
//! Item: `{id: S, version: N, changes: L[M{key: S, version: N, at: N}]}`. Readers use
//! one eventually consistent `GetItem`; writers read it consistently and put it back
//! conditionally on the version they read (`attribute_not_exists(version)` for the first
//! write), retrying when another writer got there first — so concurrent stream batches
//! and `flagctl` transactions never lose a change. `AttributeValue` stays in this file.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Put};
use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};

use super::manifest::{Change, Manifest, Written};
use super::{ManifestError, ManifestStore};
use crate::store::BoxFuture;

/// The manifest table's partition key.
const PARTITION_KEY: &str = "id";

/// Conditional writes tried before giving up on a contended manifest.
const WRITE_ATTEMPTS: u32 = 8;

type Item = HashMap<String, AttributeValue>;

/// The item as stored.
#[derive(Debug, Serialize, Deserialize)]
struct ManifestItem {
    id: String,
    #[serde(default)]
    version: u64,
    #[serde(default)]
    changes: Vec<Change>,
}

/// The manifest of one flags table, in the manifest table.
#[derive(Debug, Clone)]
pub struct DynamoDbManifest {
    client: Client,
    table: String,
    id: String,
}

impl DynamoDbManifest {
    /// The manifest of flags table `flags_table`, kept in `manifest_table`; every call
    /// ends within `timeout` (`STORE_TIMEOUT_MS`, the same bound as flag reads), so a
    /// hanging DynamoDB costs a check at most that.
    pub fn new(client: Client, manifest_table: &str, flags_table: &str, timeout: Duration) -> Self {
        let client = crate::store::bounded_dynamodb_client(&client, timeout);
        DynamoDbManifest { client, table: manifest_table.to_owned(), id: flags_table.to_owned() }
    }

    async fn record_writes(&self, writes: &[Written]) -> Result<Manifest, ManifestError> {
        for attempt in 1..=WRITE_ATTEMPTS {
            let seen = read(&self.client, &self.table, &self.id, true).await?;
            let next = seen.with(writes);
            let (item, condition, names, values) = put_parts(&self.id, &seen, &next)?;
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(values);
            match put.send().await {
                Ok(_) => return Ok(next),
                Err(err)
                    if matches!(err.as_service_error(), Some(PutItemError::ConditionalCheckFailedException(_))) =>
                {
                    tracing::debug!(attempt, "manifest changed under us; retrying");
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(5..=25 * u64::from(attempt)))).await;
                }
                Err(err) => return Err(sdk_error("PutItem", err)),
            }
        }
        Err(ManifestError::Contended(WRITE_ATTEMPTS))
    }
}

impl ManifestStore for DynamoDbManifest {
    fn read(&self) -> BoxFuture<'_, Result<Manifest, ManifestError>> {
        Box::pin(read(&self.client, &self.table, &self.id, false))
    }

    fn record<'a>(&'a self, writes: &'a [Written]) -> BoxFuture<'a, Result<Manifest, ManifestError>> {
        Box::pin(self.record_writes(writes))
    }
}

/// The manifest of `flags_table` in `manifest_table`, strongly consistent: what a
/// conditional write is based on (flagctl).
pub async fn read_consistent(
    client: &Client,
    manifest_table: &str,
    flags_table: &str,
) -> Result<Manifest, ManifestError> {
    read(client, manifest_table, flags_table, true).await
}

async fn read(client: &Client, table: &str, id: &str, consistent: bool) -> Result<Manifest, ManifestError> {
    let output = client
        .get_item()
        .table_name(table)
        .key(PARTITION_KEY, AttributeValue::S(id.to_owned()))
        .consistent_read(consistent)
        .send()
        .await
        .map_err(|err| sdk_error("GetItem", err))?;
    let Some(item) = output.item else { return Ok(Manifest::default()) };
    if !item.values().all(crate::store::is_known_attribute) {
        return Err(ManifestError::Unreadable("an attribute type this build does not know".into()));
    }
    let item: ManifestItem = serde_dynamo::from_item(item).map_err(|e| ManifestError::Unreadable(e.to_string()))?;
    Ok(Manifest { version: item.version, changes: item.changes })
}

/// The `TransactWriteItems` entry that moves the manifest of `flags_table` from `seen`
/// to `next`, conditional on `seen` still being current (flagctl bumps the manifest in
/// the same transaction as its flag writes).
pub fn manifest_put(
    manifest_table: &str,
    flags_table: &str,
    seen: &Manifest,
    next: &Manifest,
) -> Result<Put, ManifestError> {
    let (item, condition, names, values) = put_parts(flags_table, seen, next)?;
    Put::builder()
        .table_name(manifest_table)
        .set_item(Some(item))
        .condition_expression(condition)
        .set_expression_attribute_names(Some(names))
        .set_expression_attribute_values(values)
        .build()
        .map_err(|err| sdk_error("TransactWriteItems", err))
}

type PutParts = (Item, &'static str, HashMap<String, String>, Option<HashMap<String, AttributeValue>>);

/// The item for `next` and the condition that `seen` is still what is stored.
fn put_parts(id: &str, seen: &Manifest, next: &Manifest) -> Result<PutParts, ManifestError> {
    let stored = ManifestItem { id: id.to_owned(), version: next.version, changes: next.changes.clone() };
    let item: Item = serde_dynamo::to_item(&stored).map_err(|e| ManifestError::Unreadable(e.to_string()))?;
    let names = HashMap::from([("#v".to_owned(), "version".to_owned())]);
    if seen.version == 0 {
        return Ok((item, "attribute_not_exists(#v)", names, None));
    }
    let values = HashMap::from([(":v".to_owned(), AttributeValue::N(seen.version.to_string()))]);
    Ok((item, "#v = :v", names, Some(values)))
}

fn sdk_error<E>(operation: &'static str, err: E) -> ManifestError
where
    E: std::error::Error + Send + Sync + 'static,
{
    ManifestError::DynamoDb { operation, message: DisplayErrorContext(&err).to_string(), source: Box::new(err) }
}
