//! The main keys' verdict as AWS records key use (the first use in each 15 minutes), and their
//! retirement: a main key used minutes after the last lockdown, or another Mac's rotation, never
//! makes the verdict ready; a quiet period does; `retire-main-keys` refuses, deactivates and
//! undoes. Each test is a fleet in an AWS account of its own, whose clock it moves forward
//! instead of waiting.

use serde_json::{Value, json};

use crate::support::*;

/// A fleet in its own account: the bucket with its computers' data, the main keys (in every
/// Mac's "Arq S3"), and an auditor's keys (admin credentials that are not the main keys).
struct Fleet {
    account: &'static str,
    bucket: &'static str,
    main: Key,
    auditor: Key,
}

impl Fleet {
    fn new(account: &'static str, bucket: &'static str, computers: &[&str]) -> Self {
        let boundary = run(arq_lockdown().args([
            "policy",
            "--kind",
            "boundary",
            "--bucket",
            bucket,
            "--compact",
        ]));
        let seeded = seed_fleet(&json!({
            "bucket": bucket,
            "account": account,
            "managed_policies": {"arq-lockdown-boundary": String::from_utf8(boundary.stdout).unwrap().trim()},
            "admins": ["fleet-main", "fleet-auditor"],
            "computers": computers.iter().map(|u| json!({"uuid": u, "data": true})).collect::<Vec<_>>(),
        }));
        let key = |name: &str| Key {
            id: seeded["admins"][name]["id"].as_str().unwrap().into(),
            secret: seeded["admins"][name]["secret"].as_str().unwrap().into(),
        };
        Self {
            account,
            bucket,
            main: key("fleet-main"),
            auditor: key("fleet-auditor"),
        }
    }

    /// A Mac of this fleet with the main keys in "Arq S3".
    fn mac(&self, uuid: &str) -> Mac {
        Mac::in_bucket(self.bucket, uuid, &self.main)
    }

    /// `arq-lockdown COMMAND ARGS` with the auditor's keys as the standard chain's credentials.
    fn as_auditor(&self, command: &str, args: &[&str]) -> std::process::Output {
        run(arq_lockdown_on_moto()
            .env("AWS_ACCESS_KEY_ID", &self.auditor.id)
            .env("AWS_SECRET_ACCESS_KEY", &self.auditor.secret)
            .args([command, "--bucket", self.bucket])
            .args(args))
    }

    /// `audit --json`: the exit code and the report.
    fn audit(&self, args: &[&str]) -> (ExitCode, Value) {
        let output = self.as_auditor("audit", &[&["--json"], args].concat());
        (
            exit_code(&output),
            serde_json::from_slice(&output.stdout).unwrap(),
        )
    }

    /// A Mac that still has the main keys backs up with them (an Arq Agent not relaunched since
    /// its lockdown, or a Mac nobody has reached): S3 calls signed by the main keys.
    fn main_keys_used(&self) {
        assert!(self.main_keys_work(), "the main keys did not work");
    }

    fn advance(&self, minutes: u64) {
        advance_clock(self.account, minutes * 60);
    }

    /// `retire-main-keys --json ARGS`: the exit code and the outcome.
    fn retire(&self, args: &[&str]) -> (ExitCode, Value) {
        let output = self.as_auditor("retire-main-keys", &[&["--json"], args].concat());
        let outcome = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("no JSON: {}", stderr(&output)));
        (exit_code(&output), outcome)
    }

    /// Whether AWS still accepts the main keys (S3 calls signed by them).
    fn main_keys_work(&self) -> bool {
        let home = ArqHome::with(self.bucket, &fresh_uuid());
        let output = run(arq_lockdown_on_moto()
            .env("AWS_ACCESS_KEY_ID", &self.main.id)
            .env("AWS_SECRET_ACCESS_KEY", &self.main.secret)
            .args(["verify", "--read-only", "--arq-home"])
            .arg(home.path()));
        match exit_code(&output) {
            ExitCode::DataLeak => true,
            ExitCode::ArqBroken => false,
            other => panic!("{other:?}: {}", stderr(&output)),
        }
    }

    /// The main keys' status in IAM (read with the auditor's keys: using the main keys would be
    /// a use).
    fn main_key_status(&self) -> String {
        iam_user_as(&self.auditor, "fleet-main")["key_status"][&self.main.id]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// What retire-main-keys recorded on the main keys' user.
    fn record(&self) -> Value {
        iam_user_as(&self.auditor, "fleet-main")["tags"]
            [format!("arq-lockdown:retired-key:{}", self.main.id)]
        .clone()
    }
}

