//! `flagfn`: the Lambda function, or (without `AWS_LAMBDA_RUNTIME_API`) the same routes
//! as a local HTTP server. Init phase: configuration, logging, clients, `App` — built
//! once and reused by every warm invocation.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use flagfn::app::App;
use flagfn::clock::Clock;
use flagfn::config::{Config, FlagSourceConfig};
use flagfn::freshness::{DynamoDbManifest, ManifestStore};
use flagfn::sink::{EventSink, FileSink, KinesisSink};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("flagfn: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "flagfn stopped");
            ExitCode::FAILURE
        }
    }
}

/// Crates that log request or response payloads (events, records: user ids) at
/// debug/trace level. They are capped at `info` whatever `RUST_LOG` asks for, so no log
/// level ever puts user data in the logs.
const PAYLOAD_LOGGING_CRATES: [&str; 12] = [
    "lambda_runtime",
    "lambda_runtime_api_client",
    "lambda_extension",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_sdk_dynamodb",
    "aws_sdk_kinesis",
    "hyper",
    "hyper_util",
    "h2",
];

/// The log filter: `RUST_LOG`'s directives, minus any that would raise a
/// payload-logging crate above `info`, plus `info` caps for those crates.
fn log_filter(requested: &str) -> String {
    let kept = requested.split(',').map(str::trim).filter(|d| !d.is_empty()).filter(|directive| {
        let target = directive.split(['=', '[']).next().unwrap_or("");
        !PAYLOAD_LOGGING_CRATES.iter().any(|c| target == *c || target.starts_with(&format!("{c}::")))
    });
    let caps = PAYLOAD_LOGGING_CRATES.iter().map(|c| format!("{c}=info"));
    kept.map(str::to_owned).chain(caps).collect::<Vec<_>>().join(",")
}

/// JSON lines in Lambda (the template sets `LogFormat: JSON`), readable text locally.
fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(log_filter(&config.log_filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_filter("info")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if config.lambda_runtime_api.is_some() {
        builder.json().flatten_event(true).with_current_span(false).with_target(false).init();
    } else {
        builder.compact().init();
    }
}

async fn run(config: Config) -> Result<(), Error> {
    let metrics = flagfn::metrics::Metrics::open(&config.metrics)
        .map_err(|error| format!("METRICS_FILE: cannot open {:?}: {error}", config.metrics.output))?;
    let store = flagfn::store::open(&config, aws).await?;
    tracing::info!(flags = %store.describe(), "flag store");
    let flags = store.describe();
    let mut app = App::new(store, sink(&config).await?, &config, Clock::system()).with_metrics(metrics);
    if let Some(manifest) = manifest(&config).await {
        app = app.with_manifest(manifest);
    }
    let app = Arc::new(app);
    if config.lambda_runtime_api.is_some() {
        return match config.lambda_role {
            flagfn::config::LambdaRole::Api => flagfn::lambda::run(app).await,
            flagfn::config::LambdaRole::Stream => flagfn::lambda_stream::run(app).await,
        };
    }
    let listener = tokio::net::TcpListener::bind(config.bind_addr).await?;
    flagfn::server::print_banner(&config, &flags, listener.local_addr()?);
    let limits = flagfn::server::ServerLimits { max_connections: config.server_max_connections, ..Default::default() };
    let shutdown = flagfn::server::shutdown_signal();
    flagfn::server::serve_with(app, listener, config.events.flush_interval, shutdown, limits).await?;
    Ok(())
}

/// AWS SDK settings shared by both clients: bounded timeouts, so a store or stream
/// outage turns into a fast error (and stale flags) rather than a hung invocation. The
/// flag store replaces these with its own, tighter `STORE_TIMEOUT_MS`.
async fn aws() -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
        .build();
    flagfn::aws::loader().timeout_config(timeouts).load().await
}

/// The change manifest of the flags table, when `MANIFEST_TABLE` is set and
/// flags come from a table (a local flags file has no manifest).
async fn manifest(config: &Config) -> Option<Arc<dyn ManifestStore>> {
    let table = config.freshness.table.as_deref()?;
    let FlagSourceConfig::Table(flags_table) = &config.flags else {
        tracing::warn!("MANIFEST_TABLE is ignored: flags come from FLAGS_FILE");
        return None;
    };
    if config.freshness.every.is_zero() {
        tracing::info!(table, "FRESHNESS_SECONDS=0: warm environments see changes by TTL only");
    }
    let client = aws_sdk_dynamodb::Client::new(&aws().await);
    Some(Arc::new(DynamoDbManifest::new(client, table, flags_table, config.store_timeout)))
}

async fn sink(config: &Config) -> Result<Option<Arc<dyn EventSink>>, Error> {
    let events = &config.events;
    match (&events.stream, &events.file, config.lambda_runtime_api.is_some()) {
        (Some(stream), _, _) => {
            tracing::info!(stream, kpl_aggregation = events.kpl_aggregation, "evaluation events to Kinesis");
            let client = aws_sdk_kinesis::Client::new(&aws().await);
            Ok(Some(Arc::new(KinesisSink::new(client, stream).aggregated(events.kpl_aggregation))))
        }
        (None, Some(file), false) => {
            tracing::info!(file = %file.display(), "evaluation events to a local file");
            Ok(Some(Arc::new(FileSink::open(file)?)))
        }
        _ => {
            tracing::warn!("KINESIS_STREAM_NAME is not set: evaluation events are off");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn payload_logging_crates_are_capped_at_info_whatever_rust_log_says() {
        let filter = log_filter("trace,lambda_runtime=trace,aws_smithy_runtime::client=debug,flagfn=debug");
        assert!(filter.starts_with("trace,flagfn=debug,"), "{filter}");
        assert!(!filter.contains("lambda_runtime=trace") && !filter.contains("aws_smithy_runtime::client=debug"));
        assert!(filter.contains("lambda_runtime=info") && filter.contains("aws_smithy_runtime=info"));
        assert!(tracing_subscriber::EnvFilter::try_new(filter).is_ok());
    }
}
