//! `audit --html FILE`: the fleet at a glance, as one page an admin opens from disk or publishes.
//!
//! Owns the page: the verdict on the main keys first (in words, why, what next), the counts per
//! state (a bar and a legend naming every state), the rollout over time from `--history` (an
//! inline SVG chart and its table), the computers needing action (a table a few lines of script
//! make sortable and filterable; without the script it is the same table, static), the main keys,
//! and who made the page when. Rendered from the [`Report`] alone, states from [`ComputerState::ALL`], so
//! a new state shows with no change here.
//!
//! Self-contained: no request leaves the page. Its Content-Security-Policy allows nothing to be
//! loaded and only its own style and script (by hash) to run, so even a name that escaped
//! escaping could not run; every value goes through maud, which escapes it.

use base64::Engine;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use sha2::{Digest, Sha256};

use super::Report;
use super::decide::ComputerState;
use super::history::Entry;

const STYLE: &str = include_str!("html/page.css");
const SCRIPT: &str = include_str!("html/page.js");

/// Who made the page and with what, for its header.
pub struct Provenance<'a> {
    /// The caller ARN of the admin credentials (or why it is unknown).
    pub generated_by: &'a str,
    pub version: &'a str,
}

/// The whole page for `report`, with the rollout's `history` (oldest first; may be empty).
pub fn page(report: &Report, provenance: &Provenance, history: &[Entry]) -> String {
    let style = format!("{STYLE}{}", state_rules());
    let policy = format!(
        "default-src 'none'; style-src '{}'; script-src '{}'; base-uri 'none'; form-action 'none'",
        csp_hash(&style),
        csp_hash(SCRIPT)
    );
    let bucket = report.bucket.as_str();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="Content-Security-Policy" content=(policy);
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="generator" content={ "arq-lockdown " (provenance.version) };
                title { "Fleet audit of " (bucket) " — arq-lockdown" }
                style { (PreEscaped(&style)) }
            }
            body {
                header {
                    h1 { "Fleet audit of " span #bucket { (bucket) } }
                    (provenance_list(report, provenance))
                }
                main {
                    (verdict(report))
                    (states(report))
                    (chart(history))
                    (computers(report))
                    (main_keys(report))
                }
                footer {
                    p { "Made by arq-lockdown " (provenance.version) " (" code { "audit --html" } "). This page names the fleet's computers and users: share it only with people who may see them. It holds no secret." }
                }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
    .into_string()
}

/// `'sha256-…'` of an inline element's text, as a Content-Security-Policy source.
fn csp_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// A colour for each state: green for done, red for not started, the others from a palette by
/// their place in [`ComputerState::ALL`] (a new state gets one without a change here).
fn colour(state: ComputerState) -> &'static str {
    const OTHERS: [&str; 8] = [
        "#9a6700", "#8250df", "#0969da", "#bc4c00", "#bf3989", "#1b7c83", "#57606a", "#6f4e00",
    ];
    match state {
        ComputerState::LockedDown => "#1a7f37",
        ComputerState::NotLockedDown => "#cf222e",
        _ => OTHERS[place_among_others(state) % OTHERS.len()],
    }
}

/// A line pattern for each state in the chart, so that lines differ by more than colour.
fn dashes(state: ComputerState) -> &'static str {
    const OTHERS: [&str; 8] = [
        "2 3",
        "7 3 2 3",
        "1 5",
        "12 4",
        "4 2 1 2",
        "6 6",
        "3 1",
        "10 2 2 2 2 2",
    ];
    match state {
        ComputerState::LockedDown => "none",
        ComputerState::NotLockedDown => "9 4",
        _ => OTHERS[place_among_others(state) % OTHERS.len()],
    }
}

/// The place of `state` in [`ComputerState::ALL`] without locked-down and not-locked-down.
fn place_among_others(state: ComputerState) -> usize {
    ComputerState::ALL
        .iter()
        .filter(|s| !matches!(s, ComputerState::LockedDown | ComputerState::NotLockedDown))
        .take_while(|s| **s != state)
        .count()
}

/// Each state's colour for the table's state cells (state names are kebab-case words).
fn state_rules() -> String {
    ComputerState::ALL
        .iter()
        .map(|s| format!("td.st-{}{{border-left-color:{}}}\n", s.as_str(), colour(*s)))
        .collect()
}

