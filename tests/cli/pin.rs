//! `pin` against moto with IAM enforcement on: a fleet member squats a computer with copied main
//! keys, the real Mac's refusal reaches the MDM's inventory, and `pin --inventory` gives the
//! computer back to the enrollment key its own Mac reported — the squatter's key stops working and
//! the squatter cannot enroll it again; two Macs reporting one UUID are a conflict for the admin,
//! never a silent pin; by hand, and bad input. Each test has a bucket of its own.

use std::process::Output;

use arq_lockdown::protocol::enrollment::fingerprint;
use serde_json::{Value, json};

use crate::support::*;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `arq-lockdown pin --bucket BUCKET ARGS` with `admin` as the standard chain's credentials.
fn pin_as(admin: &Key, bucket: &str, args: &[&str]) -> Output {
    run(arq_lockdown_on_moto()
        .env("AWS_ACCESS_KEY_ID", &admin.id)
        .env("AWS_SECRET_ACCESS_KEY", &admin.secret)
        .args(["pin", "--bucket", bucket])
        .args(args))
}

/// `pin --json` with the fixture's admin keys: the exit code and the answer.
fn pin_json(bucket: &str, args: &[&str]) -> (ExitCode, Value) {
    let output = pin_as(&moto().admin, bucket, &[&["--json"], args].concat());
    let answer = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("not JSON: {}{}", stdout(&output), stderr(&output)));
    (exit_code(&output), answer)
}

/// `audit --json --inventory FILE` with the fixture's admin keys: the report.
fn audit_with(bucket: &str, inventory: &InventoryFile) -> Value {
    let output = run(arq_lockdown_on_moto()
        .env("AWS_ACCESS_KEY_ID", &moto().admin.id)
        .env("AWS_SECRET_ACCESS_KEY", &moto().admin.secret)
        .args(["audit", "--json", "--bucket", bucket])
        .args(["--inventory", inventory.arg()]));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", stderr(&output)))
}

/// The entry for `uuid` in a report's or an answer's `computers`.
fn entry<'a>(answer: &'a Value, uuid: &str) -> &'a Value {
    answer["computers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["computer_uuid"] == uuid)
        .unwrap_or_else(|| panic!("{uuid} is not in {answer:#}"))
}

/// The scoped users of `bucket` and its objects, as moto holds them (other tests change theirs).
fn fleet_of(bucket: &str) -> Value {
    let mut state = fleet_state(bucket);
    state["users"]
        .as_object_mut()
        .unwrap()
        .retain(|_, user| user["tags"]["arq-lockdown:bucket"] == bucket);
    state
}

/// The fingerprint of the enrollment key `mac` keeps beside "Arq S3".
fn fingerprint_of(mac: &Mac) -> String {
    fingerprint(&mac.enrollment_key().public()).unwrap()
}

