//! Settings an admin pushes with a configuration profile (managed preferences), for `apply`.
//!
//! Read from, in order of precedence (after the command line, which always wins):
//! 1. `/Library/Managed Preferences/<user>/org.arq-lockdown.plist` — a profile for this user;
//! 2. `/Library/Managed Preferences/org.arq-lockdown.plist` — a profile for the computer;
//! 3. `/Library/Preferences/org.arq-lockdown.plist` — a local file an admin wrote.
//!
//! Keys that decide where keys come from, what bounds them, or carry a secret (`Source`,
//! `ServiceURL`, `ServiceID`, `EnrollmentToken`, `PermissionsBoundary`) are honoured only from a
//! profile (1 or 2): a local file cannot redirect a Mac's keys. [`KEYS`] lists every key read;
//! `packaging/example.mobileconfig` documents each.

use std::path::{Path, PathBuf};

use crate::exit_code::ExitCode;
use crate::fs::ReadError;
use crate::key_source::SourceKind;
use crate::secret::Secret;

/// The one reverse-DNS identifier: package, LaunchAgent label, preference domain, log name.
pub const IDENTIFIER: &str = "org.arq-lockdown";

/// Larger preference files are not ours.
const MAX_PREFERENCES_BYTES: u64 = 256 * 1024;

/// The preference keys, as the profile spells them.
pub mod key {
    pub const SOURCE: &str = "Source";
    pub const SERVICE_URL: &str = "ServiceURL";
    pub const SERVICE_ID: &str = "ServiceID";
    pub const ENROLLMENT_TOKEN: &str = "EnrollmentToken";
    pub const PERMISSIONS_BOUNDARY: &str = "PermissionsBoundary";
    pub const QUIT_ARQ: &str = "QuitArq";
    pub const TERMINATE_ARQ: &str = "TerminateArq";
    pub const WAIT_SECONDS: &str = "WaitSeconds";
    pub const VERIFY_TIMEOUT_SECONDS: &str = "VerifyTimeoutSeconds";
    pub const RELAUNCH: &str = "Relaunch";
    pub const LEGACY_GLACIER: &str = "LegacyGlacier";
    pub const NO_COMPUTER_LISTING: &str = "NoComputerListing";
    pub const LOG_LEVEL: &str = "LogLevel";
    pub const ENABLED: &str = "Enabled";
}

/// Every key the reader reads (and the example profile documents).
pub const KEYS: [&str; 14] = [
    key::SOURCE,
    key::SERVICE_URL,
    key::SERVICE_ID,
    key::ENROLLMENT_TOKEN,
    key::PERMISSIONS_BOUNDARY,
    key::QUIT_ARQ,
    key::TERMINATE_ARQ,
    key::WAIT_SECONDS,
    key::VERIFY_TIMEOUT_SECONDS,
    key::RELAUNCH,
    key::LEGACY_GLACIER,
    key::NO_COMPUTER_LISTING,
    key::LOG_LEVEL,
    key::ENABLED,
];

/// What the log file and the unified log get.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogLevel {
    /// Every step, and a line for each run that had nothing to do.
    Debug,
    /// Every step (the default).
    #[default]
    Info,
    /// Only problems.
    Warning,
}

/// Every setting `apply` takes from preferences; `None` where no file sets it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preferences {
    pub source: Option<SourceKind>,
    pub service_url: Option<String>,
    pub service_id: Option<String>,
    pub enrollment_token: Option<Secret>,
    pub permissions_boundary: Option<String>,
    pub quit_arq: Option<bool>,
    pub terminate_arq: Option<bool>,
    pub wait_seconds: Option<u64>,
    pub verify_timeout_seconds: Option<u64>,
    pub relaunch: Option<bool>,
    pub legacy_glacier: Option<bool>,
    pub no_computer_listing: Option<bool>,
    pub log_level: Option<LogLevel>,
    pub enabled: Option<bool>,
}

impl Preferences {
    /// Why a managed run (`apply --managed`: the LaunchAgent's, a Jamf policy's) does nothing, if
    /// it does nothing: the profile switches arq-lockdown off, or no profile says where keys come
    /// from yet (the pkg may land before the profile; guessing `iam` would let the Mac use the
    /// main keys the admin meant to keep off it).
    pub fn why_a_managed_run_waits(&self) -> Option<&'static str> {
        if self.enabled == Some(false) {
            Some(
                "the configuration profile switches arq-lockdown off on this Mac (Enabled = false)",
            )
        } else if self.source.is_none() {
            Some(
                "no configuration profile sets Source yet (install the profile; nothing is done until then)",
            )
        } else {
            None
        }
    }
}

/// The preference files, most important first.
#[derive(Clone, Debug)]
pub struct PreferenceFiles {
    pub managed_for_user: PathBuf,
    pub managed_for_computer: PathBuf,
    pub local: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("preferences {path}: {reason}; fix or remove the configuration profile")]
