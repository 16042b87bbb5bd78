//! Attacks on the provisioning service by an insider: a user of another Mac of the same fleet,
//! who holds what every fleet member can hold — the enrollment token (every local user reads the
//! profile), copies of the main keys (any Mac had them before its lockdown), and the bucket's root
//! listing (every locked-down key may list the computer UUIDs) — and runs the project's own client
//! with an Arq home naming the victim's UUID. And the small denials of service anyone can try.
//! Each of these succeeded against the service before the fixes that came with them.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use arq_lockdown::protocol::enrollment::{self, EnrollmentKey};
use arq_lockdown::protocol::sealed::ReplyKey;
use arq_lockdown::protocol::{ENROLL, RETIRE, ROTATE};
use serde_json::{Value, json};

use crate::support::*;

/// A computer whose Arq has backed up into BUCKET (its computerinfo and data are there, so every
/// fleet member sees its UUID in the listing) but that nobody has enrolled yet.
fn backed_up_computer() -> String {
    let uuid = uuid_listed_last();
    seed_fleet(&json!({
        "bucket": BUCKET,
        "computers": [{"uuid": uuid, "computerinfo": "Victim's Mac", "data": true}],
    }));
    uuid
}

/// A fresh UUID for a computer whose data goes into BUCKET, that sorts after OTHER_COMPUTER: the
/// `verify` tests of this binary probe the first other computer BUCKET's listing shows, and expect
/// that one.
fn uuid_listed_last() -> String {
    format!("F{}", &fresh_uuid()[1..])
}

/// A fleet member's Mac whose Arq home names `uuid` (copied from the listing) and whose "Arq S3"
/// holds a key of its own that is not the main keys.
fn squatter(uuid: &str) -> Mac {
    Mac::in_bucket(BUCKET, uuid, &moto().scoped)
}

/// `apply --source service` with the fleet's enrollment token, against the service at `url`.
fn with_token(mac: &Mac, url: &str) -> std::process::Command {
    let mut command = mac.apply_via(url);
    command.env("ARQ_LOCKDOWN_ENROLLMENT_TOKEN", ENROLLMENT_TOKEN);
    command
}

/// What the admin's `pin` leaves for a computer nobody has bound (contracts §5): a user with the
/// computer's tags and `pinned-key`, no policy and no key. Seeded straight into moto here; the
/// admin command writes the same tags.
fn pin(uuid: &str, enrollment_public: &str) {
    let fingerprint = enrollment::fingerprint(enrollment_public).unwrap();
    seed_fleet(&json!({
        "bucket": BUCKET,
        "computers": [{"uuid": uuid, "user": {"tags": {
            "arq-lockdown:computer-uuid": uuid,
            "arq-lockdown:bucket": BUCKET,
            "arq-lockdown:pinned-key": fingerprint,
        }}}],
    }));
}

/// A token enrollment of `uuid` signed by `enrollment`, as a request body.
fn token_enrollment(uuid: &str, token: &str, enrollment: &EnrollmentKey) -> Vec<u8> {
    let mut request = enroll_request(uuid, enrollment, &ReplyKey::generate());
    request["enrollment_token"] = json!(token);
    envelope(ENROLL, uuid, &request, None, Some(enrollment))
}

/// A main-key enrollment of `uuid` signed by `enrollment`, as a request body.
fn main_key_enrollment(uuid: &str, enrollment: &EnrollmentKey) -> Vec<u8> {
    let request = enroll_request(uuid, enrollment, &ReplyKey::generate());
    envelope(
        ENROLL,
        uuid,
        &request,
        Some(&moto().admin),
        Some(enrollment),
    )
}

fn refused_with(output: &std::process::Output, code: &str) {
    assert_exit(output, ExitCode::Credentials, &[code]);
}

fn tags_of(uuid: &str) -> Value {
    scoped_user(uuid)["tags"].clone()
}

