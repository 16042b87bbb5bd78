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
    let deploying = std::fs::read_to_string(project_root().join("docs/deploying.md")).unwrap();
    let table = deploying
        .split("<!-- keys:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- keys:end -->").next())
        .expect("docs/deploying.md has the profile's keys table");
    let in_docs: BTreeSet<&str> = table
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|line| line.split('`').next())
        .collect();
    assert_eq!(
        in_docs, read,
        "docs/deploying.md's table of the profile's keys"
    );
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

/// The Apple Events entitlement (without it the quit request to Arq fails with -1743 and no
/// prompt) is in the plist the release signs with, and every signature is checked for it on a
/// Mac: the release's after signing, CI's macOS job on an ad-hoc one.
#[test]
fn the_binary_is_signed_with_the_apple_events_entitlement_and_checked_for_it() {
    let entitlements = plist("packaging/entitlements.plist");
    assert_eq!(
        entitlements
            .get("com.apple.security.automation.apple-events")
            .and_then(plist::Value::as_boolean),
        Some(true)
    );
    assert_eq!(
        entitlements.len(),
        1,
        "only what is needed: {entitlements:?}"
    );
    let read = |path: &str| std::fs::read_to_string(project_root().join(path)).unwrap();
    let release = read(".github/workflows/release.yml");
    let signing = release
        .split("rcodesign sign --p12-file application.p12")
        .nth(1)
        .expect("the release signs the binary")
        .split("rm -f application.p12")
        .next()
        .unwrap();
    for flag in [
        "--entitlements-xml-path packaging/entitlements.plist",
        "--code-signature-flags runtime",
        &format!("--binary-identifier {IDENTIFIER}"),
    ] {
        assert!(signing.contains(flag), "the release signs without {flag}");
    }
    assert!(
        release.contains("packaging/check-signature arq-lockdown"),
        "the release does not check its signature"
    );
    let ci = read(".github/workflows/ci.yml");
    assert!(
        ci.contains("--entitlements packaging/entitlements.plist")
            && ci.contains(&format!("--identifier {IDENTIFIER}"))
            && ci.contains("packaging/check-signature target/"),
        "CI's macOS job does not check a signature with the entitlements"
    );
    let check = read("packaging/check-signature");
    assert!(
        check.contains("packaging/entitlements.plist")
            && check.contains(&format!("Identifier={IDENTIFIER}"))
            && check.contains("runtime"),
        "check-signature compares with something else"
    );
}