fn count_of(report: &Report, state: ComputerState) -> u64 {
    report
        .summary
        .states
        .get(state.as_str())
        .and_then(|n| n.as_u64())
        .unwrap_or(0)
}

fn provenance_list(report: &Report, provenance: &Provenance) -> Markup {
    html! {
        dl #provenance {
            dt { "Generated" } dd #generated-at { time datetime=(report.generated_at) { (report.generated_at) } }
            dt { "By" } dd #generated-by { code { (provenance.generated_by) } }
            dt { "Bucket" } dd { code { (report.bucket) } }
            dt { "arq-lockdown" } dd #version { (provenance.version) }
            @if let Some(at) = &report.summary.credential_report_generated {
                dt { "IAM's credential report" } dd { "made " (at) " (key use lags by up to four hours)" }
            }
        }
    }
}

/// The verdict on the main keys, in words: yes, not yet, or done; why not; what to do next.
fn verdict(report: &Report) -> Markup {
    let retired = Entry::of(report).main_keys_retired();
    let (class, word, headline) = match (retired, report.ready_to_retire_main_keys) {
        (true, true) => ("retired", "Done", "The main keys are retired"),
        (true, false) => (
            "not-ready",
            "Not done",
            "The main keys are gone, but not everything was ready for it",
        ),
        (false, true) => ("ready", "Yes", "The main keys may be retired now"),
        (false, false) => (
            "not-ready",
            "Not yet",
            "The main keys may not be retired yet",
        ),
    };
    html! {
        section #verdict class=(class) {
            p .verdict-word { (word) }
            h2 #verdict-headline { (headline) }
            @if !report.not_ready_reasons.is_empty() {
                h3 { "Why not" }
                ul #reasons { @for reason in &report.not_ready_reasons { li { (reason) } } }
            }
            h3 { "What to do next" }
            ol #next-steps { @for step in next_steps(report, retired) { li { (step) } } }
        }
    }
}

/// What the admin does next, from the verdict and the computers needing action.
fn next_steps(report: &Report, retired: bool) -> Vec<Markup> {
    let needing = report.summary.computers - count_of(report, ComputerState::LockedDown) as usize;
    let table = (needing > 0).then(|| {
        html! { (needing) " computer(s) need action: the table below says what to do on each, the most urgent first." }
    });
    let mut steps = Vec::new();
    if retired && report.ready_to_retire_main_keys {
        steps.push(
            html! { "Nothing is left to do for the main keys: IAM knows none of them any more." },
        );
        steps.extend(table);
        steps.push(html! { "Keep running this audit daily: a new Mac shows up as not-locked-down until arq-lockdown runs there." });
    } else if report.ready_to_retire_main_keys {
        steps.push(html! {
            "Switch the main keys off (" code { "--undo" } " switches them on again); once they have been inactive a week with no Mac failing, delete them in IAM:"
            ul .commands { li { code { "arq-lockdown retire-main-keys --bucket " (report.bucket) } } }
        });
        steps.extend(table);
    } else {
        steps.push(html! { "Deal with each reason above: each says what to do." });
        steps.extend(table);
        steps.push(html! { "Audit again when that is done; run daily with " code { "--history DIR" } " and the chart below shows the rollout day by day." });
    }
    steps
}

/// The counts per state: a bar, and a legend naming every state with its count and share.
fn states(report: &Report) -> Markup {
    let total = report.summary.computers as u64;
    let mut x = 0.0;
    let segments: Vec<(ComputerState, u64, f64, f64)> = ComputerState::ALL
        .into_iter()
        .map(|state| (state, count_of(report, state)))
        .filter(|(_, count)| *count > 0)
        .map(|(state, count)| {
            let width = 1000.0 * count as f64 / total.max(1) as f64;
            x += width;
            (state, count, x - width, width)
        })
        .collect();
    html! {
        section #states {
            h2 { (total) " computer(s) by state" }
            svg .bar viewBox="0 0 1000 32" preserveAspectRatio="none" role="img" aria-labelledby="states-legend" {
                rect .empty x="0" y="0" width="1000" height="32" fill="#eaeef2" {}
                @for (state, count, x, width) in segments {
                    rect x=(format!("{x:.1}")) y="0" width=(format!("{width:.1}")) height="32" fill=(colour(state)) {
                        title { (state.as_str()) ": " (count) }
                    }
                }
            }
            ul #states-legend .legend {
                @for state in ComputerState::ALL {
                    @let count = count_of(report, state);
                    li id=(format!("state-{}", state.as_str())) class=[(count == 0).then_some("zero")] data-state=(state.as_str()) {
                        svg .swatch width="14" height="14" aria-hidden="true" { rect width="14" height="14" fill=(colour(state)) {} }
                        " " span .count { (count) } " " span .name { (state.as_str()) }
                        " " span .share { "(" (share(count, total)) ")" }
                    }
                }
            }
        }
    }
}

