//! Malformed input: each case must end with one clear error line naming the fix, its class's exit
//! code, nothing on stdout, and no file written or changed. Each table's error lines are also
//! snapshotted whole, so a reworded message is a reviewed diff.

use std::os::unix::fs::symlink;

use crate::support::*;

/// Checks the common contract of a refused run — its exit code and message ([`assert_exit`]),
/// nothing on stdout, one error line; returns "name: exit N: the error line" for the table's
/// snapshot.
fn assert_refused(name: &str, output: &std::process::Output, code: ExitCode, says: &str) -> String {
    let stderr = assert_exit(output, code, &[says]);
    assert!(output.stdout.is_empty(), "{name}: printed on stdout");
    let error_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("arq-lockdown: error: "))
        .collect();
    if code != ExitCode::Usage {
        assert_eq!(error_lines.len(), 1, "{name}: not one error line: {stderr}");
    }
    let shown = if code == ExitCode::Usage {
        stderr.lines().next().unwrap_or_default()
    } else {
        error_lines[0]
    };
    format!("{name}: exit {}: {shown}\n", code as i32)
}

fn plist_with(bucket: Option<plist::Value>, uuid: Option<plist::Value>) -> plist::Value {
    let mut dict = plist::Dictionary::new();
    if let Some(bucket) = bucket {
        dict.insert("localS3BucketName".into(), bucket);
    }
    if let Some(uuid) = uuid {
        dict.insert("localComputerUUID".into(), uuid);
    }
    plist::Value::Dictionary(dict)
}

fn with_bucket(bucket: &str) -> plist::Value {
    plist_with(Some(bucket.into()), Some(THIS_COMPUTER.into()))
}

fn with_uuid(uuid: &str) -> plist::Value {
    plist_with(Some(BUCKET.into()), Some(uuid.into()))
}

/// Puts a broken config into a home.
type Setup = Box<dyn Fn(&ArqHome)>;

fn in_config_folder(make: impl Fn(&ArqHome) + 'static) -> Setup {
    Box::new(move |home: &ArqHome| {
        std::fs::create_dir_all(home.config_path().parent().unwrap()).unwrap();
        make(home);
    })
}

