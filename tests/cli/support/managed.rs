//! A user whose configuration profile the test writes: `apply --managed` acts only on a profile,
//! and macOS puts a profile for a user at `/Library/Managed Preferences/<user>/org.arq-lockdown.plist`,
//! which `preferences` reads on Linux too. So a test makes a user of its own (root only: CI runs as
//! root), writes that file, gives the Mac's files to the user and runs the binary as them. One such
//! test at a time ([`ManagedUser::new`] holds a lock); everything is removed on drop.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use super::*;

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const MANAGED_PREFERENCES: &str = "/Library/Managed Preferences";

/// Whether this runs as root; CI runs as root, so there a test that would check nothing fails.
pub fn is_root_or_not_ci() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root || std::env::var_os("CI").is_none(),
        "CI must run the root tests as root"
    );
    if !root {
        eprintln!("not root: this test checks nothing here");
    }
    root
}

pub struct ManagedUser {
    pub name: String,
    pub uid: u32,
    made_library: bool,
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

impl ManagedUser {
    /// A new user (no home, no shell) with `profile` as their configuration profile.
    pub fn new(profile: &[(&str, plist::Value)]) -> Self {
        let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let name = format!("arqlt{}", std::process::id());
        let made = Command::new("useradd")
            .args(["--no-create-home", "--shell", "/usr/sbin/nologin", &name])
            .status()
            .unwrap();
        assert!(made.success(), "useradd {name}");
        let uid = arq_lockdown::session::user_by_name(&name).unwrap().uid;
        let made_library = !std::path::Path::new("/Library").exists();
        let user = Self {
            name,
            uid,
            made_library,
            _one_at_a_time: guard,
        };
        user.set_profile(profile);
        user
    }

    fn profile_dir(&self) -> PathBuf {
        PathBuf::from(MANAGED_PREFERENCES).join(&self.name)
    }

    /// Replaces the user's profile.
    pub fn set_profile(&self, profile: &[(&str, plist::Value)]) {
        std::fs::create_dir_all(self.profile_dir()).unwrap();
        let dict: plist::Dictionary = profile
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        plist::Value::Dictionary(dict)
            .to_file_xml(self.profile_dir().join("org.arq-lockdown.plist"))
            .unwrap();
    }

    /// `command`, run as this user; `mac`'s files become the user's.
    pub fn runs(&self, mac: &Mac, mut command: Command) -> Command {
        mac.give_to(self.uid);
        command.uid(self.uid).gid(self.uid);
        command
    }
}

impl Drop for ManagedUser {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.profile_dir());
        let _ = Command::new("userdel").arg(&self.name).status();
        if self.made_library {
            let _ = std::fs::remove_dir(MANAGED_PREFERENCES);
            let _ = std::fs::remove_dir("/Library");
        }
    }
}
