//! The service's JSON API, shared by the server and the client (`apply --source service`).
//!
//! - `POST /v1/enroll`  {computer_uuid, bucket, computer_name, serial, proof | enrollment_token}
//!   → {access_key_id, secret_access_key, user_arn}: a first key for a computer, proven by the
//!   fleet's main keys (or an enrollment token).
//! - `POST /v1/rotate`  {computer_uuid, bucket, proof} → the same: a new key, proven by the
//!   computer's current scoped key.
//! - `POST /v1/retire`  {computer_uuid, access_key_id, proof} → {}: deletes the computer's previous
//!   key, proven by its new one (so only the holder of the new key can retire the old).
//! - Errors: a status and {error: reason code, message}.

use serde::{Deserialize, Serialize};

use super::proof::Proof;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    pub computer_uuid: String,
    pub bucket: String,
    #[serde(default)]
    pub computer_name: String,
    #[serde(default)]
    pub serial: String,
    #[serde(default)]
    pub proof: Option<Proof>,
    #[serde(default)]
    pub enrollment_token: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub struct KeyResponse {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub user_arn: String,
}

impl std::fmt::Debug for KeyResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyResponse")
            .field("access_key_id", &self.access_key_id)
            .field("user_arn", &self.user_arn)
            .finish()
    }
}

impl Drop for KeyResponse {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret_access_key);
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetireRequest {
    pub computer_uuid: String,
    pub access_key_id: String,
    pub proof: Proof,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}
