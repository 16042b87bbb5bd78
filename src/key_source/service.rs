//! Scoped keys from the provisioning service (`arq-lockdown serve`), so the Mac never holds IAM
//! rights: it proves who it is with a GetCallerIdentity request signed by the key in "Arq S3"
//! ([`crate::service::proof`]) — or an enrollment token — and gets a key for its own computer.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{StatusCode, Uri};
use serde::Serialize;

use super::IssuedKey;
use crate::arq_config::{ArqConfig, ComputerUuid};
use crate::credential_store::AccessKey;
use crate::exit_code::ExitCode;
use crate::https::HttpsClient;
use crate::secret::Secret;
use crate::service::api::{ErrorBody, KeyRequest, KeyResponse, RetireRequest};
use crate::service::proof;

/// The STS host proofs are signed for; the service replays them to its own STS endpoint.
const STS_HOST: &str = "sts.amazonaws.com";

#[derive(Debug, thiserror::Error)]
pub enum ServiceClientError {
    #[error(
        "the service URL {0:?} must be https:// (plain http:// only to this machine): fix --service-url"
    )]
    Insecure(String),
    #[error("the service URL {0:?} is not a URL: fix --service-url")]
    BadUrl(String),
    #[error("cannot reach the service at {url}: {reason}; check the network and --service-url")]
    Unreachable { url: String, reason: String },
    #[error("the service refused ({code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("the service answered {0} with something that is not a key: check --service-url")]
    BadAnswer(u16),
}

impl ServiceClientError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Insecure(_) | Self::BadUrl(_) => ExitCode::ConfigInvalid,
            Self::Refused { status: 403, .. } => ExitCode::Credentials,
            _ => ExitCode::Aws,
        }
    }
}

/// A client of one provisioning service.
pub struct ServiceClient {
    url: String,
    server_id: String,
    enrollment_token: Option<Secret>,
    http: HttpsClient,
}

impl ServiceClient {
    /// `url` must be https://, or http:// to a loopback address. `server_id` defaults to the URL's host.
    pub fn new(
        url: &str,
        server_id: Option<String>,
        enrollment_token: Option<Secret>,
    ) -> Result<Self, ServiceClientError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| ServiceClientError::BadUrl(url.to_owned()))?;
        let host = uri
            .host()
            .ok_or_else(|| ServiceClientError::BadUrl(url.to_owned()))?;
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if is_loopback(host) => {}
            Some("http") => return Err(ServiceClientError::Insecure(url.to_owned())),
            _ => return Err(ServiceClientError::BadUrl(url.to_owned())),
        }
        let http = HttpsClient::new(Duration::from_secs(60)).map_err(|e| {
            ServiceClientError::Unreachable {
                url: url.to_owned(),
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            server_id: server_id.unwrap_or_else(|| host.to_owned()),
            enrollment_token,
            http,
        })
    }

    /// Whether enrollment goes by token (no proof from the key in "Arq S3" needed).
    pub fn has_enrollment_token(&self) -> bool {
        self.enrollment_token.is_some()
    }

    /// A first key for this computer, proven by `key` (the fleet's main keys) or the enrollment token.
    pub async fn enroll(
        &self,
        config: &ArqConfig,
        key: &AccessKey,
        computer_name: &str,
        serial: &str,
    ) -> Result<IssuedKey, ServiceClientError> {
        let (proof, enrollment_token) = match &self.enrollment_token {
            Some(token) => (None, Some(token.expose().to_owned())),
            None => (Some(self.proof(key, &config.computer_uuid)), None),
        };
        let mut request = KeyRequest {
            computer_uuid: config.computer_uuid.to_string(),
            bucket: config.bucket.to_string(),
            computer_name: computer_name.to_owned(),
            serial: serial.to_owned(),
            proof,
            enrollment_token,
        };
        let answer = self.post("/v1/enroll", &request).await;
        if let Some(token) = request.enrollment_token.as_mut() {
            zeroize::Zeroize::zeroize(token);
        }
        issued(answer?)
    }

    /// A new key for this computer, proven by its current scoped `key`.
    pub async fn rotate(
        &self,
        config: &ArqConfig,
        key: &AccessKey,
    ) -> Result<IssuedKey, ServiceClientError> {
        let request = KeyRequest {
            computer_uuid: config.computer_uuid.to_string(),
            bucket: config.bucket.to_string(),
            computer_name: String::new(),
            serial: String::new(),
            proof: Some(self.proof(key, &config.computer_uuid)),
            enrollment_token: None,
        };
        issued(self.post("/v1/rotate", &request).await?)
    }

    /// Deletes the computer's key `old_key_id`, proven by its new key.
    pub async fn retire(
        &self,
        uuid: &ComputerUuid,
        new: &AccessKey,
        old_key_id: &str,
    ) -> Result<(), ServiceClientError> {
        let request = RetireRequest {
            computer_uuid: uuid.to_string(),
            access_key_id: old_key_id.to_owned(),
            proof: self.proof(new, uuid),
        };
        self.post("/v1/retire", &request).await.map(drop)
    }

    fn proof(&self, key: &AccessKey, uuid: &ComputerUuid) -> proof::Proof {
        proof::make(key, STS_HOST, &self.server_id, uuid, SystemTime::now())
    }

    async fn post(&self, path: &str, body: &impl Serialize) -> Result<Bytes, ServiceClientError> {
        let url = format!("{}{path}", self.url);
        let mut json = serde_json::to_vec(body).expect("requests serialize");
        let request = hyper::Request::post(&url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::copy_from_slice(&json)))
            .map_err(|_| ServiceClientError::BadUrl(self.url.clone()))?;
        zeroize::Zeroize::zeroize(&mut json);
        let (status, answer) =
            self.http
                .send(request)
                .await
                .map_err(|e| ServiceClientError::Unreachable {
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
        if status == StatusCode::OK {
            return Ok(answer);
        }
        match serde_json::from_slice::<ErrorBody>(&answer) {
            Ok(error) => Err(ServiceClientError::Refused {
                status: status.as_u16(),
                code: error.error,
                message: error.message,
            }),
            Err(_) => Err(ServiceClientError::BadAnswer(status.as_u16())),
        }
    }
}

fn issued(answer: Bytes) -> Result<IssuedKey, ServiceClientError> {
    let response: KeyResponse =
        serde_json::from_slice(&answer).map_err(|_| ServiceClientError::BadAnswer(200))?;
    Ok(IssuedKey {
        key: AccessKey {
            id: response.access_key_id.clone(),
            secret: Secret::new(response.secret_access_key.clone()),
        },
        user_arn: response.user_arn.clone(),
    })
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
