//! IAM: the scoped users arq-lockdown makes, one per Arq computer UUID, and their keys.
//!
//! Owns the IAM side of a lockdown: the user `arq-<UUID>` under the path `/arq-lockdown/`, created
//! with its tags and a permissions boundary in one `CreateUser` call (so IAM itself decides who
//! bound a computer first), its one inline policy, and its access keys. Both key sources use it —
//! `apply --source iam` and the provisioning service — and `audit` reads the fleet's users through
//! it: every read of a scoped user (the account's users in one paginated call, a user's keys, its
//! decoded policy) and every policy write is made here, once. It never touches users outside that
//! path but to list and tag a main key's user for `retire-main-keys`. Its names — the path, the
//! policy's, the tags' — come from [`crate::iam_names`].

use std::collections::BTreeMap;

use aws_sdk_iam::Client;
use aws_sdk_iam::config::http::HttpResponse;
use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_iam::types::{EntityType, StatusType, Tag, UserDetail};
use jiff::Timestamp;
use serde_json::Value;

use crate::arq_config::ComputerUuid;
use crate::aws;
use crate::credential_store::AccessKey;
use crate::exit_code::ExitCode;
use crate::iam_names::{
    ADMIN_ACTIONS, BUCKET_TAG, COMPUTER_TAG, ENROLLED_BY_TAG, ENROLLMENT_KEY_TAG, NAME_TAG,
    PINNED_KEY_TAG, POLICY_NAME, POLICY_OPTIONS_TAG, REFUSED_CLAIM_TAG, REPLACED_KEY_TAG,
    SERIAL_TAG, USER_PATH, scoped_users_resource, user_name,
};
use crate::policy::{PolicyDocument, PolicyOptions};
use crate::secret::Secret;

/// Whether `text` has the shape of an AWS access key id (IAM: 16 to 128 characters; AWS makes
/// them of upper-case letters and digits, `AKIA…` for long-term keys).
pub fn is_access_key_id(text: &str) -> bool {
    (16..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

#[derive(Debug, thiserror::Error)]
pub enum IamError {
    #[error(
        "IAM refused {action} to these admin credentials: they need {} on {} (see docs/policy.md's admin policy) — or pass --admin-credentials",
        ADMIN_ACTIONS.join(", "),
        scoped_users_resource()
    )]
    Refused { action: &'static str },
    #[error(
        "IAM is throttling {action} and kept doing so through {} attempts: run again in a minute",
        crate::aws::MAX_ATTEMPTS
    )]
    Throttled { action: &'static str },
    #[error(
        "IAM refused {action}: the computer's user already has two access keys (IAM's limit); delete the one that is not in \"Arq S3\" and run again"
    )]
    KeyLimit { action: &'static str },
    #[error(
        "IAM refused {action}: an account quota is reached ({message}); see docs/service.md's limits"
    )]
    Quota {
        action: &'static str,
        message: String,
    },
    #[error(
        "the permissions boundary {arn} does not exist: create it first (arq-lockdown policy --kind boundary, then aws iam create-policy), or name another with --permissions-boundary"
    )]
    NoBoundary { arn: String },
    #[error("IAM {action} failed: {message}")]
    Failed {
        action: &'static str,
        message: String,
    },
    #[error(transparent)]
    Unreachable(#[from] crate::aws::Unreachable),
}

impl IamError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::Aws
    }
}

/// How one IAM call failed: the answers the steps expect are told apart from real errors.
pub(crate) enum CallError {
    NoSuchEntity,
    AlreadyExists,
    Error(IamError),
}

