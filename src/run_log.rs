//! The log an admin can find: one line per step of each `apply`, in the user's
//! `~/Library/Logs/arq-lockdown/arq-lockdown.log`, next to what the terminal shows, and on macOS in
//! the unified log too (subsystem `org.arq-lockdown`, category `apply`).
//!
//! Every line has a [`Severity`], and the profile's `LogLevel` decides which lines are written at
//! all, to both logs. In the unified log steps and warnings are Default messages (kept on disk and
//! shown by `log show` without `--info`), failures Error, bugs Fault, and the line of a run that
//! had nothing to do Debug (kept only where debug logging is switched on). A condition that
//! repeats at every run and that nobody can act on hourly — no Arq for this user, no profile yet —
//! is written [`RunLog::once_a_day`]: the log itself remembers when it last said so.
//!
//! It is opened once per run through [`crate::fs`]'s rules — no symlink someone else could have
//! made is followed, only a folder and a file of this user's, a file with no other name — and
//! every line goes to that open file. Root never writes a user's log: a root run acting for a
//! user runs as them (see [`crate::session`]). Lines hold key ids and ARNs, never secrets.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::fs::Dir;

use crate::preferences::LogLevel;

/// Where the log lives, relative to the user's home folder (its folder and name below).
pub const LOG_RELATIVE_PATH: &str = "Library/Logs/arq-lockdown/arq-lockdown.log";
const LOG_FOLDER: &str = "Library/Logs/arq-lockdown";
const LOG_NAME: &str = "arq-lockdown.log";
const PREVIOUS_LOG_NAME: &str = "arq-lockdown.log.1";

/// Past this size the log is started afresh (one previous file is kept as `.1`).
const MAX_LOG_BYTES: u64 = 1024 * 1024;

/// How far back [`RunLog::once_a_day`] reads the log for the line it is about to write.
const ONCE_A_DAY_LOOKBACK_BYTES: u64 = 64 * 1024;

const DAY_SECONDS: u64 = 24 * 60 * 60;

/// How much a line matters, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// A run that found nothing to do.
    Debug,
    /// A step of the lockdown.
    Step,
    /// Something an admin should know that did not stop the run.
    Warning,
    /// The run failed (the message says why and what to do).
    Error,
    /// The run failed on a bug or an unexpected condition (exit code 1).
    Fault,
}

/// The unified log's message types arq-lockdown writes (`os_log_type_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OsLogType {
    Debug,
    Default,
    Error,
    Fault,
}

impl Severity {
    /// The unified log's type for a line: Info messages live only in memory unless enabled, so
    /// nothing an admin must find later is written at Info.
    pub fn os_log_type(self) -> OsLogType {
        match self {
            Self::Debug => OsLogType::Debug,
            Self::Step | Self::Warning => OsLogType::Default,
            Self::Error => OsLogType::Error,
            Self::Fault => OsLogType::Fault,
        }
    }

    /// Whether `LogLevel` = `level` lets a line of this severity through.
    pub fn passes(self, level: LogLevel) -> bool {
        let least = match level {
            LogLevel::Debug => Self::Debug,
            LogLevel::Info => Self::Step,
            LogLevel::Warning => Self::Warning,
        };
        self >= least
    }
}

pub struct RunLog {
    file: File,
    level: LogLevel,
}

impl RunLog {
    /// The log under `home`, or `None` when it cannot be written safely. Only a home with a
    /// `Library/Logs` folder (every Mac user's) gets one: the tool makes no folders of its own
    /// in homes that are not a Mac user's.
    pub fn open(home: &Path, level: LogLevel) -> Option<Self> {
        Dir::open(&home.join("Library/Logs")).ok()?;
        let folder = Dir::create(&home.join(LOG_FOLDER), 0o700).ok()?;
        let mut file = folder.append(LOG_NAME, 0o600).ok()?;
        if file.metadata().ok()?.len() > MAX_LOG_BYTES {
            folder
                .rename(LOG_NAME.as_ref(), PREVIOUS_LOG_NAME.as_ref())
                .ok()?;
            file = folder.append(LOG_NAME, 0o600).ok()?;
        }
        Some(Self { file, level })
    }

    /// Writes one line of `severity`, when the log level lets it through: to the unified log and
    /// as a timestamped line to the file. A log that cannot be written is not worth failing a
    /// run for.
    pub fn write(&self, severity: Severity, text: &str) {
        if !severity.passes(self.level) {
            return;
        }
        let text = text.replace('\n', " ");
        unified_log(severity.os_log_type(), &text);
        let line = format!(
            "{} [{}] {text}\n",
            utc_timestamp(crate::receipt::now_unix()),
            std::process::id(),
        );
        let _ = (&self.file).write_all(line.as_bytes());
    }

    /// Writes `text` unless the log already holds the same line from the last 24 hours (then
    /// only a Debug line in the unified log says that the run happened).
    pub fn once_a_day(&self, severity: Severity, text: &str) {
        let text = text.replace('\n', " ");
        let recent = tail(&self.file).ok();
        let now = crate::receipt::now_unix();
        if recent.is_some_and(|tail| said_since(&tail, &text, now.saturating_sub(DAY_SECONDS))) {
            if Severity::Debug.passes(self.level) {
                unified_log(OsLogType::Debug, &format!("(said today already) {text}"));
            }
            return;
        }
        self.write(severity, &text);
    }
}

