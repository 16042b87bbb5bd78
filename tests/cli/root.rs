//! Run as root: acting for a user (`session`), and never acting on what a user controls — their
//! files, their AWS config, their processes. Most traps here are set the way a local user who is
//! not an admin would set them on a Mac, by a throwaway user made for the test ([`LocalUser`]).
//! These need root (CI runs as root); as another user they check nothing and say so.

use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use serde_json::Value;

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

/// Where root keeps the last extension attribute line of the last user (Linux's place).
const LAST_KNOWN: &str = "/var/lib/arq-lockdown/last-extension-attribute.json";

/// Tests whose root runs of `status --jamf-ea` read or write [`LAST_KNOWN`] hold this, each
/// starting from none.
static EXTENSION_ATTRIBUTE_STATE: Mutex<()> = Mutex::new(());

fn last_known_state() -> std::sync::MutexGuard<'static, ()> {
    let guard = EXTENSION_ATTRIBUTE_STATE
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let _ = std::fs::remove_file(LAST_KNOWN);
    guard
}

/// A Mac whose home folder, Arq config and "Arq S3" belong to a local user who is not an admin.
fn users_mac() -> (Mac, LocalUser) {
    let mac = Mac::new();
    let user = LocalUser::with_home(mac.home.path());
    mac.give_to(user.uid);
    (mac, user)
}

/// A folder only root can enter, for what a user must never reach through root.
fn root_only() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// The user holds their run lock, as a run of theirs would: the lock, and the folder locked.
fn hold_the_run_lock(mac: &Mac) -> (std::fs::File, PathBuf) {
    let folder = mac.home.path().join("Library/Arq/config");
    let lock = std::fs::File::open(&folder).unwrap();
    lock.lock().unwrap();
    (lock, folder)
}

/// The pid of `user`'s run once it waits for the lock on `lock_folder` (it holds the folder
/// open meanwhile).
fn run_waiting_for(user: &LocalUser, lock_folder: &Path) -> u32 {
    let holds_it_open = |pid: &u32| {
        std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
            fds.flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == lock_folder))
        })
    };
    let mut waiting = None;
    wait_until("the run as the user waits for its lock", || {
        waiting = user.runs().into_iter().find(holds_it_open);
        waiting.is_some()
    });
    waiting.unwrap()
}

