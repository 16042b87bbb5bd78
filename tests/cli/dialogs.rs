//! What the user of a real Mac would see: every read of "Arq S3"'s secret by arq-lockdown is a
//! dialog there, and every write costs one keychain-password dialog when Arq next reads the item.
//! The file store logs both (its access log), so each deployment's count is checked here; and it
//! models the user's "Deny", so that what comes after a denial is checked too.

use arq_lockdown::setback::{Setback, SetbackKind};
use serde_json::Value;

use crate::support::*;

/// `apply` (plus `extra` on `command`), then the secret reads and writes it made.
fn counted(mac: &Mac, command: &mut std::process::Command) -> (usize, usize) {
    mac.reset_keychain_access();
    let output = run(command);
    assert_exit(&output, ExitCode::Success, &[]);
    mac.keychain_access()
}

#[test]
fn each_deployment_costs_the_user_at_most_one_dialog_and_one_write() {
    let _guard = no_arq_running();
    let admin = &moto().admin;

    // The keys in "Arq S3" do the IAM work: read once (the one dialog), written once.
    let mac = Mac::new();
    assert_eq!(
        counted(&mac, &mut mac.apply()),
        (1, 1),
        "--admin-credentials arq-s3"
    );
    // The login no-op afterwards, and status (Jamf runs it at every inventory): nothing.
    assert_eq!(
        counted(&mac, &mut mac.apply()),
        (0, 0),
        "the no-op at login"
    );
    for extra in [&["--json"][..], &["--jamf-ea"]] {
        let mut status = arq_lockdown();
        status
            .arg("status")
            .args(extra)
            .arg("--arq-home")
            .arg(mac.home.path())
            .args(["--credential-store", &mac.store]);
        assert_eq!(counted(&mac, &mut status), (0, 0), "status {extra:?}");
    }

    // Admin credentials of its own: the secret in "Arq S3" is never needed, for a lockdown or a
    // rotation.
    let with_env = |mac: &Mac, extra: &[&str]| {
        let mut command = mac.apply();
        command
            .env("AWS_ACCESS_KEY_ID", &admin.id)
            .env("AWS_SECRET_ACCESS_KEY", &admin.secret)
            .args(["--admin-credentials", "env"])
            .args(extra);
        command
    };
    let mac = Mac::new();
    assert_eq!(
        counted(&mac, &mut with_env(&mac, &[])),
        (0, 1),
        "--admin-credentials env"
    );
    assert_eq!(
        counted(&mac, &mut with_env(&mac, &["--rotate"])),
        (0, 1),
        "a rotation with env"
    );

    // The service with an enrollment token: no proof by "Arq S3" needed.
    let mac = Mac::new();
    let mut by_token = mac.apply_via_service("SERIAL-DIALOG");
    by_token.env("ARQ_LOCKDOWN_ENROLLMENT_TOKEN", ENROLLMENT_TOKEN);
    assert_eq!(counted(&mac, &mut by_token), (0, 1), "service with a token");
    // The service with the main keys: they sign the proof, read once.
    let mac = Mac::new();
    assert_eq!(
        counted(&mac, &mut mac.apply_via_service("SERIAL-DIALOG-2")),
        (1, 1),
        "service with the main keys"
    );
}

