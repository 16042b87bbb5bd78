//! Issuing a key to a computer's scoped user, the last step of enroll and rotate: the user's
//! policy brought up to date and its options recorded in its tags, then a new key, its secret
//! sealed to the request's reply key. Issuing never deletes a key: with both slots taken it
//! refuses and names them. Who may be issued a key is decided before, in [`super::handlers`].

use super::Service;
use super::refusal::Refusal;
use crate::arq_config::{ArqConfig, BucketName, ComputerUuid};
use crate::credential_store::AccessKey;
use crate::iam::{IamError, ScopedUser};
use crate::iam_names;
use crate::policy::{PolicyDocument, PolicyOptions};
use crate::protocol::{KeyResponse, sealed};

impl Service {
    /// The policy brought up to date (and its options recorded in the user's tags, with the key
    /// this lockdown replaced when the user has none recorded yet), then a new key sealed to
    /// `reply_key`.
    pub(super) async fn issue(
        &self,
        config: &ArqConfig,
        user: &ScopedUser,
        reply_key: &str,
        replaced_key: Option<&str>,
    ) -> Result<KeyResponse, Refusal> {
        let uuid = &config.computer_uuid;
        issuable(user, &config.bucket)?;
        let options = self.policy_options();
        let policy = PolicyDocument::scoped_to(config, options);
        self.iam
            .ensure_policy(uuid, &policy, user.policy.as_ref())
            .await?;
        let retag = missing_tags(user, options, replaced_key);
        if !retag.is_empty() {
            self.iam.add_tags(uuid, &retag).await?;
        }
        let key = self.create_key(uuid).await?;
        Ok(KeyResponse {
            sealed_secret_access_key: sealed::seal(reply_key, &key.secret)
                .expect("the reply key was checked"),
            access_key_id: key.id.clone(),
            user_arn: user.arn.clone(),
            user_id: user.user_id.clone(),
            other_access_key_ids: user.key_ids.clone(),
        })
    }

    /// The policy options this service builds every computer's policy with.
    pub(super) fn policy_options(&self) -> PolicyOptions {
        PolicyOptions {
            no_computer_listing: self.config.no_computer_listing,
            ..PolicyOptions::default()
        }
    }

    /// A new key; when IAM finds both slots taken (a key made since the user was read), the
    /// refusal names the keys as they are now.
    async fn create_key(&self, uuid: &ComputerUuid) -> Result<AccessKey, Refusal> {
        match self.iam.create_key(uuid).await {
            Ok(key) => Ok(key),
            Err(IamError::KeyLimit { .. }) => {
                let now = self.iam.inspect(uuid).await?.unwrap_or_default();
                Err(Refusal::key_limit(now.key_ids))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Refuses a user bound to another bucket, or whose two key slots are taken.
fn issuable(user: &ScopedUser, bucket: &BucketName) -> Result<(), Refusal> {
    if user.bound_bucket() != Some(bucket.as_str()) {
        return Err(Refusal::bucket_mismatch());
    }
    if user.key_ids.len() >= 2 {
        return Err(Refusal::key_limit(user.key_ids.clone()));
    }
    Ok(())
}

/// The tags `user` lacks: the policy options when they differ, and `replaced_key` when no key is
/// recorded yet and it is not one of the user's own.
fn missing_tags(
    user: &ScopedUser,
    options: PolicyOptions,
    replaced_key: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut retag = Vec::new();
    if user.tag(iam_names::POLICY_OPTIONS_TAG) != Some(options.tag_value().as_str()) {
        retag.push((iam_names::POLICY_OPTIONS_TAG, options.tag_value()));
    }
    if let Some(id) = replaced_key
        && user.tag(iam_names::REPLACED_KEY_TAG).is_none()
        && !user.key_ids.iter().any(|k| k == id)
    {
        retag.push((iam_names::REPLACED_KEY_TAG, id.to_owned()));
    }
    retag
}
