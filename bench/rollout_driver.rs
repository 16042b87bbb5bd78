//! The rehearsal of a whole rollout, shared by `tests/cli/rollout.rs` (≈30 Macs, in CI) and
//! `benches/rollout.rs` (`bench/rollout`, 1,000 Macs): a fleet in an AWS account of its own on the
//! emulator (scripts/aws_emulator.py: IAM throttled above R calls a second, new keys refused for
//! D seconds, the account's clock running S times real time), two service instances, and
//! simulated Macs, each an Arq home, a file keychain holding the main keys, a configuration
//! profile, a stand-in Arq and the LaunchAgent's runs of `apply --managed`; then the admin's runbook
//! ([`admin_runbook`]): audit until ready, `retire-main-keys`, and backups watched after it.
//!
//! A stand-in Arq backs up (a PUT and a GET under its computer's folder; a Mac not yet locked
//! down that is new to the bucket only lists and reads it, so that it has no data before its
//! lockdown) every `backup_every`, with the key it read from its keychain at start, until it is
//! relaunched — Arq Agent keeps the key it read at start (the reason the 2012 procedure quits it).
//! With `QuitArq` (the profile's default here) it is quit while an `apply` runs and relaunched by
//! `--relaunch-command`; a Mac whose profile says neither (`Relaunch` false, `QuitArq` false) goes
//! on with the main keys after its lockdown until its user restarts Arq.
//!
//! The agent's runs see the profile where macOS puts it: each runs in a mount namespace of its own
//! with the Mac's profile folder over `/Library/Managed Preferences` (root, Linux), so that the
//! binary reads the path it reads on a Mac.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Where a Mac's key comes from, as its profile says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `Source` service with the enrollment token: no secret read.
    Token,
    /// `Source` service, proven with the main keys in "Arq S3".
    Proof,
    /// `Source` iam with the main keys in "Arq S3" (the Mac has data in the bucket already).
    Iam,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Token => "token",
            Kind::Proof => "proof",
            Kind::Iam => "iam",
        }
    }
}

/// The rehearsal's settings.
#[derive(Clone, Debug)]
pub struct Plan {
    pub binary: PathBuf,
    /// The emulator (scripts/moto-fixture.py serve).
    pub endpoint: String,
    /// The fleet's own AWS account on it, and its bucket.
    pub account: String,
    pub bucket: String,
    /// Macs of each kind; `no_relaunch` of the Token Macs never get Arq relaunched by apply.
    pub macs: BTreeMap<Kind, usize>,
    pub no_relaunch: usize,
    /// R: IAM calls a second before IAM throttles.
    pub iam_calls_per_second: f64,
    /// D: seconds a new key is refused.
    pub new_key_delay: f64,
    /// S: the account's clock runs this many times real time (the quiet period passes that fast).
    pub clock_speed: f64,
    pub backup_every: Duration,
    /// The LaunchAgent's StartInterval, compressed.
    pub agent_every: Duration,
    /// Logins spread over this long.
    pub login_spread: Duration,
    /// At most this many `apply` processes at once (the machine's, not a fleet's, limit).
    pub concurrent_applies: usize,
    pub audit_every: Duration,
    /// Backups each Mac makes after the retirement before the rehearsal ends.
    pub backups_after_retirement: u64,
    /// Gives up after this long.
    pub deadline: Duration,
    pub work: PathBuf,
}

/// Credentials the fixture made.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

/// One simulated Mac, for the report.
#[derive(Clone, Debug, Default)]
pub struct MacReport {
    pub uuid: String,
    pub kind: &'static str,
    pub relaunches_itself: bool,
    /// Seconds after the first login when its lockdown run finished.
    pub locked_down_after: Option<f64>,
    pub final_key: String,
    pub backups: u64,
    pub failures_before_lockdown: u64,
    pub failures_after_lockdown: u64,
    pub backups_after_retirement: u64,
    pub apply_runs: u64,
    pub failed_runs: u64,
    /// From the file keychain's access log: each a dialog on a Mac.
    pub secret_reads: usize,
    pub writes: usize,
}

/// One audit the admin ran: whether it said ready, and how many stand-in Arqs were using a main
/// key when it started.
#[derive(Clone, Debug)]
pub struct AuditSeen {
    pub after: f64,
    pub exit: i32,
    pub ready: bool,
    pub macs_on_main_keys: usize,
    pub reasons: Vec<String>,
}

