//! Connections to AWS: one place that decides the HTTP client, region, credentials and S3 addressing.
//!
//! The endpoint, region and (unless a key is given) the credentials come from aws-config's standard
//! chain (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_PROFILE`, …), which is also how the tests point the
//! tool at a local emulator; there is no test-only switch in here.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

use crate::credential_store::AccessKey;

/// Where requests go when nothing in the environment names a region; S3 answers every bucket's
/// location from here.
const FALLBACK_REGION: &str = "us-east-1";

/// Loads the SDK configuration, with `key` as the credentials when given (else the standard chain).
pub async fn load_config(key: Option<&AccessKey>) -> SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        );
    if let Some(key) = key {
        loader = loader.credentials_provider(Credentials::new(
            &key.id,
            key.secret.expose(),
            None,
            None,
            "arq-lockdown",
        ));
    }
    let config = loader.load().await;
    match config.region() {
        Some(_) => config,
        None => config
            .into_builder()
            .region(Region::from_static(FALLBACK_REGION))
            .build(),
    }
}

/// An S3 client for `config`, in `region` when given.
///
/// Path-style addressing always: Arq's bucket names contain dots, which break TLS for
/// virtual-hosted addresses (`bucket.s3.amazonaws.com` does not match the wildcard certificate).
pub fn s3_client(config: &SdkConfig, region: Option<Region>) -> aws_sdk_s3::Client {
    let mut builder = aws_sdk_s3::config::Builder::from(config).force_path_style(true);
    if let Some(region) = region {
        builder = builder.region(region);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}
