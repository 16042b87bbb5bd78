//! Asking Arq to quit (`--quit-arq`, the profile's QuitArq): what did not quit when asked is never
//! forced without the admin's consent (`--terminate-arq`, TerminateArq), and never while Arq Agent
//! looks busy. Here (Linux) the request itself is a SIGTERM, so the stand-in "Arq Agent" counts the
//! SIGTERMs it gets: the first is the request, any other is the force. (On a Mac the request is an
//! Apple Event; what osascript answers and what follows is `arq_app`'s table tests and the macOS
//! job's scripts/macos-e2e.)

use std::process::Child;

use crate::support::*;

/// A stand-in "Arq Agent" (a Python script of that name, so the process has that name) that does
/// not quit on the first SIGTERM — the request — and does on the second; `busy` ones also burn CPU
/// as a backup would. It writes "term" to `terms` at each SIGTERM.
fn start_agent(dir: &std::path::Path, busy: bool) -> Child {
    let python = project_root().join(".tools/venv/bin/python");
    let program = dir.join("Arq Agent");
    let terms = dir.join("terms");
    std::fs::write(
        &program,
        format!(
            "#!{}\nimport signal, sys\ncount = 0\ndef term(*_):\n    global count\n    count += 1\n    open({:?}, 'a').write('term\\n')\n    if count >= 2:\n        sys.exit(0)\nsignal.signal(signal.SIGTERM, term)\nwhile True:\n    {}\n",
            python.display(),
            terms.display().to_string(),
            if busy { "pass" } else { "signal.pause()" }
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let _ = std::fs::remove_file(&terms);
    let child = std::process::Command::new(&program).spawn().unwrap();
    // Running, with its handler installed, once its name shows and it has started to wait.
    for _ in 0..100 {
        if arq_lockdown::arq_app::running()
            .unwrap()
            .iter()
            .any(|p| p.name == "Arq Agent")
        {
            std::thread::sleep(std::time::Duration::from_millis(300));
            return child;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    end(child);
    panic!("the stand-in Arq Agent did not start");
}

fn terms(dir: &std::path::Path) -> usize {
    std::fs::read_to_string(dir.join("terms")).map_or(0, |t| t.lines().count())
}

fn end(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn what_does_not_quit_when_asked_is_forced_only_with_consent_and_never_when_busy() {
    let _guard = arq_may_run();
    let dir = tempfile::tempdir().unwrap();
    let mac = Mac::new();
    let before = mac.key();
    let quit = ["--quit-arq", "--wait", "1"];

    // Arq quits when asked; Arq Agent does not, and without consent nothing forces it.
    let arq_program = dir.path().join("Arq");
    std::fs::copy("/bin/sleep", &arq_program).unwrap();
    let mut arq = std::process::Command::new(&arq_program)
        .arg("300")
        .spawn()
        .unwrap();
    let agent = start_agent(dir.path(), false);
    let refused = mac.run_apply(&quit);
    assert_exit(
        &refused,
        ExitCode::ArqRunning,
        &["did not quit within 1 s", "TerminateArq"],
    );
    assert_eq!(terms(dir.path()), 1, "only asked, never forced");
    assert!(arq.wait().unwrap().code().is_none(), "Arq quit when asked");
    assert_eq!(
        mac.key(),
        before,
        "\"Arq S3\" changed although Arq Agent runs"
    );
    end(agent);

    // With consent, but the agent is busy (a backup): it is left alone.
    let busy = start_agent(dir.path(), true);
    let output = mac.run_apply(&[&quit[..], &["--terminate-arq"]].concat());
    assert_exit(&output, ExitCode::ArqRunning, &["Arq Agent is busy"]);
    assert_eq!(terms(dir.path()), 1, "a busy agent was forced");
    assert_eq!(mac.key(), before);
    end(busy);

    // With consent and an idle agent: forced, and the lockdown goes on.
    let mut idle = start_agent(dir.path(), false);
    let output = mac.run_apply(&[&quit[..], &["--terminate-arq"]].concat());
    assert_exit(&output, ExitCode::Success, &[]);
    assert_eq!(terms(dir.path()), 2, "asked, then forced");
    assert!(idle.wait().unwrap().success());
    assert_ne!(mac.key(), before);
}
