//! Arq the running app: is it running, ask it to quit, start it again, tell the user; and which
//! Arq is installed.
//!
//! Arq must not run while "Arq S3" changes (it caches the key). The processes are found by their
//! exact names, "Arq" and "Arq Agent", among this user's processes. Arq 5's agent is a login item
//! inside Arq.app (`Contents/Library/LoginItems/Arq Agent.app`) that Arq starts when it is not
//! running — not a launchd job — so the app is asked to quit first, then the agent, each with a
//! quit Apple Event (it finishes what it is doing).
//!
//! What comes of the request decides what happens next ([`next_step`]): a request macOS refused
//! (no PPPC grant: -1743), one the app declined, or one that could not be sent stops the run at
//! once, with Arq still running and "Arq S3" untouched (exit 7; the agent tries again within the
//! hour). SIGTERM comes only with the opt-in `TerminateArq` / `--terminate-arq`, only to what is
//! still running after the wait, and never to an Arq Agent that looks busy (a backup running:
//! Arq publishes no state another program could read, so its CPU time and disk traffic over a
//! short sample are what can be told). How to ask and how to start Arq again is the only
//! platform-specific part: on macOS Apple Events through `osascript` and `open -b`; elsewhere
//! SIGTERM is how a program is asked to quit, and a relaunch command if one is given.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sysinfo::UpdateKind;
use sysinfo::{Pid, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, RefreshKind, System};

use crate::exit_code::ExitCode;

/// The names of Arq's processes.
pub const PROCESS_NAMES: [&str; 2] = ["Arq", "Arq Agent"];

/// Arq's bundle identifier, for Apple Events and `open -b` (Homebrew's casks quit it by this id).
#[cfg(target_os = "macos")]
const BUNDLE_ID: &str = "com.haystacksoftware.Arq";

/// Arq Agent's bundle identifier: Homebrew's `arq5` cask (homebrew-cask-versions) removes
/// `~/Library/Caches/com.haystacksoftware.ArqAgent` and `~/Library/HTTPStorages/…ArqAgent`,
/// folders macOS names after the bundle id of the app that made them.
#[cfg(target_os = "macos")]
const AGENT_BUNDLE_ID: &str = "com.haystacksoftware.ArqAgent";

/// Where Arq's Info.plist is, for its version.
const INFO_PLIST: &str = "/Applications/Arq.app/Contents/Info.plist";

/// The newest major version of Arq with the layout arq-lockdown edits.
const NEWEST_SUPPORTED_MAJOR: u64 = 5;

/// After the polite request's wait, how long SIGTERM has to work.
const SIGTERM_WAIT: Duration = Duration::from_secs(5);

/// How long Arq Agent is watched before SIGTERM, to tell whether it is busy.
const BUSY_SAMPLE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ArqAppError {
    #[error("Arq is running ({0}): quit Arq and Arq Agent first, or pass --quit-arq")]
    Running(String),
    #[error(
        "Arq did not quit within {0} s ({1} still running); nothing was changed: quit it by hand, raise --wait, or allow SIGTERM with TerminateArq (--terminate-arq)"
    )]
    DidNotQuit(u64, String),
    #[error("{0} still running after SIGTERM; nothing was changed: quit it by hand")]
    SurvivedSigterm(String),
    #[error(
        "macOS refused arq-lockdown's request to quit {process} ({reason}); nothing was changed: install the example profile's PPPC payload (AppleEvents from /usr/local/bin/arq-lockdown to Arq and Arq Agent), or allow SIGTERM with TerminateArq"
    )]
    QuitRefused { process: String, reason: String },
    #[error(
        "{process} declined to quit (someone or something said no); nothing was changed: the agent tries again within the hour"
    )]
    QuitDeclined { process: String },
    #[error(
        "could not ask {process} to quit ({reason}); nothing was changed: quit Arq by hand, or allow SIGTERM with TerminateArq (--terminate-arq)"
    )]
    QuitFailed { process: String, reason: String },
    #[error(
        "Arq Agent is busy ({0}: a backup running?), so it is not ended; nothing was changed: the agent tries again within the hour"
    )]
    AgentBusy(String),
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
            Self::Running(_)
            | Self::DidNotQuit(..)
            | Self::SurvivedSigterm(_)
            | Self::QuitRefused { .. }
            | Self::QuitDeclined { .. }
            | Self::QuitFailed { .. }
            | Self::AgentBusy(_) => ExitCode::ArqRunning,
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