/// `count` of `total` as a whole percentage, `<1%` rather than a misleading 0%.
fn share(count: u64, total: u64) -> String {
    match (count, total) {
        (0, _) | (_, 0) => "0%".to_owned(),
        _ if count * 100 < total => "<1%".to_owned(),
        _ => format!("{}%", count * 100 / total),
    }
}

/// The computers needing action: a table, every row in the report's order (worst state first),
/// with the controls the script shows.
fn computers(report: &Report) -> Markup {
    let needing: Vec<_> = report
        .computers
        .iter()
        .filter(|c| c.state != ComputerState::LockedDown)
        .collect();
    let locked_down = count_of(report, ComputerState::LockedDown);
    html! {
        section #computers {
            h2 { @if needing.is_empty() { "No computer needs action" } @else { (needing.len()) " computer(s) need action" } }
            @if locked_down > 0 {
                p { "The " (locked_down) " locked-down computer(s) are not listed (" code { "audit --csv" } " lists every computer)." }
            }
            @if !needing.is_empty() {
                div #controls hidden {
                    label { "State " select #filter-state {
                        option value="" { "every state" }
                        @for state in ComputerState::ALL {
                            @let n = needing.iter().filter(|c| c.state == state).count();
                            @if n > 0 { option value=(state.as_str()) { (state.as_str()) " (" (n) ")" } }
                        }
                    } }
                    label { "Name or UUID " input #filter-name type="search" autocomplete="off"; }
                    output #shown {}
                }
                div .scroll { table #computers-table {
                    // Fixed widths: the browser lays out thousands of rows without measuring each.
                    colgroup { col .c-name; col .c-uuid; col .c-state; col .c-action; col .c-keys; col .c-last; }
                    thead { tr { th { "Name" } th { "UUID" } th { "State" } th { "Action" } th { "Key ids" } th { "Last use" } } }
                    tbody { @for computer in needing { (computer_row(computer)) } }
                } }
            }
        }
    }
}

fn computer_row(computer: &super::ComputerReport) -> Markup {
    let state = computer.state.as_str();
    let place = ComputerState::ALL
        .iter()
        .position(|s| *s == computer.state)
        .unwrap_or(0);
    let last_use = computer
        .access_keys
        .iter()
        .filter_map(|k| k.last_used.as_deref())
        .max();
    html! {
        tr data-state=(state) {
            td .name { @if let Some(name) = &computer.computer_name { (name) } @else { span .unknown { "unknown" } } }
            td .uuid { (computer.computer_uuid) }
            td class={ "state st-" (state) } data-sort=(format!("{place:02}")) { (state) }
            td .action { (computer.action.as_deref().unwrap_or_default()) }
            td .keys {
                @for key in &computer.access_keys {
                    span .key {
                        @if let Some(id) = &key.access_key_id { code { (id) } } @else { "a key (id not read)" }
                        @if !key.active { " inactive" }
                    }
                }
            }
            td .last { (last_use.unwrap_or("never")) }
        }
    }
}