/// The service's gauge of entries in its replay memory.
fn replay_entries(url: &str) -> u64 {
    let (_, metrics) = http_to(url, "GET", "/metrics", b"");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("arq_lockdown_replay_cache_entries "))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_token_holder_cannot_squat_a_computer_that_has_backups_and_the_pin_lets_the_real_mac_in() {
    let _guard = no_arq_running();
    let victim = backed_up_computer();
    let url = &service().url;
    let squatter = squatter(&victim);
    let squat = run(&mut with_token(&squatter, url));
    refused_with(&squat, "computer-needs-confirmation");
    assert!(
        stderr(&squat).contains("has backups already"),
        "{}",
        stderr(&squat)
    );
    assert_eq!(
        scoped_user(&victim)["exists"],
        false,
        "the squat made a user"
    );
    assert_eq!(squatter.key(), moto().scoped, "\"Arq S3\" changed");

    // The real Mac is not told its computer is someone else's: it waits for the admin.
    let real = Mac::with_uuid(&victim);
    refused_with(
        &run(&mut real.apply_via_service("SERIAL-REAL")),
        "computer-needs-confirmation",
    );
    assert_eq!(real.key(), moto().admin);

    // The admin pins the fingerprint the real Mac reported; the squatter is refused and recorded,
    // the real Mac locks down.
    pin(&victim, &real.enrollment_key().public());
    refused_with(
        &run(&mut with_token(&squatter, url)),
        "computer-pinned-to-another-mac",
    );
    let claim = tags_of(&victim)["arq-lockdown:refused-claim"].clone();
    let squatters = enrollment::fingerprint(&squatter.enrollment_key().public()).unwrap();
    assert!(
        claim
            .as_str()
            .is_some_and(|c| c.ends_with(&format!(" {squatters}"))),
        "{claim}"
    );
    let locked = run(&mut real.apply_via_service("SERIAL-REAL"));
    assert_exit(&locked, ExitCode::Success, &[]);
    assert_eq!(real.verify(), ExitCode::Success);
    let tags = tags_of(&victim);
    assert_eq!(
        tags["arq-lockdown:enrollment-key"],
        real.enrollment_key().public()
    );
    assert_eq!(
        tags["arq-lockdown:pinned-key"],
        enrollment::fingerprint(&real.enrollment_key().public()).unwrap()
    );
}

#[test]
fn watching_the_listing_gains_nothing_on_a_new_mac_nor_on_one_just_revoked() {
    let _guard = no_arq_running();
    let url = &service().url;
    // A new Mac's first backup appears; the watcher sees its folder and claims it at once.
    let new_mac = uuid_listed_last();
    seed_fleet(
        &json!({"bucket": BUCKET, "computers": [{"uuid": new_mac, "computerinfo": "New Mac"}]}),
    );
    assert!(
        bucket_keys()
            .iter()
            .any(|k| k.starts_with(&format!("{new_mac}/")))
    );
    refused_with(
        &run(&mut with_token(&squatter(&new_mac), url)),
        "computer-needs-confirmation",
    );
    assert_eq!(scoped_user(&new_mac)["exists"], false);

    // A Mac enrolled before its first backup (nobody could know its UUID), backs up, and the admin
    // revokes it; the watcher claims the freed UUID at once.
    let mac = Mac::with_uuid(&uuid_listed_last());
    assert_exit(
        &run(&mut mac.apply_via_service("SERIAL-W")),
        ExitCode::Success,
        &[],
    );
    seed_fleet(&json!({"bucket": BUCKET, "computers": [{"uuid": mac.uuid, "data": true}]}));
    let admin = &moto().admin;
    let revoked = run(arq_lockdown_on_moto()
        .env("AWS_ACCESS_KEY_ID", &admin.id)
        .env("AWS_SECRET_ACCESS_KEY", &admin.secret)
        .args(["revoke", "--computer-uuid", &mac.uuid]));
    assert_exit(&revoked, ExitCode::Success, &[]);
    refused_with(
        &run(&mut with_token(&squatter(&mac.uuid), url)),
        "computer-needs-confirmation",
    );
    assert_eq!(scoped_user(&mac.uuid)["exists"], false);
}

