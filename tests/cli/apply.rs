//! `apply` against moto with IAM enforcement on: the lockdown end to end, its idempotency, the
//! rotation, the fault matrix (runs killed at every step boundary, then re-run), and refusals.

use std::os::unix::process::ExitStatusExt;
use std::process::Child;

use serde_json::{Value, json};

use crate::support::*;

const RECEIPT: &str = "Library/Application Support/arq-lockdown/receipt.json";

fn receipt_exists(mac: &Mac) -> bool {
    mac.home.path().join(RECEIPT).exists()
}

/// The state every run, finished or re-run after a kill, must end in: "Arq S3" holds the scoped
/// user's only key; IAM holds exactly the policy `arq-lockdown policy` prints for this Mac (with
/// `policy_flags`), and the independent evaluator, which applies conditions, judges what IAM holds
/// isolated; the key works; Arq was relaunched; the receipt and `status` say locked down. The
/// user's tags are exactly the binding ones, the policy's options and the main key it replaced
/// (every Mac here starts with the fixture's main keys), besides the Mac's name and serial.
fn assert_converged(mac: &Mac, policy_flags: &[&str]) {
    assert_converged_replacing(mac, policy_flags, &moto().admin.id);
}

/// [`assert_converged`] for a Mac whose first lockdown replaced `replaced` (not the main keys).
fn assert_converged_replacing(mac: &Mac, policy_flags: &[&str], replaced: &str) {
    let key = mac.key();
    let user = scoped_user(&mac.uuid);
    assert_eq!(user["keys"], json!([key.id]), "\"Arq S3\" holds {}", key.id);
    let mut tags = user["tags"].as_object().unwrap().clone();
    tags.remove("arq-lockdown:computer-name");
    tags.remove("arq-lockdown:serial");
    let options = match policy_flags {
        [] => "default",
        ["--legacy-glacier"] => "legacy-glacier",
        other => panic!("no tag value known for {other:?}"),
    };
    assert_eq!(
        Value::Object(tags),
        json!({
            "arq-lockdown:computer-uuid": mac.uuid,
            "arq-lockdown:bucket": BUCKET,
            "arq-lockdown:policy-options": options,
            "arq-lockdown:replaced-key": replaced,
        })
    );
    let policies = user["policies"].as_object().unwrap();
    assert_eq!(policies.keys().collect::<Vec<_>>(), ["arq-lockdown"]);
    let stored = &policies["arq-lockdown"];
    assert_eq!(
        stored,
        &policy_of(mac, policy_flags),
        "IAM holds another policy"
    );
    let bucket = format!("arn:aws:s3:::{BUCKET}");
    let verdicts = evaluate(
        stored,
        &[
            (
                "s3:ListBucket",
                bucket.clone(),
                Some(&format!("{}/", mac.uuid)),
            ),
            (
                "s3:ListBucket",
                bucket.clone(),
                Some(&format!("{OTHER_COMPUTER}/")),
            ),
            (
                "s3:GetObject",
                format!("{bucket}/{OTHER_COMPUTER}/computerinfo"),
                None,
            ),
            (
                "s3:PutObject",
                format!("{bucket}/glacier/{}/objects/x", mac.uuid),
                None,
            ),
        ],
    );
    assert_eq!(
        verdicts,
        ["Allowed", "ImplicitlyDenied", "ImplicitlyDenied", "Allowed"]
    );
    assert_eq!(
        mac.verify(),
        ExitCode::Success,
        "the key in \"Arq S3\" does not work, or reaches other data"
    );
    assert!(mac.launches() >= 1, "Arq was not relaunched");
    assert!(receipt_exists(mac));
    let status = status_json(mac);
    assert_eq!(
        (status["state"].as_str(), status["access_key_id"].as_str()),
        (Some("locked-down"), Some(key.id.as_str()))
    );
    mac.assert_no_secret_left(&[]);
}

