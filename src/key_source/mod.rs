//! Where scoped keys come from: straight from IAM with admin credentials ([`iam`]), from the
//! provisioning service, which holds the IAM rights so Macs need none ([`service`]), or — for a
//! run as a user that root started — from root, which keeps the admin's credentials ([`root`]).
//!
//! `apply` resolves the source once into a [`KeyIssuer`] and then only asks it to plan, issue,
//! discard (a key that failed verification) and retire (the keys the new one replaces).
//! Whatever the source, the result is the IAM user `arq-<computerUUID>` under `/arq-lockdown/`
//! carrying the policy from [`crate::policy`], and one fresh access key for it.

pub mod iam;
pub mod root;
pub mod service;

use serde::Serialize;

use crate::Error;
use crate::arq_config::ArqConfig;
use crate::credential_store::{AccessKey, ArqS3};
use crate::policy::{PolicyDocument, PolicyOptions};

pub use self::iam::{IamIssuer, default_boundary};
pub use self::root::RootIssuer;
pub use self::service::{ServiceClient, ServiceIssuer};
pub use crate::receipt::SourceKind;

/// What a key source can fail at on its own (the IAM and service errors have their enums).
#[derive(Debug, thiserror::Error)]
pub enum KeySourceError {
    #[error(
        "AWS refuses the admin credentials ({reason}): check AWS_PROFILE or AWS_ACCESS_KEY_ID, or pass --permissions-boundary"
    )]
    AdminRefused { reason: String },
}

impl KeySourceError {
    pub fn exit_code(&self) -> crate::exit_code::ExitCode {
        match self {
            Self::AdminRefused { .. } => crate::exit_code::ExitCode::Aws,
        }
    }
}

/// Where the scoped key comes from, as the command line and the profile chose it.
pub enum KeySource {
    /// IAM directly, with these admin credentials, creating users with this permissions
    /// boundary (default: `arq-lockdown-boundary` in the admin's account).
    Iam {
        admin: AdminCredentials,
        permissions_boundary: Option<String>,
    },
    /// The provisioning service, which holds the IAM rights.
    Service(Box<ServiceClient>),
}

/// Which credentials may create the IAM user and its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminCredentials {
    /// The keys now in "Arq S3" — the fleet's main keys, as the manual procedure starts.
    ArqS3,
    /// The standard AWS credential chain.
    Chain,
    /// A named AWS profile.
    Profile(String),
    /// The root run that started this one holds them (`env` or `profile:NAME` there) and does
    /// the IAM work itself: this run asks it (see [`root`]).
    Root,
}

impl AdminCredentials {
    /// The SDK configuration of credentials from outside "Arq S3" (`env`, `profile:NAME`), from
    /// this process's environment and AWS config; `None` for the others.
    pub async fn sdk_config(&self) -> Option<aws_config::SdkConfig> {
        let credentials = match self {
            Self::Chain => crate::aws::AwsCredentials::Chain,
            Self::Profile(name) => crate::aws::AwsCredentials::Profile(name),
            Self::ArqS3 | Self::Root => return None,
        };
        Some(crate::aws::load_config(credentials).await)
    }
}

/// A key just issued for a computer's scoped user.
#[derive(Debug)]
pub struct IssuedKey {
    pub key: AccessKey,
    pub user_arn: String,
    pub user_id: String,
    /// Keys of the same user to delete once "Arq S3" holds this one.
    pub retire: Vec<String>,
}

/// The computer a key is for, and what its IAM user should say about the Mac.
pub struct Computer<'a> {
    pub config: &'a ArqConfig,
    pub policy: &'a PolicyDocument,
    /// The options `policy` was built with, recorded in the user's tags for `audit`.
    pub options: PolicyOptions,
    pub name: Option<&'a str>,
    pub serial: Option<&'a str>,
    /// The key in "Arq S3" that this lockdown replaces, when it is not this computer's own
    /// scoped key (the fleet's main keys, usually): recorded in the user's tags for `audit`.
    pub replaced_key: Option<&'a str>,
}

/// What IAM (or the service) and this Mac need, decided before anything changes.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct Plan {
    pub create_user: bool,
    pub retag_user: bool,
    pub put_policy: bool,
    /// Keys of the scoped user that are not in "Arq S3" (left by a run that died): deleted first.
    pub delete_stale_keys: Vec<String>,
    /// With the service as the source: what to ask it for.
    pub service_call: Option<ServiceCall>,
    /// A new key replaces the one in "Arq S3".
    pub new_key: bool,
    /// The previous scoped key, deleted once "Arq S3" holds the new one.
    pub retire_key: Option<String>,
}

