//! The identity proof a Mac sends the provisioning service instead of its keys.
//!
//! As in HashiCorp Vault's AWS IAM auth: the Mac signs, with the key in "Arq S3", an
//! `sts:GetCallerIdentity` request (POST of a fixed body to STS) and sends the *signed request*.
//! Two extra headers are inside the signature: the service's server id (a proof made for one
//! service is useless to another) and the computer UUID asked for (a proof cannot be moved to
//! another computer) — and a random nonce, so each proof can be used once. The service checks the shape, the signed-header list and the age, then
//! replays the request to its own STS endpoint — never to a host the Mac names — and STS, by
//! checking the signature, tells it whose key signed.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde::{Deserialize, Serialize};

use crate::arq_config::ComputerUuid;
use crate::credential_store::AccessKey;

/// The only request a proof may carry.
pub const STS_BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
pub const STS_CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
pub const SERVER_ID_HEADER: &str = "x-arq-lockdown-server-id";
pub const COMPUTER_HEADER: &str = "x-arq-lockdown-computer";
/// A random value per proof: two proofs made in the same second differ, so a second use of one
/// can be told from a new one.
pub const NONCE_HEADER: &str = "x-arq-lockdown-nonce";

/// Headers that must be inside the signature.
const MUST_BE_SIGNED: [&str; 6] = [
    "content-type",
    "host",
    "x-amz-date",
    SERVER_ID_HEADER,
    COMPUTER_HEADER,
    NONCE_HEADER,
];

/// Headers a proof may carry at all; anything else is refused rather than forwarded.
const ALLOWED: [&str; 8] = [
    "authorization",
    "content-type",
    "host",
    "x-amz-date",
    "x-amz-security-token",
    SERVER_ID_HEADER,
    COMPUTER_HEADER,
    NONCE_HEADER,
];

/// A signed `sts:GetCallerIdentity` request: its headers (lower-case names) and body. The method
/// (POST) and path (/) are fixed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// Why a proof was refused; the code is what the service answers with (403).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofRefusal {
    #[error("proof-malformed: the proof is not a signed GetCallerIdentity request")]
    Malformed,
    #[error("proof-header-not-allowed: the proof carries a header the service does not accept")]
    HeaderNotAllowed,
    #[error("proof-header-unsigned: a required header is not inside the signature")]
    Unsigned,
    #[error("proof-wrong-server: the proof was made for another service (server id)")]
    WrongServer,
    #[error("proof-wrong-computer: the proof was made for another computer UUID")]
    WrongComputer,
    #[error("proof-wrong-sts-host: the proof names an STS host the service does not use")]
    WrongStsHost,
    #[error("proof-expired: the proof is older than the service accepts (or from the future)")]
    Expired,
    #[error("proof-replayed: this proof was used already")]
    Replayed,
    #[error("proof-rejected: STS did not accept the proof's signature")]
    Rejected,
}

impl ProofRefusal {
    /// The machine-readable reason code (the text before the colon).
    pub fn code(self) -> &'static str {
        match self {
            Self::Malformed => "proof-malformed",
            Self::HeaderNotAllowed => "proof-header-not-allowed",
            Self::Unsigned => "proof-header-unsigned",
            Self::WrongServer => "proof-wrong-server",
            Self::WrongComputer => "proof-wrong-computer",
            Self::WrongStsHost => "proof-wrong-sts-host",
            Self::Expired => "proof-expired",
            Self::Replayed => "proof-replayed",
            Self::Rejected => "proof-rejected",
        }
    }
}

/// Signs a proof with `key` for the service `server_id` and the computer `computer`.
pub fn make(
    key: &AccessKey,
    sts_host: &str,
    server_id: &str,
    computer: &ComputerUuid,
    now: SystemTime,
) -> Proof {
    let mut headers = BTreeMap::from([
        ("content-type".to_owned(), STS_CONTENT_TYPE.to_owned()),
        ("host".to_owned(), sts_host.to_owned()),
        (SERVER_ID_HEADER.to_owned(), server_id.to_owned()),
        (COMPUTER_HEADER.to_owned(), computer.to_string()),
        (NONCE_HEADER.to_owned(), uuid::Uuid::new_v4().to_string()),
    ]);
    let identity =
        aws_credential_types::Credentials::new(&key.id, key.secret.expose(), None, None, "arq-s3")
            .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("sts")
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .expect("all signing parameters are set")
        .into();
    let url = format!("https://{sts_host}/");
    let signable = SignableRequest::new(
        "POST",
        &url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(STS_BODY.as_bytes()),
    )
    .expect("the request is well-formed");
    let (instructions, _signature) = sign(signable, &params)
        .expect("signing a well-formed request")
        .into_parts();
    for (name, value) in instructions.headers() {
        headers.insert(name.to_ascii_lowercase(), value.to_owned());
    }
    Proof {
        headers,
        body: STS_BODY.to_owned(),
    }
}

