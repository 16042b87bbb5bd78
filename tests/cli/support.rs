//! Shared fixtures: one moto per test binary, sample Arq homes, file credential stores, and the
//! command builder that runs the binary with a clean AWS environment.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use arq_lockdown::protocol::enrollment::EnrollmentKey;
use arq_lockdown::protocol::sealed::ReplyKey;
use serde_json::Value;

pub const BUCKET: &str = "akiaexample.comhaystacksoftwarearq";
pub const THIS_COMPUTER: &str = "32D9D7A2-3B3E-4BE7-B85B-0605AF24F570";
pub const OTHER_COMPUTER: &str = "7A1E5C3B-9D2F-4E8A-B6C4-1F3D5E7A9B2C";

pub fn project_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tool(relative: &str) -> PathBuf {
    let path = project_root().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup first",
        path.display()
    );
    path
}

/// An access key pair handed out by the fixture.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    pub id: String,
    pub secret: String,
}

/// Only the id: a failing assertion must not print a secret either.
impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

static MOTO: OnceLock<Moto> = OnceLock::new();

/// The emulator and what the fixture seeded into it.
pub struct Moto {
    pub endpoint: String,
    /// The fleet's unrestricted "main keys".
    pub admin: Key,
    /// A user with `arq-lockdown policy` for THIS_COMPUTER.
    pub scoped: Key,
    /// A user with the 2012 blog post's policy (tests/fixtures/policy-2012.json).
    pub seed_2012: Key,
    /// An all-powerful user of another AWS account: the attacker's own account.
    pub foreign_admin: Key,
    _server: Child,
}

impl Moto {
    pub fn secrets(&self) -> [&str; 4] {
        [
            &self.admin.secret,
            &self.scoped.secret,
            &self.seed_2012.secret,
            &self.foreign_admin.secret,
        ]
    }
}

/// The one moto of this test binary: started on first use, seeded with a bucket holding two
/// computers' data, then IAM enforcement switched on. It stops when the test binary exits (the
/// fixture exits when its stdin closes).
pub fn moto() -> &'static Moto {
    MOTO.get_or_init(|| {
        let python = tool(".tools/venv/bin/python");
        let fixture = tool("scripts/moto-fixture.py");
        let mut server = Command::new(&python)
            .arg(&fixture)
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let mut endpoint = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut endpoint)
            .unwrap();
        let endpoint = endpoint.trim().to_owned();
        assert!(
            endpoint.starts_with("http://127.0.0.1:"),
            "moto did not start: {endpoint:?}"
        );

        let dir = tempfile::tempdir().unwrap();
        let policy_file = |name: &str, args: &[&str]| {
            let path = dir.path().join(name);
            let policy = arq_lockdown().arg("policy").args(args).output().unwrap();
            assert!(policy.status.success());
            std::fs::write(&path, &policy.stdout).unwrap();
            path
        };
        let scoped_policy = policy_file(
            "scoped.json",
            &["--bucket", BUCKET, "--computer-uuid", THIS_COMPUTER],
        );
        let boundary = policy_file("boundary.json", &["--kind", "boundary", "--bucket", BUCKET]);
        let seeded = Command::new(&python)
            .arg(&fixture)
            .args(["seed", &endpoint, BUCKET, THIS_COMPUTER, OTHER_COMPUTER])
            .arg(format!("--user=scoped={}", scoped_policy.display()))
            .arg(format!(
                "--user=seed2012={}",
                tool("tests/fixtures/policy-2012.json").display()
            ))
            .arg(format!("--boundary={}", boundary.display()))
            .output()
            .unwrap();
        assert!(
            seeded.status.success(),
            "seeding failed: {}",
            String::from_utf8_lossy(&seeded.stderr)
        );
        let keys: Value = serde_json::from_slice(&seeded.stdout).unwrap();
        let key = |v: &Value| Key {
            id: v["id"].as_str().unwrap().into(),
            secret: v["secret"].as_str().unwrap().into(),
        };
        Moto {
            endpoint,
            admin: key(&keys["admin"]),
            scoped: key(&keys["users"]["scoped"]),
            seed_2012: key(&keys["users"]["seed2012"]),
            foreign_admin: key(&keys["foreign_admin"]),
            _server: server,
        }
    })
}

/// The binary with an environment that reaches no real AWS: no AWS_* variables from outside, no
/// instance metadata lookups, HOME pointing nowhere useful.
pub fn arq_lockdown() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_arq-lockdown"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_")
            || name.to_string_lossy().starts_with("ARQ_LOCKDOWN_")
        {
            command.env_remove(name);
        }
    }
    command
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        )
        .env("AWS_REGION", "us-east-1")
        .env("HOME", "/nonexistent-home")
        .stdin(Stdio::null());
    command
}

