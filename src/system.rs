//! Facts about this computer that are not Arq's: its name as people know it and its serial number.

/// The Mac's name as shown in Sharing settings ("Bob's MacBook Pro"), for the IAM user's tag;
/// `None` when it cannot be read.
///
/// Platform-specific: on macOS `scutil --get ComputerName`, falling back to the host name;
/// elsewhere the host name.
pub fn computer_name() -> Option<String> {
    #[cfg(target_os = "macos")]
    if let Ok(output) = std::process::Command::new("/usr/sbin/scutil")
        .args(["--get", "ComputerName"])
        .output()
    {
        let name = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if output.status.success() && !name.is_empty() {
            return Some(name);
        }
    }
    host_name()
}

fn host_name() -> Option<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname NUL-terminates within it or
    // truncates, and the length below never reads past the buffer.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    match (result, String::from_utf8_lossy(&buffer[..end]).trim()) {
        (0, name) if !name.is_empty() => Some(name.to_owned()),
        _ => None,
    }
}

/// The hardware serial number, for the IAM user's tag (informational: it proves nothing).
///
/// Platform-specific: on macOS `IOPlatformSerialNumber` from `ioreg`; elsewhere the DMI product
/// serial when readable, else the machine id; `None` when neither can be read.
pub fn serial_number() -> Option<String> {
    #[cfg(target_os = "macos")]
    if let Ok(output) = std::process::Command::new("/usr/sbin/ioreg")
        .args(["-rd1", "-c", "IOPlatformExpertDevice"])
        .output()
    {
        let text = String::from_utf8_lossy(&output.stdout);
        if let Some(serial) = text.lines().find_map(|line| {
            line.split_once("\"IOPlatformSerialNumber\" = \"")?
                .1
                .strip_suffix('"')
        }) {
            return Some(serial.to_owned());
        }
    }
    ["/sys/class/dmi/id/product_serial", "/etc/machine-id"]
        .iter()
        .find_map(|path| {
            std::fs::read_to_string(path)
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
}
