//! The Mac's enrollment key: an Ed25519 key pair the Mac makes before its first enrollment and
//! keeps in its credential store. The service binds a computer UUID to the public half (an IAM
//! tag) at first enrollment; enrolling that UUID again, or retiring its keys without one of them,
//! needs a signature by the private half. The serial number, printed on the case, proves nothing;
//! and unlike a shared secret, nothing that crosses the wire lets anyone sign.
//!
//! A public key of small order (the identity point, say) proves nothing either: with R = the
//! identity and S = 0 its "signature" verifies for every message, and ring accepts it. Such keys
//! are refused wherever a key is taken or a signature checked ([`is_public_key`]).

use curve25519_dalek::edwards::CompressedEdwardsY;
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use super::{base64_decode, base64_encode};
use crate::secret::Secret;

/// What a signature covers: the protocol, the service it is for, and the request's [`binding`].
///
/// [`binding`]: super::binding
fn message(server_id: &str, binding: &str) -> String {
    format!("arq-lockdown/v1\n{server_id}\n{binding}")
}

/// The private half, as stored (base64 PKCS#8), and the key pair it opens to.
pub struct EnrollmentKey {
    stored: Secret,
    pair: Ed25519KeyPair,
}

impl EnrollmentKey {
    /// A new random key.
    pub fn generate() -> Self {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .expect("the system's random number generator works");
        Self::from_stored(Secret::new(base64_encode(document.as_ref())))
            .expect("a freshly made key parses")
    }

    /// The key as [`EnrollmentKey::stored`] gave it; `None` when it is not one.
    pub fn from_stored(stored: Secret) -> Option<Self> {
        let document = zeroize::Zeroizing::new(base64_decode(stored.expose())?);
        let pair = Ed25519KeyPair::from_pkcs8(&document).ok()?;
        Some(Self { stored, pair })
    }

    /// The private key as it is kept in the credential store.
    pub fn stored(&self) -> &Secret {
        &self.stored
    }

    /// The public half (base64), as it travels and as the service binds it.
    pub fn public(&self) -> String {
        base64_encode(self.pair.public_key().as_ref())
    }

    /// Signs a request for the service `server_id` (base64 signature).
    pub fn sign(&self, server_id: &str, binding: &str) -> String {
        base64_encode(
            self.pair
                .sign(message(server_id, binding).as_bytes())
                .as_ref(),
        )
    }
}

/// The fingerprint of an enrollment public key (base64), as a Mac reports it to the MDM's
/// inventory and an admin pins it: `SHA256:` and the unpadded base64 of the key's SHA-256, the
/// form OpenSSH shows keys in. `None` when `public` is not a 32-byte key.
pub fn fingerprint(public: &str) -> Option<String> {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let bytes = base64_decode(public).filter(|b| b.len() == 32)?;
    let digest = Sha256::digest(&bytes);
    Some(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    ))
}

/// Whether `public` (base64) is an Ed25519 public key whose signatures prove anything: 32 bytes
/// that decode to a point of the curve outside its small-order subgroup (RFC 8032 §5.1.3 for the
/// decoding; the eight small-order points are curve25519-dalek's `EIGHT_TORSION`).
pub fn is_public_key(public: &str) -> bool {
    base64_decode(public)
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .and_then(|bytes| CompressedEdwardsY(bytes).decompress())
        .is_some_and(|point| !point.is_small_order())
}

/// Whether `signature` is `public`'s signature over a request for `server_id`; never for a key of
/// small order.
pub fn verify(public: &str, server_id: &str, binding: &str, signature: &str) -> bool {
    if !is_public_key(public) {
        return false;
    }
    let (Some(public), Some(signature)) = (base64_decode(public), base64_decode(signature)) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, public)
        .verify(message(server_id, binding).as_bytes(), &signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_only_for_its_key_service_and_request() {
        let key = EnrollmentKey::generate();
        let other = EnrollmentKey::generate();
        let signature = key.sign("arq.example.com", "/v1/enroll:sha256=00");
        assert!(verify(
            &key.public(),
            "arq.example.com",
            "/v1/enroll:sha256=00",
            &signature
        ));
        assert!(!verify(
            &other.public(),
            "arq.example.com",
            "/v1/enroll:sha256=00",
            &signature
        ));
        assert!(!verify(
            &key.public(),
            "other.example.com",
            "/v1/enroll:sha256=00",
            &signature
        ));
        assert!(!verify(
            &key.public(),
            "arq.example.com",
            "/v1/enroll:sha256=01",
            &signature
        ));
        assert!(!verify(
            &key.public(),
            "arq.example.com",
            "/v1/retire:sha256=00",
            &signature
        ));
        assert!(!verify(
            "junk",
            "arq.example.com",
            "/v1/enroll:sha256=00",
            &signature
        ));
        assert!(is_public_key(&key.public()));
    }

    #[test]
    fn keys_of_small_order_are_no_keys_and_their_forged_signatures_never_verify() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        // R = the identity, S = 0: what "signs" every message for the identity key.
        let mut forged = [0u8; 64];
        forged[0] = 1;
        let forged = base64_encode(&forged);
        for point in EIGHT_TORSION {
            let public = base64_encode(point.compress().as_bytes());
            assert!(!is_public_key(&public), "{public}");
            assert!(!verify(
                &public,
                "arq.example.com",
                "/v1/enroll:sha256=00",
                &forged
            ));
        }
        // The identity encoded non-canonically (y = p + 1) is the identity too.
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xee;
        non_canonical[31] = 0x7f;
        assert!(!is_public_key(&base64_encode(&non_canonical)));
        // Not a point at all (y = 2 has no x on the curve), and not 32 bytes.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert!(!is_public_key(&base64_encode(&off_curve)));
        assert!(!is_public_key(&base64_encode(&[9u8; 31])));
        assert!(!is_public_key("not base64"));
    }

    #[test]
    fn a_fingerprint_is_the_sha256_of_the_public_key_in_openssh_form() {
        // The all-zero key (its SHA-256, 66687aad…f925, checked with Python's hashlib).
        let zero = base64_encode(&[0u8; 32]);
        assert_eq!(
            fingerprint(&zero).unwrap(),
            "SHA256:Zmh6rfhivXdsj8GLjp+OIAiXFIVu4jOzkCpZHQ1fKSU"
        );
        let key = EnrollmentKey::generate();
        let print = fingerprint(&key.public()).unwrap();
        assert_eq!(print.len(), "SHA256:".len() + 43);
        assert_ne!(
            print,
            fingerprint(&EnrollmentKey::generate().public()).unwrap()
        );
        assert_eq!(fingerprint(&base64_encode(b"short")), None);
        assert_eq!(fingerprint("not base64"), None);
    }

    #[test]
    fn a_stored_key_opens_to_the_same_key_and_junk_to_none() {
        let key = EnrollmentKey::generate();
        let again = EnrollmentKey::from_stored(key.stored().clone()).unwrap();
        assert_eq!(again.public(), key.public());
        assert!(EnrollmentKey::from_stored(Secret::new("not a key".into())).is_none());
        assert!(EnrollmentKey::from_stored(Secret::new(base64_encode(b"short"))).is_none());
    }
}
