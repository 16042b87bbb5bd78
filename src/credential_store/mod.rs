//! The "Arq S3" credential item, where Arq reads its S3 access key, and arq-lockdown's own
//! enrollment key beside it.
//!
//! Owns the [`CredentialStore`] seam. On a Mac "Arq S3" is a generic password in the user's login
//! Keychain (label and service "Arq S3", account = access key id, data = secret); Arq finds it by
//! label and takes the first match, so a store only ever changes that one item in place and never
//! adds a second. The enrollment key (`protocol/enrollment.rs`) is an item of our own.
//! Elsewhere (Linux, tests, the demo) a JSON file of the same shape stands in.

mod file;
#[cfg(target_os = "macos")]
mod keychain;

use std::path::PathBuf;

pub use file::FileStore;

use crate::exit_code::ExitCode;
use crate::secret::Secret;

/// The label (and service) of Arq's credential item.
pub const ARQ_S3_ITEM: &str = "Arq S3";

/// The label (and service) of arq-lockdown's own item: the Mac's enrollment key.
pub const ENROLLMENT_KEY_ITEM: &str = "arq-lockdown enrollment key";

/// An AWS access key as Arq stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    pub secret: Secret,
}

/// Reads and updates the "Arq S3" item.
///
/// On a Mac, reading the item's *secret* from any program but Arq shows the user a dialog, and
/// each write costs the user one keychain-password dialog when Arq next reads it: callers read
/// the account alone wherever the secret is not used, never read the secret after writing, and
/// write once per lockdown.
pub trait CredentialStore {
    /// Where the item lives, for messages (never includes the secret).
    fn describe(&self) -> String;
    /// The access key id Arq uses now: the item's account attribute alone (no dialog).
    fn account(&self) -> Result<String, StoreError>;
    /// The key Arq uses now, secret included (on a Mac, a dialog: the user's "Deny" is
    /// [`StoreError::DeniedByUser`]).
    fn read(&self) -> Result<AccessKey, StoreError>;
    /// Replaces account and secret of the existing item, in place.
    fn update(&self, key: &AccessKey) -> Result<(), StoreError>;
    /// arq-lockdown's enrollment key, if one was made (our own item: reading it shows no dialog).
    fn enrollment_key(&self) -> Result<Option<Secret>, StoreError>;
    /// Keeps `key` as the enrollment key, adding our item when there is none.
    fn save_enrollment_key(&self, key: &Secret) -> Result<(), StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unknown credential store {0:?}: use keychain or file:PATH")]
    UnknownKind(String),
    #[error("the Keychain exists only on macOS: pass --credential-store file:PATH")]
    KeychainUnavailable,
    #[error(
        "the login Keychain has {count} \"{ARQ_S3_ITEM}\" items and Arq uses whichever it finds first: delete all but one in Keychain Access"
    )]
    DuplicateItems { count: usize },
    #[error(
        "the login Keychain refused ({code}: {message}); run inside the user's login session (launchctl asuser) and unlock the Keychain"
    )]
    Keychain { code: i32, message: String },
    #[error(
        "credential store {path} does not exist: create it with an \"{ARQ_S3_ITEM}\" item, or check --credential-store"
    )]
    Missing { path: PathBuf },
    #[error("cannot use credential store {path}: {reason}; check the path and its permissions")]
    Io { path: PathBuf, reason: String },
    #[error(
        "credential store {path} is not valid JSON of the form {{\"{ARQ_S3_ITEM}\": {{\"account\": …, \"password\": …}}}} ({reason})"
    )]
    Malformed { path: PathBuf, reason: String },
    #[error(
        "the user denied arq-lockdown the secret of \"{ARQ_S3_ITEM}\" in the Keychain dialog ({store}): the agent asks again in a few hours, or deploy with the service and an enrollment token, which reads no secret"
    )]
    DeniedByUser { store: String },
    #[error("{store} has no \"{ARQ_S3_ITEM}\" item: set Arq up with its S3 keys first")]
    NoItem { store: String },
    #[error(
        "the \"{ARQ_S3_ITEM}\" item in {store} is unusable: {reason}; re-enter Arq's S3 keys in Arq"
    )]
    BadItem { store: String, reason: &'static str },
}

impl StoreError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::Credentials
    }
}

/// Which store to use, as given by `--credential-store`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    /// `keychain`: the user's login Keychain (macOS).
    Keychain,
    /// `file:PATH`: the JSON stand-in for the Keychain.
    File(PathBuf),
}

impl std::str::FromStr for StoreLocation {
    type Err = StoreError;

    fn from_str(value: &str) -> Result<Self, StoreError> {
        match value.split_once(':') {
            None if value == "keychain" => Ok(Self::Keychain),
            Some(("file", path)) if !path.is_empty() => Ok(Self::File(PathBuf::from(path))),
            _ => Err(StoreError::UnknownKind(value.to_owned())),
        }
    }
}

impl StoreLocation {
    pub fn open(&self) -> Result<Box<dyn CredentialStore>, StoreError> {
        match self {
            #[cfg(target_os = "macos")]
            Self::Keychain => Ok(Box::new(keychain::KeychainStore)),
            #[cfg(not(target_os = "macos"))]
            Self::Keychain => Err(StoreError::KeychainUnavailable),
            Self::File(path) => Ok(Box::new(FileStore::new(path.clone()))),
        }
    }
}

/// Checks an item's account before it is used for anything: an access key id is 16–128
/// upper-case letters and digits.
pub(crate) fn check_account(store: &str, id: &str) -> Result<(), StoreError> {
    if !(16..=128).contains(&id.len())
        || !id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(StoreError::BadItem {
            store: store.to_owned(),
            reason: "its account is not an AWS access key id",
        });
    }
    Ok(())
}

/// Checks an item's values before they are used: the account ([`check_account`]), and a secret
/// that is non-empty printable ASCII without spaces.
pub(crate) fn check_item(store: &str, id: &str, secret: &str) -> Result<(), StoreError> {
    check_account(store, id)?;
    if secret.is_empty() || !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(StoreError::BadItem {
            store: store.to_owned(),
            reason: "its password is not an AWS secret access key",
        });
    }
    Ok(())
}

/// The key in "Arq S3" as a run meets it: the id at once (no dialog), the secret only when the
/// run needs it — to sign with it or to verify it — and then read once.
pub struct ArqS3<'a> {
    store: &'a dyn CredentialStore,
    pub id: String,
    key: std::sync::OnceLock<AccessKey>,
}

impl<'a> ArqS3<'a> {
    /// Reads the account of "Arq S3" in `store`.
    pub fn open(store: &'a dyn CredentialStore) -> Result<Self, StoreError> {
        Ok(Self {
            id: store.account()?,
            store,
            key: std::sync::OnceLock::new(),
        })
    }

    /// The key with its secret, read from the store the first time only.
    pub fn key(&self) -> Result<&AccessKey, StoreError> {
        if let Some(key) = self.key.get() {
            return Ok(key);
        }
        let key = self.store.read()?;
        if key.id != self.id {
            return Err(StoreError::BadItem {
                store: self.store.describe(),
                reason: "it changed while arq-lockdown was running",
            });
        }
        Ok(self.key.get_or_init(|| key))
    }

    /// Whether the secret was read.
    pub fn secret_was_read(&self) -> bool {
        self.key.get().is_some()
    }
}
