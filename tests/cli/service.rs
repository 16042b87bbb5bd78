//! The provisioning service (`serve`) on 127.0.0.1 against moto with IAM enforcement on, and
//! `apply --source service` as its client. Requests are made by hand where they must be hostile.

use std::time::Duration;

use arq_lockdown::protocol::enrollment::EnrollmentKey;
use arq_lockdown::protocol::sealed::ReplyKey;
use arq_lockdown::protocol::{ENROLL, ROTATE};
use serde_json::{Value, json};

use crate::support::*;

fn keys_of(uuid: &str) -> Value {
    scoped_user(uuid)["keys"].clone()
}

#[test]
fn a_mac_enrolls_with_the_main_keys_then_rotates_with_its_own() {
    let _guard = no_arq_running();
    let mac = Mac::new();
    let main = mac.key();
    let enrolled = run(&mut mac.apply_via_service("SERIAL-A"));
    assert_no_secret(&enrolled, &[&main.secret, &mac.key().secret]);
    assert_exit(&enrolled, ExitCode::Success, &[]);
    let first = mac.key();
    assert_ne!(first.id, main.id);
    assert_eq!(keys_of(&mac.uuid), json!([first.id]));
    let tags = scoped_user(&mac.uuid)["tags"].clone();
    let enrollment_key = tags["arq-lockdown:enrollment-key"].clone();
    assert!(enrollment_key.as_str().is_some_and(|k| k.len() == 44));
    // Exactly these (and this machine's name): the proving key is what this lockdown replaced.
    let mut without_name = tags.as_object().unwrap().clone();
    without_name.remove("arq-lockdown:computer-name");
    assert_eq!(
        Value::Object(without_name),
        json!({
            "arq-lockdown:computer-uuid": mac.uuid,
            "arq-lockdown:bucket": BUCKET,
            "arq-lockdown:enrollment-key": enrollment_key,
            "arq-lockdown:enrolled-by": "arn:aws:iam::123456789012:user/fleet-admin",
            "arq-lockdown:serial": "SERIAL-A",
            "arq-lockdown:policy-options": "default",
            "arq-lockdown:replaced-key": main.id,
        })
    );
    assert_eq!(
        mac.verify(),
        ExitCode::Success,
        "the enrolled key does not work or reaches other data"
    );

    let rotated = run(mac.apply_via_service("SERIAL-A").arg("--rotate"));
    assert_no_secret(&rotated, &[&first.secret, &mac.key().secret]);
    assert_exit(&rotated, ExitCode::Success, &[]);
    let second = mac.key();
    assert_ne!(second.id, first.id);
    assert_eq!(
        keys_of(&mac.uuid),
        json!([second.id]),
        "the old key was not retired"
    );
    assert_eq!(
        scoped_user(&mac.uuid)["tags"],
        tags,
        "rotation changed the binding tags"
    );
    assert_eq!(mac.verify(), ExitCode::Success);
    let log = service().log.lock().unwrap().clone();
    assert_no_secret_in(
        "the service's log",
        &log.join("\n"),
        &[&main.secret, &first.secret, &second.secret],
    );
    assert!(log.iter().any(|line| line.contains(&mac.uuid)
        && line.contains("\"endpoint\":\"rotate\"")
        && line.contains("\"result\":\"ok\"")));
}

