//! The file-backed stand-in for the Keychain: `{"Arq S3": {"account": …, "password": …}}`, and
//! arq-lockdown's own `"arq-lockdown enrollment key"` item beside it.
//!
//! Used on Linux, in tests and in the demo. Written atomically (temporary file, fsync, rename) with
//! mode 0600; other items in the file are kept. Parsed secrets are wiped once copied out.
//!
//! It models the Keychain's dialogs: every secret read and every write is logged beside the store
//! (a dialog each on a Mac), and an item with `"deny-read": true` stands for a user who answers
//! "Deny" to the dialog: its secret reads fail as the Keychain's do, and are logged as such.

use std::io::Write;
use std::path::PathBuf;

use serde_json::{Map, Value};
use zeroize::Zeroize;

use super::{
    ARQ_S3_ITEM, AccessKey, CredentialStore, ENROLLMENT_KEY_ITEM, StoreError, check_account,
    check_item,
};
use crate::fs::{ReadError, read_small_file, write_atomically};
use crate::secret::Secret;

/// The access log's name: the store's, plus this.
pub const ACCESS_LOG_SUFFIX: &str = ".access-log";

/// The item field that makes every secret read fail as a user's "Deny" does.
const DENY_READ_FIELD: &str = "deny-read";

/// A keychain file is a few hundred bytes.
const MAX_STORE_BYTES: u64 = 64 * 1024;

pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    fn io_error(&self, error: std::io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            reason: error.to_string(),
        }
    }

    /// Appends `what` ("read-secret", "denied-secret", "write") to the access log beside the
    /// store: on a Mac each secret read of "Arq S3" would be a dialog (answered "Deny" for
    /// "denied-secret"), and each write one keychain-password dialog when Arq next reads it, so the
    /// tests count them here.
    fn record_access(&self, what: &str) {
        let mut log = self.path.clone().into_os_string();
        log.push(ACCESS_LOG_SUFFIX);
        let log = PathBuf::from(log);
        let (Some(folder), Some(name)) = (log.parent(), log.file_name().and_then(|n| n.to_str()))
        else {
            return;
        };
        let folder = if folder.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            folder
        };
        if let Ok(mut file) = crate::fs::Dir::open(folder)
            .map_err(std::io::Error::from)
            .and_then(|dir| dir.append(name, 0o600))
        {
            let _ = writeln!(file, "{what} {ARQ_S3_ITEM}");
        }
    }

    /// Writes `map` back (atomically, 0600) and wipes the copies of its secrets.
    fn save(&self, map: Map<String, Value>) -> Result<(), StoreError> {
        let mut document = Value::Object(map);
        let mut contents =
            serde_json::to_string_pretty(&document).expect("a JSON object always serializes");
        wipe_strings(&mut document);
        let written = write_atomically(&self.path, contents.as_bytes(), 0o600);
        contents.zeroize();
        written.map_err(|e| self.io_error(e))
    }

    /// The whole file as a JSON object (secrets inside are wiped by [`wipe_strings`]).
    fn load(&self) -> Result<Map<String, Value>, StoreError> {
        let bytes = read_small_file(&self.path, MAX_STORE_BYTES).map_err(|e| match e {
            ReadError::NotFound => StoreError::Missing {
                path: self.path.clone(),
            },
            ReadError::NotAFile => StoreError::Io {
                path: self.path.clone(),
                reason: "not a regular file".into(),
            },
            ReadError::TooLarge => StoreError::Malformed {
                path: self.path.clone(),
                reason: "file too large".into(),
            },
            ReadError::Refused(refusal) => StoreError::Io {
                path: self.path.clone(),
                reason: refusal.to_string(),
            },
            ReadError::Io(e) => self.io_error(e),
        })?;
        let mut text = String::from_utf8(bytes).map_err(|e| {
            let mut bytes = e.into_bytes();
            bytes.zeroize();
            StoreError::Malformed {
                path: self.path.clone(),
                reason: "not UTF-8 text".into(),
            }
        })?;
        let parsed = serde_json::from_str::<Value>(&text);
        text.zeroize();
        match parsed {
            Ok(Value::Object(map)) => Ok(map),
            Ok(mut other) => {
                wipe_strings(&mut other);
                Err(StoreError::Malformed {
                    path: self.path.clone(),
                    reason: "top level is not an object".into(),
                })
            }
            // serde_json's messages give a position, never the text around it.
            Err(e) => Err(StoreError::Malformed {
                path: self.path.clone(),
                reason: e.to_string(),
            }),
        }
    }
}

