//! macOS only: the "Arq S3" generic password in the user's login Keychain.
//!
//! Arq looks the item up by label and takes the first match, and trusts Arq.app and Arq Agent in
//! the item's access list. So this store never creates or deletes an item: it finds the one
//! "Arq S3", refuses to guess when there are several, and changes account and data in place with
//! one `SecItemUpdate`, which keeps the access list. It must run inside the user's GUI session
//! (errSecInteractionNotAllowed otherwise).
//!
//! The enrollment key is an item of arq-lockdown's own (service and label "arq-lockdown
//! enrollment key"), created by this binary, so its access list trusts this binary: reading it
//! shows no dialog (an unsigned build asks once more after each upgrade).

use core_foundation::data::CFData;
use security_framework::item::{
    ItemClass, ItemSearchOptions, ItemUpdateOptions, ItemUpdateValue, Limit, SearchResult,
    update_item,
};
use security_framework::os::macos::keychain::SecKeychain;

use super::{
    ARQ_S3_ITEM, AccessKey, CredentialStore, ENROLLMENT_KEY_ITEM, StoreError, check_account,
    check_item,
};
use crate::secret::Secret;

/// The account of the enrollment key item.
const ENROLLMENT_ACCOUNT: &str = "enrollment-key";

/// `errSecUserCanceled` (SecBase.h): the user dismissed the Keychain's dialog. Apple's headers have
/// it; security-framework-sys does not.
const ERR_SEC_USER_CANCELED: i32 = -128;

/// Whether a failed secret read is the user's answer to the dialog rather than a fault: "Deny"
/// or Escape (`errSecUserCanceled`, as keybase/go-keychain#91 observed), or the authorization that
/// the dialog stands for refused (`errSecAuthFailed`; hrantzsch/keychain#9 maps both to "access
/// denied" too).
fn denied_by_the_user(code: i32) -> bool {
    code == ERR_SEC_USER_CANCELED || code == security_framework_sys::base::errSecAuthFailed
}

pub struct KeychainStore;

impl KeychainStore {
    /// The user's login keychain (the default keychain of the user's session) — never the whole
    /// search list, which holds the System keychain too.
    fn login_keychain(&self) -> Result<SecKeychain, StoreError> {
        SecKeychain::default().map_err(|e| self.keychain_error(e))
    }

    /// "Arq S3" in the login keychain.
    fn search(&self) -> Result<ItemSearchOptions, StoreError> {
        let mut search = ItemSearchOptions::new();
        search
            .class(ItemClass::generic_password())
            .label(ARQ_S3_ITEM)
            .keychains(&[self.login_keychain()?]);
        Ok(search)
    }

    fn keychain_error(&self, error: security_framework::base::Error) -> StoreError {
        StoreError::Keychain {
            code: error.code(),
            message: error.to_string(),
        }
    }
}

impl CredentialStore for KeychainStore {
    fn describe(&self) -> String {
        "the login Keychain".to_owned()
    }

    /// The account of the one "Arq S3" item, read as an attribute (no data: no dialog); an error
    /// when there is none or more than one.
    fn account(&self) -> Result<String, StoreError> {
        let found = match self
            .search()?
            .load_attributes(true)
            .limit(Limit::All)
            .search()
        {
            Ok(found) => found,
            Err(e) if e.code() == security_framework_sys::base::errSecItemNotFound => {
                return Err(StoreError::NoItem {
                    store: self.describe(),
                });
            }
            Err(e) => return Err(self.keychain_error(e)),
        };
        let account = match found.as_slice() {
            [one] => one
                .simplify_dict()
                .and_then(|attributes| attributes.get("acct").cloned())
                .ok_or(StoreError::BadItem {
                    store: self.describe(),
                    reason: "it has no account",
                })?,
            [] => {
                return Err(StoreError::NoItem {
                    store: self.describe(),
                });
            }
            _ => return Err(StoreError::DuplicateItems { count: found.len() }),
        };
        check_account(&self.describe(), &account)?;
        Ok(account)
    }

