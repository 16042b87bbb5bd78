//! `verify` against moto with IAM enforcement on: what a scoped key, the main key, the 2012
//! example's key and a key whose listing condition is wrong can really do. The emulator evaluates
//! ListBucket's conditions as AWS does (tests/cli/emulator.rs), so a listing the policy restricts
//! by prefix and delimiter is refused here too.

use serde_json::{Value, json};

use crate::support::*;

fn verify_with(key: &Key, extra: &[&str]) -> (ExitCode, Value) {
    verify_through(&moto().endpoint, key, extra)
}

/// `verify --json` with `key`, against moto at `endpoint` (or a proxy in front of it).
fn verify_through(endpoint: &str, key: &Key, extra: &[&str]) -> (ExitCode, Value) {
    verify_in(BUCKET, endpoint, key, extra)
}

/// `verify --json` with `key` on `bucket`, against moto at `endpoint`.
fn verify_in(bucket: &str, endpoint: &str, key: &Key, extra: &[&str]) -> (ExitCode, Value) {
    let (_dir, store) = file_store(key);
    let home = ArqHome::with(bucket, THIS_COMPUTER);
    let output = run(arq_lockdown()
        .env("AWS_ENDPOINT_URL", endpoint)
        .arg("verify")
        .arg("--json")
        .arg("--arq-home")
        .arg(home.path())
        .args(["--credential-store", &store])
        .args(extra));
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "no JSON report; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (exit_code(&output), report)
}

fn checks<'a>(report: &'a Value, kind: &str) -> Vec<&'a Value> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == kind)
        .collect()
}

fn failed_calls(report: &Value, kind: &str) -> Vec<String> {
    checks(report, kind)
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| c["call"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_scoped_key_lets_arq_work_and_reaches_no_other_computers_data() {
    let (code, report) = verify_with(&moto().scoped, &[]);
    assert!(failed_calls(&report, "arq-call").is_empty(), "{report:#}");
    // Arq's own call shapes (arq_restore, Arq 5): ListObjects v1 with the root and glacier/
    // listed by folder name, this computer's objects by their first hex byte without a
    // delimiter, GET with a Range.
    let arq_calls: Vec<String> = checks(&report, "arq-call")
        .iter()
        .map(|c| c["call"].as_str().unwrap().replace(THIS_COMPUTER, "U"))
        .collect();
    assert_eq!(
        arq_calls,
        [
            "ListBuckets",
            "GetBucketLocation",
            "ListObjects prefix=\"\" delimiter=\"/\"",
            "ListObjects prefix=\"glacier/\" delimiter=\"/\"",
            "ListObjects prefix=\"U/\" delimiter=\"/\"",
            "ListObjects prefix=\"U/objects/00\"",
            "PutObject U/<probe>",
            "HeadObject U/<probe>",
            "GetObject U/<probe> range=0-9",
            "DeleteObject U/<probe>",
            "ListObjects prefix=\"glacier/U/\" delimiter=\"/\"",
            "PutObject glacier/U/<probe>",
            "HeadObject glacier/U/<probe>",
            "GetObject glacier/U/<probe> range=0-9",
            "DeleteObject glacier/U/<probe>",
        ]
    );
    assert!(
        failed_calls(&report, "data-isolation").is_empty(),
        "{report:#}"
    );
    assert_eq!(checks(&report, "data-isolation").len(), 6);
    // The listings the prefix and delimiter conditions refuse are refused (the emulator
    // evaluates ListBucket's conditions, as AWS does).
    let listings: Vec<String> = checks(&report, "listing-isolation")
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["call"].as_str().unwrap().replace(OTHER_COMPUTER, "O"),
                c["got"]["result"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        listings,
        [
            "ListObjects prefix=\"\" denied",
            "ListObjects prefix=\"O/\" delimiter=\"/\" denied",
            "ListObjects prefix=\"glacier/O/\" delimiter=\"/\" denied"
        ]
    );
    assert_eq!(code, ExitCode::Success);
    assert_eq!(report["verdict"], "isolated");
    assert_eq!(
        report["other_computer_uuid"], OTHER_COMPUTER,
        "the root listing found the other computer"
    );
    assert!(report["left_behind"].as_array().unwrap().is_empty());
    assert_probe_gone(report["probe_object_name"].as_str().unwrap());
}

#[test]
fn the_main_key_is_reported_as_a_data_leak() {
    let (code, report) = verify_with(&moto().admin, &[]);
    assert_eq!(code, ExitCode::DataLeak);
    assert_eq!(report["verdict"], "data-leak");
    assert_eq!(
        failed_calls(&report, "data-isolation").len(),
        6,
        "{report:#}"
    );
    // The leaked probe objects were cleaned up again.
    assert!(report["left_behind"].as_array().unwrap().is_empty());
    assert_probe_gone(report["probe_object_name"].as_str().unwrap());
}

#[test]
fn the_2012_example_policy_breaks_arq() {
    let (code, report) = verify_with(&moto().seed_2012, &[]);
    assert_eq!(code, ExitCode::ArqBroken);
    let broken = failed_calls(&report, "arq-call");
    for call in ["ListBuckets", "GetBucketLocation"] {
        assert!(
            broken.contains(&call.to_owned()),
            "{call} not reported: {broken:?}"
        );
    }
    assert!(
        broken.iter().any(|c| c.starts_with("PutObject glacier/")),
        "{broken:?}"
    );
    let details: Vec<&str> = checks(&report, "arq-call")
        .iter()
        .filter_map(|c| c["detail"].as_str())
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d.contains("s3:ListAllMyBuckets on * was refused")),
        "{details:?}"
    );
    assert!(failed_calls(&report, "data-isolation").is_empty());
}

