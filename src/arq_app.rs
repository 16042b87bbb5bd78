//! Arq the running app: is it running, ask it to quit, start it again, tell the user.
//!
//! Arq must not run while "Arq S3" changes (it caches the key). The processes are found by their
//! exact names, "Arq" and "Arq Agent", among this user's processes. Arq 5's agent is a login item
//! inside Arq.app (`Contents/Library/LoginItems/Arq Agent.app`) that Arq starts when it is not
//! running — not a launchd job — so the app is asked to quit first, then the agent, each with a
//! quit Apple Event (it finishes what it is doing); SIGTERM comes only to what is still running
//! after the wait. How to ask and how to start Arq again is the only platform-specific part: on
//! macOS Apple Events and `open -b`; elsewhere SIGTERM, and a relaunch command if one is given.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sysinfo::{ProcessRefreshKind, ProcessStatus, RefreshKind, System, UpdateKind};

use crate::exit_code::ExitCode;

/// The names of Arq's processes.
pub const PROCESS_NAMES: [&str; 2] = ["Arq", "Arq Agent"];

/// Arq's bundle identifier, for Apple Events and `open -b`.
#[cfg(target_os = "macos")]
const BUNDLE_ID: &str = "com.haystacksoftware.Arq";

/// Arq Agent's bundle identifier (not confirmed by Haystack's documentation: when the Apple Event
/// finds no such app, the agent is asked by its process name).
#[cfg(target_os = "macos")]
const AGENT_BUNDLE_ID: &str = "com.haystacksoftware.ArqAgent";

/// After the polite request's wait, how long SIGTERM has to work.
const SIGTERM_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ArqAppError {
    #[error("Arq is running ({0}): quit Arq and Arq Agent first, or pass --quit-arq")]
    Running(String),
    #[error("Arq did not quit within {0} s ({1} still running): quit it by hand, or raise --wait")]
    DidNotQuit(u64, String),
    #[error(
        "cannot list this user's processes ({0}), so cannot tell whether Arq runs: quit Arq by hand and pass --no-relaunch"
    )]
    CannotList(String),
    #[error("could not start Arq again with {command}: {reason}; start Arq by hand")]
    Relaunch { command: String, reason: String },
}

impl ArqAppError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Running(_) | Self::DidNotQuit(..) => ExitCode::ArqRunning,
            Self::CannotList(_) | Self::Relaunch { .. } => ExitCode::Internal,
        }
    }
}

/// One of Arq's processes.
#[derive(Clone, Debug)]
pub struct ArqProcess {
    pub pid: u32,
    pub name: String,
}

/// Arq's processes of the current user (zombies excluded: they are already gone).
pub fn running() -> Result<Vec<ArqProcess>, ArqAppError> {
    // SAFETY: getuid cannot fail and touches no memory.
    let me = unsafe { libc::getuid() };
    let system = System::new_with_specifics(
        RefreshKind::nothing()
            .with_processes(ProcessRefreshKind::nothing().with_user(UpdateKind::Always)),
    )
    .map_err(|e| ArqAppError::CannotList(e.to_string()))?;
    let mut found: Vec<ArqProcess> = system
        .processes()
        .values()
        .filter(|p| p.status() != ProcessStatus::Zombie)
        .filter(|p| p.user_id().is_some_and(|uid| **uid == me))
        .filter_map(|p| {
            let name = p.name().to_str()?;
            PROCESS_NAMES.contains(&name).then(|| ArqProcess {
                pid: p.pid().as_u32(),
                name: name.to_owned(),
            })
        })
        .collect();
    found.sort_by_key(|p| p.pid);
    Ok(found)
}

