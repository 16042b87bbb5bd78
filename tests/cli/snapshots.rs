//! What an admin sees, whole: every `--help`, the `verify` table, a dry-run plan, `status` in
//! each format. A changed word is a reviewed diff (`cargo insta review`), not a silent drift.
//! Run-specific values (temporary paths, key ids, ports, times) are filtered to placeholders.

use clap::CommandFactory;

use crate::support::*;

#[test]
fn every_help_text() {
    let command = arq_lockdown::cli::Cli::command();
    let mut names = vec![None];
    names.extend(
        command
            .get_subcommands()
            .map(|c| Some(c.get_name().to_owned())),
    );
    snapshot_settings().bind(|| {
        for name in names {
            let mut run_help = arq_lockdown();
            run_help.args(name.iter()).arg("--help");
            let output = run(&mut run_help);
            assert_eq!(exit_code(&output), ExitCode::Success);
            let label = format!("help-{}", name.as_deref().unwrap_or("arq-lockdown"));
            insta::assert_snapshot!(label, String::from_utf8_lossy(&output.stdout));
        }
    });
}

#[test]
fn a_dry_run_plan() {
    let _guard = no_arq_running();
    let mac = Mac::with_uuid(&fresh_uuid());
    let output = run(mac.apply().arg("--dry-run"));
    let text = transcript(&output).replace(&mac.uuid, "[UUID]");
    snapshot_settings().bind(|| insta::assert_snapshot!("apply-dry-run", text));
}

#[test]
fn the_verify_table_and_status_of_a_locked_down_mac() {
    let _guard = no_arq_running();
    let mac = Mac::new();
    assert_eq!(exit_code(&mac.run_apply(&[])), ExitCode::Success);
    let verify = run(arq_lockdown_on_moto()
        .arg("verify")
        .arg("--arq-home")
        .arg(mac.home.path())
        .args(["--credential-store", &mac.store])
        // The bucket holds other tests' computers too: name the one to probe.
        .args(["--other-computer-uuid", OTHER_COMPUTER]));
    let status = |flags: &[&str]| {
        let output = run(arq_lockdown()
            .arg("status")
            .args(flags)
            .arg("--arq-home")
            .arg(mac.home.path())
            .args(["--credential-store", &mac.store]));
        transcript(&output).replace(&mac.uuid, "[UUID]")
    };
    snapshot_settings().bind(|| {
        let verify = transcript(&verify).replace(&mac.uuid, "[UUID]");
        insta::assert_snapshot!("verify-locked-down", verify);
        insta::assert_snapshot!("status-text", status(&[]));
        insta::assert_snapshot!("status-json", status(&["--json"]));
        insta::assert_snapshot!("status-jamf-ea", status(&["--jamf-ea"]));
    });
}
