//! Scoped keys from the provisioning service (`arq-lockdown serve`), so the Mac never holds IAM
//! rights. The client side of [`crate::protocol`]: it proves who it is with a GetCallerIdentity
//! request signed by the key in "Arq S3" (or an enrollment token), signs enrollments with this
//! Mac's enrollment key, and opens the sealed answer with a reply key that lives only in memory.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{StatusCode, Uri};
use serde::Serialize;

use super::{Computer, IssuedKey, ServiceCall};
use crate::Error;
use crate::arq_config::ComputerUuid;
use crate::credential_store::{AccessKey, ArqS3, CredentialStore, StoreError};
use crate::exit_code::ExitCode;
use crate::https::HttpsClient;
use crate::protocol::enrollment::{EnrollmentKey, fingerprint};
use crate::protocol::sealed::ReplyKey;
use crate::protocol::{
    self, ENROLL, EnrollRequest, Envelope, ErrorBody, KeyResponse, RETIRE, ROTATE, RetireRequest,
    RotateRequest,
};
use crate::secret::Secret;
use crate::setback::{Setback, SetbackKind};

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
        access_key_ids: Vec<String>,
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

    /// The setback `apply` records when the service refuses for this reason (contracts §4):
    /// another Mac holds the computer, or the admin has not confirmed this Mac yet.
    pub fn setback(&self) -> Option<SetbackKind> {
        let Self::Refused { code, .. } = self else {
            return None;
        };
        match code.as_str() {
            "computer-already-enrolled" | "computer-pinned-to-another-mac" => {
                Some(SetbackKind::ClaimedByAnotherMac)
            }
            "computer-needs-confirmation" => Some(SetbackKind::AwaitingConfirmation),
            _ => None,
        }
    }

    /// The keys that fill the user's two slots, when that is why the service refused.
    fn key_limit(&self) -> Option<&[String]> {
        match self {
            Self::Refused {
                code,
                access_key_ids,
                ..
            } if code == "key-limit" => Some(access_key_ids),
            _ => None,
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

    /// A key for this computer, proven by `main_key` (the fleet's main keys) or the enrollment
    /// token, and signed by this Mac's `enrollment` key.
    pub async fn enroll(
        &self,
        computer: &Computer<'_>,
        main_key: Option<&AccessKey>,
        enrollment: &EnrollmentKey,
    ) -> Result<IssuedKey, ServiceClientError> {
        let reply = ReplyKey::generate();
        let request = EnrollRequest {
            computer_uuid: computer.config.computer_uuid.to_string(),
            bucket: computer.config.bucket.to_string(),
            computer_name: computer.name.map(str::to_owned),
            serial: computer.serial.map(str::to_owned),
            enrollment_key: enrollment.public(),
            reply_key: reply.public(),
            enrollment_token: self
                .enrollment_token
                .as_ref()
                .map(|t| t.expose().to_owned()),
            replaced_key_id: computer.replaced_key.map(str::to_owned),
            issued_at: protocol::now_unix(),
            nonce: protocol::nonce(),
        };
        let proof = main_key.filter(|_| request.enrollment_token.is_none());
        let uuid = &computer.config.computer_uuid;
        let answer = self.post(ENROLL, uuid, &request, proof, enrollment).await?;
        issued(&answer, &reply)
    }

    /// A new key for this computer, proven by its current scoped `key` and signed by its
    /// `enrollment` key.
    pub async fn rotate(
        &self,
        computer: &Computer<'_>,
        key: &AccessKey,
        enrollment: &EnrollmentKey,
    ) -> Result<IssuedKey, ServiceClientError> {
        let reply = ReplyKey::generate();
        let request = RotateRequest {
            computer_uuid: computer.config.computer_uuid.to_string(),
            bucket: computer.config.bucket.to_string(),
            reply_key: reply.public(),
            issued_at: protocol::now_unix(),
            nonce: protocol::nonce(),
        };
        let uuid = &computer.config.computer_uuid;
        let answer = self
            .post(ROTATE, uuid, &request, Some(key), enrollment)
            .await?;
        issued(&answer, &reply)
    }

    /// Deletes the computer's key `key_id`, signed by its `enrollment` key.
    pub async fn retire(
        &self,
        uuid: &ComputerUuid,
        key_id: &str,
        enrollment: &EnrollmentKey,
    ) -> Result<(), ServiceClientError> {
        let request = RetireRequest {
            computer_uuid: uuid.to_string(),
            access_key_id: key_id.to_owned(),
            enrollment_key: enrollment.public(),
            issued_at: protocol::now_unix(),
            nonce: protocol::nonce(),
        };
        self.post(RETIRE, uuid, &request, None, enrollment)
            .await
            .map(drop)
    }

    /// Sends `request` to `endpoint` in an envelope signed by `enrollment` and, with `key`,
    /// proven by it.
    async fn post(
        &self,
        endpoint: &str,
        uuid: &ComputerUuid,
        request: &impl Serialize,
        key: Option<&AccessKey>,
        enrollment: &EnrollmentKey,
    ) -> Result<Bytes, ServiceClientError> {
        let text = serde_json::to_string(request).expect("requests serialize");
        let envelope = Envelope::new(
            endpoint,
            &self.server_id,
            STS_HOST,
            uuid,
            text,
            key,
            Some(enrollment),
        );
        let json =
            zeroize::Zeroizing::new(serde_json::to_vec(&envelope).expect("envelopes serialize"));
        let url = format!("{}{endpoint}", self.url);
        let http_request = hyper::Request::post(&url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::copy_from_slice(&json)))
            .map_err(|_| ServiceClientError::BadUrl(self.url.clone()))?;
        let (status, answer) =
            self.http
                .send(http_request)
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
                access_key_ids: error.access_key_ids,
            }),
            Err(_) => Err(ServiceClientError::BadAnswer(status.as_u16())),
        }
    }
}

