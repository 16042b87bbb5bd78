//! The small files this tool reads and writes in a user's home or /Library — Arq's config, the
//! receipt, the log, the file store, preference files — none of which it trusts.
//!
//! Every path is walked one component at a time from a folder handle (`openat`), so what is
//! checked is what is used: nothing is looked at by path and then opened again. A symlink is
//! followed only when nobody else could have made or changed it — it belongs to root or to this
//! process's user, in a folder that belongs to one of them and that nobody else may write to
//! (root's `/var` and `/tmp` on a Mac). As root that means no symlink a user made is ever
//! followed, anywhere on the way. What was opened is then checked on the handle (`fstat`):
//! - a file read ([`read_small_file`]) must be a regular file with no other name (a hard link
//!   could be any file of the volume — macOS lets a user link files they do not own), owned by
//!   root, this user or the owner of its folder; it is opened without blocking (a FIFO in its
//!   place cannot hang a run) and read up to a size cap;
//! - a file written ([`write_atomically`], [`Dir::append`]) is a temporary file created new
//!   beside it, fsync, rename over the target, fsync the folder (readers see the old or the new
//!   contents, never a mix); a log appended to must be a regular file with no other name;
//! - as root, files and folders ([`Dir::create`]) are made only in root's own folders, and a
//!   file appended to must be root's (other users write where the system lets them).
//!
//! So root writes nothing in a folder of a user's, and reads nothing a user pointed it at.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// How many symlinks one walk may follow (as the kernel's own limit, roughly).
const MAX_LINKS: usize = 32;

/// Why a path was not used although it may exist: following or using it would let someone else
/// choose what this process reads or writes.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(
        "refusing to follow {path}: it is a symlink someone else could have made or changed; remove it, or run as the user it belongs to"
    )]
    Link { path: PathBuf },
    #[error(
        "refusing {path}: it belongs to another user (uid {owner}); run as the user it belongs to"
    )]
    Owner { path: PathBuf, owner: u32 },
    #[error(
        "refusing {path}: it has other names (hard links), which could be a file anywhere on the volume; replace it with a copy"
    )]
    HardLinks { path: PathBuf },
    #[error(
        "refusing to write in {path}: the folder belongs to another user (uid {owner}); run as the user it belongs to"
    )]
    Folder { path: PathBuf, owner: u32 },
    #[error("refusing {path}: it goes up a folder (\"..\"); give the path without it")]
    Parent { path: PathBuf },
}

/// A failed walk or open: the system's error, or a refusal.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Refused(#[from] Refusal),
}

impl From<FsError> for io::Error {
    fn from(error: FsError) -> Self {
        match error {
            FsError::Io(e) => e,
            FsError::Refused(refusal) => io::Error::new(io::ErrorKind::PermissionDenied, refusal),
        }
    }
}

/// Why a small file could not be read.
#[derive(Debug)]
pub enum ReadError {
    NotFound,
    /// A folder, a FIFO, a device: anything but a regular file.
    NotAFile,
    /// Larger than the cap.
    TooLarge,
    Refused(Refusal),
    Io(io::Error),
}

