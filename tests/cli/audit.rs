//! `audit` against moto with IAM enforcement on: a bucket with computers in every state (made by
//! `apply`, by the service with a proof and with a token, and seeded straight into IAM and S3),
//! checked in text, JSON and CSV; `--fix-policies` mends drift and nothing else; the least-rights
//! policy suffices and less is one clear line; an empty bucket; the main-key verdict flipping as
//! the last Mac is locked down. Each test has a bucket of its own: other tests' users live in
//! BUCKET.

use std::process::Output;

use serde_json::{Value, json};

use crate::support::*;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `arq-lockdown audit --bucket BUCKET ARGS` with `admin` as the standard chain's credentials.
fn audit_as(admin: &Key, bucket: &str, args: &[&str]) -> Output {
    run(arq_lockdown_on_moto()
        .env("AWS_ACCESS_KEY_ID", &admin.id)
        .env("AWS_SECRET_ACCESS_KEY", &admin.secret)
        .args(["audit", "--bucket", bucket])
        .args(args))
}

/// `audit --json` with the fixture's admin keys: the exit code and the report.
fn audit_json(bucket: &str, args: &[&str]) -> (ExitCode, Value) {
    let output = audit_as(&moto().admin, bucket, &[&["--json"], args].concat());
    assert!(stderr(&output).is_empty(), "{}", stderr(&output));
    (
        exit_code(&output),
        serde_json::from_slice(&output.stdout).unwrap(),
    )
}

/// The report's entry for `uuid`.
fn computer<'a>(report: &'a Value, uuid: &str) -> &'a Value {
    report["computers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["computer_uuid"] == uuid)
        .unwrap_or_else(|| panic!("{uuid} is not in the report: {report:#}"))
}