/// What `apply` asks the provisioning service for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceCall {
    /// A first key (or a key again after a run that died), proven by the main keys now in "Arq
    /// S3" or an enrollment token, and signed by this Mac's enrollment key.
    Enroll,
    /// A new key, proven by this computer's scoped key now in "Arq S3".
    Rotate,
}

/// The source resolved for one run.
pub enum KeyIssuer<'a> {
    Iam(Box<IamIssuer>),
    Service(ServiceIssuer<'a>),
    /// The root run that started this one, with the admin's credentials it keeps.
    Root(RootIssuer),
    /// "Arq S3" already holds this computer's scoped key and nothing is to change in IAM: the
    /// key is verified and adopted (a run that died after "Arq S3" changed is finished this way).
    Adopt,
}

impl KeySource {
    pub fn kind(&self) -> SourceKind {
        match self {
            Self::Iam { .. } => SourceKind::Iam,
            Self::Service(_) => SourceKind::Service,
        }
    }
}

impl KeyIssuer<'_> {
    /// Decides every change without making any. `owned`: the key in "Arq S3" (`current_id`) is
    /// already this computer's scoped key.
    pub fn plan(
        &self,
        computer: &Computer<'_>,
        current_id: &str,
        owned: bool,
        rotate: bool,
    ) -> Plan {
        let new_key = !owned || rotate;
        match self {
            Self::Iam(issuer) => issuer.plan(computer, current_id, new_key),
            Self::Service(_) => service_plan(current_id, owned, rotate),
            // Root planned it, from its own view of IAM and its own arguments.
            Self::Root(issuer) => issuer.plan.clone(),
            Self::Adopt => Plan::default(),
        }
    }

    /// Makes the plan's changes; returns the new key, if the plan has one.
    pub async fn issue(
        &self,
        plan: &Plan,
        computer: &Computer<'_>,
        current: &ArqS3<'_>,
        note: &mut (dyn FnMut(String) + Send),
    ) -> Result<Option<IssuedKey>, Error> {
        match self {
            Self::Iam(issuer) => issuer.issue(plan, computer, &current.id, note).await,
            Self::Service(issuer) => match plan.service_call {
                Some(call) => issuer.issue(call, computer, current, note).await.map(Some),
                None => Ok(None),
            },
            Self::Root(issuer) => issuer.issue(note),
            Self::Adopt => Ok(None),
        }
    }

    /// Deletes a new key that failed verification (it never reached "Arq S3").
    pub async fn discard(&self, computer: &Computer<'_>, new: &IssuedKey) -> Result<(), Error> {
        match self {
            Self::Iam(issuer) => issuer.discard(computer, new).await,
            Self::Service(issuer) => issuer.discard(computer, new).await,
            Self::Root(issuer) => issuer.discard(new),
            Self::Adopt => Ok(()),
        }
    }

    /// Deletes the keys `new` replaces, now that "Arq S3" holds it. Returns each key's result.
    pub async fn retire(
        &self,
        computer: &Computer<'_>,
        new: &IssuedKey,
    ) -> Vec<(String, Result<(), String>)> {
        if let Self::Root(issuer) = self {
            return issuer.retire();
        }
        let mut results = Vec::new();
        for old in &new.retire {
            let result = match self {
                Self::Iam(issuer) => issuer.retire(computer, old).await,
                Self::Service(issuer) => issuer.retire(computer, old).await,
                Self::Root(_) | Self::Adopt => Ok(()),
            };
            results.push((old.clone(), result));
        }
        results
    }
}

/// With the service: enroll when "Arq S3" does not hold this computer's key (`owned`), rotate
/// when asked to and it does (the old key retires once the new one is in "Arq S3"), else nothing.
fn service_plan(current_id: &str, owned: bool, rotate: bool) -> Plan {
    let call = match (owned, rotate) {
        (false, _) => Some(ServiceCall::Enroll),
        (true, true) => Some(ServiceCall::Rotate),
        (true, false) => None,
    };
    Plan {
        new_key: call.is_some(),
        service_call: call,
        retire_key: (owned && rotate).then(|| current_id.to_owned()),
        ..Plan::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[rustfmt::skip]
    fn the_service_is_asked_to_enroll_to_rotate_or_not_at_all() {
        for (owned, rotate, call, retire) in [
            (false, false, Some(ServiceCall::Enroll), None),
            (false, true, Some(ServiceCall::Enroll), None),
            (true, true, Some(ServiceCall::Rotate), Some("AKIACURRENT")),
            (true, false, None, None),
        ] {
            let plan = service_plan("AKIACURRENT", owned, rotate);
            assert_eq!(plan.service_call, call, "owned {owned}, rotate {rotate}");
            assert_eq!(plan.new_key, call.is_some());
            assert_eq!(plan.retire_key.as_deref(), retire);
        }
    }
}
