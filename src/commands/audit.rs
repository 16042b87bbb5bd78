//! `arq-lockdown audit`: the fleet's state for people (a table of what needs action, then the
//! summary), for scripts (`--json`) and for a spreadsheet (`--csv`); with `--html` also as a page,
//! with `--history` recorded day by day. Progress on stderr only on a terminal, and never with
//! `--json` or `--csv`.

use std::io::IsTerminal;
use std::path::Path;

use crate::Error;
use crate::audit::decide::{ComputerState, MainKeySource, MainKeyStatus};
use crate::audit::history::{Entry, History};
use crate::audit::{self, AuditOptions, ComputerReport, MainKeyReport, PolicyFix, Report, html};
use crate::aws::{self, Identity};
use crate::cli::AuditArgs;
use crate::exit_code::ExitCode;
use crate::inventory::Inventory;

pub async fn run(args: AuditArgs) -> Result<ExitCode, Error> {
    // The files first: a wrong path costs no AWS call.
    if let Some(file) = &args.html {
        check_page_path(file)?;
    }
    let mut history = match &args.history {
        Some(dir) => Some(load_history(dir, args.bucket.as_str())?),
        None => None,
    };
    let sdk_config = super::admin_config(&args.admin_credentials).await;
    let admin_key_id = super::found_credentials(&sdk_config, super::ADMIN_CREDENTIALS_FIX)
        .await?
        .access_key_id()
        .to_owned();
    let options = AuditOptions {
        bucket: args.bucket,
        main_key_ids: args.main_key_ids,
        stale_days: args.stale_days,
        names: !args.no_names,
        fix_policies: args.fix_policies,
        admin_key_id: Some(admin_key_id),
        quiet_minutes: args.quiet_minutes,
        inventory: match &args.inventory {
            Some(path) => Some(Inventory::read(path, args.inventory_column.as_deref())?),
            None => None,
        },
    };
    let progress = match !args.json && !args.csv && std::io::stderr().is_terminal() {
        true => {
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "reading computerinfo {pos}/{len} {wide_bar}",
                )
                .expect("the template is valid"),
            );
            bar
        }
        false => indicatif::ProgressBar::hidden(),
    };
    // Who made the page: STS names the caller (it needs no permission), beside the audit.
    let caller = async {
        match args.html.is_some() {
            true => Some(aws::identify(&sdk_config).await),
            false => None,
        }
    };
    let (report, caller) = tokio::join!(audit::audit(&sdk_config, &options, &progress), caller);
    let report = report?;
    if let Some(history) = &mut history {
        history.add(Entry::of(&report));
        history.save().map_err(Error::Output)?;
    }
    if let Some(file) = &args.html {
        let provenance = html::Provenance {
            generated_by: &caller_arn(caller),
            version: env!("CARGO_PKG_VERSION"),
        };
        let entries = history.as_ref().map_or(&[][..], History::entries);
        let page = html::page(&report, &provenance, entries);
        crate::fs::write_atomically(file, page.as_bytes(), 0o644).map_err(|e| {
            Error::Output(std::io::Error::new(
                e.kind(),
                format!("the page {}: {e}", file.display()),
            ))
        })?;
    }
    if args.json {
        super::print_json(&report)?;
    } else if args.csv {
        super::print(&to_csv(&report))?;
    } else {
        super::print(&to_text(&report))?;
    }
    Ok(report.exit_code())
}

/// `--html FILE` must name a file in a folder this user can write.
fn check_page_path(file: &Path) -> Result<(), Error> {
    let folder = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let problem = match () {
        _ if file.is_dir() => "is a folder: name the page's file",
        _ if !folder.is_dir() => "is in no folder that exists: create the folder, or fix the path",
        _ if !writable(folder) => "is in a folder this user cannot write: pass --html another path",
        _ => return Ok(()),
    };
    Err(Error::Usage(format!("--html {} {problem}", file.display())))
}

/// The history of `bucket` in `dir`, which must be a folder this user can write; a note on
/// stderr when lines were skipped.
fn load_history(dir: &Path, bucket: &str) -> Result<History, Error> {
    if dir.is_dir() && !writable(dir) {
        return Err(Error::Usage(format!(
            "--history {} is a folder this user cannot write: pass another",
            dir.display()
        )));
    }
    let history = History::load(dir, bucket).map_err(|e| Error::Usage(e.to_string()))?;
    if history.skipped > 0 {
        eprintln!(
            "arq-lockdown: warning: skipped {} unreadable line(s) of {}; this run writes it without them",
            history.skipped,
            audit::history::path(dir, bucket).display()
        );
    }
    Ok(history)
}