impl From<FsError> for ReadError {
    fn from(error: FsError) -> Self {
        match error {
            FsError::Io(e) if e.kind() == io::ErrorKind::NotFound => Self::NotFound,
            FsError::Io(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Self::NotFound,
            FsError::Io(e) => Self::Io(e),
            FsError::Refused(refusal) => Self::Refused(refusal),
        }
    }
}

/// An open folder, reached by the rules above; `path` is for messages only.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Reads `path` if it is a regular file of at most `max_bytes` (see the module's rules).
pub fn read_small_file(path: &Path, max_bytes: u64) -> Result<Vec<u8>, ReadError> {
    let (dir, name) = Dir::parent_of(path)?;
    let (file, stat) = dir.open_file(&name, libc::O_RDONLY, 0, Follow::Trusted)?;
    if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(ReadError::NotAFile);
    }
    if stat.st_nlink != 1 {
        return Err(ReadError::Refused(Refusal::HardLinks {
            path: path.to_owned(),
        }));
    }
    let folder_owner = dir.stat().map_err(ReadError::Io)?.st_uid;
    if ![0, effective_uid(), folder_owner].contains(&stat.st_uid) {
        return Err(ReadError::Refused(Refusal::Owner {
            path: path.to_owned(),
            owner: stat.st_uid,
        }));
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

/// Replaces `path` with `contents`, created with `mode` (as root: only in a folder of root's).
pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let (dir, name) = Dir::parent_of(path)?;
    dir.check_writable()?;
    let mut temporary = OsString::from(".");
    temporary.push(&name);
    temporary.push(format!(".{}.tmp", std::process::id()));
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
    let result = (|| {
        let (mut file, _) = dir.open_file(&temporary, flags, mode, Follow::Never)?;
        file.write_all(contents)?;
        file.sync_all()?;
        dir.rename(&temporary, &name)?;
        dir.sync()
    })();
    if result.is_err() {
        let _ = dir.remove(&temporary);
    }
    result
}

/// Removes the file `path` names (a symlink there is removed, not followed); none is fine.
pub fn remove_file(path: &Path) -> io::Result<()> {
    match Dir::parent_of(path) {
        Ok((dir, name)) => dir.remove(&name),
        Err(FsError::Io(e)) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Walks as much of `path` as exists, refusing where the walk would follow a link it must not:
/// an early, clear refusal before work that ends in writing there (the write itself walks again
/// by the same rules).
pub fn refuse_untrusted_links(path: &Path) -> Result<(), Refusal> {
    match Dir::walk(path, Missing::Stop) {
        Err(FsError::Refused(refusal)) => Err(refusal),
        _ => Ok(()),
    }
}

/// Whether a symlink at the end of a walk may be followed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Follow {
    Trusted,
    Never,
}

/// What a walk does at a folder that does not exist.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Missing {
    Fail,
    /// Stop there (with the deepest folder that exists).
    Stop,
    /// Make it (mode); as root, only inside a folder of root's.
    Create(u32),
}

impl Dir {
    /// The folder `path` names.
    pub fn open(path: &Path) -> Result<Self, FsError> {
        Self::walk(path, Missing::Fail)
    }

    /// The folder `path` names, made (with `mode`) where it is missing (as root: only inside
    /// root's folders).
    pub fn create(path: &Path, mode: u32) -> Result<Self, FsError> {
        Self::walk(path, Missing::Create(mode))
    }

    /// The uid that owns this folder.
    pub fn owner(&self) -> io::Result<u32> {
        Ok(self.stat()?.st_uid)
    }

    /// The folder's handle, for `flock` (the run lock).
    pub fn into_file(self) -> File {
        File::from(self.fd)
    }

    /// Opens (creating, with `mode`) the file `name` in this folder for appending (and reading
    /// back): a regular file with no other name (as root: root's, in a folder of root's).
    pub fn append(&self, name: &str, mode: u32) -> io::Result<File> {
        self.check_writable()?;
        let flags = libc::O_RDWR | libc::O_APPEND | libc::O_CREAT;
        let (file, stat) = self.open_file(OsStr::new(name), flags, mode, Follow::Never)?;
        let path = self.path.join(name);
        if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        if stat.st_nlink != 1 {
            return Err(FsError::from(Refusal::HardLinks { path }).into());
        }
        if effective_uid() == 0 && stat.st_uid != 0 {
            let owner = stat.st_uid;
            return Err(FsError::from(Refusal::Owner { path, owner }).into());
        }
        Ok(file)
    }

    /// Renames `from` to `to` within this folder (replacing `to`).
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        let (from, to) = (c_name(from)?, c_name(to)?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: both names are NUL-terminated and outlive the call; fd is an open folder.
        check(unsafe { libc::renameat(fd, from.as_ptr(), fd, to.as_ptr()) }).map(drop)
    }

    /// The folder's owner and mode (and the rest of `stat`), from its handle.
    fn stat(&self) -> io::Result<libc::stat> {
        fstat(&self.fd)
    }

    fn sync(&self) -> io::Result<()> {
        // SAFETY: fsync on an open descriptor.
        check(unsafe { libc::fsync(self.fd.as_raw_fd()) }).map(drop)
    }