#[test]
fn copied_main_keys_cannot_squat_a_computer_that_has_backups() {
    let _guard = no_arq_running();
    // To the service a copy of the main keys is the main keys: only the bucket and the pin decide.
    let victim = backed_up_computer();
    let squatter = Mac::with_uuid(&victim);
    refused_with(
        &run(&mut squatter.apply_via_service("SERIAL-COPY")),
        "computer-needs-confirmation",
    );
    assert_eq!(scoped_user(&victim)["exists"], false);
    assert_eq!(squatter.key(), moto().admin);
}

#[test]
fn another_allowed_bucket_cannot_bind_a_computer_whose_backups_are_elsewhere() {
    let _guard = no_arq_running();
    const SECOND: &str = "insiders-second-bucket.example";
    seed_fleet(&json!({"bucket": SECOND, "computers": []}));
    let buckets = format!("allowed_buckets = [\"{BUCKET}\"]");
    let both = format!("allowed_buckets = [\"{BUCKET}\", \"{SECOND}\"]");
    let instance = start_service_from(&service_config("127.0.0.1:0", "").replace(&buckets, &both));
    // Backups in BUCKET, and one computer whose only backups are S3-Glacier ones.
    let victim = backed_up_computer();
    let glacier_only = uuid_listed_last();
    seed_fleet(&json!({"bucket": BUCKET, "computers": [{"uuid": glacier_only, "glacier": true}]}));
    for uuid in [&victim, &glacier_only] {
        let squatter = Mac::in_bucket(SECOND, uuid, &moto().scoped);
        refused_with(
            &run(&mut with_token(&squatter, &instance.url)),
            "computer-needs-confirmation",
        );
        assert_eq!(scoped_user(uuid)["exists"], false, "{uuid} was bound");
    }
    // The real Mac, in its own bucket, waits for its pin: nobody holds its computer.
    let real = Mac::with_uuid(&victim);
    refused_with(
        &run(&mut real.apply_via(&instance.url)),
        "computer-needs-confirmation",
    );
    // Pinned in its own bucket, the computer is not moved to another by binding it there.
    pin(&victim, &real.enrollment_key().public());
    let mut elsewhere = enroll_request(&victim, &real.enrollment_key(), &ReplyKey::generate());
    elsewhere["bucket"] = json!(SECOND);
    elsewhere["enrollment_token"] = json!(ENROLLMENT_TOKEN);
    let body = envelope(
        ENROLL,
        &victim,
        &elsewhere,
        None,
        Some(&real.enrollment_key()),
    );
    let (status, answer) = http_to(&instance.url, "POST", ENROLL, &body);
    assert_eq!(
        (status, error_code(&answer)),
        (403, "bucket-mismatch".into())
    );
    assert_eq!(tags_of(&victim)["arq-lockdown:bucket"], BUCKET);
    assert_eq!(tags_of(&victim).get("arq-lockdown:enrollment-key"), None);
}

#[test]
fn a_refused_claim_is_recorded_on_the_users_tags_and_a_flood_of_them_is_not() {
    let _guard = no_arq_running();
    let proxy = Proxy::recording();
    let proxied = start_service_behind(&proxy);
    let victim = Mac::new();
    assert_exit(
        &run(&mut victim.apply_via(&proxied.url)),
        ExitCode::Success,
        &[],
    );
    let tag_users = || {
        proxy
            .recorded()
            .iter()
            .filter(|r| r.body.contains("Action=TagUser"))
            .count()
    };
    let before = tag_users();
    let squatter = EnrollmentKey::generate();
    let started = arq_lockdown::protocol::now_unix();
    for _ in 0..3 {
        let (status, answer) = http_to(
            &proxied.url,
            "POST",
            ENROLL,
            &token_enrollment(&victim.uuid, ENROLLMENT_TOKEN, &squatter),
        );
        assert_eq!(
            (status, error_code(&answer)),
            (403, "computer-already-enrolled".into())
        );
    }
    let claim = tags_of(&victim.uuid)["arq-lockdown:refused-claim"].clone();
    let (when, fingerprint) = claim
        .as_str()
        .and_then(|c| c.split_once(' '))
        .unwrap_or_else(|| panic!("no refused claim recorded: {claim}"));
    assert!(when.parse::<i64>().unwrap() >= started);
    assert_eq!(
        Some(fingerprint.to_owned()),
        enrollment::fingerprint(&squatter.public())
    );
    assert_eq!(tag_users() - before, 1, "the same claim was recorded again");
    // Thirty more, each with a key of its own: the service does not hammer TagUser for them. (Its
    // budget is 10 at once and 10 a minute: the bound grows with the time the flood took.)
    let flood = Instant::now();
    for _ in 0..30 {
        let body = token_enrollment(&victim.uuid, ENROLLMENT_TOKEN, &EnrollmentKey::generate());
        assert_eq!(http_to(&proxied.url, "POST", ENROLL, &body).0, 403);
    }
    let written = tag_users() - before;
    let refilled = flood.elapsed().as_secs() / 6 + 1;
    assert!(
        written as u64 <= 1 + 10 + refilled,
        "{written} TagUser calls for 31 refused claims in {:?}",
        flood.elapsed()
    );
    assert_eq!(keys_of(&victim.uuid), json!([victim.key().id]));
}