/// A computerinfo as Arq writes it (an XML plist).
fn computerinfo(name: &str, user: &str) -> String {
    let mut dict = plist::Dictionary::new();
    dict.insert("computerName".into(), name.into());
    dict.insert("userName".into(), user.into());
    let mut bytes = Vec::new();
    plist::Value::Dictionary(dict)
        .to_writer_xml(&mut bytes)
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

/// The compact policy `arq-lockdown policy` builds for `uuid` in `bucket`.
fn policy_for(bucket: &str, uuid: &str) -> String {
    let output = run(arq_lockdown().args([
        "policy",
        "--bucket",
        bucket,
        "--computer-uuid",
        uuid,
        "--compact",
    ]));
    assert_eq!(exit_code(&output), ExitCode::Success);
    stdout(&output).trim().to_owned()
}

fn key_of(value: &Value) -> Key {
    Key {
        id: value["id"].as_str().unwrap().into(),
        secret: value["secret"].as_str().unwrap().into(),
    }
}

/// A scoped user as apply would make it, seeded straight into IAM.
fn seeded_user(bucket: &str, uuid: &str, policy: &str, keys: Value) -> Value {
    json!({
        "tags": {
            "arq-lockdown:computer-uuid": uuid,
            "arq-lockdown:bucket": bucket,
            "arq-lockdown:computer-name": "Seeded Mac",
            "arq-lockdown:policy-options": "default",
        },
        "policies": {"arq-lockdown": policy},
        "keys": keys,
    })
}

fn reasons_of(report: &Value) -> String {
    report["not_ready_reasons"].to_string()
}

fn applied(output: Output) {
    assert_eq!(exit_code(&output), ExitCode::Success, "{}", stderr(&output));
}

#[test]
fn every_state_in_text_json_and_csv_and_fix_policies_mends_drift_and_nothing_else() {
    let _guard = no_arq_running();
    const FLEET: &str = "audit-states.example";
    let [a, b, c, d, e, f, g, h, i, j, k, l, m, n] = std::array::from_fn(|_| fresh_uuid());
    let with_data = |uuid: &str, name: &str| json!({"uuid": uuid, "computerinfo": computerinfo(name, "someone"), "data": true, "glacier": true});
    let recent = json!([{"created_days_ago": 3, "last_used_days_ago": 1}]);
    let mut drifted = with_data(&f, "Fay's Mac");
    // Another computer's policy: everything in it names the wrong UUID.
    drifted["user"] = seeded_user(FLEET, &f, &policy_for(FLEET, &a), recent.clone());
    let mut unused = with_data(&i, "Ivy's Mac");
    unused["user"] = seeded_user(
        FLEET,
        &i,
        &policy_for(FLEET, &i),
        json!([{"created_days_ago": 40}]),
    );
    // Whose they are: a refused claim recorded (K), pinned and waiting (L), one enrollment key
    // bound to two computers (M, N).
    let tagged = |uuid: &str, name: &str, tags: &[(&str, &str)], keys: Value| {
        let mut computer = with_data(uuid, name);
        computer["user"] = seeded_user(FLEET, uuid, &policy_for(FLEET, uuid), keys);
        for (key, value) in tags {
            computer["user"]["tags"][*key] = json!(value);
        }
        computer
    };
    let print = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
    let claim = format!("1800000000 {print}");
    let shared = [(
        "arq-lockdown:enrollment-key",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    )];
    let seeded = seed_fleet(&json!({
        "bucket": FLEET,
        "admins": ["audit-states-main"],
        "computers": [
            with_data(&a, "Alice's Mac"), with_data(&b, "Bob's Mac"), with_data(&c, "Cy's Mac"),
            with_data(&d, "Dora's Mac"), with_data(&g, "Gus's Mac"), with_data(&h, "Hal's Mac"),
            {"uuid": e, "user": seeded_user(FLEET, &e, &policy_for(FLEET, &e), recent.clone())},
            drifted, unused,
            {"uuid": j, "computerinfo": "\u{0}junk, not a plist", "data": true},
            tagged(&k, "Kim's Mac", &[("arq-lockdown:refused-claim", &claim)], recent.clone()),
            tagged(&l, "Lee's Mac", &[("arq-lockdown:pinned-key", print)], json!([])),
            tagged(&m, "Max's Mac", &shared, recent.clone()),
            tagged(&n, "Ned's Mac", &shared, recent.clone()),
        ],
    }));
    let main = key_of(&seeded["admins"]["audit-states-main"]);

    // Locked down by apply (IAM), by the service (proof, then token); drift and extra keys added
    // by hand to two more.
    let mac = |uuid: &str| Mac::in_bucket(FLEET, uuid, &main);
    let (mac_a, mac_b, mac_c, mac_g, mac_h) = (mac(&a), mac(&b), mac(&c), mac(&g), mac(&h));
    applied(mac_a.run_apply(&[]));
    // Trust on first use: these computers have backups and nobody pinned them.
    let service = fleet_service(
        FLEET,
        "arn:aws:iam::123456789012:user/audit-states-main",
        "bind_without_pin = \"always\"",
    );
    applied(run(mac_b
        .apply_via(&service.url)
        .args(["--serial-number", "SERIAL-B"])));
    applied(run(mac_c
        .apply_via(&service.url)
        .env("ARQ_LOCKDOWN_ENROLLMENT_TOKEN", ENROLLMENT_TOKEN)));
    applied(mac_g.run_apply(&[]));
    grant_extra(&g, "tests/fixtures/policy-2012.json");
    applied(mac_h.run_apply(&[]));
    add_key(&h);

    let (code, report) = audit_json(FLEET, &[]);
    assert_eq!(code, ExitCode::NeedsAction);
    let expected = [
        (&a, "locked-down"),
        (&b, "locked-down"),
        (&c, "locked-down"),
        (&d, "not-locked-down"),
        (&e, "orphan-user"),
        (&f, "policy-drift"),
        (&g, "policy-drift"),
        (&h, "extra-keys"),
        (&i, "key-unused"),
        (&j, "not-locked-down"),
        (&k, "contested"),
        (&l, "pinned"),
        (&m, "contested"),
        (&n, "contested"),
    ];
    for (uuid, state) in expected {
        assert_eq!(
            computer(&report, uuid)["state"],
            state,
            "{uuid}: {report:#}"
        );
    }
    assert_eq!(
        report["computers"].as_array().unwrap().len(),
        expected.len()
    );
    let alice = computer(&report, &a);
    assert_eq!(alice["computer_name"], "Alice's Mac");
    assert_eq!(alice["user_name"], "someone");
    assert_eq!(alice["action"], Value::Null);
    assert!(
        alice["user_arn"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":user/arq-lockdown/arq-{a}"))
    );
    assert_eq!(alice["access_keys"][0]["active"], true);
    assert!(alice["access_keys"][0]["last_used"].is_string(), "{alice}");
    let dora = computer(&report, &d);
    assert!(
        dora["action"]
            .as_str()
            .unwrap()
            .contains("apply on \"Dora's Mac\""),
        "{dora}"
    );
    let kim = computer(&report, &k);
    assert!(
        kim["action"].as_str().unwrap().starts_with(&format!(
            "the service refused another Mac's enrollment of it (enrollment key {print})"
        )),
        "{kim}"
    );
    assert_eq!(computer(&report, &l)["pinned_key"], print);
    assert_eq!(
        computer(&report, &m)["enrollment_key"],
        computer(&report, &n)["enrollment_key"]
    );
    assert!(
        computer(&report, &m)["action"]
            .as_str()
            .unwrap()
            .contains(&format!("is bound to {n} too")),
        "{report:#}"
    );
    let junk = computer(&report, &j);
    assert_eq!(
        (&junk["computerinfo"], &junk["computer_name"]),
        (&json!("malformed"), &Value::Null)
    );
    let eve = computer(&report, &e);
    assert_eq!(
        (
            &eve["computerinfo"],
            &eve["computer_name"],
            &eve["in_bucket"]
        ),
        (&json!("missing"), &json!("Seeded Mac"), &json!(false))
    );
    assert!(
        eve["action"]
            .as_str()
            .unwrap()
            .contains(&format!("arq-lockdown revoke --computer-uuid {e}"))
    );
    assert!(
        computer(&report, &g)["action"]
            .as_str()
            .unwrap()
            .contains("other inline policies: extra")
    );
    let hal = computer(&report, &h);
    let ids: Vec<&str> = hal["access_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["access_key_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{hal}");
    let in_use = mac_h.key().id;
    let spare = ids.iter().find(|id| **id != in_use).unwrap();
    assert!(
        hal["action"].as_str().unwrap().starts_with(&in_use)
            && hal["action"]
                .as_str()
                .unwrap()
                .ends_with(&format!("--access-key-id {spare}")),
        "{hal}"
    );
    assert!(
        computer(&report, &i)["action"]
            .as_str()
            .unwrap()
            .contains("never used since it was made")
    );
    // The main key: recorded by apply and the proving service (A, B, G, H), claimed by C.
    assert_eq!(
        report["main_keys"],
        json!([{
            "access_key_id": main.id,
            "sources": ["recorded", "claimed"],
            "recorded_by": 5,
            "status": "used",
            "user_name": "audit-states-main",
            "last_used": report["main_keys"][0]["last_used"],
            "last_used_service": report["main_keys"][0]["last_used_service"],
            "last_used_region": "us-east-1",
            "admin_credentials": false,
            "replaced_by_proof": 4,
            "quiet_since": report["main_keys"][0]["quiet_since"],
            "ready_after": report["main_keys"][0]["ready_after"],
        }])
    );
    assert_eq!(report["ready_to_retire_main_keys"], false);
    assert!(
        report["not_ready_reasons"][0]
            .as_str()
            .unwrap()
            .ends_with("and 1 more not locked down: run arq-lockdown apply there first")
    );
    let counts = json!({"orphan-user": 1, "not-locked-down": 2, "contested": 3, "pinned": 1, "unconfirmed": 0, "policy-drift": 2, "extra-keys": 1, "key-unused": 1, "locked-down": 3});
    assert_eq!(report["summary"]["states"], counts);
    assert_eq!(report["summary"]["computerinfo_unread"], 1);
    assert_eq!(report["policy_fixes"], json!([]));

    // Text: one line per computer needing action, then the summary; nothing on stderr.
    let text = audit_as(&moto().admin, FLEET, &[]);
    assert_eq!(exit_code(&text), ExitCode::NeedsAction);
    assert!(stderr(&text).is_empty(), "{}", stderr(&text));
    let text = stdout(&text);
    for (uuid, state) in expected {
        let line = text.lines().find(|l| l.contains(uuid.as_str()));
        match state {
            "locked-down" => assert_eq!(line, None, "{text}"),
            _ => assert!(line.unwrap().starts_with(state), "{text}"),
        }
    }
    assert!(text.contains("bucket audit-states.example: 14 computer(s): 1 orphan-user, 2 not-locked-down, 3 contested, 1 pinned, 2 policy-drift, 1 extra-keys, 1 key-unused, 3 locked-down"), "{text}");
    assert!(
        text.contains(&format!(
            "main key {} (recorded, claimed by token-enrolled Macs, replaced on 5 Mac(s)): last used",
        main.id
        )),
        "{text}"
    );
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("ready to retire the main keys: no — "),
        "{text}"
    );

    // CSV: every computer, the same states; a header a spreadsheet reads.
    let csv = audit_as(&moto().admin, FLEET, &["--csv"]);
    assert_eq!(exit_code(&csv), ExitCode::NeedsAction);
    let mut reader = csv::Reader::from_reader(csv.stdout.as_slice());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "computer_uuid",
            "computer_name",
            "user_name",
            "state",
            "user_arn",
            "active_keys",
            "access_key_ids",
            "last_used",
            "action"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), expected.len());
    for (uuid, state) in expected {
        let row = rows.iter().find(|r| &r[0] == uuid.as_str()).unwrap();
        assert_eq!(&row[3], state, "{row:?}");
    }
    let hal_row = rows.iter().find(|r| &r[0] == h.as_str()).unwrap();
    assert_eq!((&hal_row[1], &hal_row[5]), ("Hal's Mac", "2"));

    // --fix-policies rewrites F's inline policy, and nothing else changes anywhere.
    let ours = |state: Value| {
        let users: serde_json::Map<String, Value> = state["users"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(name, _)| expected.iter().any(|(u, _)| **name == format!("arq-{u}")))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        json!({"users": users, "objects": state["objects"]})
    };
    let before = ours(fleet_state(FLEET));
    let (code, fixed) = audit_json(FLEET, &["--fix-policies"]);
    assert_eq!(code, ExitCode::NeedsAction);
    assert_eq!(
        fixed["policy_fixes"],
        json!([{"computer_uuid": f, "user_name": format!("arq-{f}"), "change": "rewrote arq-lockdown", "state": "locked-down"}])
    );
    assert_eq!(computer(&fixed, &f)["state"], "locked-down");
    assert_eq!(computer(&fixed, &g)["state"], "policy-drift");
    let mut after = ours(fleet_state(FLEET));
    let user_f = format!("arq-{f}");
    let written = after["users"][&user_f]["policies"]["arq-lockdown"].take();
    assert_eq!(
        written,
        serde_json::from_str::<Value>(&policy_for(FLEET, &f)).unwrap()
    );
    let mut expected_after = before.clone();
    expected_after["users"][&user_f]["policies"]["arq-lockdown"] = Value::Null;
    assert_eq!(
        after, expected_after,
        "--fix-policies changed more than F's policy"
    );
    let (_, again) = audit_json(FLEET, &[]);
    assert_eq!(computer(&again, &f)["state"], "locked-down");
    assert_eq!(again["summary"]["states"]["policy-drift"], 1);
}

