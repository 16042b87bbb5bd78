//! Retiring the fleet's main keys, the rollout's last step: a main key is set Inactive (never
//! deleted) and Active again on undo, each change recorded on the key's IAM user as the tag
//! `arq-lockdown:retired-key:<KEY ID>`, so that an undo switches on only what a retirement switched
//! off — never a key an admin deactivated by hand (a lost Mac's, say). Which keys may go is audit's
//! verdict ([`crate::audit::decide::verdict`]); this module only makes the change.

use aws_sdk_iam::types::StatusType;
use serde::Serialize;

use crate::iam::{self, CallError, IamError};
use crate::iam_names;

const RETIRED: &str = "Inactive since";
const RESTORED: &str = "Active again since";

#[derive(Debug, thiserror::Error)]
pub enum RetireError {
    #[error(
        "IAM refused {action} on the user {user} to these admin credentials: retire-main-keys needs {} on the main keys' users, and what audit needs; `arq-lockdown policy --kind retire --bucket BUCKET` prints the policy",
        iam_names::RETIRE_ACTIONS.join(", ")
    )]
    Refused { action: &'static str, user: String },
    #[error(
        "the main key {access_key_id} is not among the keys of its user {user} any more (deleted meanwhile?): run again"
    )]
    Gone { access_key_id: String, user: String },
    #[error(transparent)]
    Iam(IamError),
}

impl RetireError {
    pub fn exit_code(&self) -> crate::exit_code::ExitCode {
        crate::exit_code::ExitCode::Aws
    }
}

/// A main key's status in IAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum KeyStatus {
    Active,
    Inactive,
}

impl std::fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Active => "Active",
            Self::Inactive => "Inactive",
        })
    }
}

/// What a retirement (or its undo) did to one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeResult {
    Changed,
    /// Already as asked.
    Unchanged,
    /// Inactive, but not by retire-main-keys: an undo does not switch it on.
    LeftAlone,
}

/// What happened to one main key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyChange {
    pub access_key_id: String,
    pub user_name: String,
    /// Its status before.
    pub from: KeyStatus,
    /// Its status after.
    pub to: KeyStatus,
    pub result: ChangeResult,
}

fn failed(action: &'static str, user: &str, error: CallError) -> RetireError {
    match error {
        CallError::Error(IamError::Refused { .. }) => RetireError::Refused {
            action,
            user: user.to_owned(),
        },
        CallError::Error(e) => RetireError::Iam(e),
        CallError::NoSuchEntity | CallError::AlreadyExists => RetireError::Iam(IamError::Failed {
            action,
            message: format!("the user {user} is gone"),
        }),
    }
}

/// The key's status and this tool's record of it on its user, if any.
async fn state_of(
    client: &aws_sdk_iam::Client,
    access_key_id: &str,
    user: &str,
) -> Result<(KeyStatus, Option<String>), RetireError> {
    const LIST: &str = "iam:ListAccessKeys";
    const TAGS: &str = "iam:ListUserTags";
    let (keys, tags) = tokio::join!(
        iam::list_keys(client, user),
        client.list_user_tags().user_name(user).send(),
    );
    let keys = keys.map_err(|e| failed(LIST, user, e))?;
    let tags = tags.map_err(|e| failed(TAGS, user, iam::classify(TAGS, e)))?;
    let key = keys
        .iter()
        .find(|k| k.id == access_key_id)
        .ok_or_else(|| RetireError::Gone {
            access_key_id: access_key_id.to_owned(),
            user: user.to_owned(),
        })?;
    let status = match key.active {
        true => KeyStatus::Active,
        false => KeyStatus::Inactive,
    };
    let record = iam::tag_map(tags.tags()).remove(&iam_names::retired_key_tag(access_key_id));
    Ok((status, record))
}

/// The change to `access_key_id` of `user` from `from`.
fn change(
    access_key_id: &str,
    user: &str,
    from: KeyStatus,
) -> impl Fn(KeyStatus, ChangeResult) -> KeyChange {
    move |to, result| KeyChange {
        access_key_id: access_key_id.to_owned(),
        user_name: user.to_owned(),
        from,
        to,
        result,
    }
}

async fn set_status(
    client: &aws_sdk_iam::Client,
    access_key_id: &str,
    user: &str,
    status: StatusType,
) -> Result<(), RetireError> {
    const ACTION: &str = "iam:UpdateAccessKey";
    client
        .update_access_key()
        .user_name(user)
        .access_key_id(access_key_id)
        .status(status)
        .send()
        .await
        .map_err(|e| failed(ACTION, user, iam::classify(ACTION, e)))?;
    Ok(())
}

async fn record(
    client: &aws_sdk_iam::Client,
    access_key_id: &str,
    user: &str,
    value: String,
) -> Result<(), RetireError> {
    const ACTION: &str = "iam:TagUser";
    let key = iam_names::retired_key_tag(access_key_id);
    iam::tag_user(client, user, &[(key.as_str(), value)])
        .await
        .map_err(|e| failed(ACTION, user, e))
}

/// Sets `access_key_id` (of `user`) Inactive, recorded first — a record without the change
/// harms nothing, a change without its record could not be undone — at IAM's time `at`.
pub async fn deactivate(
    client: &aws_sdk_iam::Client,
    access_key_id: &str,
    user: &str,
    at: &str,
) -> Result<KeyChange, RetireError> {
    let (status, _) = state_of(client, access_key_id, user).await?;
    let change = change(access_key_id, user, status);
    if status != KeyStatus::Active {
        return Ok(change(status, ChangeResult::Unchanged));
    }
    record(
        client,
        access_key_id,
        user,
        format!("{RETIRED} {at} by retire-main-keys"),
    )
    .await?;
    set_status(client, access_key_id, user, StatusType::Inactive).await?;
    Ok(change(KeyStatus::Inactive, ChangeResult::Changed))
}

/// Sets `access_key_id` Active again if a retirement switched it off (its record says so), the
/// change first — a working key matters more than its record.
pub async fn reactivate(
    client: &aws_sdk_iam::Client,
    access_key_id: &str,
    user: &str,
    at: &str,
) -> Result<KeyChange, RetireError> {
    let (status, retired) = state_of(client, access_key_id, user).await?;
    let change = change(access_key_id, user, status);
    if status == KeyStatus::Active {
        return Ok(change(KeyStatus::Active, ChangeResult::Unchanged));
    }
    if !retired.is_some_and(|r| r.starts_with(RETIRED)) {
        return Ok(change(status, ChangeResult::LeftAlone));
    }
    set_status(client, access_key_id, user, StatusType::Active).await?;
    record(
        client,
        access_key_id,
        user,
        format!("{RESTORED} {at} by retire-main-keys --undo"),
    )
    .await?;
    Ok(change(KeyStatus::Active, ChangeResult::Changed))
}