    fn remove(&self, name: &OsStr) -> io::Result<()> {
        let name = c_name(name)?;
        // SAFETY: a NUL-terminated name and an open folder.
        match check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), name.as_ptr(), 0) }) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other.map(drop),
        }
    }

    /// Root writes only in root's folders (other users where the system lets them).
    fn check_writable(&self) -> Result<(), FsError> {
        let owner = self.owner()?;
        if effective_uid() == 0 && owner != 0 {
            let path = self.path.clone();
            return Err(Refusal::Folder { path, owner }.into());
        }
        Ok(())
    }

    /// The folder holding what `path` names, and that name.
    fn parent_of(path: &Path) -> Result<(Self, OsString), FsError> {
        let (folder, name) = split(path)?;
        Ok((Self::walk(&folder, Missing::Fail)?, name))
    }

    /// Opens `name` here with `flags`, never through a symlink — unless `follow` lets a trusted
    /// one be followed: then its target is walked from this folder by the same rules.
    fn open_file(
        &self,
        name: &OsStr,
        flags: libc::c_int,
        mode: u32,
        follow: Follow,
    ) -> Result<(File, libc::stat), FsError> {
        let flags = flags | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
        let (mut dir, mut name) = (self.dup()?, name.to_owned());
        for _ in 0..MAX_LINKS {
            match dir.openat(&name, flags, mode) {
                Ok(fd) => {
                    let stat = fstat(&fd)?;
                    return Ok((File::from(fd), stat));
                }
                Err(e) if is_link_error(&e) && dir.is_link(&name) => {
                    if follow == Follow::Never {
                        let path = dir.path.join(&name);
                        return Err(Refusal::Link { path }.into());
                    }
                    let (folder, last) = split(&dir.trusted_link(&name)?)?;
                    dir = dir.walk_from(&folder, Missing::Fail)?;
                    name = last;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(io::Error::from_raw_os_error(libc::ELOOP).into())
    }

    /// Walks `path` from `/` (or the working folder) one folder at a time.
    fn walk(path: &Path, missing: Missing) -> Result<Self, FsError> {
        // An absolute path starts over at `/` by itself (its first name is the root folder).
        let dir = Self {
            fd: open_path(".")?,
            path: PathBuf::new(),
        };
        dir.walk_from(path, missing)
    }

    /// Walks `path` from this folder (from `/` where it is absolute), one folder at a time,
    /// following only trusted symlinks; `missing` says what to do where a folder is missing.
    fn walk_from(self, path: &Path, missing: Missing) -> Result<Self, FsError> {
        let mut pending: Vec<OsString> = Vec::new();
        push_components(&mut pending, path)?;
        let (mut dir, mut links) = (self, 0);
        while let Some(name) = pending.pop() {
            if name.is_empty() {
                dir = Self {
                    fd: open_path("/")?,
                    path: PathBuf::from("/"),
                };
                continue;
            }
            let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
            match dir.openat(&name, flags, 0) {
                Ok(fd) => dir = dir.into_child(fd, &name),
                Err(e) if is_link_error(&e) && dir.is_link(&name) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP).into());
                    }
                    push_components(&mut pending, &dir.trusted_link(&name)?)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => match missing {
                    Missing::Fail => return Err(e.into()),
                    Missing::Stop => return Ok(dir),
                    Missing::Create(mode) => {
                        dir.check_writable()?;
                        dir.mkdir(&name, mode)?;
                        pending.push(name);
                    }
                },
                Err(e) => return Err(e.into()),
            }
        }
        Ok(dir)
    }

    /// The target of the symlink `name` here, if it may be followed; else the refusal.
    fn trusted_link(&self, name: &OsStr) -> Result<PathBuf, FsError> {
        let folder = self.stat()?;
        let link = fstatat_link(&self.fd, name)?;
        let ours = |uid: u32| uid == 0 || uid == effective_uid();
        let closed = folder.st_mode & 0o022 == 0 || folder.st_mode & libc::S_ISVTX != 0;
        if !(ours(link.st_uid) && ours(folder.st_uid) && closed) {
            let path = self.path.join(name);
            return Err(Refusal::Link { path }.into());
        }
        Ok(readlinkat(&self.fd, name)?)
    }

    fn into_child(self, fd: OwnedFd, name: &OsStr) -> Self {
        Self {
            fd,
            path: self.path.join(name),
        }
    }

    fn dup(&self) -> io::Result<Self> {
        Ok(Self {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
        })
    }

    fn is_link(&self, name: &OsStr) -> bool {
        fstatat_link(&self.fd, name).is_ok_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFLNK)
    }

    fn openat(&self, name: &OsStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
        let name = c_name(name)?;
        let flags = flags | libc::O_CLOEXEC;
        // SAFETY: a NUL-terminated name, an open folder; the result is a new descriptor we own.
        let fd = check(unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                flags,
                mode as libc::c_uint,
            )
        })?;
        // SAFETY: openat returned a fresh descriptor.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn mkdir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        let name = c_name(name)?;
        // SAFETY: a NUL-terminated name and an open folder.
        match check(unsafe {
            libc::mkdirat(self.fd.as_raw_fd(), name.as_ptr(), mode as libc::mode_t)
        }) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            other => other.map(drop),
        }
    }
}