#[test]
fn the_main_key_verdict_flips_as_the_last_mac_is_locked_down() {
    let _guard = no_arq_running();
    const FLEET: &str = "audit-flip.example";
    let [p, q] = std::array::from_fn(|_| fresh_uuid());
    let seeded = seed_fleet(&json!({
        "bucket": FLEET,
        "admins": ["audit-flip-main"],
        "computers": [
            {"uuid": p, "computerinfo": computerinfo("Pat's Mac", "pat"), "data": true},
            {"uuid": q, "computerinfo": computerinfo("Quinn's Mac", "quinn"), "data": true},
        ],
    }));
    let main = key_of(&seeded["admins"]["audit-flip-main"]);
    let mac_p = Mac::in_bucket(FLEET, &p, &main);
    let mac_q = Mac::in_bucket(FLEET, &q, &main);
    applied(mac_p.run_apply(&[]));

    // Quinn's Mac still backs up with the main keys, after Pat's lockdown (in a later second:
    // IAM's times are whole seconds).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    run(arq_lockdown_on_moto()
        .env("AWS_ACCESS_KEY_ID", &main.id)
        .env("AWS_SECRET_ACCESS_KEY", &main.secret)
        .args(["verify", "--read-only", "--arq-home"])
        .arg(mac_q.home.path()));
    let (code, report) = audit_json(FLEET, &[]);
    assert_eq!(code, ExitCode::NeedsAction);
    assert_eq!(report["ready_to_retire_main_keys"], false);
    let reasons: Vec<&str> = report["not_ready_reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(
        reasons[0],
        format!("\"Quinn's Mac\" ({q}) not locked down: run arq-lockdown apply there first")
    );
    // The main keys were used minutes ago (IAM records the first use in 15 minutes only).
    assert!(
        reasons[1].contains(&main.id) && reasons[1].contains("; ready after "),
        "{reasons:?}"
    );
    assert_eq!(report["main_keys"][0]["sources"], json!(["recorded"]));

    // The last Mac locked down: every Mac is done, but the main keys were used minutes ago, so
    // the verdict waits for the quiet period (tests/cli/main_keys.rs moves a clock through it);
    // with none asked, it is ready.
    applied(mac_q.run_apply(&[]));
    let (code, report) = audit_json(FLEET, &[]);
    assert_eq!(report["ready_to_retire_main_keys"], false);
    assert!(reasons_of(&report).contains("; ready after "), "{report:#}");
    assert_eq!(code, ExitCode::NeedsAction);
    let (code, report) = audit_json(FLEET, &["--quiet-minutes", "0"]);
    assert_eq!(report["not_ready_reasons"], json!([]), "{report:#}");
    assert_eq!(report["ready_to_retire_main_keys"], true);
    assert_eq!(code, ExitCode::Success);
    let text = audit_as(&moto().admin, FLEET, &["--quiet-minutes", "0"]);
    assert_eq!(exit_code(&text), ExitCode::Success);
    assert!(stdout(&text).ends_with(
        "ready to retire the main keys: yes — no use recorded for 0 minutes: arq-lockdown retire-main-keys deactivates them (--undo reverses it)\n"
    ));
    // Audited with the main keys themselves, their last use is the audit's own: not judged.
    let (code, report) = {
        let output = audit_as(&main, FLEET, &["--json"]);
        (
            exit_code(&output),
            serde_json::from_slice::<Value>(&output.stdout).unwrap(),
        )
    };
    assert_eq!(
        (code, &report["ready_to_retire_main_keys"]),
        (ExitCode::NeedsAction, &json!(false))
    );
    assert!(
        report["not_ready_reasons"][0]
            .as_str()
            .unwrap()
            .starts_with(&format!("audit runs with {} itself", main.id))
    );
}

