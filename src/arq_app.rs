//! Arq the running app: is it running, ask it to quit, start it again.
//!
//! Arq must not run while "Arq S3" changes (it caches the key). The processes are found by their
//! exact names, "Arq" and "Arq Agent", among this user's processes. How to ask them to quit and how
//! to start Arq again is the only platform-specific part: on macOS, Apple Events for the app and
//! launchd for the agent, then `open -b`; elsewhere SIGTERM, and a relaunch command if one is given.

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

/// The agent's launchd label.
#[cfg(target_os = "macos")]
const AGENT_LABEL: &str = "com.haystacksoftware.arqagent";

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

/// Asks Arq's processes to quit and waits up to `wait` for them to be gone.
pub async fn quit(wait: Duration) -> Result<(), ArqAppError> {
    let found = running()?;
    if found.is_empty() {
        return Ok(());
    }
    for process in &found {
        ask_to_quit(process);
    }
    let deadline = Instant::now() + wait;
    loop {
        let left = running()?;
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ArqAppError::DidNotQuit(wait.as_secs(), describe(&left)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Platform-specific: on macOS the app gets a "quit" Apple Event (it finishes what it is doing)
/// and the agent is booted out of the user's launchd domain, so launchd does not restart it; if
/// either refuses, SIGTERM. Elsewhere SIGTERM.
fn ask_to_quit(process: &ArqProcess) {
    #[cfg(target_os = "macos")]
    {
        let asked = match process.name.as_str() {
            "Arq" => Command::new("/usr/bin/osascript")
                .args([
                    "-e",
                    &format!("tell application id \"{BUNDLE_ID}\" to quit"),
                ])
                .status(),
            _ => Command::new("/bin/launchctl")
                .args([
                    "bootout",
                    &format!("gui/{}/{AGENT_LABEL}", unsafe { libc::getuid() }),
                ])
                .status(),
        };
        if asked.is_ok_and(|status| status.success()) {
            return;
        }
    }
    unsafe {
        libc::kill(process.pid as libc::pid_t, libc::SIGTERM);
    }
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
