//! Where scoped keys come from: straight from IAM with admin credentials ([`iam`]).
//!
//! Whatever the source, the result is an IAM user `arq-<computerUUID>` under `/arq-lockdown/`
//! carrying the policy from [`crate::policy`], and one fresh access key for it.

pub mod iam;

use crate::credential_store::AccessKey;

/// A key just issued for a computer's scoped user.
#[derive(Debug)]
pub struct IssuedKey {
    pub key: AccessKey,
    pub user_arn: String,
}
