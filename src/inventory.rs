//! The MDM's inventory: what each Mac reported about itself — its computer UUID and bucket, the
//! key id in "Arq S3", its enrollment key's fingerprint — read from an export the admin makes.
//!
//! Two shapes: Jamf's advanced-search export (CSV, or tab-separated text, under a header row) in
//! which one column holds the extension attribute `status --jamf-ea` feeds — with or without its
//! `<result>` tags (Jamf stores the text between them) — and other columns such as "Computer
//! Name" and "Serial Number" kept for display; or `status --json` objects any MDM collected (a
//! JSON array, or the objects one after another). The MDM authenticates each device, so a Mac's
//! row is the one channel another Mac of the fleet cannot write: `audit --inventory` confirms
//! computers by it and `pin` binds them by it.
//!
//! The file comes from a whole fleet: each row is judged on its own, junk in a row is a warning
//! about that row, and a value is kept only when it has the shape arq-lockdown writes.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::arq_config::{BucketName, ComputerUuid};
use crate::exit_code::ExitCode;

/// An export of 5,000 Macs is a few MB; anything near this is not one.
pub const MAX_INVENTORY_BYTES: u64 = 64 * 1024 * 1024;

/// Warnings kept for people; the rest are counted.
const MAX_WARNINGS: usize = 100;

/// Names and serials longer than this are cut (a Mac names itself).
const MAX_TEXT: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot read the inventory {path}: {reason}; check --inventory")]
    Unreadable { path: String, reason: String },
    #[error(
        "the inventory {path} is larger than {} MiB, which no export of a fleet is: check --inventory",
        MAX_INVENTORY_BYTES >> 20
    )]
    TooLarge { path: String },
    #[error("the inventory {path} is empty: export the computers again")]
    Empty { path: String },
    #[error(
        "the inventory {path} is not JSON ({reason}): export a JSON array of `status --json` objects, the objects one after another, or Jamf's CSV"
    )]
    NotJson { path: String, reason: String },
    #[error(
        "no column of the inventory {path} holds arq-lockdown status lines (\"STATE … computer=UUID …\"): add the extension attribute to the export, or name its column with --inventory-column"
    )]
    NoColumn { path: String },
    #[error(
        "several columns of the inventory {path} hold arq-lockdown status lines ({columns}): name one with --inventory-column"
    )]
    SeveralColumns { path: String, columns: String },
    #[error(
        "the inventory {path} has no column {name:?} (it has {columns}): check --inventory-column"
    )]
    NoSuchColumn {
        path: String,
        name: String,
        columns: String,
    },
}

impl InventoryError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::ConfigInvalid
    }
}

/// What one Mac reported, as far as it has the shape arq-lockdown writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Where in the file: `row N` (a spreadsheet's row number, the header being row 1), `line N`
    /// or `object N`.
    pub source: String,
    /// The status state (`locked-down`, `claimed-by-another-mac`, …).
    pub state: Option<String>,
    pub computer_uuid: ComputerUuid,
    pub bucket: BucketName,
    /// The key id in "Arq S3" (never a secret).
    pub access_key_id: Option<String>,
    /// The fingerprint (`SHA256:…`) of the Mac's enrollment key.
    pub enrollment_key: Option<String>,
    /// The Mac's user whose status it is.
    pub user: Option<String>,
    /// From the MDM's own columns, for people.
    pub computer_name: Option<String>,
    pub serial: Option<String>,
}

impl Record {
    /// Whether the UUID is written as Arq writes it (upper case). IAM user names ignore case but
    /// S3 keys do not: a lower-case report names another folder, so it may contest a computer
    /// but never confirms or pins one.
    pub fn as_arq_writes(&self) -> bool {
        let uuid = self.computer_uuid.as_str();
        uuid == uuid.to_ascii_uppercase()
    }

    /// The Mac in words: its name, serial and where in the file.
    pub fn label(&self) -> String {
        let mut words = Vec::new();
        if let Some(name) = &self.computer_name {
            words.push(format!("\"{name}\""));
        }
        if let Some(serial) = &self.serial {
            words.push(format!("serial {serial}"));
        }
        words.push(self.source.clone());
        words.join(", ")
    }
}

/// One Mac reporting a computer: the rows of the file that are that Mac (a device listed twice
/// is one Mac).
#[derive(Clone, Debug)]
pub struct ReportingMac<'a> {
    pub records: Vec<&'a Record>,
}

