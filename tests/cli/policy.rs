//! The policy: its content, its listing conditions judged by an independent IAM evaluator
//! (@cloud-copilot/iam-simulate, which applies `Condition` blocks, unlike moto), and a linter.

use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::support::*;

fn policy(extra: &[&str]) -> Value {
    let output = run(arq_lockdown()
        .args([
            "policy",
            "--bucket",
            BUCKET,
            "--computer-uuid",
            THIS_COMPUTER,
        ])
        .args(extra));
    assert_exit(&output, ExitCode::Success, &[]);
    serde_json::from_slice(&output.stdout).unwrap()
}

fn bucket_arn() -> String {
    format!("arn:aws:s3:::{BUCKET}")
}

fn object(key: &str) -> String {
    format!("arn:aws:s3:::{BUCKET}/{key}")
}

#[test]
fn the_policy_uses_the_bucket_name_exactly_and_both_prefixes() {
    let policy = policy(&[]);
    assert_eq!(policy["Version"], "2012-10-17");
    let text = policy.to_string();
    assert!(text.contains(&format!("arn:aws:s3:::{BUCKET}/{THIS_COMPUTER}/*")));
    assert!(text.contains(&format!("arn:aws:s3:::{BUCKET}/glacier/{THIS_COMPUTER}/*")));
    assert!(
        !text.contains("akiaexamplecomhaystacksoftwarearq"),
        "the dot was dropped"
    );
    assert!(!text.contains("\"s3:*\""));
}

#[test]
fn compact_output_is_one_line_without_spaces() {
    let output = run(arq_lockdown().args([
        "policy",
        "--compact",
        "--bucket",
        BUCKET,
        "--computer-uuid",
        THIS_COMPUTER,
    ]));
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(!text.trim_end().contains(char::is_whitespace));
}

/// The request context of a listing: its prefix and delimiter, as S3 gives them to IAM.
fn listing(prefix: &str, delimiter: Option<&str>) -> Value {
    match delimiter {
        Some(delimiter) => json!({"s3:prefix": prefix, "s3:delimiter": delimiter}),
        None => json!({"s3:prefix": prefix}),
    }
}