/// The main keys the verdict judged: where audit learnt of each, and its last use.
fn main_keys(report: &Report) -> Markup {
    html! {
        section #main-keys {
            h2 { "Main keys" }
            @if report.main_keys.is_empty() {
                p { "No main key known: pass " code { "--main-key-id AKIA…" } " (apply and the service record the key each lockdown replaces)." }
            } @else {
                table {
                    thead { tr { th { "Key id" } th { "Known from" } th { "Status" } th { "Last use" } th { "IAM user" } } }
                    tbody { @for key in &report.main_keys {
                        tr {
                            td { code { (key.access_key_id) } }
                            td { @for (i, source) in key.sources.iter().enumerate() {
                                @if i > 0 { ", " } (serde_json::to_value(source).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default())
                            } @if key.recorded_by > 0 { " (" (key.recorded_by) " Mac(s))" } }
                            td { (key.status.as_str()) @if key.admin_credentials { " — this audit's own credentials" } }
                            td { @if let Some(at) = &key.last_used {
                                (at) " by " (key.last_used_service.as_deref().unwrap_or("?")) " in " (key.last_used_region.as_deref().unwrap_or("?"))
                            } @else { "—" } }
                            td { (key.user_name.as_deref().unwrap_or("—")) }
                        }
                    } }
                }
            }
        }
    }
}

/// The rollout over time: a line per state, the days the verdict turned yes and the main keys
/// went, and the same figures as a table.
fn chart(history: &[Entry]) -> Markup {
    html! {
        section #history {
            h2 { "The rollout over time" }
            @if history.is_empty() {
                p { "No history yet: run the audit daily with " code { "--history DIR" } " (from cron or CI) and this shows the counts per state day by day." }
            } @else {
                (chart_svg(history))
                ul .legend {
                    @for state in ComputerState::ALL {
                        li data-state=(state.as_str()) {
                            svg width="28" height="10" aria-hidden="true" { line x1="0" y1="5" x2="28" y2="5" stroke=(colour(state)) stroke-width="3" stroke-dasharray=(dashes(state)) {} }
                            " " (state.as_str())
                        }
                    }
                }
                details {
                    summary { "The same as a table (" (history.len()) " run(s), the newest first)" }
                    table #history-table {
                        thead { tr { th { "Run (UTC)" } @for state in ComputerState::ALL { th { (state.as_str()) } } th { "Main keys may go" } } }
                        tbody { @for entry in history.iter().rev() {
                            tr { td { (entry.time) } @for state in ComputerState::ALL { td { (entry.count(state.as_str())) } }
                                td { @if entry.main_keys_retired() { "retired" } @else if entry.ready_to_retire_main_keys { "yes" } @else { "no" } } }
                        } }
                    }
                }
            }
        }
    }
}

