//! `DynamoDbStore`: flags from a DynamoDB table (`FLAGS_TABLE`), the Lambda default.
//!
//! One item per flag, partition key `key`, stored as native attributes exactly as the
//! Python service wrote them with boto3. Items are converted with `serde_dynamo` into
//! JSON and compiled with [`CompiledFlag::from_value`], the same path a flags file
//! takes, so a flag means the same thing wherever it is stored.
//!
//! Reads are eventually consistent (DynamoDB's default, half the cost of a strongly
//! consistent read): the cache in front of this store already serves flags up to a TTL
//! old, so a read a second older changes nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_dynamodb::Client;
use serde_json::Value;
use tokio::task::JoinSet;

use super::{BoxFuture, FlagStore, StoreError};
use crate::config::DEFAULT_STORE_TIMEOUT;
use crate::flag::CompiledFlag;

/// A DynamoDB item as the SDK returns it.
type Item = HashMap<String, AttributeValue>;

/// The table's partition key attribute.
const PARTITION_KEY: &str = "key";

/// Most keys DynamoDB accepts in one `BatchGetItem`.
const BATCH_KEYS: usize = 100;

/// `BatchGetItem` calls per chunk of keys, the first included, before the keys still
/// unprocessed are given up on. With the backoff below the retries wait at most ~2.6 s
/// in total (~1.3 s on average): long enough to ride out a burst of throttling, short
/// enough that a Lambda invocation waiting on it still answers (with stale flags).
const BATCH_ATTEMPTS: u32 = 8;

/// First backoff step for `UnprocessedKeys` retries, as AWS recommends (exponential,
/// full jitter).
const BACKOFF_BASE: Duration = Duration::from_millis(25);

/// Longest single backoff wait.
const BACKOFF_CAP: Duration = Duration::from_secs(1);

/// Reads flags from one DynamoDB table.
///
/// Cheap to clone: the SDK client is a handle to a shared connection pool, built once
/// per Lambda environment by the caller (who may add interceptors or an endpoint).
#[derive(Debug, Clone)]
pub struct DynamoDbStore {
    client: Client,
    /// Shared with the `BatchGetItem` tasks, which must own what they use.
    table: Arc<str>,
}

impl DynamoDbStore {
    /// A store reading `table` with `client`, every call bounded by
    /// [`DEFAULT_STORE_TIMEOUT`] (see [`DynamoDbStore::with_timeout`]). Nothing is called
    /// yet: a missing table or missing permissions show up as [`StoreError::DynamoDb`] on
    /// the first read, which the cache treats as an outage rather than as "no flags".
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self::with_timeout(client, table, DEFAULT_STORE_TIMEOUT)
    }

    /// A store whose every DynamoDB call — connecting, each attempt, and the whole
    /// operation with the SDK's own retries — ends within `timeout` (`STORE_TIMEOUT_MS`).
    /// A hanging DynamoDB then costs a request at most `timeout` before the cache serves
    /// stale flags, whatever timeouts the caller's client had (they are replaced; its
    /// endpoint, credentials and interceptors are kept).
    pub fn with_timeout(client: Client, table: impl Into<String>, timeout: Duration) -> Self {
        DynamoDbStore { client: bounded_client(&client, timeout), table: Arc::from(table.into()) }
    }

    async fn get_item(&self, key: &str) -> Result<Option<Arc<CompiledFlag>>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&*self.table)
            .key(PARTITION_KEY, AttributeValue::S(key.to_owned()))
            .send()
            .await
            .map_err(|err| sdk_error("GetItem", err))?;
        Ok(output.item.and_then(compile_item))
    }

    /// `BatchGetItem` over the distinct `keys`, 100 per call, the calls running
    /// concurrently so 250 keys cost one round trip of latency, not three.
    async fn batch_get(&self, keys: &[String]) -> Result<Vec<Arc<CompiledFlag>>, StoreError> {
        // DynamoDB rejects a batch that names the same key twice.
        let mut seen = HashSet::new();
        let distinct: Vec<&str> = keys.iter().map(String::as_str).filter(|key| seen.insert(*key)).collect();
        let mut tasks = JoinSet::new();
        for chunk in distinct.chunks(BATCH_KEYS) {
            let keys = chunk.iter().map(|key| key_of(key)).collect();
            tasks.spawn(fetch_chunk(self.client.clone(), self.table.clone(), keys));
        }
        let mut flags = Vec::with_capacity(distinct.len());
        let mut unprocessed = 0;
        while let Some(joined) = tasks.join_next().await {
            // An error returns at once; dropping `tasks` aborts the other chunks.
            let chunk = joined.map_err(join_error)??;
            flags.extend(chunk.flags);
            unprocessed += chunk.unprocessed;
        }
        if unprocessed > 0 {
            tracing::warn!(table = %self.table, unprocessed, "BatchGetItem kept keys unprocessed; giving up");
            return Err(StoreError::Unprocessed(unprocessed));
        }
        Ok(flags)
    }

    /// Every item, following `LastEvaluatedKey` page by page (DynamoDB pages at 1 MB).
    async fn scan_table(&self) -> Result<Vec<Arc<CompiledFlag>>, StoreError> {
        let mut pages = self.client.scan().table_name(&*self.table).into_paginator().send();
        let mut flags = Vec::new();
        while let Some(page) = pages.try_next().await.map_err(|err| sdk_error("Scan", err))? {
            flags.extend(page.items.unwrap_or_default().into_iter().filter_map(compile_item));
        }
        Ok(flags)
    }
}