/// After an upgrade that changed the policy (the receipt records a hash this version does not
/// write), the service's Mac is `policy-outdated` and its next apply refreshes the policy the one
/// way the service can: it rotates once (the service writes its policy whenever it issues a key),
/// and then it is locked down, with nothing more to do.
#[test]
fn after_an_upgrade_that_changed_the_policy_the_next_apply_rotates_once() {
    let _guard = no_arq_running();
    let mac = Mac::new();
    let enrolled = run(&mut mac.apply_via_service("SERIAL-U"));
    assert_eq!(
        exit_code(&enrolled),
        ExitCode::Success,
        "{}",
        stderr(&enrolled)
    );
    let first = mac.key();
    let path = mac
        .home
        .path()
        .join("Library/Application Support/arq-lockdown/receipt.json");
    let mut receipt: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let current_policy = receipt["policy_sha256"].clone();
    receipt["policy_sha256"] = json!("0".repeat(64));
    std::fs::write(&path, receipt.to_string()).unwrap();
    let status = || {
        let output = run(arq_lockdown()
            .args(["status", "--json", "--credential-store", &mac.store])
            .arg("--arq-home")
            .arg(mac.home.path()));
        serde_json::from_slice::<Value>(&output.stdout).unwrap()["state"].clone()
    };
    assert_eq!(status(), "policy-outdated");

    let refreshed = run(&mut mac.apply_via_service("SERIAL-U"));
    assert_eq!(
        exit_code(&refreshed),
        ExitCode::Success,
        "{}",
        stderr(&refreshed)
    );
    let second = mac.key();
    assert_ne!(
        second.id, first.id,
        "the policy was not refreshed by a rotation"
    );
    assert_eq!(
        keys_of(&mac.uuid),
        json!([second.id]),
        "the old key was not retired"
    );
    let receipt: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(receipt["policy_sha256"], current_policy);
    assert_eq!(status(), "locked-down");
    let again = run(&mut mac.apply_via_service("SERIAL-U"));
    assert!(
        String::from_utf8_lossy(&again.stdout).starts_with("already locked down"),
        "{}",
        stderr(&again)
    );
    assert_eq!(mac.key(), second);
}

#[test]
fn a_bound_computer_uuid_is_enrolled_again_only_by_the_mac_that_holds_its_enrollment_key() {
    let _guard = no_arq_running();
    let first = Mac::new();
    assert_exit(
        &run(&mut first.apply_via_service("SERIAL-FIRST")),
        ExitCode::Success,
        &[],
    );
    let bound = keys_of(&first.uuid);

    // Another Mac claiming the same UUID — even with the same serial — has another enrollment key.
    let impostor = Mac::with_uuid(&first.uuid);
    let refused = run(&mut impostor.apply_via_service("SERIAL-FIRST"));
    assert_exit(
        &refused,
        ExitCode::Credentials,
        &["computer-already-enrolled"],
    );
    assert_eq!(keys_of(&first.uuid), bound, "the refusal changed IAM");
    assert_eq!(impostor.key(), moto().admin);

    // The same Mac may enroll again, e.g. after "Arq S3" was reset to the main keys; the key it
    // had is retired once the new one is in place.
    first.set_key(&moto().admin);
    let again = run(&mut first.apply_via_service("SERIAL-FIRST"));
    assert_exit(&again, ExitCode::Success, &[]);
    assert_eq!(keys_of(&first.uuid), json!([first.key().id]));
}

#[test]
fn another_macs_scoped_key_cannot_rotate_this_computer() {
    let _guard = no_arq_running();
    let mac = Mac::new();
    let other = Mac::new();
    assert_exit(
        &run(&mut mac.apply_via_service("SERIAL-M")),
        ExitCode::Success,
        &[],
    );
    assert_exit(
        &run(&mut other.apply_via_service("SERIAL-O")),
        ExitCode::Success,
        &[],
    );
    let before = keys_of(&mac.uuid);
    let reply = ReplyKey::generate();
    for (who, key) in [
        ("another Mac's key", other.key()),
        ("the main keys", moto().admin.clone()),
    ] {
        let body = envelope(
            ROTATE,
            &mac.uuid,
            &rotate_request(&mac.uuid, &reply),
            Some(&key),
            None,
        );
        let (status, answer) = http("POST", ROTATE, &body);
        assert_eq!(
            (status, error_code(&answer)),
            (403, "not-this-computers-key".to_owned()),
            "{who}: {answer}"
        );
    }
    assert_eq!(keys_of(&mac.uuid), before);
}

