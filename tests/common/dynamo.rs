//! DynamoDB harness for integration tests: a shared moto, SDK clients whose real
//! operations are counted from inside the SDK, tables, items written by boto3 (exactly
//! as the Python service wrote them) or by the Rust SDK, and an `App` over a table.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_dynamodb::types::{KeyType, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use flagfn::app::App;
use flagfn::clock::Clock;
use flagfn::store::DynamoDbStore;
use serde_json::Value;

use super::app::{table_config, MemorySink};
use super::moto::fast_sdk_config;

/// Counts the DynamoDB operations a client really executes, by name, from inside the
/// SDK (once per operation, not per retry attempt, when its request is built).
#[derive(Debug, Clone, Default)]
pub struct Operations(Arc<Mutex<BTreeMap<String, usize>>>);

impl Operations {
    /// Every operation so far, by name (`GetItem`, `BatchGetItem`, `Scan`, ...).
    pub fn snapshot(&self) -> BTreeMap<String, usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// How many `operation`s so far.
    pub fn count(&self, operation: &str) -> usize {
        self.snapshot().get(operation).copied().unwrap_or(0)
    }

    /// All operations so far, whatever their name.
    pub fn total(&self) -> usize {
        self.snapshot().values().sum()
    }
}

impl Intercept for Operations {
    fn name(&self) -> &'static str {
        "OperationCounter"
    }

    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let name = cfg.load::<Metadata>().map_or("unknown", Metadata::name).to_owned();
        *self.0.lock().unwrap_or_else(PoisonError::into_inner).entry(name).or_default() += 1;
        Ok(())
    }
}

/// A client for `endpoint` with `operations` counting its calls; it fails fast
/// ([`fast_sdk_config`]) so a dead server fails a test in seconds, not minutes.
pub async fn client(endpoint: &str, operations: &Operations) -> Client {
    let config = aws_sdk_dynamodb::config::Builder::from(&fast_sdk_config(endpoint).await)
        .interceptor(operations.clone())
        .build();
    Client::from_conf(config)
}

/// Creates `table` (partition key `key`, on demand) with the Rust SDK.
pub async fn create_table(client: &Client, table: &str) {
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, ScalarAttributeType};
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(KeySchemaElement::builder().attribute_name("key").key_type(KeyType::Hash).build().unwrap())
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("key")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("CreateTable");
}

/// Bulk writes with the Rust SDK (`BatchWriteItem`, 25 per call), for tests about
/// volume rather than item shape.
pub async fn put_flags(client: &Client, table: &str, flags: &[Value]) {
    for chunk in flags.chunks(25) {
        let requests = chunk
            .iter()
            .map(|flag| {
                let item = serde_dynamo::to_item(flag).expect("flag as item");
                WriteRequest::builder().put_request(PutRequest::builder().set_item(Some(item)).build().unwrap()).build()
            })
            .collect();
        let output = client.batch_write_item().request_items(table, requests).send().await.expect("BatchWriteItem");
        assert!(output.unprocessed_items.unwrap_or_default().is_empty(), "moto left writes unprocessed");
    }
}

/// Creates `table` and writes `flags` into it with boto3 (`Table.put_item`, numbers
/// loaded as `Decimal`), as the Python service did.
pub fn seed_with_boto3(endpoint: &str, table: &str, flags: &Value) {
    run_seeder(endpoint, table, flags, true);
}

/// Writes (or overwrites) `flags` in the existing `table` with boto3.
pub fn put_with_boto3(endpoint: &str, table: &str, flags: &Value) {
    run_seeder(endpoint, table, flags, false);
}

/// Creates `table` and writes the flags of the JSON text `flags` with boto3, numbers
/// exactly as the text writes them (`1E+1` stays the DynamoDB number `1E+1`).
pub fn seed_text_with_boto3(endpoint: &str, table: &str, flags: &str) {
    run_seeder_text(endpoint, table, flags.as_bytes(), true);
}

fn run_seeder(endpoint: &str, table: &str, flags: &Value, create: bool) {
    let text = serde_json::to_vec(flags).expect("flags as JSON");
    run_seeder_text(endpoint, table, &text, create);
}

fn run_seeder_text(endpoint: &str, table: &str, flags: &[u8], create: bool) {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut command = Command::new(format!("{root}/.venv/bin/python"));
    command.arg(format!("{root}/tests/support/seed_dynamodb.py")).args(["--endpoint", endpoint, "--table", table]);
    if create {
        command.arg("--create");
    }
    let mut child =
        command.stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run .venv/bin/python (run `make venv`)");
    let mut stdin = child.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut stdin, flags).expect("flags to the seeder");
    drop(stdin);
    let output = child.wait_with_output().expect("seeder");
    assert!(output.status.success(), "seed_dynamodb.py failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// The store timeout of tests that are not about it: moto on a machine busy compiling
/// can take longer than the production default to answer a large read.
pub const RELAXED_STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// An `App` over `table` read with `client`, with the `extra` settings (e.g.
/// `CACHE_TTL_SECONDS`), recording events into a memory sink. Its store times out after
/// `STORE_TIMEOUT_MS` if `extra` sets it, else after [`RELAXED_STORE_TIMEOUT`].
pub fn dynamo_app(client: Client, table: &str, extra: &[(&str, &str)], clock: Clock) -> (Arc<App>, Arc<MemorySink>) {
    let config = table_config(table, extra);
    let timeout = match extra.iter().any(|(name, _)| *name == "STORE_TIMEOUT_MS") {
        true => config.store_timeout,
        false => RELAXED_STORE_TIMEOUT,
    };
    let sink = Arc::new(MemorySink::default());
    let store = DynamoDbStore::with_timeout(client, table, timeout);
    let app = App::new(Arc::new(store), Some(sink.clone()), &config, clock);
    (Arc::new(app), sink)
}

/// Creates `table` (on demand) with these string key attributes: `[("key", Hash)]`, or a
/// hash and a range key.
pub async fn create_keyed_table(client: &Client, table: &str, keys: &[(&str, KeyType)]) {
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, ScalarAttributeType};
    let mut create = client.create_table().table_name(table).billing_mode(BillingMode::PayPerRequest);
    for (name, kind) in keys {
        let attribute = AttributeDefinition::builder().attribute_name(*name).attribute_type(ScalarAttributeType::S);
        let key = KeySchemaElement::builder().attribute_name(*name).key_type(kind.clone());
        create = create.attribute_definitions(attribute.build().unwrap()).key_schema(key.build().unwrap());
    }
    create.send().await.expect("CreateTable");
}
