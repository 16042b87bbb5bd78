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

// The uninstall script's symlink race is tested as root, in `root.rs`.

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