pub(crate) fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    action: &'static str,
    error: SdkError<E, HttpResponse>,
) -> CallError {
    if let Some(unreachable) = crate::aws::unreachable("IAM", &error) {
        return CallError::Error(IamError::Unreachable(unreachable));
    }
    // The error code decides: IAM answers 409 for EntityAlreadyExists, LimitExceeded,
    // DeleteConflict and ConcurrentModification alike. The status only when there is no code
    // (moto's access-denied body is not one the SDK parses).
    let status = error.raw_response().map(|r| r.status().as_u16());
    let message = || error.message().unwrap_or_default().to_owned();
    match (error.code(), status) {
        (Some("NoSuchEntity"), _) | (None, Some(404)) => CallError::NoSuchEntity,
        (Some("EntityAlreadyExists"), _) => CallError::AlreadyExists,
        (Some("LimitExceeded"), _) if message().contains("AccessKeysPerUser") => {
            CallError::Error(IamError::KeyLimit { action })
        }
        (Some("LimitExceeded"), _) => CallError::Error(IamError::Quota {
            action,
            message: message(),
        }),
        (Some("Throttling" | "ThrottlingException"), _) => {
            CallError::Error(IamError::Throttled { action })
        }
        (Some("AccessDenied" | "AccessDeniedException"), _) | (None, Some(403)) => {
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

/// What a scoped user's tags say: who it is for, in words an admin browsing IAM understands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserTags {
    pub computer_uuid: String,
    pub bucket: String,
    /// The Mac's enrollment public key, with the service: only its holder may enroll again.
    pub enrollment_key: Option<String>,
    /// Who enrolled it with the service: a fleet principal's ARN or `token:<name>`.
    pub enrolled_by: Option<String>,
    pub computer_name: Option<String>,
    pub serial: Option<String>,
    /// The options the policy is built with (always set by apply and the service).
    pub policy_options: Option<PolicyOptions>,
    /// The key id this lockdown replaced in "Arq S3", when it was not this computer's own.
    pub replaced_key: Option<String>,
}

impl UserTags {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![
            (COMPUTER_TAG, self.computer_uuid.clone()),
            (BUCKET_TAG, self.bucket.clone()),
        ];
        let optional = [
            (ENROLLMENT_KEY_TAG, &self.enrollment_key),
            (ENROLLED_BY_TAG, &self.enrolled_by),
            (NAME_TAG, &self.computer_name),
            (SERIAL_TAG, &self.serial),
            (
                POLICY_OPTIONS_TAG,
                &self.policy_options.map(PolicyOptions::tag_value),
            ),
            (REPLACED_KEY_TAG, &self.replaced_key),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                pairs.push((key, tag_value(value)));
            }
        }
        pairs
    }
}

/// `pairs` as IAM takes tags, each value made one IAM accepts ([`tag_value`]).
fn iam_tags(pairs: &[(&str, String)]) -> Vec<Tag> {
    pairs
        .iter()
        .map(|(key, value)| {
            Tag::builder()
                .key(*key)
                .value(tag_value(value))
                .build()
                .expect("key and value are set")
        })
        .collect()
}

/// A user's tags as IAM hands them out, by key.
pub fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect()
}

/// The bucket a scoped user is bound to, from its tags as IAM lists them (`audit` lists every
/// user's at once).
pub fn bound_bucket(tags: &BTreeMap<String, String>) -> Option<&str> {
    tags.get(BUCKET_TAG).map(String::as_str)
}

/// The enrollment public key a scoped user is bound to, from its tags as IAM lists them.
pub fn bound_enrollment_key(tags: &BTreeMap<String, String>) -> Option<&str> {
    tags.get(ENROLLMENT_KEY_TAG).map(String::as_str)
}

/// The tags of a computer pinned to the enrollment key `fingerprint`: `tags` (its UUID, bucket and,
/// from the inventory, the Mac's name and serial) and the pin.
pub fn pinned_tags(tags: &UserTags, fingerprint: &str) -> Vec<(&'static str, String)> {
    let mut pairs = tags.pairs();
    pairs.push((PINNED_KEY_TAG, fingerprint.to_owned()));
    pairs
}

/// The tags `pin` removes from a computer it takes back: the binding to another enrollment key,
/// and the refused claims it settles.
pub const UNPINNED_TAGS: [&str; 2] = [ENROLLMENT_KEY_TAG, REFUSED_CLAIM_TAG];

