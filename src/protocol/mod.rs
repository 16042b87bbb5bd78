//! The wire format between a Mac (`apply --source service`) and the provisioning service
//! (`serve`): both sides depend on this module and on nothing of each other.
//!
//! Every call is a `POST` of an [`Envelope`]: the request itself as JSON text, plus what proves
//! who sends it. The proofs cover the endpoint and a SHA-256 of that text ([`binding`]), so a
//! captured envelope cannot be sent to another endpoint or with another bucket, name or reply key.
//!
//! - `POST /v1/enroll` [`EnrollRequest`] → [`KeyResponse`]: a key for a computer, proven by the
//!   fleet's main keys ([`proof`]) or an enrollment token, and always signed by the Mac's
//!   enrollment key ([`enrollment`]). The first enrollment binds the computer UUID to that key;
//!   enrolling a bound UUID again needs a signature by the same key.
//! - `POST /v1/rotate` [`RotateRequest`] → [`KeyResponse`]: a new key, proven by the computer's
//!   current scoped key and signed by its enrollment key (a copy of "Arq S3" alone is not enough).
//! - `POST /v1/retire` [`RetireRequest`] → `{}`: deletes one of the computer's keys, signed by its
//!   enrollment key, which the request names (so the signature is checked before anything is
//!   looked up).
//! - Errors: a status and [`ErrorBody`].
//!
//! A key's secret only ever travels sealed to a one-time public key the Mac put in its signed
//! request ([`sealed`]): whoever replays a captured request gets nothing they can open.

pub mod enrollment;
pub mod proof;
pub mod sealed;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use proof::Proof;

use crate::arq_config::ComputerUuid;
use crate::credential_store::AccessKey;
use enrollment::EnrollmentKey;

pub const ENROLL: &str = "/v1/enroll";
pub const ROTATE: &str = "/v1/rotate";
pub const RETIRE: &str = "/v1/retire";

/// What is sent: the request as JSON text (exactly the bytes the proofs cover), and the proofs.
/// Its `Debug` leaves out the request, which may hold an enrollment token.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub request: String,
    /// A signed `sts:GetCallerIdentity` by an AWS key (main keys, or the computer's scoped key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Proof>,
    /// A signature by the Mac's enrollment key (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_signature: Option<String>,
}

impl Envelope {
    /// The envelope for `request` (JSON text) to `endpoint` of the service `server_id`, proven by
    /// `key` (a proof for `sts_host`) and/or signed by `enrollment`.
    pub fn new(
        endpoint: &str,
        server_id: &str,
        sts_host: &str,
        computer: &ComputerUuid,
        request: String,
        key: Option<&AccessKey>,
        enrollment: Option<&EnrollmentKey>,
    ) -> Self {
        let binding = binding(endpoint, &request);
        Self {
            proof: key.map(|key| {
                proof::make(
                    key,
                    sts_host,
                    server_id,
                    computer,
                    &binding,
                    SystemTime::now(),
                )
            }),
            enrollment_signature: enrollment.map(|e| e.sign(server_id, &binding)),
            request,
        }
    }
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("proof", &self.proof)
            .field("enrollment_signature", &self.enrollment_signature)
            .finish_non_exhaustive()
    }
}

impl Drop for Envelope {
    /// The request may hold an enrollment token.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.request);
    }
}

/// What a proof or signature covers: the endpoint and the SHA-256 of the request text, as
/// `/v1/enroll:sha256=<hex>`.
pub fn binding(endpoint: &str, request: &str) -> String {
    format!(
        "{endpoint}:sha256={}",
        hex(&Sha256::digest(request.as_bytes()))
    )
}

/// Every request carries `issued_at` (seconds since the epoch, when the Mac made it) and `nonce`
/// (random), so a signature over it is fresh and single-use.
pub trait Request: serde::de::DeserializeOwned + Serialize {
    const ENDPOINT: &'static str;
    fn computer_uuid(&self) -> &str;
    fn issued_at(&self) -> i64;
}

/// Whether `at` (seconds since the epoch, as a client claims) is within `max_age` of `now`,
/// either way.
pub fn within(at: i64, now: SystemTime, max_age: Duration) -> bool {
    let Ok(now) = now.duration_since(UNIX_EPOCH) else {
        return false;
    };
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let max_age = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
    now.checked_sub(at).is_some_and(|age| age.abs() <= max_age)
}

/// Seconds since the epoch, for `issued_at`.
pub fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A random nonce for a request.
pub fn nonce() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Its `Debug` leaves out the enrollment token.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub computer_uuid: String,
    pub bucket: String,
    /// The Mac's name and serial, for the IAM user's tags (informational only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The Mac's enrollment public key (base64), bound to the computer UUID at first enrollment.
    pub enrollment_key: String,
    /// The one-time public key the answer is sealed to (base64).
    pub reply_key: String,
    /// Instead of a proof by the main keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_token: Option<String>,
    /// The key id in "Arq S3" that the new key replaces. With a proof the service records the
    /// proving key instead; with a token this is only the Mac's claim, recorded as an audit hint
    /// (see the service) — it decides nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_key_id: Option<String>,
    pub issued_at: i64,
    pub nonce: String,
}

