//! Scoped users and keys, straight from IAM.
//!
//! Owns the IAM side of a lockdown: the user `arq-<UUID>` under the path `/arq-lockdown/` (tagged
//! with the computer UUID, bucket and the Mac's name), its one inline policy, and its access keys.
//! Every step is idempotent, so a run that died half-way is finished by the next: an existing user
//! is reused, a policy that differs is replaced, keys that are not the one in "Arq S3" are deleted
//! before a new one is made (IAM allows two per user). It never touches users outside that path.

use std::collections::BTreeMap;

use aws_sdk_iam::Client;
use aws_sdk_iam::config::http::HttpResponse;
use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_iam::types::Tag;
use serde_json::Value;

use super::IssuedKey;
use crate::arq_config::{ArqConfig, ComputerUuid};
use crate::aws;
use crate::credential_store::AccessKey;
use crate::exit_code::ExitCode;
use crate::policy::PolicyDocument;
use crate::secret::Secret;

/// The IAM path every scoped user lives under; nothing outside it is ever changed.
pub const USER_PATH: &str = "/arq-lockdown/";

/// The name of the one inline policy of a scoped user.
pub const POLICY_NAME: &str = "arq-lockdown";

/// The IAM user name for a computer: `arq-` + the UUID (40 characters, within IAM's 64).
pub fn user_name(uuid: &ComputerUuid) -> String {
    format!("arq-{uuid}")
}

/// Whether `arn` is the scoped user of `uuid` (the caller ARN STS reports for its keys).
pub fn is_scoped_user_arn(arn: &str, uuid: &ComputerUuid) -> bool {
    arn.starts_with("arn:aws") && arn.ends_with(&format!(":user{USER_PATH}{}", user_name(uuid)))
}

#[derive(Debug, thiserror::Error)]
pub enum IamError {
    #[error(
        "IAM refused {action} to these admin credentials: they need iam:GetUser, CreateUser, TagUser, GetUserPolicy, PutUserPolicy, DeleteUserPolicy, ListAccessKeys, CreateAccessKey, DeleteAccessKey and DeleteUser on arn:aws:iam::*:user/arq-lockdown/* — or pass --admin-credentials"
    )]
    Refused { action: &'static str },
    #[error(
        "IAM is throttling {action} and kept doing so through {} attempts: run again in a minute",
        crate::aws::MAX_ATTEMPTS
    )]
    Throttled { action: &'static str },
    #[error(
        "IAM user {user} already has two access keys (IAM's limit): delete the one that is not in \"Arq S3\" and run again"
    )]
    KeyLimit { user: String },
    #[error("IAM {action} failed: {message}")]
    Failed {
        action: &'static str,
        message: String,
    },
    #[error("cannot reach IAM: {0}; check the network and AWS_ENDPOINT_URL")]
    Unreachable(String),
}

impl IamError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::Aws
    }
}

/// How one IAM call failed: the answers the steps expect are told apart from real errors.
enum CallError {
    NoSuchEntity,
    AlreadyExists,
    Error(IamError),
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    action: &'static str,
    error: SdkError<E, HttpResponse>,
) -> CallError {
    if let SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) = error {
        return CallError::Error(IamError::Unreachable(
            DisplayErrorContext(&error).to_string(),
        ));
    }
    let status = error.raw_response().map(|r| r.status().as_u16());
    match (error.code(), status) {
        (Some("NoSuchEntity"), _) | (_, Some(404)) => CallError::NoSuchEntity,
        (Some("EntityAlreadyExists"), _) | (_, Some(409)) => CallError::AlreadyExists,
        (Some("LimitExceeded"), _) => CallError::Error(IamError::Failed {
            action,
            message: error.message().unwrap_or("limit exceeded").to_owned(),
        }),
        (Some("Throttling" | "ThrottlingException"), _) => {
            CallError::Error(IamError::Throttled { action })
        }
        // moto's IAM access-denied body is not one the SDK parses, so the status decides.
        (Some("AccessDenied" | "AccessDeniedException"), _) | (_, Some(403)) => {
            CallError::Error(IamError::Refused { action })
        }
        _ => CallError::Error(IamError::Failed {
            action,
            message: crate::one_line(&DisplayErrorContext(&error).to_string()),
        }),
    }
}

