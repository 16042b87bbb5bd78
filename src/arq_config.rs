//! Arq's own configuration: where this Mac's backups live in the bucket.
//!
//! Owns reading `<home>/Library/Arq/config/app_config.plist` (XML or binary) and validating the two
//! values the lockdown depends on, `localS3BucketName` and `localComputerUUID`. Both end up in an
//! IAM policy and an IAM user name, so anything that is not exactly a bucket name or a UUID is
//! rejected here, before any AWS, Keychain or process call. This module never writes.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::exit_code::ExitCode;
use crate::fs::ReadError;

/// Where Arq keeps its config, relative to the user's home folder.
pub const CONFIG_RELATIVE_PATH: &str = "Library/Arq/config/app_config.plist";

/// A real app_config.plist is a few kilobytes; anything over this is not one.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The S3 bucket Arq backs up to, exactly as Arq stores it.
///
/// Arq names it after the lower-cased access key id plus a suffix with dots
/// (`<keyid>.comhaystacksoftwarearq`); copying it without the dot is the classic mistake, so the
/// value is never normalised — only checked against S3's bucket naming rules.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct BucketName(String);

/// This Mac's computer UUID, the top-level folder of its data in the bucket.
///
/// Only the canonical 8-4-4-4-12 hex form is accepted: the value becomes part of an IAM user name
/// and of policy resource patterns, where `*`, `/` or `?` would widen what the key can reach.
/// The case is kept as stored, because S3 keys (and so the policy) are case-sensitive.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct ComputerUuid(String);

/// The part of Arq's config the lockdown needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArqConfig {
    pub bucket: BucketName,
    pub computer_uuid: ComputerUuid,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("HOME is not set: pass --arq-home with the user's home folder")]
    NoHome,
    #[error(transparent)]
    UnsafePath(#[from] crate::fs::Refusal),
    #[error(
        "no Arq config at {path}: set Arq up for this user first, or point --arq-home at the right home folder"
    )]
    NotFound { path: PathBuf },
    #[error("cannot read Arq config {path}: {source}; check the path and its permissions")]
    Unreadable { path: PathBuf, source: io::Error },
    #[error(
        "Arq config {path} is not a regular file: point --arq-home at a home folder with a real app_config.plist"
    )]
    NotAFile { path: PathBuf },
    #[error(
        "Arq config {path} is larger than {MAX_CONFIG_BYTES} bytes, so it is not Arq's: restore it from Arq or a backup"
    )]
    TooLarge { path: PathBuf },
    #[error(
        "Arq config {path} is not a property list (corrupt or cut short): open Arq once to rewrite it, or restore it"
    )]
    NotPlist { path: PathBuf },
    #[error(
        "Arq config {path} is not a dictionary at the top: open Arq once to rewrite it, or restore it"
    )]
    NotADictionary { path: PathBuf },
    #[error(
        "Arq config {path} has no {key}: finish Arq's setup (choose a destination) and run again"
    )]
    MissingKey { path: PathBuf, key: &'static str },
    #[error(
        "Arq config {path}: {key} is {found}, not a string: open Arq once to rewrite it, or restore it"
    )]
    WrongType {
        path: PathBuf,
        key: &'static str,
        found: &'static str,
    },
    #[error(
        "{origin}: bucket name {value} is not a valid S3 bucket name ({reason}); use the name exactly as Arq stores it"
    )]
    InvalidBucket {
        origin: String,
        value: Quoted,
        reason: &'static str,
    },
    #[error(
        "{origin}: computer UUID {value} is not a UUID ({reason}); use the value exactly as Arq stores it, like 32D9D7A2-3B3E-4BE7-B85B-0605AF24F570"
    )]
    InvalidComputerUuid {
        origin: String,
        value: Quoted,
        reason: &'static str,
    },
}

impl ConfigError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::NoHome
            | Self::NotFound { .. }
            | Self::Unreadable { .. }
            | Self::NotAFile { .. } => ExitCode::ConfigMissing,
            _ => ExitCode::ConfigInvalid,
        }
    }
}

/// An untrusted value shown in an error: escaped (so it stays on one line) and cut short.
#[derive(Debug)]
pub struct Quoted(String);

impl Quoted {
    pub fn new(value: &str) -> Self {
        const MAX_CHARS: usize = 80;
        let mut shown: String = value.chars().take(MAX_CHARS).collect();
        if value.chars().count() > MAX_CHARS {
            shown.push('…');
        }
        Self(shown)
    }
}