/// What the rehearsal saw.
#[derive(Debug)]
pub struct Report {
    pub macs: Vec<MacReport>,
    pub audits: Vec<AuditSeen>,
    /// `retire-main-keys`: its exit code and JSON outcome, seconds after the first login.
    pub retirement: Option<(i32, Value, f64)>,
    pub main_keys: Vec<String>,
    /// Seconds from the first login until the last Mac's lockdown finished.
    pub full_lockdown_after: Option<f64>,
    /// The account's calls by service, throttled and refused (the emulator's counts), over the
    /// whole rehearsal; and until the last Mac was locked down, with the stand-in Arqs' own S3
    /// calls then (to tell them from the rollout's).
    pub calls: Value,
    pub calls_at_full_lockdown: Option<(Value, u64)>,
    /// The stand-in Arqs' own S3 calls, in all.
    pub backup_calls: u64,
    /// Failed backups by the call, how it failed (its HTTP status, or unanswered), and when.
    pub failures: BTreeMap<String, u64>,
    /// The admin's (audit's) key, to tell its IAM calls from the Macs'.
    pub admin_key: String,
    pub service_peak_kb: Vec<u64>,
    pub final_audit: (i32, Value),
    pub elapsed: f64,
}

/// The fixture's endpoints, by hand (no client library). Each is idempotent, so an answer that
/// does not come within 20 s is asked for again, three times at most: the rehearsal waits on
/// nothing unbounded (a full suite once hung here for good on an unanswered stats request).
fn http(endpoint: &str, method: &str, path: &str, body: &Value) -> Value {
    let address = endpoint.trim_start_matches("http://");
    let body = body.to_string();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let ask = || -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect(address)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.write_all(request.as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    };
    let answer = (0..3)
        .find_map(|_| ask().ok())
        .unwrap_or_else(|| panic!("{path}: the emulator did not answer within 20 s, three times"));
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_default();
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head} {body}");
    serde_json::from_str(body).unwrap()
}

/// Switches the emulator's IAM enforcement on (moto's `reset-auth`, a raw `0`); the test binary's
/// emulator has it on already.
fn enforce(endpoint: &str) {
    let address = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("the emulator answers");
    write!(stream, "POST /moto-api/reset-auth HTTP/1.1\r\nHost: {address}\r\nContent-Type: text/plain\r\nContent-Length: 1\r\nConnection: close\r\n\r\n0").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "reset-auth: {answer}");
}

/// The fleet in the emulator: its account, bucket, boundary, keys, and the Iam Macs' data.
struct Fleet {
    main: Key,
    service: Key,
    auditor: Key,
}

fn seed(plan: &Plan) -> Fleet {
    let boundary = Command::new(&plan.binary)
        .args([
            "policy",
            "--kind",
            "boundary",
            "--bucket",
            &plan.bucket,
            "--compact",
        ])
        .output()
        .unwrap();
    let seeded = http(
        &plan.endpoint,
        "POST",
        "/arq-fixture/seed-fleet",
        &json!({
            "bucket": plan.bucket,
            "account": plan.account,
            "managed_policies": {"arq-lockdown-boundary": String::from_utf8(boundary.stdout).unwrap().trim()},
            "admins": ["fleet-main", "fleet-service", "fleet-auditor"],
        }),
    );
    let key = |name: &str| Key {
        id: seeded["admins"][name]["id"].as_str().unwrap().into(),
        secret: seeded["admins"][name]["secret"].as_str().unwrap().into(),
    };
    Fleet {
        main: key("fleet-main"),
        service: key("fleet-service"),
        auditor: key("fleet-auditor"),
    }
}

/// The emulator's AWS, as a Mac or the admin sees it: no AWS_* variable from outside.
fn aws_command(plan: &Plan, program: &Path) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("AWS_") || name.starts_with("ARQ_LOCKDOWN_") {
            command.env_remove(name);
        }
    }
    command
        .env("AWS_ENDPOINT_URL", &plan.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        )
        .stdin(Stdio::null());
    command
}

/// One `arq-lockdown serve` of the fleet, with the service's keys.
struct Service {
    url: String,
    child: Child,
}

