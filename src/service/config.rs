//! The service's configuration file (TOML), read and validated once at start: every value is
//! parsed into the type it is used as, so nothing is decoded again while serving.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ServiceError;
use crate::arq_config::BucketName;

/// `service.toml`; see docs/service.md for an example.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Address to listen on, e.g. "0.0.0.0:8443".
    pub listen: SocketAddr,
    /// The value Macs put in the signed `x-arq-lockdown-server-id` header: names this service.
    pub server_id: String,
    /// Where proofs are replayed; never a host a client names.
    #[serde(default = "default_sts_endpoint")]
    pub sts_endpoint: String,
    /// The STS host proofs must be signed for.
    #[serde(default = "default_sts_host")]
    pub sts_host: String,
    /// Buckets Macs may get keys for.
    pub allowed_buckets: Vec<BucketName>,
    /// IAM principal ARNs of the fleet's main keys: the callers that may enroll a computer.
    #[serde(default)]
    pub fleet_principals: Vec<String>,
    /// Enrollment tokens, for fleets whose Macs never hold the main keys.
    #[serde(default)]
    pub enrollment_tokens: Vec<EnrollmentToken>,
    /// Enrollments per hour through this instance by each fleet principal (default 100).
    #[serde(default = "default_max_per_hour")]
    pub fleet_max_per_hour: u32,
    /// Users each fleet principal may create in all, counted in IAM's tags at start (default 1,000).
    #[serde(default = "default_max_enrollments")]
    pub fleet_max_enrollments: u64,
    /// When a computer nobody holds may be bound without the admin's pin (default "when-no-data").
    #[serde(default)]
    pub bind_without_pin: BindWithoutPin,
    /// The managed policy every scoped user is created with as its permissions boundary.
    pub permissions_boundary_arn: String,
    /// Write policies that refuse even the root listing (see `--no-computer-listing`).
    #[serde(default)]
    pub no_computer_listing: bool,
    /// How old a proof or request may be.
    #[serde(default = "default_proof_max_age")]
    pub proof_max_age_seconds: u64,
    /// IAM requests at once; more wait (IAM's rate limits are per account).
    #[serde(default = "default_iam_concurrency")]
    pub iam_concurrency: usize,
    /// Proofs replayed to STS at once; more wait.
    #[serde(default = "default_sts_concurrency")]
    pub sts_concurrency: usize,
    /// Connections served at once; more wait in the kernel's queue.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Certificate and key (PEM) for HTTPS; without them only loopback (or --insecure-http) is served.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
}

/// One enrollment token: the service keeps only its SHA-256.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentToken {
    /// A name for logs and IAM tags (`arq-lockdown:enrolled-by` = `token:<name>`).
    pub name: String,
    pub sha256: TokenHash,
    /// Users this token may create in all, counted in IAM's tags so across restarts (default 1,000).
    #[serde(default = "default_max_enrollments")]
    pub max_enrollments: u64,
    /// Enrollments per hour through this instance (default 100).
    #[serde(default = "default_max_per_hour")]
    pub max_per_hour: u32,
}

impl EnrollmentToken {
    pub fn limits(&self) -> Limits {
        Limits {
            max_per_hour: self.max_per_hour,
            max_enrollments: self.max_enrollments,
        }
    }
}

/// What one enroller (a token, or one fleet principal) may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Enrollments per hour through one instance.
    pub max_per_hour: u32,
    /// Computers it may bind by creating their user, in all.
    pub max_enrollments: u64,
}

/// When a computer UUID nobody holds yet may be bound without the admin's pin (contracts §4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BindWithoutPin {
    /// Only when the UUID has no data in any allowed bucket: nobody but its own Mac can know it.
    #[default]
    WhenNoData,
    /// Always: trust on first use, for a short supervised rollout.
    Always,
    /// Never: every computer is pinned first.
    Never,
}

/// The SHA-256 of a token, from 64 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct TokenHash(pub [u8; 32]);

impl TryFrom<String> for TokenHash {
    type Error = &'static str;

    fn try_from(hex: String) -> Result<Self, Self::Error> {
        let error = "a token's sha256 is 64 hex digits";
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(error);
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| error)?;
        }
        Ok(Self(bytes))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