fn describe(processes: &[ArqProcess]) -> String {
    processes
        .iter()
        .map(|p| format!("{} pid {}", p.name, p.pid))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Fails when Arq runs.
pub fn ensure_not_running() -> Result<(), ArqAppError> {
    let found = running()?;
    if found.is_empty() {
        Ok(())
    } else {
        Err(ArqAppError::Running(describe(&found)))
    }
}

/// Asks Arq, then Arq Agent, to quit and waits up to `wait` for them to be gone; whatever still
/// runs then gets SIGTERM and a few seconds more.
pub async fn quit(wait: Duration) -> Result<(), ArqAppError> {
    let found = running()?;
    if found.is_empty() {
        return Ok(());
    }
    // The app first: while it runs it would start the agent again.
    for name in PROCESS_NAMES {
        for process in found.iter().filter(|p| p.name == name) {
            ask_to_quit(process);
        }
    }
    if wait_until_gone(wait).await?.is_empty() {
        return Ok(());
    }
    for process in running()? {
        terminate(&process);
    }
    match wait_until_gone(SIGTERM_WAIT).await? {
        left if left.is_empty() => Ok(()),
        left => Err(ArqAppError::DidNotQuit(wait.as_secs(), describe(&left))),
    }
}

/// Waits up to `wait` for Arq's processes to be gone; returns those still running.
async fn wait_until_gone(wait: Duration) -> Result<Vec<ArqProcess>, ArqAppError> {
    let deadline = Instant::now() + wait;
    loop {
        let left = running()?;
        if left.is_empty() || Instant::now() >= deadline {
            return Ok(left);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Platform-specific: on macOS a quit Apple Event, by bundle id, for the agent falling back to
/// its name (sending Apple Events from the LaunchAgent may need a PPPC grant; see the README).
/// Elsewhere SIGTERM is how a program is asked to quit.
fn ask_to_quit(process: &ArqProcess) {
    #[cfg(target_os = "macos")]
    {
        let script = match process.name.as_str() {
            "Arq" => format!("tell application id \"{BUNDLE_ID}\" to quit"),
            name => format!(
                "try\ntell application id \"{AGENT_BUNDLE_ID}\" to quit\non error\ntell application \"{name}\" to quit\nend try"
            ),
        };
        let _ = Command::new("/usr/bin/osascript")
            .args(["-e", &script])
            .status();
    }
    #[cfg(not(target_os = "macos"))]
    terminate(process);
}

fn terminate(process: &ArqProcess) {
    // SAFETY: kill has no memory preconditions; the pid was just seen as this user's.
    unsafe {
        libc::kill(process.pid as libc::pid_t, libc::SIGTERM);
    }
}

/// Platform-specific: on macOS a notification in the user's session (`display notification`);
/// elsewhere nothing (the line is in the log either way).
pub fn notify(text: &str) {
    #[cfg(target_os = "macos")]
    {
        let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = Command::new("/usr/bin/osascript")
            .args([
                "-e",
                &format!("display notification \"{escaped}\" with title \"arq-lockdown\""),
            ])
            .status();
    }
    #[cfg(not(target_os = "macos"))]
    let _ = text;
}

/// Starts Arq again: `relaunch_command` if given; else on macOS `open -b com.haystacksoftware.Arq`.
/// Returns what was run, or `None` when there is nothing to run on this platform.
pub fn relaunch(relaunch_command: Option<&Path>) -> Result<Option<String>, ArqAppError> {
    let mut command = match relaunch_command {
        Some(program) => Command::new(program),
        None => match default_launcher() {
            Some(command) => command,
            None => return Ok(None),
        },
    };
    let shown = format!("{command:?}");
    let status = command.status().map_err(|e| ArqAppError::Relaunch {
        command: shown.clone(),
        reason: e.to_string(),
    })?;
    if !status.success() {
        return Err(ArqAppError::Relaunch {
            command: shown,
            reason: status.to_string(),
        });
    }
    Ok(Some(shown))
}

#[cfg(target_os = "macos")]
fn default_launcher() -> Option<Command> {
    let mut open = Command::new("/usr/bin/open");
    open.args(["-b", BUNDLE_ID]);
    Some(open)
}

#[cfg(not(target_os = "macos"))]
fn default_launcher() -> Option<Command> {
    None
}