/// What `arq-lockdown policy` prints for this Mac with `flags`.
fn policy_of(mac: &Mac, flags: &[&str]) -> Value {
    let output = run(arq_lockdown()
        .arg("policy")
        .arg("--arq-home")
        .arg(mac.home.path())
        .args(flags));
    assert_eq!(exit_code(&output), ExitCode::Success);
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `status --json` for this Mac, with the network out of reach.
fn status_json(mac: &Mac) -> Value {
    let output = run(arq_lockdown()
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .arg("status")
        .arg("--json")
        .arg("--arq-home")
        .arg(mac.home.path())
        .args(["--credential-store", &mac.store]));
    assert_exit(&output, ExitCode::Success, &[]);
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn apply_locks_a_mac_down_and_a_second_run_is_a_no_op() {
    let _guard = no_arq_running();
    let mac = Mac::new();
    let main = mac.key();
    let output = mac.run_apply(&["--computer-name", "Bob's MacBook Pro"]);
    assert_exit(&output, ExitCode::Success, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!(
            "the previous key {} is no longer on this Mac",
            main.id
        )),
        "{stdout}"
    );

    let key = mac.key();
    assert_ne!(key.id, main.id);
    let user = scoped_user(&mac.uuid);
    assert_eq!(user["keys"], serde_json::json!([key.id]));
    // The Mac's name keeps its spaces through moto's signature check; the apostrophe IAM refuses.
    assert_eq!(
        user["tags"]["arq-lockdown:computer-name"],
        "Bob_s MacBook Pro"
    );
    assert_eq!(
        user["tags"]["arq-lockdown:computer-uuid"],
        mac.uuid.as_str()
    );
    assert_converged(&mac, &[]);
    assert_eq!(mac.launches(), 1);

    // Nothing changed: no network (port 9 is closed), no relaunch, same key.
    let again = run(mac.apply().env("AWS_ENDPOINT_URL", "http://127.0.0.1:9"));
    assert_exit(&again, ExitCode::Success, &[]);
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("already locked down"));
    assert_eq!(mac.key().id, key.id);
    assert_eq!(mac.launches(), 1);
}

#[test]
fn rotate_swaps_the_key_and_leaves_the_user_one() {
    let _guard = no_arq_running();
    let mac = Mac::new();
    assert_eq!(exit_code(&mac.run_apply(&[])), ExitCode::Success);
    let first = mac.key();

    // The scoped key cannot make its own successor.
    let refused = mac.run_apply(&["--rotate"]);
    assert_exit(&refused, ExitCode::Credentials, &["--admin-credentials"]);
    assert_eq!(mac.key(), first);

    let admin = &moto().admin;
    let rotated = run(mac
        .apply()
        .env("AWS_ACCESS_KEY_ID", &admin.id)
        .env("AWS_SECRET_ACCESS_KEY", &admin.secret)
        .args(["--rotate", "--admin-credentials", "env", "--json"]));
    assert_no_secret(&rotated, &[&first.secret, &mac.key().secret]);
    assert_exit(&rotated, ExitCode::Success, &[]);
    let outcome: Value = serde_json::from_slice(&rotated.stdout).unwrap();
    let second = mac.key();
    assert_ne!(second.id, first.id);
    assert_eq!(
        outcome["retired_access_key_ids"],
        serde_json::json!([first.id])
    );
    assert_eq!(
        scoped_user(&mac.uuid)["keys"],
        serde_json::json!([second.id])
    );
    assert_converged(&mac, &[]);
}