/// The S3 calls Arq makes (arqbackup/arq_restore, Arq 5 at d4a3d0e), each with the verdict the
/// policy must give, and what no Arq code does or another computer's data: refused.
#[rustfmt::skip]
fn arq_calls_and_strangers() -> Vec<(&'static str, String, Value, &'static str)> {
    let (this, other) = (THIS_COMPUTER, OTHER_COMPUTER);
    let none = json!({});
    vec![
        // ListBuckets (ArqRestoreCommand.m:679), GetBucketLocation (S3Service.m:143-199).
        ("s3:ListAllMyBuckets", "*".into(), none.clone(), "Allowed"),
        ("s3:GetBucketLocation", bucket_arn(), none.clone(), "Allowed"),
        // The root and glacier/ with the delimiter: folder names (TargetConnection.m:103,
        // RemoteFS.m:115-135).
        ("s3:ListBucket", bucket_arn(), listing("", Some("/")), "Allowed"),
        ("s3:ListBucket", bucket_arn(), listing("glacier/", Some("/")), "Allowed"),
        // Inside this computer's folders, with or without a delimiter (S3ObjectsLister.m).
        ("s3:ListBucket", bucket_arn(), listing(&format!("{this}/"), Some("/")), "Allowed"),
        ("s3:ListBucket", bucket_arn(), listing(&format!("{this}/buckets/"), Some("/")), "Allowed"),
        ("s3:ListBucket", bucket_arn(), listing(&format!("{this}/objects/00"), None), "Allowed"),
        ("s3:ListBucket", bucket_arn(), listing(&format!("glacier/{this}/"), Some("/")), "Allowed"),
        ("s3:GetObject", object(&format!("{this}/computerinfo")), none.clone(), "Allowed"),
        ("s3:PutObject", object(&format!("{this}/objects/x")), none.clone(), "Allowed"),
        ("s3:DeleteObject", object(&format!("{this}/objects/x")), none.clone(), "Allowed"),
        ("s3:PutObject", object(&format!("glacier/{this}/objects/x")), none.clone(), "Allowed"),
        ("s3:RestoreObject", object(&format!("glacier/{this}/objects/x")), none.clone(), "Allowed"),
        // The root without the delimiter (every object name), other computers' folders.
        ("s3:ListBucket", bucket_arn(), listing("", None), "ImplicitlyDenied"),
        ("s3:ListBucket", bucket_arn(), json!({}), "ImplicitlyDenied"),
        ("s3:ListBucket", bucket_arn(), listing("", Some(",")), "ImplicitlyDenied"),
        ("s3:ListBucket", bucket_arn(), listing("glacier/", None), "ImplicitlyDenied"),
        ("s3:ListBucket", bucket_arn(), listing(&format!("{other}/"), Some("/")), "ImplicitlyDenied"),
        ("s3:ListBucket", bucket_arn(), listing(&format!("{other}/"), None), "ImplicitlyDenied"),
        ("s3:ListBucket", bucket_arn(), listing(&format!("glacier/{other}/"), Some("/")), "ImplicitlyDenied"),
        ("s3:ListBucket", bucket_arn(), listing(&this[..8], Some("/")), "ImplicitlyDenied"),
        ("s3:GetObject", object(&format!("{other}/computerinfo")), none.clone(), "ImplicitlyDenied"),
        ("s3:PutObject", object(&format!("{other}/objects/x")), none.clone(), "ImplicitlyDenied"),
        ("s3:DeleteObject", object(&format!("glacier/{other}/objects/x")), none.clone(), "ImplicitlyDenied"),
        ("s3:GetObject", object(&format!("{this}-suffix/x")), none.clone(), "ImplicitlyDenied"),
        // What no Arq code calls, and what would reach every computer.
        ("s3:GetBucketVersioning", bucket_arn(), none.clone(), "ImplicitlyDenied"),
        ("s3:AbortMultipartUpload", object(&format!("{this}/packsets/x")), none.clone(), "ImplicitlyDenied"),
        ("s3:PutLifecycleConfiguration", bucket_arn(), none.clone(), "ImplicitlyDenied"),
        ("s3:PutBucketPolicy", bucket_arn(), none.clone(), "ImplicitlyDenied"),
        ("s3:DeleteBucket", bucket_arn(), none.clone(), "ImplicitlyDenied"),
        ("s3:ListBucketMultipartUploads", bucket_arn(), none, "ImplicitlyDenied"),
    ]
}

fn judge(policy: &Value, cases: &[(&str, String, Value, &str)]) {
    let requests: Vec<_> = cases
        .iter()
        .map(|(a, r, c, _)| (*a, r.clone(), c.clone()))
        .collect();
    let verdicts = evaluate_in_context(policy, &requests);
    for ((action, resource, context, expected), got) in cases.iter().zip(&verdicts) {
        assert_eq!(got, expected, "{action} on {resource} with {context}");
    }
}

#[test]
fn an_independent_evaluator_allows_arqs_calls_and_denies_everything_else() {
    judge(&policy(&[]), &arq_calls_and_strangers());
}

#[test]
fn without_computer_listing_even_the_folder_names_are_refused() {
    let mut cases = arq_calls_and_strangers();
    for case in &mut cases {
        if case.0 == "s3:ListBucket"
            && case.2.get("s3:delimiter") == Some(&json!("/"))
            && (case.2["s3:prefix"] == "" || case.2["s3:prefix"] == "glacier/")
        {
            case.3 = "ImplicitlyDenied";
        }
    }
    judge(&policy(&["--no-computer-listing"]), &cases);
}

#[test]
fn the_evaluator_shows_what_the_2012_example_breaks() {
    let example: Value = serde_json::from_slice(
        &std::fs::read(project_root().join("tests/fixtures/policy-2012.json")).unwrap(),
    )
    .unwrap();
    let verdicts = evaluate(
        &example,
        &[
            ("s3:ListAllMyBuckets", "*".into(), None),
            ("s3:GetBucketLocation", bucket_arn(), None),
            (
                "s3:PutObject",
                object(&format!("glacier/{THIS_COMPUTER}/objects/x")),
                None,
            ),
        ],
    );
    assert_eq!(verdicts, ["ImplicitlyDenied"; 3]);
}

