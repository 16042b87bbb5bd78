//! Where scoped keys come from: straight from IAM with admin credentials ([`iam`]), or from the
//! provisioning service, which holds the IAM rights so Macs need none ([`service`]).
//!
//! Whatever the source, the result is an IAM user `arq-<computerUUID>` under `/arq-lockdown/`
//! carrying the policy from [`crate::policy`], and one fresh access key for it.

pub mod iam;
pub mod service;

use crate::credential_store::AccessKey;

/// A key just issued for a computer's scoped user.
#[derive(Debug)]
pub struct IssuedKey {
    pub key: AccessKey,
    pub user_arn: String,
}
