//! The MDM's side of a fleet: each Mac's extension-attribute line as `status --jamf-ea` prints it
//! there, and an inventory export holding those lines as Jamf's advanced search exports them (a
//! CSV with a header row, the attribute's value without its `<result>` tags — what Jamf stores).

use std::path::PathBuf;

use super::*;

/// The value a Jamf extension attribute stores for `mac`: what `status --jamf-ea` prints between
/// `<result>` and `</result>`.
pub fn jamf_ea(mac: &Mac) -> String {
    let output = run(arq_lockdown()
        .args(["status", "--jamf-ea", "--credential-store", &mac.store])
        .arg("--arq-home")
        .arg(mac.home.path()));
    assert_eq!(exit_code(&output), ExitCode::Success);
    let line = String::from_utf8_lossy(&output.stdout).into_owned();
    line.trim_end()
        .strip_prefix("<result>")
        .and_then(|l| l.strip_suffix("</result>"))
        .unwrap_or_else(|| panic!("not an extension attribute line: {line:?}"))
        .to_owned()
}

/// An inventory export in a file of its own.
pub struct InventoryFile {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl InventoryFile {
    /// A file holding `text` as it is.
    pub fn with(text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.csv");
        std::fs::write(&path, text).unwrap();
        Self { _dir: dir, path }
    }

    pub fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

/// Jamf's advanced-search export: one row per Mac (computer name, serial number, the extension
/// attribute "Arq Lockdown"), under a header row.
pub fn jamf_export(rows: &[(&str, &str, &str)]) -> InventoryFile {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(["Computer Name", "Serial Number", "Arq Lockdown"])
        .unwrap();
    for (name, serial, line) in rows {
        writer.write_record([name, serial, line]).unwrap();
    }
    InventoryFile::with(&String::from_utf8(writer.into_inner().unwrap()).unwrap())
}
