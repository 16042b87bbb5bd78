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

use super::{ARQ_S3_ITEM, AccessKey, CredentialStore, ENROLLMENT_KEY_ITEM, StoreError, check_item};
use crate::secret::Secret;

pub struct KeychainStore;

impl KeychainStore {
    fn search() -> ItemSearchOptions {
        let mut search = ItemSearchOptions::new();
        search
            .class(ItemClass::generic_password())
            .label(ARQ_S3_ITEM);
        search
    }

    fn keychain_error(&self, error: security_framework::base::Error) -> StoreError {
        StoreError::Keychain {
            code: error.code(),
            message: error.to_string(),
        }
    }

    /// The account of the one "Arq S3" item; an error when there is none or more than one.
    fn account(&self) -> Result<String, StoreError> {
        let found = match Self::search()
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
        match found.as_slice() {
            [one] => one
                .simplify_dict()
                .and_then(|attributes| attributes.get("acct").cloned())
                .ok_or(StoreError::BadItem {
                    store: self.describe(),
                    reason: "it has no account",
                }),
            [] => Err(StoreError::NoItem {
                store: self.describe(),
            }),
            _ => Err(StoreError::DuplicateItems { count: found.len() }),
        }
    }
}

impl CredentialStore for KeychainStore {
    fn describe(&self) -> String {
        "the login Keychain".to_owned()
    }

    fn read(&self) -> Result<AccessKey, StoreError> {
        let id = self.account()?;
        let data = Self::search()
            .load_data(true)
            .limit(1)
            .search()
            .map_err(|e| self.keychain_error(e))?;
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

    fn update(&self, key: &AccessKey) -> Result<(), StoreError> {
        self.account()?;
        let mut update = ItemUpdateOptions::new();
        update
            .set_account_name(&key.id)
            .set_value(ItemUpdateValue::Data(CFData::from_buffer(
                key.secret.expose().as_bytes(),
            )));
        update_item(&Self::search(), &update).map_err(|e| self.keychain_error(e))
    }

    fn enrollment_key(&self) -> Result<Option<Secret>, StoreError> {
        use security_framework::passwords::get_generic_password;
        match get_generic_password(ENROLLMENT_KEY_ITEM, ENROLLMENT_ACCOUNT) {
            Ok(bytes) => String::from_utf8(bytes)
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
        security_framework::passwords::set_generic_password(
            ENROLLMENT_KEY_ITEM,
            ENROLLMENT_ACCOUNT,
            key.expose().as_bytes(),
        )
        .map_err(|e| self.keychain_error(e))
    }
}

/// The account of the enrollment key item.
const ENROLLMENT_ACCOUNT: &str = "enrollment-key";

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
        assert_eq!(store.read().unwrap().id, "AKIAIOSFODNN7EXAMPLE");
        let new = AccessKey {
            id: "AKIAI44QH8DHBEXAMPLE".into(),
            secret: Secret::new("je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY".into()),
        };
        store.update(&new).unwrap();
        assert_eq!(store.read().unwrap(), new);
        delete_generic_password(ARQ_S3_ITEM, &new.id).unwrap();
    }
}
