//! Running as root, acting for a user: which user, running again as that user, and what passes
//! between the two runs.
//!
//! "Arq S3" lives in the user's login Keychain, reachable only from inside that user's GUI
//! session, and Arq's config, the receipt and the log are the user's files. So when `apply` or
//! `status` start as root and the work is a user's — `--user`, the Keychain as the store (then
//! whoever is at the console; never `SUDO_USER`: over SSH that is the admin, with no GUI session
//! and no Arq), or a home folder that belongs to a user — root runs the command again as that
//! user ([`UserRun`]), in that user's session, and does none of the user's work itself: it opens
//! none of their files (except Arq's config, read once by [`crate::fs`]'s rules, when it does IAM
//! work for them) and writes nothing of theirs.
//!
//! The two runs talk over the second run's stdin and stdout, pipes (sudo closes every other
//! descriptor): first root's [`Handover`] — the non-secret settings the run needs
//! ([`SETTINGS`]: where AWS and the proxies are; sudo's `env_reset` drops them from the
//! environment, on a Mac as on Debian) and the enrollment token — then JSON lines a command
//! defines (`apply`'s IAM requests to root, which keeps the admin's credentials; `status`'s
//! answer). The run's own messages for people go to stderr, which root passes on made safe to
//! show. Root waits on the user's run only until a deadline, then kills it.

use std::ffi::{CStr, CString, OsString};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::credential_store::StoreLocation;
use crate::exit_code::ExitCode;

/// Account names that are never a person at the console.
const NOT_A_PERSON: [&str; 3] = ["root", "loginwindow", "_mbsetupuser"];

/// One message between the runs is a few kilobytes at most.
const MAX_MESSAGE_BYTES: u64 = 64 * 1024;

/// What root passes on of the user's run's stderr (more is dropped).
const MAX_RELAYED_BYTES: usize = 1024 * 1024;

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
        "the run as {user} did not finish within {seconds} s and was stopped; run it again (nothing is left half-done)"
    )]
    TimedOut { user: String, seconds: u64 },
    #[error("the run as {user} sent what root cannot read ({reason}); it was stopped")]
    Garbled { user: String, reason: String },
    #[error(
        "cannot talk to the root run that started this one ({0}): run arq-lockdown as root or as the user, not with --handover-stdin"
    )]
    Handover(String),
    /// What the other run reported instead of an answer (root's refusal or error, or the run as
    /// the user's), with its exit code.
    #[error("{message}")]
    Reported { message: String, code: ExitCode },
}

impl SessionError {
    /// What the other run reported, `exit_code` as it sent it.
    pub fn reported(message: String, exit_code: i32) -> Self {
        let code = ExitCode::from_code(exit_code).unwrap_or(ExitCode::Internal);
        Self::Reported { message, code }
    }

    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::NoUser => ExitCode::NoUser,
            Self::UnknownUser(_) | Self::NotRoot => ExitCode::Usage,
            Self::Switch { .. }
            | Self::TimedOut { .. }
            | Self::Garbled { .. }
            | Self::Handover(_) => ExitCode::Internal,
            Self::Reported { code, .. } => *code,
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

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// The user logged in at the console: the owner of /dev/console.
pub fn console_user() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/dev/console").ok()?.uid();
    user_by_uid(uid).map(|u| u.name)
}

/// The user who owns the folder `home` (reached by [`crate::fs`]'s rules), unless it is root's
/// or cannot be opened.
pub fn owner_of(home: &Path) -> Option<User> {
    let uid = crate::fs::Dir::open(home).ok()?.owner().ok()?;
    (uid != 0).then(|| user_by_uid(uid)).flatten()
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

/// The environment variables the second run takes from root (in the [`Handover`], not in its
/// environment, which sudo would clear): where AWS and the proxies are, never who one is.
pub const SETTINGS: [&str; 11] = [
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
    "LANG",
];

/// The [`SETTINGS`] this (root's) environment has.
pub fn settings_from_env() -> Vec<(String, String)> {
    SETTINGS
        .iter()
        .filter_map(|name| Some(((*name).to_owned(), std::env::var(name).ok()?)))
        .collect()
}

/// What root tells its run as the user first: sent as one JSON line on the run's stdin.
#[derive(Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handover {
    /// [`SETTINGS`] as (name, value), from root's environment and AWS config.
    pub settings: Vec<(String, String)>,
    /// For `--source service` (every user can read a profile's token anyway).
    pub enrollment_token: Option<String>,
    /// Root does the IAM work with admin credentials the run as the user never sees: ask it
    /// (the root key source, `key_source/root.rs`, asks over this module's channel).
    pub iam_by_root: bool,
}

