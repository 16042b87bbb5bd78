//! The README tells the truth about the code: its source tree names every source file and nothing
//! that is gone, its list of macOS-only code is the code with `cfg(target_os = "macos")`, and its
//! exit-code table lists exactly the crate's exit codes, its FAQ names every IAM tag we write, its
//! synopsis names exactly each subcommand's flags, every command line it shows parses, and it
//! names every state `status` and the extension attribute can say.

use std::collections::BTreeSet;

use crate::support::*;

fn readme() -> String {
    std::fs::read_to_string(project_root().join("README.md")).unwrap()
}

/// The README's text from just after `start` to the next `end`.
fn between<'a>(readme: &'a str, start: &str, end: &str) -> &'a str {
    let (_, rest) = readme
        .split_once(start)
        .unwrap_or_else(|| panic!("the README has no {start:?}"));
    rest.split(end).next().unwrap()
}

/// Every `.rs` file under `dir`, relative to `src/`.
fn sources(dir: &std::path::Path, into: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(project_root().join("src")).unwrap();
            into.insert(relative.to_string_lossy().into_owned());
        }
    }
}

#[test]
fn the_source_tree_in_the_readme_is_the_source_tree() {
    let readme = readme();
    let block = between(&readme, "## Development\n\n```\n", "```");
    let mut named = BTreeSet::new();
    for line in block.lines() {
        let Some(entry) = line.strip_prefix("  ").filter(|e| !e.starts_with(' ')) else {
            // A top-level entry: it must exist.
            let top = line.split_whitespace().next().unwrap_or_default();
            assert!(
                top.is_empty() || project_root().join(top).exists(),
                "the README names {top}, which does not exist"
            );
            continue;
        };
        let (name, description) = entry.split_once(' ').unwrap_or((entry, ""));
        match name.strip_suffix('/') {
            Some(folder) => named.extend(
                description
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
                    .filter(|word| word.ends_with(".rs"))
                    .map(|file| format!("{folder}/{file}")),
            ),
            None => {
                named.insert(name.to_owned());
            }
        }
    }
    let mut present = BTreeSet::new();
    sources(&project_root().join("src"), &mut present);
    assert_eq!(
        named, present,
        "the README's tree and src/ differ (left: named, right: present)"
    );
}

#[test]
fn the_readme_lists_exactly_the_macos_only_code() {
    let readme = readme();
    let sentence = between(&readme, "The macOS-only code is ", "(a test");
    let listed: BTreeSet<String> = sentence
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| word.ends_with(".rs"))
        .map(str::to_owned)
        .collect();
    let mut present = BTreeSet::new();
    sources(&project_root().join("src"), &mut present);
    let with_cfg: BTreeSet<String> = present
        .into_iter()
        .filter(|file| {
            let text = std::fs::read_to_string(project_root().join("src").join(file)).unwrap();
            text.contains("cfg(target_os = \"macos\")") || file.ends_with("keychain.rs")
        })
        .collect();
    assert_eq!(listed, with_cfg);
}

#[test]
fn the_exit_code_table_lists_every_exit_code() {
    let readme = readme();
    let table = readme
        .split("### Exit codes")
        .nth(1)
        .expect("the README has an exit-code table");
    let listed: Vec<i32> = table
        .lines()
        .skip_while(|line| !line.starts_with("| code"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| line.split('|').nth(1).unwrap().trim().parse().unwrap())
        .collect();
    let codes: Vec<i32> = ExitCode::ALL.iter().map(|code| *code as i32).collect();
    assert_eq!(listed, codes);
}

/// The kebab-case words of `status`'s states, read from `enum State` in its source.
fn status_states() -> Vec<String> {
    let source = std::fs::read_to_string(project_root().join("src/commands/status.rs")).unwrap();
    let body = between(&source, "enum State {", "\n}");
    let kebab = |name: &str| {
        let mut word = String::new();
        for c in name.chars() {
            if c.is_ascii_uppercase() && !word.is_empty() {
                word.push('-');
            }
            word.push(c.to_ascii_lowercase());
        }
        word
    };
    body.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("///") && line.ends_with(','))
        .map(|line| kebab(line.trim_end_matches(',')))
        .collect()
}

