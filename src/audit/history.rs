//! `audit --history DIR`: the fleet's counts run by run, for the page's chart.
//!
//! Owns one file per bucket, `DIR/audit-<bucket>.jsonl`: one JSON object a line, one line a run.
//! So that a job run hourly for years does not grow it without bound, runs older than
//! [`EVERY_RUN_DAYS`] days are thinned to the last of each day (UTC), and at most [`MAX_ENTRIES`]
//! lines are kept, the newest (ten years of a daily job; about 1.5 MB at most). Each run reads
//! what is there (before the audit), skips what it cannot use (not JSON, not an entry, a time that
//! is not a time or lies after this run, counts beyond `u32`), and writes the file anew in one
//! atomic rename: a killed run leaves the old file or the new one. Counts only: no name, no key id.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::Report;
use super::decide::MainKeyStatus;

/// Runs this recent are all kept; older ones only as the last of their day.
pub const EVERY_RUN_DAYS: i64 = 31;

/// The most lines a history keeps: the newest (a month of hourly runs and ten years of days).
pub const MAX_ENTRIES: usize = 4_500;

/// The most of a history file read: a full history is ~1.5 MB; more is not one this tool wrote.
const MAX_BYTES: u64 = 8 << 20;

/// Main-key statuses (as `audit --json` names them) that mean the key cannot be used any more.
/// This is the hook for the retirement: a status that `retire-main-keys` leaves behind (a key
/// made inactive, say) belongs here, and the chart marks the first day every main key has one.
const RETIRED_STATUSES: &[MainKeyStatus] = &[MainKeyStatus::NotFound];

/// One run's summary, as one line of the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When the run was, RFC 3339 in UTC.
    pub time: String,
    pub computers: u32,
    /// The number of computers in each state, by the state's name.
    pub states: BTreeMap<String, u32>,
    /// The verdict: may the main keys be retired?
    pub ready_to_retire_main_keys: bool,
    /// The number of main keys with each status (`used`, `not-found`, …).
    pub main_keys: BTreeMap<String, u32>,
}

impl Entry {
    /// The summary of `report`.
    pub fn of(report: &Report) -> Entry {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let mut main_keys = BTreeMap::new();
        for key in &report.main_keys {
            *main_keys.entry(key.status.as_str().to_owned()).or_insert(0) += 1;
        }
        Entry {
            time: report.generated_at.clone(),
            computers: count(report.summary.computers),
            states: report
                .summary
                .states
                .iter()
                .map(|(state, n)| (state.clone(), n.as_u64().map_or(0, |n| count(n as usize))))
                .collect(),
            ready_to_retire_main_keys: report.ready_to_retire_main_keys,
            main_keys,
        }
    }

    /// When the run was (entries read back are checked to have a time).
    pub fn at(&self) -> Timestamp {
        self.time.parse().unwrap_or_default()
    }

    /// The UTC day of the run, `YYYY-MM-DD`.
    pub fn day(&self) -> &str {
        self.time.get(..10).unwrap_or_default()
    }

    /// How many computers were in `state` (by its name).
    pub fn count(&self, state: &str) -> u32 {
        self.states.get(state).copied().unwrap_or(0)
    }

    /// Every main key known to this run was gone (see [`RETIRED_STATUSES`]).
    pub fn main_keys_retired(&self) -> bool {
        let mut statuses = self.main_keys.iter().filter(|(_, n)| **n > 0).peekable();
        statuses.peek().is_some()
            && statuses.all(|(s, _)| RETIRED_STATUSES.iter().any(|r| r.as_str() == s))
    }
}

/// Why a history cannot be used; nothing was read from AWS or written yet.
#[derive(Debug, thiserror::Error)]
#[error("cannot use the audit history {}: {problem}; {fix}", path.display())]
pub struct HistoryError {
    path: PathBuf,
    problem: String,
    fix: &'static str,
}

/// A bucket's history, read and ready for this run's entry.
#[derive(Debug)]
pub struct History {
    file: PathBuf,
    entries: Vec<Entry>,
    /// The lines skipped as unusable (they are gone once the history is saved).
    pub skipped: usize,
}

/// The history file of `bucket` in `dir`.
pub fn path(dir: &Path, bucket: &str) -> PathBuf {
    dir.join(format!("audit-{bucket}.jsonl"))
}

