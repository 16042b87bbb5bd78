//! The log an admin or the helpdesk reads (`~/Library/Logs/arq-lockdown/arq-lockdown.log`; on a
//! Mac the unified log gets the same lines): what the agent's hourly runs leave there. A run with
//! nothing to do writes nothing; "nothing done: why" is said once a day, not every hour, and a
//! user without Arq gets no error exit; `LogLevel` decides every line. (The unified log's levels
//! are `run_log`'s unit tests and the macOS job's `log show`.)

use crate::support::*;

fn log_of(mac: &Mac) -> String {
    std::fs::read_to_string(
        mac.home
            .path()
            .join(arq_lockdown::run_log::LOG_RELATIVE_PATH),
    )
    .unwrap_or_default()
}

#[test]
fn a_run_that_finds_the_lockdown_in_place_writes_nothing() {
    let _guard = no_arq_running();
    let mac = Mac::new();
    assert_eq!(exit_code(&mac.run_apply(&[])), ExitCode::Success);
    let after_the_lockdown = log_of(&mac);
    assert!(
        after_the_lockdown.contains("receipt written"),
        "{after_the_lockdown}"
    );
    for _ in 0..2 {
        let again = mac.run_apply(&[]);
        assert_exit(&again, ExitCode::Success, &["nothing to do"]);
    }
    assert_eq!(
        log_of(&mac),
        after_the_lockdown,
        "the no-op runs wrote to the log"
    );
}

#[test]
fn a_user_without_arq_hears_of_it_once_a_day_and_gets_no_error() {
    let _guard = no_arq_running();
    let mac = Mac::new();
    std::fs::remove_dir_all(mac.home.path().join("Library/Arq")).unwrap();
    for _ in 0..3 {
        let output = run(mac.apply().arg("--managed"));
        assert_exit(&output, ExitCode::Success, &[]);
        let said = String::from_utf8_lossy(&output.stdout);
        assert!(
            said.starts_with("nothing done: Arq is not set up for this user (no ")
                && said.contains("Library/Arq/config/app_config.plist"),
            "{said}"
        );
    }
    let log = log_of(&mac);
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.contains("] nothing done: Arq is not set up"), "{log}");
    // By hand it is the error it always was: whoever ran it asked for a lockdown here.
    let by_hand = run(&mut mac.apply());
    assert_exit(&by_hand, ExitCode::ConfigMissing, &[]);
}

#[test]
fn log_level_warning_keeps_only_problems_in_the_log() {
    let _guard = no_arq_running();
    if !is_root_or_not_ci() {
        return;
    }
    let user = ManagedUser::new(&[("Source", "iam".into()), ("LogLevel", "warning".into())]);
    let mac = Mac::new();
    let managed = || {
        let mut apply = mac.apply();
        apply.arg("--managed");
        user.runs(&mac, apply)
    };
    // A lockdown: steps only, none of them in the log.
    let locked = run(&mut managed());
    assert_exit(&locked, ExitCode::Success, &[]);
    // Nothing to do here any more (Arq removed): not a problem either.
    let config = std::fs::read(mac.home.config_path()).unwrap();
    std::fs::remove_file(mac.home.config_path()).unwrap();
    let nothing = run(&mut managed());
    assert_exit(&nothing, ExitCode::Success, &[]);
    // (moto lets the key list other computers' folders, which AWS would not: a warning.)
    let so_far = log_of(&mac);
    assert!(
        so_far.lines().all(|line| line.contains("] warning: "))
            && !so_far.contains("receipt written")
            && !so_far.contains("nothing done"),
        "LogLevel warning, and no problem but a warning yet: {so_far}"
    );
    // A problem: "Arq S3" gone. That line is kept.
    std::fs::write(mac.home.config_path(), config).unwrap();
    mac.remove_arq_s3();
    let failed = run(&mut managed());
    assert_exit(&failed, ExitCode::Credentials, &[]);
    let log = log_of(&mac);
    let added = log.strip_prefix(so_far.as_str()).unwrap();
    assert!(
        added.lines().count() == 1 && added.contains("] error: ") && added.contains("\"Arq S3\""),
        "{log}"
    );
}
