//! The one way this crate configures the AWS SDK: the usual settings chain (environment,
//! profile, container and instance credentials) with an HTTPS client built here, not the
//! SDK's default one.
//!
//! Why: the SDK's default client is rustls over `aws-lc-rs`, whose C library took two
//! minutes of a clean release build and megabytes of the Lambda package, and the SDK
//! crates' default `rustls` feature adds a second, legacy stack (hyper 0.14, rustls 0.21,
//! `ring`). With the SDK's default features off, this client — rustls over `ring`, with
//! the default client's connector settings, timeouts and proxy handling — is the only TLS
//! stack in the build (`tests/package.rs` reads the lock file). The SDK then has no
//! client of its own, so everything that talks to AWS starts from [`loader`]. A leaf:
//! imports nothing from the crate.

use aws_config::{BehaviorVersion, ConfigLoader};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::{Builder, ConnectorBuilder};

/// `aws_config::defaults(BehaviorVersion::latest())` with the ring-based HTTPS client;
/// callers add their timeouts, endpoint or credentials and `load()` it.
///
/// The client is the SDK's default one with `ring` in place of `aws-lc-rs`: a connector
/// per set of connector settings (each client's timeouts), the SDK's sleep for those
/// timeouts, and `HTTPS_PROXY`/`NO_PROXY` from the environment, as the latest behaviour
/// version reads them.
pub fn loader() -> ConfigLoader {
    let client = Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector = ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::Ring));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    });
    aws_config::defaults(BehaviorVersion::latest()).http_client(client)
}