/// `status --json` and `status --jamf-ea` for `mac`, run by `runs` (as the test, or as a user).
fn status_of(
    mac: &Mac,
    runs: impl Fn(std::process::Command) -> std::process::Command,
) -> (Value, String) {
    let status = |extra: &str| {
        let mut command = arq_lockdown();
        command
            .args(["status", extra, "--credential-store", &mac.store])
            .arg("--arq-home")
            .arg(mac.home.path());
        let output = run(&mut runs(command));
        assert_exit(&output, ExitCode::Success, &[]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    (
        serde_json::from_str(&status("--json")).unwrap(),
        status("--jamf-ea"),
    )
}

#[test]
fn a_denied_keychain_dialog_is_remembered_and_shown_to_the_admin() {
    let _guard = no_arq_running();
    // Source iam with the main keys in "Arq S3": their secret must be read, and the user denies it.
    let mac = Mac::new();
    let before = mac.key();
    mac.user_denies_the_dialog(true);
    let denied = run(&mut mac.apply());
    assert_exit(
        &denied,
        ExitCode::Credentials,
        &["the user denied arq-lockdown the secret of \"Arq S3\""],
    );
    assert_eq!((mac.keychain_denials(), mac.keychain_access()), (1, (0, 0)));
    assert_eq!(mac.key(), before, "\"Arq S3\" is as it was");
    let setback = Setback::load(mac.home.path()).expect("the denial is remembered");
    assert_eq!(
        (setback.kind, setback.count),
        (SetbackKind::KeychainDenied, 1)
    );
    assert_eq!(setback.computer_uuid.as_deref(), Some(mac.uuid.as_str()));

    // The admin sees it in inventory: the state word and the words, no secret read to say so.
    mac.reset_keychain_access();
    let (json, ea) = status_of(&mac, |command| command);
    assert_eq!(json["state"], "keychain-access-denied", "{json}");
    assert!(
        ea.starts_with("<result>keychain-access-denied")
            && ea.contains("keychain access denied by the user")
            && ea.lines().count() == 1,
        "{ea}"
    );
    assert_eq!((mac.keychain_denials(), mac.keychain_access()), (0, (0, 0)));

    // A run by hand asks again (someone is there to answer), and counts a second denial.
    run(&mut mac.apply());
    assert_eq!(mac.keychain_denials(), 1);
    assert_eq!(Setback::load(mac.home.path()).unwrap().count, 2);

    // Allowed at last: the lockdown goes through and the setback is forgotten.
    mac.user_denies_the_dialog(false);
    let allowed = run(&mut mac.apply());
    assert_exit(&allowed, ExitCode::Success, &[]);
    assert_eq!(Setback::load(mac.home.path()), None);
    assert_eq!(status_of(&mac, |command| command).0["state"], "locked-down");
}

#[test]
fn after_a_denial_the_agent_does_not_ask_again_for_hours() {
    let _guard = no_arq_running();
    if !is_root_or_not_ci() {
        return;
    }
    // The agent's run: `apply --managed`, as the profile says (Source iam: the main keys in
    // "Arq S3" do the IAM work, so their secret is read — a dialog).
    let user = ManagedUser::new(&[("Source", "iam".into())]);
    let mac = Mac::new();
    mac.user_denies_the_dialog(true);
    let managed = || {
        let mut apply = mac.apply();
        apply.arg("--managed");
        user.runs(&mac, apply)
    };
    let denied = run(&mut managed());
    assert_exit(&denied, ExitCode::Credentials, &[]);
    assert_eq!(mac.keychain_denials(), 1, "the first run asks");

    // Within the backoff the next runs (hourly, and at each login) ask nothing: no dialog at all.
    for _ in 0..2 {
        let waited = run(&mut managed());
        assert_exit(&waited, ExitCode::Success, &[]);
        let said = String::from_utf8_lossy(&waited.stdout);
        assert!(
            said.starts_with(
                "nothing done: keychain access denied by the user (1 time(s) in a row)"
            ) && said.contains("does not ask again before"),
            "{said}"
        );
    }
    assert_eq!((mac.keychain_denials(), mac.keychain_access()), (1, (0, 0)));
    let (json, _) = status_of(&mac, |command| user.runs(&mac, command));
    assert_eq!(json["state"], "keychain-access-denied", "{json}");

    // Once the backoff (4 hours after one denial) has run out, the agent asks again; the user
    // allows it this time, and the Mac is locked down.
    let path = Setback::path(mac.home.path());
    let mut setback: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let last = setback["last_at_unix"].as_u64().unwrap();
    setback["last_at_unix"] = (last - 4 * 3600).into();
    std::fs::write(&path, setback.to_string()).unwrap();
    mac.user_denies_the_dialog(false);
    let allowed = run(&mut managed());
    assert_exit(&allowed, ExitCode::Success, &[]);
    assert_eq!(
        mac.keychain_access(),
        (1, 1),
        "asked once more, then written once"
    );
    assert_eq!(Setback::load(mac.home.path()), None);
}