#[test]
fn dry_run_changes_nothing() {
    let _guard = no_arq_running();
    let mac = Mac::new();
    let before = mac.key();
    let output = mac.run_apply(&["--dry-run"]);
    assert_exit(&output, ExitCode::Success, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("dry run")
            && stdout.contains(&format!("create IAM user /arq-lockdown/arq-{}", mac.uuid)),
        "{stdout}"
    );
    assert_eq!(mac.key(), before);
    assert_eq!(scoped_user(&mac.uuid)["exists"], false);
    assert!(!receipt_exists(&mac));
    assert_eq!(mac.launches(), 0);

    // With work to do in IAM — a key a dead run left, a policy that drifted, a rotation asked
    // for — a dry run plans it all and still changes nothing.
    assert_eq!(exit_code(&mac.run_apply(&[])), ExitCode::Success);
    add_key(&mac.uuid);
    let iam_before = scoped_user(&mac.uuid);
    let (key_before, receipt_before) = (mac.key(), snapshot(mac.home.path()));
    let admin = &moto().admin;
    let output = run(mac
        .apply()
        .env("AWS_ACCESS_KEY_ID", &admin.id)
        .env("AWS_SECRET_ACCESS_KEY", &admin.secret)
        .args([
            "--dry-run",
            "--rotate",
            "--legacy-glacier",
            "--admin-credentials",
            "env",
        ]));
    assert_exit(&output, ExitCode::Success, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("write policy arq-lockdown") && stdout.contains("delete stale key"),
        "{stdout}"
    );
    assert_eq!(scoped_user(&mac.uuid), iam_before, "a dry run changed IAM");
    assert_eq!(mac.key(), key_before);
    let log = mac
        .home
        .path()
        .join("Library/Logs/arq-lockdown/arq-lockdown.log");
    let unchanged = |entry: &(std::path::PathBuf, u64, std::time::SystemTime)| entry.0 != log;
    assert_eq!(
        snapshot(mac.home.path())
            .into_iter()
            .filter(unchanged)
            .collect::<Vec<_>>(),
        receipt_before
            .into_iter()
            .filter(unchanged)
            .collect::<Vec<_>>(),
        "a dry run wrote files"
    );
}

#[test]
fn a_receipt_counts_only_for_the_key_and_policy_it_recorded() {
    let _guard = no_arq_running();
    let mac = Mac::new();
    assert_eq!(exit_code(&mac.run_apply(&[])), ExitCode::Success);
    let scoped = mac.key();

    // Another key put into "Arq S3" (Arq set up again with the main keys): real work.
    mac.set_key(&moto().admin);
    let output = mac.run_apply(&[]);
    assert_exit(&output, ExitCode::Success, &[]);
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("locked down"));
    assert_ne!(mac.key(), scoped);
    assert_converged(&mac, &[]);

    // Other policy options: the scoped key cannot change its own policy, admin credentials can.
    let refused = mac.run_apply(&["--legacy-glacier"]);
    assert_exit(&refused, ExitCode::Credentials, &["policy has changed"]);
    let admin = &moto().admin;
    let output = run(mac
        .apply()
        .env("AWS_ACCESS_KEY_ID", &admin.id)
        .env("AWS_SECRET_ACCESS_KEY", &admin.secret)
        .args(["--legacy-glacier", "--admin-credentials", "env"]));
    assert_exit(&output, ExitCode::Success, &["policy arq-lockdown written"]);
    assert_converged(&mac, &["--legacy-glacier"]);

    // Arq's destination moved to another bucket: the policy must name it, which again only admin
    // credentials can write — refused at once, not after a verification that cannot pass.
    mac.home.write_config_value(&plist::Value::Dictionary(
        [
            ("localS3BucketName", "arq-other-destination"),
            ("localComputerUUID", mac.uuid.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), plist::Value::String(v.to_owned())))
        .collect(),
    ));
    let before = mac.key();
    let refused = mac.run_apply(&["--legacy-glacier"]);
    assert_exit(
        &refused,
        ExitCode::Credentials,
        &["policy has changed", "bucket"],
    );
    assert_eq!(mac.key(), before);
}