/// IAM tag values allow letters, digits, separators and `_.:/=+-@` (`[\p{L}\p{Z}\p{N}_.:/=+\-@]`,
/// 256 at most); anything else in a Mac's name — an apostrophe, a combining mark — becomes `_`.
fn tag_value(text: &str) -> String {
    use unicode_general_category::{GeneralCategory as G, get_general_category};
    text.chars()
        .take(256)
        .map(|c| match get_general_category(c) {
            G::UppercaseLetter
            | G::LowercaseLetter
            | G::TitlecaseLetter
            | G::ModifierLetter
            | G::OtherLetter
            | G::DecimalNumber
            | G::LetterNumber
            | G::OtherNumber
            | G::SpaceSeparator
            | G::LineSeparator
            | G::ParagraphSeparator => c,
            _ if "_.:/=+-@".contains(c) => c,
            _ => '_',
        })
        .collect()
}

/// A computer's scoped user as IAM has it now.
#[derive(Clone, Debug, Default)]
pub struct ScopedUser {
    pub arn: String,
    /// IAM's unique id for the user (AIDA…); a user deleted and made again has a new one.
    pub user_id: String,
    tags: BTreeMap<String, String>,
    /// The inline policy `arq-lockdown`, parsed; `None` when the user has none.
    pub policy: Option<Value>,
    /// Every access key of the user, and those of them that are active.
    pub key_ids: Vec<String>,
    pub active_key_ids: Vec<String>,
}

impl ScopedUser {
    /// A user holding exactly `tags` (for tests of decisions made on IAM's answers).
    #[cfg(test)]
    pub(crate) fn tagged(tags: UserTags) -> Self {
        Self {
            tags: tags
                .pairs()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            ..Self::default()
        }
    }

    /// A user holding exactly the tags `tags`, by key (for tests of decisions on IAM's answers).
    #[cfg(test)]
    pub(crate) fn with_tags(tags: BTreeMap<String, String>) -> Self {
        Self {
            tags,
            ..Self::default()
        }
    }

    /// The bucket the user was made for.
    pub fn bound_bucket(&self) -> Option<&str> {
        bound_bucket(&self.tags)
    }

    /// The enrollment public key the service bound the computer to, if the service made it.
    pub fn enrollment_key(&self) -> Option<&str> {
        self.tags.get(ENROLLMENT_KEY_TAG).map(String::as_str)
    }

    /// The latest refused claim on the computer: when (unix seconds) and by which fingerprint.
    pub fn refused_claim(&self) -> Option<(i64, &str)> {
        let (when, fingerprint) = self.tags.get(REFUSED_CLAIM_TAG)?.split_once(' ')?;
        Some((when.parse().ok()?, fingerprint))
    }

    /// The enrollment-key fingerprint the admin pinned the computer to.
    pub fn pinned_key(&self) -> Option<&str> {
        self.tags.get(PINNED_KEY_TAG).map(String::as_str)
    }

    /// Who enrolled it with the service.
    pub fn enrolled_by(&self) -> Option<&str> {
        self.tags.get(ENROLLED_BY_TAG).map(String::as_str)
    }

    /// The value of one of the user's tags.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    /// The user once IAM has added `tags` to it (as [`Iam::tag_user`] does).
    pub fn tagged_with(mut self, tags: &UserTags) -> Self {
        for (key, value) in tags.pairs() {
            self.tags.insert(key.to_owned(), value);
        }
        self
    }

    /// Whether the user's tags already say everything `tags` says.
    pub fn is_tagged(&self, tags: &UserTags) -> bool {
        tags.pairs()
            .iter()
            .all(|(key, value)| self.tags.get(*key) == Some(value))
    }
}

/// A time in an IAM answer as a [`Timestamp`] (`None` out of jiff's range).
pub fn timestamp(at: &aws_smithy_types::DateTime) -> Option<Timestamp> {
    Timestamp::new(at.secs(), at.subsec_nanos() as i32).ok()
}

/// A policy document as IAM hands it out (URL-encoded), parsed; `None` when it is not JSON.
pub fn decode_policy(document: &str) -> Option<Value> {
    let text = percent_encoding::percent_decode_str(document)
        .decode_utf8()
        .ok()?;
    serde_json::from_str(&text).ok()
}

/// One access key of a user, as ListAccessKeys lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedKey {
    pub id: String,
    pub active: bool,
    pub created: Option<Timestamp>,
}