fn parliament(policy: &str, community: bool) -> Vec<Value> {
    let mut command = Command::new(project_root().join(".tools/venv/bin/parliament"));
    if community {
        command.arg("--include-community-auditors");
    }
    let output = command
        .args(["--json", "--string", policy])
        .stdin(Stdio::null())
        .output()
        .expect("parliament: run scripts/setup");
    let findings: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    // parliament exits 1 when it has findings, 0 when none; anything else (a crash) is a failure.
    assert!(
        output.stderr.is_empty(),
        "parliament: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        output.status.code(),
        Some(i32::from(!findings.is_empty())),
        "parliament's exit status"
    );
    assert!(
        findings.iter().all(|f| f["issue"] != "MALFORMED_JSON"),
        "parliament could not read the policy: {findings:?}"
    );
    findings
}

#[test]
fn parliament_finds_nothing_to_flag() {
    let findings = parliament(&policy(&[]).to_string(), true);
    assert!(findings.is_empty(), "{findings:?}");
}

#[test]
fn parliament_flags_only_the_queue_and_topic_set_up_of_legacy_glacier() {
    // Arq 3 creates an SNS topic and an SQS queue per retrieval job and sets the queue's policy so
    // the topic may deliver to it; a community auditor counts those as permissions management.
    let findings = parliament(&policy(&["--legacy-glacier"]).to_string(), true);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0]["issue"], "PERMISSIONS_MANAGEMENT_ACTIONS");
    let mut actions: Vec<&str> = findings[0]["location"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        [
            "sns:createtopic",
            "sqs:createqueue",
            "sqs:setqueueattributes"
        ]
    );
}

#[test]
fn parliament_does_flag_the_2012_example() {
    let example =
        std::fs::read_to_string(project_root().join("tests/fixtures/policy-2012.json")).unwrap();
    let findings = parliament(&example, false);
    assert!(
        findings.iter().any(|f| f["issue"] == "RESOURCE_MISMATCH"),
        "{findings:?}"
    );
}

#[test]
fn the_admin_policy_makes_scoped_users_only_under_the_boundary() {
    let admin = policy(&["--kind", "admin", "--permissions-boundary", BOUNDARY]);
    let user = "arn:aws:iam::123456789012:user/arq-lockdown/arq-X".to_owned();
    let outside = "arn:aws:iam::123456789012:user/admin".to_owned();
    let bounded = json!({"iam:PermissionsBoundary": BOUNDARY});
    let other_boundary =
        json!({"iam:PermissionsBoundary": "arn:aws:iam::123456789012:policy/AdministratorAccess"});
    let cases: Vec<(&str, String, Value, &str)> = vec![
        ("iam:CreateUser", user.clone(), bounded.clone(), "Allowed"),
        (
            "iam:PutUserPolicy",
            user.clone(),
            bounded.clone(),
            "Allowed",
        ),
        (
            "iam:CreateUser",
            user.clone(),
            json!({}),
            "ImplicitlyDenied",
        ),
        (
            "iam:CreateUser",
            user.clone(),
            other_boundary.clone(),
            "ImplicitlyDenied",
        ),
        (
            "iam:PutUserPolicy",
            user.clone(),
            json!({}),
            "ImplicitlyDenied",
        ),
        (
            "iam:PutUserPolicy",
            user.clone(),
            other_boundary,
            "ImplicitlyDenied",
        ),
        (
            "iam:CreateUser",
            outside.clone(),
            bounded.clone(),
            "ImplicitlyDenied",
        ),
        ("iam:CreateAccessKey", user.clone(), json!({}), "Allowed"),
        ("iam:DeleteAccessKey", user.clone(), json!({}), "Allowed"),
        ("iam:DeleteUser", user.clone(), json!({}), "Allowed"),
        ("iam:UntagUser", user.clone(), json!({}), "Allowed"),
        (
            "iam:UntagUser",
            outside.clone(),
            json!({}),
            "ImplicitlyDenied",
        ),
        (
            "iam:CreateAccessKey",
            outside,
            json!({}),
            "ImplicitlyDenied",
        ),
        (
            "iam:AttachUserPolicy",
            user.clone(),
            bounded.clone(),
            "ImplicitlyDenied",
        ),
        (
            "iam:DeleteUserPermissionsBoundary",
            user.clone(),
            json!({}),
            "ImplicitlyDenied",
        ),
        (
            "iam:PutUserPermissionsBoundary",
            user,
            bounded,
            "ImplicitlyDenied",
        ),
    ];
    let requests: Vec<_> = cases
        .iter()
        .map(|(a, r, c, _)| (*a, r.clone(), c.clone()))
        .collect();
    let verdicts = evaluate_in_context(&admin, &requests);
    for ((action, resource, context, expected), got) in cases.iter().zip(&verdicts) {
        assert_eq!(got, expected, "{action} on {resource} with {context}");
    }
}

