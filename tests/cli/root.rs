//! Run as root: acting for a user (`session`), and never following a user's symlink. These need
//! root (CI runs as root); as another user they check nothing and say so.

use std::os::unix::fs::{MetadataExt, symlink};

use crate::support::*;

/// Whether this runs as root. CI runs as root, so there a test that would check nothing fails.
fn root() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root || std::env::var_os("CI").is_none(),
        "CI must run the root tests as root"
    );
    if !root {
        eprintln!("not root: the root tests check nothing here");
    }
    root
}

#[test]
fn root_with_nobody_logged_in_leaves_the_work_to_the_next_login() {
    let _guard = no_arq_running();
    if !root() {
        return;
    }
    // The Keychain is the store (the default) and no user owns /dev/console here. SUDO_USER, even
    // a person's, does not count: over SSH that is the admin, with no GUI session and no Arq.
    for sudo_user in [None, Some("root"), Some("_mbsetupuser"), Some("nobody")] {
        let mut command = arq_lockdown();
        command.args(["apply", "--dry-run"]);
        if let Some(name) = sudo_user {
            command.env("SUDO_USER", name);
        }
        let output = run(&mut command);
        assert_eq!(
            exit_code(&output),
            ExitCode::NoUser,
            "{sudo_user:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains("will run at the next login"),
            "{}",
            stderr(&output)
        );
    }
    // A Jamf extension attribute gets its one line all the same.
    let jamf = run(arq_lockdown().args(["status", "--jamf-ea"]));
    assert_eq!(exit_code(&jamf), ExitCode::Success);
    assert_eq!(
        String::from_utf8_lossy(&jamf.stdout),
        "<result>nobody logged in</result>\n"
    );
}

#[test]
fn root_runs_again_as_the_named_user_with_that_users_home() {
    let _guard = no_arq_running();
    if !root() {
        return;
    }
    // Debian's "nobody" has /nonexistent as its home: the second run looks for Arq's config there,
    // which shows it ran as nobody, not as root with root's HOME.
    let output = run(arq_lockdown().args(["status", "--json", "--user", "nobody"]));
    assert_eq!(exit_code(&output), ExitCode::Success, "{}", stderr(&output));
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        status["user"], "nobody",
        "the second run's uid is not nobody's"
    );
    assert!(
        status["detail"]
            .as_str()
            .unwrap()
            .contains("no Arq config at /nonexistent/Library/Arq/config/app_config.plist"),
        "{status}"
    );

    let unknown = run(arq_lockdown().args(["apply", "--user", "no-such-user-arq-lockdown"]));
    assert_eq!(exit_code(&unknown), ExitCode::Usage);
    assert!(stderr(&unknown).contains("there is no user \"no-such-user-arq-lockdown\""));
}

#[test]
fn root_never_follows_a_users_symlink_into_or_out_of_a_home() {
    let _guard = no_arq_running();
    if !root() {
        return;
    }
    let nobody = 65534;
    // The config folder is a symlink a user made: root must not follow it (to read what it points at).
    let home = ArqHome::with(BUCKET, THIS_COMPUTER);
    let real = home.path().join("elsewhere");
    std::fs::rename(home.path().join("Library/Arq/config"), &real).unwrap();
    symlink(&real, home.path().join("Library/Arq/config")).unwrap();
    std::os::unix::fs::lchown(
        home.path().join("Library/Arq/config"),
        Some(nobody),
        Some(nobody),
    )
    .unwrap();
    let output = run(arq_lockdown()
        .arg("policy")
        .arg("--arq-home")
        .arg(home.path()));
    assert_eq!(
        exit_code(&output),
        ExitCode::ConfigInvalid,
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("refusing to follow"),
        "{}",
        stderr(&output)
    );

    // The receipt's folder is a user's symlink (to a root-owned place): apply refuses before any change.
    let mac = Mac::new();
    let before = mac.key();
    let target = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(mac.home.path().join("Library")).unwrap();
    symlink(
        target.path(),
        mac.home.path().join("Library/Application Support"),
    )
    .unwrap();
    std::os::unix::fs::lchown(
        mac.home.path().join("Library/Application Support"),
        Some(nobody),
        Some(nobody),
    )
    .unwrap();
    let output = run(&mut mac.apply());
    assert_eq!(
        exit_code(&output),
        ExitCode::ConfigInvalid,
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("refusing to follow"),
        "{}",
        stderr(&output)
    );
    assert_eq!(mac.key(), before);
    assert_eq!(scoped_user(&mac.uuid)["exists"], false);
}

/// What `sudo arq-lockdown apply --admin-credentials profile:NAME` does on a Mac: the profile is
/// the admin's (root's environment), not the user's; root resolves it and hands the keys to its
/// run as the user through a pipe, in a clean environment.
#[test]
fn root_hands_admin_credentials_it_resolved_to_its_run_as_the_user() {
    let _guard = no_arq_running();
    if !root() {
        return;
    }
    let nobody = 65534;
    let mac = Mac::new();
    mac.give_to(nobody);
    // The admin's profile, in a folder only root can read: the run as nobody cannot read it.
    let admin_dir = tempfile::tempdir().unwrap();
    let credentials = admin_dir.path().join("credentials");
    let admin = &moto().admin;
    std::fs::write(
        &credentials,
        format!(
            "[fleet-admin]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            admin.id, admin.secret
        ),
    )
    .unwrap();
    let output = run(mac
        .apply()
        .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
        .args([
            "--user",
            "nobody",
            "--admin-credentials",
            "profile:fleet-admin",
        ]));
    assert_eq!(exit_code(&output), ExitCode::Success, "{}", stderr(&output));
    let user = scoped_user(&mac.uuid);
    assert_eq!(
        user["keys"],
        serde_json::json!([mac.key().id]),
        "nobody's run did not lock the Mac down"
    );
    let receipt = mac
        .home
        .path()
        .join("Library/Application Support/arq-lockdown/receipt.json");
    assert_eq!(
        std::fs::metadata(receipt).unwrap().uid(),
        nobody,
        "the receipt is not the user's"
    );
}