pub struct PreferencesError {
    pub path: PathBuf,
    pub reason: String,
}

impl PreferencesError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::ConfigInvalid
    }
}

impl PreferenceFiles {
    /// Where macOS puts them for `user`.
    pub fn for_user(user: &str) -> Self {
        Self {
            managed_for_user: PathBuf::from(format!(
                "/Library/Managed Preferences/{user}/{IDENTIFIER}.plist"
            )),
            managed_for_computer: PathBuf::from(format!(
                "/Library/Managed Preferences/{IDENTIFIER}.plist"
            )),
            local: PathBuf::from(format!("/Library/Preferences/{IDENTIFIER}.plist")),
        }
    }

    /// Reads and merges the files; a missing file sets nothing.
    pub fn load(&self) -> Result<Preferences, PreferencesError> {
        let mut merged = Preferences::default();
        // Least important first, so each later file overrides.
        for (path, managed) in [
            (&self.local, false),
            (&self.managed_for_computer, true),
            (&self.managed_for_user, true),
        ] {
            if let Some(dict) = read_dict(path)? {
                apply_file(&mut merged, &dict, path, managed)?;
            }
        }
        Ok(merged)
    }
}

fn read_dict(path: &Path) -> Result<Option<plist::Dictionary>, PreferencesError> {
    let error = |reason: String| PreferencesError {
        path: path.to_owned(),
        reason,
    };
    let bytes = match crate::fs::read_small_file(path, MAX_PREFERENCES_BYTES) {
        Ok(bytes) => bytes,
        Err(ReadError::NotFound) => return Ok(None),
        Err(ReadError::Io(e)) => return Err(error(e.to_string())),
        Err(ReadError::Refused(refusal)) => return Err(error(refusal.to_string())),
        Err(ReadError::NotAFile | ReadError::TooLarge) => {
            return Err(error("not a preference file".into()));
        }
    };
    let value = plist::Value::from_reader(std::io::Cursor::new(bytes))
        .map_err(|_| error("not a property list (corrupt or cut short)".into()))?;
    match value {
        plist::Value::Dictionary(dict) => Ok(Some(dict)),
        _ => Err(error("not a dictionary".into())),
    }
}

