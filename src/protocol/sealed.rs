//! Sealing a key's secret to the Mac that asked for it: the Mac puts a one-time X25519 public key
//! (the reply key) in its signed request, and the service seals the secret to it — a libsodium
//! sealed box (`crypto_box`'s `seal`: an ephemeral X25519 key, XSalsa20-Poly1305). Only the holder
//! of the reply key's private half, kept in the Mac's memory for this one request, can open it —
//! unless the reply key is of small order: then the shared secret is all zeros whatever the
//! ephemeral key, and anyone can open the box. Such keys are refused ([`is_reply_key`]), as
//! libsodium's own `crypto_scalarmult` refuses them.

use crypto_box::aead::OsRng;
use crypto_box::{PublicKey, SecretKey};
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::Scalar;

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

/// Whether `public` (base64) is an X25519 key a secret may be sealed to: 32 bytes whose point,
/// on the curve or its twist, is not of small order. X25519 clamps every secret scalar to a
/// multiple of 8, so the shared secret with a key is zero exactly when 8 times the key is the
/// identity (u = 0) — which is what is checked, for every encoding of every such point.
pub fn is_reply_key(public: &str) -> bool {
    base64_decode(public)
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .is_some_and(|bytes| MontgomeryPoint(bytes) * Scalar::from(8u8) != MontgomeryPoint([0; 32]))
}

/// Seals `secret` to the reply key `public` (base64); `None` when `public` is not a key one may
/// seal to ([`is_reply_key`]).
pub fn seal(public: &str, secret: &Secret) -> Option<String> {
    if !is_reply_key(public) {
        return None;
    }
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
        assert!(is_reply_key(&key.public()));
    }

    /// libsodium's list of X25519 public keys of small order and their other encodings
    /// (`crypto_scalarmult/curve25519/ref10/x25519_ref10.c`, `has_small_order`), and the
    /// eight-torsion points of Ed25519 as X25519 keys.
    #[test]
    #[rustfmt::skip]
    fn reply_keys_of_small_order_are_refused() {
        let mut p_minus_1 = [0xffu8; 32];
        p_minus_1[0] = 0xec;
        p_minus_1[31] = 0x7f;
        let (mut p, mut p_plus_1) = (p_minus_1, p_minus_1);
        p[0] = 0xed;
        p_plus_1[0] = 0xee;
        let mut one = [0u8; 32];
        one[0] = 1;
        let weak: Vec<[u8; 32]> = vec![
            [0u8; 32],
            one,
            [0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00],
            [0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef, 0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57],
            p_minus_1,
            p,
            p_plus_1,
        ];
        let torsion = curve25519_dalek::constants::EIGHT_TORSION.map(|point| point.to_montgomery().0);
        for key in weak.into_iter().chain(torsion) {
            let public = base64_encode(&key);
            assert!(!is_reply_key(&public), "{public}");
            assert_eq!(seal(&public, &Secret::new("x".into())), None, "{public}");
        }
        assert!(!is_reply_key(&base64_encode(&[9u8; 31])));
    }
}
