//! The documentation tells the truth about the code, wherever its text lives:
//! - README.md: its exit-code table lists exactly the crate's exit codes, its synopsis names
//!   exactly each subcommand's flags;
//! - ARCHITECTURE.md: its module map names every source file and nothing that is gone, its list of
//!   macOS-only code is the code with `cfg(target_os = "macos")`;
//! - docs/deploying.md: its FAQ names every IAM tag we write;
//! - docs/policy.md: its admin policy names every admin action;
//! - docs/deploying.md and docs/apply.md: they name every state `status` and the extension
//!   attribute can say;
//! - every page: each command line it shows parses, each page but the README opens with whom it is
//!   for, the README stays short, and every relative link reaches a page and heading that exist.

use std::collections::BTreeSet;

use crate::support::*;

/// The text of one page, by its path from the project's root.
fn page(path: &str) -> String {
    std::fs::read_to_string(project_root().join(path))
        .unwrap_or_else(|error| panic!("cannot read {path}: {error}"))
}

/// Every documentation page: the README, ARCHITECTURE.md, bench/README.md and docs/*.md.
fn pages() -> Vec<String> {
    let mut pages: Vec<String> = ["README.md", "ARCHITECTURE.md", "bench/README.md"]
        .map(str::to_owned)
        .into();
    for entry in std::fs::read_dir(project_root().join("docs"))
        .unwrap()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            pages.push(format!("docs/{name}"));
        }
    }
    pages.sort();
    pages
}