#[test]
fn hostile_requests_are_refused_and_create_nothing() {
    let _guard = no_arq_running();
    let admin = &moto().admin;
    let uuid = fresh_uuid();
    let other = fresh_uuid();
    let enrollment = EnrollmentKey::generate();
    let reply = ReplyKey::generate();
    let request = enroll_request(&uuid, &enrollment, &reply);
    let signed = |request: &Value, key: Option<&Key>| {
        envelope(ENROLL, &uuid, request, key, Some(&enrollment))
    };
    let with = |change: &dyn Fn(&mut Value)| {
        let mut envelope: Value = serde_json::from_slice(&signed(&request, Some(admin))).unwrap();
        change(&mut envelope);
        envelope.to_string().into_bytes()
    };
    let request_with = |field: &str, value: Value| {
        let mut changed = request.clone();
        changed[field] = value;
        changed
    };
    let text_of = |envelope: &Value| envelope["request"].as_str().unwrap().to_owned();
    let huge = vec![b'x'; 1024 * 1024];
    let stale = request_with("issued_at", json!(1_000_000_000));

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("junk JSON", b"{not json".to_vec(), 400, "bad-json"),
        (
            "unknown envelope field",
            with(&|e| e["admin"] = json!(true)),
            400,
            "bad-json",
        ),
        (
            "unknown request field",
            signed(&request_with("admin", json!(true)), Some(admin)),
            400,
            "bad-json",
        ),
        (
            "odd UUID",
            signed(&request_with("computer_uuid", json!("../*")), Some(admin)),
            400,
            "bad-computer",
        ),
        (
            "bucket not allowed",
            signed(
                &request_with("bucket", json!("someone-elses-bucket")),
                Some(admin),
            ),
            403,
            "bucket-not-allowed",
        ),
        (
            "old request",
            signed(&stale, Some(admin)),
            403,
            "request-expired",
        ),
        (
            "reply key not a key",
            signed(&request_with("reply_key", json!("AAAA")), Some(admin)),
            400,
            "bad-key",
        ),
        (
            "no enrollment signature",
            with(&|e| {
                e.as_object_mut()
                    .unwrap()
                    .retain(|k, _| k != "enrollment_signature")
            }),
            403,
            "enrollment-signature-invalid",
        ),
        (
            "signature by another key",
            with(&|e| {
                e["enrollment_signature"] = json!(EnrollmentKey::generate().sign(SERVER_ID, "x"))
            }),
            403,
            "enrollment-signature-invalid",
        ),
        (
            "neither proof nor token",
            signed(&request, None),
            400,
            "proof-or-token",
        ),
        // The request changed after it was proven: the proof and signature cover its SHA-256.
        (
            "request changed after signing",
            with(&|e| {
                let changed = text_of(e).replace("Test Mac", "Evil Mac");
                e["request"] = json!(changed);
            }),
            403,
            "enrollment-signature-invalid",
        ),
        (
            "reply key swapped after signing",
            with(&|e| {
                let changed = text_of(e).replace(&reply.public(), &ReplyKey::generate().public());
                e["request"] = json!(changed);
            }),
            403,
            "enrollment-signature-invalid",
        ),
        (
            "tampered proof body",
            with(&|e| {
                e["proof"]["body"] = json!("Action=GetCallerIdentity&Version=2011-06-15&Extra=1")
            }),
            403,
            "proof-malformed",
        ),
        (
            "tampered proof signature",
            with(&|e| {
                let auth = e["proof"]["headers"]["authorization"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                let flipped = if auth.ends_with('0') {
                    format!("{}1", &auth[..auth.len() - 1])
                } else {
                    format!("{}0", &auth[..auth.len() - 1])
                };
                e["proof"]["headers"]["authorization"] = json!(flipped);
            }),
            403,
            "proof-rejected",
        ),
        (
            "smuggled header",
            with(&|e| e["proof"]["headers"]["x-forwarded-host"] = json!("evil.example")),
            403,
            "proof-header-not-allowed",
        ),
        (
            "session token",
            with(&|e| e["proof"]["headers"]["x-amz-security-token"] = json!("FwoGZXIvYXdzEXAMPLE")),
            403,
            "proof-header-not-allowed",
        ),
        (
            "wrong server id",
            with(&|e| e["proof"]["headers"]["x-arq-lockdown-server-id"] = json!("another-service")),
            403,
            "proof-wrong-server",
        ),
        (
            "client-supplied STS host",
            with(&|e| e["proof"]["headers"]["host"] = json!("sts.evil.example")),
            403,
            "proof-wrong-sts-host",
        ),
        (
            "proof for another computer",
            with(&|e| e["proof"]["headers"]["x-arq-lockdown-computer"] = json!(other)),
            403,
            "proof-wrong-computer",
        ),
        (
            "proof for another endpoint",
            with(&|e| {
                let binding = e["proof"]["headers"]["x-arq-lockdown-request"]
                    .as_str()
                    .unwrap()
                    .replace(ENROLL, ROTATE);
                e["proof"]["headers"]["x-arq-lockdown-request"] = json!(binding);
            }),
            403,
            "proof-wrong-request",
        ),
        (
            "junk date",
            with(&|e| e["proof"]["headers"]["x-amz-date"] = json!("00000101T000000Z")),
            403,
            "proof-malformed",
        ),
        (
            "not a fleet principal",
            signed(&request, Some(&moto().seed_2012)),
            403,
            "not-a-fleet-principal",
        ),
        (
            "wrong enrollment token",
            signed(&request_with("enrollment_token", json!("guess")), None),
            403,
            "bad-enrollment-token",
        ),
        ("huge body", huge, 413, "request-too-large"),
    ];
    for (name, body, status, code) in cases {
        let (got_status, got_body) = http("POST", ENROLL, &body);
        assert_eq!(got_status, status, "{name}: {got_body}");
        assert_eq!(error_code(&got_body), code, "{name}: {got_body}");
        for computer in [&uuid, &other] {
            assert_eq!(
                scoped_user(computer)["exists"],
                false,
                "{name}: something was created"
            );
        }
    }
    // The message says what kind of JSON error, and where — never what the input held.
    let (_, junk) = http("POST", ENROLL, b"{not json");
    assert!(junk.contains("not JSON at line 1 column 2"), "{junk}");
    let unknown = signed(&request_with("admin", json!("secret-ish")), Some(admin));
    let (_, unknown) = http("POST", ENROLL, &unknown);
    assert!(
        unknown.contains("not the expected fields or types"),
        "{unknown}"
    );
    assert!(!unknown.contains("secret-ish"), "{unknown}");
    assert_eq!(http("GET", ENROLL, b"").0, 405);
    assert_eq!(http("GET", "/healthz", b""), (200, "ok\n".to_owned()));
}

