//! Sealing a key's secret to the Mac that asked for it: the Mac puts a one-time X25519 public key
//! (the reply key) in its signed request, and the service seals the secret to it — a libsodium
//! sealed box (`crypto_box`'s `seal`: an ephemeral X25519 key, XSalsa20-Poly1305). Only the holder
//! of the reply key's private half, kept in the Mac's memory for this one request, can open it.

use crypto_box::aead::OsRng;
use crypto_box::{PublicKey, SecretKey};

use super::{base64_decode, base64_encode};
use crate::secret::Secret;

/// The private half of a reply key; dropped (and wiped by `crypto_box`) when the answer is open.
pub struct ReplyKey(SecretKey);

impl ReplyKey {
    pub fn generate() -> Self {
        Self(SecretKey::generate(&mut OsRng))
    }

    /// The public half, for the request (base64).
    pub fn public(&self) -> String {
        base64_encode(self.0.public_key().as_bytes())
    }

    /// Opens a sealed secret; `None` when it was not sealed to this key or is not text.
    pub fn open(&self, sealed: &str) -> Option<Secret> {
        let bytes = self.0.unseal(&base64_decode(sealed)?).ok()?;
        String::from_utf8(bytes).ok().map(Secret::new)
    }
}

/// Seals `secret` to the reply key `public` (base64); `None` when `public` is not a key.
pub fn seal(public: &str, secret: &Secret) -> Option<String> {
    let bytes: [u8; 32] = base64_decode(public)?.try_into().ok()?;
    let sealed = PublicKey::from(bytes)
        .seal(&mut OsRng, secret.expose().as_bytes())
        .ok()?;
    Some(base64_encode(&sealed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_reply_key_opens_what_is_sealed_to_it() {
        let key = ReplyKey::generate();
        let secret = Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into());
        let sealed = seal(&key.public(), &secret).unwrap();
        assert!(!sealed.contains("wJalrXUtnFEMI"));
        assert_eq!(key.open(&sealed), Some(secret));
        assert_eq!(ReplyKey::generate().open(&sealed), None);
        assert_eq!(key.open("junk"), None);
        assert_eq!(seal("junk", &Secret::new("x".into())), None);
    }
}