    /// The secret too: Arq's item trusts only Arq and Arq Agent, so this shows the user a dialog.
    fn read(&self) -> Result<AccessKey, StoreError> {
        let id = self.account()?;
        let data =
            self.search()?.load_data(true).limit(1).search().map_err(
                |e| match denied_by_the_user(e.code()) {
                    true => StoreError::DeniedByUser {
                        store: self.describe(),
                    },
                    false => self.keychain_error(e),
                },
            )?;
        let Some(SearchResult::Data(bytes)) = data.into_iter().next() else {
            return Err(StoreError::BadItem {
                store: self.describe(),
                reason: "it has no password",
            });
        };
        let secret = Secret::new(String::from_utf8(bytes).map_err(|e| {
            let mut bytes = e.into_bytes();
            zeroize::Zeroize::zeroize(&mut bytes);
            StoreError::BadItem {
                store: self.describe(),
                reason: "its password is not text",
            }
        })?);
        check_item(&self.describe(), &id, secret.expose())?;
        Ok(AccessKey { id, secret })
    }

    /// Account and data of the one item, in place with one `SecItemUpdate`: the access list is
    /// kept; the partition list becomes this binary's, so Arq asks for the keychain password once.
    fn update(&self, key: &AccessKey) -> Result<(), StoreError> {
        self.account()?;
        let mut update = ItemUpdateOptions::new();
        update
            .set_account_name(&key.id)
            .set_value(ItemUpdateValue::Data(CFData::from_buffer(
                key.secret.expose().as_bytes(),
            )));
        update_item(&self.search()?, &update).map_err(|e| self.keychain_error(e))
    }

    fn enrollment_key(&self) -> Result<Option<Secret>, StoreError> {
        match self
            .login_keychain()?
            .find_generic_password(ENROLLMENT_KEY_ITEM, ENROLLMENT_ACCOUNT)
        {
            Ok((password, _item)) => String::from_utf8(password.to_owned())
                .map(|key| Some(Secret::new(key)))
                .map_err(|e| {
                    let mut bytes = e.into_bytes();
                    zeroize::Zeroize::zeroize(&mut bytes);
                    StoreError::BadItem {
                        store: self.describe(),
                        reason: "the enrollment key item is not text",
                    }
                }),
            Err(e) if e.code() == security_framework_sys::base::errSecItemNotFound => Ok(None),
            Err(e) => Err(self.keychain_error(e)),
        }
    }

    fn save_enrollment_key(&self, key: &Secret) -> Result<(), StoreError> {
        self.login_keychain()?
            .set_generic_password(
                ENROLLMENT_KEY_ITEM,
                ENROLLMENT_ACCOUNT,
                key.expose().as_bytes(),
            )
            .map_err(|e| self.keychain_error(e))
    }
}

#[cfg(test)]
mod tests {
    //! Runs on a Mac only, against a scratch "Arq S3" item in the login Keychain: `cargo test
    //! keychain -- --ignored` (it changes the Keychain, so it is never run by default).

    use security_framework::passwords::{delete_generic_password, set_generic_password};

    use super::*;

    #[test]
    #[ignore = "changes the login Keychain; run by hand on a Mac"]
    fn update_changes_account_and_secret_of_the_one_item() {
        set_generic_password(
            ARQ_S3_ITEM,
            "AKIAIOSFODNN7EXAMPLE",
            b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
        .unwrap();
        let store = KeychainStore;
        assert_eq!(store.account().unwrap(), "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(store.read().unwrap().id, "AKIAIOSFODNN7EXAMPLE");
        let new = AccessKey {
            id: "AKIAI44QH8DHBEXAMPLE".into(),
            secret: Secret::new("je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY".into()),
        };
        store.update(&new).unwrap();
        assert_eq!(store.account().unwrap(), new.id);
        delete_generic_password(ARQ_S3_ITEM, &new.id).unwrap();
    }
}