#[test]
fn a_request_works_once() {
    let _guard = no_arq_running();
    let uuid = fresh_uuid();
    let enrollment = EnrollmentKey::generate();
    let reply = ReplyKey::generate();
    let body = envelope(
        ENROLL,
        &uuid,
        &enroll_request(&uuid, &enrollment, &reply),
        Some(&moto().admin),
        Some(&enrollment),
    );
    let (status, answer) = http("POST", ENROLL, &body);
    assert_eq!(status, 200, "{answer}");
    let issued: Value = serde_json::from_str(&answer).unwrap();
    assert!(issued.get("secret_access_key").is_none());
    let secret = reply
        .open(issued["sealed_secret_access_key"].as_str().unwrap())
        .expect("the answer opens with the reply key");
    assert_eq!(secret.expose().len(), 40);
    let (status, answer) = http("POST", ENROLL, &body);
    assert_eq!(
        (status, error_code(&answer)),
        (403, "proof-replayed".to_owned())
    );
    assert_eq!(keys_of(&uuid), json!([issued["access_key_id"]]));
}

#[test]
fn an_enrollment_token_enrolls_without_main_keys() {
    let _guard = no_arq_running();
    let uuid = fresh_uuid();
    let enrollment = EnrollmentKey::generate();
    let mut request = enroll_request(&uuid, &enrollment, &ReplyKey::generate());
    request["enrollment_token"] = json!(ENROLLMENT_TOKEN);
    request["serial"] = json!("SERIAL-TOKEN");
    // With a token the key the Mac replaces is only its claim: kept as an audit hint when it has
    // the shape of a key id, never used to decide anything.
    request["replaced_key_id"] = json!("AKIACLAIMEDEXAMPLE01");
    let (status, body) = http(
        "POST",
        ENROLL,
        &envelope(ENROLL, &uuid, &request, None, Some(&enrollment)),
    );
    assert_eq!(status, 200, "{body}");
    let tags = scoped_user(&uuid)["tags"].clone();
    assert_eq!(
        tags,
        json!({
            "arq-lockdown:computer-uuid": uuid,
            "arq-lockdown:bucket": BUCKET,
            "arq-lockdown:enrollment-key": enrollment.public(),
            "arq-lockdown:enrolled-by": "token:tests",
            "arq-lockdown:computer-name": "Test Mac",
            "arq-lockdown:serial": "SERIAL-TOKEN",
            "arq-lockdown:policy-options": "default",
            "arq-lockdown:replaced-key": "AKIACLAIMEDEXAMPLE01",
        })
    );

    // A claim that is not a key id is dropped, and the enrollment goes on as without it.
    let uuid = fresh_uuid();
    let enrollment = EnrollmentKey::generate();
    let mut request = enroll_request(&uuid, &enrollment, &ReplyKey::generate());
    request["enrollment_token"] = json!(ENROLLMENT_TOKEN);
    request["replaced_key_id"] = json!("AKIA,<script>");
    let (status, body) = http(
        "POST",
        ENROLL,
        &envelope(ENROLL, &uuid, &request, None, Some(&enrollment)),
    );
    assert_eq!(status, 200, "{body}");
    let tags = scoped_user(&uuid)["tags"].clone();
    assert_eq!(tags.get("arq-lockdown:replaced-key"), None, "{tags}");
    assert_eq!(tags["arq-lockdown:policy-options"], "default");
}

