//! `audit --html` and `--history` in a real browser. A moto fleet with a different number of
//! computers in each state (seeded straight into IAM and S3; one named by a hostile computerinfo)
//! and a history of earlier runs with junk among them; two audits record it, the second writes the
//! page; one headless Chromium launch reads the DOM after the page's script ran and takes a
//! screenshot, kept as `target/audit-page.png` beside the page (`target/audit-page.html`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use arq_lockdown::audit::decide::ComputerState;
use serde_json::{Value, json};

use crate::support::*;

const FLEET: &str = "audit-page.example";

/// A name a Mac could give itself in its computerinfo: markup, a script, an attribute breakout.
const HOSTILE: &str = r#"<script>document.title='pwned'</script><img src=x onerror="document.title='pwned'">" onclick="x"#;
/// The same as text, as a browser serializes it.
const HOSTILE_AS_TEXT: &str = r#"&lt;script&gt;document.title='pwned'&lt;/script&gt;&lt;img src=x onerror="document.title='pwned'"&gt;" onclick="x"#;

/// A computerinfo as Arq writes it (an XML plist).
fn computerinfo(name: &str) -> String {
    let mut dict = plist::Dictionary::new();
    dict.insert("computerName".into(), name.into());
    dict.insert("userName".into(), "someone".into());
    let mut bytes = Vec::new();
    plist::Value::Dictionary(dict)
        .to_writer_xml(&mut bytes)
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

/// The compact policy `arq-lockdown policy` builds for `uuid`.
fn policy_for(uuid: &str) -> String {
    let output = run(arq_lockdown().args([
        "policy",
        "--bucket",
        FLEET,
        "--computer-uuid",
        uuid,
        "--compact",
    ]));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A computer in `state` (with data unless an orphan), named `name`, its user recording `main`
/// as the key its lockdown replaced.
fn computer(state: &str, name: &str, main: &str) -> Value {
    // The hostile one first among its state's (by UUID), so that the verdict's reason names it.
    let uuid = match name == HOSTILE {
        true => format!("00000000{}", &fresh_uuid()[8..]),
        false => fresh_uuid(),
    };
    let key = |created: u32, used: Option<u32>| json!({"created_days_ago": created, "last_used_days_ago": used});
    let (policy, keys) = match state {
        "policy-drift" => (policy_for(&fresh_uuid()), json!([key(3, Some(1))])),
        "extra-keys" => (policy_for(&uuid), json!([key(3, Some(1)), key(2, None)])),
        "key-unused" => (policy_for(&uuid), json!([key(40, None)])),
        _ => (policy_for(&uuid), json!([key(3, Some(1))])),
    };
    let user = json!({
        "tags": {
            "arq-lockdown:computer-uuid": uuid,
            "arq-lockdown:bucket": FLEET,
            "arq-lockdown:computer-name": name,
            "arq-lockdown:policy-options": "default",
            "arq-lockdown:replaced-key": main,
        },
        "policies": {"arq-lockdown": policy},
        "keys": keys,
    });
    json!({
        "uuid": uuid,
        "computerinfo": (state != "orphan-user").then(|| computerinfo(name)),
        "data": state != "orphan-user",
        "user": (state != "not-locked-down").then_some(user),
    })
}

/// A history line as `--history` writes it, `days_ago` days before `now`; the main key `gone`
/// (IAM knows it no more) or not.
fn earlier_run(
    now: i64,
    days_ago: i64,
    not_locked_down: u32,
    locked_down: u32,
    ready: bool,
    gone: bool,
) -> String {
    let at = jiff::Timestamp::from_second(now - days_ago * 86_400).unwrap();
    json!({
        "time": at.to_string(),
        "computers": not_locked_down + locked_down,
        "states": {"not-locked-down": not_locked_down, "locked-down": locked_down},
        "ready_to_retire_main_keys": ready,
        "main_keys": {(if gone { "not-found" } else { "used" }): 1},
    })
    .to_string()
}

/// Where the page and its screenshot are kept: `target/`.
fn kept(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join(name)
}

/// Headless Chromium, kept off the network: the page's DOM after its script ran, a screenshot of
/// it to `screenshot`, and what the browser logged (Content-Security-Policy violations among it).
fn chromium(page: &Path, screenshot: &Path, window: &str) -> (String, String) {
    let browser = ["chromium-headless-shell", "chromium"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .expect("no chromium-headless-shell nor chromium: run scripts/setup");
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={window}"))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    // A bound, not a measurement: a browser that hangs fails the test instead of CI.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("chromium did not finish in 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&stderr).into_owned();
    assert!(status.success(), "chromium failed: {log}");
    (String::from_utf8(stdout).unwrap(), log)
}

/// The text of the element that opens with `start`, up to `end`.
fn between<'a>(dom: &'a str, start: &str, end: &str) -> &'a str {
    let from = dom
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in the page"));
    let rest = &dom[from + start.len()..];
    &rest[..rest
        .find(end)
        .unwrap_or_else(|| panic!("no {end} after {start}"))]
}