impl FlagStore for DynamoDbStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Arc<CompiledFlag>>, StoreError>> {
        Box::pin(self.get_item(key))
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Arc<CompiledFlag>>, StoreError>> {
        Box::pin(self.batch_get(keys))
    }

    fn describe(&self) -> String {
        format!("DynamoDB table {}", self.table)
    }

    fn scan(&self) -> BoxFuture<'_, Result<Vec<Arc<CompiledFlag>>, StoreError>> {
        Box::pin(self.scan_table())
    }
}

/// What one chunk of at most 100 keys yielded.
struct Chunk {
    flags: Vec<Arc<CompiledFlag>>,
    /// Keys still unprocessed after the last attempt.
    unprocessed: usize,
}

/// Reads one chunk, retrying `UnprocessedKeys` (throttling, or the 16 MB response cap)
/// with exponential backoff and full jitter. Owns its arguments: it runs as a task.
async fn fetch_chunk(client: Client, table: Arc<str>, mut keys: Vec<Item>) -> Result<Chunk, StoreError> {
    let mut flags = Vec::with_capacity(keys.len());
    for attempt in 1..=BATCH_ATTEMPTS {
        let request =
            KeysAndAttributes::builder().set_keys(Some(keys)).build().map_err(|err| sdk_error("BatchGetItem", err))?;
        let output = client
            .batch_get_item()
            .request_items(&*table, request)
            .send()
            .await
            .map_err(|err| sdk_error("BatchGetItem", err))?;
        let items = output.responses.and_then(|mut tables| tables.remove(&*table)).unwrap_or_default();
        flags.extend(items.into_iter().filter_map(compile_item));
        keys =
            output.unprocessed_keys.and_then(|mut tables| tables.remove(&*table)).map(|k| k.keys).unwrap_or_default();
        if keys.is_empty() || attempt == BATCH_ATTEMPTS {
            break;
        }
        tracing::debug!(table = %table, unprocessed = keys.len(), attempt, "BatchGetItem left keys unprocessed; retrying");
        tokio::time::sleep(backoff(attempt)).await;
    }
    Ok(Chunk { flags, unprocessed: keys.len() })
}

/// `client` with every call — connecting, each attempt, and the whole operation with the
/// SDK's own retries — bounded by `timeout`; its endpoint, credentials and interceptors
/// are kept. Shared by every DynamoDB reader of the request path's neighbourhood (flags,
/// the change manifest).
pub(crate) fn bounded_client(client: &Client, timeout: Duration) -> Client {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(timeout)
        .operation_attempt_timeout(timeout)
        .operation_timeout(timeout)
        .build();
    Client::from_conf(client.config().to_builder().timeout_config(timeouts).build())
}

fn backoff(attempt: u32) -> Duration {
    crate::backoff::full_jitter(BACKOFF_BASE, BACKOFF_CAP, attempt)
}

/// The primary key of the flag `key`.
fn key_of(key: &str) -> Item {
    HashMap::from([(PARTITION_KEY.to_owned(), AttributeValue::S(key.to_owned()))])
}

/// Converts and compiles one item. An item that cannot be addressed (no string `key`)
/// is skipped with a warning; any other problem yields a malformed flag, which answers
/// `PARSE_ERROR` when asked for instead of a misleading `FLAG_NOT_FOUND`.
fn compile_item(item: Item) -> Option<Arc<CompiledFlag>> {
    let key = match item.get(PARTITION_KEY) {
        Some(AttributeValue::S(key)) => Some(key.clone()),
        _ => None,
    };
    let compiled = match item_to_json(item) {
        Ok(value) => CompiledFlag::from_value(value),
        Err(problem) => match key {
            Some(key) => Ok(CompiledFlag::malformed(&key, &key, 0, problem)),
            None => Err(problem),
        },
    };
    match compiled {
        Ok(flag) => {
            super::report::loaded(&flag);
            Some(Arc::new(flag))
        }
        Err(why) => {
            tracing::warn!(problem = %why, "DynamoDB item skipped: it has no usable string `key`");
            None
        }
    }
}

/// The item as JSON: numbers (`N`, e.g. `"100.0"`, `"0.5"`, `"3"`) become JSON numbers
/// (whole ones integers, others floats), `L`/`M` arrays/objects, `BOOL` booleans,
/// `NULL` null, sets arrays. Binary attributes are not JSON and fail the item.
fn item_to_json(item: Item) -> Result<Value, String> {
    // serde_dynamo treats an attribute type it does not know as unreachable (a panic);
    // the SDK yields one (`Unknown`) if DynamoDB ever adds a type. Refuse those first.
    if !item.values().all(is_known) {
        return Err("item holds an attribute type this build does not know".to_owned());
    }
    serde_dynamo::from_item(item).map_err(|err| format!("item cannot be read as a flag document: {err}"))
}