/// `status --jamf-ea` as root for `user` of `mac`: the line printed (exit 0 checked).
fn extension_attribute(mac: &Mac, user: &LocalUser) -> String {
    let output = run(arq_lockdown()
        .args(["status", "--jamf-ea", "--user", &user.name])
        .arg("--arq-home")
        .arg(mac.home.path())
        .args(["--credential-store", &mac.store]));
    assert_exit(&output, ExitCode::Success, &[]);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Whether `line` is what Jamf can keep: one line of printable ASCII with one `<result>`.
fn one_clean_line(line: &str) -> bool {
    let body = line.strip_suffix('\n').unwrap_or(line);
    body.bytes().all(|b| (0x20..0x7f).contains(&b))
        && body.starts_with("<result>")
        && body.ends_with("</result>")
        && body.matches("<result>").count() == 1
        && body.matches("</result>").count() == 1
        && line.ends_with('\n')
}

#[test]
fn root_with_nobody_logged_in_leaves_the_work_to_the_next_login() {
    let _guard = no_arq_running();
    if !root() {
        return;
    }
    let _state = last_known_state();
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
    // A Jamf extension attribute gets its one line all the same: no user seen yet.
    let jamf = run(arq_lockdown().args(["status", "--jamf-ea"]));
    assert_eq!(exit_code(&jamf), ExitCode::Success);
    assert_eq!(
        String::from_utf8_lossy(&jamf.stdout),
        "<result>unknown; nobody logged in</result>\n"
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
    assert_exit(&output, ExitCode::Success, &[]);
    let status: Value = serde_json::from_slice(&output.stdout).unwrap();
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
    assert_exit(
        &unknown,
        ExitCode::Usage,
        &["there is no user \"no-such-user-arq-lockdown\""],
    );
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
    assert_exit(&output, ExitCode::ConfigInvalid, &["refusing to follow"]);

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
    assert_exit(&output, ExitCode::ConfigInvalid, &["refusing to follow"]);
    assert_eq!(mac.key(), before);
    assert_eq!(scoped_user(&mac.uuid)["exists"], false);
}

/// What `sudo arq-lockdown apply --admin-credentials profile:NAME` does on a Mac: the profile is
/// the admin's (root's environment), not the user's; root does the IAM work with it and hands
/// its run as the user only the new scoped key.
#[test]
fn root_keeps_the_admin_credentials_and_does_the_iam_work_for_its_run_as_the_user() {
    let _guard = no_arq_running();
    if !root() {
        return;
    }
    let nobody = 65534;
    let mac = Mac::new();
    mac.give_to(nobody);
    // The admin's profile, in a folder only root can read: the run as nobody cannot read it.
    let admin_dir = root_only();
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
    let apply = |extra: &[&str]| {
        run(mac
            .apply()
            .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
            .args([
                "--user",
                "nobody",
                "--admin-credentials",
                "profile:fleet-admin",
            ])
            .args(extra))
    };
    let output = apply(&[]);
    assert_exit(&output, ExitCode::Success, &[]);
    let user = scoped_user(&mac.uuid);
    assert_eq!(
        user["keys"],
        serde_json::json!([mac.key().id]),
        "nobody's run did not lock the Mac down"
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("locked down: \"Arq S3\" holds"),
        "root did not print its run's outcome: {}",
        String::from_utf8_lossy(&output.stdout)
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
    // A rotation: root retires the key the new one replaced.
    let first = mac.key();
    let output = apply(&["--rotate"]);
    assert_exit(&output, ExitCode::Success, &[]);
    assert_ne!(mac.key(), first);
    assert_eq!(
        scoped_user(&mac.uuid)["keys"],
        serde_json::json!([mac.key().id])
    );
    // A new key that fails verification: root deletes it, "Arq S3" keeps the key it had.
    let kept = mac.key();
    grant_extra(&mac.uuid, "tests/fixtures/policy-s3-everything.json");
    let output = apply(&["--rotate"]);
    assert_exit(&output, ExitCode::DataLeak, &["was deleted"]);
    assert_eq!(mac.key(), kept);
    assert_eq!(scoped_user(&mac.uuid)["keys"], serde_json::json!([kept.id]));
}

/// The user's `~/.aws/config` sends every request to a listener of theirs, and they hold their
/// run lock so that the run as them waits while they look into its memory: neither the admin's
/// signed requests nor the admin's secret may reach them.
#[test]
fn the_admins_credentials_never_reach_a_process_the_user_controls() {
    let _guard = no_arq_running();
    if !root() {
        return;
    }
    let (mac, user) = users_mac();
    let listener = Listener::start();
    user.write(
        &mac.home.path().join(".aws/config"),
        format!("[default]\nendpoint_url = {}\n", listener.endpoint).as_bytes(),
    );
    // Root's own AWS config says where AWS is (moto); the admin's keys are in root's environment.
    let roots = root_only();
    let roots_config = roots.path().join("config");
    std::fs::write(
        &roots_config,
        format!(
            "[default]\nendpoint_url = {}\nregion = us-east-1\n",
            moto().endpoint
        ),
    )
    .unwrap();
    let (lock, lock_folder) = hold_the_run_lock(&mac);
    let admin = &moto().admin;
    let apply = mac
        .apply()
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_REGION")
        .env("AWS_CONFIG_FILE", &roots_config)
        .env("AWS_ACCESS_KEY_ID", &admin.id)
        .env("AWS_SECRET_ACCESS_KEY", &admin.secret)
        .args(["--user", &user.name, "--admin-credentials", "env"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let waiting = run_waiting_for(&user, &lock_folder);
    let secret_in_users_run = memory_holds(waiting, admin.secret.as_bytes());
    drop(lock);
    let output = apply.wait_with_output().unwrap();
    assert_no_secret(&output, &[]);
    let signed_by_admin = listener
        .requests()
        .into_iter()
        .filter(|head| head.contains(&admin.id))
        .count();
    let mut found = Vec::new();
    if signed_by_admin > 0 {
        found.push(format!(
            "{signed_by_admin} request(s) signed with the admin's key reached the user's listener"
        ));
    }
    if secret_in_users_run {
        found.push("the admin's secret was in the memory of the run as the user".to_owned());
    }
    assert!(found.is_empty(), "{found:#?}");
    assert_exit(&output, ExitCode::Success, &[]);
    assert_eq!(
        scoped_user(&mac.uuid)["keys"],
        serde_json::json!([mac.key().id])
    );
}

/// Root does IAM work only for the computer of the Arq config it read itself: a run as the user
/// that names another (its config changed meanwhile, or the user drives it) gets nothing.
#[test]
fn root_serves_only_the_computer_of_the_config_it_read() {
    let _guard = no_arq_running();
    if !root() {
        return;
    }
    let (mac, user) = users_mac();
    let before = mac.key();
    let (lock, lock_folder) = hold_the_run_lock(&mac);
    let admin = &moto().admin;
    let apply = mac
        .apply()
        .env("AWS_ACCESS_KEY_ID", &admin.id)
        .env("AWS_SECRET_ACCESS_KEY", &admin.secret)
        .args(["--user", &user.name, "--admin-credentials", "env"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    run_waiting_for(&user, &lock_folder);
    // The run has read its config (this computer); now the config names another one.
    let other = fresh_uuid();
    let mut dict = plist::Dictionary::new();
    dict.insert("localS3BucketName".into(), BUCKET.into());
    dict.insert("localComputerUUID".into(), other.clone().into());
    let mut bytes = Vec::new();
    plist::Value::Dictionary(dict)
        .to_writer_xml(&mut bytes)
        .unwrap();
    user.write(&mac.home.config_path(), &bytes);
    drop(lock);
    let output = apply.wait_with_output().unwrap();
    assert_no_secret(&output, &[]);
    assert_eq!(
        scoped_user(&mac.uuid)["exists"],
        false,
        "root made an IAM user for a computer it did not read"
    );
    assert_eq!(scoped_user(&other)["exists"], false);
    assert_ne!(exit_code(&output), ExitCode::Success);
    assert!(
        stderr(&output).contains("not the computer"),
        "{}",
        stderr(&output)
    );
    assert_eq!(mac.key(), before);
}

/// Root working on a user's home (a file store, no --user) writes nothing there: not through a
/// hard link to a root-only file (macOS has no protected_hardlinks), not through a symlink
/// swapped in after a check, and it leaves no folder of its own the user cannot remove.
#[test]
fn root_writes_nothing_in_a_users_home() {
    let _guard = no_arq_running();
    if !root() {
        return;
    }
    let (mac, user) = users_mac();
    let logs = mac.home.path().join("Library/Logs/arq-lockdown");
    let log = logs.join("arq-lockdown.log");
    let roots = root_only();
    let victim = roots.path().join("root-only");
    std::fs::write(&victim, "root's\n").unwrap();
    std::fs::create_dir(&logs).unwrap();
    std::os::unix::fs::lchown(&logs, Some(user.uid), Some(user.uid)).unwrap();
    // On a Mac the user makes this link themselves (link(2) needs no ownership there); here
    // Linux's protected_hardlinks stops them, so the test makes the link they could make.
    std::fs::hard_link(&victim, &log).unwrap();
    let dry_run = || run(mac.apply().arg("--dry-run"));
    let output = dry_run();
    assert_exit(&output, ExitCode::Success, &[]);
    let mut found = Vec::new();
    if std::fs::read_to_string(&victim).unwrap() != "root's\n" {
        found.push("root wrote to a root-only file through the user's hard link");
    }
    std::fs::remove_file(&log).unwrap();
    std::fs::write(&victim, "root's\n").unwrap();
    // A symlink swapped in and out of the log's place, to a root-only file and to a new one.
    user.write(&log, b"");
    let created = roots.path().join("made-by-root");
    for target in [&victim, &created] {
        let swap = logs.join("swap");
        let _ = std::fs::remove_file(&swap);
        user.symlink(target, &swap);
        let _racer = Racer::start(&user, &log, &swap);
        for _ in 0..10 {
            dry_run();
        }
    }
    if std::fs::read_to_string(&victim).unwrap() != "root's\n" {
        found.push("root wrote to a root-only file through the user's symlink");
    }
    if created.exists() {
        found.push("root made a file where the user's symlink pointed");
    }
    // A whole lockdown of a user's home by root: everything it made there is the user's.
    let (mac, user) = users_mac();
    let output = run(&mut mac.apply());
    assert_exit(&output, ExitCode::Success, &[]);
    let roots_own: Vec<PathBuf> = snapshot(mac.home.path())
        .into_iter()
        .map(|(path, _, _)| path)
        .filter(|path| std::fs::symlink_metadata(path).unwrap().uid() != user.uid)
        .collect();
    if !roots_own.is_empty() {
        found.push("root left files and folders of its own in the user's home");
    }
    assert!(found.is_empty(), "{found:#?}: {roots_own:?}");
    assert!(
        mac.home
            .path()
            .join("Library/Logs/arq-lockdown/arq-lockdown.log")
            .exists(),
        "the user's run kept no log"
    );
}

/// Root reads nothing a user points it at: a file store that is a symlink to a root-only one,
/// nor a config swapped with a symlink to a root-only plist between a check and the read (the
/// issue's 85 of 400 runs).
#[test]
fn root_reads_nothing_through_a_users_link() {
    let _guard = no_arq_running();
    if !root() {
        return;
    }
    let (mac, user) = users_mac();
    let roots = root_only();
    let roots_store = roots.path().join("keychain.json");
    std::fs::write(
        &roots_store,
        r#"{"Arq S3": {"account": "AKIAROOTONLYEXAMPLE1", "password": "x"}}"#,
    )
    .unwrap();
    let roots_config = roots.path().join("app_config.plist");
    let mut dict = plist::Dictionary::new();
    dict.insert("localS3BucketName".into(), "root-only.example".into());
    dict.insert("localComputerUUID".into(), OTHER_COMPUTER.into());
    plist::Value::Dictionary(dict)
        .to_file_xml(&roots_config)
        .unwrap();
    let status = |store: &str| {
        let output = run(arq_lockdown()
            .args(["status", "--json", "--credential-store", store])
            .arg("--arq-home")
            .arg(mac.home.path()));
        assert_exit(&output, ExitCode::Success, &[]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let link = mac.home.path().join("keychain.json");
    user.symlink(&roots_store, &link);
    let shown = status(&format!("file:{}", link.display()));
    let mut found = Vec::new();
    if shown.contains("AKIAROOTONLYEXAMPLE1") {
        found.push("root read a root-only store through the user's symlink".to_owned());
    }
    let config = mac.home.config_path();
    let swap = config.with_file_name("swap");
    user.symlink(&roots_config, &swap);
    let _racer = Racer::start(&user, &config, &swap);
    let runs = 400;
    let leaks = (0..runs)
        .filter(|_| status(&mac.store).contains("root-only.example"))
        .count();
    if leaks > 0 {
        found.push(format!(
            "{leaks} of {runs} runs reported the root-only config's bucket"
        ));
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn status_as_root_on_a_users_home_is_that_users_status() {
    let _guard = no_arq_running();
    if !root() {
        return;
    }
    let (mac, user) = users_mac();
    let output = run(arq_lockdown()
        .args(["status", "--json", "--credential-store", &mac.store])
        .arg("--arq-home")
        .arg(mac.home.path()));
    assert_exit(&output, ExitCode::Success, &[]);
    let status: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["user"], user.name.as_str(), "{status}");
}

/// The user stops their run (SIGSTOP) while root's inventory waits for it: the extension
/// attribute still answers, within its deadline, and the stopped run is killed.
#[test]
fn a_stopped_run_cannot_stall_the_extension_attribute() {
    let _guard = no_arq_running();
    if !root() {
        return;
    }
    let _state = last_known_state();
    let (mac, user) = users_mac();
    for _attempt in 0..50 {
        let mut jamf = arq_lockdown()
            .args(["status", "--jamf-ea", "--user", &user.name])
            .arg("--arq-home")
            .arg(mac.home.path())
            .args(["--credential-store", &mac.store])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Stop the run as the user as soon as it exists.
        let mut stopped = None;
        while stopped.is_none() && jamf.try_wait().unwrap().is_none() {
            stopped = user.runs().into_iter().next();
        }
        let Some(pid) = stopped else {
            continue; // it finished first: try again
        };
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
        // Not a timing assertion: a run that never ends is stopped after a minute and fails.
        let mut ended = false;
        for _ in 0..1200 {
            if jamf.try_wait().unwrap().is_some() {
                ended = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if !ended {
            let _ = jamf.kill();
            panic!("the extension attribute was still waiting for the stopped run after a minute");
        }
        let output = jamf.wait_with_output().unwrap();
        assert_eq!(exit_code(&output), ExitCode::Success);
        let line = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(one_clean_line(&line), "{line:?}");
        assert!(
            line.starts_with(&format!("<result>timed-out user={};", user.name)),
            "{line}"
        );
        wait_until("the stopped run is killed", || {
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|stat| stat.contains(") Z "))
        });
        return;
    }
    panic!("the run as the user always finished before it could be stopped");
}

/// The receipt is the user's file: one from the future, one for another key than "Arq S3"
/// holds, one with characters that would break Jamf's line — none makes the attribute lie or break.
#[test]
fn the_users_receipt_cannot_make_the_extension_attribute_lie_or_break() {
    let _guard = no_arq_running();
    if !root() {
        return;
    }
    let _state = last_known_state();
    let (mac, user) = users_mac();
    let policy = run(arq_lockdown()
        .args(["policy", "--compact", "--arq-home"])
        .arg(mac.home.path()));
    let policy_sha256 = sha256_hex(String::from_utf8_lossy(&policy.stdout).trim());
    let main_keys = mac.key().id;
    let write_receipt = |access_key_id: &str, applied_at_unix: u64| {
        let receipt = serde_json::json!({
            "bucket": BUCKET,
            "computer_uuid": mac.uuid,
            "access_key_id": access_key_id,
            "user_arn": format!("arn:aws:iam::123456789012:user/arq-lockdown/arq-{}", mac.uuid),
            "policy_sha256": policy_sha256,
            "source": "iam",
            "applied_at_unix": applied_at_unix,
        });
        user.write(
            &mac.home
                .path()
                .join("Library/Application Support/arq-lockdown/receipt.json"),
            receipt.to_string().as_bytes(),
        );
    };
    let now = arq_lockdown::receipt::now_unix();
    // "Arq S3" holds the main keys, and a receipt from ten years ahead says they are locked down.
    write_receipt(&main_keys, now + 10 * 365 * 24 * 3600);
    let future = extension_attribute(&mac, &user);
    // A receipt for another key than the one in "Arq S3".
    write_receipt("AKIAOTHERKEYEXAMPLE1", now - 60);
    let other_key = extension_attribute(&mac, &user);
    // Line breaks, escapes and a second result inside a field of the receipt.
    write_receipt(
        "AKIA\r\u{2028}\u{85}\u{1b}[2J\u{0}</result><result>locked-down",
        now - 60,
    );
    let broken = extension_attribute(&mac, &user);
    let found: Vec<String> = [
        ("future", &future),
        ("other key", &other_key),
        ("characters", &broken),
    ]
    .into_iter()
    .filter(|(_, line)| !line.starts_with("<result>not-locked-down ") || !one_clean_line(line))
    .map(|(case, line)| format!("{case}: {line:?}"))
    .collect();
    assert!(found.is_empty(), "{found:#?}");
}

/// The line changes only when the state does (no ages: Jamf keeps every change), and with nobody
/// logged in it is the last user's, kept by root, marked as such.
#[test]
fn the_extension_attribute_is_stable_and_remembers_the_last_user() {
    let _guard = no_arq_running();
    if !root() {
        return;
    }
    let _state = last_known_state();
    let (mac, user) = users_mac();
    let output = run(mac.apply().args(["--user", &user.name]));
    assert_exit(&output, ExitCode::Success, &[]);
    let first = extension_attribute(&mac, &user);
    assert_eq!(
        first,
        format!(
            "<result>locked-down key={} computer={} bucket={BUCKET} user={}</result>\n",
            mac.key().id,
            mac.uuid,
            user.name
        )
    );
    // The receipt grows older: the line stays the same.
    let receipt = mac
        .home
        .path()
        .join("Library/Application Support/arq-lockdown/receipt.json");
    let mut written: Value = serde_json::from_slice(&std::fs::read(&receipt).unwrap()).unwrap();
    written["applied_at_unix"] = (written["applied_at_unix"].as_u64().unwrap() - 1000).into();
    user.write(&receipt, written.to_string().as_bytes());
    assert_eq!(
        extension_attribute(&mac, &user),
        first,
        "the line changed with the receipt's age"
    );
    // Nobody at the console (the Keychain as the store): the last user's line, marked as such.
    let nobody = || {
        let output = run(arq_lockdown().args(["status", "--jamf-ea"]));
        assert_eq!(exit_code(&output), ExitCode::Success);
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let remembered = first.replace("</result>", " seen=last-login; nobody logged in</result>");
    assert_eq!(nobody(), remembered);
    assert_eq!(nobody(), remembered, "not stable");
    let kept = std::fs::metadata(LAST_KNOWN).expect("root keeps the last line");
    assert_eq!(
        (kept.uid(), kept.mode() & 0o022),
        (0, 0),
        "not root's alone"
    );
    let _ = std::fs::remove_file(LAST_KNOWN);
}

/// `sudo`'s env_reset drops every variable set on its command line (a Mac's sudo and Debian's
/// alike); `runuser` keeps them, so the settings must travel another way to reach the run as the
/// user. The same lockdown through each, with only the variables root has.
#[test]
fn the_settings_reach_the_users_run_through_sudo_and_through_runuser() {
    let _guard = no_arq_running();
    if !root() {
        return;
    }
    // A PATH where the only way to switch users is a real sudo, noting each time it is used.
    let bin = tempfile::tempdir().unwrap();
    let used = bin.path().join("sudo-used");
    let wrapper = bin.path().join("sudo");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nexec /usr/bin/sudo \"$@\"\n",
            used.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let admin = &moto().admin;
    for through_sudo in [true, false] {
        let (mac, user) = users_mac();
        let mut apply = mac.apply();
        apply
            .env("AWS_ACCESS_KEY_ID", &admin.id)
            .env("AWS_SECRET_ACCESS_KEY", &admin.secret)
            .args(["--user", &user.name, "--admin-credentials", "env"]);
        if through_sudo {
            apply.env("PATH", bin.path());
        }
        let output: Output = run(&mut apply);
        assert_eq!(
            exit_code(&output),
            ExitCode::Success,
            "through sudo: {through_sudo}: {}",
            stderr(&output)
        );
        assert_eq!(
            scoped_user(&mac.uuid)["keys"],
            serde_json::json!([mac.key().id])
        );
    }
    let argv = std::fs::read_to_string(&used).unwrap_or_default();
    assert!(!argv.is_empty(), "sudo was never used");
    assert!(
        !argv.contains(&moto().endpoint) && !argv.contains(&admin.id),
        "settings went on sudo's command line: {argv}"
    );
}

/// The per-home part of packaging/uninstall, run as written against a user who swaps
/// `~/Library/Logs` for a symlink to a root folder holding an `arq-lockdown` folder.
#[test]
fn the_uninstaller_follows_no_link_and_removes_only_what_arq_lockdown_made() {
    if !root() {
        return;
    }
    let script = std::fs::read_to_string(project_root().join("packaging/uninstall")).unwrap();
    let functions: String = ["remove_ours", "remove_user_files"]
        .iter()
        .map(|name| {
            let start = script
                .find(&format!("\n{name}() {{"))
                .unwrap_or_else(|| panic!("packaging/uninstall has no {name}()"));
            let end = start + script[start..].find("\n}\n").unwrap() + 3;
            script[start..end].to_owned()
        })
        .collect();
    let remove_user_files = |home: &Path| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("{functions}\nremove_user_files \"$1\""))
            .arg("sh")
            .arg(home)
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };
    let home = tempfile::tempdir().unwrap();
    let user = LocalUser::with_home(home.path());
    let library = home.path().join("Library");
    let ours = library.join("Logs/arq-lockdown");
    user.write(&ours.join("arq-lockdown.log"), b"a log line\n");
    let roots = tempfile::tempdir().unwrap();
    let roots_folder = roots.path().join("arq-lockdown");
    std::fs::create_dir(&roots_folder).unwrap();
    std::fs::write(roots_folder.join("arq-lockdown.log"), "root's\n").unwrap();
    let swap = library.join("swap");
    user.symlink(roots.path(), &swap);
    {
        let _racer = Racer::start(&user, &library.join("Logs"), &swap);
        for _ in 0..200 {
            remove_user_files(home.path());
            assert!(
                roots_folder.join("arq-lockdown.log").exists(),
                "the uninstaller deleted a root folder through the user's symlink"
            );
        }
    }
    if std::fs::symlink_metadata(library.join("Logs"))
        .unwrap()
        .is_symlink()
    {
        std::fs::rename(library.join("Logs"), library.join("link")).unwrap();
        std::fs::rename(&swap, library.join("Logs")).unwrap();
    }
    // Without the race: its own files go, a file it did not make stays, and so its folder.
    let support = library.join("Application Support/arq-lockdown");
    user.write(&support.join("receipt.json"), b"{}");
    user.write(&support.join("notes.txt"), b"the user's own");
    remove_user_files(home.path());
    assert!(!ours.exists(), "the log folder is still there");
    assert!(!support.join("receipt.json").exists());
    assert!(
        support.join("notes.txt").exists(),
        "it removed a file it did not make"
    );
}
