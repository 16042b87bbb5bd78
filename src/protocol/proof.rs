//! The identity proof a Mac sends the provisioning service instead of its keys.
//!
//! As in HashiCorp Vault's AWS IAM auth: the Mac signs, with an AWS key, an
//! `sts:GetCallerIdentity` request (POST of a fixed body to STS) and sends the *signed request*.
//! Extra headers are inside the signature: the service's server id (a proof made for one service
//! is useless to another), the computer UUID asked for, the request it proves (endpoint and the
//! SHA-256 of the request text, so nothing in the request can be changed and the proof cannot be
//! moved to another endpoint), and a random nonce. The service checks the shape, the signed-header
//! list and the age, then replays the request to its own STS endpoint — never to a host the Mac
//! names — and STS, by checking the signature, tells it whose key signed.
//!
//! Only long-term keys prove anything: a session token is refused, because temporary credentials
//! of a user outlive the deletion of its keys.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde::{Deserialize, Deserializer, Serialize};

use crate::arq_config::ComputerUuid;
use crate::credential_store::AccessKey;

/// The only request a proof may carry.
pub const STS_BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
pub const STS_CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
pub const SERVER_ID_HEADER: &str = "x-arq-lockdown-server-id";
pub const COMPUTER_HEADER: &str = "x-arq-lockdown-computer";
/// The request the proof is for: [`super::binding`] of its endpoint and text.
pub const REQUEST_HEADER: &str = "x-arq-lockdown-request";
/// A random value per proof: two proofs made in the same second differ, so a second use of one
/// can be told from a new one.
pub const NONCE_HEADER: &str = "x-arq-lockdown-nonce";

/// Headers that must be inside the signature.
const MUST_BE_SIGNED: [&str; 7] = [
    "content-type",
    "host",
    "x-amz-date",
    SERVER_ID_HEADER,
    COMPUTER_HEADER,
    REQUEST_HEADER,
    NONCE_HEADER,
];

/// Headers a proof carries: the signed ones and the signature. Anything else — a session token,
/// a forwarding header — is refused rather than forwarded.
const ALLOWED: [&str; 8] = [
    "authorization",
    "content-type",
    "host",
    "x-amz-date",
    SERVER_ID_HEADER,
    COMPUTER_HEADER,
    REQUEST_HEADER,
    NONCE_HEADER,
];

/// A signed `sts:GetCallerIdentity` request: its headers (lower-case names, each once) and body.
/// The method (POST) and path (/) are fixed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    #[serde(deserialize_with = "unique_headers")]
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// JSON objects may repeat a name (the last would win); a proof whose headers do is refused, so
/// what the service checks is what it forwards.
fn unique_headers<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of header names to values, each name once")
        }
        fn visit_map<M: serde::de::MapAccess<'de>>(
            self,
            mut map: M,
        ) -> Result<Self::Value, M::Error> {
            let mut headers = BTreeMap::new();
            while let Some((name, value)) = map.next_entry::<String, String>()? {
                if headers.insert(name, value).is_some() {
                    return Err(serde::de::Error::custom("a header appears twice"));
                }
            }
            Ok(headers)
        }
    }
    deserializer.deserialize_map(Visitor)
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
    #[error("proof-wrong-request: the proof was made for another request or endpoint")]
    WrongRequest,
    #[error("proof-wrong-sts-host: the proof names an STS host the service does not use")]
    WrongStsHost,
    #[error("proof-temporary-credentials: only a long-term access key (AKIA…) proves who a Mac is")]
    TemporaryCredentials,
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
            Self::WrongRequest => "proof-wrong-request",
            Self::WrongStsHost => "proof-wrong-sts-host",
            Self::TemporaryCredentials => "proof-temporary-credentials",
            Self::Expired => "proof-expired",
            Self::Replayed => "proof-replayed",
            Self::Rejected => "proof-rejected",
        }
    }
}