/// After an upgrade that changed the policy — here: IAM holds the policy an older lockdown wrote
/// and the receipt records its hash and options, not the ones this version writes — `status`
/// and the extension attribute say `policy-outdated`; the scoped key, which cannot rewrite its
/// own policy, says so too (no network, a warning naming the fix); admin credentials rewrite the
/// policy and keep the key, and then every one of them says locked down.
#[test]
fn after_an_upgrade_that_changed_the_policy_apply_refreshes_it_and_status_agrees() {
    let _guard = no_arq_running();
    let mac = Mac::new();
    let admin = &moto().admin;
    let with_admin = |flags: &[&str]| {
        run(mac
            .apply()
            .env("AWS_ACCESS_KEY_ID", &admin.id)
            .env("AWS_SECRET_ACCESS_KEY", &admin.secret)
            .args(["--admin-credentials", "env"])
            .args(flags))
    };
    let older = with_admin(&["--legacy-glacier"]);
    assert_eq!(exit_code(&older), ExitCode::Success, "{}", stderr(&older));
    let path = mac.home.path().join(RECEIPT);
    let mut receipt: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    receipt["policy_options"] = json!({"legacy_glacier": false, "no_computer_listing": false});
    receipt["policy_sha256"] = json!("0".repeat(64));
    std::fs::write(&path, receipt.to_string()).unwrap();
    let key = mac.key();
    let jamf_ea = || {
        let output = run(arq_lockdown()
            .args(["status", "--jamf-ea", "--credential-store", &mac.store])
            .arg("--arq-home")
            .arg(mac.home.path()));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert_eq!(status_json(&mac)["state"], "policy-outdated");
    assert!(
        jamf_ea().starts_with("<result>policy-outdated "),
        "{}",
        jamf_ea()
    );

    let launches = mac.launches();
    let reported = run(mac
        .apply()
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .arg("--json"));
    assert_eq!(
        exit_code(&reported),
        ExitCode::Success,
        "{}",
        stderr(&reported)
    );
    let outcome: Value = serde_json::from_slice(&reported.stdout).unwrap();
    assert_eq!(outcome["result"], "policy-outdated", "{outcome:#}");
    assert!(
        outcome["warnings"][0]
            .as_str()
            .unwrap()
            .contains("--admin-credentials env"),
        "{outcome:#}"
    );
    assert_eq!((mac.key(), mac.launches()), (key.clone(), launches));
    assert_eq!(status_json(&mac)["state"], "policy-outdated");

    let refreshed = with_admin(&[]);
    assert_eq!(
        exit_code(&refreshed),
        ExitCode::Success,
        "{}",
        stderr(&refreshed)
    );
    assert!(
        stderr(&refreshed).contains("policy arq-lockdown written"),
        "{}",
        stderr(&refreshed)
    );
    assert_eq!(mac.key(), key, "the refresh made a new key");
    assert_converged(&mac, &[]);
    assert!(
        jamf_ea().starts_with("<result>locked-down "),
        "{}",
        jamf_ea()
    );
    let again = run(mac.apply().env("AWS_ENDPOINT_URL", "http://127.0.0.1:9"));
    assert!(
        String::from_utf8_lossy(&again.stdout).starts_with("already locked down"),
        "{}",
        stderr(&again)
    );
}

/// Starts real processes named "Arq" and "Arq Agent" (copies of sleep).
fn start_arq(dir: &std::path::Path) -> Vec<Child> {
    ["Arq", "Arq Agent"]
        .iter()
        .map(|name| {
            let program = dir.join(name);
            std::fs::copy("/bin/sleep", &program).unwrap();
            std::process::Command::new(&program)
                .arg("300")
                .spawn()
                .unwrap()
        })
        .collect()
}

#[test]
fn a_running_arq_stops_the_run_unless_asked_to_quit() {
    let _guard = arq_may_run();
    let dir = tempfile::tempdir().unwrap();
    let mut arq = start_arq(dir.path());
    let mac = Mac::new();
    let before = mac.key();

    let refused = mac.run_apply(&[]);
    assert_exit(
        &refused,
        ExitCode::ArqRunning,
        &["Arq is running", "Arq Agent pid", "--quit-arq"],
    );
    assert_eq!(mac.key(), before);
    assert_eq!(
        scoped_user(&mac.uuid)["exists"],
        false,
        "IAM was changed although Arq runs"
    );

    let quit = mac.run_apply(&["--quit-arq", "--wait", "10"]);
    assert_exit(&quit, ExitCode::Success, &[]);
    for process in &mut arq {
        let status = process.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGTERM)
        );
    }
    assert_converged(&mac, &[]);
}

/// Runs `apply` so that it dies (SIGKILL) right after `step` (a debug build's fault point), and
/// checks that it did, that "Arq S3" changed only from the step that changes it on, that the
/// receipt was not written, and that nothing it printed or left holds a secret.
fn apply_killed_after(mac: &Mac, mut apply: std::process::Command, step: &str) {
    let before = mac.key();
    let receipt = || std::fs::read(mac.home.path().join(RECEIPT)).ok();
    let receipt_before = receipt();
    let output = apply.env("ARQ_LOCKDOWN_KILL_AFTER", step).output().unwrap();
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGKILL),
        "the run was not killed after {step}: {}",
        stderr(&output)
    );
    assert_no_secret(&output, &[&before.secret, &mac.key().secret]);
    mac.assert_no_secret_left(&[&before.secret]);
    assert_eq!(
        receipt(),
        receipt_before,
        "a receipt was written before {step} ended the run"
    );
    let arq_s3_changed = ["updated-arq-s3", "retired", "relaunched"].contains(&step);
    assert_eq!(
        mac.key() != before,
        arq_s3_changed,
        "\"Arq S3\" after {step}"
    );
}