impl Drop for Handover {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.enrollment_token);
    }
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handover").finish_non_exhaustive()
    }
}

/// The arguments `given` to this process, for its run as a user: without `--user`,
/// `--credential-store` and `--arq-home` (both forms), then the store root resolved (sudo drops
/// the variable it may have come from), the home when root chose it, and `--handover-stdin`.
pub fn forwarded_arguments(
    given: impl IntoIterator<Item = OsString>,
    store: &StoreLocation,
    home: Option<&Path>,
) -> Vec<OsString> {
    let dropped = [
        "--user",
        "--credential-store",
        "--arq-home",
        "--handover-stdin",
    ];
    let mut args = Vec::new();
    let mut skip_next = false;
    for arg in given {
        let text = arg.to_string_lossy();
        if std::mem::take(&mut skip_next) {
            continue;
        }
        match dropped.iter().find(|flag| text.starts_with(*flag)) {
            Some(flag) if text == *flag => skip_next = *flag != "--handover-stdin",
            Some(flag) if text.starts_with(&format!("{flag}=")) => {}
            _ => args.push(arg),
        }
    }
    args.push("--credential-store".into());
    args.push(match store {
        StoreLocation::Keychain => OsString::from("keychain"),
        StoreLocation::File(path) => {
            let mut arg = OsString::from("file:");
            arg.push(path);
            arg
        }
    });
    if let Some(home) = home {
        args.push("--arq-home".into());
        args.push(home.into());
    }
    args.push("--handover-stdin".into());
    args
}

/// Text from a user's run, made safe to print: control characters, line and paragraph
/// separators and formatting characters (bidi overrides) shown as `\u{…}`; line feeds and tabs
/// kept.
pub fn shown_safely(text: &str) -> String {
    use unicode_general_category::{GeneralCategory, get_general_category};
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        let hidden = c.is_control()
            || matches!(
                get_general_category(c),
                GeneralCategory::Format
                    | GeneralCategory::LineSeparator
                    | GeneralCategory::ParagraphSeparator
            );
        if hidden && c != '\n' && c != '\t' {
            shown += &format!("\\u{{{:x}}}", c as u32);
        } else {
            shown.push(c);
        }
    }
    shown
}

/// This program, run again as a user (root's side): its stdin and stdout are the channel, its
/// stderr is passed on; it and everything it starts are killed at the deadline.
pub struct UserRun {
    user: String,
    child: tokio::process::Child,
    to_run: tokio::process::ChildStdin,
    from_run: tokio::io::BufReader<tokio::process::ChildStdout>,
    relay: tokio::task::JoinHandle<()>,
    deadline: Instant,
    within: Duration,
}