impl fmt::Display for Quoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl BucketName {
    /// Checks `value` against S3's naming rules for general purpose buckets.
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        let bytes = value.as_bytes();
        if !(3..=63).contains(&bytes.len()) {
            return Err("it must be 3 to 63 characters long");
        }
        if !bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
        {
            return Err("only lower-case letters, digits, dots and hyphens are allowed");
        }
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
            return Err("it must begin and end with a letter or digit");
        }
        if value.contains("..") || value.contains(".-") || value.contains("-.") {
            return Err("a dot may not be next to another dot or a hyphen");
        }
        if value.parse::<std::net::Ipv4Addr>().is_ok() {
            return Err("it must not look like an IP address");
        }
        if value.starts_with("xn--") || value.starts_with("sthree-") {
            return Err("that prefix is reserved by S3");
        }
        if value.ends_with("-s3alias") || value.ends_with("--ol-s3") {
            return Err("that suffix is reserved by S3");
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl ComputerUuid {
    /// Accepts only `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX` with hex digits (either case).
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
        if value.len() != 36 {
            return Err("it must be 36 characters, 8-4-4-4-12 hex digits");
        }
        let groups: Vec<&str> = value.split('-').collect();
        if groups.len() != GROUPS.len() || groups.iter().map(|g| g.len()).ne(GROUPS) {
            return Err("it must be 8-4-4-4-12 hex digits separated by hyphens");
        }
        if !groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err("only hex digits are allowed between the hyphens");
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BucketName {
    type Error = &'static str;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl TryFrom<String> for ComputerUuid {
    type Error = &'static str;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl fmt::Display for BucketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ComputerUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ArqConfig {
    /// Validates a bucket and computer UUID given directly (flags), naming `origin` in errors.
    pub fn from_values(
        bucket: &str,
        computer_uuid: &str,
        origin: &str,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            bucket: BucketName::parse(bucket).map_err(|reason| ConfigError::InvalidBucket {
                origin: origin.to_owned(),
                value: Quoted::new(bucket),
                reason,
            })?,
            computer_uuid: ComputerUuid::parse(computer_uuid).map_err(|reason| {
                ConfigError::InvalidComputerUuid {
                    origin: origin.to_owned(),
                    value: Quoted::new(computer_uuid),
                    reason,
                }
            })?,
        })
    }

    /// Reads and validates `<home>/Library/Arq/config/app_config.plist`.
    pub fn read_from_home(home: &Path) -> Result<Self, ConfigError> {
        let path = home.join(CONFIG_RELATIVE_PATH);
        let bytes = read_capped(&path)?;
        // The parser's own words (its internal error types) would not help an admin.
        let value = plist::Value::from_reader(io::Cursor::new(&bytes))
            .map_err(|_| ConfigError::NotPlist { path: path.clone() })?;
        let dict = value
            .as_dictionary()
            .ok_or_else(|| ConfigError::NotADictionary { path: path.clone() })?;
        let string_value = |key: &'static str| -> Result<&str, ConfigError> {
            match dict.get(key) {
                None => Err(ConfigError::MissingKey {
                    path: path.clone(),
                    key,
                }),
                Some(plist::Value::String(s)) => Ok(s),
                Some(other) => Err(ConfigError::WrongType {
                    path: path.clone(),
                    key,
                    found: plist_type_name(other),
                }),
            }
        };
        let bucket = string_value("localS3BucketName")?;
        let computer_uuid = string_value("localComputerUUID")?;
        Self::from_values(bucket, computer_uuid, &path.display().to_string())
    }
}

/// Reads the config if it is a regular file of at most [`MAX_CONFIG_BYTES`].
fn read_capped(path: &Path) -> Result<Vec<u8>, ConfigError> {
    crate::fs::read_small_file(path, MAX_CONFIG_BYTES).map_err(|error| {
        let path = path.to_owned();
        match error {
            ReadError::NotFound => ConfigError::NotFound { path },
            ReadError::NotAFile => ConfigError::NotAFile { path },
            ReadError::TooLarge => ConfigError::TooLarge { path },
            ReadError::Refused(refusal) => ConfigError::UnsafePath(refusal),
            ReadError::Io(source) => ConfigError::Unreadable { path, source },
        }
    })
}

