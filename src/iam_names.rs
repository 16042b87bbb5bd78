//! IAM's names for arq-lockdown: where its users live, what they and their policy are called,
//! the keys of their tags (and how a token enrollment is written in one), and the IAM actions each
//! command needs.
//!
//! A leaf: it owns only names and imports nothing of the crate but [`ComputerUuid`], so the
//! policy documents, the IAM calls, `audit`, `retire` and the service can all share them without
//! reaching into one another. What the names mean to a lockdown stays with their users
//! (`iam.rs` reads and writes the tags).

use crate::arq_config::ComputerUuid;

/// The IAM path every scoped user lives under; nothing outside it is ever changed.
pub const USER_PATH: &str = "/arq-lockdown/";

/// The name of the one inline policy of a scoped user.
pub const POLICY_NAME: &str = "arq-lockdown";

/// The IAM user name for a computer: `arq-` + the UUID (40 characters, within IAM's 64).
pub fn user_name(uuid: &ComputerUuid) -> String {
    format!("arq-{uuid}")
}

/// The computer a user name is for: the inverse of [`user_name`] (`None` for any other name).
pub fn computer_of(user_name: &str) -> Option<ComputerUuid> {
    user_name
        .strip_prefix("arq-")
        .and_then(|uuid| ComputerUuid::parse(uuid).ok())
}

/// The ARN of `uuid`'s scoped user in `account` — what STS names as the caller of its keys.
pub fn scoped_user_arn(account: &str, uuid: &ComputerUuid) -> String {
    format!("arn:aws:iam::{account}:user{USER_PATH}{}", user_name(uuid))
}

/// Every scoped user of any account, as a policy's `Resource`.
pub fn scoped_users_resource() -> String {
    format!("arn:aws:iam::*:user{USER_PATH}*")
}

/// Whether `arn` is a scoped user's (of any account).
pub fn is_scoped_user_arn(arn: &str) -> bool {
    arn.contains(&format!(":user{USER_PATH}"))
}

/// The computer a scoped user is for (its UUID as Arq writes it).
pub const COMPUTER_TAG: &str = "arq-lockdown:computer-uuid";
/// The bucket a scoped user is bound to.
pub const BUCKET_TAG: &str = "arq-lockdown:bucket";
/// The Mac's enrollment public key (base64), with the service: only its holder may enroll again.
pub const ENROLLMENT_KEY_TAG: &str = "arq-lockdown:enrollment-key";
/// Who enrolled the user with the service: a fleet principal's ARN or [`enrolled_by_token`].
pub const ENROLLED_BY_TAG: &str = "arq-lockdown:enrolled-by";
/// The Mac's name when it was locked down.
pub const NAME_TAG: &str = "arq-lockdown:computer-name";
/// The Mac's serial number when it was locked down.
pub const SERIAL_TAG: &str = "arq-lockdown:serial";
/// The options the inline policy was built with (`PolicyOptions::tag_value`), so `audit` can
/// rebuild the exact policy.
pub const POLICY_OPTIONS_TAG: &str = "arq-lockdown:policy-options";
/// The access key id that was in "Arq S3" when this lockdown replaced it (the fleet's main keys,
/// usually): `audit` asks IAM when each was last used.
pub const REPLACED_KEY_TAG: &str = "arq-lockdown:replaced-key";
/// The latest enrollment the service refused for this computer because another Mac holds it:
/// `<unix seconds> <enrollment-key fingerprint>` (written by the service; `pin` removes it).
pub const REFUSED_CLAIM_TAG: &str = "arq-lockdown:refused-claim";
/// The enrollment-key fingerprint the admin pinned this computer to (written by `pin`): only that
/// key may bind it.
pub const PINNED_KEY_TAG: &str = "arq-lockdown:pinned-key";

/// The tag on a main key's user (outside [`USER_PATH`]) that records what retire-main-keys did to
/// the key.
pub fn retired_key_tag(access_key_id: &str) -> String {
    format!("arq-lockdown:retired-key:{access_key_id}")
}