#[test]
fn a_policy_whose_listing_condition_is_wrong_is_caught_by_verify() {
    // The policy as `arq-lockdown policy` builds it, with the root listing's s3:delimiter
    // condition forgotten: every object name in the bucket can then be listed.
    let output = run(arq_lockdown().args([
        "policy",
        "--bucket",
        BUCKET,
        "--computer-uuid",
        THIS_COMPUTER,
    ]));
    let mut policy: Value = serde_json::from_slice(&output.stdout).unwrap();
    let statements = policy["Statement"].as_array_mut().unwrap();
    let computers = statements
        .iter_mut()
        .find(|s| s["Sid"] == "ArqListsComputers")
        .unwrap();
    computers["Condition"]["StringEquals"]
        .as_object_mut()
        .unwrap()
        .remove("s3:delimiter");
    let name = format!("wrong-condition-{}", fresh_uuid());
    let seeded = seed_fleet(
        &json!({"bucket": BUCKET, "admins": [{"name": name, "policy": policy.to_string()}]}),
    );
    let key = Key {
        id: seeded["admins"][&name]["id"].as_str().unwrap().into(),
        secret: seeded["admins"][&name]["secret"].as_str().unwrap().into(),
    };
    let (code, report) = verify_with(&key, &[]);
    assert_eq!(code, ExitCode::ListingLeak, "{report:#}");
    assert_eq!(
        failed_calls(&report, "listing-isolation"),
        ["ListObjects prefix=\"\""]
    );
    assert!(
        failed_calls(&report, "arq-call").is_empty()
            && failed_calls(&report, "data-isolation").is_empty()
    );
    assert_eq!(report["verdict"], "listing-leak");
}

#[test]
fn read_only_writes_nothing() {
    let proxy = Proxy::recording();
    let (code, report) = verify_through(
        &proxy.endpoint,
        &moto().admin,
        &["--read-only", "--other-computer-uuid", OTHER_COMPUTER],
    );
    let writes: Vec<String> = proxy
        .recorded()
        .iter()
        .filter(|r| r.method != "GET" && r.method != "HEAD")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(writes.is_empty(), "--read-only wrote: {writes:?}");
    assert!(proxy.recorded().len() > 5, "nothing went through the proxy");
    assert_eq!(
        code,
        ExitCode::DataLeak,
        "reading another computer's computerinfo is still a leak"
    );
    let calls: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call"].as_str().unwrap())
        .collect();
    assert!(
        calls
            .iter()
            .all(|c| !c.starts_with("PutObject") && !c.starts_with("DeleteObject")),
        "{calls:?}"
    );
}

#[test]
fn the_standard_credential_chain_is_used_without_a_store() {
    let home = ArqHome::with(BUCKET, THIS_COMPUTER);
    let key = &moto().scoped;
    let output = run(arq_lockdown_on_moto()
        .env("AWS_ACCESS_KEY_ID", &key.id)
        .env("AWS_SECRET_ACCESS_KEY", &key.secret)
        .arg("verify")
        .arg("--arq-home")
        .arg(home.path()));
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(exit_code(&output), ExitCode::Success, "{text}");
    assert!(text.contains(&format!("key {}", key.id)));
    assert!(text.contains("GetObject 7A1E5C3B-9D2F-4E8A-B6C4-1F3D5E7A9B2C/computerinfo"));
}

