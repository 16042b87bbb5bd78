//! The process exit codes: few, stable, and each one a class of fault an admin can act on.
//!
//! These numbers are part of the interface (MDM scripts and Jamf extension attributes branch on
//! them) and are listed in the README. Never renumber one; add a new one at the end if a new class
//! of fault appears.

/// How a run of `arq-lockdown` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// Everything asked for was done (or, for `verify`, the key is fit for Arq and isolated).
    Success = 0,
    /// A bug or an unexpected condition; the message says what.
    Internal = 1,
    /// The command line could not be parsed (clap's own code).
    Usage = 2,
    /// Arq's config is missing or cannot be read: Arq is not set up for this user, or the path is wrong.
    ConfigMissing = 3,
    /// Arq's config (or a bucket / computer UUID given on the command line) is not valid.
    ConfigInvalid = 4,
    /// The "Arq S3" credential item is missing, unreadable or malformed.
    Credentials = 5,
    /// AWS refused or could not be reached (the admin key lacks a right, throttling, network).
    Aws = 6,
    /// Arq or Arq Agent is running (or did not quit in time), so "Arq S3" was not changed.
    ArqRunning = 7,
    /// Run as root with nobody logged in to act for: the LaunchAgent does it at the next login.
    NoUser = 8,
    /// Another `apply` for this user held the lock longer than the wait; nothing was changed.
    Busy = 9,
    /// `verify`: a call Arq needs is refused, so Arq would fail with this key.
    ArqBroken = 10,
    /// `verify`: the key can list the bucket root or another computer's folder (names leak).
    ListingLeak = 11,
    /// `verify`: the key can read, write or delete another computer's data.
    DataLeak = 12,
    /// `audit`: a computer is not locked down, or the main keys may not be retired yet.
    NeedsAction = 13,
}

impl ExitCode {
    /// Every code, in order (the README's table lists exactly these).
    pub const ALL: [ExitCode; 14] = [
        Self::Success,
        Self::Internal,
        Self::Usage,
        Self::ConfigMissing,
        Self::ConfigInvalid,
        Self::Credentials,
        Self::Aws,
        Self::ArqRunning,
        Self::NoUser,
        Self::Busy,
        Self::ArqBroken,
        Self::ListingLeak,
        Self::DataLeak,
        Self::NeedsAction,
    ];

    /// The code a process exited with, if it is one of ours.
    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|known| *known as i32 == code)
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}
