//! Scoped keys straight from IAM, with admin credentials (`apply --source iam`).
//!
//! The admin is trusted and runs on this Mac, so the user is brought to what it should be: created
//! (with its tags and the permissions boundary) or re-tagged, the policy written if it differs,
//! keys that are not the one in "Arq S3" deleted first (IAM allows two per user; a run that died
//! leaves one), then a new key. Every step is idempotent, so a run that died is finished by the
//! next.

use aws_config::SdkConfig;

use super::{Computer, IssuedKey, KeySourceError, Plan};
use crate::Error;
use crate::aws::{self, Identity};
use crate::credential_store::AccessKey;
use crate::iam::{Iam, ScopedUser, UserTags};

/// The permissions boundary's name when none is given: one managed policy per account.
pub const DEFAULT_BOUNDARY_NAME: &str = "arq-lockdown-boundary";

pub struct IamIssuer {
    iam: Iam,
    boundary: String,
    /// The computer's scoped user as IAM had it when the run began.
    existing: Option<ScopedUser>,
}

impl IamIssuer {
    /// Connects with admin credentials from outside "Arq S3" (`sdk_config`) and reads the
    /// computer's user. The default boundary names the admin's account, which STS tells
    /// meanwhile.
    pub async fn connect(
        sdk_config: &SdkConfig,
        boundary: Option<&str>,
        computer: &Computer<'_>,
    ) -> Result<Self, Error> {
        let iam = Iam::new(sdk_config);
        let (boundary, existing) = tokio::join!(
            boundary_arn(boundary, sdk_config),
            iam.inspect(&computer.config.computer_uuid),
        );
        Ok(Self::new(iam, boundary?, existing?))
    }

    /// An issuer over `iam`, whose view of the computer's user is `existing`.
    pub fn new(iam: Iam, boundary: String, existing: Option<ScopedUser>) -> Self {
        Self {
            iam,
            boundary,
            existing,
        }
    }

    /// The computer's scoped user's ARN, when `key_id` is one of its keys: IAM itself says so,
    /// with no secret needed.
    pub fn owner_of(&self, key_id: &str) -> Option<String> {
        self.existing
            .as_ref()
            .filter(|user| user.key_ids.iter().any(|id| id == key_id))
            .map(|user| user.arn.clone())
    }

    pub fn plan(&self, computer: &Computer<'_>, current_id: &str, new_key: bool) -> Plan {
        let wanted = (tags(computer), computer.policy.as_value());
        plan_against(self.existing.as_ref(), &wanted, current_id, new_key)
    }

    pub async fn issue(
        &self,
        plan: &Plan,
        computer: &Computer<'_>,
        current_id: &str,
        note: &mut (dyn FnMut(String) + Send),
    ) -> Result<Option<IssuedKey>, Error> {
        let (user_arn, user_id) = self.ensure_user_and_policy(computer, note).await?;
        let key = self
            .replace_key(plan, computer, current_id, &user_arn, note)
            .await?;
        Ok(key.map(|key| IssuedKey {
            key,
            user_arn,
            user_id,
            retire: plan.retire_key.iter().cloned().collect(),
        }))
    }

    /// The user created (with tags and boundary) or re-tagged, and its policy written when it
    /// differs. Returns its ARN and unique id.
    async fn ensure_user_and_policy(
        &self,
        computer: &Computer<'_>,
        note: &mut (dyn FnMut(String) + Send),
    ) -> Result<(String, String), Error> {
        let uuid = &computer.config.computer_uuid;
        let tags = tags(computer);
        let user = match &self.existing {
            Some(user) => {
                if !user.is_tagged(&tags) {
                    self.iam.tag_user(uuid, &tags).await?;
                }
                user.clone()
            }
            None => match self.iam.create_user(uuid, &tags, &self.boundary).await? {
                Some(user) => {
                    note(format!(
                        "created IAM user {} (permissions boundary {})",
                        user.arn, self.boundary
                    ));
                    crate::fault::after("created-user");
                    user
                }
                // Another run made it meanwhile: use that one.
                None => self.iam.inspect(uuid).await?.unwrap_or_default(),
            },
        };
        if self
            .iam
            .ensure_policy(uuid, computer.policy, user.policy.as_ref())
            .await?
        {
            note(format!(
                "policy {} written to {}",
                crate::iam_names::POLICY_NAME,
                user.arn
            ));
            crate::fault::after("wrote-policy");
        }
        Ok((user.arn, user.user_id))
    }

    /// Every key but the one in "Arq S3" deleted, then (with the plan's `new_key`) a new key.
    async fn replace_key(
        &self,
        plan: &Plan,
        computer: &Computer<'_>,
        current_id: &str,
        user_arn: &str,
        note: &mut (dyn FnMut(String) + Send),
    ) -> Result<Option<AccessKey>, Error> {
        let uuid = &computer.config.computer_uuid;
        for key_id in plan.delete_stale_keys.iter().filter(|id| *id != current_id) {
            self.iam.delete_key(uuid, key_id).await?;
            note(format!("deleted stale key {key_id} of {user_arn}"));
        }
        if !plan.new_key {
            return Ok(None);
        }
        let key = self.iam.create_key(uuid).await?;
        note(format!("created key {} for {user_arn}", key.id));
        crate::fault::after("created-key");
        Ok(Some(key))
    }