/// The key in a [`KeyResponse`], its secret opened with `reply`.
fn issued(answer: &[u8], reply: &ReplyKey) -> Result<IssuedKey, ServiceClientError> {
    let response: KeyResponse =
        serde_json::from_slice(answer).map_err(|_| ServiceClientError::BadAnswer(200))?;
    let secret = reply
        .open(&response.sealed_secret_access_key)
        .ok_or(ServiceClientError::BadAnswer(200))?;
    Ok(IssuedKey {
        key: AccessKey {
            id: response.access_key_id,
            secret,
        },
        user_arn: response.user_arn,
        user_id: response.user_id,
        retire: response.other_access_key_ids,
    })
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The service as `apply`'s key issuer: the client, the store that keeps this Mac's enrollment
/// key, and the home folder where a refusal the admin must hear of is kept (see
/// [`crate::setback`]).
pub struct ServiceIssuer<'a> {
    pub client: &'a ServiceClient,
    pub store: &'a dyn CredentialStore,
    pub home: &'a Path,
}

impl ServiceIssuer<'_> {
    /// Enrolls or rotates. When the user's two key slots are full (keys a dead run left), the
    /// ones not in "Arq S3" are retired first and the call made once more.
    pub async fn issue(
        &self,
        call: ServiceCall,
        computer: &Computer<'_>,
        current: &ArqS3<'_>,
        note: &mut (dyn FnMut(String) + Send),
    ) -> Result<IssuedKey, Error> {
        let uuid = &computer.config.computer_uuid;
        let enrollment = self.enrollment_key(note)?;
        // The key in "Arq S3" signs only what needs it: a rotation, an enrollment without token.
        let proof = match call {
            ServiceCall::Enroll if self.client.has_enrollment_token() => None,
            _ => Some(current.key()?),
        };
        let ask = async || match (call, proof) {
            (ServiceCall::Rotate, Some(key)) => {
                self.client.rotate(computer, key, &enrollment).await
            }
            (_, main_key) => self.client.enroll(computer, main_key, &enrollment).await,
        };
        let issued = match ask().await {
            Err(refusal) if refusal.key_limit().is_some() => {
                for old in refusal.key_limit().unwrap_or_default() {
                    if *old == current.id {
                        continue;
                    }
                    self.client.retire(uuid, old, &enrollment).await?;
                    note(format!(
                        "retired key {old}, left by an earlier run, to make room"
                    ));
                }
                ask().await
            }
            result => result,
        }
        .inspect_err(|refusal| self.record_setback(refusal, uuid, &enrollment, note))?;
        note(format!(
            "the service issued key {} for {}",
            issued.key.id, issued.user_arn
        ));
        crate::fault::after("service-issued");
        Ok(issued)
    }

    /// A refusal the admin must act on, kept for `status` and the MDM's inventory with this Mac's
    /// enrollment-key fingerprint (what the admin pins the computer to).
    fn record_setback(
        &self,
        refusal: &ServiceClientError,
        uuid: &ComputerUuid,
        enrollment: &EnrollmentKey,
        note: &mut (dyn FnMut(String) + Send),
    ) {
        let Some(kind) = refusal.setback() else {
            return;
        };
        let print = fingerprint(&enrollment.public()).unwrap_or_default();
        let detail = match kind {
            SetbackKind::AwaitingConfirmation => format!(
                "this Mac has backups: the admin must confirm it from the inventory (arq-lockdown pin, enrollment key {print}); {refusal}"
            ),
            _ => format!(
                "claimed by another Mac — tell your admin, who pins this computer to this Mac's enrollment key {print} (arq-lockdown pin); {refusal}"
            ),
        };
        let now = crate::receipt::now_unix();
        match Setback::record(self.home, kind, Some(uuid.as_str()), detail, now) {
            Ok(_) => note(format!(
                "kept the refusal for status and the inventory in {}",
                Setback::path(self.home).display()
            )),
            Err(e) => note(format!(
                "cannot keep the refusal in {}: {e}",
                Setback::path(self.home).display()
            )),
        }
    }

    /// Retires a new key that failed verification (it never reached "Arq S3").
    pub async fn discard(&self, computer: &Computer<'_>, new: &IssuedKey) -> Result<(), Error> {
        let enrollment = self.enrollment_key(&mut |_| {})?;
        self.client
            .retire(&computer.config.computer_uuid, &new.key.id, &enrollment)
            .await?;
        Ok(())
    }

    /// Retires `old`, a key the new one replaces.
    pub async fn retire(&self, computer: &Computer<'_>, old: &str) -> Result<(), String> {
        let enrollment = self
            .enrollment_key(&mut |_| {})
            .map_err(|e| e.to_string())?;
        self.client
            .retire(&computer.config.computer_uuid, old, &enrollment)
            .await
            .map_err(|e| e.to_string())
    }

    /// This Mac's enrollment key: the one in the store, or a new one kept there before it is
    /// ever used (a run killed after the service bound it must still hold it).
    fn enrollment_key(
        &self,
        note: &mut (dyn FnMut(String) + Send),
    ) -> Result<EnrollmentKey, Error> {
        if let Some(stored) = self.store.enrollment_key()? {
            return EnrollmentKey::from_stored(stored).ok_or_else(|| {
                StoreError::BadItem {
                    store: self.store.describe(),
                    reason: "the arq-lockdown enrollment key item does not hold a key (an admin must revoke this computer before it can enroll again)",
                }
                .into()
            });
        }
        let key = EnrollmentKey::generate();
        self.store.save_enrollment_key(key.stored())?;
        note(format!(
            "made this Mac's enrollment key and kept it in {}",
            self.store.describe()
        ));
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, code: &str) -> ServiceClientError {
        ServiceClientError::Refused {
            status,
            code: code.to_owned(),
            message: "m".to_owned(),
            access_key_ids: Vec::new(),
        }
    }

    #[test]
    #[rustfmt::skip]
    fn refusals_the_admin_must_hear_of_become_setbacks() {
        use SetbackKind::*;
        let cases: Vec<(ServiceClientError, Option<SetbackKind>)> = vec![
            (refused(403, "computer-already-enrolled"), Some(ClaimedByAnotherMac)),
            (refused(403, "computer-pinned-to-another-mac"), Some(ClaimedByAnotherMac)),
            (refused(403, "computer-needs-confirmation"), Some(AwaitingConfirmation)),
            (refused(403, "not-a-fleet-principal"), None),
            (refused(403, "bucket-mismatch"), None),
            (refused(429, "token-limit"), None),
            (refused(409, "key-limit"), None),
            (ServiceClientError::BadAnswer(500), None),
            (ServiceClientError::Unreachable { url: "u".into(), reason: "r".into() }, None),
        ];
        for (error, kind) in cases {
            assert_eq!(error.setback(), kind, "{error}");
        }
    }
}
