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

    /// Whether this receipt describes the lockdown now in place: same bucket, computer and key, and
    /// the policy this version of the tool would write.
    pub fn covers(&self, config: &ArqConfig, access_key_id: &str, policy: &PolicyDocument) -> bool {
        self.bucket == config.bucket.as_str()
            && self.computer_uuid == config.computer_uuid.as_str()
            && self.access_key_id == access_key_id
            && self.policy_sha256 == policy_sha256(policy)
    }

    /// Seconds since the receipt was written.
    pub fn age_seconds(&self) -> u64 {
        now_unix().saturating_sub(self.applied_at_unix)
    }
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
    fn a_receipt_covers_only_its_bucket_computer_key_and_policy() {
        let policy = PolicyDocument::scoped_to(&config(), PolicyOptions::default());
        let legacy = PolicyDocument::scoped_to(
            &config(),
            PolicyOptions {
                legacy_glacier: true,
                ..PolicyOptions::default()
            },
        );
        let receipt = receipt(&policy);
        assert!(receipt.covers(&config(), "AKIAIOSFODNN7EXAMPLE", &policy));
        assert!(!receipt.covers(&config(), "AKIAI44QH8DHBEXAMPLE", &policy));
        assert!(!receipt.covers(&config(), "AKIAIOSFODNN7EXAMPLE", &legacy));
        let other_bucket =
            ArqConfig::from_values("other.bucket", config().computer_uuid.as_str(), "t").unwrap();
        assert!(!receipt.covers(
            &other_bucket,
            "AKIAIOSFODNN7EXAMPLE",
            &PolicyDocument::scoped_to(&other_bucket, PolicyOptions::default())
        ));
        let other_computer = ArqConfig::from_values(
            config().bucket.as_str(),
            "7A1E5C3B-9D2F-4E8A-B6C4-1F3D5E7A9B2C",
            "t",
        )
        .unwrap();
        assert!(!receipt.covers(&other_computer, "AKIAIOSFODNN7EXAMPLE", &policy));
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
