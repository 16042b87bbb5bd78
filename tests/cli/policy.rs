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
    assert_eq!(
        exit_code(&output),
        0,
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
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

#[test]
fn an_independent_evaluator_allows_arq_and_denies_everything_of_other_computers() {
    let other = OTHER_COMPUTER;
    let this = THIS_COMPUTER;
    let own_folder = format!("{this}/");
    let own_buckets = format!("{this}/buckets/");
    let own_glacier = format!("glacier/{this}/");
    let other_folder = format!("{other}/");
    let other_glacier = format!("glacier/{other}/");
    let cases: Vec<(&str, String, Option<&str>, &str)> = vec![
        ("s3:ListAllMyBuckets", "*".into(), None, "Allowed"),
        ("s3:GetBucketLocation", bucket_arn(), None, "Allowed"),
        ("s3:GetBucketVersioning", bucket_arn(), None, "Allowed"),
        ("s3:ListBucket", bucket_arn(), Some(&own_folder), "Allowed"),
        ("s3:ListBucket", bucket_arn(), Some(&own_buckets), "Allowed"),
        ("s3:ListBucket", bucket_arn(), Some(&own_glacier), "Allowed"),
        (
            "s3:GetObject",
            object(&format!("{this}/computerinfo")),
            None,
            "Allowed",
        ),
        (
            "s3:PutObject",
            object(&format!("{this}/objects/x")),
            None,
            "Allowed",
        ),
        (
            "s3:DeleteObject",
            object(&format!("{this}/objects/x")),
            None,
            "Allowed",
        ),
        (
            "s3:PutObject",
            object(&format!("glacier/{this}/objects/x")),
            None,
            "Allowed",
        ),
        (
            "s3:RestoreObject",
            object(&format!("glacier/{this}/objects/x")),
            None,
            "Allowed",
        ),
        (
            "s3:AbortMultipartUpload",
            object(&format!("{this}/packsets/x")),
            None,
            "Allowed",
        ),
        // The root listing and other computers' folders: refused, by the condition.
        ("s3:ListBucket", bucket_arn(), Some(""), "ImplicitlyDenied"),
        ("s3:ListBucket", bucket_arn(), None, "ImplicitlyDenied"),
        (
            "s3:ListBucket",
            bucket_arn(),
            Some(&other_folder),
            "ImplicitlyDenied",
        ),
        (
            "s3:ListBucket",
            bucket_arn(),
            Some(&other_glacier),
            "ImplicitlyDenied",
        ),
        (
            "s3:ListBucket",
            bucket_arn(),
            Some("glacier/"),
            "ImplicitlyDenied",
        ),
        (
            "s3:ListBucket",
            bucket_arn(),
            Some(&this[..8]),
            "ImplicitlyDenied",
        ),
        // Other computers' data, and the bucket itself.
        (
            "s3:GetObject",
            object(&format!("{other}/computerinfo")),
            None,
            "ImplicitlyDenied",
        ),
        (
            "s3:PutObject",
            object(&format!("{other}/objects/x")),
            None,
            "ImplicitlyDenied",
        ),
        (
            "s3:DeleteObject",
            object(&format!("glacier/{other}/objects/x")),
            None,
            "ImplicitlyDenied",
        ),
        (
            "s3:GetObject",
            object(&format!("{this}-suffix/x")),
            None,
            "ImplicitlyDenied",
        ),
        ("s3:PutBucketPolicy", bucket_arn(), None, "ImplicitlyDenied"),
        ("s3:DeleteBucket", bucket_arn(), None, "ImplicitlyDenied"),
        (
            "s3:ListBucketMultipartUploads",
            bucket_arn(),
            None,
            "ImplicitlyDenied",
        ),
    ];
    let requests: Vec<_> = cases
        .iter()
        .map(|(a, r, p, _)| (*a, r.clone(), *p))
        .collect();
    let verdicts = evaluate(&policy(&[]), &requests);
    for ((action, resource, prefix, expected), got) in cases.iter().zip(&verdicts) {
        assert_eq!(
            got, expected,
            "{action} on {resource} with prefix {prefix:?}"
        );
    }
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
