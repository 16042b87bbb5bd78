//! The provisioning service under test, raw HTTP to it, and the requests a Mac makes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use arq_lockdown::protocol::enrollment::EnrollmentKey;
use arq_lockdown::protocol::sealed::ReplyKey;
use serde_json::Value;

use super::*;

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
/// shell runs it and sends it SIGTERM when its stdin closes.
pub fn service() -> &'static Service {
    SERVICE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("service.toml");
        std::fs::write(&config, service_config("127.0.0.1:0", "")).unwrap();
        start_service(&config, dir)
    })
}

/// Another instance of the service on this test binary's moto, serving the config `text`.
pub fn start_service_from(text: &str) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("service.toml");
    std::fs::write(&config, text).unwrap();
    start_service(&config, dir)
}

/// Starts `arq-lockdown serve --config CONFIG` with moto's admin keys and waits until it listens.
pub fn start_service(config: &Path, dir: tempfile::TempDir) -> Service {
    start_service_with(config, dir, "")
}

/// A service with the default config whose IAM calls go through `proxy` (its AWS_ENDPOINT_URL).
pub fn start_service_behind(proxy: &Proxy) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("service.toml");
    std::fs::write(&config, service_config("127.0.0.1:0", "")).unwrap();
    let setup = format!("export AWS_ENDPOINT_URL={};", proxy.endpoint);
    start_service_with(&config, dir, &setup)
}

/// As [`start_service`], with `setup` (shell commands such as `ulimit -n 64;`) run first. When the
/// service exits, its log ends with `exited with status N`.
pub fn start_service_with(config: &Path, dir: tempfile::TempDir, setup: &str) -> Service {
    let moto = moto();
    // A watcher stops the service when stdin closes; the shell waits for the service's status.
    let script = format!(
        "exec 3<&0; {setup} \"$0\" serve --config \"$1\" 3<&- & pid=$!; echo $pid >&2; \
         (read _ <&3; kill $pid) & watcher=$!; wait $pid; status=$?; kill $watcher; \
         echo \"exited with status $status\" >&2"
    );
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

impl Service {
    /// Sends `signal` (`HUP`, `TERM`, …) to the service.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args(["-s", signal, &self.pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -s {signal} {}", self.pid);
    }

    /// The first line the service logged after the first `after` lines that holds `text`,
    /// waiting up to 20 s for it.
    pub fn wait_for_log(&self, after: usize, text: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let log = self.log.lock().unwrap().clone();
            if let Some(line) = log.iter().skip(after).find(|l| l.contains(text)) {
                return line.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the service never logged {text:?}:\n{}",
                log.join("\n")
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// How many lines the service logged so far.
    pub fn log_lines(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

/// `serve` for another fleet: `bucket` allowed, `principal` the fleet's main keys, `extra`
/// appended to the config.
pub fn fleet_service(bucket: &str, principal: &str, extra: &str) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("service.toml");
    let text = service_config("127.0.0.1:0", extra)
        .replace(
            &format!("allowed_buckets = [\"{BUCKET}\"]"),
            &format!("allowed_buckets = [\"{bucket}\"]"),
        )
        .replace("arn:aws:iam::123456789012:user/fleet-admin", principal);
    std::fs::write(&config, text).unwrap();
    start_service(&config, dir)
}

/// The permissions boundary the fixture creates (`arq-lockdown policy --kind boundary`).
pub const BOUNDARY: &str = "arn:aws:iam::123456789012:policy/arq-lockdown-boundary";

/// The fleet principal's hourly limit in [`service_config`]: one instance enrolls hundreds of
/// computers per test run, more than the default allows.
pub const FLEET_MAX_PER_HOUR: &str = "fleet_max_per_hour = 100000";

/// A service config for this test binary's moto; `extra` is appended (a [tls] table, say).
pub fn service_config(listen: &str, extra: &str) -> String {
    format!(
        "listen = \"{listen}\"\nserver_id = \"{SERVER_ID}\"\nsts_endpoint = \"{}\"\nallowed_buckets = [\"{BUCKET}\"]\n\
         fleet_principals = [\"arn:aws:iam::123456789012:user/fleet-admin\"]\npermissions_boundary_arn = \"{BOUNDARY}\"\n{FLEET_MAX_PER_HOUR}\n{extra}\n\
         [[enrollment_tokens]]\nname = \"tests\"\nsha256 = \"{}\"\nmax_per_hour = 100000\n",
        moto().endpoint,
        sha256_hex(ENROLLMENT_TOKEN)
    )
}

/// The SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
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

/// A retire of `access_key_id`, naming `enrollment` as the key that signs it.
pub fn retire_request(uuid: &str, access_key_id: &str, enrollment: &EnrollmentKey) -> Value {
    let (issued_at, nonce) = freshness();
    serde_json::json!({"computer_uuid": uuid, "access_key_id": access_key_id, "enrollment_key": enrollment.public(), "issued_at": issued_at, "nonce": nonce})
}

/// The reason code of a refusal's body.
pub fn error_code(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_default()
}