#[test]
fn a_run_killed_at_any_step_is_finished_by_the_next() {
    let _guard = no_arq_running();
    for step in [
        "created-user",
        "wrote-policy",
        "created-key",
        "verified",
        "updated-arq-s3",
        "retired",
        "relaunched",
    ] {
        let mac = Mac::new();
        apply_killed_after(&mac, mac.apply(), step);
        let rerun = mac.run_apply(&[]);
        assert_eq!(
            exit_code(&rerun),
            ExitCode::Success,
            "re-run after a kill after {step}: {}",
            stderr(&rerun)
        );
        assert_converged(&mac, &[]);
    }
}

#[test]
fn a_rotation_killed_at_any_step_is_finished_by_running_it_again() {
    let _guard = no_arq_running();
    let admin = &moto().admin;
    for step in [
        "created-key",
        "verified",
        "updated-arq-s3",
        "retired",
        "relaunched",
    ] {
        let mac = Mac::new();
        assert_eq!(exit_code(&mac.run_apply(&[])), ExitCode::Success);
        let rotate = || {
            let mut rotate = mac.apply();
            rotate
                .env("AWS_ACCESS_KEY_ID", &admin.id)
                .env("AWS_SECRET_ACCESS_KEY", &admin.secret)
                .args(["--rotate", "--admin-credentials", "env"]);
            rotate
        };
        apply_killed_after(&mac, rotate(), step);
        let rerun = run(&mut rotate());
        assert_eq!(
            exit_code(&rerun),
            ExitCode::Success,
            "re-run after a rotation killed after {step}: {}",
            stderr(&rerun)
        );
        assert_converged(&mac, &[]);
    }
}

#[test]
fn a_new_key_that_fails_verification_is_deleted_and_arq_s3_kept() {
    let _guard = no_arq_running();
    let mac = Mac::new();
    assert_eq!(exit_code(&mac.run_apply(&[])), ExitCode::Success);
    let kept = mac.key();
    // An admin attached a broad policy to the scoped user: a new key would reach everything.
    grant_extra(&mac.uuid, "tests/fixtures/policy-s3-everything.json");
    let admin = &moto().admin;
    let output = run(mac
        .apply()
        .env("AWS_ACCESS_KEY_ID", &admin.id)
        .env("AWS_SECRET_ACCESS_KEY", &admin.secret)
        .args(["--rotate", "--admin-credentials", "env"]));
    assert_exit(
        &output,
        ExitCode::DataLeak,
        &["failed verification", "was deleted"],
    );
    assert_eq!(mac.key(), kept);
    assert_eq!(scoped_user(&mac.uuid)["keys"], serde_json::json!([kept.id]));

    // Without a receipt the key in "Arq S3" is adopted only if it proves itself: it does not,
    // and nothing of it is deleted.
    std::fs::remove_file(mac.home.path().join(RECEIPT)).unwrap();
    let output = run(&mut mac.apply());
    let message = assert_exit(&output, ExitCode::DataLeak, &[]);
    assert!(
        message.contains("the key in \"Arq S3\" failed verification")
            && !message.contains("was deleted"),
        "{message}"
    );
    assert_eq!(mac.key(), kept);
    assert_eq!(scoped_user(&mac.uuid)["keys"], serde_json::json!([kept.id]));
}