#[test]
fn the_page_shows_the_verdict_each_states_count_and_the_rows_in_a_real_browser() {
    let seeded = seed_fleet(&json!({"bucket": FLEET, "admins": ["audit-page-main"]}));
    let main = seeded["admins"]["audit-page-main"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A different number in each state, so that a count shown under the wrong state shows.
    #[rustfmt::skip]
    let fleet: BTreeMap<&str, usize> = BTreeMap::from([
        ("orphan-user", 1), ("not-locked-down", 2), ("policy-drift", 3),
        ("extra-keys", 4), ("key-unused", 5), ("locked-down", 6),
    ]);
    let mut computers = Vec::new();
    for (state, count) in &fleet {
        for i in 0..*count {
            let name = match (*state, i) {
                ("not-locked-down", 0) => HOSTILE.to_owned(),
                _ => format!("{state} Mac {i}"),
            };
            computers.push(computer(state, &name, &main));
        }
    }
    seed_fleet(&json!({"bucket": FLEET, "computers": computers}));

    // Four earlier days, a line that is not JSON and one whose time is markup.
    let history = tempfile::tempdir().unwrap();
    let now = jiff::Timestamp::now().as_second();
    let earlier = [
        earlier_run(now, 4, 21, 0, false, false),
        "{not json".to_owned(),
        earlier_run(now, 3, 14, 7, false, false),
        earlier_run(now, 2, 7, 14, false, false).replace("\"time\":\"", "\"time\":\"<script>"),
        earlier_run(now, 2, 7, 14, true, false),
        earlier_run(now, 1, 0, 21, true, true),
    ];
    let history_file = history.path().join(format!("audit-{FLEET}.jsonl"));
    std::fs::write(&history_file, earlier.join("\n") + "\n").unwrap();

    let audit = |args: &[&str]| {
        run(arq_lockdown_on_moto()
            .env("AWS_ACCESS_KEY_ID", &moto().admin.id)
            .env("AWS_SECRET_ACCESS_KEY", &moto().admin.secret)
            .args(["audit", "--bucket", FLEET, "--history"])
            .arg(history.path())
            .args(args))
    };
    let first = audit(&[]);
    assert_exit(&first, ExitCode::NeedsAction, &[]);
    assert_eq!(
        stderr(&first),
        format!(
            "arq-lockdown: warning: skipped 2 unreadable line(s) of {}; this run writes it without them\n",
            history_file.display()
        )
    );
    let page = kept("audit-page.html");
    let second = audit(&["--json", "--html", page.to_str().unwrap()]);
    assert_exit(&second, ExitCode::NeedsAction, &[]);
    assert_eq!(stderr(&second), "", "the junk is gone");
    let report: Value =
        serde_json::from_slice(&second.stdout).expect("--json still prints the report");
    assert_eq!(report["summary"]["computers"], 21);
    assert_eq!(
        std::fs::read_to_string(&history_file)
            .unwrap()
            .lines()
            .count(),
        6
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert_no_secret_in("the page", &html, &[]);

    let screenshot = kept("audit-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let (dom, log) = chromium(&page, &screenshot, "1280,2200");
    assert!(
        !log.contains("Content Security Policy"),
        "the browser refused something: {log}"
    );
    assert!(
        std::fs::read(&screenshot).unwrap().starts_with(b"\x89PNG"),
        "no screenshot"
    );

    // The verdict first, in words, with its reasons.
    assert_eq!(
        between(&dom, "<h2 id=\"verdict-headline\">", "</h2>"),
        "The main keys may not be retired yet"
    );
    let reasons = between(&dom, "<ul id=\"reasons\">", "</ul>");
    assert!(
        reasons.contains("and 1 more not locked down: run arq-lockdown apply there first"),
        "{reasons}"
    );
    assert!(
        dom.find("id=\"verdict\"") < dom.find("id=\"states\""),
        "the verdict comes first"
    );
    // Each state's count, every state named (those this fleet has none of at 0), and its rows.
    for state in ComputerState::ALL {
        let name = state.as_str();
        let expected = fleet.get(name).copied().unwrap_or(0);
        let legend = between(&dom, &format!("id=\"state-{name}\""), "</li>");
        assert!(
            legend.contains(&format!(
                "<span class=\"count\">{expected}</span> <span class=\"name\">{name}</span>"
            )),
            "{name}: {legend}"
        );
        let rows = dom.matches(&format!("<tr data-state=\"{name}\">")).count();
        let listed = if state == ComputerState::LockedDown {
            0
        } else {
            expected
        };
        assert_eq!(rows, listed, "{name}'s rows");
        assert!(
            dom.contains(&format!("<polyline class=\"line\" data-state=\"{name}\"")),
            "{name}'s line"
        );
    }
    // The page's script ran (the policy admitted it): controls shown, headers sortable.
    assert_eq!(
        between(&dom, "<output id=\"shown\">", "</output>"),
        "15 of 15 shown"
    );
    assert!(
        dom.contains("<div id=\"controls\">"),
        "the controls are shown"
    );
    assert!(dom.contains("<th><button type=\"button\">Name</button></th>"));
    // The hostile name is text, in its row and in the verdict's reason; nothing of it ran.
    assert!(
        dom.contains(&format!("<td class=\"name\">{HOSTILE_AS_TEXT}</td>")),
        "the hostile name is not shown as text"
    );
    assert!(reasons.contains(HOSTILE_AS_TEXT), "{reasons}");
    assert_eq!(
        dom.matches("<script").count(),
        1,
        "only the page's own script"
    );
    assert!(!dom.contains("<img"), "the hostile name made an element");
    assert!(between(&dom, "<title>", "</title>").starts_with("Fleet audit of audit-page.example"));
    // Who made it, when, with what; the history: six runs, the day the verdict said yes.
    assert!(
        between(&dom, "<dd id=\"generated-by\"><code>", "</code>").ends_with(":user/fleet-admin")
    );
    assert_eq!(
        between(&dom, "<dd id=\"version\">", "</dd>"),
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(
        between(&dom, "<table id=\"history-table\">", "</table>")
            .matches("<tr>")
            .count(),
        7
    );
    // The first day the verdict said yes, the first day the main key was gone.
    for (mark, days_ago) in [("ready", 2), ("retired", 1)] {
        let day = jiff::Timestamp::from_second(now - days_ago * 86_400).unwrap();
        let label = between(
            &dom,
            &format!("<g class=\"mark\" id=\"mark-{mark}\">"),
            "</g>",
        );
        assert!(label.contains(&day.to_string()[..10]), "{mark}: {label}");
    }
}

#[test]
fn a_page_or_history_path_that_cannot_be_used_is_one_line_before_any_aws_call() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let d = dir.path().display();
    #[rustfmt::skip]
    let cases: Vec<(&str, PathBuf, String)> = vec![
        ("--html", dir.path().join("missing/page.html"), format!("--html {d}/missing/page.html is in no folder that exists: create the folder, or fix the path")),
        ("--html", dir.path().to_owned(), format!("--html {d} is a folder: name the page's file")),
        ("--history", dir.path().join("missing"), format!("cannot use the audit history {d}/missing/audit-{FLEET}.jsonl: --history names no folder; create it (mkdir -p) or fix the path")),
        ("--history", file.clone(), format!("cannot use the audit history {d}/a-file/audit-{FLEET}.jsonl: --history names no folder; create it (mkdir -p) or fix the path")),
    ];
    let before = snapshot(dir.path());
    for (flag, path, message) in cases {
        // An endpoint nothing answers on: a check made after an AWS call would exit 6.
        let output = run(arq_lockdown()
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE00")
            .env("AWS_SECRET_ACCESS_KEY", "not-a-secret")
            .args(["audit", "--bucket", FLEET, flag])
            .arg(&path));
        assert_eq!(
            exit_code(&output),
            ExitCode::Usage,
            "{flag} {path:?}: {}",
            stderr(&output)
        );
        assert_eq!(stderr(&output), format!("arq-lockdown: error: {message}\n"));
        assert!(output.stdout.is_empty());
    }
    assert_eq!(snapshot(dir.path()), before, "nothing was written");
}
