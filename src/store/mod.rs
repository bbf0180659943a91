//! Where flag definitions live: the `FlagStore` port and its adapters.
//!
//! The trait is deliberately small and speaks domain types only — compiled flags in,
//! [`StoreError`] out. `AttributeValue` and friends never leave `dynamodb.rs`.

mod dynamodb;
mod file;
mod report;

pub(crate) use dynamodb::bounded_client as bounded_dynamodb_client;
pub(crate) use dynamodb::is_known as is_known_attribute;
pub use dynamodb::DynamoDbStore;
pub use file::FileStore;
pub use report::lenient_reads;

use std::future::Future;
use std::pin::Pin;

use std::sync::Arc;

use crate::config::{Config, FlagSourceConfig};
use crate::flag::CompiledFlag;

/// A boxed, sendable future: what the trait's methods return so the store can be a
/// `dyn FlagStore` chosen at start-up (a table in Lambda, a file locally).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Reads flag definitions. Implementations compile what they read, so callers get
/// shared [`CompiledFlag`]s (possibly malformed ones, which evaluate to `PARSE_ERROR`),
/// ready to go into the cache as they are.
///
/// Items that cannot be addressed at all (no string `key`) are skipped with a warning;
/// they could never be asked for.
pub trait FlagStore: Send + Sync {
    /// The flag stored under `key`, or `None` when there is no such item.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Arc<CompiledFlag>>, StoreError>>;

    /// The flags stored under `keys` (duplicates allowed); keys with no item are simply
    /// absent from the answer. One round trip per 100 keys on DynamoDB.
    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Arc<CompiledFlag>>, StoreError>>;

    /// Every flag in the store (a paginated `Scan` on DynamoDB).
    fn scan(&self) -> BoxFuture<'_, Result<Vec<Arc<CompiledFlag>>, StoreError>>;

    /// Where the flags come from, for people (the local server's banner, logs).
    fn describe(&self) -> String {
        "a flag store".to_owned()
    }
}

/// Opens the flag store the configuration names — the one place a backend is chosen, so
/// a new backend is its own file plus one arm here. `aws` is called only for backends
/// that need the AWS SDK (a flags file never loads AWS configuration).
pub async fn open<F, Fut>(config: &Config, aws: F) -> Result<Arc<dyn FlagStore>, StoreError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = aws_config::SdkConfig>,
{
    Ok(match &config.flags {
        FlagSourceConfig::Table(table) => {
            let client = aws_sdk_dynamodb::Client::new(&aws().await);
            Arc::new(DynamoDbStore::with_timeout(client, table, config.store_timeout))
        }
        FlagSourceConfig::File(path) => Arc::new(FileStore::open(path)?),
    })
}

/// A store read failed. Never means "not found": the cache serves stale values (or a
/// `GENERAL` error) on this, and never caches it as a miss.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A DynamoDB call failed (network, throttling, permissions, missing table...).
    #[error("DynamoDB {operation} failed: {message}")]
    DynamoDb {
        /// `GetItem`, `BatchGetItem` or `Scan`.
        operation: &'static str,
        /// The SDK's full error context, for logs.
        message: String,
        /// The SDK error itself.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `BatchGetItem` kept returning `UnprocessedKeys` after every retry.
    #[error("DynamoDB BatchGetItem left {0} keys unprocessed after retrying")]
    Unprocessed(usize),
    /// The local flags file could not be read.
    #[error("cannot read flags file {path}: {source}")]
    FileRead {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The local flags file is not a flags document.
    #[error("flags file {path} is unusable: {source}")]
    FileFormat {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: crate::flag::FlagsFileError,
    },
}

#[cfg(test)]
pub(crate) mod fake;