/// Turns every failure but the expected ones into an [`IamError`].
fn fail(error: CallError, action: &'static str) -> IamError {
    match error {
        CallError::Error(e) => e,
        CallError::NoSuchEntity => IamError::Failed {
            action,
            message: "the user disappeared meanwhile (revoked?); run again".into(),
        },
        CallError::AlreadyExists => IamError::Failed {
            action,
            message: "it already exists".into(),
        },
    }
}

/// What a computer's scoped user should look like.
pub struct WantedUser<'a> {
    pub uuid: &'a ComputerUuid,
    pub policy: &'a PolicyDocument,
    pub tags: BTreeMap<String, String>,
}

/// A scoped user as [`Iam::provision`] left it.
#[derive(Debug)]
pub struct Provisioned {
    pub user_arn: String,
    pub key: Option<IssuedKey>,
}

/// What IAM holds for a computer's scoped user now.
#[derive(Clone, Debug, Default)]
pub struct UserState {
    pub arn: String,
    pub tags: BTreeMap<String, String>,
    /// The inline policy, parsed; `None` when the user has none.
    pub policy: Option<Value>,
    pub key_ids: Vec<String>,
}

/// The tag naming the computer UUID a scoped user is for.
pub const COMPUTER_TAG: &str = "arq-lockdown:computer-uuid";
/// The tag naming the bucket a scoped user's policy is for.
pub const BUCKET_TAG: &str = "arq-lockdown:bucket";
/// The tag naming the Mac's name as people know it.
pub const NAME_TAG: &str = "arq-lockdown:computer-name";
/// The tag naming the Mac's hardware serial number (the service binds a computer to it).
pub const SERIAL_TAG: &str = "arq-lockdown:serial";

/// The tags a scoped user carries: who it is for, in words an admin browsing IAM understands.
pub fn user_tags(
    config: &ArqConfig,
    computer_name: &str,
    serial: &str,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (COMPUTER_TAG.to_owned(), config.computer_uuid.to_string()),
        (BUCKET_TAG.to_owned(), config.bucket.to_string()),
        (NAME_TAG.to_owned(), tag_value(computer_name)),
        (SERIAL_TAG.to_owned(), tag_value(serial)),
    ])
}

