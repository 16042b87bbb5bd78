//! Setbacks: what stopped this user's last `apply` short of a lockdown, when it is something an
//! admin must hear of and the agent must not run into again every hour — another Mac holding this
//! computer's binding, the admin not having confirmed this Mac yet, the user denying the Keychain.
//!
//! Kept beside the receipt in `~/Library/Application Support/arq-lockdown/setback.json` (no
//! secrets), written by the run that met it, read by `status` (and its Jamf extension attribute)
//! and by the next run, and removed by the run that locks the Mac down. It describes the last
//! setback only: a newer one of another kind replaces it; the same kind again counts up (for
//! backoff).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fs::{read_small_file, write_atomically};

/// Where the setback lives, relative to the user's home folder.
pub const SETBACK_RELATIVE_PATH: &str = "Library/Application Support/arq-lockdown/setback.json";

/// A setback is a few hundred bytes.
const MAX_SETBACK_BYTES: u64 = 64 * 1024;

/// What kind of setback; each says what the admin or the user must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SetbackKind {
    /// The service refused: this computer UUID is bound (or pinned) to another Mac's enrollment
    /// key. The admin must find out which Mac is the real one.
    ClaimedByAnotherMac,
    /// The service refused: this computer has backups, so the admin must confirm this Mac (from
    /// the MDM's inventory) before it may enroll.
    AwaitingConfirmation,
    /// The user denied arq-lockdown the "Arq S3" secret in the Keychain dialog.
    KeychainDenied,
}

/// The last setback of this user's `apply`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setback {
    pub kind: SetbackKind,
    /// The computer it concerns (Arq's config then), when known.
    pub computer_uuid: Option<String>,
    /// When this kind was first met, in a row, and when last (seconds since the epoch).
    pub first_at_unix: u64,
    pub last_at_unix: u64,
    /// Runs in a row that met it.
    pub count: u32,
    /// One line for people: what happened and what to do (never a secret).
    pub detail: String,
}

impl Setback {
    pub fn path(home: &Path) -> PathBuf {
        home.join(SETBACK_RELATIVE_PATH)
    }

    /// The setback recorded under `home`, if there is a readable one (a missing or corrupt file
    /// reads as none).
    pub fn load(home: &Path) -> Option<Self> {
        let bytes = read_small_file(&Self::path(home), MAX_SETBACK_BYTES).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Records a setback of `kind` met now, counting up when the last one was the same kind for
    /// the same computer. Returns what was recorded.
    pub fn record(
        home: &Path,
        kind: SetbackKind,
        computer_uuid: Option<&str>,
        detail: String,
        now_unix: u64,
    ) -> std::io::Result<Self> {
        let previous = Self::load(home)
            .filter(|s| s.kind == kind && s.computer_uuid.as_deref() == computer_uuid);
        let setback = Self {
            kind,
            computer_uuid: computer_uuid.map(str::to_owned),
            first_at_unix: previous.as_ref().map_or(now_unix, |p| p.first_at_unix),
            last_at_unix: now_unix,
            count: previous.map_or(1, |p| p.count.saturating_add(1)),
            detail,
        };
        let path = Self::path(home);
        crate::fs::Dir::create(path.parent().expect("the setback path has a folder"), 0o700)?;
        let text = serde_json::to_string_pretty(&setback).expect("a setback serializes");
        write_atomically(&path, text.as_bytes(), 0o600)?;
        Ok(setback)
    }

    /// When a managed run may meet this setback again (seconds since the epoch). A user who
    /// denied the Keychain dialog is asked again only after [`keychain_backoff_hours`]; the other
    /// kinds are the service's to judge at the next run.
    pub fn retry_after_unix(&self) -> u64 {
        match self.kind {
            SetbackKind::KeychainDenied => self
                .last_at_unix
                .saturating_add(keychain_backoff_hours(self.count) * 3600),
            SetbackKind::ClaimedByAnotherMac | SetbackKind::AwaitingConfirmation => {
                self.last_at_unix
            }
        }
    }

    /// Forgets the setback (a lockdown got through); none recorded is fine.
    pub fn clear(home: &Path) -> std::io::Result<()> {
        crate::fs::remove_file(&Self::path(home))
    }
}

/// Hours between Keychain dialogs after `count` denials in a row: 4, 8, 16, 32, 64, then 72 (three
/// days) — so a user who said no by mistake is asked again the same day, and one who means it
/// hears from arq-lockdown twice a week (the admin sees `keychain-access-denied` in inventory).
pub fn keychain_backoff_hours(count: u32) -> u64 {
    const FIRST: u64 = 4;
    const MOST: u64 = 72;
    // Past five doublings the cap holds anyway; stopping there keeps the shift in range.
    (FIRST << count.saturating_sub(1).min(5)).min(MOST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    #[test]
    fn a_denied_keychain_backs_off_for_hours_growing_with_each_denial() {
        for (count, hours) in [(0, 4), (1, 4), (2, 8), (3, 16), (4, 32), (5, 64), (6, 72), (7, 72), (63, 72), (64, 72), (u32::MAX, 72)] {
            assert_eq!(keychain_backoff_hours(count), hours, "after {count} denials");
        }
        let denied = |count| Setback {
            kind: SetbackKind::KeychainDenied, computer_uuid: None, first_at_unix: 0,
            last_at_unix: 1_000, count, detail: String::new(),
        };
        assert_eq!(denied(1).retry_after_unix(), 1_000 + 4 * 3600);
        assert_eq!(denied(3).retry_after_unix(), 1_000 + 16 * 3600);
        let claimed = Setback { kind: SetbackKind::ClaimedByAnotherMac, ..denied(9) };
        assert_eq!(claimed.retry_after_unix(), 1_000, "not the Keychain's: no backoff here");
    }

    #[test]
    fn the_same_setback_counts_up_another_replaces_it_and_clear_forgets() {
        let home = tempfile::tempdir().unwrap();
        let home = home.path();
        assert_eq!(Setback::load(home), None);
        let uuid = Some("32D9D7A2-3B3E-4BE7-B85B-0605AF24F570");
        let denied = SetbackKind::KeychainDenied;
        Setback::record(home, denied, uuid, "denied".into(), 100).unwrap();
        let again = Setback::record(home, denied, uuid, "denied".into(), 200).unwrap();
        assert_eq!(
            (again.count, again.first_at_unix, again.last_at_unix),
            (2, 100, 200)
        );
        assert_eq!(Setback::load(home), Some(again));
        let other_computer = Setback::record(home, denied, None, "d".into(), 300).unwrap();
        assert_eq!(
            (other_computer.count, other_computer.first_at_unix),
            (1, 300)
        );
        let claimed = SetbackKind::ClaimedByAnotherMac;
        let claimed = Setback::record(home, claimed, uuid, "claimed".into(), 400).unwrap();
        assert_eq!(claimed.count, 1);
        Setback::clear(home).unwrap();
        assert_eq!(Setback::load(home), None);
        Setback::clear(home).unwrap();
    }

    #[test]
    fn a_corrupt_setback_reads_as_none() {
        let home = tempfile::tempdir().unwrap();
        let path = Setback::path(home.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(Setback::load(home.path()), None);
    }
}