/// The access keys of the user `user` (any path: `retire-main-keys` lists a main key's user's);
/// one call, as IAM allows two keys a user.
pub(crate) async fn list_keys(client: &Client, user: &str) -> Result<Vec<ListedKey>, CallError> {
    let listed = client
        .list_access_keys()
        .user_name(user)
        .send()
        .await
        .map_err(|e| classify("iam:ListAccessKeys", e))?;
    Ok(listed
        .access_key_metadata
        .into_iter()
        .filter_map(|key| {
            Some(ListedKey {
                active: key.status == Some(StatusType::Active),
                created: key.create_date.as_ref().and_then(timestamp),
                id: key.access_key_id?,
            })
        })
        .collect())
}

/// Every user under [`USER_PATH`] as GetAccountAuthorizationDetails details it — tags, inline
/// policies, attached policies, groups — 1,000 a page instead of a call per user.
pub(crate) async fn scoped_user_details(client: &Client) -> Result<Vec<UserDetail>, CallError> {
    let mut users = Vec::new();
    let mut marker = None;
    loop {
        let page = client
            .get_account_authorization_details()
            .filter(EntityType::User)
            .max_items(1000)
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| classify("iam:GetAccountAuthorizationDetails", e))?;
        let scoped = page.user_detail_list.unwrap_or_default().into_iter();
        users.extend(scoped.filter(|user| user.path.as_deref() == Some(USER_PATH)));
        match (page.is_truncated, page.marker) {
            (true, Some(next)) => marker = Some(next),
            _ => return Ok(users),
        }
    }
}

/// Adds or overwrites the tags `pairs` on the user `user` (any path: `retire-main-keys` records
/// its changes on a main key's user).
pub(crate) async fn tag_user(
    client: &Client,
    user: &str,
    pairs: &[(&str, String)],
) -> Result<(), CallError> {
    client
        .tag_user()
        .user_name(user)
        .set_tags(Some(iam_tags(pairs)))
        .send()
        .await
        .map_err(|e| classify("iam:TagUser", e))?;
    Ok(())
}