impl Service {
    fn start(plan: &Plan, fleet: &Fleet, token: &str, name: &str) -> Self {
        use sha2::Digest;
        let token_hash: String = sha2::Sha256::digest(token)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let config = plan.work.join(format!("{name}.toml"));
        // The enrollers' hourly limits count real hours, and the fleet's clock runs fast: limits
        // no rehearsal reaches (at the default 100 an hour per instance, 300 proving Macs of
        // 1,000 waited an hour for the window).
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\nserver_id = \"rollout\"\nsts_endpoint = \"{}\"\nallowed_buckets = [\"{}\"]\n\
                 fleet_principals = [\"arn:aws:iam::{}:user/fleet-main\"]\nfleet_max_per_hour = 100000\npermissions_boundary_arn = \"arn:aws:iam::{}:policy/arq-lockdown-boundary\"\n\
                 [[enrollment_tokens]]\nname = \"rollout\"\nsha256 = \"{token_hash}\"\nmax_per_hour = 100000\n",
                plan.endpoint, plan.bucket, plan.account, plan.account
            ),
        )
        .unwrap();
        let mut child = aws_command(plan, &plan.binary)
            .args(["serve", "--config"])
            .arg(&config)
            .env("AWS_ACCESS_KEY_ID", &fleet.service.id)
            .env("AWS_SECRET_ACCESS_KEY", &fleet.service.secret)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("arq-lockdown serve starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let url = first.rsplit(' ').next().unwrap().to_owned();
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "the service did not start: {first}"
        );
        // Its request log is drained, or the service would block on a full pipe.
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        Self { url, child }
    }

    /// The service's peak resident memory (VmHWM), in kB.
    fn peak_kb(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // SAFETY: sends SIGTERM to the service this rehearsal started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A simulated Mac: its files, and what its stand-in Arq and its agent do.
struct Mac {
    uuid: String,
    kind: Kind,
    relaunches_itself: bool,
    dir: PathBuf,
    /// The stand-in Arq is quit (an `apply` with QuitArq runs).
    quit: AtomicBool,
    /// The key the stand-in Arq read at its (re)launch.
    key: Mutex<Key>,
    /// Relaunches seen (lines of the `relaunches` file the relaunch command appends to).
    relaunches_seen: AtomicUsize,
    locked_down_at: Mutex<Option<Instant>>,
    backups: AtomicU64,
    failures_before: AtomicU64,
    failures_after: AtomicU64,
    after_retirement: AtomicU64,
    apply_runs: AtomicU64,
    failed_runs: AtomicU64,
}

impl Mac {
    fn keychain(&self) -> PathBuf {
        self.dir.join("keychain.json")
    }

    fn keychain_key(&self) -> Key {
        let item: Value = serde_json::from_slice(&std::fs::read(self.keychain()).unwrap()).unwrap();
        Key {
            id: item["Arq S3"]["account"].as_str().unwrap().into(),
            secret: item["Arq S3"]["password"].as_str().unwrap().into(),
        }
    }

    /// Arq (re)launched: it reads its key again.
    fn launch(&self) {
        *self.key.lock().unwrap() = self.keychain_key();
    }

    /// Whether apply's `--relaunch-command` ran since the stand-in last looked.
    fn relaunched(&self) -> bool {
        let count =
            std::fs::read_to_string(self.dir.join("relaunches")).map_or(0, |t| t.lines().count());
        count > self.relaunches_seen.swap(count, Ordering::SeqCst)
    }

    fn report(&self, started: Instant) -> MacReport {
        let (secret_reads, writes) = self.keychain_access();
        let count = |counter: &AtomicU64| counter.load(Ordering::SeqCst);
        MacReport {
            uuid: self.uuid.clone(),
            kind: self.kind.as_str(),
            relaunches_itself: self.relaunches_itself,
            locked_down_after: self
                .locked_down_at
                .lock()
                .unwrap()
                .map(|t| (t - started).as_secs_f64()),
            final_key: self.keychain_key().id,
            backups: count(&self.backups),
            failures_before_lockdown: count(&self.failures_before),
            failures_after_lockdown: count(&self.failures_after),
            backups_after_retirement: count(&self.after_retirement),
            apply_runs: count(&self.apply_runs),
            failed_runs: count(&self.failed_runs),
            secret_reads,
            writes,
        }
    }

    /// The file keychain's access log: secret reads and writes.
    fn keychain_access(&self) -> (usize, usize) {
        let log =
            std::fs::read_to_string(self.dir.join("keychain.json.access-log")).unwrap_or_default();
        let count = |what: &str| log.lines().filter(|l| l.starts_with(what)).count();
        (count("read-secret "), count("write "))
    }
}

/// Makes a Mac's home (Arq's config), keychain (the main keys), profile and relaunch command.
fn make_mac(
    plan: &Plan,
    kind: Kind,
    relaunches_itself: bool,
    service_url: &str,
    token: &str,
    main: &Key,
) -> Mac {
    let uuid = uuid::Uuid::new_v4().to_string().to_uppercase();
    let dir = plan.work.join(&uuid);
    let config = dir.join("home/Library/Arq/config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::create_dir_all(dir.join("home/Library/Logs")).unwrap();
    std::fs::create_dir_all(dir.join("profile")).unwrap();
    let mut arq = plist::Dictionary::new();
    arq.insert("localS3BucketName".into(), plan.bucket.clone().into());
    arq.insert("localComputerUUID".into(), uuid.clone().into());
    plist::Value::Dictionary(arq)
        .to_file_xml(config.join("app_config.plist"))
        .unwrap();
    let item = json!({"Arq S3": {"account": main.id, "password": main.secret}});
    std::fs::write(dir.join("keychain.json"), item.to_string()).unwrap();
    // The configuration profile, as the MDM would install it for the computer.
    let mut profile = plist::Dictionary::new();
    let source = if kind == Kind::Iam { "iam" } else { "service" };
    profile.insert("Source".into(), source.into());
    if kind != Kind::Iam {
        profile.insert("ServiceURL".into(), service_url.into());
        profile.insert("ServiceID".into(), "rollout".into());
    }
    if kind == Kind::Token {
        profile.insert("EnrollmentToken".into(), token.into());
    }
    profile.insert("QuitArq".into(), relaunches_itself.into());
    profile.insert("Relaunch".into(), relaunches_itself.into());
    profile.insert(
        "VerifyTimeoutSeconds".into(),
        plist::Value::Integer(120.into()),
    );
    plist::Value::Dictionary(profile)
        .to_file_xml(dir.join("profile/org.arq-lockdown.plist"))
        .unwrap();
    let relaunch = dir.join("relaunch-arq");
    std::fs::write(
        &relaunch,
        format!(
            "#!/bin/sh\necho relaunched >> '{}'\n",
            dir.join("relaunches").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &relaunch,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    Mac {
        uuid,
        kind,
        relaunches_itself,
        dir,
        quit: AtomicBool::new(false),
        key: Mutex::new(main.clone()),
        relaunches_seen: AtomicUsize::new(0),
        locked_down_at: Mutex::new(None),
        backups: AtomicU64::new(0),
        failures_before: AtomicU64::new(0),
        failures_after: AtomicU64::new(0),
        after_retirement: AtomicU64::new(0),
        apply_runs: AtomicU64::new(0),
        failed_runs: AtomicU64::new(0),
    }
}

/// What the LaunchAgent runs — `arq-lockdown apply --managed` — pointed at this Mac's Arq home,
/// keychain and relaunch command, with its profile where macOS puts profiles.
fn agent_run(plan: &Plan, mac: &Mac) -> Output {
    let mut command = aws_command(plan, Path::new("unshare"));
    command
        .args([
            "--mount",
            "sh",
            "-c",
            "mount --bind \"$0\" \"/Library/Managed Preferences\" && exec \"$@\"",
        ])
        .arg(mac.dir.join("profile"))
        .arg(&plan.binary)
        .args(["apply", "--managed", "--json", "--arq-home"])
        .arg(mac.dir.join("home"))
        .arg("--credential-store")
        .arg(format!("file:{}", mac.keychain().display()))
        .arg("--relaunch-command")
        .arg(mac.dir.join("relaunch-arq"))
        .env("HOME", mac.dir.join("home"));
    command.output().expect("unshare and arq-lockdown run")
}

/// One backup of the stand-in Arq with the key it holds: a PUT and a GET under its folder (or,
/// a Mac new to the bucket before its lockdown, a listing of its folder and a GET); the call that
/// failed, and how, if one did.
async fn back_up(
    plan: &Plan,
    mac: &Mac,
    clients: &Mutex<BTreeMap<String, aws_sdk_s3::Client>>,
    n: u64,
) -> Result<(), String> {
    let key = mac.key.lock().unwrap().clone();
    let cached = clients.lock().unwrap().get(&key.id).cloned();
    let client = match cached {
        Some(client) => client,
        None => {
            let client = s3_client(plan, &key).await;
            clients
                .lock()
                .unwrap()
                .insert(key.id.clone(), client.clone());
            client
        }
    };
    let writes = mac.kind == Kind::Iam || mac.locked_down_at.lock().unwrap().is_some();
    let object = format!("{}/objects/backup-{n:06}", mac.uuid);
    // A refusal by its HTTP status; no answer at all (the emulator overloaded) by what the SDK said.
    fn why<E>(
        call: &str,
        error: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> String {
        use aws_sdk_s3::error::SdkError;
        match (error.raw_response().map(|r| r.status().as_u16()), &error) {
            (Some(status), _) => format!("{call} {status}"),
            (None, SdkError::TimeoutError(_)) => format!("{call} timed out"),
            (None, SdkError::DispatchFailure(_)) => format!("{call} unanswered"),
            (None, _) => format!("{call} failed"),
        }
    }
    match writes {
        true => client
            .put_object()
            .bucket(&plan.bucket)
            .key(&object)
            .body(aws_sdk_s3::primitives::ByteStream::from_static(
                b"a pack of backed-up data",
            ))
            .send()
            .await
            .map(drop)
            .map_err(|e| why("PutObject", e))?,
        false => client
            .list_objects()
            .bucket(&plan.bucket)
            .prefix(format!("{}/", mac.uuid))
            .delimiter("/")
            .send()
            .await
            .map(drop)
            .map_err(|e| why("ListObjects", e))?,
    };
    let read = if writes {
        object
    } else {
        format!("{}/computerinfo", mac.uuid)
    };
    match client
        .get_object()
        .bucket(&plan.bucket)
        .key(read)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        // A missing object is a read S3 allowed (404 only with s3:ListBucket on the prefix).
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(()),
        Err(e) => Err(why("GetObject", e)),
    }
}

/// An S3 client as the tool builds one (arq_lockdown::aws), for `key` against the emulator.
async fn s3_client(plan: &Plan, key: &Key) -> aws_sdk_s3::Client {
    use arq_lockdown::aws::{self, AwsCredentials};
    let access = arq_lockdown::credential_store::AccessKey {
        id: key.id.clone(),
        secret: arq_lockdown::secret::Secret::new(key.secret.clone()),
    };
    let config = aws::load_config(AwsCredentials::Key(&access))
        .await
        .into_builder()
        .endpoint_url(&plan.endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .build();
    aws::s3_client(&config, None)
}

/// Shared state of one rehearsal.
struct Run {
    plan: Plan,
    fleet: Fleet,
    macs: Vec<Mac>,
    started: Instant,
    stop: AtomicBool,
    retired: AtomicBool,
    backup_calls: AtomicU64,
    clients: Mutex<BTreeMap<String, aws_sdk_s3::Client>>,
    applies: tokio::sync::Semaphore,
    /// The emulator's counts and the stand-ins' calls when the last Mac was locked down.
    at_full_lockdown: Mutex<Option<(Value, u64)>>,
    /// Failed backups by the call, how it failed, and when.
    failures: Mutex<BTreeMap<String, u64>>,
}

impl Run {
    fn after(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn locked_down(&self) -> usize {
        self.macs
            .iter()
            .filter(|m| m.locked_down_at.lock().unwrap().is_some())
            .count()
    }

    fn on_main_keys(&self) -> usize {
        self.macs
            .iter()
            .filter(|m| m.key.lock().unwrap().id == self.fleet.main.id)
            .count()
    }
}

/// Sleeps `duration`, or less when the rehearsal stops meanwhile.
async fn pause(run: &Run, duration: Duration) {
    let until = Instant::now() + duration;
    while !run.stop.load(Ordering::SeqCst) && Instant::now() < until {
        tokio::time::sleep((until - Instant::now()).min(Duration::from_millis(200))).await;
    }
}

/// The stand-in Arq of one Mac: a backup every `backup_every` while it runs, with the key it read
/// at its last launch.
async fn stand_in_arq(run: Arc<Run>, index: usize) {
    let mac = &run.macs[index];
    let every = run.plan.backup_every;
    // Macs back up out of step with each other.
    pause(&run, every.mul_f64(index as f64 / run.macs.len() as f64)).await;
    let mut n = 0;
    while !run.stop.load(Ordering::SeqCst) {
        if !mac.quit.load(Ordering::SeqCst) {
            if mac.relaunched() {
                mac.launch();
            }
            n += 1;
            let backed_up = back_up(&run.plan, mac, &run.clients, n).await;
            run.backup_calls.fetch_add(2, Ordering::Relaxed);
            mac.backups.fetch_add(1, Ordering::Relaxed);
            let done = mac.locked_down_at.lock().unwrap().is_some();
            let retired = run.retired.load(Ordering::SeqCst);
            if let Err(why) = backed_up {
                let when = match (done, retired) {
                    (false, _) => "before its lockdown",
                    (true, false) => "after its lockdown",
                    (true, true) => "after the retirement",
                };
                let counter = if done {
                    &mac.failures_after
                } else {
                    &mac.failures_before
                };
                counter.fetch_add(1, Ordering::Relaxed);
                *run.failures
                    .lock()
                    .unwrap()
                    .entry(format!("{why}, {when}"))
                    .or_default() += 1;
            }
            if retired {
                mac.after_retirement.fetch_add(1, Ordering::Relaxed);
            }
        }
        pause(&run, every).await;
    }
}

/// The Mac's LaunchAgent: `apply --managed` at login, then every `agent_every`.
async fn agent(run: Arc<Run>, index: usize, on_output: Arc<dyn Fn(&Output) + Send + Sync>) {
    let mac = &run.macs[index];
    let login = run
        .plan
        .login_spread
        .mul_f64(index as f64 / run.macs.len() as f64);
    pause(&run, login).await;
    while !run.stop.load(Ordering::SeqCst) {
        {
            let _permit = run.applies.acquire().await.unwrap();
            // QuitArq: Arq is quit while the run may change "Arq S3".
            mac.quit.store(mac.relaunches_itself, Ordering::SeqCst);
            let (plan, index) = (run.plan.clone(), index);
            let shared = run.clone();
            let output = tokio::task::spawn_blocking(move || agent_run(&plan, &shared.macs[index]))
                .await
                .unwrap();
            on_output(&output);
            mac.apply_runs.fetch_add(1, Ordering::Relaxed);
            if !output.status.success() {
                mac.failed_runs.fetch_add(1, Ordering::Relaxed);
            }
            let newly = {
                let mut done = mac.locked_down_at.lock().unwrap();
                let newly = done.is_none()
                    && output.status.success()
                    && mac.keychain_key().id != run.fleet.main.id;
                if newly {
                    *done = Some(Instant::now());
                }
                newly
            };
            mac.quit.store(false, Ordering::SeqCst);
            if newly && run.locked_down() == run.macs.len() {
                // The fleet is locked down: what it cost so far.
                let calls = stats(&run.plan);
                *run.at_full_lockdown.lock().unwrap() =
                    Some((calls, run.backup_calls.load(Ordering::SeqCst)));
            }
        }
        pause(&run, run.plan.agent_every).await;
    }
}

/// `arq-lockdown COMMAND --bucket B --json ARGS` with the admin's (the auditor's) keys.
fn as_admin(run: &Run, command: &str, args: &[&str]) -> (i32, Value, Output) {
    let output = aws_command(&run.plan, &run.plan.binary)
        .args([command, "--bucket", &run.plan.bucket, "--json"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", &run.fleet.auditor.id)
        .env("AWS_SECRET_ACCESS_KEY", &run.fleet.auditor.secret)
        .output()
        .unwrap();
    let value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap_or(-1), value, output)
}

/// The admin's side of the rollout, in order. (Issue 18 adds a step between the Macs' first and
/// second agent runs: collect the inventory — each Mac's `status --jamf-ea` — and `arq-lockdown
/// pin --inventory FILE`. The service Macs here are new to the bucket, which bind at their first
/// enrollment without a pin.)
async fn admin_runbook(
    run: Arc<Run>,
    on_output: Arc<dyn Fn(&Output) + Send + Sync>,
) -> (Vec<AuditSeen>, Option<(i32, Value, f64)>) {
    // 1. Once per account (done by `seed` and the services): the permissions boundary, the
    //    service with its token. 2. The profile and the pkg reach the Macs: their agents run.
    // 3. audit until every computer is locked down and the main keys may go.
    let mut audits = Vec::new();
    let mut user_restarts_arq = false;
    while run.started.elapsed() < run.plan.deadline {
        tokio::time::sleep(run.plan.audit_every).await;
        if !user_restarts_arq && run.locked_down() == run.macs.len() {
            // The users whose Arq was not relaunched restart it, some time after the rest.
            user_restarts_arq = true;
            for mac in run.macs.iter().filter(|m| !m.relaunches_itself) {
                mac.launch();
            }
        }
        let on_main = run.on_main_keys();
        let after = run.after();
        let shared = run.clone();
        let (exit, report, output) =
            tokio::task::spawn_blocking(move || as_admin(&shared, "audit", &["--no-names"]))
                .await
                .unwrap();
        on_output(&output);
        let ready = report["ready_to_retire_main_keys"] == true;
        let reasons = report["not_ready_reasons"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        audits.push(AuditSeen {
            after,
            exit,
            ready,
            macs_on_main_keys: on_main,
            reasons,
        });
        if exit == 0 && ready {
            break;
        }
    }
    // 4. retire-main-keys.
    if audits.last().is_none_or(|a| a.exit != 0) {
        return (audits, None);
    }
    let shared = run.clone();
    let (exit, outcome, output) =
        tokio::task::spawn_blocking(move || as_admin(&shared, "retire-main-keys", &[]))
            .await
            .unwrap();
    on_output(&output);
    run.retired.store(true, Ordering::SeqCst);
    let retired_after = run.after();
    // 5. The backups go on: each Mac backs up a few more times.
    while run
        .macs
        .iter()
        .any(|m| m.after_retirement.load(Ordering::SeqCst) < run.plan.backups_after_retirement)
        && run.started.elapsed() < run.plan.deadline
    {
        tokio::time::sleep(run.plan.backup_every / 2).await;
    }
    (audits, Some((exit, outcome, retired_after)))
}

/// Runs the whole rehearsal. `on_output` sees every output of `arq-lockdown` (the tests check
/// each for secrets).
pub fn rehearse(plan: Plan, on_output: Arc<dyn Fn(&Output) + Send + Sync>) -> Report {
    std::fs::create_dir_all("/Library/Managed Preferences")
        .expect("root makes /Library/Managed Preferences");
    std::fs::create_dir_all(&plan.work).unwrap();
    let token = format!("rollout-token-{}", uuid::Uuid::new_v4());
    let fleet = seed(&plan);
    enforce(&plan.endpoint);
    let services = [
        Service::start(&plan, &fleet, &token, "service-a"),
        Service::start(&plan, &fleet, &token, "service-b"),
    ];
    let urls = [services[0].url.as_str(), services[1].url.as_str()];
    let macs = make_macs(&plan, &fleet, &urls, &token);
    set_up_aws(&plan, &macs);
    let calls_before = stats(&plan);
    let run = Arc::new(Run {
        applies: tokio::sync::Semaphore::new(plan.concurrent_applies),
        plan,
        fleet,
        macs,
        started: Instant::now(),
        stop: AtomicBool::new(false),
        retired: AtomicBool::new(false),
        backup_calls: AtomicU64::new(0),
        clients: Mutex::new(BTreeMap::new()),
        at_full_lockdown: Mutex::new(None),
        failures: Mutex::new(BTreeMap::new()),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let (audits, retirement) = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..run.macs.len() {
            tasks.spawn(stand_in_arq(run.clone(), index));
            tasks.spawn(agent(run.clone(), index, on_output.clone()));
        }
        let outcome = admin_runbook(run.clone(), on_output.clone()).await;
        run.stop.store(true, Ordering::SeqCst);
        while tasks.join_next().await.is_some() {}
        outcome
    });
    let service_peak_kb = services.iter().map(Service::peak_kb).collect();
    drop(services);
    let (exit, final_report, output) = as_admin(&run, "audit", &["--no-names"]);
    on_output(&output);
    let since_start = |now: &Value| {
        let mut calls = serde_json::Map::new();
        for (name, count) in now.as_object().unwrap() {
            let before = calls_before[name].as_u64().unwrap_or(0);
            calls.insert(name.clone(), (count.as_u64().unwrap_or(0) - before).into());
        }
        Value::Object(calls)
    };
    let at_full_lockdown = run.at_full_lockdown.lock().unwrap().take();
    let macs: Vec<MacReport> = run.macs.iter().map(|m| m.report(run.started)).collect();
    Report {
        full_lockdown_after: macs
            .iter()
            .map(|m| m.locked_down_after)
            .collect::<Option<Vec<f64>>>()
            .and_then(|times| times.into_iter().reduce(f64::max)),
        macs,
        audits,
        retirement,
        main_keys: vec![run.fleet.main.id.clone()],
        calls: since_start(&stats(&run.plan)),
        calls_at_full_lockdown: at_full_lockdown.map(|(c, b)| (since_start(&c), b)),
        backup_calls: run.backup_calls.load(Ordering::SeqCst),
        failures: run.failures.lock().unwrap().clone(),
        admin_key: run.fleet.auditor.id.clone(),
        service_peak_kb,
        final_audit: (exit, final_report),
        elapsed: run.after(),
    }
}

/// The Macs of each kind, the service ones alternating between the two instances; the first
/// `no_relaunch` token Macs have a profile with neither QuitArq nor Relaunch.
fn make_macs(plan: &Plan, fleet: &Fleet, urls: &[&str; 2], token: &str) -> Vec<Mac> {
    let mut macs = Vec::new();
    let mut token_macs = 0;
    for (kind, count) in &plan.macs {
        for _ in 0..*count {
            let relaunches_itself = !(*kind == Kind::Token && token_macs < plan.no_relaunch);
            token_macs += usize::from(*kind == Kind::Token);
            let url = urls[macs.len() % 2];
            macs.push(make_mac(
                plan,
                *kind,
                relaunches_itself,
                url,
                token,
                &fleet.main,
            ));
        }
    }
    macs
}

/// The Iam Macs' data in the bucket (they back up already; the service Macs are new to it), and
/// the account's AWS: IAM throttled above R, new keys refused for D, its clock at S.
fn set_up_aws(plan: &Plan, macs: &[Mac]) {
    let with_data: Vec<Value> = macs
        .iter()
        .filter(|m| m.kind == Kind::Iam)
        .map(|m| json!({"uuid": m.uuid, "data": true}))
        .collect();
    let post = |path: &str, body: Value| http(&plan.endpoint, "POST", path, &body);
    post(
        "/arq-fixture/seed-fleet",
        json!({"bucket": plan.bucket, "account": plan.account, "computers": with_data}),
    );
    post(
        "/arq-fixture/settings",
        json!({"account": plan.account, "iam_calls_per_second": plan.iam_calls_per_second,
               "new_key_delay_seconds": plan.new_key_delay}),
    );
    post(
        "/arq-fixture/clock",
        json!({"account": plan.account, "speed": plan.clock_speed}),
    );
}

/// The emulator's counts of the fleet's account.
fn stats(plan: &Plan) -> Value {
    let path = format!("/arq-fixture/stats?account={}", plan.account);
    http(&plan.endpoint, "GET", &path, &json!({}))
}

impl Report {
    /// The figures, for people: what the issue asks to report (not assert).
    pub fn figures(&self, plan: &Plan) -> String {
        let macs = self.macs.len() as f64;
        let count = |name: &str| self.calls[name].as_u64().unwrap_or(0);
        // Until the last Mac was locked down: the Macs' IAM calls (the admin's audits apart, which
        // also draw on the throttle), and the floor they set.
        let (at_lockdown, backups_then) = self
            .calls_at_full_lockdown
            .clone()
            .unwrap_or((Value::Null, 0));
        let then = |name: &str| at_lockdown[name].as_u64().unwrap_or(0);
        let admin_iam = then(&format!("iam:{}", self.admin_key));
        let macs_iam = then("iam").saturating_sub(then("throttled") + admin_iam);
        let floor = macs_iam as f64 / plan.iam_calls_per_second;
        let lockdown = self.full_lockdown_after.unwrap_or(f64::NAN);
        let rollout_s3 = then("s3").saturating_sub(backups_then);
        let dialogs: Vec<usize> = self
            .macs
            .iter()
            .map(|m| m.secret_reads + m.writes)
            .collect();
        let by_kind = |kind: &str| {
            let of: Vec<&MacReport> = self.macs.iter().filter(|m| m.kind == kind).collect();
            let dialogs: usize = of.iter().map(|m| m.secret_reads + m.writes).sum();
            format!("{kind} {:.2}", dialogs as f64 / of.len().max(1) as f64)
        };
        let runs: u64 = self.macs.iter().map(|m| m.apply_runs).sum();
        let failed: u64 = self.macs.iter().map(|m| m.failed_runs).sum();
        let after: u64 = self.macs.iter().map(|m| m.failures_after_lockdown).sum();
        let before: u64 = self.macs.iter().map(|m| m.failures_before_lockdown).sum();
        let backups: u64 = self.macs.iter().map(|m| m.backups).sum();
        let own_arq = self.macs.iter().filter(|m| !m.relaunches_itself).count();
        let last = self
            .macs
            .iter()
            .max_by(|a, b| {
                a.locked_down_after
                    .partial_cmp(&b.locked_down_after)
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
            .map_or("-", |m| m.uuid.as_str());
        let held = self
            .audits
            .iter()
            .rev()
            .find(|a| !a.ready)
            .and_then(|a| a.reasons.last())
            .map_or("-", String::as_str);
        format!(
            "{} Macs ({}); R = {} IAM calls/s, D = {} s, clock x{}\n\
             time to full lockdown: {lockdown:.1} s; the throttle's floor (the Macs' IAM calls {macs_iam} ÷ R): {floor:.1} s; ratio {:.2}\n\
             AWS calls per Mac until then: IAM {:.1}, STS {:.1}, S3 {:.1} (the stand-in Arqs' backups apart; the admin's audits made {admin_iam} IAM calls meanwhile)\n\
             retries: {} IAM calls throttled, {} requests with a key still new refused; {failed} of {runs} agent runs failed and were retried at the next interval\n\
             backups: {backups} ({} S3 calls); failures after each Mac's lockdown: {after} (before: {before}): {:?}; {own_arq} Macs' Arq restarted by their users, not by apply\n\
             the last Mac locked down: {last}; the last reason the verdict gave: {held}\n\
             service peak memory: {} kB\n\
             dialogs per Mac: mean {:.2}, max {} ({}, {}, {})\n\
             audits: {}, the verdict ready after {:.1} s; retired at {:.1} s; elapsed {:.1} s\n",
            self.macs.len(),
            plan.macs
                .iter()
                .map(|(k, n)| format!("{} {n}", k.as_str()))
                .collect::<Vec<_>>()
                .join(", "),
            plan.iam_calls_per_second,
            plan.new_key_delay,
            plan.clock_speed,
            lockdown / floor,
            macs_iam as f64 / macs,
            then("sts") as f64 / macs,
            rollout_s3 as f64 / macs,
            count("throttled"),
            count("refused-new"),
            self.backup_calls,
            self.failures,
            self.service_peak_kb
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" and "),
            dialogs.iter().sum::<usize>() as f64 / macs,
            dialogs.iter().max().unwrap_or(&0),
            by_kind("token"),
            by_kind("proof"),
            by_kind("iam"),
            self.audits.len(),
            self.audits
                .iter()
                .find(|a| a.ready)
                .map_or(f64::NAN, |a| a.after),
            self.retirement.as_ref().map_or(f64::NAN, |r| r.2),
            self.elapsed,
        )
    }
}