/// Broken Arq configs: name, setup, exit code, and a fragment of the message it must give.
#[rustfmt::skip]
fn config_cases() -> Vec<(&'static str, Setup, ExitCode, &'static str)> {
    let xml = |value: plist::Value| Box::new(move |home: &ArqHome| home.write_config_value(&value)) as Setup;
    let raw = |bytes: Vec<u8>| Box::new(move |home: &ArqHome| home.write_config(&bytes)) as Setup;
    vec![
        ("no config at all", Box::new(|_: &ArqHome| {}), ExitCode::ConfigMissing, "set Arq up for this user first"),
        ("config folder without the file", in_config_folder(|_| {}), ExitCode::ConfigMissing, "no Arq config at"),
        ("config is a directory", in_config_folder(|h| std::fs::create_dir(h.config_path()).unwrap()), ExitCode::ConfigMissing, "not a regular file"),
        ("config is a FIFO", in_config_folder(|h| {
            let path = std::ffi::CString::new(h.config_path().to_str().unwrap()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        }), ExitCode::ConfigMissing, "not a regular file"),
        ("dangling symlink", in_config_folder(|h| symlink("/nonexistent/app_config.plist", h.config_path()).unwrap()), ExitCode::ConfigMissing, "no Arq config at"),
        ("symlink loop", in_config_folder(|h| {
            let other = h.config_path().with_file_name("loop");
            symlink(&other, h.config_path()).unwrap();
            symlink(h.config_path(), other).unwrap();
        }), ExitCode::ConfigMissing, "cannot read Arq config"),
        ("empty file", raw(Vec::new()), ExitCode::ConfigInvalid, "is not a property list"),
        ("plain text", raw(b"localS3BucketName = foo\n".to_vec()), ExitCode::ConfigInvalid, "is not a property list"),
        ("truncated XML", raw(b"<?xml version=\"1.0\"?><plist version=\"1.0\"><dict><key>localS3BucketName</key>".to_vec()), ExitCode::ConfigInvalid, "is not a property list"),
        ("JSON instead of a plist", raw(br#"{"localS3BucketName": "b"}"#.to_vec()), ExitCode::ConfigInvalid, "is not a property list"),
        ("binary garbage", raw(b"bplist00\xff\xfe\x00\x01garbage".to_vec()), ExitCode::ConfigInvalid, "is not a property list"),
        ("oversized file", raw(vec![b' '; 2 * 1024 * 1024]), ExitCode::ConfigInvalid, "larger than"),
        ("array at the top", xml(plist::Value::Array(vec![BUCKET.into()])), ExitCode::ConfigInvalid, "not a dictionary"),
        ("no bucket key", xml(plist_with(None, Some(THIS_COMPUTER.into()))), ExitCode::ConfigInvalid, "has no localS3BucketName"),
        ("no computer UUID key", xml(plist_with(Some(BUCKET.into()), None)), ExitCode::ConfigInvalid, "has no localComputerUUID"),
        ("bucket is an integer", xml(plist_with(Some(42.into()), Some(THIS_COMPUTER.into()))), ExitCode::ConfigInvalid, "localS3BucketName is an integer"),
        ("UUID is data", xml(plist_with(Some(BUCKET.into()), Some(plist::Value::Data(vec![1, 2])))), ExitCode::ConfigInvalid, "localComputerUUID is data"),
        ("UUID is a dictionary", xml(plist_with(Some(BUCKET.into()), Some(plist::Value::Dictionary(Default::default())))), ExitCode::ConfigInvalid, "localComputerUUID is a dictionary"),
        ("empty bucket", xml(with_bucket("")), ExitCode::ConfigInvalid, "3 to 63 characters"),
        ("bucket too long", xml(with_bucket(&"a".repeat(64))), ExitCode::ConfigInvalid, "3 to 63 characters"),
        ("bucket upper case", xml(with_bucket("AKIAEXAMPLE.comhaystacksoftwarearq")), ExitCode::ConfigInvalid, "lower-case"),
        ("bucket with underscore", xml(with_bucket("akia_example.comhaystacksoftwarearq")), ExitCode::ConfigInvalid, "lower-case"),
        ("bucket with a space", xml(with_bucket("akiaexample comhaystacksoftwarearq")), ExitCode::ConfigInvalid, "lower-case"),
        ("bucket with a newline", xml(with_bucket("akiaexample\n.comhaystacksoftwarearq")), ExitCode::ConfigInvalid, "lower-case"),
        ("bucket with a wildcard", xml(with_bucket("akiaexample*")), ExitCode::ConfigInvalid, "lower-case"),
        ("bucket with a slash", xml(with_bucket("akiaexample/../other")), ExitCode::ConfigInvalid, "lower-case"),
        ("bucket starting with a dot", xml(with_bucket(".comhaystacksoftwarearq")), ExitCode::ConfigInvalid, "begin and end"),
        ("bucket with two dots", xml(with_bucket("akiaexample..comhaystacksoftwarearq")), ExitCode::ConfigInvalid, "next to another dot"),
        ("bucket shaped like an IP address", xml(with_bucket("192.168.10.1")), ExitCode::ConfigInvalid, "IP address"),
        ("bucket with a reserved prefix", xml(with_bucket("xn--akiaexample")), ExitCode::ConfigInvalid, "reserved"),
        ("bucket in Unicode", xml(with_bucket("akiaexämple.com")), ExitCode::ConfigInvalid, "lower-case"),
        ("empty UUID", xml(with_uuid("")), ExitCode::ConfigInvalid, "is not a UUID"),
        ("UUID without hyphens", xml(with_uuid("32D9D7A23B3E4BE7B85B0605AF24F570")), ExitCode::ConfigInvalid, "is not a UUID"),
        ("UUID in braces", xml(with_uuid("{32D9D7A2-3B3E-4BE7-B85B-0605AF24F57}")), ExitCode::ConfigInvalid, "is not a UUID"),
        ("UUID with a wildcard", xml(with_uuid("32D9D7A2-3B3E-4BE7-B85B-0605AF24F5*0")), ExitCode::ConfigInvalid, "is not a UUID"),
        ("UUID with a path", xml(with_uuid("../D7A2-3B3E-4BE7-B85B-0605AF24F570")), ExitCode::ConfigInvalid, "is not a UUID"),
        ("UUID with non-hex letters", xml(with_uuid("32D9D7A2-3B3E-4BE7-B85B-0605AF24FZZZ")), ExitCode::ConfigInvalid, "is not a UUID"),
        ("UUID with a trailing newline", xml(with_uuid("32D9D7A2-3B3E-4BE7-B85B-0605AF24F570\n")), ExitCode::ConfigInvalid, "is not a UUID"),
        ("UUID with misplaced hyphens", xml(with_uuid("32D9D7A2-3B3E4-BE7-B85B-0605AF24F570")), ExitCode::ConfigInvalid, "is not a UUID"),
        ("UUID of 1 KB", xml(with_uuid(&"A".repeat(1024))), ExitCode::ConfigInvalid, "is not a UUID"),
    ]
}

#[test]
fn every_broken_arq_config_is_refused_clearly_without_writing() {
    let cases = config_cases();
    assert!(cases.len() >= 30);
    let main_keys = Key {
        id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
    };
    let mut seen = String::new();
    for (name, setup, code, says) in cases {
        let home = ArqHome::empty();
        setup(&home);
        let (store_dir, store) = file_store(&main_keys);
        let before = (snapshot(home.path()), snapshot(store_dir.path()));
        let policy = run(arq_lockdown()
            .arg("policy")
            .arg("--arq-home")
            .arg(home.path()));
        seen += &assert_refused(name, &policy, code, says)
            .replace(home.path().to_str().unwrap(), "[HOME]");
        // apply stops at the same line, before the network (port 9 is closed) and any write.
        let apply = run(arq_lockdown()
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .arg("apply")
            .arg("--arq-home")
            .arg(home.path())
            .args(["--credential-store", &store]));
        assert_refused(&format!("apply: {name}"), &apply, code, says);
        let after = (snapshot(home.path()), snapshot(store_dir.path()));
        assert_eq!(after, before, "{name}: something was written");
    }
    snapshot_settings().bind(|| insta::assert_snapshot!("bad-arq-configs", seen));
}

#[test]
#[rustfmt::skip]
fn bad_values_on_the_command_line_are_refused() {
    let cases: &[(&str, &[&str], ExitCode, &str)] = &[
        ("junk bucket flag", &["policy", "--bucket", "Not A Bucket", "--computer-uuid", THIS_COMPUTER], ExitCode::Usage, "not a valid S3 bucket name"),
        ("junk UUID flag", &["policy", "--bucket", BUCKET, "--computer-uuid", "*"], ExitCode::Usage, "not a UUID"),
        ("junk other-computer UUID", &["verify", "--bucket", BUCKET, "--computer-uuid", THIS_COMPUTER, "--other-computer-uuid", "x"], ExitCode::Usage, "--other-computer-uuid"),
        ("junk UUID to revoke", &["revoke", "--computer-uuid", "arq-*"], ExitCode::Usage, "not a UUID"),
        ("bucket without UUID", &["policy", "--bucket", BUCKET], ExitCode::Usage, "--computer-uuid"),
        ("unknown store kind", &["verify", "--bucket", BUCKET, "--computer-uuid", THIS_COMPUTER, "--credential-store", "vault:x"], ExitCode::Usage, "use keychain or file:PATH"),
        ("unknown admin credentials", &["apply", "--admin-credentials", "root"], ExitCode::Usage, "use arq-s3, env or profile:NAME"),
        ("absurd wait", &["apply", "--quit-arq", "--wait", "99999"], ExitCode::Usage, "whole number of seconds"),
        ("the Keychain off macOS", &["verify", "--bucket", BUCKET, "--computer-uuid", THIS_COMPUTER, "--credential-store", "keychain"], ExitCode::Credentials, "the Keychain exists only on macOS"),
        ("HOME without Arq, no --arq-home", &["policy"], ExitCode::ConfigMissing, "no Arq config at /nonexistent-home/"),
    ];
    let mut seen = String::new();
    for (name, args, code, says) in cases {
        let output = run(arq_lockdown().args(*args));
        seen += &assert_refused(name, &output, *code, says);
    }
    snapshot_settings().bind(|| insta::assert_snapshot!("bad-flags", seen));
}

#[test]
#[rustfmt::skip]
fn broken_credential_stores_are_refused_before_any_network_call() {
    let cases: &[(&str, Option<&str>, &str)] = &[
        ("store file missing", None, "does not exist"),
        ("store not JSON", Some("Arq S3 = AKIA"), "not valid JSON"),
        ("store truncated", Some(r#"{"Arq S3": {"account": "AKIAIOSFODNN7EXAMPLE""#), "not valid JSON"),
        ("store is an array", Some(r#"["Arq S3"]"#), "not valid JSON"),
        ("no Arq S3 item", Some(r#"{"Arq Encryption": {}}"#), "has no \"Arq S3\" item"),
        ("item without password", Some(r#"{"Arq S3": {"account": "AKIAIOSFODNN7EXAMPLE"}}"#), "needs string fields"),
        ("account not a key id", Some(r#"{"Arq S3": {"account": "bob@example.com", "password": "x"}}"#), "not an AWS access key id"),
        ("empty secret", Some(r#"{"Arq S3": {"account": "AKIAIOSFODNN7EXAMPLE", "password": ""}}"#), "not an AWS secret access key"),
        ("secret with a newline", Some("{\"Arq S3\": {\"account\": \"AKIAIOSFODNN7EXAMPLE\", \"password\": \"a\\nb\"}}"), "not an AWS secret access key"),
    ];
    let home = ArqHome::with(BUCKET, THIS_COMPUTER);
    let mut seen = String::new();
    for (name, contents, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("keychain.json");
        if let Some(contents) = contents {
            std::fs::write(&store, contents).unwrap();
        }
        // The store's access log records what would be a dialog on a Mac, not a change.
        let store_files = || -> Vec<_> {
            snapshot(dir.path())
                .into_iter()
                .filter(|(path, _, _)| !path.to_string_lossy().ends_with(".access-log"))
                .collect()
        };
        let before = (store_files(), snapshot(home.path()));
        for command in ["verify", "apply"] {
            // Port 9 (discard) is closed here: reaching the network would end with exit 6, not 5.
            let output = run(arq_lockdown()
                .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
                .arg(command)
                .arg("--arq-home")
                .arg(home.path())
                .arg("--credential-store")
                .arg(format!("file:{}", store.display())));
            seen += &assert_refused(&format!("{command}: {name}"), &output, ExitCode::Credentials, says);
        }
        assert_eq!((store_files(), snapshot(home.path())), before, "{name}: something was written");
    }
    snapshot_settings().bind(|| insta::assert_snapshot!("bad-credential-stores", seen));
}