fn default_sts_endpoint() -> String {
    "https://sts.amazonaws.com".to_owned()
}
fn default_sts_host() -> String {
    "sts.amazonaws.com".to_owned()
}
fn default_proof_max_age() -> u64 {
    300
}
fn default_iam_concurrency() -> usize {
    4
}
fn default_sts_concurrency() -> usize {
    16
}
fn default_max_connections() -> usize {
    1024
}
/// Enough for a rollout wave through one instance; an admin raises it for more.
fn default_max_per_hour() -> u32 {
    100
}
/// Enough for a fleet of 1,000 computers, far from IAM's 5,000 users; an admin raises it for more.
fn default_max_enrollments() -> u64 {
    1000
}

impl ServiceConfig {
    /// What each fleet principal may do.
    pub fn fleet_limits(&self) -> Limits {
        Limits {
            max_per_hour: self.fleet_max_per_hour,
            max_enrollments: self.fleet_max_enrollments,
        }
    }

    /// Reads and checks the config file.
    pub fn load(path: &Path) -> Result<Self, ServiceError> {
        let text = std::fs::read_to_string(path).map_err(|e| ServiceError::Config {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::parse(&text).map_err(|reason| ServiceError::Config {
            path: path.to_owned(),
            reason,
        })
    }

    /// Parses and checks the config's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| crate::one_line(e.message()))?;
        if config.server_id.trim().is_empty() {
            return Err("server_id is empty".into());
        }
        if config.allowed_buckets.is_empty() {
            return Err("allowed_buckets is empty: no Mac could get a key".into());
        }
        if config
            .fleet_principals
            .iter()
            .any(|arn| !arn.starts_with("arn:aws:iam::"))
        {
            return Err(
                "fleet_principals must be IAM ARNs (arn:aws:iam::ACCOUNT:user/NAME)".into(),
            );
        }
        if config.fleet_principals.is_empty() && config.enrollment_tokens.is_empty() {
            return Err(
                "neither fleet_principals nor enrollment_tokens: no Mac could enroll".into(),
            );
        }
        let mut names: Vec<&str> = config
            .enrollment_tokens
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        if names.len() != config.enrollment_tokens.len()
            || names
                .iter()
                .any(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            return Err(
                "enrollment_tokens need distinct names of letters, digits and hyphens".into(),
            );
        }
        if !config.permissions_boundary_arn.starts_with("arn:aws:iam::")
            || !config.permissions_boundary_arn.contains(":policy/")
        {
            return Err(
                "permissions_boundary_arn must be a managed policy's ARN (arn:aws:iam::ACCOUNT:policy/NAME)"
                    .into(),
            );
        }
        let limits = config.enrollment_tokens.iter().map(EnrollmentToken::limits);
        if limits
            .chain([config.fleet_limits()])
            .any(|l| l.max_per_hour == 0 || l.max_enrollments == 0)
        {
            return Err(
                "max_per_hour and max_enrollments (of a token, or fleet_ for the main keys) must be at least 1: remove a token instead of setting 0".into(),
            );
        }
        if config.iam_concurrency == 0 || config.sts_concurrency == 0 || config.max_connections == 0
        {
            return Err(
                "iam_concurrency, sts_concurrency and max_connections must be at least 1".into(),
            );
        }
        if !(1..=900).contains(&config.proof_max_age_seconds) {
            return Err("proof_max_age_seconds must be 1 to 900 (STS's own clock skew)".into());
        }
        let sts = config
            .sts_endpoint
            .parse::<hyper::Uri>()
            .map_err(|e| format!("sts_endpoint: {e}"))?;
        let loopback = sts.host().is_some_and(|host| {
            host == "localhost"
                || host
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        match sts.scheme_str() {
            Some("https") => {}
            Some("http") if loopback => {}
            _ => {
                return Err(
                    "sts_endpoint must be https:// (plain http:// only on loopback): anyone on the way could answer for STS"
                        .into(),
                );
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        listen = "127.0.0.1:8443"
        server_id = "arq.example.com"
        allowed_buckets = ["akiaexample.comhaystacksoftwarearq"]
        fleet_principals = ["arn:aws:iam::123456789012:user/fleet"]
        permissions_boundary_arn = "arn:aws:iam::123456789012:policy/arq-lockdown-boundary"
    "#;

    #[test]
    fn a_minimal_config_gets_the_defaults() {
        let config = ServiceConfig::parse(MINIMAL).unwrap();
        assert_eq!(config.sts_host, "sts.amazonaws.com");
        assert_eq!(config.proof_max_age_seconds, 300);
        assert_eq!(
            config.allowed_buckets[0].as_str(),
            "akiaexample.comhaystacksoftwarearq"
        );
        assert!(config.tls.is_none());
        assert_eq!(config.bind_without_pin, BindWithoutPin::WhenNoData);
        let defaults = Limits {
            max_per_hour: 100,
            max_enrollments: 1000,
        };
        assert_eq!(config.fleet_limits(), defaults);
        let token = format!(
            "{MINIMAL}\n[[enrollment_tokens]]\nname = \"t\"\nsha256 = \"{}\"\nmax_per_hour = 5",
            "0".repeat(64)
        );
        let config = ServiceConfig::parse(&token).unwrap();
        assert_eq!(
            config.enrollment_tokens[0].limits(),
            Limits {
                max_per_hour: 5,
                ..defaults
            },
            "a token without max_enrollments gets the default, not none"
        );
        for (text, mode) in [
            ("always", BindWithoutPin::Always),
            ("never", BindWithoutPin::Never),
        ] {
            let config = ServiceConfig::parse(&format!("{MINIMAL}\nbind_without_pin = \"{text}\""));
            assert_eq!(config.unwrap().bind_without_pin, mode);
        }
    }

    #[test]
    #[rustfmt::skip]
    fn every_bad_value_is_refused_with_its_reason() {
        let cases = [
            (r#"allowed_buckets = ["Not_A_Bucket"]"#, "lower-case letters"),
            ("allowed_buckets = []", "allowed_buckets is empty"),
            (r#"server_id = " ""#, "server_id is empty"),
            (r#"fleet_principals = ["fleet"]"#, "must be IAM ARNs"),
            ("fleet_principals = []", "neither fleet_principals nor enrollment_tokens"),
            (r#"permissions_boundary_arn = "arn:aws:iam::1:user/x""#, "managed policy's ARN"),
            ("iam_concurrency = 0", "at least 1"),
            (r#"sts_endpoint = "http://exa mple""#, "sts_endpoint"),
            (r#"sts_endpoint = "http://sts.example.com""#, "must be https://"),
            ("proof_max_age_seconds = 99999999999999", "1 to 900"),
            ("surprise = 1", "unknown field"),
            ("fleet_max_per_hour = 0", "at least 1"),
            ("fleet_max_enrollments = 0", "at least 1"),
            (&format!("[[enrollment_tokens]]\nname = \"t\"\nsha256 = \"{}\"\nmax_enrollments = 0", "0".repeat(64)), "at least 1"),
            (r#"bind_without_pin = "sometimes""#, "unknown variant"),
            (r#"enrollment_token_sha256 = ["00"]"#, "unknown field"),
            ("[[enrollment_tokens]]\nname = \"t\"\nsha256 = \"abc\"", "64 hex digits"),
            (&format!("[[enrollment_tokens]]\nname = \"t\"\nsha256 = \"{}\"\n[[enrollment_tokens]]\nname = \"t\"\nsha256 = \"{}\"", "0".repeat(64), "1".repeat(64)), "distinct names"),
        ];
        for (change, says) in cases {
            let key = change.split([' ', '=']).next().unwrap();
            let text: String = MINIMAL
                .lines()
                .filter(|l| l.trim().split([' ', '=']).next() != Some(key))
                .chain([change])
                .collect::<Vec<_>>()
                .join("\n");
            let error = ServiceConfig::parse(&text).unwrap_err();
            assert!(error.contains(says), "{change}: {error}");
        }
    }

    #[test]
    fn token_hashes_are_read_from_hex() {
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let hash = TokenHash::try_from(hex.to_owned()).unwrap();
        assert_eq!(hash.0[0], 0x9f);
        assert_eq!(hash.0[31], 0x08);
        assert!(TokenHash::try_from("zz".repeat(32)).is_err());
        assert!(TokenHash::try_from("é".repeat(32)).is_err());
    }
}
