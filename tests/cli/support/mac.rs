//! A Mac as `apply` meets it.

use std::process::{Command, Output};

use serde_json::Value;

use super::*;

/// Tests that start processes named "Arq" hold this for writing ([`arq_may_run`]); every test
/// that runs `apply` holds it for reading ([`no_arq_running`]), since those processes would
/// (rightly) stop its runs with exit 7.
static ARQ_PROCESSES: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Held while a test runs `apply`: no test's stand-in Arq processes run meanwhile.
pub fn no_arq_running() -> std::sync::RwLockReadGuard<'static, ()> {
    ARQ_PROCESSES.read().unwrap_or_else(|e| e.into_inner())
}

/// Held while a test runs stand-in Arq processes: no other test runs `apply` meanwhile.
pub fn arq_may_run() -> std::sync::RwLockWriteGuard<'static, ()> {
    ARQ_PROCESSES.write().unwrap_or_else(|e| e.into_inner())
}

/// A Mac as `apply` meets it: an Arq home for a fresh computer UUID, "Arq S3" holding the fleet's
/// main keys, and a relaunch command that leaves a mark.
pub struct Mac {
    pub uuid: String,
    pub home: ArqHome,
    pub store: String,
    store_dir: tempfile::TempDir,
}

impl Mac {
    pub fn new() -> Self {
        Self::with_uuid(&fresh_uuid())
    }

    /// A Mac whose Arq config names `uuid` (two Macs may claim one UUID).
    pub fn with_uuid(uuid: &str) -> Self {
        Self::in_bucket(BUCKET, uuid, &moto().admin)
    }