#[test]
fn the_least_rights_policy_is_enough_and_less_is_one_clear_line() {
    const FLEET: &str = "audit-rights.example";
    let uuid = fresh_uuid();
    let policy = |args: &[&str]| {
        let output = run(arq_lockdown()
            .args(["policy", "--kind", "audit", "--bucket", FLEET, "--compact"])
            .args(args));
        assert_eq!(exit_code(&output), ExitCode::Success);
        stdout(&output).trim().to_owned()
    };
    let s3_only = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
    let nothing = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:GetCallerIdentity","Resource":"*"}]}"#;
    let mut drifted =
        json!({"uuid": uuid, "data": true, "computerinfo": computerinfo("Rae's Mac", "rae")});
    drifted["user"] = seeded_user(FLEET, &uuid, &policy_for(FLEET, &fresh_uuid()), json!([{}]));
    // The IAM statements judged by the independent evaluator: per-user rights stay on scoped users.
    let fixer: Value = serde_json::from_str(&policy(&["--fix-policies"])).unwrap();
    let user = |path: &str| format!("arn:aws:iam::123456789012:user{path}");
    let verdicts = evaluate(
        &fixer,
        &[
            (
                "iam:PutUserPolicy",
                user(&format!("/arq-lockdown/arq-{uuid}")),
                None,
            ),
            ("iam:PutUserPolicy", user("/fleet-admin"), None),
            ("iam:ListAccessKeys", user("/fleet-admin"), None),
            ("iam:GetAccountAuthorizationDetails", "*".into(), None),
            (
                "s3:GetObject",
                format!("arn:aws:s3:::{FLEET}/{uuid}/computerinfo"),
                None,
            ),
            (
                "s3:GetObject",
                format!("arn:aws:s3:::{FLEET}/{uuid}/encryptionv3.dat"),
                None,
            ),
        ],
    );
    assert_eq!(
        verdicts,
        [
            "Allowed",
            "ImplicitlyDenied",
            "ImplicitlyDenied",
            "Allowed",
            "Allowed",
            "ImplicitlyDenied"
        ]
    );
    // moto judges IAM actions against the resource "*" only, so there the per-user statements
    // name "*" (S3's resources it judges as AWS does).
    let for_moto = |text: String| text.replace("arn:aws:iam::*:user/arq-lockdown/*", "*");
    let seeded = seed_fleet(&json!({
        "bucket": FLEET,
        "admins": [
            {"name": "audit-read-only", "policy": for_moto(policy(&[]))},
            {"name": "audit-fixer", "policy": for_moto(policy(&["--fix-policies"]))},
            {"name": "audit-s3-only", "policy": s3_only},
            {"name": "audit-no-rights", "policy": nothing},
        ],
        "computers": [drifted],
    }));
    let admin = |name: &str| key_of(&seeded["admins"][name]);

    let refused = audit_as(&admin("audit-s3-only"), FLEET, &[]);
    assert_eq!(exit_code(&refused), ExitCode::Aws);
    assert_eq!(
        stderr(&refused),
        "arq-lockdown: error: IAM refused iam:GetAccountAuthorizationDetails to these admin credentials: audit needs iam:GetAccountAuthorizationDetails, iam:GenerateCredentialReport, iam:GetCredentialReport, iam:GetAccessKeyLastUsed, iam:ListAccessKeys (and iam:PutUserPolicy for --fix-policies); `arq-lockdown policy --kind audit --bucket BUCKET` prints the policy\n"
    );
    assert!(refused.stdout.is_empty());
    let refused = audit_as(&admin("audit-no-rights"), FLEET, &["--json"]);
    assert_eq!(exit_code(&refused), ExitCode::Aws);
    assert!(refused.stdout.is_empty());
    assert_eq!(stderr(&refused).lines().count(), 1);
    assert!(
        stderr(&refused).contains("refused") && stderr(&refused).contains("policy --kind audit"),
        "{}",
        stderr(&refused)
    );

    // What `policy --kind audit` prints is enough to read everything, names included …
    let read_only = audit_as(&admin("audit-read-only"), FLEET, &["--json"]);
    assert_eq!(
        exit_code(&read_only),
        ExitCode::NeedsAction,
        "{}",
        stderr(&read_only)
    );
    let report: Value = serde_json::from_slice(&read_only.stdout).unwrap();
    assert_eq!(computer(&report, &uuid)["state"], "policy-drift");
    assert_eq!(computer(&report, &uuid)["computer_name"], "Rae's Mac");
    // … but not to fix; with --fix-policies it is.
    let refused = audit_as(&admin("audit-read-only"), FLEET, &["--fix-policies"]);
    assert_eq!(exit_code(&refused), ExitCode::Aws);
    assert!(stderr(&refused).starts_with("arq-lockdown: error: IAM refused iam:PutUserPolicy"));
    let fixed = audit_as(&admin("audit-fixer"), FLEET, &["--fix-policies", "--json"]);
    assert_eq!(
        exit_code(&fixed),
        ExitCode::NeedsAction,
        "{}",
        stderr(&fixed)
    );
    let report: Value = serde_json::from_slice(&fixed.stdout).unwrap();
    assert_eq!(
        computer(&report, &uuid)["state"],
        "locked-down",
        "{}",
        stderr(&fixed)
    );
}