impl ReportingMac<'_> {
    fn first(&self) -> &Record {
        self.records[0]
    }

    pub fn enrollment_key(&self) -> Option<&str> {
        self.first().enrollment_key.as_deref()
    }

    pub fn access_key_id(&self) -> Option<&str> {
        self.first().access_key_id.as_deref()
    }

    pub fn state(&self) -> Option<&str> {
        self.first().state.as_deref()
    }

    pub fn computer_name(&self) -> Option<&str> {
        self.records.iter().find_map(|r| r.computer_name.as_deref())
    }

    pub fn serial(&self) -> Option<&str> {
        self.records.iter().find_map(|r| r.serial.as_deref())
    }

    /// Whether every row of it writes the UUID as Arq does.
    pub fn as_arq_writes(&self) -> bool {
        self.records.iter().all(|r| r.as_arq_writes())
    }

    pub fn label(&self) -> String {
        self.first().label()
    }
}

/// A Mac reporting a computer, for reports (`audit --json`, `pin --json`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReportedBy {
    /// Where in the inventory (`row N`, `line N`, `object N`): a Mac listed twice, each.
    pub sources: Vec<String>,
    pub computer_name: Option<String>,
    pub serial: Option<String>,
    pub state: Option<String>,
    pub access_key_id: Option<String>,
    pub enrollment_key: Option<String>,
}

impl ReportingMac<'_> {
    pub fn summary(&self) -> ReportedBy {
        ReportedBy {
            sources: self.records.iter().map(|r| r.source.clone()).collect(),
            computer_name: self.computer_name().map(str::to_owned),
            serial: self.serial().map(str::to_owned),
            state: self.state().map(str::to_owned),
            access_key_id: self.access_key_id().map(str::to_owned),
            enrollment_key: self.enrollment_key().map(str::to_owned),
        }
    }
}

/// Two rows are one Mac when their serial numbers are equal and their enrollment keys do not
/// differ, or — without a serial on both — when they report the same enrollment key and key.
fn same_mac(a: &Record, b: &Record) -> bool {
    let keys_agree = match (&a.enrollment_key, &b.enrollment_key) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    };
    match (&a.serial, &b.serial) {
        (Some(x), Some(y)) => x == y && keys_agree,
        _ => a.enrollment_key == b.enrollment_key && a.access_key_id == b.access_key_id,
    }
}

/// An inventory as read: the Macs' records and what was wrong with the rest.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub records: Vec<Record>,
    /// Rows that report no computer: not configured, nobody logged in, no value yet, or an older
    /// arq-lockdown whose line has no fields.
    pub without_computer: usize,
    /// One line per row that could not be used as it was (at most [`MAX_WARNINGS`]).
    pub warnings: Vec<String>,
    /// Warnings beyond those kept.
    pub warnings_left_out: usize,
}

impl Inventory {
    /// Reads the export at `path`; `column` names the extension attribute's column of a CSV
    /// (found by its content otherwise).
    pub fn read(path: &Path, column: Option<&str>) -> Result<Self, InventoryError> {
        let shown = path.display().to_string();
        let bytes = read_capped(path).map_err(|e| match e {
            Capped::TooLarge => InventoryError::TooLarge {
                path: shown.clone(),
            },
            Capped::Io(e) => InventoryError::Unreadable {
                path: shown.clone(),
                reason: e.to_string(),
            },
        })?;
        Self::parse(&bytes, column, &shown)
    }

    /// [`Inventory::read`] of `bytes`; `path` names the file in errors.
    pub fn parse(bytes: &[u8], column: Option<&str>, path: &str) -> Result<Self, InventoryError> {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_start_matches('\u{feff}');
        let mut inventory = Self::default();
        match text.trim_start().chars().next() {
            None => {
                return Err(InventoryError::Empty {
                    path: path.to_owned(),
                });
            }
            Some('[' | '{') => inventory.read_json(text, path)?,
            Some(_) => inventory.read_table(text, column, path)?,
        }
        Ok(inventory)
    }

    fn warn(&mut self, warning: String) {
        match self.warnings.len() < MAX_WARNINGS {
            true => self.warnings.push(warning),
            false => self.warnings_left_out += 1,
        }
    }