fn keys_of(uuid: &str) -> Value {
    scoped_user(uuid)["keys"].clone()
}

#[test]
fn thirty_parallel_enrollments_never_exceed_a_tokens_max_enrollments() {
    let _guard = no_arq_running();
    const TOKEN: &str = "three-in-all-token";
    let instance = start_service_from(&service_config(
        "127.0.0.1:0",
        &format!(
            "[[enrollment_tokens]]\nname = \"three-in-all\"\nsha256 = \"{}\"\nmax_enrollments = 3\nmax_per_hour = 1000",
            sha256_hex(TOKEN)
        ),
    ));
    let bodies: Vec<Vec<u8>> = (0..30)
        .map(|_| token_enrollment(&fresh_uuid(), TOKEN, &EnrollmentKey::generate()))
        .collect();
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let runs: Vec<_> = bodies
            .iter()
            .map(|body| scope.spawn(|| http_to(&instance.url, "POST", ENROLL, body).0))
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    let granted = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(granted, 3, "{statuses:?}");
    let users = fleet_state(BUCKET)["users"]
        .as_object()
        .unwrap()
        .values()
        .filter(|u| u["tags"]["arq-lockdown:enrolled-by"] == "token:three-in-all")
        .count();
    assert_eq!(users, 3);
}

#[test]
fn refused_enrollments_spend_no_allowance_and_no_replay_memory() {
    let _guard = no_arq_running();
    const TOKEN: &str = "three-an-hour-token";
    let instance = start_service_from(&service_config(
        "127.0.0.1:0",
        &format!(
            "[[enrollment_tokens]]\nname = \"three-an-hour\"\nsha256 = \"{}\"\nmax_per_hour = 3",
            sha256_hex(TOKEN)
        ),
    ));
    let victim = Mac::new();
    assert_exit(
        &run(&mut victim.apply_via(&instance.url)),
        ExitCode::Success,
        &[],
    );
    let remembered = replay_entries(&instance.url);
    let refusals: Vec<(u16, String)> = (0..4)
        .map(|_| {
            let body = token_enrollment(&victim.uuid, TOKEN, &EnrollmentKey::generate());
            let (status, answer) = http_to(&instance.url, "POST", ENROLL, &body);
            (status, error_code(&answer))
        })
        .collect();
    assert_eq!(
        refusals,
        vec![(403, "computer-already-enrolled".to_owned()); 4]
    );
    // Nothing of a refused request is kept: the same bytes are judged again, not as a replay.
    let body = token_enrollment(&victim.uuid, TOKEN, &EnrollmentKey::generate());
    for _ in 0..2 {
        let (status, answer) = http_to(&instance.url, "POST", ENROLL, &body);
        assert_eq!(
            (status, error_code(&answer)),
            (403, "computer-already-enrolled".into())
        );
    }
    assert_eq!(
        replay_entries(&instance.url),
        remembered,
        "refused requests filled the replay memory"
    );
    // A real new Mac still gets in: the allowance is intact.
    let body = token_enrollment(&fresh_uuid(), TOKEN, &EnrollmentKey::generate());
    let (status, answer) = http_to(&instance.url, "POST", ENROLL, &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(replay_entries(&instance.url), remembered + 1);
}

#[test]
fn main_key_enrollments_have_limits_too() {
    let _guard = no_arq_running();
    let instance = start_service_from(
        &service_config("127.0.0.1:0", "").replace(FLEET_MAX_PER_HOUR, "fleet_max_per_hour = 2"),
    );
    let answers: Vec<(u16, String)> = (0..3)
        .map(|_| {
            let body = main_key_enrollment(&fresh_uuid(), &EnrollmentKey::generate());
            let (status, answer) = http_to(&instance.url, "POST", ENROLL, &body);
            (status, error_code(&answer))
        })
        .collect();
    assert_eq!(
        answers,
        [
            (200, String::new()),
            (200, String::new()),
            (429, "fleet-limit".into())
        ]
    );
}

#[test]
fn a_body_sent_a_byte_at_a_time_is_cut_at_the_request_deadline() {
    let _guard = no_arq_running();
    let instance = start_service_from(&service_config("127.0.0.1:0", "max_connections = 16"));
    let address = instance.url.trim_start_matches("http://").to_owned();
    // Sixteen connections, each sending its body a byte a second: all the service's connections.
    let tricklers: Vec<_> = (0..16)
        .map(|_| {
            let address = address.clone();
            std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(&address).unwrap();
                write!(stream, "POST {ENROLL} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n").unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(1)))
                    .unwrap();
                let mut answer = Vec::new();
                let mut chunk = [0u8; 1024];
                for _ in 0..60 {
                    match stream.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => answer.extend_from_slice(&chunk[..n]),
                        Err(_) if stream.write_all(b" ").is_err() => break,
                        Err(_) => {}
                    }
                }
                String::from_utf8_lossy(&answer).into_owned()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let asked = Instant::now();
    assert_eq!(
        http_to(&instance.url, "GET", "/healthz", b""),
        (200, "ok\n".to_owned())
    );
    // Coarse on purpose: a connection may live 30 s; the request deadline is far shorter.
    let waited = asked.elapsed();
    let answers: Vec<String> = tricklers.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        waited < Duration::from_secs(20),
        "/healthz waited {waited:?} behind the trickling bodies"
    );
    for answer in answers {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    }
}