#[test]
fn an_empty_bucket_a_missing_one_and_bad_flags() {
    const FLEET: &str = "audit-empty.example";
    let seeded = seed_fleet(&json!({"bucket": FLEET, "admins": ["audit-empty-main"]}));
    let main = key_of(&seeded["admins"]["audit-empty-main"]);

    // Nothing to judge the main keys by: not ready until one is named.
    let (code, report) = audit_json(FLEET, &[]);
    assert_eq!(code, ExitCode::NeedsAction);
    assert_eq!(report["computers"], json!([]));
    assert_eq!(report["summary"]["computers"], 0);
    assert!(
        report["not_ready_reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("no main key known: pass --main-key-id")
    );
    let output = audit_as(&moto().admin, FLEET, &["--main-key-id", &main.id]);
    assert_eq!(exit_code(&output), ExitCode::Success, "{}", stdout(&output));
    assert_eq!(
        stdout(&output),
        format!(
            "bucket {FLEET}: 0 computer(s)\nmain key {} (--main-key-id): never used (IAM user audit-empty-main)\nready to retire the main keys: yes — no use recorded for 120 minutes: arq-lockdown retire-main-keys deactivates them (--undo reverses it)\n",
            main.id
        )
    );

    let missing = audit_as(&moto().admin, "no-such-bucket.example", &[]);
    assert_eq!(exit_code(&missing), ExitCode::ConfigInvalid);
    assert_eq!(
        stderr(&missing),
        "arq-lockdown: error: there is no bucket no-such-bucket.example: check --bucket (exactly as Arq stores it, dot included) and AWS_REGION\n"
    );
    for bad in [
        &["--main-key-id", "not-a-key"][..],
        &["--admin-credentials", "arq-s3"],
        &["--json", "--csv"],
    ] {
        let output = audit_as(&moto().admin, FLEET, bad);
        assert_eq!(exit_code(&output), ExitCode::Usage, "{bad:?}");
    }
    let output = audit_as(&moto().admin, "Not_A_Bucket", &[]);
    assert_eq!(exit_code(&output), ExitCode::Usage);
}

#[test]
fn a_squat_with_copied_main_keys_is_unconfirmed_once_the_inventory_is_read() {
    let _guard = no_arq_running();
    const FLEET: &str = "audit-squat.example";
    let [victim, squatter] = std::array::from_fn(|_| fresh_uuid());
    let seeded = seed_fleet(&json!({
        "bucket": FLEET,
        "admins": ["audit-squat-main"],
        "computers": [
            {"uuid": victim, "computerinfo": computerinfo("Vic's Mac", "vic"), "data": true},
            {"uuid": squatter, "computerinfo": computerinfo("Sam's Mac", "sam"), "data": true},
        ],
    }));
    let main = key_of(&seeded["admins"]["audit-squat-main"]);
    // The squatter's own Mac, locked down as it should be …
    let own = Mac::in_bucket(FLEET, &squatter, &main);
    applied(own.run_apply(&[]));
    // … and, with the main keys it had before its lockdown, an Arq home naming the victim's UUID.
    let squat = Mac::in_bucket(FLEET, &victim, &main);
    applied(squat.run_apply(&[]));
    assert_eq!(
        squat.verify(),
        ExitCode::Success,
        "the squatter's key is a working key for the victim's computer: it reads and writes its backups"
    );
    // The victim has not run apply yet: its Arq still has the main keys.
    let real = Mac::in_bucket(FLEET, &victim, &main);

    // IAM alone cannot tell the squatter's user from the victim's: both computers look locked
    // down, and once the quiet period is over (none asked for here) the verdict lets the main
    // keys go.
    let (code, plain) = audit_json(FLEET, &["--quiet-minutes", "0"]);
    assert_eq!(
        computer(&plain, &victim)["state"],
        "locked-down",
        "{plain:#}"
    );
    assert_eq!(
        (code, &plain["ready_to_retire_main_keys"]),
        (ExitCode::Success, &json!(true)),
        "{plain:#}"
    );

    // The MDM's inventory: the victim reports the main key, not the squatter's.
    let inventory = jamf_export(&[
        ("Vic's Mac", "C02VICTIM0001", &jamf_ea(&real)),
        ("Sam's Mac", "C02SQUATTER01", &jamf_ea(&own)),
    ]);
    let (code, report) = audit_json(
        FLEET,
        &["--quiet-minutes", "0", "--inventory", inventory.arg()],
    );
    assert_eq!(code, ExitCode::NeedsAction);
    let judged = computer(&report, &victim);
    assert_eq!(judged["state"], "unconfirmed", "{report:#}");
    let action = judged["action"].as_str().unwrap();
    // An IAM-sourced Mac reports no enrollment key: its own lockdown deletes the key it lacks.
    assert!(
        action.contains(&squat.key().id) && action.contains("arq-lockdown apply"),
        "{action}"
    );
    assert_eq!(computer(&report, &squatter)["state"], "locked-down");
    assert_eq!(report["ready_to_retire_main_keys"], false);
    assert!(
        report["not_ready_reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains(victim.as_str())),
        "{report:#}"
    );
    let text = audit_as(&moto().admin, FLEET, &["--inventory", inventory.arg()]);
    let line = stdout(&text)
        .lines()
        .find(|l| l.contains(victim.as_str()))
        .map(str::to_owned);
    assert!(
        line.as_deref()
            .is_some_and(|l| l.starts_with("unconfirmed ")),
        "{}",
        stdout(&text)
    );
}