/// Signs a proof with `key` for the service `server_id`, the computer `computer` and the request
/// `binding` ([`super::binding`]).
pub fn make(
    key: &AccessKey,
    sts_host: &str,
    server_id: &str,
    computer: &ComputerUuid,
    binding: &str,
    now: SystemTime,
) -> Proof {
    let mut headers = BTreeMap::from([
        ("content-type".to_owned(), STS_CONTENT_TYPE.to_owned()),
        ("host".to_owned(), sts_host.to_owned()),
        (SERVER_ID_HEADER.to_owned(), server_id.to_owned()),
        (COMPUTER_HEADER.to_owned(), computer.to_string()),
        (REQUEST_HEADER.to_owned(), binding.to_owned()),
        (NONCE_HEADER.to_owned(), super::nonce()),
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
    /// The signature (lower-case hex), to refuse a second use.
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
    /// Checks everything about `proof` that can be checked without STS: that it is for this
    /// service, `computer` and the request `binding`, signed over every header that says so, made
    /// by a long-term key, and no older than `max_age` at `now`.
    pub fn check(
        &self,
        proof: &Proof,
        computer: &ComputerUuid,
        binding: &str,
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
        if header(REQUEST_HEADER) != Some(binding) {
            return Err(ProofRefusal::WrongRequest);
        }
        let authorization =
            Authorization::parse(header("authorization").ok_or(ProofRefusal::Malformed)?)?;
        if MUST_BE_SIGNED
            .iter()
            .any(|name| !authorization.signed_headers.iter().any(|h| h == name))
        {
            return Err(ProofRefusal::Unsigned);
        }
        if !authorization.access_key_id.starts_with("AKIA") {
            return Err(ProofRefusal::TemporaryCredentials);
        }
        let date = header("x-amz-date").ok_or(ProofRefusal::Malformed)?;
        if !date.starts_with(&authorization.scope_date) {
            return Err(ProofRefusal::Malformed);
        }
        let signed_at = parse_amz_date(date).ok_or(ProofRefusal::Malformed)?;
        if !super::within(signed_at.as_second(), now, self.max_age) {
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
    /// The credential scope's date (`20261127`).
    scope_date: String,
    signed_headers: Vec<String>,
    signature: String,
}

impl Authorization {
    /// Accepts exactly the form the SigV4 signer writes —
    /// `AWS4-HMAC-SHA256 Credential=AKID/20261127/us-east-1/sts/aws4_request, SignedHeaders=a;b, Signature=hex`
    /// — and nothing looser: no repeated, reordered or padded fields, so the service and STS can
    /// never read one header two ways.
    fn parse(value: &str) -> Result<Self, ProofRefusal> {
        let malformed = ProofRefusal::Malformed;
        let rest = value
            .strip_prefix("AWS4-HMAC-SHA256 Credential=")
            .ok_or(malformed)?;
        let (credential, rest) = rest.split_once(", SignedHeaders=").ok_or(malformed)?;
        let (signed_headers, signature) = rest.split_once(", Signature=").ok_or(malformed)?;
        let [access_key_id, date, region, "sts", "aws4_request"] =
            credential.split('/').collect::<Vec<_>>()[..]
        else {
            return Err(malformed);
        };
        let word = |text: &str| {
            !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !word(access_key_id) || date.len() != 8 || !word(date) || !word(region) {
            return Err(malformed);
        }
        let signed_headers: Vec<String> = signed_headers.split(';').map(str::to_owned).collect();
        if signed_headers.iter().any(|h| {
            h.is_empty()
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        }) {
            return Err(malformed);
        }
        if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed);
        }
        Ok(Self {
            access_key_id: access_key_id.to_owned(),
            scope_date: date.to_owned(),
            signed_headers,
            signature: signature.to_ascii_lowercase(),
        })
    }
}

/// `20261127T190000Z` (SigV4's basic ISO 8601 form, UTC).
fn parse_amz_date(text: &str) -> Option<jiff::Timestamp> {
    let civil = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", text).ok()?;
    jiff::tz::TimeZone::UTC.to_timestamp(civil).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    const BINDING: &str =
        "/v1/enroll:sha256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

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

    fn signed_by(id: &str, now: SystemTime) -> Proof {
        let key = AccessKey {
            id: id.into(),
            secret: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
        };
        make(
            &key,
            "sts.amazonaws.com",
            "arq.example.com",
            &computer(),
            BINDING,
            now,
        )
    }

    fn proof(now: SystemTime) -> Proof {
        signed_by("AKIAIOSFODNN7EXAMPLE", now)
    }

    fn check(p: &Proof, now: SystemTime) -> Result<CheckedProof, ProofRefusal> {
        rules().check(p, &computer(), BINDING, now)
    }

    #[test]
    fn a_fresh_proof_passes_and_names_its_key() {
        let now = SystemTime::now();
        let checked = check(&proof(now), now).unwrap();
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
            rules().check(&proof(now), &other, BINDING, now),
            Err(ProofRefusal::WrongComputer)
        );
        assert_eq!(
            rules().check(&proof(now), &computer(), "/v1/rotate:sha256=00", now),
            Err(ProofRefusal::WrongRequest)
        );
        let old = now - Duration::from_secs(301);
        assert_eq!(check(&proof(old), now), Err(ProofRefusal::Expired));
        let future = now + Duration::from_secs(301);
        assert_eq!(check(&proof(future), now), Err(ProofRefusal::Expired));
        let tampered: [(&str, &str, ProofRefusal); 6] = [
            ("host", "sts.evil.example", ProofRefusal::WrongStsHost),
            (SERVER_ID_HEADER, "other-service", ProofRefusal::WrongServer),
            ("x-forwarded-host", "evil", ProofRefusal::HeaderNotAllowed),
            (
                "x-amz-security-token",
                "FwoGZXIvYXdzEXAMPLE",
                ProofRefusal::HeaderNotAllowed,
            ),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=x",
                ProofRefusal::HeaderNotAllowed,
            ),
            ("x-amz-date", "00000101T000000Z", ProofRefusal::Malformed),
        ];
        for (name, value, refusal) in tampered {
            let mut p = proof(now);
            p.headers.insert(name.into(), value.into());
            assert_eq!(check(&p, now), Err(refusal), "{name}: {value}");
        }
        let mut p = proof(now);
        p.body = "Action=CreateAccessKey&Version=2010-05-08".into();
        assert_eq!(check(&p, now), Err(ProofRefusal::Malformed));
        let mut p = proof(now);
        let auth = p.headers["authorization"].replace(";x-arq-lockdown-server-id", "");
        p.headers.insert("authorization".into(), auth);
        assert_eq!(check(&p, now), Err(ProofRefusal::Unsigned));
        assert_eq!(
            check(&signed_by("ASIAIOSFODNN7EXAMPLE", now), now),
            Err(ProofRefusal::TemporaryCredentials)
        );
    }

    #[test]
    fn an_authorization_header_is_accepted_only_in_the_form_the_signer_writes() {
        let now = SystemTime::now();
        let original = proof(now).headers["authorization"].clone();
        let upper_hex = {
            let (head, signature) = original.rsplit_once('=').unwrap();
            format!("{head}={}", signature.to_ascii_uppercase())
        };
        let checked = {
            let mut p = proof(now);
            p.headers.insert("authorization".into(), upper_hex);
            check(&p, now).unwrap()
        };
        assert_eq!(
            checked.signature,
            checked.signature.to_ascii_lowercase(),
            "the replay cache must see one spelling of a signature"
        );
        let variants = [
            original.replacen(", ", ",", 1),
            original.replacen(", ", ",  ", 1),
            original.replacen("Credential=", "Credential =", 1),
            original.replacen("Credential=", "credential=", 1),
            original.replacen("AWS4-HMAC-SHA256 ", "AWS4-HMAC-SHA256  ", 1),
            format!(" {original}"),
            format!("{original} "),
            format!("{original}, Signature=00"),
            original.replacen(
                ", SignedHeaders=",
                ", SignedHeaders=host;, SignedHeaders=",
                1,
            ),
            original.replacen("/sts/", "/iam/", 1),
            original.replacen("Credential=AKIAIOSFODNN7EXAMPLE/", "Credential=/", 1),
            original.replacen("/us-east-1/", "/us_east_1/", 1),
            {
                let scope = original.split('/').nth(1).unwrap().to_owned();
                original.replacen(&format!("/{scope}/"), &format!("/{}/", &scope[..7]), 1)
            },
            {
                let (head, signature) = original.rsplit_once('=').unwrap();
                format!("{head}={}", &signature[..63])
            },
            {
                let (head, signature) = original.rsplit_once('=').unwrap();
                format!("{head}={}g", &signature[..63])
            },
        ];
        for variant in variants {
            let mut p = proof(now);
            p.headers.insert("authorization".into(), variant.clone());
            assert_eq!(check(&p, now), Err(ProofRefusal::Malformed), "{variant}");
        }
    }

    #[test]
    fn a_proof_whose_headers_repeat_a_name_does_not_parse() {
        let now = SystemTime::now();
        let json = serde_json::to_string(&proof(now)).unwrap();
        let repeated = json.replacen("\"host\":", "\"host\":\"sts.evil.example\",\"host\":", 1);
        assert!(serde_json::from_str::<Proof>(&json).is_ok());
        assert!(serde_json::from_str::<Proof>(&repeated).is_err());
    }

    /// A small deterministic PRNG, so the property tests below are repeatable.
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

    /// Property: whatever is changed in a header the service relies on, in the body, or inside the
    /// Authorization header's fields, and whichever signed header is dropped (from the proof or
    /// from SignedHeaders), the proof is refused — and nothing panics on any input.
    #[test]
    fn mutated_proofs_are_never_accepted_and_never_panic() {
        let now = SystemTime::now();
        let original = proof(now);
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        // Headers the service compares exactly (a changed x-amz-date may still be in the window:
        // then STS refuses the signature).
        let compared = [
            "content-type",
            "host",
            SERVER_ID_HEADER,
            COMPUTER_HEADER,
            REQUEST_HEADER,
        ];
        let authorization = &original.headers["authorization"];
        // Everything but the credential's key id, date and region (STS's signature check covers
        // those) and the signature itself.
        let prefix = "AWS4-HMAC-SHA256 Credential=".len();
        let scope_end = authorization.find("/sts/").unwrap();
        let signature_at = authorization.rfind('=').unwrap() + 1;
        let positions: Vec<usize> = (0..prefix).chain(scope_end..signature_at).collect();
        let mut refused_in_the_header = 0;
        for round in 0..20_000 {
            let mut p = original.clone();
            let mut changes_the_header = false;
            match rng.below(5) {
                0 => {
                    let name = compared[rng.below(compared.len())];
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
                3 => {
                    // Inside a valid header: one byte changed, inserted or removed.
                    let mut bytes = authorization.clone().into_bytes();
                    let at = positions[rng.below(positions.len())];
                    match rng.below(3) {
                        0 => bytes[at] = bytes[at].wrapping_add(1 + rng.below(200) as u8),
                        1 => bytes.insert(at, b" ,;=/"[rng.below(5)]),
                        _ => {
                            bytes.remove(at);
                        }
                    }
                    let changed = String::from_utf8_lossy(&bytes).into_owned();
                    changes_the_header = true;
                    p.headers.insert("authorization".into(), changed);
                }
                _ => {
                    // One signed header left out of SignedHeaders.
                    let name = MUST_BE_SIGNED[rng.below(MUST_BE_SIGNED.len())];
                    let changed = authorization
                        .replace(&format!(";{name};"), ";")
                        .replace(&format!("={name};"), "=")
                        .replace(&format!(";{name},"), ",");
                    changes_the_header = true;
                    p.headers.insert("authorization".into(), changed);
                }
            }
            let result = check(&p, now);
            assert!(result.is_err(), "round {round} accepted {p:?}");
            if changes_the_header && result != Err(ProofRefusal::Expired) {
                refused_in_the_header += 1;
            }
        }
        assert!(
            refused_in_the_header > 5_000,
            "the header mutations were not reached"
        );
    }

    #[test]
    fn amz_dates_are_read_as_utc_and_junk_is_none() {
        let seconds = |text| parse_amz_date(text).map(|t| t.as_second());
        assert_eq!(seconds("19700101T000000Z"), Some(0));
        assert_eq!(seconds("20261127T190000Z"), Some(1_795_806_000));
        assert_eq!(seconds("20261327T190000Z"), None);
        assert_eq!(seconds("20260230T000000Z"), None);
        assert_eq!(seconds("2026-11-27T19:00"), None);
        assert_eq!(seconds("00000101T000000Z").map(|s| s < 0), Some(true));
    }

    #[test]
    fn every_refusal_code_is_the_start_of_its_message() {
        let all = [
            ProofRefusal::Malformed,
            ProofRefusal::HeaderNotAllowed,
            ProofRefusal::Unsigned,
            ProofRefusal::WrongServer,
            ProofRefusal::WrongComputer,
            ProofRefusal::WrongRequest,
            ProofRefusal::WrongStsHost,
            ProofRefusal::TemporaryCredentials,
            ProofRefusal::Expired,
            ProofRefusal::Replayed,
            ProofRefusal::Rejected,
        ];
        for refusal in all {
            let message = refusal.to_string();
            assert_eq!(Some(refusal.code()), message.split(':').next(), "{message}");
            assert!(refusal.code().starts_with("proof-"));
        }
    }

    #[test]
    fn headers_that_are_not_a_map_are_refused_saying_what_is_expected() {
        let error = serde_json::from_str::<Proof>(r#"{"headers": [], "body": ""}"#).unwrap_err();
        assert!(
            error.to_string().contains("a map of header names"),
            "{error}"
        );
        let unknown = serde_json::from_str::<Proof>(r#"{"headers": {}, "body": "", "extra": 1}"#);
        assert!(unknown.is_err());
    }
}