#[test]
fn headers_are_capped_at_16_kib_and_unfinished_ones_hold_little_memory() {
    let _guard = no_arq_running();
    let instance = start_service_from(&service_config("127.0.0.1:0", ""));
    let address = instance.url.trim_start_matches("http://").to_owned();
    let padding = format!("X-Padding: {}\r\n", "a".repeat(1000));
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    let _ = write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
        padding.repeat(17)
    );
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    // Two hundred connections, each with 380 KB of headers that never end.
    let held: Vec<std::net::TcpStream> = (0..200)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&address).unwrap();
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
            for _ in 0..380 {
                if stream.write_all(padding.as_bytes()).is_err() {
                    break;
                }
            }
            stream
        })
        .collect();
    // Time for the service to read what the kernel holds for it.
    std::thread::sleep(Duration::from_secs(2));
    let status = std::fs::read_to_string(format!("/proc/{}/status", instance.pid)).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap();
    drop(held);
    // Generous: the debug build alone is ~30 MiB; the headers took ~75 MiB more before the cap.
    assert!(
        peak_kb < 64 * 1024,
        "the service's memory peaked at {} MiB",
        peak_kb / 1024
    );
}

#[test]
fn a_retire_flood_nobody_signed_for_cannot_turn_real_retires_away() {
    let _guard = no_arq_running();
    let instance = start_service_from(&service_config("127.0.0.1:0", ""));
    let mac = Mac::new();
    assert_exit(
        &run(&mut mac.apply_via(&instance.url)),
        ExitCode::Success,
        &[],
    );
    let flooding = std::sync::atomic::AtomicBool::new(true);
    let refused: Vec<(u16, String)> = std::thread::scope(|scope| {
        for i in 0..8 {
            let (url, flooding) = (&instance.url, &flooding);
            scope.spawn(move || {
                while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                    let uuid = fresh_uuid();
                    // Half signed by a key they do not name, half by a throwaway key of their own.
                    let (signer, named) = (EnrollmentKey::generate(), EnrollmentKey::generate());
                    let named = if i % 2 == 0 { &named } else { &signer };
                    let request = retire_request(&uuid, "AKIAFLOODEXAMPLE0001", named);
                    let body = envelope(RETIRE, &uuid, &request, None, Some(&signer));
                    http_to(url, "POST", RETIRE, &body);
                }
            });
        }
        std::thread::sleep(Duration::from_millis(300));
        let answers = (0..20)
            .map(|_| {
                let request =
                    retire_request(&mac.uuid, "AKIANOTAKEYEXAMPLE01", &mac.enrollment_key());
                let body = envelope(
                    RETIRE,
                    &mac.uuid,
                    &request,
                    None,
                    Some(&mac.enrollment_key()),
                );
                let (status, answer) = http_to(&instance.url, "POST", RETIRE, &body);
                (status, error_code(&answer))
            })
            .filter(|(status, _)| *status != 200)
            .collect();
        flooding.store(false, std::sync::atomic::Ordering::Relaxed);
        answers
    });
    assert_eq!(refused, [], "real retires refused during the flood");

    // Another instance, which never saw this binding, looks it up: the bound key retires there
    // too, and a key of the Mac's is gone.
    let other = start_service_from(&service_config("127.0.0.1:0", ""));
    let enrollment = mac.enrollment_key();
    let (status, extra) = http_to(
        &instance.url,
        "POST",
        ENROLL,
        &main_key_enrollment(&mac.uuid, &enrollment),
    );
    assert_eq!(status, 200, "{extra}");
    let extra: Value = serde_json::from_str(&extra).unwrap();
    let extra = extra["access_key_id"].as_str().unwrap();
    let request = retire_request(&mac.uuid, extra, &enrollment);
    let body = envelope(RETIRE, &mac.uuid, &request, None, Some(&enrollment));
    assert_eq!(http_to(&other.url, "POST", RETIRE, &body).0, 200);
    assert_eq!(keys_of(&mac.uuid), json!([mac.key().id]));
}