/// What a proof says about itself once its shape is checked (STS has not vouched for it yet).
#[derive(Debug, PartialEq, Eq)]
pub struct CheckedProof {
    /// The access key id that signed it.
    pub access_key_id: String,
    /// The signature, to refuse a second use.
    pub signature: String,
}

/// The service's rules for proofs.
#[derive(Clone, Debug)]
pub struct ProofRules {
    pub server_id: String,
    pub sts_host: String,
    pub max_age: Duration,
}

impl ProofRules {
    /// Checks everything about `proof` that can be checked without STS.
    pub fn check(
        &self,
        proof: &Proof,
        computer: &ComputerUuid,
        now: SystemTime,
    ) -> Result<CheckedProof, ProofRefusal> {
        if proof.body != STS_BODY {
            return Err(ProofRefusal::Malformed);
        }
        if proof
            .headers
            .keys()
            .any(|name| !ALLOWED.contains(&name.as_str()))
        {
            return Err(ProofRefusal::HeaderNotAllowed);
        }
        if MUST_BE_SIGNED
            .iter()
            .any(|name| !proof.headers.contains_key(*name))
        {
            return Err(ProofRefusal::Malformed);
        }
        let header = |name: &str| proof.headers.get(name).map(String::as_str);
        if header("content-type") != Some(STS_CONTENT_TYPE) {
            return Err(ProofRefusal::Malformed);
        }
        if header("host") != Some(self.sts_host.as_str()) {
            return Err(ProofRefusal::WrongStsHost);
        }
        if header(SERVER_ID_HEADER) != Some(self.server_id.as_str()) {
            return Err(ProofRefusal::WrongServer);
        }
        if header(COMPUTER_HEADER) != Some(computer.as_str()) {
            return Err(ProofRefusal::WrongComputer);
        }
        let authorization =
            Authorization::parse(header("authorization").ok_or(ProofRefusal::Malformed)?)?;
        if MUST_BE_SIGNED
            .iter()
            .any(|name| !authorization.signed_headers.iter().any(|h| h == name))
        {
            return Err(ProofRefusal::Unsigned);
        }
        let signed_at = header("x-amz-date")
            .and_then(parse_amz_date)
            .ok_or(ProofRefusal::Malformed)?;
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if now.abs_diff(signed_at) > self.max_age.as_secs() {
            return Err(ProofRefusal::Expired);
        }
        Ok(CheckedProof {
            access_key_id: authorization.access_key_id,
            signature: authorization.signature,
        })
    }
}

/// The parts of a SigV4 `Authorization` header the service relies on.
struct Authorization {
    access_key_id: String,
    signed_headers: Vec<String>,
    signature: String,
}

impl Authorization {
    /// `AWS4-HMAC-SHA256 Credential=AKID/20261127/us-east-1/sts/aws4_request, SignedHeaders=a;b, Signature=hex`
    fn parse(value: &str) -> Result<Self, ProofRefusal> {
        let rest = value
            .strip_prefix("AWS4-HMAC-SHA256 ")
            .ok_or(ProofRefusal::Malformed)?;
        let mut fields = BTreeMap::new();
        for part in rest.split(',') {
            let (name, value) = part.trim().split_once('=').ok_or(ProofRefusal::Malformed)?;
            if fields.insert(name, value).is_some() {
                return Err(ProofRefusal::Malformed);
            }
        }
        let credential: Vec<&str> = fields
            .get("Credential")
            .ok_or(ProofRefusal::Malformed)?
            .split('/')
            .collect();
        let [access_key_id, _date, _region, "sts", "aws4_request"] = credential.as_slice() else {
            return Err(ProofRefusal::Malformed);
        };
        let signature = fields.get("Signature").ok_or(ProofRefusal::Malformed)?;
        if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ProofRefusal::Malformed);
        }
        Ok(Self {
            access_key_id: (*access_key_id).to_owned(),
            signed_headers: fields
                .get("SignedHeaders")
                .ok_or(ProofRefusal::Malformed)?
                .split(';')
                .map(str::to_owned)
                .collect(),
            signature: (*signature).to_owned(),
        })
    }
}