/// The binary pointed at the test binary's moto.
pub fn arq_lockdown_on_moto() -> Command {
    let mut command = arq_lockdown();
    command.env("AWS_ENDPOINT_URL", &moto().endpoint);
    command
}

/// Runs `command` and checks that no secret moto handed out shows up in what it printed.
pub fn run(command: &mut Command) -> Output {
    let output = command.output().expect("run arq-lockdown");
    if let Some(moto) = MOTO.get() {
        assert_no_secret(&output, &moto.secrets());
    }
    output
}

pub fn assert_no_secret(output: &Output, secrets: &[&str]) {
    for secret in secrets {
        for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
            assert!(
                !String::from_utf8_lossy(bytes).contains(secret),
                "a secret appeared on {stream}"
            );
        }
    }
}

pub fn exit_code(output: &Output) -> i32 {
    output.status.code().expect("exited normally")
}

/// A user's home with Arq's app_config.plist.
pub struct ArqHome {
    pub dir: tempfile::TempDir,
}

impl ArqHome {
    pub fn empty() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A home whose config says `bucket` and `uuid`, in Arq's XML plist form.
    pub fn with(bucket: &str, uuid: &str) -> Self {
        let home = Self::empty();
        let mut dict = plist::Dictionary::new();
        dict.insert("localS3BucketName".into(), bucket.into());
        dict.insert("localComputerUUID".into(), uuid.into());
        dict.insert("localS3AccessKeyID".into(), "AKIAIOSFODNN7EXAMPLE".into());
        home.write_config_value(&plist::Value::Dictionary(dict));
        home
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("Library/Arq/config/app_config.plist")
    }

    pub fn write_config(&self, bytes: &[u8]) {
        let path = self.config_path();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    pub fn write_config_value(&self, value: &plist::Value) {
        let mut bytes = Vec::new();
        value.to_writer_xml(&mut bytes).unwrap();
        self.write_config(&bytes);
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A file credential store holding `key` as "Arq S3", in a fresh folder.
pub fn file_store(key: &Key) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keychain.json");
    let item = serde_json::json!({"Arq S3": {"account": key.id, "password": key.secret}});
    std::fs::write(&path, item.to_string()).unwrap();
    (dir, format!("file:{}", path.display()))
}

/// Every file below `dir` with its size and modification time: equal snapshots mean nothing was written.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut entries = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let Ok(listing) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in listing.flatten() {
            let meta = entry.path().symlink_metadata().unwrap();
            if meta.is_dir() {
                pending.push(entry.path());
            }
            entries.push((entry.path(), meta.len(), meta.modified().unwrap()));
        }
    }
    entries.sort();
    entries
}

/// A new computer UUID, so tests that share moto do not share IAM users.
pub fn fresh_uuid() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

fn fixture_with_admin(args: &[&str]) -> Output {
    fixture_as(&moto().admin, args)
}

