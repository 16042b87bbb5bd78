//! Why a request was not served, as its sender sees it: an HTTP status, a reason code (the `error`
//! of [`crate::protocol::ErrorBody`], which a Mac acts on and docs/service.md lists) and a message
//! for people — plus, for the service's log only, what went wrong on its side. Every reason code
//! the service sends is named here, the lower layers' errors (proof, STS, IAM) turned into them
//! last.

use axum::http::StatusCode;

use super::binding::Refused;
use super::buckets::BucketError;
use super::sts::StsError;
use crate::iam::IamError;
use crate::protocol::proof::ProofRefusal;

#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// With `key-limit`: the keys that fill the user's two slots.
    pub access_key_ids: Vec<String>,
    /// What went wrong on the service's side, for its log only (never sent to the caller).
    pub detail: Option<String>,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            access_key_ids: Vec::new(),
            detail: None,
        }
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// The request is not the JSON of its endpoint: `message` says where, never what.
    pub fn bad_json(message: String) -> Self {
        Self::bad_request("bad-json", message)
    }

    pub fn bad_computer(message: impl Into<String>) -> Self {
        Self::bad_request("bad-computer", message)
    }

    pub fn bad_key(message: &'static str) -> Self {
        Self::bad_request("bad-key", message)
    }

    pub fn proof_or_token() -> Self {
        Self::bad_request(
            "proof-or-token",
            "send exactly one of a proof and an enrollment token",
        )
    }

    pub fn proof_missing() -> Self {
        Self::bad_request("proof-missing", "rotate needs a proof")
    }

    pub fn request_expired() -> Self {
        Self::forbidden(
            "request-expired",
            "the request is older than the service accepts (or from the future): check the Mac's clock",
        )
    }

    pub fn bucket_not_allowed() -> Self {
        Self::forbidden(
            "bucket-not-allowed",
            "this service does not hand out keys for that bucket",
        )
    }

    /// An enrollment not signed by the enrollment key it names.
    pub fn not_self_signed() -> Self {
        Self::forbidden(
            "enrollment-signature-invalid",
            "an enrollment must be signed by the enrollment key it names",
        )
    }

    /// Not signed by the enrollment key the computer is bound to.
    pub fn bad_signature() -> Self {
        Self::forbidden(
            "enrollment-signature-invalid",
            "only the enrollment key this computer is bound to may do that",
        )
    }

    pub fn not_a_fleet_principal() -> Self {
        Self::forbidden(
            "not-a-fleet-principal",
            "only the fleet's main keys (or an enrollment token) may enroll a computer",
        )
    }

    pub fn bad_enrollment_token() -> Self {
        Self::forbidden(
            "bad-enrollment-token",
            "the enrollment token is not one this service accepts",
        )
    }

    pub fn token_limit() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "token-limit",
            "this enrollment token has reached its limit (service.toml): retry later, or ask the admin",
        )
    }

    /// A fleet principal (the main keys) at its limits.
    pub fn fleet_limit() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "fleet-limit",
            "the main keys have reached their enrollment limit (service.toml, fleet_max_*): retry later, or ask the admin",
        )
    }

    /// A binding refused by the rule (contracts §4).
    pub fn binding(refused: Refused, mode_never: bool) -> Self {
        let (code, message) = match refused {
            Refused::AlreadyEnrolled => (
                "computer-already-enrolled",
                "this computer UUID is bound to another Mac's enrollment key: if this is the right Mac, the admin pins it to this Mac's key (arq-lockdown status shows it)",
            ),
            Refused::PinnedToAnother => (
                "computer-pinned-to-another-mac",
                "the admin pinned this computer UUID to another Mac's enrollment key: if this is the right Mac, the admin pins it to this Mac's key (arq-lockdown status shows it)",
            ),
            Refused::NeedsConfirmation if mode_never => (
                "computer-needs-confirmation",
                "this service enrolls only computers the admin pinned: the admin pins this Mac's enrollment key (arq-lockdown status shows it), and the next run enrolls",
            ),
            Refused::NeedsConfirmation => (
                "computer-needs-confirmation",
                "this computer UUID has backups already, so the admin must confirm this Mac: they pin its enrollment key (arq-lockdown status shows it), and the next run enrolls",
            ),
        };
        Self::forbidden(code, message)
    }

    /// The request's body did not arrive in time (a client trickling it, or a dead network).
    pub fn too_slow() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request-too-slow",
            "the request's body did not arrive in time: retry",
        )
    }

    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request-too-large",
            "the request's body is larger than any request of this protocol",
        )
    }

    pub fn not_this_computers_key() -> Self {
        Self::forbidden(
            "not-this-computers-key",
            "only this computer's own scoped user, in this service's account, may do that",
        )
    }

    pub fn bucket_mismatch() -> Self {
        Self::forbidden(
            "bucket-mismatch",
            "this computer is bound to another bucket",
        )
    }

    pub fn key_limit(key_ids: Vec<String>) -> Self {
        Self {
            access_key_ids: key_ids,
            ..Self::new(
                StatusCode::CONFLICT,
                "key-limit",
                "this computer's user has two keys (IAM's limit): retire the one not in \"Arq S3\" first",
            )
        }
    }

    pub fn busy(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
    }

    /// The request's work failed without an answer (it panicked).
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the service failed; its log has the detail",
        )
    }
}

impl From<ProofRefusal> for Refusal {
    fn from(refusal: ProofRefusal) -> Self {
        Self::forbidden(refusal.code(), refusal.to_string())
    }
}

impl From<StsError> for Refusal {
    fn from(error: StsError) -> Self {
        match error {
            StsError::Busy => Self::busy("too many proofs waiting for STS: retry later"),
            StsError::Unreachable(e) => Self {
                detail: Some(e.to_string()),
                ..Self::new(
                    StatusCode::BAD_GATEWAY,
                    "sts-unreachable",
                    "the service cannot reach STS: retry later",
                )
            },
            StsError::Rejected => ProofRefusal::Rejected.into(),
        }
    }
}

impl From<BucketError> for Refusal {
    /// The caller learns only that the check failed; the service's log has which bucket and why.
    fn from(error: BucketError) -> Self {
        Self {
            detail: Some(error.to_string()),
            ..Self::new(
                StatusCode::BAD_GATEWAY,
                "bucket-check-failed",
                "the service could not check the buckets for this computer's backups: retry later; the service's log has the detail",
            )
        }
    }
}

impl From<IamError> for Refusal {
    /// The caller learns only that IAM failed; the service's log has which call and why.
    fn from(error: IamError) -> Self {
        let refusal = match error {
            IamError::Throttled { .. } => Self::busy("IAM is throttling: retry later"),
            IamError::Quota { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "iam-quota",
                "the AWS account's IAM quota is reached: ask the admin",
            ),
            _ => Self::new(
                StatusCode::BAD_GATEWAY,
                "iam-failed",
                "IAM failed: retry later; the service's log has the detail",
            ),
        };
        Self {
            detail: Some(error.to_string()),
            ..refusal
        }
    }
}