#[test]
fn the_readme_names_every_state_of_status_and_the_extension_attribute() {
    let states = status_states();
    assert!(states.contains(&"policy-outdated".to_owned()), "{states:?}");
    let readme = readme();
    let json = between(&readme, "`arq-lockdown status --json`: `state` (", ")");
    let listed: BTreeSet<String> = (json.split('`').skip(1).step_by(2))
        .filter(|word| !word.starts_with("--"))
        .map(str::to_owned)
        .collect();
    let known: BTreeSet<String> = states.iter().cloned().collect();
    assert_eq!(listed, known, "status --json's states in the README");
    let ea = between(
        &readme,
        "`arq-lockdown status --jamf-ea` prints",
        "With nobody logged in",
    );
    let missing: Vec<&String> = (states.iter())
        .filter(|s| *s != "key-refused")
        .filter(|s| {
            !["`{s}`", "`{s} ", "<result>{s} "]
                .iter()
                .any(|shown| ea.contains(&shown.replace("{s}", s)))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the extension attribute's states leave out {missing:?}"
    );
}

#[test]
fn the_faq_names_every_iam_tag_we_write() {
    let iam = std::fs::read_to_string(project_root().join("src/iam.rs")).unwrap();
    let tags: BTreeSet<&str> = iam
        .split('"')
        .filter(|text| text.starts_with("arq-lockdown:") && !text.contains(' '))
        .collect();
    assert!(tags.len() >= 8, "{tags:?}");
    let readme = readme();
    let faq = between(&readme, "**What does IAM show for each Mac?**", "\n\n");
    let missing: Vec<&&str> = tags
        .iter()
        .filter(|tag| !faq.contains(&format!("`{tag}`")))
        .collect();
    assert!(missing.is_empty(), "the FAQ leaves out {missing:?}");
}

#[test]
fn the_admin_policy_text_names_every_admin_action() {
    let readme = readme();
    let sentence = between(&readme, "The admin policy allows ", "It cannot remove");
    let missing: Vec<&str> = arq_lockdown::iam::ADMIN_ACTIONS
        .iter()
        .filter(|action| {
            !sentence.contains(&format!("`{}`", action.trim_start_matches("iam:")))
                && !sentence.contains(&format!("`{action}`"))
        })
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "the README's admin policy leaves out {missing:?}"
    );
}

/// The long flags of `arq-lockdown <subcommand>` as clap defines them (hidden ones left out).
fn flags_of(subcommand: &str) -> BTreeSet<String> {
    use clap::CommandFactory;
    let cli = arq_lockdown::cli::Cli::command();
    let command = cli
        .find_subcommand(subcommand)
        .unwrap_or_else(|| panic!("the README names a subcommand `{subcommand}` that is not one"));
    command
        .get_arguments()
        .filter(|arg| !arg.is_hide_set())
        .filter_map(|arg| arg.get_long())
        .filter(|long| *long != "help")
        .map(|long| format!("--{long}"))
        .collect()
}

/// The `--flags` in `text`.
fn flags_in(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_commands_synopsis_names_exactly_each_subcommands_flags() {
    let readme = readme();
    let block = between(&readme, "## Commands\n\n```sh\n", "```");
    let mut synopsis: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        match line.strip_prefix("arq-lockdown ") {
            Some(rest) => {
                let (name, flags) = rest.split_once(' ').unwrap_or((rest, ""));
                synopsis.push((name.to_owned(), flags.to_owned()));
            }
            None => synopsis.last_mut().expect("a first line").1.push_str(line),
        }
    }
    let named: Vec<&str> = synopsis.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        named,
        [
            "apply",
            "status",
            "revoke",
            "serve",
            "audit",
            "pin",
            "retire-main-keys",
            "policy",
            "verify"
        ]
    );
    for (name, text) in &synopsis {
        assert_eq!(
            flags_in(text),
            flags_of(name),
            "the README's synopsis of `{name}`"
        );
    }
}

#[test]
fn every_command_line_in_the_readme_parses() {
    use clap::Parser;
    let readme = readme();
    let mut checked = 0;
    for block in readme.split("```").skip(1).step_by(2) {
        for line in block.lines().map(str::trim) {
            let line = line.strip_prefix("sudo ").unwrap_or(line);
            let line = line.strip_prefix("/usr/local/bin/").unwrap_or(line);
            // Concrete commands only: the synopsis has its own test.
            if !line.starts_with("arq-lockdown ") || line.contains('[') {
                continue;
            }
            let line = line.split(['>', '#']).next().unwrap();
            let words = line.split_whitespace().map(|word| match word {
                "BUCKET" | "B" => BUCKET.to_owned(),
                "U" | "OLD" => THIS_COMPUTER.to_owned(),
                word => word.replace("ACCOUNT", "123456789012"),
            });
            if let Err(error) = arq_lockdown::cli::Cli::try_parse_from(words) {
                panic!("the README's `{line}` does not parse:\n{error}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} command lines found");
}