    /// A Mac of another fleet: Arq backs up to `bucket` as `uuid`, with `main` in "Arq S3".
    pub fn in_bucket(bucket: &str, uuid: &str, main: &Key) -> Self {
        let uuid = uuid.to_owned();
        let home = ArqHome::with(bucket, &uuid);
        std::fs::create_dir_all(home.path().join("Library/Logs")).unwrap();
        let (store_dir, store) = file_store(main);
        let launcher = store_dir.path().join("launch-arq");
        std::fs::write(
            &launcher,
            format!(
                "#!/bin/sh\necho launched >> '{}'\n",
                store_dir.path().join("launches").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(
            &launcher,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        Self {
            uuid,
            home,
            store,
            store_dir,
        }
    }

    /// `arq-lockdown apply --source service` for this Mac, with the test service.
    pub fn apply_via_service(&self, serial: &str) -> Command {
        let mut command = self.apply_via(&service().url);
        command.args(["--serial-number", serial]);
        command
    }

    /// `arq-lockdown apply --source service` for this Mac, with the service at `url`.
    pub fn apply_via(&self, url: &str) -> Command {
        let mut command = self.apply();
        command.args([
            "--source",
            "service",
            "--service-url",
            url,
            "--service-id",
            SERVER_ID,
        ]);
        command
    }

    /// `arq-lockdown apply` for this Mac, pointed at moto.
    pub fn apply(&self) -> Command {
        let mut command = arq_lockdown_on_moto();
        command
            .arg("apply")
            .arg("--arq-home")
            .arg(self.home.path())
            .args(["--credential-store", &self.store])
            .arg("--relaunch-command")
            .arg(self.store_dir.path().join("launch-arq"))
            .args(["--verify-timeout", "5"]);
        command
    }

    /// Runs `apply` plus `extra`, checking that neither the old nor the new "Arq S3" secret shows
    /// in what it printed or left in the home folder.
    pub fn run_apply(&self, extra: &[&str]) -> Output {
        let before = self.key();
        let output = run(self.apply().args(extra));
        let after = self.key();
        assert_no_secret(&output, &[&before.secret, &after.secret]);
        self.assert_no_secret_left(&[&before.secret]);
        output
    }

    /// Fails when a file in the home folder (receipt, log) holds the secret in "Arq S3", one of
    /// `secrets`, or anything shaped like a secret.
    pub fn assert_no_secret_left(&self, secrets: &[&str]) {
        let now = self.key();
        let mut all = secrets.to_vec();
        all.push(&now.secret);
        assert_no_secret_in_files(self.home.path(), &all);
    }

    /// The key in "Arq S3" now.
    pub fn key(&self) -> Key {
        let text = std::fs::read_to_string(self.store_dir.path().join("keychain.json")).unwrap();
        let item: Value = serde_json::from_str(&text).unwrap();
        Key {
            id: item["Arq S3"]["account"].as_str().unwrap().into(),
            secret: item["Arq S3"]["password"].as_str().unwrap().into(),
        }
    }

    /// The enrollment key `apply --source service` keeps beside "Arq S3".
    pub fn enrollment_key(&self) -> arq_lockdown::protocol::enrollment::EnrollmentKey {
        let text = std::fs::read_to_string(self.store_dir.path().join("keychain.json")).unwrap();
        let items: Value = serde_json::from_str(&text).unwrap();
        let stored = items["arq-lockdown enrollment key"]["password"]
            .as_str()
            .unwrap();
        arq_lockdown::protocol::enrollment::EnrollmentKey::from_stored(
            arq_lockdown::secret::Secret::new(stored.to_owned()),
        )
        .unwrap()
    }

    /// How often "Arq S3"'s secret was read (each a dialog on a Mac) and the item written (each a
    /// keychain-password dialog when Arq next reads it), from the file store's access log.
    pub fn keychain_access(&self) -> (usize, usize) {
        (
            self.keychain_log_count("read-secret "),
            self.keychain_log_count("write "),
        )
    }

    /// How often the user answered "Deny" to the dialog, from the file store's access log.
    pub fn keychain_denials(&self) -> usize {
        self.keychain_log_count("denied-secret ")
    }

    fn keychain_log_count(&self, what: &str) -> usize {
        let log = std::fs::read_to_string(self.store_dir.path().join("keychain.json.access-log"))
            .unwrap_or_default();
        log.lines().filter(|l| l.starts_with(what)).count()
    }

    /// Makes the user answer "Deny" to every dialog for the secret of "Arq S3" (`true`), or
    /// "Allow" again (`false`): the file store's model of the Keychain's dialog.
    pub fn user_denies_the_dialog(&self, denies: bool) {
        let path = self.store_dir.path().join("keychain.json");
        let mut items: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        match denies {
            true => items["Arq S3"]["deny-read"] = Value::Bool(true),
            false => drop(items["Arq S3"].as_object_mut().unwrap().remove("deny-read")),
        }
        std::fs::write(path, items.to_string()).unwrap();
    }

    /// Gives the Mac's home folder and keychain to `uid` (root tests that act for a user).
    pub fn give_to(&self, uid: u32) {
        for dir in [self.home.path(), self.store_dir.path()] {
            for (path, _, _) in snapshot(dir).into_iter().chain([(
                dir.to_owned(),
                0,
                std::time::SystemTime::UNIX_EPOCH,
            )]) {
                std::os::unix::fs::lchown(&path, Some(uid), Some(uid)).unwrap();
            }
        }
    }

    /// Forgets the access log, so that the next run's reads and writes can be counted alone.
    pub fn reset_keychain_access(&self) {
        let _ = std::fs::remove_file(self.store_dir.path().join("keychain.json.access-log"));
    }

    /// Puts `key` into "Arq S3", as if Arq had been set up with it (other items stay).
    pub fn set_key(&self, key: &Key) {
        let path = self.store_dir.path().join("keychain.json");
        let mut items: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        items["Arq S3"] = serde_json::json!({"account": key.id, "password": key.secret});
        std::fs::write(path, items.to_string()).unwrap();
    }

    /// Removes "Arq S3" from the store (other items stay).
    pub fn remove_arq_s3(&self) {
        let path = self.store_dir.path().join("keychain.json");
        let mut items: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        items.as_object_mut().unwrap().remove("Arq S3");
        std::fs::write(path, items.to_string()).unwrap();
    }

    pub fn launches(&self) -> usize {
        std::fs::read_to_string(self.store_dir.path().join("launches"))
            .map_or(0, |t| t.lines().count())
    }

    /// `verify` with the key in "Arq S3": the exit code.
    pub fn verify(&self) -> ExitCode {
        exit_code(&run(arq_lockdown_on_moto()
            .arg("verify")
            .arg("--arq-home")
            .arg(self.home.path())
            .args(["--credential-store", &self.store])))
    }
}