    pub async fn discard(&self, computer: &Computer<'_>, new: &IssuedKey) -> Result<(), Error> {
        Ok(self
            .iam
            .delete_key(&computer.config.computer_uuid, &new.key.id)
            .await?)
    }

    pub async fn retire(&self, computer: &Computer<'_>, old: &str) -> Result<(), String> {
        self.iam
            .delete_key(&computer.config.computer_uuid, old)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The boundary `given`, else the default one in the admin's account.
async fn boundary_arn(given: Option<&str>, sdk_config: &SdkConfig) -> Result<String, Error> {
    if let Some(arn) = given {
        return Ok(arn.to_owned());
    }
    match aws::identify(sdk_config).await? {
        Identity::Known(caller) => Ok(default_boundary(&caller.account)),
        Identity::Refused(reason) => Err(KeySourceError::AdminRefused { reason }.into()),
    }
}

/// The ARN of the default permissions boundary in `account`.
pub fn default_boundary(account: &str) -> String {
    format!("arn:aws:iam::{account}:policy/{DEFAULT_BOUNDARY_NAME}")
}

/// What the user's tags should say, with the IAM source (no enrollment: that is the service's).
fn tags(computer: &Computer<'_>) -> UserTags {
    UserTags {
        computer_uuid: computer.config.computer_uuid.to_string(),
        bucket: computer.config.bucket.to_string(),
        computer_name: computer.name.map(str::to_owned),
        serial: computer.serial.map(str::to_owned),
        policy_options: Some(computer.options),
        replaced_key: computer.replaced_key.map(str::to_owned),
        ..UserTags::default()
    }
}

/// What IAM must change for the computer's user (`existing`, as IAM has it) to hold the `wanted`
/// tags and policy, with a new key for this Mac when `new_key`: every key of the user but the one
/// in "Arq S3" (`current_id`) is stale, and that one is retired once the new key replaces it.
fn plan_against(
    existing: Option<&ScopedUser>,
    (tags, policy): &(UserTags, &serde_json::Value),
    current_id: &str,
    new_key: bool,
) -> Plan {
    let Some(user) = existing else {
        return Plan {
            new_key,
            create_user: true,
            put_policy: true,
            ..Plan::default()
        };
    };
    let owns_current = user.key_ids.iter().any(|id| id == current_id);
    Plan {
        new_key,
        retag_user: !user.is_tagged(tags),
        put_policy: user.policy.as_ref() != Some(*policy),
        delete_stale_keys: (user.key_ids.iter())
            .filter(|id| *id != current_id)
            .cloned()
            .collect(),
        retire_key: (new_key && owns_current).then(|| current_id.to_owned()),
        ..Plan::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn user(tagged: bool, policy: serde_json::Value, keys: &[&str]) -> ScopedUser {
        let mut user = ScopedUser::tagged(if tagged {
            wanted_tags()
        } else {
            UserTags::default()
        });
        user.key_ids = keys.iter().map(|k| (*k).to_owned()).collect();
        user.policy = Some(policy);
        user
    }

    fn wanted_tags() -> UserTags {
        UserTags {
            computer_uuid: "32D9D7A2-3B3E-4BE7-B85B-0605AF24F570".into(),
            bucket: "b.example".into(),
            ..UserTags::default()
        }
    }

    /// A case: its name, the user IAM has, new key?, then the plan: create, retag, put policy,
    /// stale keys, retired key.
    type Case<'a> = (
        &'a str,
        Option<ScopedUser>,
        bool,
        bool,
        bool,
        bool,
        &'a [&'a str],
        Option<&'a str>,
    );

    #[test]
    #[rustfmt::skip]
    fn the_plan_changes_only_what_differs_and_never_deletes_the_key_in_arq_s3_early() {
        let ours = json!({"Version": "2012-10-17"});
        let theirs = json!({"Version": "2008-10-17"});
        let cases: Vec<Case> = vec![
            ("no user yet", None, true, true, false, true, &[], None),
            ("all in place, main keys in Arq S3", Some(user(true, ours.clone(), &[])), true, false, false, false, &[], None),
            ("another policy", Some(user(true, theirs.clone(), &[])), true, false, false, true, &[], None),
            ("tags missing", Some(user(false, ours.clone(), &[])), true, false, true, false, &[], None),
            ("a dead run's key", Some(user(true, ours.clone(), &["AKIADEAD"])), true, false, false, false, &["AKIADEAD"], None),
            ("rotation: the key in Arq S3 retires after", Some(user(true, ours.clone(), &["AKIACURRENT"])), true, false, false, false, &[], Some("AKIACURRENT")),
            ("rotation with a dead run's key", Some(user(true, ours.clone(), &["AKIADEAD", "AKIACURRENT"])), true, false, false, false, &["AKIADEAD"], Some("AKIACURRENT")),
            ("no new key: the policy alone", Some(user(true, theirs.clone(), &["AKIACURRENT"])), false, false, false, true, &[], None),
        ];
        let wanted = (wanted_tags(), &ours);
        for (case, existing, new_key, create, retag, put, stale, retire) in cases {
            let plan = plan_against(existing.as_ref(), &wanted, "AKIACURRENT", new_key);
            assert_eq!(
                (plan.new_key, plan.create_user, plan.retag_user, plan.put_policy),
                (new_key, create, retag, put),
                "{case}"
            );
            assert_eq!(plan.delete_stale_keys, stale, "{case}");
            assert_eq!(plan.retire_key.as_deref(), retire, "{case}");
        }
    }
}