#[test]
fn admin_keys_without_iam_rights_are_refused_clearly() {
    let _guard = no_arq_running();
    // Admin credentials that are the 2012 example's key: valid, but with no IAM rights.
    let mac = Mac::new();
    let output = run(mac
        .apply()
        .env("AWS_ACCESS_KEY_ID", &moto().seed_2012.id)
        .env("AWS_SECRET_ACCESS_KEY", &moto().seed_2012.secret)
        .args(["--admin-credentials", "env"]));
    assert_exit(&output, ExitCode::Aws, &["IAM refused iam:GetUser"]);
    assert_eq!(scoped_user(&mac.uuid)["exists"], false);

    // Another Mac's scoped key, copied along with a cloned disk image.
    let other = Mac::new();
    assert_eq!(exit_code(&other.run_apply(&[])), ExitCode::Success);
    mac.set_key(&other.key());
    let output = run(&mut mac.apply());
    assert_exit(
        &output,
        ExitCode::Credentials,
        &[&format!(
            "belongs to arn:aws:iam::123456789012:user/arq-lockdown/arq-{}",
            other.uuid
        )],
    );
    assert_eq!(scoped_user(&mac.uuid)["exists"], false);
}

#[test]
fn status_reports_the_lockdown_without_the_network() {
    let _guard = no_arq_running();
    let mac = Mac::new();
    let status = |mac: &Mac| -> Value {
        let output = run(arq_lockdown()
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .arg("status")
            .arg("--json")
            .arg("--arq-home")
            .arg(mac.home.path())
            .args(["--credential-store", &mac.store]));
        assert_exit(&output, ExitCode::Success, &[]);
        serde_json::from_slice(&output.stdout).unwrap()
    };
    assert_eq!(status(&mac)["state"], "not-locked-down");
    assert_eq!(exit_code(&mac.run_apply(&[])), ExitCode::Success);
    let after = status(&mac);
    assert_eq!(after["state"], "locked-down");
    assert_eq!(after["access_key_id"], mac.key().id.as_str());
    assert_eq!(after["arq_running"], false);

    // For a Jamf extension attribute: one line, the state and the fields an inventory reads.
    let jamf = run(arq_lockdown()
        .args(["status", "--jamf-ea", "--credential-store", &mac.store])
        .arg("--arq-home")
        .arg(mac.home.path()));
    let line = String::from_utf8_lossy(&jamf.stdout).into_owned();
    assert!(
        line.starts_with(&format!(
            "<result>locked-down key={} computer={} bucket={BUCKET} user=",
            mac.key().id,
            mac.uuid
        )) && line.ends_with("</result>\n"),
        "{line}"
    );
    // On an error, too, the attribute gets one line (and Jamf a zero exit code).
    let broken = run(arq_lockdown().env_remove("HOME").args([
        "status",
        "--jamf-ea",
        "--credential-store",
        &mac.store,
    ]));
    assert_eq!(exit_code(&broken), ExitCode::Success);
    let line = String::from_utf8_lossy(&broken.stdout).into_owned();
    assert!(
        line.starts_with("<result>error; HOME is not set")
            && line.ends_with("</result>\n")
            && line.lines().count() == 1,
        "{line}"
    );

    // The user's log has every step, and no secret.
    let log = std::fs::read_to_string(
        mac.home
            .path()
            .join("Library/Logs/arq-lockdown/arq-lockdown.log"),
    )
    .unwrap();
    assert!(
        log.contains("receipt written") && log.contains("created key"),
        "{log}"
    );
    assert!(!log.contains(&mac.key().secret) && !log.contains(&moto().admin.secret));
}

#[test]
fn revoke_deletes_the_user_and_its_key_stops_working() {
    let _guard = no_arq_running();
    let mac = Mac::new();
    assert_eq!(exit_code(&mac.run_apply(&[])), ExitCode::Success);
    let admin = &moto().admin;
    let revoke = |uuid: &str| {
        run(arq_lockdown_on_moto()
            .env("AWS_ACCESS_KEY_ID", &admin.id)
            .env("AWS_SECRET_ACCESS_KEY", &admin.secret)
            .args(["revoke", "--computer-uuid", uuid]))
    };
    let output = revoke(&mac.uuid);
    assert_exit(&output, ExitCode::Success, &[]);
    assert_eq!(scoped_user(&mac.uuid)["exists"], false);
    assert_eq!(
        mac.verify(),
        ExitCode::ArqBroken,
        "the revoked key still works"
    );
    let again = revoke(&mac.uuid);
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to revoke"));
}