fn locked_down(mac: &Mac, extra: &[&str]) {
    let output = mac.run_apply(extra);
    assert_exit(&output, ExitCode::Success, &[]);
}

/// Sets a key's status by hand, as an admin in the IAM console would.
fn set_status(admin: &Key, user: &str, key_id: &str, status: &str) {
    use arq_lockdown::aws::{self, AwsCredentials};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = aws::load_config(AwsCredentials::Key(&access_key(admin)))
            .await
            .into_builder()
            .endpoint_url(&moto().endpoint)
            .build();
        aws::iam_client(&config)
            .update_access_key()
            .user_name(user)
            .access_key_id(key_id)
            .status(status.into())
            .send()
            .await
            .unwrap();
    });
}

fn reasons(report: &Value) -> String {
    report["not_ready_reasons"].to_string()
}

#[test]
fn another_macs_rotation_does_not_make_the_main_keys_ready() {
    let _guard = no_arq_running();
    let [a, b] = std::array::from_fn(|_| fresh_uuid());
    let fleet = Fleet::new("300000000001", "main-keys-rotation.example", &[&a, &b]);
    let (mac_a, mac_b) = (fleet.mac(&a), fleet.mac(&b));
    locked_down(&mac_a, &[]);
    locked_down(&mac_b, &[]);
    // Later (a use IAM records), a Mac that still has the main keys backs up with them.
    fleet.advance(16);
    fleet.main_keys_used();
    let (code, report) = fleet.audit(&[]);
    assert_eq!(
        (code, &report["ready_to_retire_main_keys"]),
        (ExitCode::NeedsAction, &json!(false)),
        "{report:#}"
    );

    // A's own rotation (with admin credentials that are not the main keys).
    let rotated = run(mac_a
        .apply()
        .args(["--rotate", "--admin-credentials", "env"])
        .env("AWS_ACCESS_KEY_ID", &fleet.auditor.id)
        .env("AWS_SECRET_ACCESS_KEY", &fleet.auditor.secret));
    assert_exit(&rotated, ExitCode::Success, &[]);
    let (code, report) = fleet.audit(&[]);
    assert_eq!(
        (code, &report["ready_to_retire_main_keys"]),
        (ExitCode::NeedsAction, &json!(false)),
        "a Mac's rotation of its own key made the verdict ready while the main keys are in use: {}",
        reasons(&report)
    );
    let (code, outcome) = fleet.retire(&[]);
    assert_eq!(
        (code, &outcome["result"], &outcome["changes"]),
        (ExitCode::NeedsAction, &json!("not-ready"), &json!([]))
    );
    assert_eq!(
        (fleet.main_key_status().as_str(), fleet.record()),
        ("Active", Value::Null),
        "a refused retirement changed the main keys"
    );
}