#[test]
fn the_service_policy_adds_listing_its_buckets_and_counting_enrollments_to_the_admins() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("service.toml");
    std::fs::write(&config, service_config("127.0.0.1:0", "")).unwrap();
    let output = run(arq_lockdown()
        .args(["policy", "--kind", "service", "--config"])
        .arg(&config));
    assert_exit(&output, ExitCode::Success, &[]);
    let service: Value = serde_json::from_slice(&output.stdout).unwrap();
    let admin = policy(&["--kind", "admin", "--permissions-boundary", BOUNDARY]);
    for statement in admin["Statement"].as_array().unwrap() {
        assert!(
            service["Statement"].as_array().unwrap().contains(statement),
            "{statement}"
        );
    }
    let user = "arn:aws:iam::123456789012:user/arq-lockdown/arq-X".to_owned();
    let folder = |prefix: &str| json!({"s3:prefix": prefix, "s3:max-keys": "1"});
    #[rustfmt::skip]
    let cases: Vec<(&str, String, Value, &str)> = vec![
        ("s3:ListBucket", bucket_arn(), folder(&format!("{THIS_COMPUTER}/")), "Allowed"),
        ("s3:ListBucket", bucket_arn(), folder(&format!("glacier/{THIS_COMPUTER}/")), "Allowed"),
        ("s3:GetBucketLocation", bucket_arn(), json!({}), "Allowed"),
        ("iam:GetAccountAuthorizationDetails", "*".into(), json!({}), "Allowed"),
        ("s3:ListBucket", "arn:aws:s3:::another-bucket".into(), folder(""), "ImplicitlyDenied"),
        ("s3:GetObject", object(&format!("{THIS_COMPUTER}/computerinfo")), json!({}), "ImplicitlyDenied"),
        ("s3:PutObject", object("x"), json!({}), "ImplicitlyDenied"),
        ("iam:CreateUser", user.clone(), json!({}), "ImplicitlyDenied"),
        ("iam:CreateUser", user, json!({"iam:PermissionsBoundary": BOUNDARY}), "Allowed"),
    ];
    let requests: Vec<_> = cases
        .iter()
        .map(|(a, r, c, _)| (*a, r.clone(), c.clone()))
        .collect();
    let verdicts = evaluate_in_context(&service, &requests);
    for ((action, resource, context, expected), got) in cases.iter().zip(&verdicts) {
        assert_eq!(got, expected, "{action} on {resource} with {context}");
    }
    // A config that does not load is refused as serve refuses it.
    std::fs::write(&config, "listen = 1").unwrap();
    let refused = run(arq_lockdown()
        .args(["policy", "--kind", "service", "--config"])
        .arg(&config));
    assert_eq!(exit_code(&refused), ExitCode::ConfigInvalid);
}

#[test]
fn the_boundary_allows_arqs_work_in_the_bucket_and_nothing_else() {
    let boundary = policy(&["--kind", "boundary"]);
    let verdicts = evaluate(
        &boundary,
        &[
            ("s3:ListAllMyBuckets", "*".into(), None),
            ("s3:ListBucket", bucket_arn(), Some("")),
            ("s3:GetObject", object("any/computerinfo"), None),
            ("s3:PutObject", object("any/objects/x"), None),
            ("s3:PutObject", "arn:aws:s3:::another-bucket/x".into(), None),
            ("s3:PutBucketPolicy", bucket_arn(), None),
            ("s3:PutLifecycleConfiguration", bucket_arn(), None),
            (
                "iam:CreateUser",
                "arn:aws:iam::123456789012:user/x".into(),
                None,
            ),
        ],
    );
    assert_eq!(
        verdicts,
        [
            "Allowed",
            "Allowed",
            "Allowed",
            "Allowed",
            "ImplicitlyDenied",
            "ImplicitlyDenied",
            "ImplicitlyDenied",
            "ImplicitlyDenied"
        ]
    );
}