fn apply_file(
    into: &mut Preferences,
    dict: &plist::Dictionary,
    path: &Path,
    managed: bool,
) -> Result<(), PreferencesError> {
    let wrong = |key: &str, wanted: &str| PreferencesError {
        path: path.to_owned(),
        reason: format!("{key} must be {wanted}"),
    };
    let string = |key: &str| -> Result<Option<String>, PreferencesError> {
        match dict.get(key) {
            None => Ok(None),
            Some(plist::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(wrong(key, "a string")),
        }
    };
    let boolean = |key: &str| -> Result<Option<bool>, PreferencesError> {
        match dict.get(key) {
            None => Ok(None),
            Some(plist::Value::Boolean(b)) => Ok(Some(*b)),
            Some(_) => Err(wrong(key, "a boolean")),
        }
    };
    let seconds = |key: &str| -> Result<Option<u64>, PreferencesError> {
        match dict.get(key) {
            None => Ok(None),
            Some(plist::Value::Integer(i)) => i
                .as_unsigned()
                .filter(|s| *s <= 3600)
                .map(Some)
                .ok_or_else(|| wrong(key, "0 to 3600")),
            Some(_) => Err(wrong(key, "an integer")),
        }
    };
    if managed {
        into.source = match string(key::SOURCE)?.as_deref() {
            None => into.source,
            Some("iam") => Some(SourceKind::Iam),
            Some("service") => Some(SourceKind::Service),
            Some(_) => return Err(wrong(key::SOURCE, "\"iam\" or \"service\"")),
        };
        into.service_url = string(key::SERVICE_URL)?.or(into.service_url.take());
        into.service_id = string(key::SERVICE_ID)?.or(into.service_id.take());
        into.permissions_boundary =
            string(key::PERMISSIONS_BOUNDARY)?.or(into.permissions_boundary.take());
        if let Some(token) = string(key::ENROLLMENT_TOKEN)? {
            into.enrollment_token = Some(Secret::new(token));
        }
    }
    into.quit_arq = boolean(key::QUIT_ARQ)?.or(into.quit_arq);
    into.terminate_arq = boolean(key::TERMINATE_ARQ)?.or(into.terminate_arq);
    into.wait_seconds = seconds(key::WAIT_SECONDS)?.or(into.wait_seconds);
    into.verify_timeout_seconds =
        seconds(key::VERIFY_TIMEOUT_SECONDS)?.or(into.verify_timeout_seconds);
    into.relaunch = boolean(key::RELAUNCH)?.or(into.relaunch);
    into.legacy_glacier = boolean(key::LEGACY_GLACIER)?.or(into.legacy_glacier);
    into.no_computer_listing = boolean(key::NO_COMPUTER_LISTING)?.or(into.no_computer_listing);
    into.enabled = boolean(key::ENABLED)?.or(into.enabled);
    into.log_level = match string(key::LOG_LEVEL)?.as_deref() {
        None => into.log_level,
        Some("debug") => Some(LogLevel::Debug),
        Some("info") => Some(LogLevel::Info),
        Some("warning") => Some(LogLevel::Warning),
        Some(_) => return Err(wrong(key::LOG_LEVEL, "\"debug\", \"info\" or \"warning\"")),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, entries: &[(&str, plist::Value)]) {
        let dict: plist::Dictionary = entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        plist::Value::Dictionary(dict).to_file_xml(path).unwrap();
    }

    fn files(dir: &Path) -> PreferenceFiles {
        PreferenceFiles {
            managed_for_user: dir.join("user.plist"),
            managed_for_computer: dir.join("computer.plist"),
            local: dir.join("local.plist"),
        }
    }

    #[test]
    fn no_files_set_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(files(dir.path()).load().unwrap(), Preferences::default());
    }

    #[test]
    fn managed_for_the_user_beats_managed_for_the_computer_beats_local() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path());
        write(
            &files.local,
            &[
                ("QuitArq", true.into()),
                ("WaitSeconds", 10.into()),
                ("LegacyGlacier", true.into()),
            ],
        );
        write(
            &files.managed_for_computer,
            &[
                ("QuitArq", false.into()),
                ("WaitSeconds", 20.into()),
                ("ServiceURL", "https://computer.example".into()),
            ],
        );
        write(
            &files.managed_for_user,
            &[
                ("WaitSeconds", 30.into()),
                ("ServiceURL", "https://user.example".into()),
            ],
        );
        let prefs = files.load().unwrap();
        assert_eq!(prefs.wait_seconds, Some(30));
        assert_eq!(prefs.quit_arq, Some(false));
        assert_eq!(prefs.legacy_glacier, Some(true));
        assert_eq!(prefs.service_url.as_deref(), Some("https://user.example"));
    }

    #[test]
    fn a_local_file_cannot_set_where_keys_come_from() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path());
        write(
            &files.local,
            &[
                (key::SOURCE, "service".into()),
                (key::SERVICE_URL, "https://evil.example".into()),
                (key::SERVICE_ID, "evil.example".into()),
                (key::ENROLLMENT_TOKEN, "t".into()),
                (
                    key::PERMISSIONS_BOUNDARY,
                    "arn:aws:iam::1:policy/none".into(),
                ),
                (key::RELAUNCH, false.into()),
            ],
        );
        let prefs = files.load().unwrap();
        assert_eq!(
            prefs,
            Preferences {
                relaunch: Some(false),
                ..Preferences::default()
            },
            "a local file set a key only a profile may"
        );
    }

    #[test]
    fn a_managed_run_acts_only_on_a_profiles_source_and_never_when_switched_off() {
        let with = |source, enabled| Preferences {
            source,
            enabled,
            ..Preferences::default()
        };
        for (preferences, acts) in [
            (with(None, None), false),
            (with(None, Some(true)), false),
            (with(Some(SourceKind::Service), None), true),
            (with(Some(SourceKind::Iam), Some(true)), true),
            (with(Some(SourceKind::Service), Some(false)), false),
        ] {
            assert_eq!(
                preferences.why_a_managed_run_waits().is_none(),
                acts,
                "{preferences:?}"
            );
        }
        assert!(
            with(Some(SourceKind::Iam), Some(false))
                .why_a_managed_run_waits()
                .unwrap()
                .contains("Enabled = false")
        );
    }

    #[rustfmt::skip]
    #[test]
    fn log_levels_and_terminate_arq_are_read_from_any_file() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path());
        for (value, level) in [("debug", LogLevel::Debug), ("info", LogLevel::Info), ("warning", LogLevel::Warning)] {
            write(&files.local, &[(key::LOG_LEVEL, value.into()), (key::TERMINATE_ARQ, true.into())]);
            let prefs = files.load().unwrap();
            assert_eq!((prefs.log_level, prefs.terminate_arq), (Some(level), Some(true)), "{value}");
        }
        write(&files.local, &[(key::LOG_LEVEL, "verbose".into())]);
        let message = files.load().unwrap_err().to_string();
        assert!(message.contains("LogLevel must be \"debug\", \"info\" or \"warning\""), "{message}");
        assert_eq!(LogLevel::default(), LogLevel::Info);
    }

    #[test]
    fn wrong_types_name_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path());
        write(&files.managed_for_computer, &[("QuitArq", "yes".into())]);
        let message = files.load().unwrap_err().to_string();
        assert!(
            message.contains("computer.plist") && message.contains("QuitArq must be a boolean"),
            "{message}"
        );
        write(&files.managed_for_computer, &[("Source", "s3".into())]);
        assert!(files.load().is_err());
    }
}
