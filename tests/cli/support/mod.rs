//! Shared fixtures, one file per kind:
//! - `moto`: the one moto of this test binary, and what IAM and S3 hold (through the fixture);
//! - `mac`: a Mac as `apply` meets it (an Arq home, a file keychain, a relaunch command);
//! - `managed`: a user of the test's own with a configuration profile (root only);
//! - `service`: the provisioning service under test, raw HTTP, and the protocol's requests;
//! - `proxy`: an HTTP proxy in front of moto that records, and can throttle or hold a request;
//! - `tls`: test certificates, and a TLS client that says which certificate it was shown;
//! - `evaluator`: the independent IAM policy evaluator;
//! - `inventory`: the MDM's side: each Mac's extension-attribute line, an inventory export;
//! - `local_user`: a throwaway local user (root tests) and what such a user can do to root.
//!
//! Here: the command builder that runs the binary with a clean AWS environment, the exit-code
//! assertion ([`assert_exit`]), Arq homes, file stores, snapshots and the secret-leak checks.

mod evaluator;
mod inventory;
mod local_user;
mod mac;
mod managed;
mod moto;
mod proxy;
mod service;
mod tls;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub use evaluator::*;
pub use inventory::*;
pub use local_user::*;
pub use mac::*;
pub use managed::*;
pub use moto::*;
pub use proxy::*;
pub use service::*;
pub use tls::*;

pub const BUCKET: &str = "akiaexample.comhaystacksoftwarearq";
pub const THIS_COMPUTER: &str = "32D9D7A2-3B3E-4BE7-B85B-0605AF24F570";
pub const OTHER_COMPUTER: &str = "7A1E5C3B-9D2F-4E8A-B6C4-1F3D5E7A9B2C";

pub fn project_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tool(relative: &str) -> PathBuf {
    let path = project_root().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup first",
        path.display()
    );
    path
}

/// An access key pair handed out by the fixture.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    pub id: String,
    pub secret: String,
}

/// Only the id: a failing assertion must not print a secret either.
impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

/// The binary with an environment that reaches no real AWS: no AWS_* variables from outside, no
/// instance metadata lookups, HOME pointing nowhere useful.
pub fn arq_lockdown() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_arq-lockdown"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_")
            || name.to_string_lossy().starts_with("ARQ_LOCKDOWN_")
        {
            command.env_remove(name);
        }
    }
    command
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        )
        .env("AWS_REGION", "us-east-1")
        .env("HOME", "/nonexistent-home")
        .stdin(Stdio::null());
    command
}

/// The binary pointed at the test binary's moto.
pub fn arq_lockdown_on_moto() -> Command {
    let mut command = arq_lockdown();
    command.env("AWS_ENDPOINT_URL", &moto().endpoint);
    command
}

/// Runs `command` and checks that nothing it printed holds a secret ([`assert_no_secret_in`]).
pub fn run(command: &mut Command) -> Output {
    let output = command.output().expect("run arq-lockdown");
    assert_no_secret(&output, &[]);
    output
}

/// Checks stdout and stderr of `output` with [`assert_no_secret_in`], also for `secrets`.
pub fn assert_no_secret(output: &Output, secrets: &[&str]) {
    for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        assert_no_secret_in(stream, &String::from_utf8_lossy(bytes), secrets);
    }
}

/// Fails when `text` (what a run printed, logged or left in a file, named `what`) holds one of
/// `secrets`, a secret moto handed out, or anything shaped like an AWS secret access key — which
/// catches secrets the test never saw, such as a key deleted after a failed verification. The
/// message names where, never the secret.
pub fn assert_no_secret_in(what: &str, text: &str, secrets: &[&str]) {
    let known = moto::started()
        .map(|m| m.secrets().to_vec())
        .unwrap_or_default();
    for secret in known.iter().chain(secrets) {
        assert!(!text.contains(secret), "a secret appeared in {what}");
    }
    let shaped = secret_shaped(text);
    assert!(
        shaped.is_none(),
        "something shaped like a secret key appeared in {what} at byte {}",
        shaped.unwrap_or(0)
    );
}

/// Where `text` has a run of exactly 40 characters of the secret-key alphabet (letters, digits, `/`
/// and `+`) with an upper-case letter, a lower-case letter and a digit in it.
fn secret_shaped(text: &str) -> Option<usize> {
    let alphabet = |c: u8| c.is_ascii_alphanumeric() || c == b'/' || c == b'+';
    let bytes = text.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        if !alphabet(bytes[start]) {
            start += 1;
            continue;
        }
        let end = bytes[start..]
            .iter()
            .position(|c| !alphabet(*c))
            .map_or(bytes.len(), |n| start + n);
        let run = &bytes[start..end];
        if run.len() == 40
            && run.iter().any(u8::is_ascii_uppercase)
            && run.iter().any(u8::is_ascii_lowercase)
            && run.iter().any(u8::is_ascii_digit)
        {
            return Some(start);
        }
        start = end;
    }
    None
}

