//! The one moto of this test binary, seeded by scripts/moto-fixture.py, and the fixture's views of
//! what IAM holds.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use arq_lockdown::arq_config::BucketName;
use arq_lockdown::policy::{PolicyDocument, PolicyOptions};
use serde_json::Value;

use super::*;

static MOTO: OnceLock<Moto> = OnceLock::new();

/// The buckets of the fleets the tests make in the fixture's account, which its permissions
/// boundary covers.
const FLEET_BUCKETS: [&str; 12] = [
    BUCKET,
    "another-arq-bucket.example",
    "audit-empty.example",
    "audit-flip.example",
    "audit-rights.example",
    "audit-squat.example",
    "audit-states.example",
    "insiders-second-bucket.example",
    "pin-setback.example",
    "pin-squat.example",
    "pin-then-enroll.example",
    "pin-twins.example",
];

/// The emulator and what the fixture seeded into it.
pub struct Moto {
    pub endpoint: String,
    /// The fleet's unrestricted "main keys".
    pub admin: Key,
    /// A user with `arq-lockdown policy` for THIS_COMPUTER.
    pub scoped: Key,
    /// A user with the 2012 blog post's policy (tests/fixtures/policy-2012.json).
    pub seed_2012: Key,
    /// An all-powerful user of another AWS account: the attacker's own account.
    pub foreign_admin: Key,
    _server: Child,
}

impl Moto {
    pub fn secrets(&self) -> [&str; 4] {
        [
            &self.admin.secret,
            &self.scoped.secret,
            &self.seed_2012.secret,
            &self.foreign_admin.secret,
        ]
    }
}

/// The one moto of this test binary: started on first use, seeded with a bucket holding two
/// computers' data, then IAM enforcement switched on. It stops when the test binary exits (the
/// fixture exits when its stdin closes).
pub fn moto() -> &'static Moto {
    MOTO.get_or_init(|| {
        let python = tool(".tools/venv/bin/python");
        let fixture = tool("scripts/moto-fixture.py");
        let mut server = Command::new(&python)
            .arg(&fixture)
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let mut endpoint = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut endpoint)
            .unwrap();
        let endpoint = endpoint.trim().to_owned();
        assert!(
            endpoint.starts_with("http://127.0.0.1:"),
            "moto did not start: {endpoint:?}"
        );

        let dir = tempfile::tempdir().unwrap();
        let policy_file = |name: &str, args: &[&str]| {
            let path = dir.path().join(name);
            let policy = arq_lockdown().arg("policy").args(args).output().unwrap();
            assert!(policy.status.success());
            std::fs::write(&path, &policy.stdout).unwrap();
            path
        };
        let scoped_policy = policy_file(
            "scoped.json",
            &["--bucket", BUCKET, "--computer-uuid", THIS_COMPUTER],
        );
        // The permissions boundary of every scoped user: one for all the test fleets' buckets (the
        // emulator applies it to listings, as AWS does).
        let boundary = dir.path().join("boundary.json");
        let buckets: Vec<BucketName> = FLEET_BUCKETS
            .iter()
            .map(|b| BucketName::parse(b).unwrap())
            .collect();
        let document = PolicyDocument::boundary(
            &buckets.iter().collect::<Vec<_>>(),
            PolicyOptions::default(),
        );
        std::fs::write(&boundary, document.to_pretty_json()).unwrap();
        let seeded = Command::new(&python)
            .arg(&fixture)
            .args(["seed", &endpoint, BUCKET, THIS_COMPUTER, OTHER_COMPUTER])
            .arg(format!("--user=scoped={}", scoped_policy.display()))
            .arg(format!(
                "--user=seed2012={}",
                tool("tests/fixtures/policy-2012.json").display()
            ))
            .arg(format!("--boundary={}", boundary.display()))
            .output()
            .unwrap();
        assert!(
            seeded.status.success(),
            "seeding failed: {}",
            String::from_utf8_lossy(&seeded.stderr)
        );
        let keys: Value = serde_json::from_slice(&seeded.stdout).unwrap();
        let key = |v: &Value| Key {
            id: v["id"].as_str().unwrap().into(),
            secret: v["secret"].as_str().unwrap().into(),
        };
        Moto {
            endpoint,
            admin: key(&keys["admin"]),
            scoped: key(&keys["users"]["scoped"]),
            seed_2012: key(&keys["users"]["seed2012"]),
            foreign_admin: key(&keys["foreign_admin"]),
            _server: server,
        }
    })
}

fn fixture_with_admin(args: &[&str]) -> Output {
    fixture_as(&moto().admin, args)
}