    /// A JSON array of status objects, or the objects one after another (one a line, or pretty).
    fn read_json(&mut self, text: &str, path: &str) -> Result<(), InventoryError> {
        let not_json = |reason: String| InventoryError::NotJson {
            path: path.to_owned(),
            reason,
        };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let one_a_line = lines
            .iter()
            .all(|l| l.trim_start().starts_with('{') && l.trim_end().ends_with('}'));
        if one_a_line && !text.trim_start().starts_with('[') {
            // One object a line: a bad line is that line's problem.
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let source = format!("line {}", n + 1);
                match serde_json::from_str::<Value>(line) {
                    Ok(value) => self.add_object(&value, source),
                    Err(e) => self.warn(format!("{source}: not JSON ({e}): left out")),
                }
            }
            return Ok(());
        }
        let mut values = Vec::new();
        for value in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
            values.push(value.map_err(|e| not_json(e.to_string()))?);
        }
        let objects: Vec<Value> = match values.as_slice() {
            [Value::Array(items)] => items.clone(),
            _ => values,
        };
        for (n, value) in objects.iter().enumerate() {
            self.add_object(value, format!("object {}", n + 1));
        }
        Ok(())
    }

    fn add_object(&mut self, value: &Value, source: String) {
        let Value::Object(object) = value else {
            self.warn(format!("{source}: not a status object: left out"));
            return;
        };
        let field = |name: &str| object.get(name).and_then(Value::as_str);
        let reported = Reported {
            state: field("state"),
            computer: field("computer_uuid"),
            bucket: field("bucket"),
            key: field("access_key_id"),
            enrollment_key: field("enrollment_key_fingerprint"),
            user: field("user"),
            computer_name: field("computer_name"),
            serial: field("serial_number"),
        };
        self.add(reported, source);
    }

    /// Jamf's export: a header row, then one row per Mac.
    fn read_table(
        &mut self,
        text: &str,
        column: Option<&str>,
        path: &str,
    ) -> Result<(), InventoryError> {
        let header_line = text.lines().next().unwrap_or_default();
        let delimiter = match header_line.matches('\t').count() > header_line.matches(',').count() {
            true => b'\t',
            false => b',',
        };
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .has_headers(false)
            .from_reader(text.as_bytes());
        let mut rows: Vec<Vec<String>> = Vec::new();
        for row in reader.byte_records() {
            match row {
                Ok(row) => rows.push(
                    row.iter()
                        .map(|cell| String::from_utf8_lossy(cell).into_owned())
                        .collect(),
                ),
                // The csv reader resumes at the next row.
                Err(e) => self.warn(format!("row {}: not CSV ({e}): left out", rows.len() + 1)),
            }
        }
        let Some((header, rows)) = rows.split_first() else {
            return Err(InventoryError::Empty {
                path: path.to_owned(),
            });
        };
        let status_column = status_column(header, rows, column, path)?;
        let named = |wanted: &str| {
            header
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(wanted))
        };
        let (name_column, serial_column) = (named("Computer Name"), named("Serial Number"));
        for (n, row) in rows.iter().enumerate() {
            let source = format!("row {}", n + 2);
            let cell = |i: Option<usize>| i.and_then(|i| row.get(i)).map(String::as_str);
            let Some(line) = cell(Some(status_column)).filter(|c| !c.trim().is_empty()) else {
                self.without_computer += 1;
                continue;
            };
            let Some(line) = parse_line(line) else {
                self.warn(format!(
                    "{source}: {} is not an arq-lockdown status line: left out",
                    shown(line)
                ));
                continue;
            };
            let field = |name: &str| line.fields.get(name).map(String::as_str);
            let reported = Reported {
                state: Some(line.state.as_str()),
                computer: field("computer"),
                bucket: field("bucket"),
                key: field("key"),
                enrollment_key: field("enrollment-key"),
                user: field("user"),
                computer_name: cell(name_column),
                serial: cell(serial_column),
            };
            self.add(reported, source);
        }
        Ok(())
    }

    /// Keeps what `reported` says in the shape arq-lockdown writes it; a warning for the rest.
    fn add(&mut self, reported: Reported<'_>, source: String) {
        let Some(computer) = reported.computer else {
            self.without_computer += 1;
            return;
        };
        let Ok(computer_uuid) = ComputerUuid::parse(computer) else {
            let uuid = shown(computer);
            self.warn(format!("{source}: computer {uuid} is not a UUID: left out"));
            return;
        };
        let Some(bucket) = reported.bucket.and_then(|b| BucketName::parse(b).ok()) else {
            let bucket = reported.bucket.map_or("none".to_owned(), shown);
            self.warn(format!(
                "{source}: computer {computer_uuid} without a valid bucket ({bucket}): left out"
            ));
            return;
        };
        let mut checked = |name: &str, value: Option<&str>, valid: fn(&str) -> bool| {
            let value = value?;
            if valid(value) {
                return Some(value.to_owned());
            }
            self.warn(format!(
                "{source}: {name} {} is not one arq-lockdown reports: ignored",
                shown(value)
            ));
            None
        };
        let state = checked("state", reported.state, is_state);
        let access_key_id = checked("key", reported.key, crate::iam::is_access_key_id);
        let enrollment_key = checked("enrollment key", reported.enrollment_key, is_fingerprint);
        let record = Record {
            source,
            state,
            computer_uuid,
            bucket,
            access_key_id,
            enrollment_key,
            user: reported.user.and_then(|u| text(u, 64)),
            computer_name: reported.computer_name.and_then(|n| text(n, MAX_TEXT)),
            serial: reported.serial.and_then(|s| text(s, MAX_TEXT)),
        };
        if !record.as_arq_writes() {
            self.warn(format!(
                "{}: computer {} is not in upper case as Arq writes it: it can contest that computer, never confirm or pin it",
                record.source, record.computer_uuid
            ));
        }
        self.records.push(record);
    }

    /// The Macs reporting each computer of `bucket`, by its UUID in upper case (IAM's user names
    /// ignore case, so two spellings are one user). A Mac listed twice is one; a warning says so.
    pub fn macs_by_computer(&self, bucket: &BucketName) -> BTreeMap<String, Vec<ReportingMac<'_>>> {
        let mut by_computer: BTreeMap<String, Vec<ReportingMac<'_>>> = BTreeMap::new();
        for record in self.records.iter().filter(|r| r.bucket == *bucket) {
            let macs = by_computer
                .entry(record.computer_uuid.as_str().to_ascii_uppercase())
                .or_default();
            match macs
                .iter_mut()
                .find(|mac| mac.records.iter().all(|r| same_mac(r, record)))
            {
                Some(mac) => mac.records.push(record),
                None => macs.push(ReportingMac {
                    records: vec![record],
                }),
            }
        }
        by_computer
    }

    /// The rows that report one Mac twice, for a warning each.
    pub fn duplicates(&self, bucket: &BucketName) -> Vec<String> {
        let mut lines = Vec::new();
        for (uuid, macs) in self.macs_by_computer(bucket) {
            for mac in macs.iter().filter(|m| m.records.len() > 1) {
                let sources: Vec<&str> = mac.records.iter().map(|r| r.source.as_str()).collect();
                lines.push(format!(
                    "{} report computer {uuid} from one Mac: counted once",
                    sources.join(", ")
                ));
            }
        }
        lines
    }
}