/// Runs the fixture with `key` as its AWS credentials.
fn fixture_as(key: &Key, args: &[&str]) -> Output {
    let output = Command::new(tool(".tools/venv/bin/python"))
        .arg(tool("scripts/moto-fixture.py"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", &key.id)
        .env("AWS_SECRET_ACCESS_KEY", &key.secret)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "fixture {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// What IAM holds for a computer's scoped user: {"exists", "keys", "policies", "tags"}.
pub fn scoped_user(uuid: &str) -> Value {
    let user = format!("arq-{uuid}");
    serde_json::from_slice(&fixture_with_admin(&["inspect", &moto().endpoint, &user]).stdout)
        .unwrap()
}

/// Creates IAM user `name` under `path` in the account of `admin`, with one key.
pub fn make_user(admin: &Key, path: &str, name: &str) -> Key {
    let output = fixture_as(admin, &["make-user", &moto().endpoint, path, name]);
    let key: Value = serde_json::from_slice(&output.stdout).unwrap();
    Key {
        id: key["id"].as_str().unwrap().into(),
        secret: key["secret"].as_str().unwrap().into(),
    }
}

/// Adds a second inline policy to a computer's scoped user, as a careless admin might.
pub fn grant_extra(uuid: &str, policy_file: &str) {
    let user = format!("arq-{uuid}");
    let file = tool(policy_file);
    fixture_with_admin(&["grant", &moto().endpoint, &user, file.to_str().unwrap()]);
}

/// Gives a computer's scoped user one more access key, as a run that died after CreateAccessKey does.
pub fn add_key(uuid: &str) {
    fixture_with_admin(&["add-key", &moto().endpoint, &format!("arq-{uuid}")]);
}

/// One request a [`Proxy`] passed to moto: the request line and the body.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub body: String,
}

/// An HTTP proxy in front of moto that records every request, and can answer the first
/// `throttles` IAM requests whose body holds `Action=<action>` with IAM's throttling error, as AWS
/// does under load.
pub struct Proxy {
    pub endpoint: String,
    pub throttled: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
}

impl Proxy {
    /// A proxy that only records.
    pub fn recording() -> Self {
        Self::start("", 0)
    }

    pub fn throttling(action: &'static str, throttles: usize) -> Self {
        Self::start(action, throttles)
    }

    fn start(action: &'static str, throttles: usize) -> Self {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let upstream = moto().endpoint.trim_start_matches("http://").to_owned();
        let throttled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (count, log) = (throttled.clone(), requests.clone());
        std::thread::spawn(move || {
            for mut client in listener.incoming().map_while(Result::ok) {
                let Some(request) = read_request(&mut client) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&request).into_owned();
                let line: Vec<&str> = text.lines().next().unwrap_or_default().split(' ').collect();
                let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                log.lock().unwrap().push(Recorded {
                    method: line.first().copied().unwrap_or_default().to_owned(),
                    path: line.get(1).copied().unwrap_or_default().to_owned(),
                    body: body.to_owned(),
                });
                let is_target = !action.is_empty() && body.contains(&format!("Action={action}"));
                if is_target && count.load(Ordering::SeqCst) < throttles {
                    count.fetch_add(1, Ordering::SeqCst);
                    let body = "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>1</RequestId></ErrorResponse>";
                    let _ = write!(
                        client,
                        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    continue;
                }
                let mut server = std::net::TcpStream::connect(&upstream).unwrap();
                server.write_all(&request).unwrap();
                let mut response = Vec::new();
                let _ = server.read_to_end(&mut response);
                let _ = client.write_all(&response);
            }
        });
        Self {
            endpoint,
            throttled,
            requests,
        }
    }

    /// The requests recorded so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// One HTTP/1.1 request (headers and a Content-Length body), with `Connection: close` forced so
/// every request comes on its own connection.
fn read_request(stream: &mut std::net::TcpStream) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let headers = String::from_utf8_lossy(&buffer[..header_end]).to_string();
    let length: usize = headers
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    }
    let mut head: Vec<String> = headers
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(str::to_owned)
        .collect();
    head.push("Connection: close".to_owned());
    let mut request = format!("{}\r\n\r\n", head.join("\r\n")).into_bytes();
    request.extend_from_slice(&buffer[header_end..]);
    Some(request)
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
        let uuid = uuid.to_owned();
        let home = ArqHome::with(BUCKET, &uuid);
        std::fs::create_dir_all(home.path().join("Library/Logs")).unwrap();
        let (store_dir, store) = file_store(&moto().admin);
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

    /// Runs `apply` plus `extra`, checking that neither the old nor the new "Arq S3" secret shows.
    pub fn run_apply(&self, extra: &[&str]) -> Output {
        let before = self.key();
        let output = run(self.apply().args(extra));
        assert_no_secret(&output, &[&before.secret, &self.key().secret]);
        output
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

    /// Puts `key` into "Arq S3", as if Arq had been set up with it (other items stay).
    pub fn set_key(&self, key: &Key) {
        let path = self.store_dir.path().join("keychain.json");
        let mut items: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        items["Arq S3"] = serde_json::json!({"account": key.id, "password": key.secret});
        std::fs::write(path, items.to_string()).unwrap();
    }

    pub fn launches(&self) -> usize {
        std::fs::read_to_string(self.store_dir.path().join("launches"))
            .map_or(0, |t| t.lines().count())
    }

    /// `verify` with the key in "Arq S3": the exit code.
    pub fn verify(&self) -> i32 {
        exit_code(&run(arq_lockdown_on_moto()
            .arg("verify")
            .arg("--arq-home")
            .arg(self.home.path())
            .args(["--credential-store", &self.store])))
    }
}

/// The server id the test service answers to.
pub const SERVER_ID: &str = "arq.test";
/// The enrollment token the test service accepts (its SHA-256 is in the service's config).
pub const ENROLLMENT_TOKEN: &str = "enrollment-token-for-tests-0123456789";

/// The provisioning service under test: `arq-lockdown serve` on 127.0.0.1, with moto's admin keys.
pub struct Service {
    pub url: String,
    /// The `arq-lockdown serve` process.
    pub pid: u32,
    /// Every line the service logged so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _process: Child,
    _dir: tempfile::TempDir,
}

static SERVICE: OnceLock<Service> = OnceLock::new();

/// The one service of this test binary, started on first use. It stops with the test binary: a
/// shell runs it and kills it when its stdin closes.
pub fn service() -> &'static Service {
    SERVICE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("service.toml");
        std::fs::write(&config, service_config("127.0.0.1:0", "")).unwrap();
        start_service(&config, dir)
    })
}

