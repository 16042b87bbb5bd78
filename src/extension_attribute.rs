//! The Jamf extension attribute line (`status --jamf-ea`): what an MDM's inventory keeps of a
//! Mac, so it must be the same text whenever nothing changed, and never more than one line.
//!
//! The format (shared with the inventory reader of `audit`):
//!
//! ```text
//! <result>STATE key=KEY_ID computer=UUID bucket=BUCKET enrollment-key=SHA256:… user=NAME; TEXT</result>
//! ```
//!
//! `STATE` is kebab-case; each `name=value` field is left out when unknown; `TEXT` is a few words
//! for people. Everything is printable ASCII: any other character is written `\xNN` (ASCII) or
//! `\u{…}`, and so are the characters that would end a field or the line early (in a value: space,
//! `=`, `;`, `<`, `>`, `\`; in the text: `=`, `<`, `>`, `\`). No ages, no times.
//!
//! Root also keeps the last line a user's run gave it ([`remember`]), in a place only root can
//! write, for the inventories taken while nobody is logged in ([`last_known`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Where root keeps the last line (a folder only root can write).
///
/// Platform-specific: `/Library/Application Support/arq-lockdown` on macOS,
/// `/var/lib/arq-lockdown` elsewhere.
#[cfg(target_os = "macos")]
pub const ROOTS_FOLDER: &str = "/Library/Application Support/arq-lockdown";
#[cfg(not(target_os = "macos"))]
pub const ROOTS_FOLDER: &str = "/var/lib/arq-lockdown";

/// The last line's file, in [`ROOTS_FOLDER`].
pub const LAST_KNOWN_FILE: &str = "last-extension-attribute.json";

/// The last line is a few hundred bytes.
const MAX_LAST_KNOWN_BYTES: u64 = 16 * 1024;

/// One extension attribute line, before it is written out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    state: String,
    fields: Vec<(String, String)>,
    text: Option<String>,
}

impl Line {
    pub fn new(state: &str) -> Self {
        Self {
            state: state.to_owned(),
            fields: Vec::new(),
            text: None,
        }
    }

    /// Adds the field `name=value`, unless the value is unknown or empty.
    pub fn field(mut self, name: &str, value: Option<&str>) -> Self {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            self.fields.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    /// Sets the text for people, unless there is none.
    pub fn text(mut self, text: Option<&str>) -> Self {
        self.text = text.filter(|t| !t.is_empty()).map(str::to_owned);
        self
    }

    /// `<result>…</result>` and a line feed.
    pub fn render(&self) -> String {
        let mut line = format!("<result>{}", escape(&self.state, FIELD));
        for (name, value) in &self.fields {
            line += &format!(" {}={}", escape(name, FIELD), escape(value, FIELD));
        }
        if let Some(text) = &self.text {
            line += &format!("; {}", escape(text, TEXT));
        }
        line + "</result>\n"
    }
}

/// The characters escaped in a field's name or value, besides all that are not printable ASCII.
const FIELD: &[char] = &[' ', '=', ';', '<', '>', '\\'];
/// The same for the text.
const TEXT: &[char] = &['=', '<', '>', '\\'];

fn escape(text: &str, special: &[char]) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            c if c.is_ascii() && (c.is_ascii_control() || special.contains(&c)) => {
                escaped += &format!("\\x{:02x}", c as u32);
            }
            c if c.is_ascii() => escaped.push(c),
            c => escaped += &format!("\\u{{{:x}}}", c as u32),
        }
    }
    escaped
}

/// Keeps `line` (without its text) as the last known one. Root only; a failure to keep it only
/// means the next inventory with nobody logged in says less.
pub fn remember(line: &Line) {
    let kept = Line {
        text: None,
        ..line.clone()
    };
    let folder = Path::new(ROOTS_FOLDER);
    if crate::fs::Dir::create(folder, 0o755).is_ok() {
        let json = serde_json::to_vec(&kept).expect("a line serializes");
        let _ = crate::fs::write_atomically(&folder.join(LAST_KNOWN_FILE), &json, 0o600);
    }
}

/// With nobody logged in: the last known line of the last user, marked `seen=last-login`, with
/// the text "nobody logged in"; without one, `unknown`.
pub fn last_known() -> Line {
    let path = Path::new(ROOTS_FOLDER).join(LAST_KNOWN_FILE);
    let kept = crate::fs::read_small_file(&path, MAX_LAST_KNOWN_BYTES)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Line>(&bytes).ok());
    match kept {
        Some(line) => line.field("seen", Some("last-login")),
        None => Line::new("unknown"),
    }
    .text(Some("nobody logged in"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[rustfmt::skip]
    fn a_line_is_printable_ascii_with_one_result_whatever_its_values() {
        for (line, rendered) in [
            (Line::new("locked-down").field("key", Some("AKIAEXAMPLE")).field("user", Some("bob")),
             "<result>locked-down key=AKIAEXAMPLE user=bob</result>\n"),
            (Line::new("not-locked-down").field("key", None).field("bucket", Some("")).text(Some("run apply")),
             "<result>not-locked-down; run apply</result>\n"),
            (Line::new("error").field("user", Some("a b=c;d")).text(Some("x = y; <result>\\")),
             "<result>error user=a\\x20b\\x3dc\\x3bd; x \\x3d y; \\x3cresult\\x3e\\x5c</result>\n"),
            (Line::new("error").text(Some("cr\r lf\n nul\0 esc\u{1b} nel\u{85} ls\u{2028} del\u{7f}")),
             "<result>error; cr\\x0d lf\\x0a nul\\x00 esc\\x1b nel\\u{85} ls\\u{2028} del\\x7f</result>\n"),
            (Line::new("locked-down").field("user", Some("josé")),
             "<result>locked-down user=jos\\u{e9}</result>\n"),
        ] {
            assert_eq!(line.render(), rendered);
        }
    }
}