impl History {
    /// Reads the history of `bucket` in `dir` (none yet: empty); `dir` must be a folder. Called
    /// before the audit, so that a wrong path costs no AWS call.
    pub fn load(dir: &Path, bucket: &str) -> Result<History, HistoryError> {
        let file = path(dir, bucket);
        let error = |problem: String, fix| HistoryError {
            path: file.clone(),
            problem,
            fix,
        };
        if !dir.is_dir() {
            return Err(error(
                "--history names no folder".to_owned(),
                "create it (mkdir -p) or fix the path",
            ));
        }
        let text = match crate::fs::read_small_file(&file, MAX_BYTES) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(crate::fs::ReadError::NotFound) => String::new(),
            Err(crate::fs::ReadError::Io(e)) => {
                return Err(error(e.to_string(), "check its permissions"));
            }
            Err(crate::fs::ReadError::Refused(refusal)) => {
                return Err(error(
                    refusal.to_string(),
                    "give the history folder's real path",
                ));
            }
            Err(crate::fs::ReadError::NotAFile) => {
                return Err(error("not a regular file".to_owned(), "move it away"));
            }
            Err(crate::fs::ReadError::TooLarge) => {
                let problem = format!("larger than {MAX_BYTES} bytes, so not one this tool wrote");
                return Err(error(problem, "move it away"));
            }
        };
        let (entries, skipped) = parse(&text, Timestamp::now());
        Ok(History {
            file,
            entries: thinned(entries),
            skipped,
        })
    }

    /// Adds this run's `entry`.
    pub fn add(&mut self, entry: Entry) {
        self.entries.push(entry);
        self.entries = thinned(std::mem::take(&mut self.entries));
    }

    /// Oldest first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Writes the history anew (one atomic rename), without the lines it skipped.
    pub fn save(&self) -> std::io::Result<()> {
        let mut lines = String::new();
        for entry in &self.entries {
            lines += &serde_json::to_string(entry).expect("an entry serializes");
            lines.push('\n');
        }
        crate::fs::write_atomically(&self.file, lines.as_bytes(), 0o644).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("the audit history {}: {e}", self.file.display()),
            )
        })
    }
}

/// The usable entries of a history's text (none after `now`), and how many lines were not.
fn parse(text: &str, now: Timestamp) -> (Vec<Entry>, usize) {
    let mut entries = Vec::new();
    let mut skipped = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let usable = serde_json::from_str::<Entry>(line).ok().filter(|e| {
            e.time
                .parse::<Timestamp>()
                .is_ok_and(|at| at <= now && crate::audit::decide::second(at) == e.time)
        });
        match usable {
            Some(entry) => entries.push(entry),
            None => skipped += 1,
        }
    }
    (entries, skipped)
}