/// The page's text from just after `start` to the next `end`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let (_, rest) = text
        .split_once(start)
        .unwrap_or_else(|| panic!("the page has no {start:?}"));
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
fn the_module_map_in_architecture_md_is_the_source_tree() {
    let architecture = page("ARCHITECTURE.md");
    let block = between(&architecture, "## Module map\n\n```\n", "```");
    let mut named = BTreeSet::new();
    for line in block.lines() {
        let Some(entry) = line.strip_prefix("  ").filter(|e| !e.starts_with(' ')) else {
            // A top-level entry: it must exist.
            let top = line.split_whitespace().next().unwrap_or_default();
            assert!(
                top.is_empty() || project_root().join(top).exists(),
                "ARCHITECTURE.md names {top}, which does not exist"
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
        "ARCHITECTURE.md's module map and src/ differ (left: named, right: present)"
    );
}

#[test]
fn architecture_md_lists_exactly_the_macos_only_code() {
    let architecture = page("ARCHITECTURE.md");
    let sentence = between(&architecture, "The macOS-only code is ", "(a test");
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
fn the_readmes_exit_code_table_lists_every_exit_code() {
    let readme = page("README.md");
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
fn the_deploying_guide_names_every_state_of_status_and_the_extension_attribute() {
    let states = status_states();
    assert!(states.contains(&"policy-outdated".to_owned()), "{states:?}");
    let deploying = page("docs/deploying.md");
    let json = between(&deploying, "`arq-lockdown status --json`: `state` (", ")");
    let listed: BTreeSet<String> = (json.split('`').skip(1).step_by(2))
        .filter(|word| !word.starts_with("--"))
        .map(str::to_owned)
        .collect();
    let known: BTreeSet<String> = states.iter().cloned().collect();
    assert_eq!(listed, known, "status --json's states in docs/deploying.md");
    let ea = between(
        &deploying,
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
fn the_deploying_faq_names_every_iam_tag_we_write() {
    let iam = std::fs::read_to_string(project_root().join("src/iam_names.rs")).unwrap();
    let tags: BTreeSet<String> = iam
        .split('"')
        .filter(|text| text.starts_with("arq-lockdown:") && !text.contains(' '))
        // The retired-key tag's id, as the FAQ writes it.
        .map(|tag| tag.replace("{access_key_id}", "<KEY ID>"))
        .collect();
    assert!(tags.len() >= 11, "{tags:?}");
    let deploying = page("docs/deploying.md");
    let faq = between(&deploying, "**What does IAM show for each Mac?**", "\n\n");
    let missing: Vec<&String> = tags
        .iter()
        .filter(|tag| !faq.contains(&format!("`{tag}`")))
        .collect();
    assert!(missing.is_empty(), "the FAQ leaves out {missing:?}");
}

#[test]
fn the_policy_pages_admin_policy_names_every_admin_action() {
    let policy = page("docs/policy.md");
    let sentence = between(&policy, "The admin policy allows ", "It cannot remove");
    let missing: Vec<&str> = arq_lockdown::iam_names::ADMIN_ACTIONS
        .iter()
        .filter(|action| {
            !sentence.contains(&format!("`{}`", action.trim_start_matches("iam:")))
                && !sentence.contains(&format!("`{action}`"))
        })
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "docs/policy.md's admin policy leaves out {missing:?}"
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
fn the_readmes_synopsis_names_exactly_each_subcommands_flags() {
    let readme = page("README.md");
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

/// The concrete `arq-lockdown` command lines in `text`'s code blocks (`sudo` and the install path
/// dropped, comments and redirections cut off); the synopsis, with its `[…]`, has its own test.
fn command_lines(text: &str) -> Vec<&str> {
    text.split("```")
        .skip(1)
        .step_by(2)
        .flat_map(str::lines)
        .map(str::trim)
        .map(|line| line.strip_prefix("sudo ").unwrap_or(line))
        .map(|line| line.strip_prefix("/usr/local/bin/").unwrap_or(line))
        .filter(|line| line.starts_with("arq-lockdown ") && !line.contains('['))
        .map(|line| line.split(['>', '#']).next().unwrap())
        .collect()
}

#[test]
fn every_command_line_on_every_page_parses() {
    use clap::Parser;
    let mut checked = 0;
    for path in pages() {
        for line in command_lines(&page(&path)) {
            let words = line.split_whitespace().map(|word| match word {
                "BUCKET" | "B" => BUCKET.to_owned(),
                "U" | "OLD" => THIS_COMPUTER.to_owned(),
                word => word.replace("ACCOUNT", "123456789012"),
            });
            if let Err(error) = arq_lockdown::cli::Cli::try_parse_from(words) {
                panic!("{path}'s `{line}` does not parse:\n{error}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} command lines found");
}

#[test]
fn every_page_opens_with_its_reader_and_the_readme_stays_short() {
    for path in pages().into_iter().filter(|path| path != "README.md") {
        let text = page(&path);
        let mut paragraphs = text.split("\n\n").map(str::trim);
        let title = paragraphs.next().unwrap_or_default();
        assert!(
            title.starts_with("# ") && !title.contains('\n'),
            "{path} opens with {title:?}, not a title"
        );
        let opening = paragraphs.next().unwrap_or_default();
        let opening = opening.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            opening.starts_with("**For ") && opening.contains(" It answers: "),
            "{path}: the paragraph under the title must say whom it is for (\"**For …**\") and what it answers (\"It answers: …\")"
        );
    }
    let lines = page("README.md").lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines: move text to docs/"
    );
}

/// The anchors GitHub makes for a page's headings (lower case, punctuation dropped, spaces as
/// hyphens, a repeated one numbered), code blocks left out.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        let Some(heading) = line.strip_prefix('#').filter(|_| !in_code) else {
            continue;
        };
        let slug: String = heading
            .trim_start_matches('#')
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut anchor = slug.clone();
        let mut n = 0;
        while !anchors.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{slug}-{n}");
        }
    }
    anchors
}

/// The targets of the Markdown links in `text` (`[…](target)`), code blocks left out.
fn link_targets(text: &str) -> Vec<&str> {
    let mut targets = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if in_code {
            continue;
        }
        for (_, rest) in line
            .match_indices("](")
            .map(|(at, _)| line.split_at(at + 2))
        {
            if let Some(end) = rest.find(')') {
                targets.push(&rest[..end]);
            }
        }
    }
    targets
}

#[test]
fn every_relative_link_between_the_pages_resolves() {
    let mut checked = 0;
    for path in pages() {
        let text = page(&path);
        let folder = std::path::Path::new(&path).parent().unwrap();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let linked = if file.is_empty() {
                path.clone()
            } else {
                folder.join(file).to_string_lossy().into_owned()
            };
            let on_disk = project_root().join(&linked);
            assert!(
                on_disk.exists(),
                "{path} links to {target}: {linked} does not exist"
            );
            if !anchor.is_empty() {
                let headings = anchors(&std::fs::read_to_string(&on_disk).unwrap());
                assert!(
                    headings.contains(anchor),
                    "{path} links to {target}: {linked} has no heading #{anchor}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} links found");
}
