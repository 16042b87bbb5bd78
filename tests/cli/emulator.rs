//! The emulator behaves like AWS where our correctness rests on it (scripts/aws_emulator.py):
//! ListBucket's conditions and the permissions boundary, case by case against the independent
//! evaluator; inactive and too-new keys refused; last use recorded once per 15 minutes; an
//! account's clock, and IAM throttling, in that account only.

use arq_lockdown::aws::{self, AwsCredentials};
use serde_json::{Value, json};

use crate::support::*;

/// One ListObjects call: prefix, delimiter and max-keys, each absent when `None`.
type Listing = (Option<&'static str>, Option<&'static str>, Option<i32>);

/// A name, the identity policy, the boundary, the listing, whether AWS allows it.
type ListingCase = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Listing,
    &'static str,
);

/// ListObjects (classic v1) on BUCKET with `key`: whether S3 allowed it (any other error fails).
fn listed(key: &Key, (prefix, delimiter, max_keys): Listing) -> bool {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let access = access_key(key);
        let config = aws::load_config(AwsCredentials::Key(&access))
            .await
            .into_builder()
            .endpoint_url(&moto().endpoint)
            .build();
        let answer = aws::s3_client(&config, None)
            .list_objects()
            .bucket(BUCKET)
            .set_prefix(prefix.map(str::to_owned))
            .set_delimiter(delimiter.map(str::to_owned))
            .set_max_keys(max_keys)
            .send()
            .await;
        match answer {
            Ok(_) => true,
            Err(error) => {
                let status = error.raw_response().map(|r| r.status().as_u16());
                assert_eq!(status, Some(403), "{error:?}");
                false
            }
        }
    })
}

/// The request context IAM makes of a listing: each parameter the request has, even empty.
fn context((prefix, delimiter, max_keys): Listing) -> Value {
    let mut context = serde_json::Map::new();
    if let Some(prefix) = prefix {
        context.insert("s3:prefix".into(), prefix.into());
    }
    if let Some(delimiter) = delimiter {
        context.insert("s3:delimiter".into(), delimiter.into());
    }
    if let Some(max_keys) = max_keys {
        context.insert("s3:max-keys".into(), max_keys.to_string().into());
    }
    Value::Object(context)
}

fn policy_output(args: &[&str]) -> Value {
    let output = run(arq_lockdown().arg("policy").args(args));
    assert_eq!(exit_code(&output), ExitCode::Success);
    serde_json::from_slice(&output.stdout).unwrap()
}

fn list_bucket(effect: &str, condition: Value) -> Value {
    json!({"Effect": effect, "Action": "s3:ListBucket", "Resource": format!("arn:aws:s3:::{BUCKET}"), "Condition": condition})
}

/// The identity policies and boundaries of the cases, by name.
fn documents() -> Vec<(&'static str, Value)> {
    let scoped = policy_output(&["--bucket", BUCKET, "--computer-uuid", THIS_COMPUTER]);
    let mut deny_outside = scoped.clone();
    deny_outside["Statement"]
        .as_array_mut()
        .unwrap()
        .push(list_bucket(
            "Deny",
            json!({"StringNotLike": {"s3:prefix": ["", "glacier/", format!("{THIS_COMPUTER}/*")]}}),
        ));
    let one = |statement: Value| json!({"Version": "2012-10-17", "Statement": [statement]});
    let bucket_objects = format!("arn:aws:s3:::{BUCKET}/*");
    vec![
        ("scoped", scoped),
        (
            "no-listing",
            policy_output(&[
                "--bucket",
                BUCKET,
                "--computer-uuid",
                THIS_COMPUTER,
                "--no-computer-listing",
            ]),
        ),
        (
            "2012",
            serde_json::from_str(
                &std::fs::read_to_string(project_root().join("tests/fixtures/policy-2012.json"))
                    .unwrap(),
            )
            .unwrap(),
        ),
        (
            "max-keys",
            one(list_bucket(
                "Allow",
                json!({"NumericLessThanEquals": {"s3:max-keys": "500"}}),
            )),
        ),
        (
            "delimiter-if-exists",
            one(list_bucket(
                "Allow",
                json!({"StringEqualsIfExists": {"s3:delimiter": "/"}}),
            )),
        ),
        ("deny-outside", deny_outside),
        (
            "any-prefix",
            one(list_bucket(
                "Allow",
                json!({"StringLike": {"s3:prefix": "*"}}),
            )),
        ),
        (
            "fleet-boundary",
            policy_output(&["--kind", "boundary", "--bucket", BUCKET]),
        ),
        (
            "objects-only",
            one(json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": bucket_objects})),
        ),
        (
            "root-denied",
            json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "s3:*", "Resource": [format!("arn:aws:s3:::{BUCKET}"), bucket_objects]},
                list_bucket("Deny", json!({"StringEquals": {"s3:prefix": ""}})),
            ]}),
        ),
    ]
}