/// The chart itself: x by time, y by count, a polyline per state and the verdict's days marked.
fn chart_svg(history: &[Entry]) -> Markup {
    const W: f64 = 800.0;
    const H: f64 = 260.0;
    let (left, right, top, bottom) = (44.0, W - 16.0, 34.0, H - 28.0);
    let first = history[0].at().as_second();
    let span = (history[history.len() - 1].at().as_second() - first).max(1) as f64;
    let x_of = |entry: &Entry| match history.len() {
        1 => (left + right) / 2.0,
        _ => left + (entry.at().as_second() - first) as f64 / span * (right - left),
    };
    // Days when the history spans days; minutes when it spans less than two.
    let when = |entry: &Entry| match span < 2.0 * 86_400.0 {
        true => entry.time.get(..16).unwrap_or_default().replace('T', " "),
        false => entry.day().to_owned(),
    };
    let most = history
        .iter()
        .map(|e| e.computers)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let y_of = |count: u32| bottom - f64::from(count) / most * (bottom - top);
    let points = |state: ComputerState| -> String {
        let point = |e: &Entry| format!("{:.1},{:.1}", x_of(e), y_of(e.count(state.as_str())));
        history.iter().map(point).collect::<Vec<_>>().join(" ")
    };
    let ready = history.iter().find(|e| e.ready_to_retire_main_keys);
    let retired = history.iter().find(|e| e.main_keys_retired());
    let marks: Vec<(&Entry, &str, &str)> = [
        (ready, "ready", "main keys may go"),
        (retired, "retired", "main keys retired"),
    ]
    .into_iter()
    .filter_map(|(entry, id, label)| Some((entry?, id, label)))
    .collect();
    html! {
        svg #history-chart viewBox={ "0 0 " (W) " " (H) } role="img" aria-label="Computers per state, day by day" {
            @for fraction in [0.0, 0.5, 1.0] {
                @let y = bottom - fraction * (bottom - top);
                line .grid x1=(left) x2=(right) y1=(format!("{y:.1}")) y2=(format!("{y:.1}")) stroke="#d0d7de" {}
                text x=(left - 6.0) y=(format!("{:.1}", y + 4.0)) text-anchor="end" { (format!("{:.0}", most * fraction)) }
            }
            text x=(left) y=(H - 8.0) text-anchor="start" { (when(&history[0])) }
            @if history.len() > 1 { text x=(right) y=(H - 8.0) text-anchor="end" { (when(&history[history.len() - 1])) } }
            @for (i, (entry, id, label)) in marks.iter().enumerate() {
                @let x = format!("{:.1}", x_of(entry));
                g .mark id=(format!("mark-{id}")) {
                    line x1=(x) x2=(x) y1=(top - 4.0) y2=(bottom) stroke="#24292f" stroke-dasharray="3 3" {}
                    text x=(x) y=(12.0 + 13.0 * i as f64) text-anchor="middle" { (label) " (" (entry.day()) ")" }
                }
            }
            @for state in ComputerState::ALL {
                @let width = if matches!(state, ComputerState::LockedDown | ComputerState::NotLockedDown) { "3" } else { "1.5" };
                polyline .line data-state=(state.as_str()) points=(points(state)) fill="none" stroke=(colour(state)) stroke-width=(width) stroke-dasharray=(dashes(state)) {
                    title { (state.as_str()) }
                }
                @if history.len() <= 40 {
                    @for entry in history { circle cx=(format!("{:.1}", x_of(entry))) cy=(format!("{:.1}", y_of(entry.count(state.as_str())))) r="2.5" fill=(colour(state)) {} }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::decide::Info;
    use crate::audit::{ComputerReport, Summary};

    /// A report with `n + 1` computers in the `n`th state of [`ComputerState::ALL`], each named `name(n)`.
    fn report(name: impl Fn(usize) -> String) -> Report {
        let mut computers = Vec::new();
        for (n, state) in ComputerState::ALL.into_iter().enumerate() {
            for i in 0..=n {
                computers.push(ComputerReport {
                    computer_uuid: format!("00000000-0000-4000-8000-{n:06}{i:06}"),
                    computer_name: Some(name(n)),
                    user_name: None,
                    state,
                    user_arn: None,
                    access_keys: Vec::new(),
                    action: (state != ComputerState::LockedDown)
                        .then(|| format!("fix {}", name(n))),
                    in_bucket: true,
                    computerinfo: Info::Read {
                        computer_name: Some(name(n)),
                        user_name: None,
                    },
                    enrollment_key: None,
                    pinned_key: None,
                    reported_by: Vec::new(),
                });
            }
        }
        let states = ComputerState::ALL
            .iter()
            .enumerate()
            .map(|(n, s)| (s.as_str().to_owned(), (n + 1).into()))
            .collect();
        Report {
            bucket: "fleet.example".into(),
            generated_at: "2026-05-02T06:00:00Z".into(),
            ready_to_retire_main_keys: false,
            not_ready_reasons: vec![format!("{} not locked down", name(1))],
            quiet_minutes: 120,
            summary: Summary {
                computers: computers.len(),
                states,
                main_keys: 0,
                newest_scoped_key_created: None,
                credential_report_generated: None,
                scoped_users_elsewhere: 0,
                computerinfo_unread: 0,
            },
            computers,
            main_keys: Vec::new(),
            policy_fixes: Vec::new(),
            inventory: None,
        }
    }

    fn render(report: &Report) -> String {
        let history = [Entry::of(report)];
        let provenance = Provenance {
            generated_by: "arn:aws:iam::123456789012:user/fleet-admin",
            version: "0.0.0",
        };
        page(report, &provenance, &history)
    }

    /// The text of the first element that `start` opens, up to `end`.
    fn element<'a>(page: &'a str, start: &str, end: &str) -> &'a str {
        let from = page.find(start).unwrap_or_else(|| panic!("no {start}"));
        let to = page[from + start.len()..].find(end).unwrap();
        &page[from..from + start.len() + to]
    }

    #[test]
    fn every_state_is_shown_with_its_count_rows_filter_and_line() {
        let page = render(&report(|n| format!("Mac {n}")));
        for (n, state) in ComputerState::ALL.into_iter().enumerate() {
            let name = state.as_str();
            let legend = element(&page, &format!("<li id=\"state-{name}\""), "</li>");
            assert!(
                legend.contains(&format!(
                    "<span class=\"count\">{}</span> <span class=\"name\">{name}</span>",
                    n + 1
                )),
                "{legend}"
            );
            let rows = page.matches(&format!("<tr data-state=\"{name}\">")).count();
            let listed = if state == ComputerState::LockedDown {
                0
            } else {
                n + 1
            };
            assert_eq!(rows, listed, "{name}");
            assert_eq!(
                page.contains(&format!("<option value=\"{name}\">")),
                listed > 0,
                "{name}"
            );
            assert!(
                page.contains(&format!("<polyline class=\"line\" data-state=\"{name}\"")),
                "{name}"
            );
            assert!(
                page.contains(&format!("td.st-{name}{{border-left-color:")),
                "{name}"
            );
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{name}: a CSS class"
            );
        }
    }

    #[test]
    fn the_page_says_state_in_words_not_in_type_names() {
        let page = render(&report(|n| format!("Mac {n}")));
        assert!(page.contains("<th>State</th>"), "the table's column");
        assert!(page.contains("<label>State <select"), "the filter");
        assert!(
            !page.contains("ComputerState"),
            "a Rust type name on the page"
        );
    }

    #[test]
    fn a_hostile_name_is_text() {
        let hostile =
            "<script>alert(1)</script><img src=x onerror=alert(2)>\" onmouseover=\"alert(3)";
        let page = render(&report(|_| hostile.to_owned()));
        assert_eq!(
            page.matches("<script").count(),
            1,
            "only the page's own script"
        );
        assert!(!page.contains("<img"));
        assert!(!page.contains("\" onmouseover"));
        let escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;&quot; onmouseover=&quot;alert(3)";
        assert!(page.contains(&format!("<td class=\"name\">{escaped}</td>")));
        assert!(page.contains(&format!("<li>{escaped} not locked down</li>")));
    }

    #[test]
    fn the_policy_admits_exactly_the_pages_style_and_script() {
        let page = render(&report(|n| format!("Mac {n}")));
        let style = element(&page, "<style>", "</style>").trim_start_matches("<style>");
        let script = element(&page, "<script>", "</script>").trim_start_matches("<script>");
        let policy = element(&page, "content=\"default-src 'none'", "\"");
        assert!(
            policy.contains(&format!("style-src '{}'", csp_hash(style))),
            "{policy}"
        );
        assert!(
            policy.contains(&format!("script-src '{}'", csp_hash(script))),
            "{policy}"
        );
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "nothing to load"
        );
    }

    #[test]
    #[rustfmt::skip]
    fn the_verdict_says_yes_not_yet_or_done_and_gone_keys_are_never_not_yet_retired() {
        use crate::audit::MainKeyReport;
        let key = |status| MainKeyReport {
            access_key_id: "AKIAMAIN1EXAMPLE0000".into(), sources: Vec::new(), recorded_by: 1, status,
            user_name: Some("fleet-admin".into()), last_used: None, last_used_service: None,
            last_used_region: None, admin_credentials: false, replaced_by_proof: 0, quiet_since: None,
            ready_after: None,
        };
        use crate::audit::decide::MainKeyStatus::*;
        let cases = [
            (NeverUsed, true, "Yes", "The main keys may be retired now"),
            (Used, false, "Not yet", "The main keys may not be retired yet"),
            (NotFound, true, "Done", "The main keys are retired"),
            (NotFound, false, "Not done", "The main keys are gone, but not everything was ready for it"),
        ];
        for (status, ready, word, headline) in cases {
            let mut report = report(|n| format!("Mac {n}"));
            report.main_keys = vec![key(status)];
            report.ready_to_retire_main_keys = ready;
            let page = render(&report);
            assert!(page.contains(&format!("<p class=\"verdict-word\">{word}</p><h2 id=\"verdict-headline\">{headline}</h2>")), "{status:?} {ready}");
            let deactivate = "arq-lockdown retire-main-keys --bucket fleet.example";
            assert_eq!(page.contains(deactivate), word == "Yes", "{status:?} {ready}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn shares_are_whole_percentages_and_never_a_false_zero() {
        for (count, total, shown) in [(0, 0, "0%"), (0, 5, "0%"), (1, 1000, "<1%"), (1, 3, "33%"), (5, 5, "100%")] {
            assert_eq!(share(count, total), shown);
        }
    }
}