/// Writes `policy` as the inline policy [`POLICY_NAME`] of the user `user`.
pub(crate) async fn put_policy(
    client: &Client,
    user: &str,
    policy: &PolicyDocument,
) -> Result<(), CallError> {
    client
        .put_user_policy()
        .user_name(user)
        .policy_name(POLICY_NAME)
        .policy_document(policy.to_compact_json())
        .send()
        .await
        .map_err(|e| classify("iam:PutUserPolicy", e))?;
    Ok(())
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

    /// The scoped user of `uuid` with its tags (its binding) only — one call — or `None`.
    pub async fn user(&self, uuid: &ComputerUuid) -> Result<Option<ScopedUser>, IamError> {
        let user = match self
            .client
            .get_user()
            .user_name(user_name(uuid))
            .send()
            .await
        {
            Ok(output) => output.user.expect("GetUser answers with a user"),
            Err(e) => match classify("iam:GetUser", e) {
                CallError::NoSuchEntity => return Ok(None),
                other => return Err(fail(other, "iam:GetUser")),
            },
        };
        Ok(Some(ScopedUser {
            tags: tag_map(user.tags()),
            arn: user.arn,
            user_id: user.user_id,
            ..ScopedUser::default()
        }))
    }

    /// The scoped user of `uuid` as IAM has it — tags, policy, keys — or `None`.
    pub async fn inspect(&self, uuid: &ComputerUuid) -> Result<Option<ScopedUser>, IamError> {
        let Some(user) = self.user(uuid).await? else {
            return Ok(None);
        };
        self.with_policy_and_keys(uuid, user).await.map(Some)
    }

    /// `user` (as [`Iam::user`] read it) with its inline policy and its keys.
    pub async fn with_policy_and_keys(
        &self,
        uuid: &ComputerUuid,
        user: ScopedUser,
    ) -> Result<ScopedUser, IamError> {
        let name = user_name(uuid);
        let policy = match self
            .client
            .get_user_policy()
            .user_name(&name)
            .policy_name(POLICY_NAME)
            .send()
            .await
        {
            Ok(output) => decode_policy(&output.policy_document),
            Err(e) => match classify("iam:GetUserPolicy", e) {
                CallError::NoSuchEntity => None,
                other => return Err(fail(other, "iam:GetUserPolicy")),
            },
        };
        let keys = list_keys(&self.client, &name)
            .await
            .map_err(|e| fail(e, "iam:ListAccessKeys"))?;
        Ok(ScopedUser {
            policy,
            active_key_ids: keys
                .iter()
                .filter(|k| k.active)
                .map(|k| k.id.clone())
                .collect(),
            key_ids: keys.into_iter().map(|k| k.id).collect(),
            ..user
        })
    }

    /// Creates the scoped user of `uuid` with `tags` and the permissions boundary `boundary`, in
    /// one call: the caller whose call makes it has bound it. `None` when it exists already (made
    /// by someone else, or by an earlier run).
    pub async fn create_user(
        &self,
        uuid: &ComputerUuid,
        tags: &UserTags,
        boundary: &str,
    ) -> Result<Option<ScopedUser>, IamError> {
        self.create_tagged_user(uuid, &tags.pairs(), boundary).await
    }

    /// [`Iam::create_user`] with the tags `pairs` (keys from this module), such as
    /// [`pinned_tags`].
    pub async fn create_tagged_user(
        &self,
        uuid: &ComputerUuid,
        pairs: &[(&str, String)],
        boundary: &str,
    ) -> Result<Option<ScopedUser>, IamError> {
        let created = self
            .client
            .create_user()
            .user_name(user_name(uuid))
            .path(USER_PATH)
            .permissions_boundary(boundary)
            .set_tags(Some(iam_tags(pairs)))
            .send()
            .await;
        match created {
            Ok(output) => {
                let user = output.user.expect("CreateUser answers with the user");
                Ok(Some(ScopedUser {
                    arn: user.arn,
                    user_id: user.user_id,
                    tags: pairs
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), tag_value(v)))
                        .collect(),
                    ..ScopedUser::default()
                }))
            }
            Err(e) => match classify("iam:CreateUser", e) {
                CallError::AlreadyExists => Ok(None),
                CallError::NoSuchEntity => Err(IamError::NoBoundary {
                    arn: boundary.to_owned(),
                }),
                other => Err(fail(other, "iam:CreateUser")),
            },
        }
    }

    /// Adds or overwrites `tags` on the user (tags it does not name stay).
    pub async fn tag_user(&self, uuid: &ComputerUuid, tags: &UserTags) -> Result<(), IamError> {
        self.add_tags(uuid, &tags.pairs()).await
    }

    /// Adds or overwrites the tags `pairs` (keys from this module) on the user.
    pub async fn add_tags(
        &self,
        uuid: &ComputerUuid,
        pairs: &[(&str, String)],
    ) -> Result<(), IamError> {
        tag_user(&self.client, &user_name(uuid), pairs)
            .await
            .map_err(|e| fail(e, "iam:TagUser"))
    }

    /// The ids of every access key of the user (ListAccessKeys), active or not.
    pub async fn key_ids(&self, uuid: &ComputerUuid) -> Result<Vec<String>, IamError> {
        let keys = list_keys(&self.client, &user_name(uuid))
            .await
            .map_err(|e| fail(e, "iam:ListAccessKeys"))?;
        Ok(keys.into_iter().map(|k| k.id).collect())
    }

    /// Removes the tags `keys` from the user (keys it does not have are fine).
    pub async fn untag(&self, uuid: &ComputerUuid, keys: &[&str]) -> Result<(), IamError> {
        self.client
            .untag_user()
            .user_name(user_name(uuid))
            .set_tag_keys(Some(keys.iter().map(|k| (*k).to_owned()).collect()))
            .send()
            .await
            .map_err(|e| fail(classify("iam:UntagUser", e), "iam:UntagUser"))?;
        Ok(())
    }

    /// Puts `policy` as the user's inline policy unless `current` is it already. Returns whether
    /// it wrote.
    pub async fn ensure_policy(
        &self,
        uuid: &ComputerUuid,
        policy: &PolicyDocument,
        current: Option<&Value>,
    ) -> Result<bool, IamError> {
        if current == Some(policy.as_value()) {
            return Ok(false);
        }
        put_policy(&self.client, &user_name(uuid), policy)
            .await
            .map_err(|e| fail(e, "iam:PutUserPolicy"))?;
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

    /// A new access key for the user; [`IamError::KeyLimit`] when it has two already.
    pub async fn create_key(&self, uuid: &ComputerUuid) -> Result<AccessKey, IamError> {
        let output = self
            .client
            .create_access_key()
            .user_name(user_name(uuid))
            .send()
            .await
            .map_err(|e| fail(classify("iam:CreateAccessKey", e), "iam:CreateAccessKey"))?;
        let key = output
            .access_key
            .expect("CreateAccessKey answers with the key");
        Ok(AccessKey {
            id: key.access_key_id,
            secret: Secret::new(key.secret_access_key),
        })
    }

    /// Every scoped user (under [`USER_PATH`]) with its tags, in one paginated
    /// `GetAccountAuthorizationDetails` ([`scoped_user_details`]). Keys and policies are not
    /// filled in.
    pub async fn scoped_users(&self) -> Result<Vec<ScopedUser>, IamError> {
        let details = scoped_user_details(&self.client)
            .await
            .map_err(|e| fail(e, "iam:GetAccountAuthorizationDetails"))?;
        Ok(details
            .into_iter()
            .map(|user| ScopedUser {
                tags: tag_map(user.tags()),
                arn: user.arn.unwrap_or_default(),
                user_id: user.user_id.unwrap_or_default(),
                ..ScopedUser::default()
            })
            .collect())
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

    fn uuid() -> ComputerUuid {
        ComputerUuid::parse("32D9D7A2-3B3E-4BE7-B85B-0605AF24F570").unwrap()
    }

    #[test]
    fn tag_values_keep_spaces_and_replace_what_iam_refuses() {
        assert_eq!(tag_value("Bob's MacBook Pro"), "Bob_s MacBook Pro");
        assert_eq!(tag_value("Zoë’s iMac (2)"), "Zoë_s iMac _2_");
        // Thai and Devanagari combining marks (IAM refuses the category M).
        assert_eq!(tag_value("Mac ของฉัน"), "Mac ของฉ_น");
        assert_eq!(tag_value("मेरा मैक"), "म_र_ म_क");
    }

    #[test]
    fn a_pinned_user_names_its_pin_and_a_pin_takes_the_binding_and_the_claims_away() {
        let tags = UserTags {
            computer_uuid: uuid().to_string(),
            bucket: "b.example".into(),
            ..UserTags::default()
        };
        let print = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
        let pinned = pinned_tags(&tags, print);
        assert_eq!(pinned.last(), Some(&(PINNED_KEY_TAG, print.to_owned())));
        let mut map: BTreeMap<String, String> =
            pinned.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        map.insert(ENROLLMENT_KEY_TAG.into(), "k".into());
        assert_eq!(bound_enrollment_key(&map), Some("k"));
        let user = ScopedUser::with_tags(map);
        assert_eq!(user.pinned_key(), Some(print));
        assert_eq!(UNPINNED_TAGS, [ENROLLMENT_KEY_TAG, REFUSED_CLAIM_TAG]);
    }

    #[test]
    fn unknown_values_are_left_out_of_the_tags_and_tagging_is_judged_on_what_is_set() {
        let tags = UserTags {
            computer_uuid: uuid().to_string(),
            bucket: "b.example".into(),
            computer_name: Some("Bob's Mac".into()),
            ..UserTags::default()
        };
        let keys: Vec<&str> = tags.pairs().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [COMPUTER_TAG, BUCKET_TAG, NAME_TAG]);
        let mut user = ScopedUser {
            tags: tags
                .pairs()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            ..ScopedUser::default()
        };
        user.tags.insert(ENROLLMENT_KEY_TAG.into(), "k".into());
        assert!(user.is_tagged(&tags), "extra tags do not matter");
        assert_eq!(user.enrollment_key(), Some("k"));
        let renamed = UserTags {
            computer_name: Some("Alice's Mac".into()),
            ..tags
        };
        assert!(!user.is_tagged(&renamed));
    }
}
