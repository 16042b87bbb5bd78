//! Running as root, acting for a user: which user, and running again as that user.
//!
//! "Arq S3" lives in the user's login Keychain, reachable only from inside that user's GUI
//! session, and Arq's config and the receipt are the user's files. So when `apply` or `status`
//! start as root with the Keychain as the store (a pkg postinstall, an MDM script, `sudo`), they
//! do no work themselves: they pick the target user — `--user`, else whoever is at the console
//! (never `SUDO_USER`: over SSH that is the admin, with no GUI session and no Arq) — and run
//! again as that user, in that user's session, with the same arguments, none of which is ever a
//! secret. Like sudo's `env_reset`, the second run gets a clean environment with only the
//! non-secret settings that matter ([`PASSED_VARIABLES`]); secrets the first run resolved (admin
//! credentials, an enrollment token) travel in a [`Handover`] on its stdin, a pipe. Root never
//! opens the user's files; where root must touch a path under a home (file stores),
//! [`refuse_user_symlinks`] guards it.

use std::ffi::{CStr, CString, OsString};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::exit_code::ExitCode;

/// Account names that are never a person at the console.
const NOT_A_PERSON: [&str; 3] = ["root", "loginwindow", "_mbsetupuser"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub home: PathBuf,
}

/// Who the work is for, decided from who we are and who is around.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Not root: work as ourselves.
    Here,
    /// Root: run again as this user.
    User(String),
    /// Root, and no user to act for.
    Nobody,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(
        "no user is logged in to act for: arq-lockdown will run at the next login (its LaunchAgent), or pass --user NAME"
    )]
    NoUser,
    #[error("there is no user {0:?} on this Mac: check --user")]
    UnknownUser(String),
    #[error("--user is for root only: run as that user, or with sudo")]
    NotRoot,
    #[error("could not run as {user}: {reason}")]
    Switch { user: String, reason: String },
    #[error(
        "refusing to follow {path}: it is a symlink owned by a user, and this runs as root; remove it, or run as the user"
    )]
    UserSymlink { path: PathBuf },
    #[error(
        "the first run's handover on stdin is unreadable ({0}): run arq-lockdown as root or as the user, not with --handover-stdin"
    )]
    Handover(String),
}

impl SessionError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::NoUser => ExitCode::NoUser,
            Self::UnknownUser(_) | Self::NotRoot => ExitCode::Usage,
            Self::Switch { .. } | Self::Handover(_) => ExitCode::Internal,
            Self::UserSymlink { .. } => ExitCode::ConfigInvalid,
        }
    }
}

/// Chooses the target: `--user`, else the console user when it is a person, else nobody. Only
/// root acts for others.
pub fn choose(
    is_root: bool,
    flag: Option<&str>,
    console_user: Option<&str>,
) -> Result<Target, SessionError> {
    if !is_root {
        return match flag {
            Some(_) => Err(SessionError::NotRoot),
            None => Ok(Target::Here),
        };
    }
    let person = |name: &&str| !name.is_empty() && !NOT_A_PERSON.contains(name);
    Ok(flag
        .or(console_user.filter(person))
        .map_or(Target::Nobody, |name| Target::User(name.to_owned())))
}

/// The environment variables the second run gets (everything else is dropped, as sudo's
/// `env_reset` does on a Mac): where AWS and the proxies are, never who one is.
pub const PASSED_VARIABLES: [&str; 12] = [
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_CA_BUNDLE",
    "AWS_EC2_METADATA_DISABLED",
    "SSL_CERT_FILE",
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
    "ARQ_LOCKDOWN_CREDENTIAL_STORE",
    "LANG",
];

/// The secrets the first run resolved for the second: sent as JSON on the second run's stdin
/// (a pipe: never argv, never a file, never the environment).
#[derive(Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handover {
    /// Admin credentials from the invoking admin's environment or profile.
    pub admin: Option<HandedOverKey>,
    pub enrollment_token: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandedOverKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl Drop for Handover {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.enrollment_token.zeroize();
        if let Some(admin) = self.admin.as_mut() {
            admin.secret_access_key.zeroize();
            admin.session_token.zeroize();
        }
    }
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handover").finish_non_exhaustive()
    }
}

/// A handover is a few hundred bytes.
const MAX_HANDOVER_BYTES: u64 = 64 * 1024;

