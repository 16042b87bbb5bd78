//! The receipt: a small, non-secret record of the last lockdown of this Mac, in the user's
//! `~/Library/Application Support/arq-lockdown/receipt.json`.
//!
//! It lets a re-run with nothing changed finish at once without touching the network (the login
//! one-shot relies on that) and lets `status` answer without AWS. It holds no secret: the access
//! key id, the IAM user's ARN and a hash of the policy. It is written last, after "Arq S3" is
//! updated and Arq relaunched, so a run killed earlier is simply done again.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::arq_config::ArqConfig;
use crate::fs::{read_small_file, write_atomically};
use crate::policy::{PolicyDocument, PolicyOptions};

/// Where the receipt lives, relative to the user's home folder.
pub const RECEIPT_RELATIVE_PATH: &str = "Library/Application Support/arq-lockdown/receipt.json";

/// A receipt is a few hundred bytes.
const MAX_RECEIPT_BYTES: u64 = 64 * 1024;

/// Which key source: what `--source` and the profile's `Source` name, and what a receipt records
/// (here, below the key sources, so that the receipt needs nothing above it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// Straight from IAM, with admin credentials.
    Iam,
    /// The provisioning service.
    Service,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub bucket: String,
    pub computer_uuid: String,
    /// The key now in "Arq S3" (the id only).
    pub access_key_id: String,
    pub user_arn: String,
    /// SHA-256 of the compact policy this key was issued under.
    pub policy_sha256: String,
    /// The options that policy was made with.
    #[serde(default)]
    pub policy_options: PolicyOptions,
    /// Where the key came from.
    pub source: SourceKind,
    pub applied_at_unix: u64,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot write the receipt {path}: {source}; check that the folder is writable by this user"
)]
pub struct ReceiptError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl Receipt {
    pub fn path(home: &Path) -> PathBuf {
        home.join(RECEIPT_RELATIVE_PATH)
    }

    /// The receipt, if there is a readable one. A missing, unreadable or corrupt receipt only means
    /// the work is done again, so it reads as none; so does one written in the future (it is the
    /// user's file: a date ahead proves nothing, and a clock set back is healed by the next run).
    pub fn load(home: &Path) -> Option<Self> {
        let bytes = read_small_file(&Self::path(home), MAX_RECEIPT_BYTES).ok()?;
        serde_json::from_slice::<Self>(&bytes)
            .ok()
            .filter(|receipt| receipt.applied_at_unix <= now_unix())
    }

    pub fn save(&self, home: &Path) -> Result<(), ReceiptError> {
        let path = Self::path(home);
        let error = |source| ReceiptError {
            path: path.clone(),
            source,
        };
        crate::fs::Dir::create(path.parent().expect("the receipt path has a folder"), 0o700)
            .map_err(|e| error(e.into()))?;
        let text = serde_json::to_string_pretty(self).expect("a receipt serializes");
        write_atomically(&path, text.as_bytes(), 0o600).map_err(error)
    }

    /// Seconds since the receipt was written.
    pub fn age_seconds(&self) -> u64 {
        now_unix().saturating_sub(self.applied_at_unix)
    }
}

/// What this Mac's own files say about its lockdown: the one judgement `apply`, `status` and the
/// extension attribute share. Audit judges the fleet from IAM (`audit::decide`), with the same
/// words for the same facts: `locked-down`, `not-locked-down`; what is `policy-outdated` here is
/// `policy-drift` there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalState {
    /// The receipt records this very lockdown: this bucket, computer, key and options, under the
    /// policy this version of arq-lockdown writes.
    LockedDown,
    /// The same, but the key was issued under a policy another version wrote (the pkg was
    /// upgraded and the policy's text changed): still this computer's scoped key.
    PolicyOutdated,
    /// No receipt: `apply` has not locked this Mac down.
    NoReceipt,
    /// The receipt is for another key than the one in "Arq S3".
    OtherKey(String),
    /// The receipt is for another bucket, computer or policy options.
    OtherPolicy,
}

impl LocalState {
    /// Why it is not locked down, and what to do, in one line.
    pub fn detail(&self) -> Option<String> {
        match self {
            Self::LockedDown => None,
            Self::PolicyOutdated => Some(
                "the key in \"Arq S3\" was issued under an older policy than this version writes: the next apply with the service or admin credentials refreshes it"
                    .to_owned(),
            ),
            Self::NoReceipt => Some("no receipt: run apply".to_owned()),
            Self::OtherKey(key) => Some(format!(
                "the receipt is for key {key}, not the one in \"Arq S3\": run apply"
            )),
            Self::OtherPolicy => Some(
                "the receipt is for another bucket, computer or policy options: run apply"
                    .to_owned(),
            ),
        }
    }
}