#[test]
fn a_main_key_used_minutes_after_the_last_lockdown_holds_the_verdict_until_a_quiet_period() {
    let _guard = no_arq_running();
    let [a, b] = std::array::from_fn(|_| fresh_uuid());
    let fleet = Fleet::new("300000000002", "main-keys-quiet.example", &[&a, &b]);
    locked_down(&fleet.mac(&a), &[]);
    locked_down(&fleet.mac(&b), &[]);
    // Five minutes after the last lockdown a Mac still uses the main keys: within 15 minutes of
    // the lockdowns' own use, so IAM does not record it.
    fleet.advance(5);
    fleet.main_keys_used();
    let (code, report) = fleet.audit(&[]);
    assert_eq!(
        (code, &report["ready_to_retire_main_keys"]),
        (ExitCode::NeedsAction, &json!(false)),
        "ready while a Mac used the main keys minutes ago: {report:#}"
    );
    assert!(reasons(&report).contains("; ready after "), "{report:#}");
    let (code, outcome) = fleet.retire(&[]);
    assert_eq!(
        (code, &outcome["result"]),
        (ExitCode::NeedsAction, &json!("not-ready"))
    );
    assert_eq!(outcome["not_ready_reasons"], report["not_ready_reasons"]);
    assert_eq!(
        (fleet.main_key_status().as_str(), fleet.record()),
        ("Active", Value::Null),
        "a refused retirement changed the main keys"
    );

    // Two hours with no use recorded (the auditor's keys are not the main keys): ready.
    fleet.advance(121);
    let (code, report) = fleet.audit(&[]);
    assert_eq!(
        (code, &report["ready_to_retire_main_keys"]),
        (ExitCode::Success, &json!(true)),
        "{report:#}"
    );
    let (_, surer) = fleet.audit(&["--quiet-minutes", "240"]);
    assert_eq!(
        surer["ready_to_retire_main_keys"], false,
        "--quiet-minutes 240 asks for more"
    );

    // Retired: the main keys are Inactive and AWS refuses them; the change is recorded.
    let (code, outcome) = fleet.retire(&[]);
    assert_eq!(code, ExitCode::Success, "{outcome:#}");
    let change = json!({"access_key_id": fleet.main.id, "user_name": "fleet-main", "from": "Active", "to": "Inactive", "result": "changed"});
    assert_eq!(
        (&outcome["result"], &outcome["changes"]),
        (&json!("retired"), &json!([change]))
    );
    assert!(!fleet.main_keys_work(), "the retired main keys still work");
    assert!(
        fleet
            .record()
            .as_str()
            .unwrap()
            .starts_with("Inactive since "),
        "{}",
        fleet.record()
    );
    let (_, again) = fleet.retire(&[]);
    assert_eq!(again["changes"][0]["result"], "unchanged");

    // Undone: Active again, recorded; a second undo changes nothing.
    let (code, outcome) = fleet.retire(&["--undo"]);
    assert_eq!(
        (code, &outcome["result"], &outcome["changes"][0]["to"]),
        (ExitCode::Success, &json!("restored"), &json!("Active")),
        "{outcome:#}"
    );
    assert!(
        fleet.main_keys_work(),
        "--undo did not switch the main keys on"
    );
    assert!(
        fleet
            .record()
            .as_str()
            .unwrap()
            .starts_with("Active again since ")
    );
    let (_, again) = fleet.retire(&["--undo", "--main-key-id", &fleet.main.id]);
    assert_eq!(again["changes"][0]["result"], "unchanged");
}