impl Handover {
    /// Reads the handover the first run wrote on stdin.
    pub fn from_stdin() -> Result<Self, SessionError> {
        use std::io::Read;
        let mut text = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .take(MAX_HANDOVER_BYTES)
            .read_to_string(&mut text)
            .map_err(|e| SessionError::Handover(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| SessionError::Handover(e.to_string()))
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// The user logged in at the console: the owner of /dev/console.
pub fn console_user() -> Option<String> {
    let uid = std::fs::metadata("/dev/console").ok()?.uid();
    user_by_uid(uid).map(|u| u.name)
}

/// Looks a user up by name in the system's user database.
pub fn user_by_name(name: &str) -> Option<User> {
    let name = CString::new(name).ok()?;
    lookup(|pwd, buffer, result| unsafe {
        // SAFETY: every pointer is valid for the call; the buffer outlives the use of `pwd`.
        libc::getpwnam_r(
            name.as_ptr(),
            pwd,
            buffer.as_mut_ptr(),
            buffer.len(),
            result,
        )
    })
}

/// The user this process runs as.
pub fn current_user() -> Option<User> {
    // SAFETY: getuid cannot fail and touches no memory.
    user_by_uid(unsafe { libc::getuid() })
}

fn user_by_uid(uid: u32) -> Option<User> {
    lookup(|pwd, buffer, result| unsafe {
        // SAFETY: as in user_by_name.
        libc::getpwuid_r(uid, pwd, buffer.as_mut_ptr(), buffer.len(), result)
    })
}

fn lookup(
    call: impl FnOnce(*mut libc::passwd, &mut [libc::c_char], *mut *mut libc::passwd) -> libc::c_int,
) -> Option<User> {
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    if call(&mut pwd, &mut buffer, &mut result) != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success the strings point into `buffer`, which is still alive.
    let text = |p: *const libc::c_char| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    Some(User {
        name: text(pwd.pw_name),
        uid: pwd.pw_uid,
        home: PathBuf::from(text(pwd.pw_dir)),
    })
}

/// Runs this program again as `user` with `args` (and `--handover-stdin`), in a clean environment
/// with only [`PASSED_VARIABLES`], `handover` written to its stdin; returns its exit code.
///
/// Platform-specific: on macOS `launchctl asuser UID sudo -u USER -H`, which puts the process in
/// the user's GUI session (the Keychain needs it); elsewhere `runuser -u USER`.
pub fn run_as(user: &User, args: &[OsString], handover: &Handover) -> Result<i32, SessionError> {
    use std::io::Write;
    let error = |reason: String| SessionError::Switch {
        user: user.name.clone(),
        reason,
    };
    let program = std::env::current_exe().map_err(|e| error(e.to_string()))?;
    #[cfg(target_os = "macos")]
    let mut command = {
        let mut command = Command::new("/bin/launchctl");
        command.args([
            "asuser",
            &user.uid.to_string(),
            "/usr/bin/sudo",
            "-u",
            &user.name,
            "-H",
            "--",
        ]);
        command
    };
    #[cfg(not(target_os = "macos"))]
    let mut command = {
        let mut command = Command::new("runuser");
        command.args(["-u", &user.name, "--"]);
        command
    };
    command
        .arg(program)
        .args(args)
        .arg("--handover-stdin")
        .env_clear()
        .env("HOME", &user.home)
        .env("USER", &user.name)
        .env("LOGNAME", &user.name)
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .stdin(std::process::Stdio::piped());
    for name in PASSED_VARIABLES {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    let mut child = command.spawn().map_err(|e| error(e.to_string()))?;
    let json =
        zeroize::Zeroizing::new(serde_json::to_vec(handover).expect("a handover serializes"));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // A second run that failed before reading closes the pipe: its exit code says why.
    let _ = stdin.write_all(&json);
    drop(stdin);
    let status = child.wait().map_err(|e| error(e.to_string()))?;
    Ok(status.code().unwrap_or(ExitCode::Internal as i32))
}

/// The arguments this process got, without `--user NAME` / `--user=NAME`.
pub fn arguments_without_user() -> Vec<OsString> {
    let mut args = Vec::new();
    let mut skip_next = false;
    for arg in std::env::args_os().skip(1) {
        if skip_next {
            skip_next = false;
        } else if arg == "--user" {
            skip_next = true;
        } else if !arg.to_string_lossy().starts_with("--user=") {
            args.push(arg);
        }
    }
    args
}

/// As root, refuses a path any of whose components is a symlink owned by someone else than root:
/// a user could point it at a file root should not read or overwrite. As a user, allows anything.
pub fn refuse_user_symlinks(path: &Path) -> Result<(), SessionError> {
    if !is_root() {
        return Ok(());
    }
    for ancestor in path.ancestors() {
        if let Ok(meta) = std::fs::symlink_metadata(ancestor)
            && meta.file_type().is_symlink()
            && meta.uid() != 0
        {
            return Err(SessionError::UserSymlink {
                path: ancestor.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_runs_as_themselves_and_only_root_picks_someone() {
        assert_eq!(choose(false, None, Some("bob")).unwrap(), Target::Here);
        assert!(matches!(
            choose(false, Some("alice"), None),
            Err(SessionError::NotRoot)
        ));
    }

    #[test]
    fn root_picks_the_flag_then_the_console_user() {
        assert_eq!(
            choose(true, Some("carol"), Some("bob")).unwrap(),
            Target::User("carol".into())
        );
        assert_eq!(
            choose(true, None, Some("bob")).unwrap(),
            Target::User("bob".into())
        );
        assert_eq!(choose(true, None, None).unwrap(), Target::Nobody);
    }

    #[test]
    fn root_skips_accounts_that_are_not_people() {
        for not_a_person in ["root", "loginwindow", "_mbsetupuser", ""] {
            assert_eq!(
                choose(true, None, Some(not_a_person)).unwrap(),
                Target::Nobody,
                "{not_a_person}"
            );
        }
    }

    #[test]
    fn users_are_found_in_the_user_database() {
        let root = user_by_name("root").unwrap();
        assert_eq!((root.uid, root.name.as_str()), (0, "root"));
        assert!(user_by_name("no-such-user-arq-lockdown").is_none());
    }
}
