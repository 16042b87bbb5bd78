//! What the user of a real Mac would see: every read of "Arq S3"'s secret by arq-lockdown is a
//! dialog there, and every write costs one keychain-password dialog when Arq next reads the item.
//! The file store logs both (its access log), so each deployment's count is checked here.

use crate::support::*;

/// `apply` (plus `extra` on `command`), then the secret reads and writes it made.
fn counted(mac: &Mac, command: &mut std::process::Command) -> (usize, usize) {
    mac.reset_keychain_access();
    let output = run(command);
    assert_eq!(exit_code(&output), ExitCode::Success, "{}", stderr(&output));
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
