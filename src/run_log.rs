//! The log an admin can find: one line per step of each `apply`, in the user's
//! `~/Library/Logs/arq-lockdown/arq-lockdown.log`, next to what the terminal shows, and on macOS in
//! the unified log too (subsystem `org.arq-lockdown`: `log show --predicate
//! 'subsystem == "org.arq-lockdown"'`).
//!
//! It is opened once per run through [`crate::fs`]'s rules — no symlink someone else could have
//! made is followed, only a folder and a file of this user's, a file with no other name — and
//! every line goes to that open file. Root never writes a user's log: a root run acting for a
//! user runs as them (see [`crate::session`]). Lines hold key ids and ARNs, never secrets.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::fs::Dir;

/// Where the log lives, relative to the user's home folder.
pub const LOG_RELATIVE_PATH: &str = "Library/Logs/arq-lockdown/arq-lockdown.log";

/// The log's folder and name, relative to the home folder.
const LOG_FOLDER: &str = "Library/Logs/arq-lockdown";
const LOG_NAME: &str = "arq-lockdown.log";
const PREVIOUS_LOG_NAME: &str = "arq-lockdown.log.1";

/// Past this size the log is started afresh (one previous file is kept as `.1`).
const MAX_LOG_BYTES: u64 = 1024 * 1024;

pub struct RunLog {
    file: File,
    /// Every step (`info`), or only warnings and errors (`warning`).
    steps: bool,
}

impl RunLog {
    /// The log under `home`, or `None` when it cannot be written safely. Only a home with a
    /// `Library/Logs` folder (every Mac user's) gets one: the tool makes no folders of its own
    /// in homes that are not a Mac user's.
    pub fn open(home: &Path, steps: bool) -> Option<Self> {
        Dir::open(&home.join("Library/Logs")).ok()?;
        let folder = Dir::create(&home.join(LOG_FOLDER), 0o700).ok()?;
        let mut file = folder.append(LOG_NAME, 0o600).ok()?;
        if file.metadata().ok()?.len() > MAX_LOG_BYTES {
            folder
                .rename(LOG_NAME.as_ref(), PREVIOUS_LOG_NAME.as_ref())
                .ok()?;
            file = folder.append(LOG_NAME, 0o600).ok()?;
        }
        Some(Self { file, steps })
    }

    /// Logs a step, unless the log level is `warning`.
    pub fn step(&self, text: &str) {
        if self.steps {
            self.line(text);
        }
    }

    /// Appends one timestamped line; a log that cannot be written is not worth failing a run for.
    pub fn line(&self, text: &str) {
        unified_log(text);
        let line = format!(
            "{} [{}] {}\n",
            utc_timestamp(crate::receipt::now_unix()),
            std::process::id(),
            text.replace('\n', " ")
        );
        let _ = (&self.file).write_all(line.as_bytes());
    }
}

/// Platform-specific: on macOS the line also goes to the unified log, subsystem = the identifier.
fn unified_log(text: &str) {
    #[cfg(target_os = "macos")]
    oslog::OsLog::new(crate::preferences::IDENTIFIER, "apply").with_level(oslog::Level::Info, text);
    #[cfg(not(target_os = "macos"))]
    let _ = text;
}

/// Seconds since the epoch as `2026-11-27T19:00:00Z`.
fn utc_timestamp(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(
            || seconds.to_string(),
            |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_iso_8601() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(1_795_806_000), "2026-11-27T19:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
    }
}