/// IAM tag values allow letters, digits, spaces and `_.:/=+-@` (256 at most); anything else in a
/// Mac's name (an apostrophe, say) becomes `_`.
fn tag_value(text: &str) -> String {
    text.chars()
        .take(256)
        .map(|c| {
            if c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// IAM with the admin credentials.
pub struct Iam {
    client: Client,
}

impl Iam {
    pub fn new(sdk_config: &aws_config::SdkConfig) -> Self {
        Self {
            client: aws::iam_client(sdk_config),
        }
    }

    /// The scoped user of `uuid` as IAM has it, or `None`.
    pub async fn inspect(&self, uuid: &ComputerUuid) -> Result<Option<UserState>, IamError> {
        let name = user_name(uuid);
        let user = match self.client.get_user().user_name(&name).send().await {
            Ok(output) => output.user.expect("GetUser answers with a user"),
            Err(e) => match classify("iam:GetUser", e) {
                CallError::NoSuchEntity => return Ok(None),
                other => return Err(fail(other, "iam:GetUser")),
            },
        };
        let policy = match self
            .client
            .get_user_policy()
            .user_name(&name)
            .policy_name(POLICY_NAME)
            .send()
            .await
        {
            // IAM returns the document URL-encoded.
            Ok(output) => percent_encoding::percent_decode_str(&output.policy_document)
                .decode_utf8()
                .ok()
                .and_then(|text| serde_json::from_str(&text).ok()),
            Err(e) => match classify("iam:GetUserPolicy", e) {
                CallError::NoSuchEntity => None,
                other => return Err(fail(other, "iam:GetUserPolicy")),
            },
        };
        let keys = self
            .client
            .list_access_keys()
            .user_name(&name)
            .send()
            .await
            .map_err(|e| fail(classify("iam:ListAccessKeys", e), "iam:ListAccessKeys"))?;
        Ok(Some(UserState {
            arn: user.arn,
            tags: user
                .tags
                .unwrap_or_default()
                .into_iter()
                .map(|t| (t.key, t.value))
                .collect(),
            policy,
            key_ids: keys
                .access_key_metadata
                .into_iter()
                .filter_map(|k| k.access_key_id)
                .collect(),
        }))
    }

    /// Creates the user with `tags`, or re-tags the existing one if they differ. Returns its ARN.
    pub async fn ensure_user(
        &self,
        uuid: &ComputerUuid,
        tags: &BTreeMap<String, String>,
        existing: Option<&UserState>,
    ) -> Result<String, IamError> {
        let name = user_name(uuid);
        let iam_tags: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| {
                Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .expect("key and value are set")
            })
            .collect();
        match existing {
            Some(state) if &state.tags == tags => Ok(state.arn.clone()),
            Some(state) => {
                self.client
                    .tag_user()
                    .user_name(&name)
                    .set_tags(Some(iam_tags))
                    .send()
                    .await
                    .map_err(|e| fail(classify("iam:TagUser", e), "iam:TagUser"))?;
                Ok(state.arn.clone())
            }
            None => match self
                .client
                .create_user()
                .user_name(&name)
                .path(USER_PATH)
                .set_tags(Some(iam_tags))
                .send()
                .await
            {
                Ok(output) => Ok(output.user.expect("CreateUser answers with the user").arn),
                // Another run created it meanwhile: use that one.
                Err(e) => match classify("iam:CreateUser", e) {
                    CallError::AlreadyExists => match Box::pin(self.inspect(uuid)).await? {
                        Some(state) => Ok(state.arn),
                        None => Err(fail(CallError::NoSuchEntity, "iam:CreateUser")),
                    },
                    other => Err(fail(other, "iam:CreateUser")),
                },
            },
        }
    }

    /// Puts `policy` as the user's inline policy unless it is there already. Returns whether it wrote.
    pub async fn ensure_policy(
        &self,
        uuid: &ComputerUuid,
        policy: &PolicyDocument,
        existing: Option<&UserState>,
    ) -> Result<bool, IamError> {
        if existing.and_then(|s| s.policy.as_ref()) == Some(policy.as_value()) {
            return Ok(false);
        }
        self.client
            .put_user_policy()
            .user_name(user_name(uuid))
            .policy_name(POLICY_NAME)
            .policy_document(policy.to_compact_json())
            .send()
            .await
            .map_err(|e| fail(classify("iam:PutUserPolicy", e), "iam:PutUserPolicy"))?;
        Ok(true)
    }

    /// Deletes one of the user's keys; a key already gone is fine.
    pub async fn delete_key(&self, uuid: &ComputerUuid, key_id: &str) -> Result<(), IamError> {
        match self
            .client
            .delete_access_key()
            .user_name(user_name(uuid))
            .access_key_id(key_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match classify("iam:DeleteAccessKey", e) {
                CallError::NoSuchEntity => Ok(()),
                other => Err(fail(other, "iam:DeleteAccessKey")),
            },
        }
    }

    /// A new access key for the user.
    pub async fn create_key(
        &self,
        uuid: &ComputerUuid,
        user_arn: &str,
    ) -> Result<IssuedKey, IamError> {
        let name = user_name(uuid);
        let output = self
            .client
            .create_access_key()
            .user_name(&name)
            .send()
            .await
            .map_err(|e| match classify("iam:CreateAccessKey", e) {
                CallError::Error(IamError::Failed { message, .. })
                    if message.contains("AccessKeysPerUser") =>
                {
                    IamError::KeyLimit { user: name.clone() }
                }
                other => fail(other, "iam:CreateAccessKey"),
            })?;
        let key = output
            .access_key
            .expect("CreateAccessKey answers with the key");
        Ok(IssuedKey {
            key: AccessKey {
                id: key.access_key_id,
                secret: Secret::new(key.secret_access_key),
            },
            user_arn: user_arn.to_owned(),
        })
    }

    /// Brings the computer's scoped user to what `policy` and `tags` say, then (with `new_key`)
    /// makes a key: the user is created or re-tagged, the policy written if it differs, and every
    /// key but `keep` deleted first (IAM allows two per user; a run that died leaves one). Each
    /// change is reported to `note` as it happens.
    pub async fn provision(
        &self,
        wanted: &WantedUser<'_>,
        existing: Option<&UserState>,
        keep: Option<&str>,
        new_key: bool,
        note: &mut (dyn FnMut(String) + Send),
    ) -> Result<Provisioned, IamError> {
        let uuid = wanted.uuid;
        let user_arn = self.ensure_user(uuid, &wanted.tags, existing).await?;
        if existing.is_none() {
            note(format!("created IAM user {user_arn}"));
        }
        if self.ensure_policy(uuid, wanted.policy, existing).await? {
            note(format!("policy {POLICY_NAME} written to {user_arn}"));
        }
        let stale = existing
            .map_or(&[][..], |s| &s.key_ids[..])
            .iter()
            .filter(|id| Some(id.as_str()) != keep);
        for key_id in stale {
            self.delete_key(uuid, key_id).await?;
            note(format!("deleted stale key {key_id} of {user_arn}"));
        }
        let key = match new_key {
            true => {
                let key = self.create_key(uuid, &user_arn).await?;
                note(format!("created key {} for {user_arn}", key.key.id));
                Some(key)
            }
            false => None,
        };
        Ok(Provisioned { user_arn, key })
    }

    /// Deletes the user's keys, inline policies and the user. Returns `false` when there was no user.
    pub async fn revoke(&self, uuid: &ComputerUuid) -> Result<bool, IamError> {
        let name = user_name(uuid);
        let Some(state) = self.inspect(uuid).await? else {
            return Ok(false);
        };
        for key_id in &state.key_ids {
            self.delete_key(uuid, key_id).await?;
        }
        let policies = self
            .client
            .list_user_policies()
            .user_name(&name)
            .send()
            .await
            .map_err(|e| fail(classify("iam:ListUserPolicies", e), "iam:ListUserPolicies"))?;
        for policy in policies.policy_names {
            match self
                .client
                .delete_user_policy()
                .user_name(&name)
                .policy_name(policy)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) => match classify("iam:DeleteUserPolicy", e) {
                    CallError::NoSuchEntity => {}
                    other => return Err(fail(other, "iam:DeleteUserPolicy")),
                },
            }
        }
        match self.client.delete_user().user_name(&name).send().await {
            Ok(_) => Ok(true),
            Err(e) => match classify("iam:DeleteUser", e) {
                CallError::NoSuchEntity => Ok(true),
                other => Err(fail(other, "iam:DeleteUser")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_values_keep_spaces_and_replace_what_iam_refuses() {
        assert_eq!(tag_value("Bob's MacBook Pro"), "Bob_s MacBook Pro");
        assert_eq!(tag_value("Zoë’s iMac (2)"), "Zoë_s iMac _2_");
    }

    #[test]
    fn only_the_computers_own_user_counts_as_scoped() {
        let uuid = ComputerUuid::parse("32D9D7A2-3B3E-4BE7-B85B-0605AF24F570").unwrap();
        assert!(is_scoped_user_arn(
            "arn:aws:iam::123456789012:user/arq-lockdown/arq-32D9D7A2-3B3E-4BE7-B85B-0605AF24F570",
            &uuid
        ));
        assert!(!is_scoped_user_arn(
            "arn:aws:iam::123456789012:user/arq-32D9D7A2-3B3E-4BE7-B85B-0605AF24F570",
            &uuid
        ));
        assert!(!is_scoped_user_arn(
            "arn:aws:iam::123456789012:user/arq-lockdown/arq-7A1E5C3B-9D2F-4E8A-B6C4-1F3D5E7A9B2C",
            &uuid
        ));
    }
}
