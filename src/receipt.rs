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
use crate::atomic_file::write_atomically;
use crate::key_source::SourceKind;
use crate::policy::{PolicyDocument, PolicyOptions};

/// Where the receipt lives, relative to the user's home folder.
pub const RECEIPT_RELATIVE_PATH: &str = "Library/Application Support/arq-lockdown/receipt.json";

/// A receipt is a few hundred bytes.
const MAX_RECEIPT_BYTES: u64 = 64 * 1024;

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
    /// the work is done again, so it reads as none.
    pub fn load(home: &Path) -> Option<Self> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        crate::session::refuse_user_symlinks(&Self::path(home)).ok()?;
        // Non-blocking, so a FIFO in its place cannot hang the run; then only a regular file counts.
        let file = std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(Self::path(home))
            .ok()?;
        if !file.metadata().ok()?.is_file() {
            return None;
        }
        let mut text = String::new();
        file.take(MAX_RECEIPT_BYTES)
            .read_to_string(&mut text)
            .ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn save(&self, home: &Path) -> Result<(), ReceiptError> {
        let path = Self::path(home);
        let error = |source| ReceiptError {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(path.parent().expect("the receipt path has a folder"))
            .map_err(error)?;
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
    Sha256::digest(policy.to_compact_json().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