impl std::fmt::Debug for EnrollRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("computer_uuid", &self.computer_uuid)
            .field("bucket", &self.bucket)
            .field("enrollment_key", &self.enrollment_key)
            .finish_non_exhaustive()
    }
}

impl Drop for EnrollRequest {
    fn drop(&mut self) {
        if let Some(token) = self.enrollment_token.as_mut() {
            zeroize::Zeroize::zeroize(token);
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    pub computer_uuid: String,
    pub bucket: String,
    pub reply_key: String,
    pub issued_at: i64,
    pub nonce: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetireRequest {
    pub computer_uuid: String,
    pub access_key_id: String,
    /// The Mac's enrollment public key (base64), whose signature the envelope carries: the service
    /// checks the signature against it first, then that the computer is bound to it.
    pub enrollment_key: String,
    pub issued_at: i64,
    pub nonce: String,
}

macro_rules! request {
    ($type:ty, $endpoint:expr) => {
        impl Request for $type {
            const ENDPOINT: &'static str = $endpoint;
            fn computer_uuid(&self) -> &str {
                &self.computer_uuid
            }
            fn issued_at(&self) -> i64 {
                self.issued_at
            }
        }
    };
}
request!(EnrollRequest, ENROLL);
request!(RotateRequest, ROTATE);
request!(RetireRequest, RETIRE);

/// A key issued for a computer. The secret is sealed to the request's reply key.
#[derive(Debug, Serialize, Deserialize)]
pub struct KeyResponse {
    pub access_key_id: String,
    /// The secret access key, sealed to the reply key (base64).
    pub sealed_secret_access_key: String,
    pub user_arn: String,
    /// The IAM user's unique id (AIDA…): a user deleted and made again has another.
    pub user_id: String,
    /// The user's other keys: the Mac retires them once "Arq S3" holds the new one.
    pub other_access_key_ids: Vec<String>,
}

/// Why a request was refused: a stable reason code and a message for people.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
    /// With `key-limit`: the keys that fill the user's two slots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_key_ids: Vec<String>,
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard base64, as every binary value in this protocol travels.
pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn envelope() -> Vec<u8> {
        let key = AccessKey {
            id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
        };
        let computer = ComputerUuid::parse("32D9D7A2-3B3E-4BE7-B85B-0605AF24F570").unwrap();
        let enrollment = EnrollmentKey::generate();
        let request = serde_json::to_string(&RotateRequest {
            computer_uuid: computer.to_string(),
            bucket: "akiaexample.comhaystacksoftwarearq".into(),
            reply_key: sealed::ReplyKey::generate().public(),
            issued_at: now_unix(),
            nonce: nonce(),
        })
        .unwrap();
        let envelope = Envelope::new(
            ROTATE,
            "arq.example.com",
            "sts.amazonaws.com",
            &computer,
            request,
            Some(&key),
            Some(&enrollment),
        );
        serde_json::to_vec(&envelope).unwrap()
    }

    /// Property: byte-mutated envelopes never panic the parser, and nothing that is not JSON
    /// parses; most mutations are refused outright.
    #[test]
    fn the_envelope_parser_takes_only_json_and_never_panics() {
        let valid = envelope();
        assert!(serde_json::from_slice::<Envelope>(&valid).is_ok());
        let mut state = 42_u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut refused = 0;
        for _ in 0..20_000 {
            let mut bytes = valid.clone();
            for _ in 0..1 + next(4) {
                let at = next(bytes.len());
                bytes[at] = next(256) as u8;
            }
            bytes.truncate(next(bytes.len() + 1).max(1));
            match serde_json::from_slice::<Envelope>(&bytes) {
                Ok(_) => assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_ok()),
                Err(_) => refused += 1,
            }
        }
        assert!(
            refused > 15_000,
            "only {refused} of 20000 mutations were refused"
        );
    }

    #[test]
    fn a_binding_names_the_endpoint_and_the_requests_sha256() {
        assert_eq!(
            binding(ENROLL, "test"),
            "/v1/enroll:sha256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn freshness_is_judged_either_way_around_now() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let max = Duration::from_secs(300);
        assert!(within(1_000_000 - 300, now, max));
        assert!(within(1_000_000 + 300, now, max));
        assert!(!within(1_000_000 - 301, now, max));
        assert!(!within(1_000_000 + 301, now, max));
        assert!(!within(i64::MIN, now, max));
        assert!(!within(i64::MAX, now, max));
    }
}