/// Checks every file below `dir` (receipts, logs) with [`assert_no_secret_in`].
pub fn assert_no_secret_in_files(dir: &Path, secrets: &[&str]) {
    for (path, _, _) in snapshot(dir) {
        if let Ok(text) = std::fs::read(&path) {
            let what = path.display().to_string();
            assert_no_secret_in(&what, &String::from_utf8_lossy(&text), secrets);
        }
    }
}

pub use arq_lockdown::exit_code::ExitCode;

/// How the binary exited: one of its documented codes (anything else fails the test).
pub fn exit_code(output: &Output) -> ExitCode {
    let code = output.status.code().expect("exited normally");
    ExitCode::from_code(code).unwrap_or_else(|| panic!("exit code {code} is not an ExitCode"))
}

/// What the binary printed on stderr.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Checks that `output` exited with `code` and that its stderr says each of `says`; a failure
/// shows the whole stderr. Returns the stderr, for what a test checks beyond that.
#[track_caller]
pub fn assert_exit(output: &Output, code: ExitCode, says: &[&str]) -> String {
    let stderr = stderr(output);
    assert_eq!(exit_code(output), code, "wrong exit code; stderr: {stderr}");
    for fragment in says {
        assert!(
            stderr.contains(fragment),
            "expected {fragment:?} in stderr: {stderr}"
        );
    }
    stderr
}

/// A user's home with Arq's app_config.plist.
pub struct ArqHome {
    pub dir: tempfile::TempDir,
}

impl ArqHome {
    pub fn empty() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A home whose config says `bucket` and `uuid`, in Arq's XML plist form.
    pub fn with(bucket: &str, uuid: &str) -> Self {
        let home = Self::empty();
        let mut dict = plist::Dictionary::new();
        dict.insert("localS3BucketName".into(), bucket.into());
        dict.insert("localComputerUUID".into(), uuid.into());
        dict.insert("localS3AccessKeyID".into(), "AKIAIOSFODNN7EXAMPLE".into());
        home.write_config_value(&plist::Value::Dictionary(dict));
        home
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("Library/Arq/config/app_config.plist")
    }

    pub fn write_config(&self, bytes: &[u8]) {
        let path = self.config_path();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    pub fn write_config_value(&self, value: &plist::Value) {
        let mut bytes = Vec::new();
        value.to_writer_xml(&mut bytes).unwrap();
        self.write_config(&bytes);
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A file credential store holding `key` as "Arq S3", in a fresh folder.
pub fn file_store(key: &Key) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keychain.json");
    let item = serde_json::json!({"Arq S3": {"account": key.id, "password": key.secret}});
    std::fs::write(&path, item.to_string()).unwrap();
    (dir, format!("file:{}", path.display()))
}

/// Every file below `dir` with its size and modification time: equal snapshots mean nothing was written.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut entries = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let Ok(listing) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in listing.flatten() {
            let meta = entry.path().symlink_metadata().unwrap();
            if meta.is_dir() {
                pending.push(entry.path());
            }
            entries.push((entry.path(), meta.len(), meta.modified().unwrap()));
        }
    }
    entries.sort();
    entries
}

/// A new computer UUID, so tests that share moto do not share IAM users.
pub fn fresh_uuid() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

/// Snapshot settings for outputs that carry run-specific values: temporary paths, key ids, ports,
/// times and ages become placeholders; everything else is compared word for word.
pub fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    for (pattern, replacement) in [
        (r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]"),
        (r"\bAKIA[A-Z0-9]{16}\b", "[KEY-ID]"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
        (r"\b\d+(\.\d+)? ?(ms|s)\b", "[TIME]"),
        (
            r#""receipt_age_seconds": \d+"#,
            r#""receipt_age_seconds": [AGE]"#,
        ),
        (r"arq-lockdown-probe-[0-9a-f-]+", "arq-lockdown-probe-[ID]"),
        (r#""user": "[^"]*""#, r#""user": "[USER]""#),
        (r"\buser=[a-z_][a-z0-9_.-]*", "user=[USER]"),
    ] {
        settings.add_filter(pattern, replacement);
    }
    settings
}

/// stdout and stderr of `output`, labelled, as one text to snapshot.
pub fn transcript(output: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}--- stderr\n{}",
        exit_code(output) as i32,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