/// Starts `arq-lockdown serve --config CONFIG` with moto's admin keys and waits until it listens.
pub fn start_service(config: &Path, dir: tempfile::TempDir) -> Service {
    start_service_with(config, dir, "")
}

/// As [`start_service`], with `setup` (shell commands such as `ulimit -n 64;`) run first.
pub fn start_service_with(config: &Path, dir: tempfile::TempDir, setup: &str) -> Service {
    let moto = moto();
    let script = format!("{setup} \"$0\" serve --config \"$1\" & echo $! >&2; read _; kill $!");
    let mut process = Command::new("sh")
        .args(["-c", &script])
        .arg(env!("CARGO_BIN_EXE_arq-lockdown"))
        .arg(config)
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", &moto.admin.id)
        .env("AWS_SECRET_ACCESS_KEY", &moto.admin.secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(process.stderr.take().unwrap()).lines();
    let pid = lines.next().unwrap().unwrap().trim().parse().unwrap();
    let first = lines.next().unwrap().unwrap();
    let url = first.rsplit(' ').next().unwrap().to_owned();
    assert!(
        url.contains("://127.0.0.1:"),
        "the service did not start: {first}"
    );
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Service {
        url,
        pid,
        log,
        _process: process,
        _dir: dir,
    }
}

/// The permissions boundary the fixture creates (`arq-lockdown policy --kind boundary`).
pub const BOUNDARY: &str = "arn:aws:iam::123456789012:policy/arq-lockdown-boundary";

/// A service config for this test binary's moto; `extra` is appended (a [tls] table, say).
pub fn service_config(listen: &str, extra: &str) -> String {
    format!(
        "listen = \"{listen}\"\nserver_id = \"{SERVER_ID}\"\nsts_endpoint = \"{}\"\nallowed_buckets = [\"{BUCKET}\"]\n\
         fleet_principals = [\"arn:aws:iam::123456789012:user/fleet-admin\"]\npermissions_boundary_arn = \"{BOUNDARY}\"\n{extra}\n\
         [[enrollment_tokens]]\nname = \"tests\"\nsha256 = \"{}\"\n",
        moto().endpoint,
        sha256_hex(ENROLLMENT_TOKEN)
    )
}

pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One HTTP/1.1 request to the service, by hand (no client library between the test and the wire).
pub fn http(method: &str, path: &str, body: &[u8]) -> (u16, String) {
    http_to(&service().url, method, path, body)
}

/// One HTTP/1.1 request to the service at `url` (http:// only).
pub fn http_to(url: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).unwrap();
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}

/// `key` as the library's type.
pub fn access_key(key: &Key) -> arq_lockdown::credential_store::AccessKey {
    arq_lockdown::credential_store::AccessKey {
        id: key.id.clone(),
        secret: arq_lockdown::secret::Secret::new(key.secret.clone()),
    }
}

/// The body a Mac sends to `endpoint` for `request` about computer `uuid`: proven by `key`
/// and/or signed by `enrollment`, built by the library's own protocol code.
pub fn envelope(
    endpoint: &str,
    uuid: &str,
    request: &Value,
    key: Option<&Key>,
    enrollment: Option<&EnrollmentKey>,
) -> Vec<u8> {
    let envelope = arq_lockdown::protocol::Envelope::new(
        endpoint,
        SERVER_ID,
        "sts.amazonaws.com",
        &arq_lockdown::arq_config::ComputerUuid::parse(uuid).unwrap(),
        request.to_string(),
        key.map(access_key).as_ref(),
        enrollment,
    );
    serde_json::to_vec(&envelope).unwrap()
}

fn freshness() -> (i64, String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (now, uuid::Uuid::new_v4().to_string())
}

/// An enroll request for `uuid` in BUCKET, as a Mac makes it (add `enrollment_token` for a token).
pub fn enroll_request(uuid: &str, enrollment: &EnrollmentKey, reply: &ReplyKey) -> Value {
    let (issued_at, nonce) = freshness();
    serde_json::json!({
        "computer_uuid": uuid, "bucket": BUCKET, "computer_name": "Test Mac",
        "enrollment_key": enrollment.public(), "reply_key": reply.public(),
        "issued_at": issued_at, "nonce": nonce,
    })
}

pub fn rotate_request(uuid: &str, reply: &ReplyKey) -> Value {
    let (issued_at, nonce) = freshness();
    serde_json::json!({"computer_uuid": uuid, "bucket": BUCKET, "reply_key": reply.public(), "issued_at": issued_at, "nonce": nonce})
}

pub fn retire_request(uuid: &str, access_key_id: &str) -> Value {
    let (issued_at, nonce) = freshness();
    serde_json::json!({"computer_uuid": uuid, "access_key_id": access_key_id, "issued_at": issued_at, "nonce": nonce})
}

/// The reason code of a refusal's body.
pub fn error_code(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_default()
}
