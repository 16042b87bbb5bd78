//! A local user who is not an admin, as root meets one on a Mac (root tests only: CI runs as
//! root, so `useradd` works): made for one test, removed when dropped. With it, what such a user
//! can do to root: swap files in a loop ([`Racer`]), listen where their AWS config points
//! ([`Listener`]), and the test can look into a process of theirs as they could ([`memory_holds`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// useradd and userdel lock /etc/passwd: one at a time.
static USER_DATABASE: Mutex<()> = Mutex::new(());

/// A throwaway local user whose home is a folder of the test's.
pub struct LocalUser {
    pub name: String,
    pub uid: u32,
}

impl LocalUser {
    /// A new user whose home is `home` (the folder and everything in it made theirs, and the
    /// folders above it passable, as /Users is).
    pub fn with_home(home: &Path) -> Self {
        let name = format!("arqlt-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        {
            let _database = USER_DATABASE.lock().unwrap_or_else(|e| e.into_inner());
            let status = Command::new("useradd")
                .args([
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    "--home-dir",
                ])
                .arg(home)
                .arg(&name)
                .status()
                .expect("run useradd");
            assert!(status.success(), "useradd {name}: {status}");
        }
        let uid = arq_lockdown::session::user_by_name(&name).unwrap().uid;
        chown_tree(home, uid);
        Self { name, uid }
    }

    /// `program` run as this user (runuser keeps the environment the test gives it).
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("runuser");
        command.args(["-u", &self.name, "--", program]);
        command
    }

    /// Writes `contents` to `path` as this user would: the file, and any folder made for it,
    /// theirs.
    pub fn write(&self, path: &Path, contents: &[u8]) {
        let mut missing = Vec::new();
        let mut folder = path.parent().unwrap();
        while !folder.exists() {
            missing.push(folder);
            folder = folder.parent().unwrap();
        }
        for folder in missing.into_iter().rev() {
            std::fs::create_dir(folder).unwrap();
            std::os::unix::fs::lchown(folder, Some(self.uid), Some(self.uid)).unwrap();
        }
        std::fs::write(path, contents).unwrap();
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.uid)).unwrap();
    }

    /// A symlink of this user's at `path`, pointing at `target`.
    pub fn symlink(&self, target: &Path, path: &Path) {
        std::os::unix::fs::symlink(target, path).unwrap();
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.uid)).unwrap();
    }

    /// The pids of this user's runs of arq-lockdown now.
    pub fn runs(&self) -> Vec<u32> {
        let binary = std::fs::canonicalize(env!("CARGO_BIN_EXE_arq-lockdown")).unwrap();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let proc = PathBuf::from(format!("/proc/{pid}"));
                std::fs::metadata(&proc).is_ok_and(|m| m.uid() == self.uid)
                    && std::fs::read_link(proc.join("exe")).is_ok_and(|exe| exe == binary)
            })
            .collect()
    }
}

impl Drop for LocalUser {
    fn drop(&mut self) {
        let _database = USER_DATABASE.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..200 {
            let left = Command::new("pkill")
                .args(["-KILL", "-u", &self.name])
                .status()
                .is_ok_and(|status| status.success());
            if !left {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// Makes `dir` and everything in it `uid`'s, and the folders above it passable by anyone.
fn chown_tree(dir: &Path, uid: u32) {
    for (path, _, _) in super::snapshot(dir) {
        std::os::unix::fs::lchown(&path, Some(uid), Some(uid)).unwrap();
    }
    std::os::unix::fs::lchown(dir, Some(uid), Some(uid)).unwrap();
    let mut above = dir.parent();
    while let Some(folder) = above.filter(|f| *f != Path::new("/")) {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(folder).unwrap().permissions().mode();
        std::fs::set_permissions(folder, std::fs::Permissions::from_mode(mode | 0o711)).unwrap();
        above = folder.parent();
    }
}

/// A user's process that swaps two names in a loop with `renameat2(RENAME_EXCHANGE)` — a
/// regular file and a symlink, say, so that whoever checks one name and then opens it meets the
/// other — until dropped.
pub struct Racer {
    child: Child,
}

impl Racer {
    pub fn start(user: &LocalUser, a: &Path, b: &Path) -> Self {
        const SCRIPT: &str = "import ctypes, os, sys\n\
            libc = ctypes.CDLL(None, use_errno=True)\n\
            a, b = (os.fsencode(p) for p in sys.argv[1:3])\n\
            if libc.renameat2(-100, a, -100, b, 2) != 0:\n\
            \x20   sys.exit('renameat2: ' + os.strerror(ctypes.get_errno()))\n\
            print('racing', flush=True)\n\
            while True:\n\
            \x20   libc.renameat2(-100, a, -100, b, 2)\n";
        let mut child = user
            .command("python3")
            .args(["-c", SCRIPT])
            .arg(a)
            .arg(b)
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start the racer");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "racing\n", "the racer did not start");
        Self { child }
    }
}

impl Drop for Racer {
    /// Stops the racer itself, not only runuser — the whole process group — and returns once
    /// none of it is left (no last swap after the test goes on).
    fn drop(&mut self) {
        let group = -(self.child.id() as libc::pid_t);
        // SAFETY: kill has no memory preconditions; the group is the racer's own.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
        // SAFETY: as above; signal 0 only asks whether the group still has a process.
        wait_until("the racer is gone", || unsafe { libc::kill(group, 0) } != 0);
    }
}

/// An HTTP listener a user runs where their `~/.aws/config` points: it records the head of every
/// request and refuses it at once (403, not retried).
pub struct Listener {
    pub endpoint: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Listener {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            for mut client in listener.incoming().map_while(Result::ok) {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
                    match client.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let body =
                    "<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>";
                let _ = write!(
                    client,
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { endpoint, requests }
    }

    /// The heads of the requests that arrived.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Whether the memory of process `pid` holds `needle` — what its user can read of it (ptrace on
/// Linux; on a Mac `task_for_pid`, which a hardened-runtime binary refuses to its user).
pub fn memory_holds(pid: u32, needle: &[u8]) -> bool {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return false;
    };
    let Ok(mut memory) = std::fs::File::open(format!("/proc/{pid}/mem")) else {
        return false;
    };
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        if !perms.starts_with('r') || end - start > 1 << 30 {
            continue;
        }
        use std::io::{Seek, SeekFrom};
        let mut region = vec![0u8; (end - start) as usize];
        if memory.seek(SeekFrom::Start(start)).is_ok()
            && memory.read_exact(&mut region).is_ok()
            && region.windows(needle.len()).any(|w| w == needle)
        {
            return true;
        }
    }
    false
}

/// Waits (polling, up to a minute) until `ready` says yes; fails naming `what` otherwise.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: never happened"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