/// What came of asking one process to quit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuitAnswer {
    /// The request was delivered.
    Delivered,
    /// The request got no answer in time (-1712): the app may be busy, and may still quit.
    TimedOut,
    /// macOS refused to send it (-1743 errAEEventNotPermitted, -1744 would need consent): no
    /// PPPC grant, or the binary lacks the Apple Events entitlement.
    NotPermitted(i32),
    /// The app said no (-128 userCanceledErr).
    Declined,
    /// It could not be sent: the app is not running as one Apple Events can reach (-600), Launch
    /// Services does not know it (-10814, -1728), or osascript did not run or answer.
    Failed(String),
}

/// What the run does after an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextStep {
    /// Wait for it to quit.
    Wait,
    /// It will not quit on request: SIGTERM (the admin allowed it).
    Terminate,
    /// Stop the run, Arq still running, nothing changed.
    Stop,
}

/// The decision, for each answer, with or without the admin's consent to SIGTERM: what was
/// delivered is waited for; what someone declined is never forced; what could not be asked is
/// forced only with consent.
pub fn next_step(answer: &QuitAnswer, terminate_allowed: bool) -> NextStep {
    match answer {
        QuitAnswer::Delivered | QuitAnswer::TimedOut => NextStep::Wait,
        QuitAnswer::Declined => NextStep::Stop,
        QuitAnswer::NotPermitted(_) | QuitAnswer::Failed(_) if terminate_allowed => {
            NextStep::Terminate
        }
        QuitAnswer::NotPermitted(_) | QuitAnswer::Failed(_) => NextStep::Stop,
    }
}

/// Reads what osascript said to the quit script (which prints `asked`, or `not-running` when Launch
/// Services knows no running app by that id): its exit status, output and error text, where
/// AppleScript puts the error number last, as in `execution error: Not authorized to send Apple
/// events to Arq. (-1743)`.
pub fn classify_osascript(success: bool, stdout: &str, stderr: &str) -> QuitAnswer {
    if success {
        return match stdout.trim() {
            "asked" => QuitAnswer::Delivered,
            "not-running" => QuitAnswer::Failed(
                "no running app has its bundle id: not the real Arq, or another session's".into(),
            ),
            other => QuitAnswer::Failed(format!("osascript answered {other:?}")),
        };
    }
    let message = crate::one_line(stderr);
    let code = message
        .rsplit_once("(-")
        .and_then(|(_, rest)| rest.split_once(')'))
        .and_then(|(digits, _)| digits.parse::<i32>().ok())
        .map(|n| -n);
    match code {
        Some(-1712) => QuitAnswer::TimedOut,
        Some(code @ (-1743 | -1744)) => QuitAnswer::NotPermitted(code),
        Some(-128) => QuitAnswer::Declined,
        _ if message.is_empty() => QuitAnswer::Failed("osascript failed without a message".into()),
        _ => QuitAnswer::Failed(message),
    }
}

impl QuitAnswer {
    fn into_error(self, process: &ArqProcess) -> ArqAppError {
        let process = format!("{} pid {}", process.name, process.pid);
        match self {
            Self::NotPermitted(code) => ArqAppError::QuitRefused {
                process,
                reason: format!("Apple Events not permitted, {code}"),
            },
            Self::Declined => ArqAppError::QuitDeclined { process },
            Self::Failed(reason) => ArqAppError::QuitFailed { process, reason },
            Self::Delivered | Self::TimedOut => unreachable!("a delivered request is waited for"),
        }
    }
}