/// What `path` names: its folder (`.` when it has none) and its last name.
fn split(path: &Path) -> Result<(PathBuf, OsString), FsError> {
    match path.components().next_back() {
        Some(Component::Normal(name)) => {
            let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
            Ok((folder.unwrap_or(Path::new(".")).to_owned(), name.to_owned()))
        }
        Some(Component::ParentDir) => Err(parent_refused(path)),
        _ => Err(io::Error::from_raw_os_error(libc::EISDIR).into()),
    }
}

/// Pushes `path`'s names onto `pending` in reverse (the next name last); an empty name stands
/// for the root folder.
fn push_components(pending: &mut Vec<OsString>, path: &Path) -> Result<(), FsError> {
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir => names.push(OsString::new()),
            Component::Normal(name) => names.push(name.to_owned()),
            Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return Err(parent_refused(path)),
        }
    }
    pending.extend(names.into_iter().rev());
    Ok(())
}

fn parent_refused(path: &Path) -> FsError {
    Refusal::Parent {
        path: path.to_owned(),
    }
    .into()
}

/// The errors `openat` with `O_NOFOLLOW` gives for a symlink (ELOOP; with `O_DIRECTORY` some
/// systems say ENOTDIR; FreeBSD's EMLINK).
fn is_link_error(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ELOOP | libc::ENOTDIR | libc::EMLINK)
    )
}

fn open_path(path: &str) -> io::Result<OwnedFd> {
    let path = CString::new(path).expect("no NUL");
    // SAFETY: a NUL-terminated path; the result is a new descriptor we own.
    let fd = check(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: open returned a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: stat is plain data; fstat fills it for an open descriptor.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) })?;
    Ok(stat)
}

fn fstatat_link(dir: &OwnedFd, name: &OsStr) -> io::Result<libc::stat> {
    let name = c_name(name)?;
    // SAFETY: as in fstat, for a NUL-terminated name in an open folder.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut stat,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(stat)
}