fn payload(profile: &plist::Dictionary, kind: &str) -> plist::Dictionary {
    profile["PayloadContent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_dictionary().unwrap())
        .find(|p| p["PayloadType"].as_string() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} payload"))
        .clone()
}

#[test]
fn the_example_profile_lets_arq_lockdown_ask_both_arq_and_arq_agent_to_quit() {
    let profile = plist("packaging/example.mobileconfig");
    let pppc = payload(&profile, "com.apple.TCC.configuration-profile-policy");
    let entries = pppc["Services"].as_dictionary().unwrap()["AppleEvents"]
        .as_array()
        .unwrap();
    let source = std::fs::read_to_string(project_root().join("src/arq_app.rs")).unwrap();
    let mut receivers = Vec::new();
    for entry in entries.iter().map(|e| e.as_dictionary().unwrap()) {
        let text = |key: &str| entry[key].as_string().unwrap().to_owned();
        assert_eq!(text("Identifier"), "/usr/local/bin/arq-lockdown");
        assert_eq!(text("IdentifierType"), "path");
        assert!(
            text("CodeRequirement").starts_with(&format!(
                "identifier \"{IDENTIFIER}\" and anchor apple generic"
            )),
            "the sender's requirement must name the identifier it is signed with: {entry:?}"
        );
        let receiver = text("AEReceiverIdentifier");
        assert_eq!(text("AEReceiverIdentifierType"), "bundleID");
        assert!(
            text("AEReceiverCodeRequirement").starts_with(&format!("identifier \"{receiver}\" ")),
            "{entry:?}"
        );
        assert_eq!(entry["Allowed"].as_boolean(), Some(true));
        assert!(
            source.contains(&format!("\"{receiver}\"")),
            "the profile allows {receiver}, which arq_app.rs does not ask"
        );
        receivers.push(receiver);
    }
    receivers.sort();
    assert_eq!(
        receivers,
        ["com.haystacksoftware.Arq", "com.haystacksoftware.ArqAgent"]
    );
}

#[test]
fn the_example_profile_lets_script_editor_show_the_notification() {
    // `display notification` is credited to Script Editor, whose notifications macOS drops
    // unless they are allowed.
    let profile = plist("packaging/example.mobileconfig");
    let settings = payload(&profile, "com.apple.notificationsettings")["NotificationSettings"]
        .as_array()
        .unwrap()[0]
        .as_dictionary()
        .unwrap()
        .clone();
    assert_eq!(
        settings["BundleIdentifier"].as_string(),
        Some("com.apple.ScriptEditor2")
    );
    assert_eq!(settings["NotificationsEnabled"].as_boolean(), Some(true));
    assert!(
        settings["AlertType"].as_signed_integer().unwrap() >= 1,
        "AlertType 0 shows nothing"
    );
    let source = std::fs::read_to_string(project_root().join("src/arq_app.rs")).unwrap();
    assert!(
        source.contains("display notification"),
        "the notification is osascript's"
    );
}

/// postinstall's `load_agent`, run as written against a stand-in `launchctl` whose `bootstrap`
/// fails `fails` times with launchd's "5: Input/output error" (the race after a bootout) and
/// whose `print` says whether the job is `loaded`: (exit status, what it said, the calls).
fn postinstall_load_agent(fails: u32, loaded: bool) -> (bool, String, String) {
    let script =
        std::fs::read_to_string(project_root().join("packaging/scripts/postinstall")).unwrap();
    let start = script
        .find("load_agent() {")
        .expect("postinstall has load_agent");
    let end = start + script[start..].find("\n}\n").unwrap() + 3;
    let dir = tempfile::tempdir().unwrap();
    let launchctl = dir.path().join("launchctl");
    std::fs::write(
        &launchctl,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{calls}'\ncase \"$1\" in\n  bootstrap)\n    n=$(($(cat '{count}' 2>/dev/null || echo 0) + 1)); echo $n > '{count}'\n    if [ $n -le {fails} ]; then echo 'Bootstrap failed: 5: Input/output error' >&2; exit 5; fi ;;\n  print) [ {loaded} = true ] ;;\nesac\n",
            calls = dir.path().join("calls").display(),
            count = dir.path().join("count").display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &launchctl,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "label=org.arq-lockdown agent=/Library/LaunchAgents/org.arq-lockdown.plist launchctl='{}' attempts=5 retry_delay=0\n{}\nload_agent 501",
            launchctl.display(),
            &script[start..end]
        ))
        .output()
        .unwrap();
    let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap_or_default();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        calls,
    )
}

#[rustfmt::skip]
#[test]
fn postinstall_retries_the_bootstrap_and_kickstarts_a_job_still_loaded() {
    let bootstrap = "bootstrap gui/501 /Library/LaunchAgents/org.arq-lockdown.plist\n";
    let (ok, said, calls) = postinstall_load_agent(0, false);
    assert!(ok && said.contains("loaded org.arq-lockdown into gui/501 (attempt 1 of 5)"), "{said}");
    assert_eq!(calls, format!("bootout gui/501/org.arq-lockdown\n{bootstrap}"));
    // The race: two failures, then it loads.
    let (ok, said, calls) = postinstall_load_agent(2, false);
    assert!(ok && said.contains("(attempt 3 of 5)"), "{said}");
    assert_eq!(calls.matches("bootstrap ").count(), 3, "{calls}");
    // An upgrade whose bootout did not take: still loaded, so restarted on the new binary.
    let (ok, said, calls) = postinstall_load_agent(99, true);
    assert!(ok && said.contains("restarted it on the new binary (kickstart -k)"), "{said}");
    assert!(calls.ends_with("print gui/501/org.arq-lockdown\nkickstart -k gui/501/org.arq-lockdown\n"), "{calls}");
    assert_eq!(calls.matches("bootstrap ").count(), 5, "{calls}");
    // Neither: said plainly, with launchd's reason.
    let (ok, said, _) = postinstall_load_agent(99, false);
    assert!(!ok && said.contains("could not load org.arq-lockdown into gui/501 after 5 attempts (Bootstrap failed: 5: Input/output error); it runs at the next login"), "{said}");
}