/// Asks Arq, then Arq Agent, to quit and waits up to `wait` for them to be gone. A request that
/// failed stops the run before anything is forced ([`next_step`]). With `terminate_allowed`,
/// whatever still runs then gets SIGTERM — unless Arq Agent looks busy — and a few seconds more.
pub async fn quit(wait: Duration, terminate_allowed: bool) -> Result<(), ArqAppError> {
    let found = running()?;
    if found.is_empty() {
        return Ok(());
    }
    let mut any_delivered = false;
    // The app first: while it runs it would start the agent again.
    for name in PROCESS_NAMES {
        for process in found.iter().filter(|p| p.name == name) {
            let answer = ask_to_quit(process).await;
            match next_step(&answer, terminate_allowed) {
                NextStep::Wait => any_delivered = true,
                NextStep::Terminate => {}
                // It may have gone meanwhile (quit by its user, or the agent with the app).
                NextStep::Stop if !is_running(process.pid)? => {}
                NextStep::Stop => return Err(answer.into_error(process)),
            }
        }
    }
    let left = match any_delivered {
        true => wait_until_gone(wait).await?,
        false => running()?,
    };
    if left.is_empty() {
        return Ok(());
    }
    if !terminate_allowed {
        return Err(ArqAppError::DidNotQuit(wait.as_secs(), describe(&left)));
    }
    refuse_a_busy_agent(&left).await?;
    for process in &left {
        terminate(process);
    }
    match wait_until_gone(SIGTERM_WAIT).await? {
        left if left.is_empty() => Ok(()),
        left => Err(ArqAppError::SurvivedSigterm(describe(&left))),
    }
}