#[test]
fn only_named_or_proven_main_keys_are_switched_and_undo_restores_only_what_it_switched() {
    let _guard = no_arq_running();
    let [a, b] = std::array::from_fn(|_| fresh_uuid());
    let fleet = Fleet::new("300000000003", "main-keys-claims.example", &[&a]);
    // Another key of the account (the service's, say): a token-enrolled Mac claims it as the key
    // its lockdown replaced — any Mac can send any key id as its claim.
    let service = seed_fleet(
        &json!({"bucket": fleet.bucket, "account": fleet.account, "admins": ["fleet-service"]}),
    );
    let service_key = service["admins"]["fleet-service"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let policy = run(arq_lockdown().args([
        "policy",
        "--bucket",
        fleet.bucket,
        "--computer-uuid",
        &b,
        "--compact",
    ]));
    seed_fleet(
        &json!({"bucket": fleet.bucket, "account": fleet.account, "computers": [{"uuid": b, "data": true, "user": {
        "tags": {"arq-lockdown:computer-uuid": b, "arq-lockdown:bucket": fleet.bucket, "arq-lockdown:policy-options": "default",
                 "arq-lockdown:enrolled-by": "token:rollout", "arq-lockdown:replaced-key": service_key},
        "policies": {"arq-lockdown": String::from_utf8(policy.stdout).unwrap().trim()},
        "keys": [{"created_days_ago": 1}]}}]}),
    );
    locked_down(&fleet.mac(&a), &[]);
    fleet.advance(121);

    let (code, outcome) = fleet.retire(&[]);
    assert_eq!(
        (code, &outcome["result"]),
        (ExitCode::Success, &json!("retired")),
        "{outcome:#}"
    );
    let switched: Vec<&str> = outcome["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["access_key_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        switched,
        [fleet.main.id.as_str()],
        "a key only a token-enrolled Mac names was switched: {outcome:#}"
    );
    assert_eq!(outcome["left"][0]["access_key_id"], service_key);

    // A key switched off by hand stays off: undo restores only what a retirement switched off.
    let (_, outcome) = fleet.retire(&["--undo"]);
    assert_eq!(outcome["changes"][0]["result"], "changed");
    set_status(&fleet.auditor, "fleet-main", &fleet.main.id, "Inactive");
    let undone = run(arq_lockdown_on_moto()
        .env("AWS_ACCESS_KEY_ID", &fleet.auditor.id)
        .env("AWS_SECRET_ACCESS_KEY", &fleet.auditor.secret)
        .args([
            "retire-main-keys",
            "--undo",
            "--json",
            "--main-key-id",
            &fleet.main.id,
        ]));
    let outcome: Value = serde_json::from_slice(&undone.stdout).unwrap();
    assert_eq!(outcome["changes"][0]["result"], "left-alone", "{outcome:#}");
    assert!(!fleet.main_keys_work());
}

#[test]
fn retire_main_keys_needs_what_policy_kind_retire_prints_and_less_is_one_clear_line() {
    let _guard = no_arq_running();
    let uuid = fresh_uuid();
    let fleet = Fleet::new("300000000004", "main-keys-rights.example", &[&uuid]);
    let policy = |kind: &str| {
        let output = run(arq_lockdown().args([
            "policy",
            "--kind",
            kind,
            "--bucket",
            fleet.bucket,
            "--compact",
        ]));
        assert_eq!(exit_code(&output), ExitCode::Success);
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };
    let retire = policy("retire");
    // The independent evaluator judges the real policy: main keys' users yes, a Mac's never.
    let user = |path: &str| format!("arn:aws:iam::{}:user{path}", fleet.account);
    let mac = user(&format!("/arq-lockdown/arq-{uuid}"));
    let requests = [
        ("iam:UpdateAccessKey", user("/fleet-main"), None),
        ("iam:TagUser", user("/fleet-main"), None),
        ("iam:ListUserTags", user("/fleet-main"), None),
        ("iam:UpdateAccessKey", mac.clone(), None),
        ("iam:TagUser", mac, None),
        ("iam:GetAccessKeyLastUsed", "*".to_owned(), None),
        (
            "s3:ListBucket",
            format!("arn:aws:s3:::{}", fleet.bucket),
            None,
        ),
        (
            "s3:GetObject",
            format!("arn:aws:s3:::{}/{uuid}/computerinfo", fleet.bucket),
            None,
        ),
    ];
    assert_eq!(
        evaluate(&retire, &requests),
        [
            "Allowed",
            "Allowed",
            "Allowed",
            "ExplicitlyDenied",
            "ExplicitlyDenied",
            "Allowed",
            "Allowed",
            "ImplicitlyDenied"
        ]
    );
    // moto judges IAM actions against the resource "*" only: there the per-user statements name
    // "*", and the Deny (which only the evaluator can judge) is left out.
    let for_moto = |mut document: Value| {
        let statements = document["Statement"].as_array_mut().unwrap();
        statements.retain(|s| s["Effect"] == "Allow");
        document
            .to_string()
            .replace("arn:aws:iam::*:user/arq-lockdown/*", "*")
            .replace("arn:aws:iam::*:user/*", "*")
    };
    let seeded = seed_fleet(
        &json!({"bucket": fleet.bucket, "account": fleet.account, "admins": [
            {"name": "retirer", "policy": for_moto(retire)},
            {"name": "audit-only", "policy": for_moto(policy("audit"))},
        ]}),
    );
    let key = |name: &str| Key {
        id: seeded["admins"][name]["id"].as_str().unwrap().into(),
        secret: seeded["admins"][name]["secret"].as_str().unwrap().into(),
    };
    locked_down(&fleet.mac(&uuid), &[]);
    fleet.advance(121);
    let retire_as = |admin: &Key| {
        run(arq_lockdown_on_moto()
            .env("AWS_ACCESS_KEY_ID", &admin.id)
            .env("AWS_SECRET_ACCESS_KEY", &admin.secret)
            .args(["retire-main-keys", "--bucket", fleet.bucket]))
    };
    let refused = retire_as(&key("audit-only"));
    let message = assert_exit(&refused, ExitCode::Aws, &["policy --kind retire"]);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.starts_with("arq-lockdown: error: IAM refused iam:"),
        "{message}"
    );
    assert_eq!(
        fleet.main_key_status(),
        "Active",
        "a refused retirement changed the main keys"
    );
    assert_eq!(fleet.record(), Value::Null);
    let retired = retire_as(&key("retirer"));
    assert_eq!(exit_code(&retired), ExitCode::Success, "{retired:?}");
    assert!(
        String::from_utf8_lossy(&retired.stdout).starts_with(&format!(
            "{} (IAM user fleet-main): Active → Inactive\n",
            fleet.main.id
        ))
    );
    assert!(!fleet.main_keys_work());
}
