//! What ships to Macs besides the binary: the LaunchAgent and the example profile agree with the
//! code on one identifier and on every preference key. (`packaging/check-pkg` checks the .pkg.)

use std::collections::BTreeSet;

use arq_lockdown::preferences::{IDENTIFIER, KEYS};

use crate::support::project_root;

fn plist(relative: &str) -> plist::Dictionary {
    plist::Value::from_file(project_root().join(relative))
        .unwrap()
        .into_dictionary()
        .unwrap()
}

#[test]
fn the_launch_agent_runs_apply_once_per_login_in_the_users_session() {
    let agent = plist(&format!("launchd/{IDENTIFIER}.plist"));
    assert_eq!(
        agent["Label"].as_string(),
        Some(IDENTIFIER),
        "label and file name must match"
    );
    assert_eq!(agent["RunAtLoad"].as_boolean(), Some(true));
    assert!(
        !agent.contains_key("KeepAlive"),
        "a one-shot must not be kept alive"
    );
    assert_eq!(
        agent["LimitLoadToSessionType"].as_string(),
        Some("Aqua"),
        "the Keychain needs the GUI session"
    );
    let program: Vec<&str> = agent["ProgramArguments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_string().unwrap())
        .collect();
    assert_eq!(
        program,
        ["/usr/local/bin/arq-lockdown", "apply", "--managed"],
        "the agent leaves every setting (QuitArq included) to the profile"
    );
    assert_eq!(
        agent["StartInterval"].as_signed_integer(),
        Some(3600),
        "a run that failed at login is retried within the hour"
    );
    assert!(
        !agent.contains_key("AssociatedBundleIdentifiers"),
        "there is no bundle with our identifier to associate"
    );
}

#[test]
fn the_example_profile_documents_exactly_the_keys_apply_reads() {
    let profile = plist("packaging/example.mobileconfig");
    let payload = profile["PayloadContent"].as_array().unwrap()[0]
        .as_dictionary()
        .unwrap();
    assert_eq!(payload["PayloadType"].as_string(), Some(IDENTIFIER));
    let documented: BTreeSet<&str> = payload
        .keys()
        .map(String::as_str)
        .filter(|k| !k.starts_with("Payload"))
        .collect();
    let read: BTreeSet<&str> = KEYS.into_iter().collect();
    assert_eq!(documented, read);
}

/// The uninstall script removes a user's folders only when no part of the way there is a
/// symlink (root must not follow a link a user made). Its guard is run here as written.
#[test]
fn the_uninstaller_removes_nothing_reached_through_a_users_symlink() {
    let script = std::fs::read_to_string(project_root().join("packaging/uninstall")).unwrap();
    let start = script.find("real_folder_under() {").unwrap();
    let end = start + script[start..].find("\n}\n").unwrap() + 3;
    let guard = &script[start..end];
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let h = home.path();
    std::fs::create_dir_all(h.join("Library/Logs/arq-lockdown")).unwrap();
    std::fs::create_dir_all(elsewhere.path().join("arq-lockdown")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), h.join("Library/Application Support")).unwrap();
    let check = |path: &str| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{guard}\nreal_folder_under \"$1\" \"$2\""))
            .arg("sh")
            .arg(h)
            .arg(h.join(path))
            .status()
            .unwrap()
            .success()
    };
    assert!(
        check("Library/Logs/arq-lockdown"),
        "a real folder is removable"
    );
    assert!(
        !check("Library/Application Support/arq-lockdown"),
        "a symlink on the way"
    );
    assert!(!check("Library/Logs/missing"), "a missing folder");
    std::fs::remove_dir_all(h.join("Library/Logs")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), h.join("Library/Logs")).unwrap();
    assert!(
        !check("Library/Logs/arq-lockdown"),
        "a symlink as the parent"
    );
    // A symlink further up: the whole of Library is a user's link.
    std::fs::create_dir_all(elsewhere.path().join("Logs/arq-lockdown")).unwrap();
    std::fs::remove_dir_all(h.join("Library")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), h.join("Library")).unwrap();
    assert!(!check("Library/Logs/arq-lockdown"), "a symlink further up");
}

#[test]
fn the_example_profile_keeps_the_agent_on_in_login_items() {
    let profile = plist("packaging/example.mobileconfig");
    let payloads = profile["PayloadContent"].as_array().unwrap();
    let rule = payloads
        .iter()
        .map(|p| p.as_dictionary().unwrap())
        .find(|p| p["PayloadType"].as_string() == Some("com.apple.servicemanagement"))
        .expect("a com.apple.servicemanagement payload")["Rules"]
        .as_array()
        .unwrap()[0]
        .as_dictionary()
        .unwrap()
        .clone();
    assert_eq!(rule["RuleType"].as_string(), Some("Label"));
    assert_eq!(
        rule["RuleValue"].as_string(),
        Some(IDENTIFIER),
        "the LaunchAgent's label"
    );
}