fn is_running(pid: u32) -> Result<bool, ArqAppError> {
    Ok(running()?.iter().any(|p| p.pid == pid))
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

/// Whether a process that used `cpu_ms` of CPU time and moved `io_bytes` to or from disk in
/// `over` looks busy: an idle menu-bar agent uses next to nothing; a backup reads files and
/// compresses, encrypts and uploads them (over 5% of a core, or a MiB of disk traffic).
pub fn looks_busy(cpu_ms: u64, io_bytes: u64, over: Duration) -> bool {
    const BUSY_IO_BYTES: u64 = 1024 * 1024;
    let over_ms = u64::try_from(over.as_millis()).unwrap_or(u64::MAX);
    cpu_ms.saturating_mul(20) >= over_ms.max(1) || io_bytes >= BUSY_IO_BYTES
}

/// Watches the Arq Agent among `left` for [`BUSY_SAMPLE`] and refuses to go on when it looks busy.
async fn refuse_a_busy_agent(left: &[ArqProcess]) -> Result<(), ArqAppError> {
    let pids: Vec<Pid> = left
        .iter()
        .filter(|p| p.name == "Arq Agent")
        .map(|p| Pid::from_u32(p.pid))
        .collect();
    if pids.is_empty() {
        return Ok(());
    }
    let kind = ProcessRefreshKind::nothing().with_cpu().with_disk_usage();
    let mut system = System::new_with_specifics(RefreshKind::nothing())
        .map_err(|e| ArqAppError::CannotList(e.to_string()))?;
    let activity = |system: &System| -> (u64, u64) {
        pids.iter()
            .filter_map(|pid| system.process(*pid))
            .map(|p| {
                let disk = p.disk_usage();
                let io = disk
                    .total_read_bytes
                    .saturating_add(disk.total_written_bytes);
                (p.accumulated_cpu_time(), io)
            })
            .fold((0, 0), |(c, d), (cpu, io)| (c + cpu, d + io))
    };
    system.refresh_processes_specifics(ProcessesToUpdate::Some(&pids), true, kind);
    let (cpu_before, io_before) = activity(&system);
    tokio::time::sleep(BUSY_SAMPLE).await;
    system.refresh_processes_specifics(ProcessesToUpdate::Some(&pids), true, kind);
    let (cpu_after, io_after) = activity(&system);
    let (cpu_ms, io_bytes) = (
        cpu_after.saturating_sub(cpu_before),
        io_after.saturating_sub(io_before),
    );
    if looks_busy(cpu_ms, io_bytes, BUSY_SAMPLE) {
        return Err(ArqAppError::AgentBusy(format!(
            "{cpu_ms} ms of CPU and {io_bytes} bytes of disk traffic in {} s",
            BUSY_SAMPLE.as_secs()
        )));
    }
    Ok(())
}

/// Platform-specific: on macOS a quit Apple Event by bundle id, sent by `osascript` (TCC charges
/// it to arq-lockdown, the responsible process: the PPPC grant and the Apple Events entitlement
/// are ours), bounded in time. Elsewhere SIGTERM is how a program is asked to quit.
async fn ask_to_quit(process: &ArqProcess) -> QuitAnswer {
    #[cfg(target_os = "macos")]
    {
        // The bundle id comes in as an argument, so the script names no app when it is compiled
        // (a literal one would be looked up then, and an unknown one would fail or ask).
        const SCRIPT: &str = "on run argv\nset target to item 1 of argv\nif application id target is running then\nwith timeout of 10 seconds\ntell application id target to quit\nend timeout\nreturn \"asked\"\nend if\nreturn \"not-running\"\nend run";
        let bundle_id = match process.name.as_str() {
            "Arq" => BUNDLE_ID,
            _ => AGENT_BUNDLE_ID,
        };
        match run_osascript(&["-e", SCRIPT, bundle_id]).await {
            Ok(output) => classify_osascript(
                output.status.success(),
                &String::from_utf8_lossy(&output.stdout),
                &String::from_utf8_lossy(&output.stderr),
            ),
            Err(reason) => QuitAnswer::Failed(reason),
        }
    }
    #[cfg(not(target_os = "macos"))]
    {
        terminate(process);
        QuitAnswer::Delivered
    }
}

/// Runs `/usr/bin/osascript ARGS`, and kills it if it has not finished in 15 s (an Apple Event
/// waiting on a consent prompt nobody answers must not hold the run).
#[cfg(target_os = "macos")]
async fn run_osascript(args: &[&str]) -> Result<std::process::Output, String> {
    use std::process::Stdio;
    const LIMIT: Duration = Duration::from_secs(15);
    let mut child = Command::new("/usr/bin/osascript")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("osascript did not start: {e}"))?;
    let deadline = Instant::now() + LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().map_err(|e| e.to_string()),
            Ok(None) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("osascript gave no answer in {} s", LIMIT.as_secs()));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn terminate(process: &ArqProcess) {
    // SAFETY: kill has no memory preconditions; the pid was just seen as this user's.
    unsafe {
        libc::kill(process.pid as libc::pid_t, libc::SIGTERM);
    }
}

/// Platform-specific: on macOS a notification in the user's session (`display notification`,
/// which macOS credits to Script Editor: it shows only where Script Editor may post notifications,
/// as the example profile's `com.apple.notificationsettings` payload allows); elsewhere nothing
/// (the line is in the log either way).
pub async fn notify(text: &str) {
    #[cfg(target_os = "macos")]
    {
        const SCRIPT: &str = "on run argv\ndisplay notification (item 1 of argv) with title \"arq-lockdown\"\nend run";
        let _ = run_osascript(&["-e", SCRIPT, text]).await;
    }
    #[cfg(not(target_os = "macos"))]
    let _ = text;
}

/// The version of the Arq in /Applications when it is one arq-lockdown cannot lock down (Arq 6 and
/// later keep their settings and keys in /Library/Application Support/ArqAgent/, not in the
/// user's app_config.plist and "Arq S3"); `None` when it is Arq 5 or earlier, or there is none.
pub fn unsupported_version() -> Option<String> {
    let bytes = crate::fs::read_small_file(Path::new(INFO_PLIST), 256 * 1024).ok()?;
    let info = plist::Value::from_reader(std::io::Cursor::new(bytes)).ok()?;
    let version = info
        .as_dictionary()?
        .get("CFBundleShortVersionString")?
        .as_string()?;
    (!is_supported(version)).then(|| version.to_owned())
}