impl CredentialStore for FileStore {
    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn account(&self) -> Result<String, StoreError> {
        let mut map = self.load()?;
        let store = self.describe();
        let account = match map.get(ARQ_S3_ITEM) {
            None => Err(StoreError::NoItem { store }),
            Some(item) => match (item.get("account"), item.get("password")) {
                (Some(Value::String(id)), Some(Value::String(_))) => {
                    check_account(&store, id).map(|()| id.clone())
                }
                _ => Err(StoreError::BadItem {
                    store,
                    reason: "it needs string fields account and password",
                }),
            },
        };
        map.values_mut().for_each(wipe_strings);
        account
    }

    fn read(&self) -> Result<AccessKey, StoreError> {
        let mut map = self.load()?;
        let store = self.describe();
        let key = match map.get(ARQ_S3_ITEM) {
            None => Err(StoreError::NoItem { store }),
            Some(item) if item.get(DENY_READ_FIELD) == Some(&Value::Bool(true)) => {
                self.record_access("denied-secret");
                Err(StoreError::DeniedByUser { store })
            }
            Some(item) => match (item.get("account"), item.get("password")) {
                (Some(Value::String(id)), Some(Value::String(secret))) => {
                    self.record_access("read-secret");
                    check_item(&store, id, secret).map(|()| AccessKey {
                        id: id.clone(),
                        secret: Secret::new(secret.clone()),
                    })
                }
                _ => Err(StoreError::BadItem {
                    store,
                    reason: "it needs string fields account and password",
                }),
            },
        };
        map.values_mut().for_each(wipe_strings);
        key
    }

    fn update(&self, key: &AccessKey) -> Result<(), StoreError> {
        let mut map = self.load()?;
        if !map.contains_key(ARQ_S3_ITEM) {
            map.values_mut().for_each(wipe_strings);
            return Err(StoreError::NoItem {
                store: self.describe(),
            });
        }
        map.insert(
            ARQ_S3_ITEM.to_owned(),
            serde_json::json!({"account": key.id, "password": key.secret.expose()}),
        );
        self.record_access("write");
        self.save(map)
    }

    fn enrollment_key(&self) -> Result<Option<Secret>, StoreError> {
        let mut map = self.load()?;
        let key = match map.get(ENROLLMENT_KEY_ITEM) {
            None => Ok(None),
            Some(item) => match item.get("password") {
                Some(Value::String(key)) => Ok(Some(Secret::new(key.clone()))),
                _ => Err(StoreError::BadItem {
                    store: self.describe(),
                    reason: "the enrollment key item needs a string password",
                }),
            },
        };
        map.values_mut().for_each(wipe_strings);
        key
    }

    fn save_enrollment_key(&self, key: &Secret) -> Result<(), StoreError> {
        let mut map = self.load()?;
        map.insert(
            ENROLLMENT_KEY_ITEM.to_owned(),
            serde_json::json!({"account": "enrollment-key", "password": key.expose()}),
        );
        self.save(map)
    }
}