fn plist_type_name(value: &plist::Value) -> &'static str {
    match value {
        plist::Value::Array(_) => "an array",
        plist::Value::Dictionary(_) => "a dictionary",
        plist::Value::Boolean(_) => "a boolean",
        plist::Value::Data(_) => "data",
        plist::Value::Date(_) => "a date",
        plist::Value::Real(_) => "a real number",
        plist::Value::Integer(_) => "an integer",
        plist::Value::Uid(_) => "a UID",
        _ => "not a string",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_arq_makes_are_valid_and_kept_exact() {
        for name in [
            "akiaiyuk3n3tme6l4hfa.comhaystacksoftwarearq",
            "akiaexample.com.haystacksoftware.arq",
        ] {
            assert_eq!(BucketName::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn bucket_names_breaking_s3_rules_are_rejected() {
        for name in [
            "ab",
            "UPPER.case",
            "under_score",
            ".lead",
            "trail-",
            "a..b",
            "a.-b",
            "a-.b",
            "192.168.1.1",
            "xn--abc",
            "x-s3alias",
            "with space",
            &"a".repeat(64),
        ] {
            assert!(BucketName::parse(name).is_err(), "{name} accepted");
        }
    }

    #[test]
    fn computer_uuids_must_be_canonical() {
        assert!(ComputerUuid::parse("32D9D7A2-3B3E-4BE7-B85B-0605AF24F570").is_ok());
        assert!(ComputerUuid::parse("32d9d7a2-3b3e-4be7-b85b-0605af24f570").is_ok());
        for junk in [
            "32D9D7A23B3E4BE7B85B0605AF24F570",
            "{32D9D7A2-3B3E-4BE7-B85B-0605AF24F57}",
            "32D9D7A2-3B3E-4BE7-B85B-0605AF24F5*0",
            "32D9D7A2-3B3E-4BE7-B85B0-605AF24F570",
            "../D7A2-3B3E-4BE7-B85B-0605AF24F570",
        ] {
            assert!(ComputerUuid::parse(junk).is_err(), "{junk} accepted");
        }
    }

    #[test]
    fn quoted_values_stay_on_one_line_and_short() {
        let shown = Quoted::new(&format!("evil\nline{}", "x".repeat(200))).to_string();
        assert!(!shown.contains('\n'));
        assert!(shown.chars().count() < 90);
    }

    #[test]
    fn a_config_that_is_missing_not_a_file_or_too_large_says_so_with_its_exit_code() {
        let home = tempfile::tempdir().unwrap();
        let read = || ArqConfig::read_from_home(home.path()).unwrap_err();
        assert!(matches!(read(), ConfigError::NotFound { .. }));
        assert_eq!(read().exit_code(), ExitCode::ConfigMissing);
        let path = home.path().join(CONFIG_RELATIVE_PATH);
        std::fs::create_dir_all(&path).unwrap();
        assert!(matches!(read(), ConfigError::NotAFile { .. }));
        assert_eq!(read().exit_code(), ExitCode::ConfigMissing);
        std::fs::remove_dir(&path).unwrap();
        // Exactly the cap is read (and is not a plist); one byte more is refused unread.
        std::fs::write(&path, vec![b' '; MAX_CONFIG_BYTES as usize]).unwrap();
        assert!(matches!(read(), ConfigError::NotPlist { .. }));
        std::fs::write(&path, vec![b' '; MAX_CONFIG_BYTES as usize + 1]).unwrap();
        assert!(matches!(read(), ConfigError::TooLarge { .. }));
        assert_eq!(read().exit_code(), ExitCode::ConfigInvalid);
        assert_eq!(MAX_CONFIG_BYTES, 1024 * 1024);
    }

    #[test]
    fn a_value_of_the_wrong_type_is_named_by_its_type() {
        let cases: [(plist::Value, &str); 8] = [
            (plist::Value::Array(Vec::new()), "an array"),
            (
                plist::Value::Dictionary(plist::Dictionary::new()),
                "a dictionary",
            ),
            (true.into(), "a boolean"),
            (plist::Value::Data(vec![1]), "data"),
            (
                plist::Value::Date(std::time::SystemTime::UNIX_EPOCH.into()),
                "a date",
            ),
            (1.5.into(), "a real number"),
            (7.into(), "an integer"),
            (plist::Value::Uid(plist::Uid::new(1)), "a UID"),
        ];
        for (value, name) in cases {
            assert_eq!(plist_type_name(&value), name);
        }
    }

    #[test]
    fn valid_values_show_as_themselves_and_untrusted_ones_quoted() {
        let config = ArqConfig::from_values(
            "akiaexample.comhaystacksoftwarearq",
            "32D9D7A2-3B3E-4BE7-B85B-0605AF24F570",
            "t",
        )
        .unwrap();
        assert_eq!(
            config.bucket.to_string(),
            "akiaexample.comhaystacksoftwarearq"
        );
        assert_eq!(
            config.computer_uuid.to_string(),
            "32D9D7A2-3B3E-4BE7-B85B-0605AF24F570"
        );
        assert_eq!(Quoted::new("a\"b").to_string(), "\"a\\\"b\"");
        let path = PathBuf::from("/Users/u/Library");
        let unsafe_path = ConfigError::UnsafePath(crate::fs::Refusal::Link { path });
        assert_eq!(unsafe_path.exit_code(), ExitCode::ConfigInvalid);
        assert_eq!(ConfigError::NoHome.exit_code(), ExitCode::ConfigMissing);
    }
}