/// How an [`ENROLLED_BY_TAG`] value names an enrollment token (else it is a principal's ARN).
const TOKEN_PREFIX: &str = "token:";

/// The [`ENROLLED_BY_TAG`] value (and the service's name for the enroller) of an enrollment by the
/// token `name`.
pub fn enrolled_by_token(name: &str) -> String {
    format!("{TOKEN_PREFIX}{name}")
}

/// Whether an [`ENROLLED_BY_TAG`] value names a token: the replaced key it records is only that
/// Mac's word.
pub fn is_token_enrollment(enrolled_by: &str) -> bool {
    enrolled_by.starts_with(TOKEN_PREFIX)
}

/// The IAM actions `apply --source iam`, `revoke`, `pin` and the service use, on
/// [`scoped_users_resource`]: docs/policy.md's admin policy and the refusal message both come from
/// this list.
pub const ADMIN_ACTIONS: [&str; 12] = [
    "iam:GetUser",
    "iam:CreateUser",
    "iam:TagUser",
    "iam:UntagUser",
    "iam:GetUserPolicy",
    "iam:PutUserPolicy",
    "iam:ListUserPolicies",
    "iam:DeleteUserPolicy",
    "iam:ListAccessKeys",
    "iam:CreateAccessKey",
    "iam:DeleteAccessKey",
    "iam:DeleteUser",
];

/// What the service needs beyond [`ADMIN_ACTIONS`], on `*` (IAM grants it on nothing narrower):
/// each enroller's enrollments are counted from the scoped users' tags at start.
pub const SERVICE_ACTIONS: [&str; 1] = ["iam:GetAccountAuthorizationDetails"];

/// The IAM actions a read-only audit needs (docs/policy.md's least-rights policy and the refusal
/// message come from this list); `--fix-policies` also needs [`AUDIT_FIX_ACTION`].
pub const AUDIT_ACTIONS: [&str; 5] = [
    "iam:GetAccountAuthorizationDetails",
    "iam:GenerateCredentialReport",
    "iam:GetCredentialReport",
    "iam:GetAccessKeyLastUsed",
    "iam:ListAccessKeys",
];

/// What `audit --fix-policies` needs beyond [`AUDIT_ACTIONS`], on [`scoped_users_resource`].
pub const AUDIT_FIX_ACTION: &str = "iam:PutUserPolicy";

/// The IAM actions a retirement (and its undo) needs on the main keys' users, beyond what audit
/// needs (docs/policy.md's least-rights policy and the refusal message come from this list).
pub const RETIRE_ACTIONS: [&str; 4] = [
    "iam:ListAccessKeys",
    "iam:ListUserTags",
    "iam:TagUser",
    "iam:UpdateAccessKey",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn uuid() -> ComputerUuid {
        ComputerUuid::parse("32D9D7A2-3B3E-4BE7-B85B-0605AF24F570").unwrap()
    }

    #[test]
    fn a_scoped_users_arn_names_its_account_path_and_computer() {
        let arn = scoped_user_arn("123456789012", &uuid());
        assert_eq!(
            arn,
            "arn:aws:iam::123456789012:user/arq-lockdown/arq-32D9D7A2-3B3E-4BE7-B85B-0605AF24F570"
        );
        assert!(is_scoped_user_arn(&arn));
        assert!(!is_scoped_user_arn(
            "arn:aws:iam::123456789012:user/fleet-admin"
        ));
        assert_eq!(computer_of(&user_name(&uuid())), Some(uuid()));
        assert_eq!(computer_of("fleet-admin"), None);
    }

    #[test]
    fn a_token_enrollment_is_told_from_a_principals() {
        assert_eq!(enrolled_by_token("fleet"), "token:fleet");
        assert!(is_token_enrollment(&enrolled_by_token("fleet")));
        assert!(!is_token_enrollment("arn:aws:iam::123456789012:role/fleet"));
    }
}