impl UserRun {
    /// Starts `args` as `user` in a clean environment, sends `handover`, and gives the run
    /// `within` to finish.
    ///
    /// Platform-specific: on macOS `launchctl asuser UID sudo -u USER -H`, which puts the process
    /// in the user's GUI session (the Keychain needs it); elsewhere `runuser -u USER`, or
    /// `sudo -u USER -H` where there is no runuser.
    pub async fn start(
        user: &User,
        args: &[OsString],
        handover: &Handover,
        within: Duration,
    ) -> Result<Self, SessionError> {
        let error = |reason: String| SessionError::Switch {
            user: user.name.clone(),
            reason,
        };
        let program = std::env::current_exe().map_err(|e| error(e.to_string()))?;
        let mut command = switch_user(user).map_err(error)?;
        command
            .arg(program)
            .args(args)
            .env_clear()
            .env("HOME", &user.home)
            .env("USER", &user.name)
            .env("LOGNAME", &user.name)
            .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| error(e.to_string()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut run = Self {
            user: user.name.clone(),
            to_run: child.stdin.take().expect("stdin is piped"),
            from_run: tokio::io::BufReader::new(child.stdout.take().expect("stdout is piped")),
            relay: tokio::spawn(relay_safely(stderr)),
            child,
            deadline: Instant::now() + within,
            within,
        };
        run.send(handover).await?;
        Ok(run)
    }

    /// Sends one message down.
    pub async fn send(&mut self, message: &impl Serialize) -> Result<(), SessionError> {
        let mut line =
            zeroize::Zeroizing::new(serde_json::to_vec(message).expect("a message serializes"));
        line.push(b'\n');
        let written = tokio::time::timeout_at(self.deadline, self.to_run.write_all(&line)).await;
        match written {
            Err(_) => Err(self.stop().await),
            // A run that ended has closed the pipe: its exit code says why.
            Ok(_) => Ok(()),
        }
    }

    /// The next message up; `None` when the run closed its side (it is ending).
    pub async fn receive<T: DeserializeOwned>(&mut self) -> Result<Option<T>, SessionError> {
        let mut line = zeroize::Zeroizing::new(Vec::new());
        let mut capped = (&mut self.from_run).take(MAX_MESSAGE_BYTES + 1);
        let read = tokio::time::timeout_at(self.deadline, capped.read_until(b'\n', &mut line));
        match read.await {
            Err(_) => Err(self.stop().await),
            Ok(Err(_) | Ok(0)) => Ok(None),
            Ok(Ok(_)) if !line.ends_with(b"\n") => Err(self.garbled("a message too long").await),
            Ok(Ok(_)) => match serde_json::from_slice(&line) {
                Ok(message) => Ok(Some(message)),
                Err(e) => Err(self.garbled(&e.to_string()).await),
            },
        }
    }

    /// Waits for the run to end (until the deadline) and returns its exit code.
    pub async fn finish(mut self) -> Result<i32, SessionError> {
        match tokio::time::timeout_at(self.deadline, self.child.wait()).await {
            Err(_) => Err(self.stop().await),
            Ok(status) => {
                let status = status.map_err(|e| SessionError::Switch {
                    user: self.user.clone(),
                    reason: e.to_string(),
                })?;
                // What it wrote to stderr, passed on in full (it ended: the pipe is closing).
                let _ = tokio::time::timeout_at(self.deadline, &mut self.relay).await;
                Ok(status.code().unwrap_or(ExitCode::Internal as i32))
            }
        }
    }

    /// Kills the run and all it started (its process group), and says it timed out.
    async fn stop(&mut self) -> SessionError {
        self.kill().await;
        SessionError::TimedOut {
            user: self.user.clone(),
            seconds: self.within.as_secs(),
        }
    }

    async fn garbled(&mut self, reason: &str) -> SessionError {
        self.kill().await;
        SessionError::Garbled {
            user: self.user.clone(),
            reason: reason.to_owned(),
        }
    }

    async fn kill(&mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill has no memory preconditions; the group is the one made for this run
            // (process_group(0) above), so nothing else is in it.
            unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
        }
        let _ = self.child.wait().await;
        self.relay.abort();
    }
}

/// The program that switches to `user`, with its arguments up to the program to run.
fn switch_user(user: &User) -> Result<tokio::process::Command, String> {
    #[cfg(target_os = "macos")]
    {
        let mut command = tokio::process::Command::new("/bin/launchctl");
        command.args(["asuser", &user.uid.to_string(), "/usr/bin/sudo", "-u"]);
        command.args([user.name.as_str(), "-H", "--"]);
        Ok(command)
    }
    #[cfg(not(target_os = "macos"))]
    {
        if let Some(runuser) = in_path("runuser") {
            let mut command = tokio::process::Command::new(runuser);
            command.args(["-u", &user.name, "--"]);
            return Ok(command);
        }
        let sudo = in_path("sudo").ok_or("neither runuser nor sudo is on PATH")?;
        let mut command = tokio::process::Command::new(sudo);
        command.args(["-u", &user.name, "-H", "--"]);
        Ok(command)
    }
}

/// `program` found in this (root's) PATH.
#[cfg(not(target_os = "macos"))]
fn in_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|folder| folder.join(program))
        .find(|path| {
            std::fs::metadata(path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Passes the run's stderr on to ours, line by line (long lines in pieces), made safe to show,
/// up to a cap; past it, the rest is read and dropped.
async fn relay_safely(stderr: tokio::process::ChildStderr) {
    let mut reader = tokio::io::BufReader::new(stderr);
    let (mut relayed, mut line) = (0, Vec::new());
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_MESSAGE_BYTES)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(read) => relayed += read,
        }
        if relayed <= MAX_RELAYED_BYTES {
            let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line));
            eprintln!("{}", shown_safely(&text));
        }
    }
}

/// The run as the user's end of the channel: private copies of stdin and stdout (so that
/// nothing it starts can read or write them), while fd 0 becomes /dev/null and fd 1 stderr.
pub struct ToRoot {
    from_root: BufReader<File>,
    to_root: File,
}

static TO_ROOT: OnceLock<Mutex<ToRoot>> = OnceLock::new();