fn readlinkat(dir: &OwnedFd, name: &OsStr) -> io::Result<PathBuf> {
    let name = c_name(name)?;
    let mut buffer = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: the buffer is valid for its whole length; readlinkat writes at most that much.
    let length = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
        )
    };
    let length = usize::try_from(length).map_err(|_| io::Error::last_os_error())?;
    buffer.truncate(length);
    Ok(PathBuf::from(OsStr::from_bytes(&buffer)))
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

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
            read_small_file(&file.join("below-a-file"), 5),
            Err(ReadError::NotFound)
        ));
        assert!(matches!(
            read_small_file(dir.path(), 5),
            Err(ReadError::NotAFile)
        ));
        let fifo = dir.path().join("fifo");
        let name = CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        assert!(
            matches!(read_small_file(&fifo, 5), Err(ReadError::NotAFile)),
            "a FIFO must not hang the read"
        );
    }

    /// A folder anyone may write to: a symlink in it could be anyone's doing.
    fn open_to_all() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        dir
    }

    #[test]
    fn a_symlink_is_followed_only_where_nobody_else_could_have_changed_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.path().join("target"), b"ours").unwrap();
        symlink("target", dir.path().join("link")).unwrap();
        fs::create_dir(dir.path().join("folder")).unwrap();
        fs::write(dir.path().join("folder/file"), b"below").unwrap();
        symlink(dir.path().join("folder"), dir.path().join("folder-link")).unwrap();
        assert_eq!(
            read_small_file(&dir.path().join("link"), 9).unwrap(),
            b"ours"
        );
        assert_eq!(
            read_small_file(&dir.path().join("folder-link/file"), 9).unwrap(),
            b"below"
        );
        // The same links in a folder others may write to are not followed, at the end or on
        // the way.
        let open = open_to_all();
        fs::write(open.path().join("target"), b"ours").unwrap();
        symlink("target", open.path().join("link")).unwrap();
        symlink(dir.path().join("folder"), open.path().join("folder-link")).unwrap();
        for path in ["link", "folder-link/file"] {
            let error = read_small_file(&open.path().join(path), 9).unwrap_err();
            assert!(
                matches!(error, ReadError::Refused(Refusal::Link { .. })),
                "{path}: {error:?}"
            );
        }
        // A write replaces the link; what it pointed at stays as it was.
        write_atomically(&open.path().join("link"), b"new", 0o600).unwrap();
        assert_eq!(fs::read(open.path().join("target")).unwrap(), b"ours");
        assert!(
            !fs::symlink_metadata(open.path().join("link"))
                .unwrap()
                .is_symlink()
        );
        assert!(matches!(
            read_small_file(Path::new("/tmp/../etc/passwd"), 9),
            Err(ReadError::Refused(Refusal::Parent { .. }))
        ));
    }

    #[test]
    fn a_file_with_other_names_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("file"), b"x").unwrap();
        fs::hard_link(dir.path().join("file"), dir.path().join("second-name")).unwrap();
        assert!(matches!(
            read_small_file(&dir.path().join("second-name"), 9),
            Err(ReadError::Refused(Refusal::HardLinks { .. }))
        ));
        let appended = Dir::open(dir.path()).unwrap().append("file", 0o600);
        assert!(appended.is_err(), "appending to a file with two names");
    }

    /// The check-then-read race a user can run against root with `renameat2(RENAME_EXCHANGE)`:
    /// a regular file and a symlink to a secret swap names all the time; a read gets the file or
    /// a refusal, never the secret.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_symlink_swapped_in_while_reading_is_never_followed() {
        let secrets = tempfile::tempdir().unwrap();
        fs::write(secrets.path().join("secret"), b"secret").unwrap();
        let open = open_to_all();
        let (file, swap) = (open.path().join("file"), open.path().join("swap"));
        fs::write(&file, b"plain").unwrap();
        symlink(secrets.path().join("secret"), &swap).unwrap();
        let (a, b) = (
            CString::new(file.as_os_str().as_bytes()).unwrap(),
            CString::new(swap.as_os_str().as_bytes()).unwrap(),
        );
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let racing = stop.clone();
        let racer = std::thread::spawn(move || {
            while !racing.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: two NUL-terminated paths; renameat2 exchanges the two names.
                unsafe {
                    libc::syscall(
                        libc::SYS_renameat2,
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
            }
        });
        let reads: Vec<_> = (0..5000).map(|_| read_small_file(&file, 99)).collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        racer.join().unwrap();
        assert!(
            !reads
                .iter()
                .any(|r| matches!(r, Ok(bytes) if bytes == b"secret")),
            "a read followed the swapped-in symlink"
        );
        assert!(
            reads
                .iter()
                .any(|r| matches!(r, Ok(bytes) if bytes == b"plain"))
        );
    }

    #[test]
    fn root_writes_only_into_roots_folders() {
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
        // As root, a folder of another user's (CI runs as root; other users write where the
        // system lets them).
        if effective_uid() != 0 {
            return;
        }
        let theirs = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(theirs.path(), Some(65534), Some(65534)).unwrap();
        let folder = theirs.path();
        let error = write_atomically(&folder.join("arq-lockdown-test"), b"x", 0o600).unwrap_err();
        assert!(
            error.to_string().contains("belongs to another user"),
            "{error}"
        );
        assert!(Dir::create(&folder.join("made"), 0o700).is_err());
        assert!(!folder.join("made").exists());
    }

    #[test]
    fn folders_are_made_as_far_as_missing_and_files_removed_without_following() {
        let dir = tempfile::tempdir().unwrap();
        let made = Dir::create(&dir.path().join("a/b/c"), 0o700).unwrap();
        assert!(dir.path().join("a/b/c").is_dir());
        let mut log = made.append("log", 0o600).unwrap();
        log.write_all(b"line\n").unwrap();
        assert_eq!(fs::read(dir.path().join("a/b/c/log")).unwrap(), b"line\n");
        symlink(dir.path().join("a/b/c/log"), dir.path().join("link")).unwrap();
        remove_file(&dir.path().join("link")).unwrap();
        assert!(
            dir.path().join("a/b/c/log").exists(),
            "the link's target went"
        );
        remove_file(&dir.path().join("none")).unwrap();
        remove_file(&dir.path().join("missing/none")).unwrap();
    }
}