/// Runs the fixture with `key` as its AWS credentials.
fn fixture_as(key: &Key, args: &[&str]) -> Output {
    let output = Command::new(tool(".tools/venv/bin/python"))
        .arg(tool("scripts/moto-fixture.py"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", &key.id)
        .env("AWS_SECRET_ACCESS_KEY", &key.secret)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "fixture {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// What IAM holds for the user `name` of the account of `admin`: {"exists", "keys", "policies",
/// "tags"}.
pub fn iam_user_as(admin: &Key, name: &str) -> Value {
    serde_json::from_slice(&fixture_as(admin, &["inspect", &moto().endpoint, name]).stdout).unwrap()
}

/// What IAM holds for a computer's scoped user: {"exists", "keys", "policies", "tags"}.
pub fn scoped_user(uuid: &str) -> Value {
    iam_user(&format!("arq-{uuid}"))
}

/// What IAM holds for the user `name`: {"exists", "keys", "policies", "tags"}.
pub fn iam_user(name: &str) -> Value {
    serde_json::from_slice(&fixture_with_admin(&["inspect", &moto().endpoint, name]).stdout)
        .unwrap()
}

/// Creates IAM user `name` under `path` in the account of `admin`, with one key.
pub fn make_user(admin: &Key, path: &str, name: &str) -> Key {
    let output = fixture_as(admin, &["make-user", &moto().endpoint, path, name]);
    let key: Value = serde_json::from_slice(&output.stdout).unwrap();
    Key {
        id: key["id"].as_str().unwrap().into(),
        secret: key["secret"].as_str().unwrap().into(),
    }
}

/// Every object key in BUCKET, listed with the admin keys.
pub fn bucket_keys() -> Vec<String> {
    let output = fixture_with_admin(&["list-objects", &moto().endpoint, BUCKET]);
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Fails when a probe object named `probe` (a `verify` run's) is left anywhere in the bucket.
/// (Other runs' probes may come and go meanwhile: tests run side by side.)
pub fn assert_probe_gone(probe: &str) {
    assert!(probe.starts_with("arq-lockdown-probe-"), "{probe}");
    let left: Vec<String> = bucket_keys()
        .into_iter()
        .filter(|key| key.ends_with(probe))
        .collect();
    assert!(
        left.is_empty(),
        "probe objects left in the bucket: {left:?}"
    );
}

/// Adds a second inline policy to a computer's scoped user, as a careless admin might.
pub fn grant_extra(uuid: &str, policy_file: &str) {
    let user = format!("arq-{uuid}");
    let file = tool(policy_file);
    fixture_with_admin(&["grant", &moto().endpoint, &user, file.to_str().unwrap()]);
}

/// Gives a computer's scoped user one more access key, as a run that died after CreateAccessKey does.
pub fn add_key(uuid: &str) {
    fixture_with_admin(&["add-key", &moto().endpoint, &format!("arq-{uuid}")]);
}

/// Seeds moto's backends directly through the fixture (no HTTP to AWS, no enforcement): `spec`
/// as scripts/moto-fixture.py's `seed_fleet` takes it; returns its answer.
pub fn seed_fleet(spec: &Value) -> Value {
    let (status, body) = http_to(
        &moto().endpoint,
        "POST",
        "/arq-fixture/seed-fleet",
        spec.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "seeding failed: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Every scoped user (tags, policies, attached policies, groups, keys and their status) and the
/// object keys in `bucket`, as moto holds them.
pub fn fleet_state(bucket: &str) -> Value {
    let (status, body) = http_to(
        &moto().endpoint,
        "GET",
        &format!("/arq-fixture/state?bucket={bucket}"),
        b"",
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The moto of this test binary, if a test started it.
pub fn started() -> Option<&'static Moto> {
    MOTO.get()
}

/// POSTs `body` to the fixture's endpoint `path` (`/arq-fixture/settings`, `/arq-fixture/clock`):
/// its JSON answer.
pub fn fixture_post(path: &str, body: &Value) -> Value {
    let (status, answer) = http_to(&moto().endpoint, "POST", path, body.to_string().as_bytes());
    assert_eq!(status, 200, "{path}: {answer}");
    serde_json::from_str(&answer).unwrap()
}

/// Moves `account`'s clock forward by `seconds`: moto's times (key creation, last use) and its
/// answers' `Date` header, in that account only.
pub fn advance_clock(account: &str, seconds: u64) {
    fixture_post(
        "/arq-fixture/clock",
        &serde_json::json!({"account": account, "advance_seconds": seconds}),
    );
}

/// How many calls `account` received, by service (`iam`, `s3`, `sts`), and how many were
/// throttled (`throttled`) or refused as inactive or too new (`refused-inactive`, `refused-new`).
pub fn call_counts(account: &str) -> Value {
    let (status, body) = http_to(
        &moto().endpoint,
        "GET",
        &format!("/arq-fixture/stats?account={account}"),
        b"",
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}