/// Whether this user may create files in `folder` (as the kernel judges it, root included).
fn writable(folder: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(folder.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
    unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// The caller ARN for the page, or why it is unknown.
fn caller_arn(caller: Option<Result<Identity, aws::Unreachable>>) -> String {
    match caller {
        Some(Ok(Identity::Known(caller))) => caller.arn,
        Some(Ok(Identity::Refused(code))) => {
            format!("unknown (STS refused GetCallerIdentity: {code})")
        }
        Some(Err(_)) | None => "unknown (STS could not be reached)".to_owned(),
    }
}

/// One line per computer needing action, the policy fixes, then the summary and the verdict.
fn to_text(report: &Report) -> String {
    let mut text = action_table(&report.computers);
    text += &fix_lines(&report.policy_fixes);
    if !text.is_empty() {
        text += "\n";
    }
    text += &summary_lines(report);
    text += &inventory_lines(report);
    for key in &report.main_keys {
        text += &main_key_line(key);
    }
    text += &verdict_line(report);
    text
}

/// The computers not locked down, a line each under a header: state, UUID, name, action.
fn action_table(computers: &[ComputerReport]) -> String {
    let mut text = String::new();
    let needing: Vec<_> = computers
        .iter()
        .filter(|c| c.state != ComputerState::LockedDown)
        .collect();
    let name_width = needing
        .iter()
        .map(|c| shown_name(c.computer_name.as_deref()).chars().count())
        .max()
        .unwrap_or(0)
        .clamp(4, 32);
    if !needing.is_empty() {
        text += &format!(
            "{:<16} {:<36} {:<name_width$} ACTION\n",
            "STATE", "COMPUTER", "NAME"
        );
    }
    for computer in needing {
        let name: String = shown_name(computer.computer_name.as_deref())
            .chars()
            .take(name_width)
            .collect();
        text += &format!(
            "{:<16} {:<36} {:<name_width$} {}\n",
            computer.state.as_str(),
            computer.computer_uuid,
            name,
            computer.action.as_deref().unwrap_or_default(),
        );
    }
    text
}

fn shown_name(name: Option<&str>) -> &str {
    name.unwrap_or("-")
}

/// A line for each policy `--fix-policies` rewrote.
fn fix_lines(fixes: &[PolicyFix]) -> String {
    let mut text = String::new();
    for fix in fixes {
        text += &format!(
            "fixed: {} of {} ({}), now {}\n",
            fix.change,
            fix.user_name,
            fix.computer_uuid,
            fix.state.as_str()
        );
    }
    text
}

/// The bucket's computers by state, and how many computerinfo could not be read.
fn summary_lines(report: &Report) -> String {
    let mut text = String::new();
    let states: Vec<String> = report
        .summary
        .states
        .iter()
        .filter(|(_, count)| count.as_u64() != Some(0))
        .map(|(state, count)| format!("{count} {state}"))
        .collect();
    text += &format!(
        "bucket {}: {} computer(s){}{}\n",
        report.bucket,
        report.summary.computers,
        if states.is_empty() { "" } else { ": " },
        states.join(", ")
    );
    if report.summary.computerinfo_unread > 0 {
        text += &format!(
            "{} computer(s) without a readable computerinfo: names from the IAM users' tags where there are any\n",
            report.summary.computerinfo_unread
        );
    }
    text
}

/// With `--inventory`: what it held, and its first warnings.
fn inventory_lines(report: &Report) -> String {
    const SHOWN: usize = 20;
    let Some(inventory) = &report.inventory else {
        return String::new();
    };
    let mut text = format!(
        "inventory: {} row(s) name a computer, {} of this bucket's reported; {} row(s) name none (not configured, nobody logged in, no value yet)\n",
        inventory.records, inventory.computers_reported, inventory.without_computer
    );
    let warnings = inventory.warnings.len() + inventory.warnings_left_out;
    for warning in inventory.warnings.iter().take(SHOWN) {
        text += &format!("inventory warning: {warning}\n");
    }
    if warnings > SHOWN {
        text += &format!(
            "inventory: {} more warning(s) (all of them with --json)\n",
            warnings - SHOWN
        );
    }
    text
}

/// A main key: where audit learnt of it, how many Macs record it, its last use and its owner.
fn main_key_line(key: &MainKeyReport) -> String {
    let sources: Vec<&str> = key
        .sources
        .iter()
        .map(|s| match s {
            MainKeySource::Flag => "--main-key-id",
            MainKeySource::Recorded => "recorded",
            MainKeySource::Claimed => "claimed by token-enrolled Macs",
        })
        .collect();
    let recorded = match key.recorded_by {
        0 => String::new(),
        n => format!(", replaced on {n} Mac(s)"),
    };
    let owner = key
        .user_name
        .as_deref()
        .map_or(String::new(), |u| format!(" (IAM user {u})"));
    let quiet = match (&key.quiet_since, &key.ready_after) {
        (Some(since), Some(after)) => format!("; quiet since {since}, ready after {after}"),
        _ => String::new(),
    };
    format!(
        "main key {} ({}{recorded}): {}{owner}{quiet}\n",
        key.access_key_id,
        sources.join(", "),
        main_key_status(key)
    )
}

/// A main key's status in words: its last use, or why there is none.
fn main_key_status(key: &MainKeyReport) -> String {
    match (key.status, &key.last_used) {
        (MainKeyStatus::Used, Some(at)) => format!(
            "last used {at} by {} in {}",
            key.last_used_service.as_deref().unwrap_or("?"),
            key.last_used_region.as_deref().unwrap_or("?")
        ),
        (MainKeyStatus::Used, None) => "used".to_owned(),
        (MainKeyStatus::NeverUsed, _) => "never used".to_owned(),
        (MainKeyStatus::NotFound, _) => {
            "not found in IAM (deleted, or another account's)".to_owned()
        }
        (MainKeyStatus::Refused, _) => "IAM refused GetAccessKeyLastUsed".to_owned(),
        (MainKeyStatus::ScopedKey, _) => "a Mac's scoped key, not a main key".to_owned(),
    }
}

/// Whether the main keys may be retired, and why not.
fn verdict_line(report: &Report) -> String {
    match report.ready_to_retire_main_keys {
        true => format!(
            "ready to retire the main keys: yes — no use recorded for {} minutes: arq-lockdown retire-main-keys deactivates them (--undo reverses it)\n",
            report.quiet_minutes
        ),
        false => format!(
            "ready to retire the main keys: no — {}\n",
            report.not_ready_reasons.join("; ")
        ),
    }
}

/// One row per computer. Names come from the Macs themselves, so a cell a spreadsheet would run
/// as a formula (`=`, `+`, `-`, `@`, tab, carriage return first) is prefixed with `'`.
fn to_csv(report: &Report) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let header = [
        "computer_uuid",
        "computer_name",
        "user_name",
        "state",
        "user_arn",
        "active_keys",
        "access_key_ids",
        "last_used",
        "action",
    ];
    writer.write_record(header).expect("writing to memory");
    for computer in &report.computers {
        let active = computer.access_keys.iter().filter(|k| k.active).count();
        let ids: Vec<&str> = computer
            .access_keys
            .iter()
            .filter_map(|k| k.access_key_id.as_deref())
            .collect();
        let last_used = computer
            .access_keys
            .iter()
            .filter_map(|k| k.last_used.as_deref())
            .max()
            .unwrap_or_default();
        writer
            .write_record([
                computer.computer_uuid.as_str(),
                &spreadsheet_safe(computer.computer_name.as_deref().unwrap_or_default()),
                &spreadsheet_safe(computer.user_name.as_deref().unwrap_or_default()),
                computer.state.as_str(),
                computer.user_arn.as_deref().unwrap_or_default(),
                &active.to_string(),
                &ids.join(" "),
                last_used,
                computer.action.as_deref().unwrap_or_default(),
            ])
            .expect("writing to memory");
    }
    String::from_utf8(writer.into_inner().expect("writing to memory"))
        .expect("CSV of UTF-8 is UTF-8")
}

fn spreadsheet_safe(text: &str) -> String {
    match text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        true => format!("'{text}"),
        false => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_a_spreadsheet_would_run_is_defused() {
        for (name, shown) in [
            ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"),
            ("+1", "'+1"),
            ("-2", "'-2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("Bob's Mac", "Bob's Mac"),
            ("", ""),
        ] {
            assert_eq!(spreadsheet_safe(name), shown);
        }
    }
}