#[test]
fn a_slow_client_is_cut_off_and_the_service_answers_others_meanwhile() {
    let _guard = no_arq_running();
    use std::io::{Read, Write};
    let address = service().url.trim_start_matches("http://").to_owned();
    let mut slow = std::net::TcpStream::connect(&address).unwrap();
    slow.write_all(b"POST /v1/enroll HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // While the slow client is still connected, others are served.
    assert_eq!(http("GET", "/healthz", b""), (200, "ok\n".to_owned()));
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the connection was kept open"
    );
    let (status, metrics) = http("GET", "/metrics", b"");
    assert_eq!(status, 200);
    assert!(metrics.contains("arq_lockdown_requests_total"));
}

/// Sends one request on `stream` (kept alive) and reads its answer's status and body.
fn keep_alive_request(
    stream: &mut std::net::TcpStream,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, String) {
    use std::io::{BufRead, BufReader, Read, Write};
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).unwrap();
    stream.write_all(body).unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return (0, String::new());
    }
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
    }
    let mut answer = vec![0; length];
    reader.read_exact(&mut answer).unwrap();
    (status, String::from_utf8_lossy(&answer).into_owned())
}

#[test]
fn a_request_in_flight_when_its_connection_reaches_its_lifetime_still_gets_its_answer() {
    let _guard = no_arq_running();
    let proxy = Proxy::holding("CreateAccessKey");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("service.toml");
    std::fs::write(&config, service_config("127.0.0.1:0", "")).unwrap();
    let held = start_service_with(
        &config,
        dir,
        &format!("export AWS_ENDPOINT_URL={};", proxy.endpoint),
    );
    // A connection kept busy for 20 s (a request every 2 s), then an enrollment on it whose key
    // is still being made when the connection passes its 30 s.
    let address = held.url.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    let connected = std::time::Instant::now();
    while connected.elapsed() < Duration::from_secs(20) {
        assert_eq!(
            keep_alive_request(&mut stream, "GET", "/healthz", b"").0,
            200
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let uuid = fresh_uuid();
    let enrollment = EnrollmentKey::generate();
    let request = enroll_request(&uuid, &enrollment, &ReplyKey::generate());
    let body = envelope(
        ENROLL,
        &uuid,
        &request,
        Some(&moto().admin),
        Some(&enrollment),
    );
    let answer = std::thread::spawn(move || keep_alive_request(&mut stream, "POST", ENROLL, &body));
    let deadline = connected + Duration::from_secs(30);
    while proxy.held().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "CreateAccessKey never came in time"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(
        (connected + Duration::from_secs(31)).duration_since(std::time::Instant::now()),
    );
    proxy.release("CreateAccessKey");
    let (status, answer) = answer.join().unwrap();
    assert_eq!(status, 200, "{answer:?}");
    assert_eq!(keys_of(&uuid).as_array().unwrap().len(), 1);
}

#[test]
fn the_service_speaks_tls_and_never_plain_http_off_loopback() {
    let _guard = no_arq_running();
    let dir = tempfile::tempdir().unwrap();
    // A test CA, and a certificate for localhost signed by it.
    let ca = test_ca(dir.path());
    let (cert, key) = localhost_certificate(dir.path(), "cert");
    let config = dir.path().join("tls.toml");
    let tls = format!(
        "[tls]\ncertificate = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    std::fs::write(&config, service_config("127.0.0.1:0", &tls)).unwrap();
    let service = start_service(&config, tempfile::tempdir().unwrap());
    assert!(service.url.starts_with("https://"), "{}", service.url);
    let url = service.url.replace("127.0.0.1", "localhost");

    // A Mac that does not trust the certificate refuses to talk; one that does enrolls over TLS.
    let mac = Mac::new();
    let untrusted = run(&mut mac.apply_via(&url));
    assert_exit(&untrusted, ExitCode::Aws, &[]);
    let trusted = run(mac.apply_via(&url).env("SSL_CERT_FILE", &ca));
    assert_exit(&trusted, ExitCode::Success, &[]);
    assert_eq!(keys_of(&mac.uuid), json!([mac.key().id]));

    // Plain HTTP: only on loopback, and a Mac sends keys over it only to itself.
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, service_config("0.0.0.0:0", "")).unwrap();
    let refused = run(arq_lockdown().arg("serve").arg("--config").arg(&plain));
    assert_exit(
        &refused,
        ExitCode::ConfigInvalid,
        &["plain HTTP on 0.0.0.0:0"],
    );
    let insecure = run(Mac::new().apply().args([
        "--source",
        "service",
        "--service-url",
        "http://arq.example.com",
    ]));
    assert_exit(&insecure, ExitCode::ConfigInvalid, &["must be https://"]);
}

/// Property: a valid enrollment with bytes changed anywhere — in the request, the proof, the
/// signature, the JSON around them — is refused with a 4xx and a reason code, never served,
/// never a 5xx or a dropped connection, and creates nothing.
#[test]
fn mutated_requests_are_refused_by_the_service_and_never_crash_it() {
    let _guard = no_arq_running();
    let uuid = fresh_uuid();
    let enrollment = EnrollmentKey::generate();
    let request = enroll_request(&uuid, &enrollment, &ReplyKey::generate());
    let valid = envelope(
        ENROLL,
        &uuid,
        &request,
        Some(&moto().admin),
        Some(&enrollment),
    );
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    for round in 0..200 {
        let mut body = valid.clone();
        for _ in 0..1 + next(3) {
            let at = next(body.len());
            match next(3) {
                0 => body[at] = body[at].wrapping_add(1 + next(254) as u8),
                1 => body.insert(at, b"\"{}[],:\\0a"[next(10)]),
                _ => {
                    body.remove(at);
                }
            }
        }
        let (status, answer) = http("POST", ENROLL, &body);
        assert!(
            (400..500).contains(&status),
            "round {round}: {status} {answer}"
        );
        assert!(
            status == 413 || !error_code(&answer).is_empty(),
            "round {round}: {answer}"
        );
    }
    assert_eq!(scoped_user(&uuid)["exists"], false);
    assert_eq!(http("GET", "/healthz", b""), (200, "ok\n".to_owned()));
}