/// In the run as the user: takes the channel to root, reads root's [`Handover`] and puts its
/// settings into this process's environment.
pub fn receive_handover() -> Result<Handover, SessionError> {
    let mut channel = ToRoot::from_stdio().map_err(|e| SessionError::Handover(e.to_string()))?;
    let handover: Handover = channel.receive()?;
    for (name, value) in &handover.settings {
        if SETTINGS.contains(&name.as_str()) && !value.contains('\0') {
            // SAFETY: this runs first in the command, before anything starts a thread that could
            // read the environment (the runtime is single-threaded and nothing is spawned yet).
            unsafe { std::env::set_var(name, value) };
        }
    }
    let _ = TO_ROOT.set(Mutex::new(channel));
    Ok(handover)
}

/// The channel to root, when this run was started by root.
pub fn to_root() -> Option<std::sync::MutexGuard<'static, ToRoot>> {
    TO_ROOT
        .get()
        .map(|channel| channel.lock().unwrap_or_else(|e| e.into_inner()))
}

impl ToRoot {
    fn from_stdio() -> std::io::Result<Self> {
        let private = |fd: libc::c_int| -> std::io::Result<File> {
            // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor (not inherited by children).
            let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
            if copy < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: a fresh descriptor, owned from here on.
            Ok(File::from(unsafe { OwnedFd::from_raw_fd(copy) }))
        };
        let (from_root, to_root) = (private(0)?, private(1)?);
        let null = File::open("/dev/null")?;
        // SAFETY: dup2 onto the standard descriptors, from descriptors that are open.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(2, 1);
        }
        Ok(Self {
            from_root: BufReader::new(from_root),
            to_root,
        })
    }

    /// Sends one message up.
    pub fn send(&mut self, message: &impl Serialize) -> Result<(), SessionError> {
        let mut line =
            zeroize::Zeroizing::new(serde_json::to_vec(message).expect("a message serializes"));
        line.push(b'\n');
        self.to_root
            .write_all(&line)
            .map_err(|e| SessionError::Handover(e.to_string()))
    }

    /// The next message from root (root answers every request, or kills this run).
    pub fn receive<T: DeserializeOwned>(&mut self) -> Result<T, SessionError> {
        use std::io::Read;
        let mut line = zeroize::Zeroizing::new(Vec::new());
        (&mut self.from_root)
            .take(MAX_MESSAGE_BYTES + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| SessionError::Handover(e.to_string()))?;
        if !line.ends_with(b"\n") {
            return Err(SessionError::Handover("the message was cut short".into()));
        }
        serde_json::from_slice(&line).map_err(|e| SessionError::Handover(e.to_string()))
    }
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

    #[test]
    fn the_run_as_the_user_gets_the_arguments_with_what_root_resolved() {
        let given = [
            "status",
            "--user",
            "alice",
            "--json",
            "--credential-store=file:/x",
            "--arq-home",
            "/Users/a",
            "--user=bob",
            "--check",
        ];
        let store = StoreLocation::File(PathBuf::from("/tmp/k.json"));
        let args = forwarded_arguments(given.map(OsString::from), &store, None);
        assert_eq!(
            args,
            [
                "status",
                "--json",
                "--check",
                "--credential-store",
                "file:/tmp/k.json",
                "--handover-stdin"
            ]
            .map(OsString::from)
        );
        let args = forwarded_arguments(
            ["apply", "--handover-stdin"].map(OsString::from),
            &StoreLocation::Keychain,
            Some(Path::new("/Users/alice")),
        );
        assert_eq!(
            args,
            [
                "apply",
                "--credential-store",
                "keychain",
                "--arq-home",
                "/Users/alice",
                "--handover-stdin"
            ]
            .map(OsString::from)
        );
    }

    #[test]
    #[rustfmt::skip]
    fn what_a_users_run_prints_is_shown_safely() {
        for (text, shown) in [
            ("plain text, \"quoted\"\n\ttabbed", "plain text, \"quoted\"\n\ttabbed"),
            ("a\rb", "a\\u{d}b"),
            ("\u{1b}[2Jcleared", "\\u{1b}[2Jcleared"),
            ("nul\u{0}", "nul\\u{0}"),
            ("next\u{85}line", "next\\u{85}line"),
            ("line\u{2028}sep", "line\\u{2028}sep"),
            ("bidi\u{202e}txt", "bidi\\u{202e}txt"),
            ("Bob’s MacBook", "Bob’s MacBook"),
        ] {
            assert_eq!(shown_safely(text), shown, "{text:?}");
        }
    }
}