/// The last [`ONCE_A_DAY_LOOKBACK_BYTES`] of the log, as text.
fn tail(mut file: &File) -> std::io::Result<String> {
    let length = file.metadata()?.len();
    file.seek(SeekFrom::Start(
        length.saturating_sub(ONCE_A_DAY_LOOKBACK_BYTES),
    ))?;
    let mut bytes = Vec::new();
    file.take(ONCE_A_DAY_LOOKBACK_BYTES)
        .read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Whether `log` (lines as [`RunLog::write`] writes them) holds `text` at or after `since`.
fn said_since(log: &str, text: &str, since: u64) -> bool {
    log.lines().any(|line| {
        let Some((stamp, rest)) = line.split_once(' ') else {
            return false;
        };
        let said = rest.split_once("] ").map(|(_, said)| said);
        said == Some(text) && parse_timestamp(stamp).is_some_and(|at| at >= since)
    })
}

/// Platform-specific: on macOS the line also goes to the unified log, subsystem = the identifier.
fn unified_log(kind: OsLogType, text: &str) {
    #[cfg(target_os = "macos")]
    {
        let level = match kind {
            OsLogType::Debug => oslog::Level::Debug,
            OsLogType::Default => oslog::Level::Default,
            OsLogType::Error => oslog::Level::Error,
            OsLogType::Fault => oslog::Level::Fault,
        };
        oslog::OsLog::new(crate::preferences::IDENTIFIER, "apply").with_level(level, text);
    }
    #[cfg(not(target_os = "macos"))]
    let _ = (kind, text);
}

/// Seconds since the epoch as `2026-11-27T19:00:00Z`.
pub fn utc_timestamp(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(
            || seconds.to_string(),
            |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )
}

/// The inverse of [`utc_timestamp`].
fn parse_timestamp(text: &str) -> Option<u64> {
    let at: jiff::Timestamp = text.parse().ok()?;
    u64::try_from(at.as_second()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_iso_8601() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(1_795_806_000), "2026-11-27T19:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(parse_timestamp("2026-11-27T19:00:00Z"), Some(1_795_806_000));
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[rustfmt::skip]
    #[test]
    fn each_severity_has_a_unified_log_type_that_is_kept() {
        for (severity, kind) in [
            (Severity::Debug,   OsLogType::Debug),
            (Severity::Step,    OsLogType::Default),
            (Severity::Warning, OsLogType::Default),
            (Severity::Error,   OsLogType::Error),
            (Severity::Fault,   OsLogType::Fault),
        ] {
            assert_eq!(severity.os_log_type(), kind, "{severity:?}");
        }
    }

    #[rustfmt::skip]
    #[test]
    fn the_log_level_decides_every_line() {
        use LogLevel::{Debug, Info, Warning};
        for (severity, debug, info, warning) in [
            (Severity::Debug,   true, false, false),
            (Severity::Step,    true, true,  false),
            (Severity::Warning, true, true,  true),
            (Severity::Error,   true, true,  true),
            (Severity::Fault,   true, true,  true),
        ] {
            assert_eq!(
                [severity.passes(Debug), severity.passes(Info), severity.passes(Warning)],
                [debug, info, warning],
                "{severity:?}"
            );
        }
    }

    #[test]
    fn a_line_is_said_once_a_day() {
        let log = "2026-11-27T19:00:00Z [7] nothing done: no Arq\n\
                   2026-11-27T20:00:00Z [8] something else\n";
        let at = |t: &str| parse_timestamp(t).unwrap();
        assert!(said_since(
            log,
            "nothing done: no Arq",
            at("2026-11-27T18:00:00Z")
        ));
        assert!(said_since(
            log,
            "nothing done: no Arq",
            at("2026-11-27T19:00:00Z")
        ));
        assert!(!said_since(
            log,
            "nothing done: no Arq",
            at("2026-11-27T19:00:01Z")
        ));
        assert!(
            !said_since(log, "nothing done", at("2026-11-27T18:00:00Z")),
            "whole lines only"
        );
        assert!(!said_since("garbage\n[x] y\n", "y", 0));
    }

    #[test]
    fn the_file_log_honours_the_level_and_says_a_daily_line_once() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join("Library/Logs")).unwrap();
        let read = || std::fs::read_to_string(home.path().join(LOG_RELATIVE_PATH)).unwrap();
        let quiet = RunLog::open(home.path(), LogLevel::Warning).unwrap();
        quiet.write(Severity::Step, "a step");
        quiet.write(Severity::Debug, "nothing to do");
        quiet.write(Severity::Error, "error: it failed");
        quiet.once_a_day(Severity::Step, "nothing done: no Arq");
        assert!(read().ends_with("] error: it failed\n"), "{}", read());
        assert_eq!(read().lines().count(), 1, "{}", read());
        let log = RunLog::open(home.path(), LogLevel::Info).unwrap();
        log.once_a_day(Severity::Step, "nothing done: no Arq");
        log.once_a_day(Severity::Step, "nothing done: no Arq");
        log.write(Severity::Debug, "nothing to do");
        assert_eq!(
            read().matches("nothing done: no Arq").count(),
            1,
            "{}",
            read()
        );
        assert_eq!(read().lines().count(), 2, "{}", read());
    }
}