#[test]
#[rustfmt::skip]
fn listing_conditions_and_the_boundary_are_judged_as_the_independent_evaluator_judges_them() {
    const U: &str = THIS_COMPUTER;
    const U_SLASH: &str = "32D9D7A2-3B3E-4BE7-B85B-0605AF24F570/";
    const U_OBJECTS: &str = "32D9D7A2-3B3E-4BE7-B85B-0605AF24F570/objects/00";
    const O_SLASH: &str = "7A1E5C3B-9D2F-4E8A-B6C4-1F3D5E7A9B2C/";
    const GLACIER_U: &str = "glacier/32D9D7A2-3B3E-4BE7-B85B-0605AF24F570/";
    const GLACIER_O: &str = "glacier/7A1E5C3B-9D2F-4E8A-B6C4-1F3D5E7A9B2C/";
    let fleet = Some("fleet-boundary");
    let cases: Vec<ListingCase> = vec![
        ("root by folder name", "scoped", fleet, (Some(""), Some("/"), Some(500)), "Allowed"),
        ("root, no max-keys", "scoped", fleet, (Some(""), Some("/"), None), "Allowed"),
        ("root without the delimiter: object names", "scoped", fleet, (Some(""), None, Some(500)), "ImplicitlyDenied"),
        ("no prefix parameter at all", "scoped", fleet, (None, Some("/"), None), "ImplicitlyDenied"),
        ("no parameters at all", "scoped", fleet, (None, None, None), "ImplicitlyDenied"),
        ("root with another delimiter", "scoped", fleet, (Some(""), Some("-"), None), "ImplicitlyDenied"),
        ("glacier/ by folder name", "scoped", fleet, (Some("glacier/"), Some("/"), Some(500)), "Allowed"),
        ("glacier/ without the delimiter", "scoped", fleet, (Some("glacier/"), None, None), "ImplicitlyDenied"),
        ("own folder", "scoped", fleet, (Some(U_SLASH), Some("/"), Some(500)), "Allowed"),
        ("own objects, no delimiter", "scoped", fleet, (Some(U_OBJECTS), None, Some(500)), "Allowed"),
        ("own UUID without its slash", "scoped", fleet, (Some(U), Some("/"), None), "ImplicitlyDenied"),
        ("own glacier folder", "scoped", fleet, (Some(GLACIER_U), Some("/"), None), "Allowed"),
        ("another computer's folder", "scoped", fleet, (Some(O_SLASH), Some("/"), Some(500)), "ImplicitlyDenied"),
        ("another computer's glacier folder", "scoped", fleet, (Some(GLACIER_O), Some("/"), None), "ImplicitlyDenied"),
        ("no boundary: the policy alone", "scoped", None, (Some(""), Some("/"), None), "Allowed"),
        ("a boundary without ListBucket", "scoped", Some("objects-only"), (Some(U_SLASH), Some("/"), None), "ImplicitlyDenied"),
        ("a boundary's explicit deny", "scoped", Some("root-denied"), (Some(""), Some("/"), None), "ExplicitlyDenied"),
        ("the boundary's deny, elsewhere", "scoped", Some("root-denied"), (Some(U_SLASH), Some("/"), None), "Allowed"),
        ("no listing: root refused", "no-listing", fleet, (Some(""), Some("/"), None), "ImplicitlyDenied"),
        ("no listing: own folder", "no-listing", fleet, (Some(U_SLASH), Some("/"), None), "Allowed"),
        ("2012: root refused", "2012", None, (Some(""), Some("/"), None), "ImplicitlyDenied"),
        ("2012: own folder", "2012", None, (Some(U_SLASH), None, None), "Allowed"),
        ("max-keys within", "max-keys", None, (Some(""), None, Some(500)), "Allowed"),
        ("max-keys beyond", "max-keys", None, (Some(""), None, Some(1000)), "ImplicitlyDenied"),
        ("max-keys absent", "max-keys", None, (Some(""), None, None), "ImplicitlyDenied"),
        ("IfExists, delimiter absent", "delimiter-if-exists", None, (Some(""), None, None), "Allowed"),
        ("IfExists, another delimiter", "delimiter-if-exists", None, (Some(""), Some("-"), None), "ImplicitlyDenied"),
        ("negated deny, prefix absent: applies", "deny-outside", fleet, (None, Some("/"), None), "ExplicitlyDenied"),
        ("negated deny, another folder", "deny-outside", fleet, (Some(O_SLASH), Some("/"), None), "ExplicitlyDenied"),
        ("negated deny, own folder", "deny-outside", fleet, (Some(U_SLASH), Some("/"), None), "Allowed"),
        ("a wrong condition: any prefix", "any-prefix", None, (Some(O_SLASH), None, None), "Allowed"),
        ("a wrong condition, prefix absent", "any-prefix", None, (None, None, None), "ImplicitlyDenied"),
    ];
    let documents = documents();
    let document = |name: &str| documents.iter().find(|(n, _)| *n == name).map(|(_, d)| d.clone()).unwrap();
    // One user per policy and boundary, seeded with one key each.
    let mut users: Vec<(&str, Option<&str>)> = cases.iter().map(|c| (c.1, c.2)).collect();
    users.sort();
    users.dedup();
    let tag = fresh_uuid();
    let user_name = |(policy, boundary): (&str, Option<&str>)| format!("emulator-{policy}-{}-{tag}", boundary.unwrap_or("none"));
    let boundary_name = |name: &str| format!("{name}-{tag}");
    let boundaries: Vec<&str> = documents.iter().map(|(n, _)| *n).filter(|n| cases.iter().any(|c| c.2 == Some(*n))).collect();
    let seeded = seed_fleet(&json!({
        "bucket": BUCKET,
        "managed_policies": boundaries.iter().map(|b| (boundary_name(b), Value::String(document(b).to_string()))).collect::<serde_json::Map<_, _>>(),
        "admins": users.iter().map(|&(policy, boundary)| json!({
            "name": user_name((policy, boundary)),
            "policy": document(policy).to_string(),
            "boundary": boundary.map(|b| format!("arn:aws:iam::123456789012:policy/{}", boundary_name(b))),
        })).collect::<Vec<_>>(),
    }));
    let mut failures = Vec::new();
    for &(policy, boundary) in &users {
        let ours: Vec<&ListingCase> = cases.iter().filter(|c| (c.1, c.2) == (policy, boundary)).collect();
        let requests: Vec<(&str, String, Value)> = ours.iter().map(|c| ("s3:ListBucket", format!("arn:aws:s3:::{BUCKET}"), context(c.3))).collect();
        let judged = evaluate_within(&document(policy), boundary.map(document).as_ref(), &requests);
        let key = &seeded["admins"][user_name((policy, boundary))];
        let key = Key { id: key["id"].as_str().unwrap().into(), secret: key["secret"].as_str().unwrap().into() };
        for (case, independent) in ours.iter().zip(judged) {
            let emulated = listed(&key, case.3);
            if independent != case.4 || emulated != (case.4 == "Allowed") {
                failures.push(format!("{}: expected {}, the evaluator says {independent}, the emulator {}", case.0, case.4, if emulated { "allowed" } else { "refused" }));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// An account of its own, so that moving its clock or throttling it touches no other test.
const ACCOUNT: &str = "210987654321";

/// The SDK configuration for `key` against the test binary's moto.
async fn sdk(key: &Key) -> aws_config::SdkConfig {
    aws::load_config(AwsCredentials::Key(&access_key(key)))
        .await
        .into_builder()
        .endpoint_url(&moto().endpoint)
        .build()
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// STS's answer to `key`: who it is, or the HTTP status of the refusal.
async fn caller(key: &Key) -> Result<String, u16> {
    let config = sdk(key).await;
    match aws::sts_client(&config).get_caller_identity().send().await {
        Ok(answer) => Ok(answer.arn.unwrap_or_default()),
        Err(error) => Err(error.raw_response().map_or(0, |r| r.status().as_u16())),
    }
}

#[test]
fn inactive_keys_new_keys_last_use_the_clock_and_throttling_are_as_on_aws() {
    let bucket = "emulator-accounts.example";
    let seeded = seed_fleet(
        &json!({"bucket": bucket, "account": ACCOUNT, "admins": ["emulator-admin", "emulator-user"]}),
    );
    let key = |name: &str| Key {
        id: seeded["admins"][name]["id"].as_str().unwrap().into(),
        secret: seeded["admins"][name]["secret"].as_str().unwrap().into(),
    };
    let (admin, user) = (key("emulator-admin"), key("emulator-user"));
    block_on(async {
        let iam = aws::iam_client(&sdk(&admin).await);
        let last_use = async |key: &Key| {
            let answer = iam
                .get_access_key_last_used()
                .access_key_id(&key.id)
                .send()
                .await
                .unwrap();
            answer
                .access_key_last_used
                .and_then(|u| u.last_used_date)
                .map(|d| d.as_secs_f64())
        };
        let status = async |status: &str| {
            iam.update_access_key()
                .user_name("emulator-user")
                .access_key_id(&user.id)
                .status(status.into())
                .send()
                .await
                .unwrap();
        };

        // An inactive key is refused (moto alone accepts it); active again, it works.
        assert!(caller(&user).await.is_ok());
        status("Inactive").await;
        assert_eq!(caller(&user).await, Err(403));
        status("Active").await;
        assert!(caller(&user).await.is_ok());

        // Only the first use in each 15 minutes is recorded, on the account's own clock.
        let first = last_use(&user).await.expect("recorded");
        assert!(caller(&user).await.is_ok());
        assert_eq!(
            last_use(&user).await,
            Some(first),
            "a use within 15 minutes is not recorded"
        );
        advance_clock(ACCOUNT, 16 * 60);
        assert!(caller(&user).await.is_ok());
        let later = last_use(&user).await.unwrap();
        assert!(later >= first + 16.0 * 60.0, "{first} → {later}");
        let now = |account: &str| {
            fixture_post("/arq-fixture/clock", &json!({"account": account}))["unix"]
                .as_f64()
                .unwrap()
        };
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            (now("123456789012") - real).abs() < 60.0,
            "another account's clock moved"
        );
        assert!(now(ACCOUNT) - real > 15.0 * 60.0);

        // A new key is refused for D seconds, then works.
        fixture_post(
            "/arq-fixture/settings",
            &json!({"account": ACCOUNT, "new_key_delay_seconds": 1}),
        );
        let made = iam
            .create_access_key()
            .user_name("emulator-user")
            .send()
            .await
            .unwrap()
            .access_key
            .unwrap();
        let fresh = Key {
            id: made.access_key_id,
            secret: made.secret_access_key,
        };
        assert_eq!(caller(&fresh).await, Err(403), "a new key works at once");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while caller(&fresh).await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the new key never worked"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(call_counts(ACCOUNT)["refused-new"].as_u64().unwrap() >= 1);

        // Above R IAM calls a second, IAM throttles (the SDK retries through it).
        fixture_post(
            "/arq-fixture/settings",
            &json!({"account": ACCOUNT, "iam_calls_per_second": 2}),
        );
        for _ in 0..6 {
            last_use(&admin).await;
        }
        fixture_post(
            "/arq-fixture/settings",
            &json!({"account": ACCOUNT, "iam_calls_per_second": null}),
        );
        assert!(
            call_counts(ACCOUNT)["throttled"].as_u64().unwrap() >= 1,
            "{}",
            call_counts(ACCOUNT)
        );
    });
}
