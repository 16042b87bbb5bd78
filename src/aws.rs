//! Connections to AWS: one place that decides the HTTP client, region, credentials, retries and
//! request quirks for every client the tool uses (S3, IAM, STS).
//!
//! The endpoint, region and (unless a key is given) the credentials come from aws-config's standard
//! chain (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_PROFILE`, …), which is also how the tests point the
//! tool at a local emulator; there is no test-only switch in here.

use std::sync::OnceLock;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_iam::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_iam::config::{ConfigBag, Intercept, RuntimeComponents, SharedHttpClient};
use aws_sdk_sts::error::SdkError;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::credential_store::AccessKey;

/// Where requests go when nothing in the environment names a region; S3 answers every bucket's
/// location from here, and IAM and STS are global.
const FALLBACK_REGION: &str = "us-east-1";

/// Throttling and 5xx answers are retried with exponential backoff and jitter, this many attempts
/// in all (IAM's limits are unpublished token buckets; a few seconds of backoff gets through them).
pub const MAX_ATTEMPTS: u32 = 6;

/// Whose credentials a client uses.
#[derive(Clone, Copy, Debug)]
pub enum AwsCredentials<'a> {
    /// This key (from "Arq S3", or one just issued).
    Key(&'a AccessKey),
    /// The standard chain: environment, shared files, SSO-less profiles, instance metadata.
    Chain,
    /// A named profile from the shared config files.
    Profile(&'a str),
}

/// The one HTTPS client (rustls with ring) every SDK client shares: the system's root
/// certificates are read once per process and connections are pooled across clients.
fn http_client() -> SharedHttpClient {
    static CLIENT: OnceLock<SharedHttpClient> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .build_https()
        })
        .clone()
}

/// Loads the SDK configuration for `credentials`.
pub async fn load_config(credentials: AwsCredentials<'_>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        );
    match credentials {
        AwsCredentials::Key(key) => {
            loader = loader.credentials_provider(Credentials::new(
                &key.id,
                key.secret.expose(),
                None,
                None,
                "arq-lockdown",
            ));
        }
        AwsCredentials::Chain => {}
        AwsCredentials::Profile(name) => loader = loader.profile_name(name),
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

/// An S3 client in `bucket`'s own region (GetBucketLocation); the configured region when that is
/// refused — the calls made with it then name the problem.
pub async fn s3_for_bucket(sdk_config: &SdkConfig, bucket: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::types::BucketLocationConstraint;
    let global = s3_client(sdk_config, None);
    let Ok(location) = global.get_bucket_location().bucket(bucket).send().await else {
        return global;
    };
    let region = match location.location_constraint() {
        None => "us-east-1".to_owned(),
        Some(BucketLocationConstraint::Eu) => "eu-west-1".to_owned(),
        Some(constraint) if constraint.as_str().is_empty() => "us-east-1".to_owned(),
        Some(constraint) => constraint.as_str().to_owned(),
    };
    match sdk_config.region().map(|r| r.as_ref()) == Some(region.as_str()) {
        true => global,
        false => s3_client(sdk_config, Some(Region::new(region))),
    }
}

pub fn sts_client(config: &SdkConfig) -> aws_sdk_sts::Client {
    aws_sdk_sts::Client::new(config)
}

/// An AWS principal as STS names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub arn: String,
    pub account: String,
    /// IAM's unique id of the principal (AIDA… for a user): a user deleted and made again under
    /// the same name has another.
    pub user_id: String,
}

/// Who owns a set of credentials, as STS reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    Known(Caller),
    /// AWS does not accept the credentials at all (the reason: its error code).
    Refused(String),
}

/// An AWS service could not be reached at all (network, endpoint, TLS).
#[derive(Debug, thiserror::Error)]
#[error("cannot reach {service}: {reason}; check the network and AWS_ENDPOINT_URL")]
pub struct Unreachable {
    pub service: &'static str,
    pub reason: String,
}

/// The one test every SDK error goes through for "AWS could not be reached at all" — no answer:
/// network, endpoint, TLS, time-out. Any answer, a refusal included, is not this.
pub fn unreachable<E, R>(service: &'static str, error: &SdkError<E, R>) -> Option<Unreachable>
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => Some(Unreachable {
            service,
            reason: crate::one_line(&DisplayErrorContext(error).to_string()),
        }),
        _ => None,
    }
}

/// Asks STS who owns `sdk_config`'s credentials (GetCallerIdentity needs no permission, so any
/// valid key answers).
pub async fn identify(sdk_config: &SdkConfig) -> Result<Identity, Unreachable> {
    use aws_sdk_sts::error::ProvideErrorMetadata;
    match sts_client(sdk_config).get_caller_identity().send().await {
        Ok(output) => Ok(Identity::Known(Caller {
            arn: output.arn.unwrap_or_default(),
            account: output.account.unwrap_or_default(),
            user_id: output.user_id.unwrap_or_default(),
        })),
        Err(error) => {
            if let Some(unreachable) = unreachable("STS", &error) {
                return Err(unreachable);
            }
            let status = error.raw_response().map_or(0, |r| r.status().as_u16());
            Ok(Identity::Refused(
                error
                    .code()
                    .map_or_else(|| format!("HTTP {status}"), str::to_owned),
            ))
        }
    }
}

/// An IAM client whose form bodies encode spaces as `+`.
pub fn iam_client(config: &SdkConfig) -> aws_sdk_iam::Client {
    let config = aws_sdk_iam::config::Builder::from(config)
        .interceptor(FormSpacesAsPlus)
        .build();
    aws_sdk_iam::Client::from_conf(config)
}

/// IAM's Query API takes `application/x-www-form-urlencoded` bodies, where a space may be written
/// `%20` or `+`. The SDK writes `%20`; some servers (moto among them) re-encode the body with `+`
/// before checking the signature and then reject it. Writing `+` before signing is equally valid
/// for AWS and keeps values with spaces — a Mac's name in a tag — intact everywhere.
#[derive(Debug)]
struct FormSpacesAsPlus;

impl Intercept for FormSpacesAsPlus {
    fn name(&self) -> &'static str {
        "FormSpacesAsPlus"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let request = context.request_mut();
        let Some(body) = request.body().bytes() else {
            return Ok(());
        };
        if !body.windows(3).any(|w| w == b"%20") {
            return Ok(());
        }
        let rewritten = String::from_utf8_lossy(body).replace("%20", "+");
        request
            .headers_mut()
            .insert("Content-Length", rewritten.len().to_string());
        *request.body_mut() = SdkBody::from(rewritten);
        Ok(())
    }
}