#[test]
fn status_check_asks_aws_so_a_revoked_key_is_not_locked_down() {
    let _guard = no_arq_running();
    let mac = Mac::new();
    assert_eq!(exit_code(&mac.run_apply(&[])), ExitCode::Success);
    let status = |check: bool| -> Value {
        let mut command = arq_lockdown_on_moto();
        command
            .args(["status", "--json", "--credential-store", &mac.store])
            .arg("--arq-home")
            .arg(mac.home.path());
        if check {
            command.arg("--check");
        }
        let output = run(&mut command);
        assert_exit(&output, ExitCode::Success, &[]);
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let user_arn = format!(
        "arn:aws:iam::123456789012:user/arq-lockdown/arq-{}",
        mac.uuid
    );
    mac.reset_keychain_access();
    let checked = status(true);
    assert_eq!(checked["state"], "locked-down");
    assert_eq!(checked["aws_check"]["accepted"], true);
    assert_eq!(checked["aws_check"]["arn"], user_arn.as_str());
    assert_eq!(
        mac.keychain_access(),
        (1, 0),
        "--check reads the secret once (a dialog on a Mac), and only --check does"
    );

    let admin = &moto().admin;
    let revoked = run(arq_lockdown_on_moto()
        .env("AWS_ACCESS_KEY_ID", &admin.id)
        .env("AWS_SECRET_ACCESS_KEY", &admin.secret)
        .args(["revoke", "--computer-uuid", &mac.uuid]));
    assert_exit(&revoked, ExitCode::Success, &[]);
    assert_eq!(status(false)["state"], "locked-down", "the receipt alone");
    let checked = status(true);
    assert_eq!(checked["state"], "key-refused");
    assert_eq!(checked["aws_check"]["accepted"], false);
    assert!(
        checked["detail"].as_str().unwrap().contains("revoked"),
        "{checked}"
    );

    // An extension attribute must never read the secret.
    let both = run(arq_lockdown().args(["status", "--check", "--jamf-ea"]));
    assert_eq!(exit_code(&both), ExitCode::Usage);
}

#[test]
fn iam_throttling_is_retried_with_backoff() {
    let _guard = no_arq_running();
    let proxy = Proxy::throttling("CreateAccessKey", 2);
    let mac = Mac::new();
    let output = run(mac.apply().env("AWS_ENDPOINT_URL", &proxy.endpoint));
    assert_exit(&output, ExitCode::Success, &[]);
    assert_eq!(
        proxy.throttled.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the proxy throttled nothing"
    );
    assert_converged(&mac, &[]);
}

#[test]
fn keys_left_by_dead_runs_are_removed_before_iams_two_key_limit_bites() {
    let _guard = no_arq_running();
    let mac = Mac::new();
    assert_eq!(exit_code(&mac.run_apply(&[])), ExitCode::Success);
    let admin = &moto().admin;
    // The user now has its key plus one a dead run left: IAM's limit of two is reached.
    add_key(&mac.uuid);
    assert_eq!(scoped_user(&mac.uuid)["keys"].as_array().unwrap().len(), 2);
    let rotated = run(mac
        .apply()
        .env("AWS_ACCESS_KEY_ID", &admin.id)
        .env("AWS_SECRET_ACCESS_KEY", &admin.secret)
        .args(["--rotate", "--admin-credentials", "env"]));
    assert_exit(&rotated, ExitCode::Success, &["deleted stale key"]);
    assert_eq!(
        scoped_user(&mac.uuid)["keys"],
        serde_json::json!([mac.key().id])
    );
}

#[test]
fn concurrent_runs_for_one_user_make_one_key_and_write_arq_s3_once() {
    let _guard = no_arq_running();
    // The agent at login, a Jamf policy at check-in and an admin by hand, all at once.
    let mac = Mac::new();
    let runs: Vec<Child> = (0..3)
        .map(|_| {
            mac.apply()
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = runs
        .into_iter()
        .map(|run| run.wait_with_output().unwrap())
        .collect();
    let said = |what: &str| {
        outputs
            .iter()
            .filter(|o| String::from_utf8_lossy(&o.stdout).starts_with(what))
            .count()
    };
    for output in &outputs {
        assert_exit(output, ExitCode::Success, &[]);
    }
    assert_eq!(said("locked down:"), 1, "one run locks the Mac down");
    assert_eq!(said("already locked down:"), 2, "the others find it done");
    assert_eq!(mac.keychain_access().1, 1, "\"Arq S3\" written once");
    assert_converged(&mac, &[]);
}

#[test]
fn a_run_that_cannot_get_the_lock_changes_nothing_and_says_so() {
    let _guard = no_arq_running();
    let mac = Mac::new();
    // Another run holds the lock: on the folder of Arq's config.
    let held = std::fs::File::open(mac.home.path().join("Library/Arq/config")).unwrap();
    held.lock().unwrap();
    let before = mac.key();
    let output = run(mac.apply().args(["--lock-timeout", "1"]));
    let message = assert_exit(&output, ExitCode::Busy, &[]);
    let errors: Vec<&str> = message.lines().filter(|l| l.contains("error:")).collect();
    assert!(
        errors.len() == 1 && errors[0].contains("another arq-lockdown run"),
        "{message}"
    );
    assert_eq!(mac.key(), before);
    assert_eq!(scoped_user(&mac.uuid)["exists"], false);
    drop(held);
    assert_eq!(exit_code(&mac.run_apply(&[])), ExitCode::Success);
}

#[test]
fn a_managed_run_without_a_profile_does_nothing_and_says_why() {
    let _guard = no_arq_running();
    // The pkg landed before the profile: the agent must not fall back to the main keys in
    // "Arq S3" and make the Mac's user itself.
    let mac = Mac::new();
    let before = mac.key();
    let output = run(mac.apply().arg("--managed"));
    assert_exit(&output, ExitCode::Success, &[]);
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.starts_with("nothing done: no configuration profile sets Source"),
        "{said}"
    );
    assert_eq!(mac.key(), before);
    assert_eq!(scoped_user(&mac.uuid)["exists"], false);
    assert!(!receipt_exists(&mac));
    let log = std::fs::read_to_string(
        mac.home
            .path()
            .join("Library/Logs/arq-lockdown/arq-lockdown.log"),
    )
    .unwrap();
    assert!(
        log.contains("nothing done: no configuration profile"),
        "{log}"
    );

    let json = run(mac.apply().args(["--managed", "--json"]));
    let value: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["result"], "nothing-done");
}

#[test]
fn a_key_of_arqs_own_restricted_user_is_recognised_explained_and_never_deleted() {
    let _guard = no_arq_running();
    // Arq 5's "Create Restricted IAM User" leaves "Arq S3" holding the key of a user that can
    // reach the bucket but do no IAM work: neither the main keys nor arq-lockdown's.
    let mac = Mac::new();
    let name = format!("arq-made-{}", &mac.uuid[..8]);
    let restricted = make_user(&moto().admin, "/", &name);
    mac.set_key(&restricted);
    let output = run(&mut mac.apply());
    let message = assert_exit(&output, ExitCode::Credentials, &[]);
    let error = message
        .lines()
        .find(|l| l.contains("error:"))
        .unwrap_or_default();
    assert!(
        error.contains(&format!("arn:aws:iam::123456789012:user/{name}"))
            && error.contains("restricted")
            && error.contains("--admin-credentials env")
            && error.contains("leave this Mac as it is"),
        "{message}"
    );
    assert_eq!(mac.key(), restricted, "\"Arq S3\" was left as it was");
    assert_eq!(scoped_user(&mac.uuid)["exists"], false);

    // With admin credentials of its own, apply replaces the key and leaves the user to the admin.
    let admin = &moto().admin;
    let output = run(mac
        .apply()
        .env("AWS_ACCESS_KEY_ID", &admin.id)
        .env("AWS_SECRET_ACCESS_KEY", &admin.secret)
        .args(["--admin-credentials", "env"]));
    assert_exit(&output, ExitCode::Success, &[]);
    assert_converged_replacing(&mac, &[], &restricted.id);
    assert_eq!(
        iam_user(&name)["keys"],
        json!([restricted.id]),
        "the replaced key is not arq-lockdown's to delete"
    );
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.contains(&format!("{} is no longer on this Mac", restricted.id)),
        "{said}"
    );
}