#[test]
fn small_order_enrollment_and_reply_keys_are_refused() {
    let _guard = no_arq_running();
    use arq_lockdown::protocol::base64_encode;
    // The identity point as an Ed25519 public key, and R = identity, S = 0: a "signature" that
    // verifies for every message.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut forged = [0u8; 64];
    forged[0] = 1;
    let uuid = fresh_uuid();
    let mut request = enroll_request(&uuid, &EnrollmentKey::generate(), &ReplyKey::generate());
    request["enrollment_key"] = json!(base64_encode(&identity));
    request["enrollment_token"] = json!(ENROLLMENT_TOKEN);
    let body =
        json!({"request": request.to_string(), "enrollment_signature": base64_encode(&forged)});
    let (status, answer) = http("POST", ENROLL, body.to_string().as_bytes());
    assert_eq!(
        (status, error_code(&answer)),
        (400, "bad-key".into()),
        "{answer}"
    );
    assert_eq!(scoped_user(&uuid)["exists"], false);

    // Reply keys of small order (u = 0, and a point of order 8, libsodium's list): whatever is
    // sealed to them, anyone can open.
    let order_8 = "4Ot6fDtBuK4WVuP68Z/EatoJjeucMrH9hmIFFl9JuAA=";
    for reply in [base64_encode(&[0u8; 32]), order_8.to_owned()] {
        let uuid = fresh_uuid();
        let enrollment = EnrollmentKey::generate();
        let mut request = enroll_request(&uuid, &enrollment, &ReplyKey::generate());
        request["reply_key"] = json!(reply);
        request["enrollment_token"] = json!(ENROLLMENT_TOKEN);
        let body = envelope(ENROLL, &uuid, &request, None, Some(&enrollment));
        let (status, answer) = http("POST", ENROLL, &body);
        assert_eq!(
            (status, error_code(&answer)),
            (400, "bad-key".into()),
            "{reply}: {answer}"
        );
        assert_eq!(scoped_user(&uuid)["exists"], false);
    }
    // A rotation's reply key just the same.
    let mac = Mac::new();
    assert_exit(
        &run(&mut mac.apply_via_service("SERIAL-WEAK")),
        ExitCode::Success,
        &[],
    );
    let mut rotate = rotate_request(&mac.uuid, &ReplyKey::generate());
    rotate["reply_key"] = json!(base64_encode(&[0u8; 32]));
    let body = envelope(
        ROTATE,
        &mac.uuid,
        &rotate,
        Some(&mac.key()),
        Some(&mac.enrollment_key()),
    );
    let (status, answer) = http("POST", ROTATE, &body);
    assert_eq!(
        (status, error_code(&answer)),
        (400, "bad-key".into()),
        "{answer}"
    );
    assert_eq!(keys_of(&mac.uuid), json!([mac.key().id]));
}