/// Whether `value` (recursively) uses only the attribute types serde_dynamo handles (it
/// treats others as unreachable, a panic). Shared with flagctl's table adapter.
pub(crate) fn is_known(value: &AttributeValue) -> bool {
    match value {
        AttributeValue::L(list) => list.iter().all(is_known),
        AttributeValue::M(map) => map.values().all(is_known),
        AttributeValue::S(_)
        | AttributeValue::N(_)
        | AttributeValue::B(_)
        | AttributeValue::Bool(_)
        | AttributeValue::Null(_)
        | AttributeValue::Ss(_)
        | AttributeValue::Ns(_)
        | AttributeValue::Bs(_) => true,
        _ => false,
    }
}

/// Wraps an SDK failure with its full context (the SDK's own `Display` says only
/// "service error"); the SDK type itself stays inside as the `source`.
fn sdk_error<E>(operation: &'static str, err: E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StoreError::DynamoDb { operation, message: DisplayErrorContext(&err).to_string(), source: Box::new(err) }
}

/// A chunk task that did not finish. A panic is a bug in this file and is re-raised as
/// it would have been without the task; a cancelled task (runtime shutting down) is
/// reported as a failed read.
fn join_error(err: tokio::task::JoinError) -> StoreError {
    if err.is_panic() {
        std::panic::resume_unwind(err.into_panic());
    }
    sdk_error("BatchGetItem", err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.to_owned())
    }

    fn n(v: &str) -> AttributeValue {
        AttributeValue::N(v.to_owned())
    }

    fn item(attrs: Vec<(&str, AttributeValue)>) -> Item {
        attrs.into_iter().map(|(name, value)| (name.to_owned(), value)).collect()
    }

    #[test]
    fn numbers_as_boto3_writes_them_become_json_numbers() {
        let value = item_to_json(item(vec![("a", n("100.0")), ("b", n("0.5")), ("c", n("3")), ("d", n("-7"))]));
        let value = value.expect("convertible");
        assert_eq!(value["a"].as_f64(), Some(100.0));
        assert_eq!(value["b"].as_f64(), Some(0.5));
        assert_eq!(value["c"].as_u64(), Some(3));
        assert_eq!(value["d"].as_i64(), Some(-7));
    }

    #[test]
    fn a_boto3_shaped_item_compiles() {
        let variant = |key: &str| {
            AttributeValue::M(HashMap::from([
                ("key".to_owned(), s(key)),
                ("allocation".to_owned(), n("0.5")),
                ("payload".to_owned(), AttributeValue::M(HashMap::from([("color".to_owned(), s(key))]))),
            ]))
        };
        let flag = compile_item(item(vec![
            ("key", s("checkout")),
            ("enabled", AttributeValue::Bool(true)),
            ("rollout_percentage", n("100.0")),
            ("version", n("3")),
            ("variants", AttributeValue::L(vec![variant("a"), variant("b")])),
            ("description", AttributeValue::Null(true)),
        ]))
        .expect("keyed");
        assert_eq!((flag.key(), flag.flag_id(), flag.version()), ("checkout", "checkout", 3));
        let body = flag.body().expect("well-formed");
        let payloads: Vec<_> = body.variants().iter().map(|v| v.value().cloned()).collect();
        assert_eq!(payloads, vec![Some(serde_json::json!({"color": "a"})), Some(serde_json::json!({"color": "b"}))]);
    }

    #[test]
    fn an_item_without_a_string_key_is_skipped() {
        assert!(compile_item(item(vec![("enabled", AttributeValue::Bool(true))])).is_none());
        assert!(compile_item(item(vec![("key", n("7")), ("enabled", AttributeValue::Bool(true))])).is_none());
        assert!(compile_item(item(vec![("key", AttributeValue::B(vec![1].into()))])).is_none());
    }

    #[test]
    fn a_wrongly_typed_field_makes_a_malformed_flag() {
        let flag = compile_item(item(vec![("key", s("f")), ("enabled", s("yes")), ("version", n("2"))]));
        let flag = flag.expect("keyed");
        assert!(flag.body().is_err());
        assert_eq!(flag.version(), 2);
    }

    #[test]
    fn an_unconvertible_item_with_a_key_is_kept_as_malformed() {
        let flag = compile_item(item(vec![("key", s("bin")), ("blob", AttributeValue::B(vec![0, 1].into()))]));
        let flag = flag.expect("keyed");
        assert_eq!(flag.key(), "bin");
        assert!(flag.body().is_err());
    }

    #[test]
    fn backoff_is_bounded_by_the_cap() {
        for attempt in 1..=BATCH_ATTEMPTS + 40 {
            let ceiling = BACKOFF_BASE.saturating_mul(1 << (attempt - 1).min(16)).min(BACKOFF_CAP);
            assert!(backoff(attempt) <= ceiling);
        }
        assert!(backoff(1) <= BACKOFF_BASE);
    }
}