/// Zeroes every string inside `value`, where parsed secrets end up.
fn wipe_strings(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(wipe_strings),
        Value::Object(map) => map.values_mut().for_each(wipe_strings),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn store_with(contents: &str) -> (tempfile::TempDir, FileStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keychain.json");
        fs::write(&path, contents).unwrap();
        (dir, FileStore::new(path))
    }

    #[test]
    fn reads_the_item() {
        let (_dir, store) = store_with(&format!(
            r#"{{"Arq S3": {{"account": "{KEY_ID}", "password": "{SECRET}"}}}}"#
        ));
        let key = store.read().unwrap();
        assert_eq!(key.id, KEY_ID);
        assert_eq!(key.secret.expose(), SECRET);
    }

    #[test]
    fn update_replaces_both_fields_keeps_other_items_and_is_private() {
        let (_dir, store) = store_with(&format!(
            r#"{{"Arq S3": {{"account": "{KEY_ID}", "password": "{SECRET}"}}, "Arq Encryption:b:u": {{"account": "EncryptionKey", "password": "x"}}}}"#
        ));
        let new = AccessKey {
            id: "AKIAI44QH8DHBEXAMPLE".into(),
            secret: Secret::new("je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY".into()),
        };
        store.update(&new).unwrap();
        assert_eq!(store.read().unwrap(), new);
        let text = fs::read_to_string(&store.path).unwrap();
        assert!(text.contains("Arq Encryption:b:u") && !text.contains(SECRET));
        assert_eq!(
            fs::metadata(&store.path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let mut left: Vec<String> = fs::read_dir(store.path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["keychain.json", "keychain.json.access-log"],
            "temporary file left behind"
        );
        let log = fs::read_to_string(store.path.with_extension("json.access-log")).unwrap();
        assert_eq!(log, "write Arq S3\nread-secret Arq S3\n", "the access log");
    }

    #[test]
    fn a_denied_read_fails_as_the_keychains_does_and_is_logged() {
        let (_dir, store) = store_with(&format!(
            r#"{{"Arq S3": {{"account": "{KEY_ID}", "password": "{SECRET}", "deny-read": true}}}}"#
        ));
        assert_eq!(
            store.account().unwrap(),
            KEY_ID,
            "the account needs no dialog"
        );
        let error = store.read().unwrap_err();
        assert!(
            matches!(error, StoreError::DeniedByUser { .. }),
            "{error:?}"
        );
        assert!(!error.to_string().contains(SECRET), "{error}");
        let log = fs::read_to_string(store.path.with_extension("json.access-log")).unwrap();
        assert_eq!(log, "denied-secret Arq S3\n");
    }

    #[test]
    fn update_refuses_to_create_a_missing_item() {
        let (_dir, store) = store_with("{}");
        let key = AccessKey {
            id: KEY_ID.into(),
            secret: Secret::new(SECRET.into()),
        };
        assert!(matches!(store.update(&key), Err(StoreError::NoItem { .. })));
        assert_eq!(fs::read_to_string(&store.path).unwrap(), "{}");
    }

    #[test]
    fn errors_never_quote_the_secret() {
        // A well-formed file whose account is not a key id: refused by the item check.
        let (_dir, store) = store_with(&format!(
            r#"{{"Arq S3": {{"account": "not a key", "password": "{SECRET}"}}}}"#
        ));
        let error = store.read().unwrap_err();
        assert!(matches!(error, StoreError::BadItem { .. }), "{error:?}");
        assert!(!error.to_string().contains(SECRET), "{error}");
        // A secret that is not a secret key (a newline inside): refused, and not quoted either.
        let broken = format!("{}\\n{}", &SECRET[..20], &SECRET[20..]);
        let (_dir, store) = store_with(&format!(
            r#"{{"Arq S3": {{"account": "{KEY_ID}", "password": "{broken}"}}}}"#
        ));
        let error = store.read().unwrap_err();
        assert!(matches!(error, StoreError::BadItem { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            !message.contains(&SECRET[..20]) && !message.contains(&SECRET[20..]),
            "{message}"
        );
        // A truncated file: refused as malformed, quoting nothing from inside it.
        let (_dir, store) = store_with(&format!(
            r#"{{"Arq S3": {{"account": "{KEY_ID}", "password": "{SECRET}"}}"#
        ));
        let error = store.read().unwrap_err();
        assert!(matches!(error, StoreError::Malformed { .. }), "{error:?}");
        assert!(!error.to_string().contains(SECRET), "{error}");
    }
}