fn status_json(mac: &Mac) -> Value {
    let output = run(arq_lockdown()
        .args(["status", "--json", "--credential-store", &mac.store])
        .arg("--arq-home")
        .arg(mac.home.path()));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A bucket of its own holding `computers` (UUID, computer name) with data, and its main key.
fn fleet(bucket: &str, main: &str, computers: &[(&str, &str)]) -> Key {
    let computers: Vec<Value> = computers
        .iter()
        .map(|(uuid, _)| json!({"uuid": uuid, "data": true}))
        .collect();
    let seeded = seed_fleet(&json!({"bucket": bucket, "admins": [main], "computers": computers}));
    let key = &seeded["admins"][main];
    Key {
        id: key["id"].as_str().unwrap().into(),
        secret: key["secret"].as_str().unwrap().into(),
    }
}

/// What the squat leaves: the fleet's service, the squatter (an Arq home naming the victim's UUID,
/// "Arq S3" holding the key it got), the victim refused, and the inventory with the victim's line.
struct Squatted {
    service: Service,
    victim: Mac,
    squat: Mac,
    inventory: InventoryFile,
    /// The fleet's main keys (the squatter has a copy).
    main: Key,
}

/// A fleet member with copied main keys claims the victim's computer with `apply --source iam`;
/// the victim, enrolling with the service and the fleet's token, is refused and says so to the MDM.
fn squatted(bucket: &str, main_name: &str) -> Squatted {
    let uuid = fresh_uuid();
    let main = fleet(bucket, main_name, &[(&uuid, "Vic's Mac")]);
    let service = fleet_service(
        bucket,
        &format!("arn:aws:iam::123456789012:user/{main_name}"),
        "",
    );
    let squat = Mac::in_bucket(bucket, &uuid, &main);
    let squatted = squat.run_apply(&[]);
    assert_eq!(
        exit_code(&squatted),
        ExitCode::Success,
        "{}",
        stderr(&squatted)
    );
    assert_eq!(
        squat.verify(),
        ExitCode::Success,
        "the squatter's key is a working key for the victim's computer: it reads and writes its backups"
    );

    let victim = Mac::in_bucket(bucket, &uuid, &main);
    let refused = run(victim
        .apply_via(&service.url)
        .env("ARQ_LOCKDOWN_ENROLLMENT_TOKEN", ENROLLMENT_TOKEN));
    assert_eq!(
        exit_code(&refused),
        ExitCode::Credentials,
        "{}",
        stderr(&refused)
    );
    assert_eq!(victim.key(), main, "the refused Mac keeps the keys it had");
    let inventory = jamf_export(&[("Vic's Mac", "C02VICTIM0001", &jamf_ea(&victim))]);
    Squatted {
        service,
        victim,
        squat,
        inventory,
        main,
    }
}

#[test]
fn pin_takes_a_squatted_computer_back_for_the_mac_that_reported_it() {
    let _guard = no_arq_running();
    const FLEET: &str = "pin-squat.example";
    let Squatted {
        service,
        victim,
        squat,
        inventory,
        main,
    } = squatted(FLEET, "pin-squat-main");
    let uuid = victim.uuid.clone();
    let print = fingerprint_of(&victim);

    // The refused Mac says why, and which enrollment key is its own, in status and to the MDM.
    let status = status_json(&victim);
    assert_eq!(status["state"], "claimed-by-another-mac", "{status:#}");
    assert_eq!(status["enrollment_key_fingerprint"], print.as_str());
    let line = jamf_ea(&victim);
    assert!(
        line.starts_with("claimed-by-another-mac ")
            && line.contains(&format!(" computer={uuid} "))
            && line.contains(&format!(" bucket={FLEET} "))
            && line.contains(&format!(" enrollment-key={print}"))
            && line.contains("tell your admin"),
        "{line}"
    );

    // audit with the inventory: the computer is not locked down, and the verdict waits.
    let report = audit_with(FLEET, &inventory);
    let state = entry(&report, &uuid)["state"].as_str().unwrap().to_owned();
    assert!(
        ["unconfirmed", "contested"].contains(&state.as_str()),
        "{report:#}"
    );
    assert_eq!(report["ready_to_retire_main_keys"], false);

    // A dry run says what it would do and changes nothing.
    let before = fleet_of(FLEET);
    let (code, plan) = pin_json(FLEET, &["--inventory", inventory.arg(), "--dry-run"]);
    assert_eq!(code, ExitCode::Success, "{plan:#}");
    assert_eq!(plan["dry_run"], true);
    assert_eq!(entry(&plan, &uuid)["action"], "repinned", "{plan:#}");
    assert_eq!(fleet_of(FLEET), before, "the dry run changed IAM");

    // The pin: the squatter's key is deleted, the computer waits for the victim's enrollment key.
    let (code, pinned) = pin_json(FLEET, &["--inventory", inventory.arg()]);
    assert_eq!(code, ExitCode::Success, "{pinned:#}");
    let done = entry(&pinned, &uuid);
    assert_eq!(done["action"], "repinned", "{pinned:#}");
    assert_eq!(done["enrollment_key"], print.as_str());
    assert_eq!(done["deleted_access_keys"], json!([squat.key().id]));
    let user = scoped_user(&uuid);
    assert_eq!(user["tags"]["arq-lockdown:pinned-key"], print.as_str());
    assert_eq!(
        user["tags"]["arq-lockdown:computer-name"], "Vic_s Mac",
        "the name from the inventory, as IAM takes it"
    );
    assert!(user["tags"].get("arq-lockdown:enrollment-key").is_none());
    assert_eq!(user["keys"], json!([]));
    assert_eq!(
        squat.verify(),
        ExitCode::ArqBroken,
        "the squatter's key still works"
    );

    // Again: nothing to do.
    let after = fleet_of(FLEET);
    let (code, again) = pin_json(FLEET, &["--inventory", inventory.arg()]);
    assert_eq!(code, ExitCode::Success);
    assert_eq!(entry(&again, &uuid)["action"], "unchanged", "{again:#}");
    assert_eq!(fleet_of(FLEET), after);
    assert_eq!(
        entry(&audit_with(FLEET, &inventory), &uuid)["state"],
        "pinned"
    );

    // Text for people: one line per computer, then the counts.
    let text = stdout(&pin_as(
        &moto().admin,
        FLEET,
        &["--inventory", inventory.arg()],
    ));
    assert!(
        text.contains(&format!("unchanged {uuid}"))
            && text.ends_with("0 pinned, 1 unchanged, 0 conflicts, 0 skipped\n"),
        "{text}"
    );

    // The squatter, with an enrollment key of its own, the token and the main keys, cannot take
    // it again through the service.
    let again = Mac::in_bucket(FLEET, &uuid, &main);
    let retried = run(again
        .apply_via(&service.url)
        .env("ARQ_LOCKDOWN_ENROLLMENT_TOKEN", ENROLLMENT_TOKEN));
    assert_eq!(
        exit_code(&retried),
        ExitCode::Credentials,
        "{}",
        stderr(&retried)
    );
    assert!(
        stderr(&retried).contains("the service refused"),
        "{}",
        stderr(&retried)
    );
    // The service records the refused claim (and nothing else) for the admin to see; the pinned
    // computer stays its own Mac's.
    let mut now = fleet_of(FLEET);
    let claim = now["users"][format!("arq-{uuid}")]["tags"]
        .as_object_mut()
        .unwrap()
        .remove("arq-lockdown:refused-claim");
    assert!(
        claim
            .as_ref()
            .and_then(Value::as_str)
            .is_some_and(|c| c.ends_with(&format!(" {}", fingerprint_of(&again)))),
        "{claim:?}"
    );
    assert_eq!(now, after, "the refused enrollment changed IAM");
}

/// A pinned computer is bound by the pinned enrollment key only.
#[test]
fn after_the_pin_the_real_mac_enrolls_and_the_squatter_is_refused_as_pinned_to_another_mac() {
    let _guard = no_arq_running();
    const FLEET: &str = "pin-then-enroll.example";
    let Squatted {
        service,
        victim,
        squat,
        inventory,
        main,
    } = squatted(FLEET, "pin-enroll-main");
    let (code, _) = pin_json(FLEET, &["--inventory", inventory.arg()]);
    assert_eq!(code, ExitCode::Success);

    let enrolled = run(victim
        .apply_via(&service.url)
        .env("ARQ_LOCKDOWN_ENROLLMENT_TOKEN", ENROLLMENT_TOKEN));
    assert_eq!(
        exit_code(&enrolled),
        ExitCode::Success,
        "{}",
        stderr(&enrolled)
    );
    assert_eq!(victim.verify(), ExitCode::Success);
    assert_eq!(status_json(&victim)["state"], "locked-down");

    let again = Mac::in_bucket(FLEET, &squat.uuid, &main);
    let refused = run(again
        .apply_via(&service.url)
        .env("ARQ_LOCKDOWN_ENROLLMENT_TOKEN", ENROLLMENT_TOKEN));
    assert_eq!(exit_code(&refused), ExitCode::Credentials);
    assert!(
        stderr(&refused).contains("computer-pinned-to-another-mac"),
        "{}",
        stderr(&refused)
    );
    let inventory = jamf_export(&[("Vic's Mac", "C02VICTIM0001", &jamf_ea(&victim))]);
    assert_eq!(
        entry(&audit_with(FLEET, &inventory), &victim.uuid)["state"],
        "locked-down"
    );
}

#[test]
fn a_refused_mac_says_so_until_a_lockdown_clears_it() {
    let _guard = no_arq_running();
    const FLEET: &str = "pin-setback.example";
    let Squatted { victim, squat, .. } = squatted(FLEET, "pin-setback-main");
    let setback = victim
        .home
        .path()
        .join("Library/Application Support/arq-lockdown/setback.json");
    assert!(setback.exists());
    let text = run(arq_lockdown()
        .args(["status", "--credential-store", &victim.store])
        .arg("--arq-home")
        .arg(victim.home.path()));
    let text = stdout(&text);
    assert!(
        text.starts_with(
            "state: claimed-by-another-mac\ndetail: claimed by another Mac — tell your admin"
        ) && text.contains(&format!("enrollment key: {}\n", fingerprint_of(&victim))),
        "{text}"
    );

    // The victim locks itself down with the main keys its "Arq S3" still holds (--source iam):
    // its own lockdown deletes the key it does not hold, and the refusal is forgotten.
    let locked = victim.run_apply(&[]);
    assert_eq!(exit_code(&locked), ExitCode::Success, "{}", stderr(&locked));
    assert!(!setback.exists(), "the lockdown left the setback");
    assert_eq!(status_json(&victim)["state"], "locked-down");
    assert_eq!(
        squat.verify(),
        ExitCode::ArqBroken,
        "the squatter's key still works"
    );
}

#[test]
fn two_macs_reporting_one_computer_are_a_conflict_never_a_silent_pin() {
    let _guard = no_arq_running();
    const FLEET: &str = "pin-twins.example";
    let uuid = fresh_uuid();
    let main = fleet(FLEET, "pin-twins-main", &[(&uuid, "Ann's Mac")]);
    let service = fleet_service(FLEET, "arn:aws:iam::123456789012:user/pin-twins-main", "");
    // Two Macs whose Arq names one computer (one of them edited its app_config.plist): each
    // tries the service, each has its own enrollment key.
    let [ann, ben] = [(); 2].map(|_| Mac::in_bucket(FLEET, &uuid, &main));
    for mac in [&ann, &ben] {
        run(mac
            .apply_via(&service.url)
            .env("ARQ_LOCKDOWN_ENROLLMENT_TOKEN", ENROLLMENT_TOKEN));
    }
    let inventory = jamf_export(&[
        ("Ann's Mac", "C02ANN000001", &jamf_ea(&ann)),
        ("Ben's Mac", "C02BEN000001", &jamf_ea(&ben)),
    ]);
    let report = audit_with(FLEET, &inventory);
    let judged = entry(&report, &uuid);
    assert_eq!(judged["state"], "contested", "{report:#}");
    assert!(
        judged["action"].as_str().unwrap().contains("Ben's Mac"),
        "{judged}"
    );
    assert_eq!(report["ready_to_retire_main_keys"], false);

    let before = fleet_of(FLEET);
    let output = pin_as(&moto().admin, FLEET, &["--inventory", inventory.arg()]);
    assert_eq!(
        exit_code(&output),
        ExitCode::NeedsAction,
        "{}",
        stderr(&output)
    );
    let text = stdout(&output);
    let line = text
        .lines()
        .find(|l| l.contains(uuid.as_str()))
        .unwrap_or_default();
    assert!(
        line.starts_with("conflict ")
            && line.contains(&fingerprint_of(&ann))
            && line.contains(&fingerprint_of(&ben))
            && line.contains("--computer-uuid"),
        "{text}"
    );
    assert_eq!(fleet_of(FLEET), before, "a conflict was pinned");

    // The admin decides, by hand, with nothing but the admin policy's rights.
    let admin_policy = run(arq_lockdown().args([
        "policy",
        "--kind",
        "admin",
        "--permissions-boundary",
        BOUNDARY,
        "--compact",
    ]));
    // moto judges IAM actions against the resource "*" only.
    let for_moto = stdout(&admin_policy)
        .trim()
        .replace("arn:aws:iam::*:user/arq-lockdown/*", "*");
    let seeded = seed_fleet(
        &json!({"bucket": FLEET, "admins": [{"name": "pin-twins-admin", "policy": for_moto}]}),
    );
    let admin = Key {
        id: seeded["admins"]["pin-twins-admin"]["id"]
            .as_str()
            .unwrap()
            .into(),
        secret: seeded["admins"]["pin-twins-admin"]["secret"]
            .as_str()
            .unwrap()
            .into(),
    };
    let by_hand = [
        "--computer-uuid",
        &uuid,
        "--enrollment-key",
        &fingerprint_of(&ben),
        "--permissions-boundary",
        BOUNDARY,
        "--json",
    ];
    let output = pin_as(&admin, FLEET, &by_hand);
    assert_eq!(exit_code(&output), ExitCode::Success, "{}", stderr(&output));
    let user = scoped_user(&uuid);
    assert_eq!(
        user["tags"]["arq-lockdown:pinned-key"],
        fingerprint_of(&ben)
    );
    assert!(user["tags"].get("arq-lockdown:enrollment-key").is_none());
    assert_eq!(user["keys"], json!([]));
    let again: Value = serde_json::from_slice(&pin_as(&admin, FLEET, &by_hand).stdout).unwrap();
    assert_eq!(entry(&again, &uuid)["action"], "unchanged", "{again:#}");
    // Ann's Mac still reports the computer: still contested until it stops.
    assert_eq!(
        entry(&audit_with(FLEET, &inventory), &uuid)["state"],
        "contested"
    );
}

#[test]
fn bad_input_is_one_line_and_changes_nothing() {
    const FLEET: &str = "pin-bad.example";
    let uuid = fresh_uuid();
    fleet(FLEET, "pin-bad-main", &[(&uuid, "Kim's Mac")]);
    let before = fleet_of(FLEET);
    let print = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
    let junk = InventoryFile::with("\u{0}\u{1}not,a\ncsv\"");
    let empty = InventoryFile::with("");
    let cases: Vec<(Vec<&str>, ExitCode)> = vec![
        (vec![], ExitCode::Usage),
        (vec!["--computer-uuid", &uuid], ExitCode::Usage),
        (
            vec!["--computer-uuid", &uuid, "--enrollment-key", "SHA256:short"],
            ExitCode::Usage,
        ),
        (
            vec!["--computer-uuid", "not-a-uuid", "--enrollment-key", print],
            ExitCode::Usage,
        ),
        (
            vec!["--inventory", "/nonexistent/inventory.csv"],
            ExitCode::ConfigInvalid,
        ),
        (vec!["--inventory", junk.arg()], ExitCode::ConfigInvalid),
        (vec!["--inventory", empty.arg()], ExitCode::ConfigInvalid),
        (
            vec!["--inventory", junk.arg(), "--computer-uuid", &uuid],
            ExitCode::Usage,
        ),
        (
            vec!["--inventory", junk.arg(), "--admin-credentials", "arq-s3"],
            ExitCode::Usage,
        ),
    ];
    for (args, code) in cases {
        let output = pin_as(&moto().admin, FLEET, &args);
        assert_eq!(exit_code(&output), code, "{args:?}: {}", stderr(&output));
        if code != ExitCode::Usage {
            assert_eq!(
                stderr(&output).lines().count(),
                1,
                "{args:?}: {}",
                stderr(&output)
            );
        }
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(fleet_of(FLEET), before);
}