#[test]
fn binding_without_a_pin_is_the_admins_choice_always_or_never() {
    let _guard = no_arq_running();
    // "always": trust on first use, for a short supervised rollout.
    let always = start_service_from(&service_config(
        "127.0.0.1:0",
        "bind_without_pin = \"always\"",
    ));
    let victim = backed_up_computer();
    let body = token_enrollment(&victim, ENROLLMENT_TOKEN, &EnrollmentKey::generate());
    assert_eq!(http_to(&always.url, "POST", ENROLL, &body).0, 200);
    // "never": every computer pinned first, even one nobody else can know.
    let never = start_service_from(&service_config(
        "127.0.0.1:0",
        "bind_without_pin = \"never\"",
    ));
    let fresh = fresh_uuid();
    let enrollment = EnrollmentKey::generate();
    let body = token_enrollment(&fresh, ENROLLMENT_TOKEN, &enrollment);
    let (status, answer) = http_to(&never.url, "POST", ENROLL, &body);
    assert_eq!(
        (status, error_code(&answer)),
        (403, "computer-needs-confirmation".into())
    );
    assert!(
        answer.contains("enrolls only computers the admin pinned"),
        "{answer}"
    );
    assert_eq!(scoped_user(&fresh)["exists"], false);
    pin(&fresh, &enrollment.public());
    let body = token_enrollment(&fresh, ENROLLMENT_TOKEN, &enrollment);
    let (status, answer) = http_to(&never.url, "POST", ENROLL, &body);
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn a_new_computer_costs_two_listings_per_allowed_bucket_and_nothing_more_of_iam() {
    let _guard = no_arq_running();
    let proxy = Proxy::recording();
    let proxied = start_service_behind(&proxy);
    let before = proxy.recorded().len();
    let uuid = fresh_uuid();
    let body = token_enrollment(&uuid, ENROLLMENT_TOKEN, &EnrollmentKey::generate());
    assert_eq!(http_to(&proxied.url, "POST", ENROLL, &body).0, 200);
    let calls: Vec<String> = proxy.recorded()[before..]
        .iter()
        .map(
            |r| match r.body.split('&').find_map(|p| p.strip_prefix("Action=")) {
                Some(action) => action.to_owned(),
                None => format!(
                    "{} {}",
                    r.method,
                    r.path.split('?').nth(1).unwrap_or_default()
                ),
            },
        )
        .collect();
    let listings = [format!("{uuid}/"), format!("glacier/{uuid}/")].map(|prefix| {
        format!(
            "GET list-type=2&max-keys=1&prefix={}",
            prefix.replace('/', "%2F")
        )
    });
    let mut expected: Vec<String> = ["CreateUser", "PutUserPolicy", "CreateAccessKey"]
        .map(str::to_owned)
        .into_iter()
        .chain(listings)
        .collect();
    let mut calls = calls;
    calls.sort();
    expected.sort();
    assert_eq!(calls, expected);
}