/// `entries` by time: every run of the last [`EVERY_RUN_DAYS`] days (counted back from the
/// newest), the last run of each day before, and of those the newest [`MAX_ENTRIES`].
fn thinned(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by_key(Entry::at);
    let Some(newest) = entries.last().map(Entry::at) else {
        return entries;
    };
    let every_run_from = newest.as_second() - EVERY_RUN_DAYS * 86_400;
    let mut kept: Vec<Entry> = Vec::with_capacity(entries.len());
    for entry in entries {
        match kept.last_mut() {
            Some(last) if last.day() == entry.day() && last.at().as_second() < every_run_from => {
                *last = entry;
            }
            _ => kept.push(entry),
        }
    }
    let excess = kept.len().saturating_sub(MAX_ENTRIES);
    kept.drain(..excess);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(time: &str, locked_down: u32) -> Entry {
        Entry {
            time: time.to_owned(),
            computers: 10,
            states: BTreeMap::from([("locked-down".to_owned(), locked_down)]),
            ready_to_retire_main_keys: false,
            main_keys: BTreeMap::from([("used".to_owned(), 1)]),
        }
    }

    fn line(entry: &Entry) -> String {
        serde_json::to_string(entry).unwrap()
    }

    #[test]
    #[rustfmt::skip]
    fn lines_it_cannot_use_are_skipped() {
        let now: Timestamp = "2026-05-10T00:00:00Z".parse().unwrap();
        let good = entry("2026-05-01T06:00:00Z", 3);
        let cases: Vec<(&str, String, bool)> = vec![
            ("an entry", line(&good), true),
            ("not JSON", "<script>alert(1)</script>".into(), false),
            ("JSON, not an entry", r#"{"time": "2026-05-01T06:00:00Z"}"#.into(), false),
            ("a time that is not one", line(&Entry { time: "yesterday".into(), ..good.clone() }), false),
            ("a time with a fraction", line(&Entry { time: "2026-05-01T06:00:00.5Z".into(), ..good.clone() }), false),
            ("a time in an offset", line(&Entry { time: "2026-05-01T06:00:00+02:00".into(), ..good.clone() }), false),
            ("after this run", line(&entry("2026-05-11T00:00:00Z", 3)), false),
            ("a count beyond u32", line(&good).replace("\"locked-down\":3", "\"locked-down\":99999999999"), false),
            ("a negative count", line(&good).replace("\"locked-down\":3", "\"locked-down\":-1"), false),
            ("a state it does not know: kept", line(&good).replace("\"locked-down\":3", "\"someday\":3"), true),
            ("a field it does not know: kept", line(&good).replace("{", "{\"later\":1,"), true),
        ];
        for (name, text, usable) in cases {
            let (entries, skipped) = parse(&text, now);
            assert_eq!((entries.len(), skipped), (usable as usize, !usable as usize), "{name}");
        }
    }

    #[test]
    fn old_runs_are_thinned_to_one_a_day_and_the_history_keeps_its_newest() {
        let entries = vec![
            entry("2026-05-02T09:00:00Z", 5),
            entry("2026-03-01T06:00:00Z", 1),
            entry("2026-03-01T18:00:00Z", 2),
            entry("2026-05-02T08:00:00Z", 4),
        ];
        let times: Vec<String> = thinned(entries).into_iter().map(|e| e.time).collect();
        assert_eq!(
            times,
            [
                "2026-03-01T18:00:00Z",
                "2026-05-02T08:00:00Z",
                "2026-05-02T09:00:00Z"
            ],
            "two months back one a day, the last month every run"
        );

        let start: Timestamp = "2000-01-01T00:00:00Z".parse().unwrap();
        let many: Vec<Entry> = (0..MAX_ENTRIES as i64 + 5)
            .map(|d| {
                let at = Timestamp::from_second(start.as_second() + d * 86_400).unwrap();
                entry(&crate::audit::decide::second(at), 0)
            })
            .collect();
        let kept = thinned(many.clone());
        assert_eq!(kept.len(), MAX_ENTRIES);
        assert_eq!(kept[0], many[5], "the oldest go first");
    }

    #[test]
    fn each_run_adds_a_line_and_the_file_is_written_anew_without_junk() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path(), "fleet.example");
        let old = entry("2026-05-01T06:00:00Z", 1);
        std::fs::write(&file, format!("{}\nnot json\n", line(&old))).unwrap();
        let run = |entry: Entry| {
            let mut history = History::load(dir.path(), "fleet.example").unwrap();
            history.add(entry);
            history.save().unwrap();
            (history.entries().len(), history.skipped)
        };
        assert_eq!(run(entry("2026-05-02T06:00:00Z", 2)), (2, 1));
        assert_eq!(
            run(entry("2026-05-02T07:00:00Z", 3)),
            (3, 0),
            "the junk line is gone"
        );
        let written = std::fs::read_to_string(&file).unwrap();
        let expected = [
            old,
            entry("2026-05-02T06:00:00Z", 2),
            entry("2026-05-02T07:00:00Z", 3),
        ]
        .map(|e| line(&e) + "\n");
        assert_eq!(written, expected.concat());
    }

    #[test]
    fn a_history_that_is_no_folder_is_refused_before_the_audit() {
        let dir = tempfile::tempdir().unwrap();
        let error = History::load(&dir.path().join("missing"), "fleet.example").unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("--history names no folder; create it (mkdir -p) or fix the path"),
            "{error}"
        );
        std::fs::create_dir(path(dir.path(), "fleet.example")).unwrap();
        let error = History::load(dir.path(), "fleet.example").unwrap_err();
        assert!(error.to_string().contains("not a regular file"), "{error}");
    }

    #[test]
    fn the_main_keys_are_retired_when_every_one_is_gone() {
        let with = |statuses: &[(&str, u32)]| Entry {
            main_keys: statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
            ..entry("2026-05-01T06:00:00Z", 1)
        };
        assert!(with(&[("not-found", 2)]).main_keys_retired());
        assert!(with(&[("not-found", 1), ("used", 0)]).main_keys_retired());
        assert!(!with(&[("not-found", 1), ("never-used", 1)]).main_keys_retired());
        assert!(!with(&[]).main_keys_retired(), "no main key known");
    }
}