/// `20261127T190000Z` as seconds since the epoch.
fn parse_amz_date(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), for years after 1970.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = (era * 146_097 + day_of_era).checked_sub(719_468)?;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn rules() -> ProofRules {
        ProofRules {
            server_id: "arq.example.com".into(),
            sts_host: "sts.amazonaws.com".into(),
            max_age: Duration::from_secs(300),
        }
    }

    fn computer() -> ComputerUuid {
        ComputerUuid::parse("32D9D7A2-3B3E-4BE7-B85B-0605AF24F570").unwrap()
    }

    fn proof(now: SystemTime) -> Proof {
        let key = AccessKey {
            id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
        };
        make(
            &key,
            "sts.amazonaws.com",
            "arq.example.com",
            &computer(),
            now,
        )
    }

    #[test]
    fn a_fresh_proof_passes_and_names_its_key() {
        let now = SystemTime::now();
        let checked = rules().check(&proof(now), &computer(), now).unwrap();
        assert_eq!(checked.access_key_id, "AKIAIOSFODNN7EXAMPLE");
        assert!(
            !proof(now)
                .headers
                .values()
                .any(|v| v.contains("wJalrXUtnFEMI")),
            "the secret is in the proof"
        );
    }

    #[test]
    fn every_tampered_part_is_refused() {
        let now = SystemTime::now();
        let other = ComputerUuid::parse("7A1E5C3B-9D2F-4E8A-B6C4-1F3D5E7A9B2C").unwrap();
        assert_eq!(
            rules().check(&proof(now), &other, now),
            Err(ProofRefusal::WrongComputer)
        );
        let old = now - Duration::from_secs(301);
        assert_eq!(
            rules().check(&proof(old), &computer(), now),
            Err(ProofRefusal::Expired)
        );
        let mut p = proof(now);
        p.body = "Action=CreateAccessKey&Version=2010-05-08".into();
        assert_eq!(
            rules().check(&p, &computer(), now),
            Err(ProofRefusal::Malformed)
        );
        let mut p = proof(now);
        p.headers.insert("host".into(), "sts.evil.example".into());
        assert_eq!(
            rules().check(&p, &computer(), now),
            Err(ProofRefusal::WrongStsHost)
        );
        let mut p = proof(now);
        p.headers
            .insert(SERVER_ID_HEADER.into(), "other-service".into());
        assert_eq!(
            rules().check(&p, &computer(), now),
            Err(ProofRefusal::WrongServer)
        );
        let mut p = proof(now);
        p.headers.insert("x-forwarded-host".into(), "evil".into());
        assert_eq!(
            rules().check(&p, &computer(), now),
            Err(ProofRefusal::HeaderNotAllowed)
        );
        let mut p = proof(now);
        let auth = p.headers["authorization"].replace(";x-arq-lockdown-server-id", "");
        p.headers.insert("authorization".into(), auth);
        assert_eq!(
            rules().check(&p, &computer(), now),
            Err(ProofRefusal::Unsigned)
        );
    }

    /// A small deterministic PRNG, so the property test below is repeatable.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Property: whatever is changed in a header the service relies on or in the body, or whichever
    /// signed header is dropped, the proof is refused — and nothing panics on any input.
    #[test]
    fn mutated_proofs_are_never_accepted_and_never_panic() {
        let now = SystemTime::now();
        let original = proof(now);
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        // Headers the service compares exactly (a changed x-amz-date may still be in the window:
        // then STS refuses the signature).
        let checked = ["content-type", "host", SERVER_ID_HEADER, COMPUTER_HEADER];
        for round in 0..20_000 {
            let mut p = original.clone();
            match rng.below(4) {
                0 => {
                    let name = checked[rng.below(checked.len())];
                    let value = p.headers.get_mut(name).unwrap();
                    let mut bytes = value.clone().into_bytes();
                    let at = rng.below(bytes.len());
                    bytes[at] = bytes[at].wrapping_add(1 + rng.below(200) as u8);
                    *value = String::from_utf8_lossy(&bytes).into_owned();
                }
                1 => {
                    let name = MUST_BE_SIGNED[rng.below(MUST_BE_SIGNED.len())];
                    p.headers.remove(name);
                }
                2 => {
                    let mut bytes = p.body.clone().into_bytes();
                    let at = rng.below(bytes.len() + 1);
                    bytes.insert(at, b"&=x%"[rng.below(4)]);
                    p.body = String::from_utf8_lossy(&bytes).into_owned();
                }
                _ => {
                    // Random junk in the authorization header must not panic.
                    let junk: String = (0..rng.below(120))
                        .map(|_| (32 + rng.below(95) as u8) as char)
                        .collect();
                    p.headers.insert("authorization".into(), junk);
                }
            }
            assert!(
                rules().check(&p, &computer(), now).is_err(),
                "round {round} accepted {p:?}"
            );
        }
    }

    #[test]
    fn the_request_parser_refuses_junk_without_panicking() {
        let mut rng = XorShift(42);
        let valid = serde_json::to_vec(&crate::service::api::KeyRequest {
            computer_uuid: computer().to_string(),
            bucket: "akiaexample.comhaystacksoftwarearq".into(),
            computer_name: "Mac".into(),
            serial: "S".into(),
            proof: Some(proof(SystemTime::now())),
            enrollment_token: None,
        })
        .unwrap();
        for _ in 0..20_000 {
            let mut bytes = valid.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len());
                bytes[at] = rng.next() as u8;
            }
            bytes.truncate(rng.below(bytes.len() + 1).max(1));
            let _ = serde_json::from_slice::<crate::service::api::KeyRequest>(&bytes);
        }
    }

    #[test]
    fn amz_dates_convert_to_unix_seconds() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20261127T190000Z"), Some(1_795_806_000));
        assert_eq!(parse_amz_date("20261327T190000Z"), None);
        assert_eq!(parse_amz_date("2026-11-27T19:00"), None);
    }
}