/// The judge of this Mac's own state, from one read of the receipt: `receipt` against Arq's
/// `config`, the account of "Arq S3" (`key_account`, never the secret) and the policy `options`
/// wanted (`apply`'s; `status`, which cannot know the next run's flags, passes the receipt's own).
pub fn judge(
    receipt: Option<&Receipt>,
    config: &ArqConfig,
    key_account: &str,
    options: PolicyOptions,
) -> LocalState {
    let Some(receipt) = receipt else {
        return LocalState::NoReceipt;
    };
    if receipt.access_key_id != key_account {
        return LocalState::OtherKey(receipt.access_key_id.clone());
    }
    if receipt.bucket != config.bucket.as_str()
        || receipt.computer_uuid != config.computer_uuid.as_str()
        || receipt.policy_options != options
    {
        return LocalState::OtherPolicy;
    }
    if receipt.policy_sha256 != policy_sha256(&PolicyDocument::scoped_to(config, options)) {
        return LocalState::PolicyOutdated;
    }
    LocalState::LockedDown
}

pub fn policy_sha256(policy: &PolicyDocument) -> String {
    crate::protocol::hex(&Sha256::digest(policy.to_compact_json().as_bytes()))
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ArqConfig {
        ArqConfig::from_values(
            "akiaexample.comhaystacksoftwarearq",
            "32D9D7A2-3B3E-4BE7-B85B-0605AF24F570",
            "test",
        )
        .unwrap()
    }

    fn receipt(policy: &PolicyDocument) -> Receipt {
        Receipt {
            bucket: "akiaexample.comhaystacksoftwarearq".into(),
            computer_uuid: "32D9D7A2-3B3E-4BE7-B85B-0605AF24F570".into(),
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            user_arn: "arn:aws:iam::123456789012:user/arq-lockdown/arq-X".into(),
            policy_sha256: policy_sha256(policy),
            policy_options: PolicyOptions::default(),
            source: SourceKind::Iam,
            applied_at_unix: now_unix() - 100,
        }
    }

    #[test]
    #[rustfmt::skip]
    fn the_judge_reads_bucket_computer_key_options_and_policy() {
        let other_bucket = ArqConfig::from_values("other.bucket", config().computer_uuid.as_str(), "t").unwrap();
        let other_computer = ArqConfig::from_values(config().bucket.as_str(), "7A1E5C3B-9D2F-4E8A-B6C4-1F3D5E7A9B2C", "t").unwrap();
        let legacy = PolicyOptions { legacy_glacier: true, ..PolicyOptions::default() };
        let written = receipt(&PolicyDocument::scoped_to(&config(), PolicyOptions::default()));
        let outdated = Receipt { policy_sha256: "0".repeat(64), ..written.clone() };
        let key = "AKIAIOSFODNN7EXAMPLE";
        for (receipt, config, key, options, state) in [
            (Some(&written), config(), key, PolicyOptions::default(), LocalState::LockedDown),
            (Some(&outdated), config(), key, PolicyOptions::default(), LocalState::PolicyOutdated),
            (None, config(), key, PolicyOptions::default(), LocalState::NoReceipt),
            (Some(&written), config(), "AKIAI44QH8DHBEXAMPLE", PolicyOptions::default(), LocalState::OtherKey(key.into())),
            (Some(&written), config(), key, legacy, LocalState::OtherPolicy),
            (Some(&written), other_bucket, key, PolicyOptions::default(), LocalState::OtherPolicy),
            (Some(&written), other_computer, key, PolicyOptions::default(), LocalState::OtherPolicy),
        ] {
            assert_eq!(judge(receipt, &config, key, options), state, "{receipt:?} {key}");
        }
    }

    #[test]
    fn a_saved_receipt_loads_as_written_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let policy = PolicyDocument::scoped_to(&config(), PolicyOptions::default());
        assert_eq!(Receipt::load(home.path()), None);
        let written = receipt(&policy);
        written.save(home.path()).unwrap();
        let path = Receipt::path(home.path());
        assert_eq!(path, home.path().join(RECEIPT_RELATIVE_PATH));
        assert_eq!(Receipt::load(home.path()), Some(written.clone()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            (99..=101).contains(&written.age_seconds()),
            "{}",
            written.age_seconds()
        );
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(
            Receipt::load(home.path()),
            None,
            "a corrupt receipt means: do it again"
        );
        let future = Receipt {
            applied_at_unix: now_unix() + 3600,
            ..written
        };
        future.save(home.path()).unwrap();
        assert_eq!(
            Receipt::load(home.path()),
            None,
            "a receipt from the future"
        );
    }

    #[test]
    fn the_policy_hash_is_the_sha256_of_what_iam_receives() {
        let policy = PolicyDocument::scoped_to(&config(), PolicyOptions::default());
        let hash = policy_sha256(&policy);
        assert_eq!(hash.len(), 64);
        assert_eq!(
            hash,
            crate::protocol::hex(&Sha256::digest(policy.to_compact_json().as_bytes()))
        );
        assert!(now_unix() > 1_790_000_000);
    }
}