/// What a row says, before its values are checked.
struct Reported<'a> {
    state: Option<&'a str>,
    computer: Option<&'a str>,
    bucket: Option<&'a str>,
    key: Option<&'a str>,
    enrollment_key: Option<&'a str>,
    user: Option<&'a str>,
    computer_name: Option<&'a str>,
    serial: Option<&'a str>,
}

/// The column holding the status lines: the one named, else the one whose cells are most often
/// arq-lockdown lines naming a computer.
fn status_column(
    header: &[String],
    rows: &[Vec<String>],
    named: Option<&str>,
    path: &str,
) -> Result<usize, InventoryError> {
    let columns = || {
        header
            .iter()
            .map(|h| shown(h.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(name) = named {
        return header
            .iter()
            .position(|h| h.trim() == name.trim())
            .ok_or_else(|| InventoryError::NoSuchColumn {
                path: path.to_owned(),
                name: name.to_owned(),
                columns: columns(),
            });
    }
    let width = rows
        .iter()
        .map(Vec::len)
        .max()
        .unwrap_or(0)
        .max(header.len());
    let counts: Vec<usize> = (0..width)
        .map(|i| {
            rows.iter()
                .filter_map(|row| row.get(i))
                .filter_map(|cell| parse_line(cell))
                .filter(|line| line.fields.contains_key("computer"))
                .count()
        })
        .collect();
    let best = counts.iter().copied().max().unwrap_or(0);
    let winners: Vec<usize> = (0..width).filter(|i| counts[*i] == best).collect();
    match (best, winners.as_slice()) {
        (0, _) => Err(InventoryError::NoColumn {
            path: path.to_owned(),
        }),
        (_, [one]) => Ok(*one),
        (_, several) => Err(InventoryError::SeveralColumns {
            path: path.to_owned(),
            columns: several
                .iter()
                .map(|i| {
                    header
                        .get(*i)
                        .map_or(format!("column {}", i + 1), |h| shown(h))
                })
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// An extension-attribute line as `status --jamf-ea` prints it (see docs/deploying.md):
/// `STATE name=value …; text for people`, with or without the `<result>` tags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Line {
    pub state: String,
    /// The ` name=value` fields, by name (unknown ones included: the reader ignores them).
    pub fields: BTreeMap<String, String>,
}

/// `None` when `text` is not such a line (its first word is not a kebab-case state).
pub fn parse_line(text: &str) -> Option<Line> {
    let text = text.trim();
    let text = text.strip_prefix("<result>").unwrap_or(text);
    let text = text.strip_suffix("</result>").unwrap_or(text);
    // The text for people comes after the first `;` and is never read.
    let head = text.split(';').next().unwrap_or_default();
    let mut words = head.split_whitespace();
    let state = words.next()?.trim_end_matches(':');
    if !is_state(state) {
        return None;
    }
    let fields = words
        .filter_map(|word| word.split_once('='))
        .filter(|(name, _)| !name.is_empty())
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    Some(Line {
        state: state.to_owned(),
        fields,
    })
}

/// A kebab-case word of at most 40 characters, as every status state is.
fn is_state(text: &str) -> bool {
    (1..=40).contains(&text.len())
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
}

/// `SHA256:` and 43 characters of unpadded standard base64 (a SHA-256), as
/// [`crate::protocol::enrollment::fingerprint`] makes them.
pub fn is_fingerprint(text: &str) -> bool {
    text.strip_prefix("SHA256:").is_some_and(|digest| {
        digest.len() == 43
            && digest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    })
}

/// Printable text of at most `max` characters, or nothing.
fn text(value: &str, max: usize) -> Option<String> {
    let kept: String = value
        .chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect();
    let kept = kept.trim();
    (!kept.is_empty()).then(|| kept.to_owned())
}

/// A value from the file in a message: quoted, escaped, at most 40 characters.
fn shown(value: &str) -> String {
    let short: String = value.chars().take(40).collect();
    match short.len() < value.len() {
        true => format!("{short:?}…"),
        false => format!("{short:?}"),
    }
}

enum Capped {
    TooLarge,
    Io(std::io::Error),
}

/// The file's bytes, refused beyond [`MAX_INVENTORY_BYTES`] without reading them all.
fn read_capped(path: &Path) -> Result<Vec<u8>, Capped> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(Capped::Io)?;
    let mut bytes = Vec::new();
    file.take(MAX_INVENTORY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(Capped::Io)?;
    match bytes.len() as u64 > MAX_INVENTORY_BYTES {
        true => Err(Capped::TooLarge),
        false => Ok(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "32D9D7A2-3B3E-4BE7-B85B-0605AF24F570";
    const V: &str = "7A1E5C3B-9D2F-4E8A-B6C4-1F3D5E7A9B2C";
    const PRINT: &str = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
    const OTHER: &str = "SHA256:LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ";

    fn bucket() -> BucketName {
        BucketName::parse("fleet.example").unwrap()
    }

    fn ea(state: &str, uuid: &str, key: &str, print: &str) -> String {
        format!(
            "{state} key={key} computer={uuid} bucket=fleet.example enrollment-key={print} user=vic; text"
        )
    }

    fn parse(text: &str) -> Result<Inventory, InventoryError> {
        Inventory::parse(text.as_bytes(), None, "inventory.csv")
    }

    /// (computer, key, enrollment key, name, serial) of each record.
    #[rustfmt::skip]
    type Seen = (String, Option<String>, Option<String>, Option<String>, Option<String>);

    fn seen(inventory: &Inventory) -> Vec<Seen> {
        inventory
            .records
            .iter()
            .map(|r| {
                (
                    r.computer_uuid.to_string(),
                    r.access_key_id.clone(),
                    r.enrollment_key.clone(),
                    r.computer_name.clone(),
                    r.serial.clone(),
                )
            })
            .collect()
    }

    fn some(text: &str) -> Option<String> {
        Some(text.to_owned())
    }

    #[test]
    #[rustfmt::skip]
    fn each_shape_of_export_gives_the_macs_records() {
        let line = ea("locked-down", U, "AKIAEXAMPLE000000001", PRINT);
        let vic = (U.to_owned(), some("AKIAEXAMPLE000000001"), some(PRINT), some("Vic's Mac"), some("C02VIC"));
        let bare = (U.to_owned(), some("AKIAEXAMPLE000000001"), some(PRINT), None, None);
        let cases: Vec<(&str, String, Vec<Seen>)> = vec![
            ("Jamf CSV, no tags", format!("Computer Name,Serial Number,Arq\nVic's Mac,C02VIC,{line}\n"), vec![vic.clone()]),
            ("Jamf CSV, tags kept", format!("Computer Name,Serial Number,Arq\n\"Vic's Mac\",C02VIC,<result>{line}</result>\n"), vec![vic.clone()]),
            ("the column anywhere, headers in any case", format!("Arq,serial number,COMPUTER NAME\n{line},C02VIC,Vic's Mac\n"), vec![vic.clone()]),
            ("tab-separated", format!("Computer Name\tSerial Number\tArq\nVic's Mac\tC02VIC\t{line}\n"), vec![vic.clone()]),
            ("a byte-order mark and CRLF", format!("\u{feff}Computer Name,Serial Number,Arq\r\nVic's Mac,C02VIC,{line}\r\n"), vec![vic.clone()]),
            ("Macs without a value or a computer", format!("Computer Name,Arq\nA,\nB,nobody logged in\nC,not-configured\nD,locked down per receipt AKIA 3s\nVic's Mac,{line}\n"), vec![(U.to_owned(), some("AKIAEXAMPLE000000001"), some(PRINT), some("Vic's Mac"), None)]),
            ("a JSON array", format!("[{{\"state\":\"locked-down\",\"computer_uuid\":\"{U}\",\"bucket\":\"fleet.example\",\"access_key_id\":\"AKIAEXAMPLE000000001\",\"enrollment_key_fingerprint\":\"{PRINT}\",\"user\":\"vic\",\"receipt_age_seconds\":3}}]"), vec![bare.clone()]),
            ("one object a line", format!("{{\"computer_uuid\":\"{U}\",\"bucket\":\"fleet.example\",\"access_key_id\":\"AKIAEXAMPLE000000001\",\"enrollment_key_fingerprint\":\"{PRINT}\"}}\n\n{{\"state\":\"not-configured\"}}\n"), vec![bare.clone()]),
            ("pretty objects one after another", format!("{{\n  \"computer_uuid\": \"{U}\",\n  \"bucket\": \"fleet.example\",\n  \"access_key_id\": \"AKIAEXAMPLE000000001\",\n  \"enrollment_key_fingerprint\": \"{PRINT}\",\n  \"computer_name\": \"Vic's Mac\",\n  \"serial_number\": \"C02VIC\"\n}}\n{{\n  \"state\": \"arq-missing\"\n}}\n"), vec![vic.clone()]),
        ];
        for (name, text, expected) in cases {
            let inventory = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(seen(&inventory), expected, "{name}");
            assert_eq!(inventory.warnings, Vec::<String>::new(), "{name}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn junk_in_a_row_is_a_warning_about_that_row() {
        let good = ea("locked-down", V, "AKIAEXAMPLE000000002", OTHER);
        let cases: Vec<(&str, String, Vec<Seen>, &str)> = vec![
            ("not a UUID", "locked-down computer=32D9D7A2 bucket=fleet.example".into(), vec![], "row 2: computer \"32D9D7A2\" is not a UUID: left out"),
            ("no bucket", format!("locked-down computer={U}"), vec![], "without a valid bucket (none): left out"),
            ("a bucket Arq would not write", format!("locked-down computer={U} bucket=Fleet_Example"), vec![], "without a valid bucket (\"Fleet_Example\")"),
            ("a junk key", format!("locked-down key=secret/ish computer={U} bucket=fleet.example"), vec![(U.into(), None, None, None, None)], "row 2: key \"secret/ish\" is not one arq-lockdown reports: ignored"),
            ("a junk fingerprint", format!("locked-down computer={U} bucket=fleet.example enrollment-key=SHA256:short"), vec![(U.into(), None, None, None, None)], "row 2: enrollment key \"SHA256:short\""),
            ("a lower-case UUID", format!("locked-down computer={} bucket=fleet.example", U.to_lowercase()), vec![(U.to_lowercase(), None, None, None, None)], "is not in upper case as Arq writes it"),
            ("not a status line", "Bob's Mac".into(), vec![], "row 2: \"Bob's Mac\" is not an arq-lockdown status line: left out"),
            ("a huge cell", format!("locked-down computer={} bucket=fleet.example", "A".repeat(1_000_000)), vec![], "is not a UUID"),
            ("text after the fields is never read", format!("locked-down computer={U} bucket=fleet.example; key=AKIAEXAMPLE000000009 computer={V}"), vec![(U.into(), None, None, None, None)], ""),
        ];
        for (name, cell, expected, warning) in cases {
            let text = format!("Arq\n{cell}\n{good}\n");
            let inventory = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut expected = expected;
            expected.push((V.into(), some("AKIAEXAMPLE000000002"), some(OTHER), None, None));
            assert_eq!(seen(&inventory), expected, "{name}");
            match warning {
                "" => assert!(inventory.warnings.is_empty(), "{name}: {:?}", inventory.warnings),
                _ => assert!(inventory.warnings.len() == 1 && inventory.warnings[0].contains(warning) && inventory.warnings[0].len() < 200, "{name}: {:?}", inventory.warnings),
            }
        }
    }

    #[test]
    #[rustfmt::skip]
    fn a_file_that_is_no_export_is_one_error() {
        let line = ea("locked-down", U, "AKIAEXAMPLE000000001", PRINT);
        let cases: Vec<(&str, String, Option<&str>, &str)> = vec![
            ("empty", String::new(), None, "is empty"),
            ("blank", " \n\n".into(), None, "is empty"),
            ("no status column", "Computer Name,Serial Number\nVic's Mac,C02VIC\n".into(), None, "no column of the inventory inventory.csv holds arq-lockdown status lines"),
            ("binary junk", "\u{0}\u{1}not,a\ncsv\"".into(), None, "no column"),
            ("two status columns", format!("Old,New\n{line},{line}\n"), None, "several columns of the inventory inventory.csv hold arq-lockdown status lines (\"Old\", \"New\")"),
            ("a column named that is not there", format!("Arq\n{line}\n"), Some("Arq Lockdown"), "has no column \"Arq Lockdown\" (it has \"Arq\")"),
            ("broken JSON", "[{\"computer_uuid\": ".into(), None, "is not JSON"),
        ];
        for (name, text, column, message) in cases {
            let error = Inventory::parse(text.as_bytes(), column, "inventory.csv").expect_err(name);
            assert!(error.to_string().contains(message), "{name}: {error}");
            assert_eq!(error.to_string().lines().count(), 1, "{name}");
            assert_eq!(error.exit_code(), ExitCode::ConfigInvalid);
        }
        // The column named picks one of two.
        let two = format!("Old,New\n{},{line}\n", ea("locked-down", V, "AKIAEXAMPLE000000002", OTHER));
        let picked = Inventory::parse(two.as_bytes(), Some("New"), "x").unwrap();
        assert_eq!(picked.records[0].computer_uuid.as_str(), U);
    }

    #[test]
    fn json_items_that_are_not_status_objects_are_warnings() {
        let text = format!(
            "[1, \"x\", {{\"computer_uuid\": 7}}, {{\"computer_uuid\": \"{U}\", \"bucket\": \"fleet.example\"}}]"
        );
        let inventory = parse(&text).unwrap();
        assert_eq!(inventory.records.len(), 1);
        assert_eq!(
            inventory.warnings,
            [
                "object 1: not a status object: left out",
                "object 2: not a status object: left out"
            ]
        );
        assert_eq!(inventory.without_computer, 1, "a number is not a computer");
        let lines = format!(
            "{{\"computer_uuid\": \"{U}\", \"bucket\": \"fleet.example\"}}\n{{not json}}\n"
        );
        let inventory = parse(&lines).unwrap();
        assert_eq!(inventory.records.len(), 1);
        assert!(inventory.warnings[0].starts_with("line 2: not JSON"));
    }

    #[test]
    #[rustfmt::skip]
    fn rows_for_one_computer_are_one_mac_or_several() {
        let row = |serial: &str, key: &str, print: &str| format!("Mac,{serial},{}\n", ea("locked-down", U, key, print));
        let cases: Vec<(&str, String, usize, usize)> = vec![
            ("one row", row("C1", "AKIAEXAMPLE000000001", PRINT), 1, 0),
            ("the same Mac listed twice", row("C1", "AKIAEXAMPLE000000001", PRINT) + &row("C1", "AKIAEXAMPLE000000001", PRINT), 1, 1),
            ("two serials, two enrollment keys", row("C1", "AKIAEXAMPLE000000001", PRINT) + &row("C2", "AKIAEXAMPLE000000001", OTHER), 2, 0),
            ("two serials, one keychain (Migration Assistant)", row("C1", "AKIAEXAMPLE000000001", PRINT) + &row("C2", "AKIAEXAMPLE000000001", PRINT), 2, 0),
            ("one serial, two enrollment keys", row("C1", "AKIAEXAMPLE000000001", PRINT) + &row("C1", "AKIAEXAMPLE000000001", OTHER), 2, 0),
            ("no serials, the same report", row("", "AKIAEXAMPLE000000001", PRINT) + &row("", "AKIAEXAMPLE000000001", PRINT), 1, 1),
            ("no serials, other keys", row("", "AKIAEXAMPLE000000001", PRINT) + &row("", "AKIAEXAMPLE000000002", PRINT), 2, 0),
            ("upper and lower case: one IAM user", row("C1", "AKIAEXAMPLE000000001", PRINT) + &format!("Mac,C2,{}\n", ea("locked-down", &U.to_lowercase(), "AKIAEXAMPLE000000003", OTHER)), 2, 0),
            ("another bucket is another computer", row("C1", "AKIAEXAMPLE000000001", PRINT) + &format!("Mac,C2,locked-down computer={U} bucket=other.example\n"), 1, 0),
        ];
        for (name, rows, macs, duplicates) in cases {
            let inventory = parse(&format!("Computer Name,Serial Number,Arq\n{rows}")).unwrap();
            let by_computer = inventory.macs_by_computer(&bucket());
            assert_eq!(by_computer.len(), 1, "{name}");
            assert_eq!(by_computer[U].len(), macs, "{name}");
            assert_eq!(inventory.duplicates(&bucket()).len(), duplicates, "{name}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn an_extension_attribute_line_is_its_state_and_fields() {
        let fields = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>();
        type Parsed<'a> = Option<(&'a str, BTreeMap<String, String>)>;
        let cases: Vec<(&str, Parsed)> = vec![
            ("locked-down key=AKIA1 computer=U bucket=b", Some(("locked-down", fields(&[("key", "AKIA1"), ("computer", "U"), ("bucket", "b")])))),
            ("<result>claimed-by-another-mac computer=U; claimed by another Mac - tell your admin</result>", Some(("claimed-by-another-mac", fields(&[("computer", "U")])))),
            ("not-locked-down seen=last-login future=x; a=b", Some(("not-locked-down", fields(&[("seen", "last-login"), ("future", "x")])))),
            ("error: HOME is not set", Some(("error", fields(&[])))),
            ("  locked-down   key=A  ", Some(("locked-down", fields(&[("key", "A")])))),
            ("locked-down =x key=", Some(("locked-down", fields(&[("key", "")])))),
            ("Locked-Down key=A", None),
            ("", None),
            ("<result></result>", None),
            ("123 key=A", None),
        ];
        for (text, expected) in cases {
            let parsed = parse_line(text);
            let expected = expected.map(|(state, fields)| Line { state: state.to_owned(), fields });
            assert_eq!(parsed, expected, "{text:?}");
        }
    }

    #[test]
    fn fingerprints_have_the_shape_the_enrollment_key_gives() {
        let real = crate::protocol::enrollment::fingerprint(
            &crate::protocol::enrollment::EnrollmentKey::generate().public(),
        )
        .unwrap();
        assert!(is_fingerprint(&real) && is_fingerprint(PRINT));
        for junk in [
            "",
            "SHA256:",
            "sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "SHA256:47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU",
        ] {
            assert!(!is_fingerprint(junk), "{junk:?}");
        }
    }

    #[test]
    fn no_input_makes_it_panic_and_a_huge_file_is_refused_unread() {
        // A small deterministic generator: bytes of every kind, commas, quotes, braces, newlines.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let alphabet = b",;\"\n\r\t{}[]:=<>/ aZ09-\x00\xff\xc3";
        for _ in 0..500 {
            let length = (state % 300) as usize;
            let bytes: Vec<u8> = (0..length)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    alphabet[(state >> 33) as usize % alphabet.len()]
                })
                .collect();
            let _ = Inventory::parse(&bytes, None, "x");
            let _ = Inventory::parse(&bytes, Some("x"), "x");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.csv");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(MAX_INVENTORY_BYTES + 1)
            .unwrap();
        let error = Inventory::read(&path, None).unwrap_err();
        assert!(matches!(error, InventoryError::TooLarge { .. }), "{error}");
        let error = Inventory::read(&dir.path().join("missing.csv"), None).unwrap_err();
        assert!(
            error.to_string().starts_with("cannot read the inventory"),
            "{error}"
        );
    }

    #[test]
    fn warnings_beyond_a_hundred_are_counted() {
        let rows = "x computer=junk\n".repeat(150);
        let text = format!(
            "Arq\n{rows}{}\n",
            ea("locked-down", U, "AKIAEXAMPLE000000001", PRINT)
        );
        let inventory = parse(&text).unwrap();
        assert_eq!(
            (inventory.warnings.len(), inventory.warnings_left_out),
            (100, 50)
        );
    }
}
