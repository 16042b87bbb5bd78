//! The rehearsal of a whole rollout, ≈30 Macs (bench/rollout_driver.rs, shared with
//! `bench/rollout`): Macs enroll through two service instances with the token and with the main
//! keys, some straight from IAM, while IAM throttles and new keys take seconds to work and their
//! stand-in Arqs go on backing up; the admin audits until the main keys may go, then retires them.
//! Asserted: every Mac locked down; no backup fails once a Mac's lockdown is done, through and
//! after the retirement; the verdict is never ready while a stand-in Arq still uses a main key;
//! one keychain write per Mac and no secret read for token Macs. The figures are printed, not
//! asserted. Needs root (each agent run sees its Mac's profile at /Library/Managed Preferences,
//! in a mount namespace of its own); CI runs as root.

#[path = "../../bench/rollout_driver.rs"]
mod driver;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use driver::{Kind, Plan};

use crate::support::*;

fn root() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root || std::env::var_os("CI").is_none(),
        "CI must run the rollout as root"
    );
    if !root {
        eprintln!("not root: the rollout rehearsal checks nothing here");
    }
    root
}

#[test]
fn a_fleet_is_locked_down_and_its_main_keys_retired_without_a_failed_backup() {
    // Its stand-in Arqs are processes named Arq that other tests' `apply` would ask to quit.
    let _guard = arq_may_run();
    if !root() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let plan = Plan {
        binary: env!("CARGO_BIN_EXE_arq-lockdown").into(),
        endpoint: moto().endpoint.clone(),
        account: "400000000001".into(),
        bucket: "rollout.example".into(),
        macs: BTreeMap::from([(Kind::Token, 12), (Kind::Proof, 9), (Kind::Iam, 9)]),
        no_relaunch: 2,
        iam_calls_per_second: 5.0,
        new_key_delay: 2.0,
        // Two hours of quiet pass in 12 s; a stand-in backs up every 20 minutes of its clock.
        clock_speed: 600.0,
        backup_every: Duration::from_secs(2),
        agent_every: Duration::from_secs(6),
        login_spread: Duration::from_secs(2),
        concurrent_applies: 12,
        audit_every: Duration::from_secs(2),
        backups_after_retirement: 2,
        deadline: Duration::from_secs(300),
        work: work.path().to_owned(),
    };
    let report = driver::rehearse(
        plan.clone(),
        Arc::new(|output| assert_no_secret(output, &[])),
    );
    eprintln!("{}", report.figures(&plan));

    // Every Mac is locked down: its keychain holds its own key, audit agrees.
    let main = &report.main_keys[0];
    for mac in &report.macs {
        assert!(
            mac.locked_down_after.is_some() && &mac.final_key != main,
            "{mac:#?}"
        );
    }
    let (exit, audit) = &report.final_audit;
    assert_eq!(*exit, 0, "{audit:#}");
    assert_eq!(
        audit["summary"]["states"]["locked-down"],
        report.macs.len(),
        "{audit:#}"
    );

    // The verdict was never ready while a stand-in Arq still used the main keys; it was at last.
    let premature: Vec<_> = report
        .audits
        .iter()
        .filter(|a| a.ready && a.macs_on_main_keys > 0)
        .collect();
    assert!(premature.is_empty(), "{premature:#?}");
    assert!(
        report
            .audits
            .iter()
            .any(|a| !a.ready && a.macs_on_main_keys > 0),
        "no audit saw the rollout under way"
    );

    // Retired: the main keys are Inactive, and every Mac went on backing up.
    let (code, outcome, _) = report
        .retirement
        .as_ref()
        .expect("the verdict never became ready");
    assert_eq!(
        (*code, &outcome["result"]),
        (0, &serde_json::json!("retired")),
        "{outcome:#}"
    );
    assert_eq!(outcome["changes"][0]["access_key_id"], *main);
    assert_eq!(outcome["changes"][0]["to"], "Inactive");
    for mac in &report.macs {
        assert_eq!(
            mac.failures_after_lockdown, 0,
            "a backup failed after the lockdown: {mac:#?}"
        );
        assert!(
            mac.backups_after_retirement >= plan.backups_after_retirement,
            "{mac:#?}"
        );
        // One keychain write per Mac; a token Mac never reads the secret.
        assert_eq!(mac.writes, 1, "{mac:#?}");
        if mac.kind == "token" {
            assert_eq!(mac.secret_reads, 0, "{mac:#?}");
        }
    }
    // The rehearsal throttled IAM and delayed new keys, as it meant to.
    assert!(
        report.calls["throttled"].as_u64().unwrap_or(0) > 0,
        "{}",
        report.calls
    );
    assert!(
        report.calls["refused-new"].as_u64().unwrap_or(0) > 0,
        "{}",
        report.calls
    );
}
