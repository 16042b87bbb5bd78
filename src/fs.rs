//! The small files this tool reads and writes in a user's home or /Library — Arq's config, the
//! receipt, the file store, preference files — none of which it trusts:
//! - [`read_small_file`]: opened without blocking (a FIFO in the file's place cannot hang a run),
//!   only a regular file counts, and only up to a size cap;
//! - [`write_atomically`]: a temporary file in the same folder (created new, never through a
//!   symlink, with the final mode), fsync, rename over the target, fsync the folder — readers see
//!   the old or the new contents, never a mix.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why a small file could not be read.
#[derive(Debug)]
pub enum ReadError {
    NotFound,
    /// A folder, a FIFO, a device: anything but a regular file.
    NotAFile,
    /// Larger than the cap.
    TooLarge,
    Io(io::Error),
}

/// Reads `path` if it is a regular file of at most `max_bytes`. Opened non-blocking and checked
/// on the open file, so nothing can be swapped in between the check and the read.
pub fn read_small_file(path: &Path, max_bytes: u64) -> Result<Vec<u8>, ReadError> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ReadError::NotFound,
            _ => ReadError::Io(e),
        })?;
    if !file.metadata().map_err(ReadError::Io)?.is_file() {
        return Err(ReadError::NotAFile);
    }
    let mut bytes = Vec::new();
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > max_bytes {
        zeroize::Zeroize::zeroize(&mut bytes);
        return Err(ReadError::TooLarge);
    }
    Ok(bytes)
}

/// Replaces `path` with `contents`, readable and writable by the owner only (`mode`).
pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let temporary = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temporary, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_regular_file_within_the_cap_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"12345").unwrap();
        assert_eq!(read_small_file(&file, 5).unwrap(), b"12345");
        assert!(matches!(
            read_small_file(&file, 4),
            Err(ReadError::TooLarge)
        ));
        assert!(matches!(
            read_small_file(&dir.path().join("none"), 5),
            Err(ReadError::NotFound)
        ));
        assert!(matches!(
            read_small_file(dir.path(), 5),
            Err(ReadError::NotAFile)
        ));
        let fifo = dir.path().join("fifo");
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        assert!(
            matches!(read_small_file(&fifo, 5), Err(ReadError::NotAFile)),
            "a FIFO must not hang the read"
        );
    }

    #[test]
    fn an_atomic_write_leaves_only_the_file_with_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"old").unwrap();
        write_atomically(&file, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