/// Whether Arq `version` (CFBundleShortVersionString, "5.18.4") has the layout arq-lockdown
/// edits; a version it cannot read is given the benefit of the doubt.
fn is_supported(version: &str) -> bool {
    let major = version.trim().split('.').next().unwrap_or_default();
    major
        .parse::<u64>()
        .map_or(true, |major| major <= NEWEST_SUPPORTED_MAJOR)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    #[test]
    fn osascripts_answers_are_read_by_their_error_number() {
        use QuitAnswer::*;
        let failed = |text: &str| Failed(text.to_owned());
        for (success, stdout, stderr, answer) in [
            (true,  "asked\n",       "", Delivered),
            (true,  "not-running\n", "", failed("no running app has its bundle id: not the real Arq, or another session's")),
            (true,  "",              "", failed("osascript answered \"\"")),
            (false, "", "0:120: execution error: Not authorized to send Apple events to Arq. (-1743)\n", NotPermitted(-1743)),
            (false, "", "execution error: Not authorised (-1744)", NotPermitted(-1744)),
            (false, "", "0:98: execution error: Arq got an error: User canceled. (-128)\n", Declined),
            (false, "", "0:98: execution error: Arq got an error: AppleEvent timed out. (-1712)\n", TimedOut),
            (false, "", "0:98: execution error: Arq got an error: Application isn’t running. (-600)\n",
                failed("0:98: execution error: Arq got an error: Application isn’t running. (-600)")),
            (false, "", "execution error: Can’t get application id \"x\". (-10814)", failed("execution error: Can’t get application id \"x\". (-10814)")),
            (false, "", "", failed("osascript failed without a message")),
            (false, "", "(-1743) came first, then something else (-2700)", failed("(-1743) came first, then something else (-2700)")),
        ] {
            assert_eq!(classify_osascript(success, stdout, stderr), answer, "{stdout:?} {stderr:?}");
        }
    }

    #[rustfmt::skip]
    #[test]
    fn only_what_could_not_be_asked_is_forced_and_only_with_consent() {
        use NextStep::*;
        use QuitAnswer::*;
        for (answer, without_consent, with_consent) in [
            (Delivered,                 Wait, Wait),
            (TimedOut,                  Wait, Wait),
            (NotPermitted(-1743),       Stop, Terminate),
            (NotPermitted(-1744),       Stop, Terminate),
            (Failed("-600".into()),     Stop, Terminate),
            (Declined,                  Stop, Stop),
        ] {
            assert_eq!(
                [next_step(&answer, false), next_step(&answer, true)],
                [without_consent, with_consent],
                "{answer:?}"
            );
        }
    }

    #[test]
    fn a_refusal_names_the_pppc_payload_as_the_fix() {
        let process = ArqProcess {
            pid: 42,
            name: "Arq".into(),
        };
        let error = QuitAnswer::NotPermitted(-1743).into_error(&process);
        let message = error.to_string();
        assert!(
            message.contains("Arq pid 42") && message.contains("-1743") && message.contains("PPPC"),
            "{message}"
        );
        assert_eq!(error.exit_code(), ExitCode::ArqRunning);
    }

    #[rustfmt::skip]
    #[test]
    fn a_busy_agent_is_told_by_its_cpu_time_and_disk_traffic() {
        let two_s = Duration::from_secs(2);
        for (cpu_ms, io_bytes, busy) in [
            (0, 0, false),
            (20, 4096, false),
            (99, 1024 * 1024 - 1, false),
            (100, 0, true),
            (1900, 0, true),
            (0, 1024 * 1024, true),
        ] {
            assert_eq!(looks_busy(cpu_ms, io_bytes, two_s), busy, "{cpu_ms} ms, {io_bytes} B");
        }
    }

    #[rustfmt::skip]
    #[test]
    fn arq_6_and_later_are_not_supported() {
        for (version, supported) in [
            ("5.18.4", true), ("5", true), ("4.14", true), ("3.3", true),
            ("6.2.54", false), ("7.48", false), ("10.0", false),
            ("", true), ("beta", true),
        ] {
            assert_eq!(is_supported(version), supported, "{version:?}");
        }
    }
}