#[test]
fn a_wrong_secret_is_refused_by_the_signature_check() {
    let key = Key {
        id: moto().scoped.id.clone(),
        secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
    };
    let (code, report) = verify_with(&key, &[]);
    assert_eq!(code, ExitCode::ArqBroken);
    assert_eq!(failed_calls(&report, "arq-call").len(), 15);
}

#[test]
fn no_credentials_at_all_is_a_credentials_error_naming_where_this_command_takes_them() {
    let output = run(arq_lockdown_on_moto().args([
        "verify",
        "--bucket",
        BUCKET,
        "--computer-uuid",
        THIS_COMPUTER,
    ]));
    assert_eq!(exit_code(&output), ExitCode::Credentials);
    assert_eq!(
        stderr(&output),
        "arq-lockdown: error: no AWS credentials found: pass --credential-store with the key to check, or set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY\n"
    );
    // Audit takes admin credentials: its fix names those, not a credential store.
    let output = run(arq_lockdown_on_moto().args(["audit", "--bucket", BUCKET]));
    assert_eq!(exit_code(&output), ExitCode::Credentials);
    assert_eq!(
        stderr(&output),
        "arq-lockdown: error: no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or pass --admin-credentials profile:NAME naming a profile with keys\n"
    );
}

#[test]
fn an_unreachable_endpoint_is_an_aws_error() {
    let (_dir, store) = file_store(&moto().scoped);
    let output = run(arq_lockdown()
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .args([
            "verify",
            "--bucket",
            BUCKET,
            "--computer-uuid",
            THIS_COMPUTER,
            "--credential-store",
            &store,
        ]));
    assert_eq!(exit_code(&output), ExitCode::Aws);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("arq-lockdown: error: cannot reach S3") && stderr.lines().count() == 1,
        "{stderr}"
    );
}

#[test]
fn a_bucket_in_another_region_is_probed_there_and_reported_once() {
    // The probes start in the client's region beside the bucket's location; for a bucket that
    // lives elsewhere those answers must be set aside and every probe made again there.
    let elsewhere = "arq-lockdown-verify.eu-west-1";
    seed_fleet(&json!({"bucket": elsewhere, "region": "eu-west-1",
                       "computers": [{"uuid": OTHER_COMPUTER, "computerinfo": "<plist/>"}]}));
    let (here, there) = (Proxy::recording(), Proxy::recording());
    let (_, report_here) = verify_through(&here.endpoint, &moto().admin, &[]);
    let (_, report_there) = verify_in(elsewhere, &there.endpoint, &moto().admin, &[]);

    // The same probes, once each, in the report.
    let calls = |report: &Value, bucket: &str| -> Vec<String> {
        let probe = report["probe_object_name"].as_str().unwrap();
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                c["call"]
                    .as_str()
                    .unwrap()
                    .replace(bucket, "B")
                    .replace(probe, "P")
            })
            .collect()
    };
    assert_eq!(calls(&report_there, elsewhere), calls(&report_here, BUCKET));
    // Every probe after the bucket's location reached S3 signed for the bucket's region.
    let requests = |proxy: &Proxy, report: &Value, bucket: &str, region: &str| {
        let probe = report["probe_object_name"].as_str().unwrap();
        let mut requests: Vec<String> = proxy
            .recorded()
            .iter()
            .filter(|r| r.region == region && r.path.starts_with(&format!("/{bucket}/")))
            .filter(|r| !r.path.ends_with("?location"))
            .map(|r| {
                format!(
                    "{} {}",
                    r.method,
                    r.path.replace(bucket, "B").replace(probe, "P")
                )
            })
            .collect();
        requests.sort();
        requests
    };
    let probes_here = requests(&here, &report_here, BUCKET, "us-east-1");
    assert!(probes_here.len() > 10, "{probes_here:?}");
    assert_eq!(
        requests(&there, &report_there, elsewhere, "eu-west-1"),
        probes_here
    );
    let left: Vec<Value> = fleet_state(elsewhere)["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|key| key.as_str().unwrap().contains("arq-lockdown-probe-"))
        .cloned()
        .collect();
    assert!(left.is_empty(), "probe objects left behind: {left:?}");
    assert_eq!(report_there["left_behind"], json!([]));
}
