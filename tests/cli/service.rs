//! The provisioning service (`serve`) on 127.0.0.1 against moto with IAM enforcement on, and
//! `apply --source service` as its client. Requests are made by hand where they must be hostile.

use std::time::{Duration, SystemTime};

use arq_lockdown::arq_config::ComputerUuid;
use arq_lockdown::credential_store::AccessKey;
use arq_lockdown::secret::Secret;
use arq_lockdown::service::proof::{self, Proof};
use serde_json::{Value, json};

use crate::support::*;

const CREDENTIALS: i32 = 5;

fn access_key(key: &Key) -> AccessKey {
    AccessKey {
        id: key.id.clone(),
        secret: Secret::new(key.secret.clone()),
    }
}

fn make_proof(key: &Key, uuid: &str, server_id: &str, sts_host: &str, at: SystemTime) -> Proof {
    proof::make(
        &access_key(key),
        sts_host,
        server_id,
        &ComputerUuid::parse(uuid).unwrap(),
        at,
    )
}

fn good_proof(key: &Key, uuid: &str) -> Proof {
    make_proof(key, uuid, SERVER_ID, "sts.amazonaws.com", SystemTime::now())
}

fn key_request(uuid: &str, proof: &Proof) -> Vec<u8> {
    json!({"computer_uuid": uuid, "bucket": BUCKET, "computer_name": "Test Mac", "serial": "SERIAL-T", "proof": proof}).to_string().into_bytes()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn keys_of(uuid: &str) -> Value {
    scoped_user(uuid)["keys"].clone()
}

#[test]
fn a_mac_enrolls_with_the_main_keys_then_rotates_with_its_own() {
    let mac = Mac::new();
    let main = mac.key();
    let enrolled = run(&mut mac.apply_via_service("SERIAL-A"));
    assert_no_secret(&enrolled, &[&main.secret, &mac.key().secret]);
    assert_eq!(exit_code(&enrolled), 0, "{}", stderr(&enrolled));
    let first = mac.key();
    assert_ne!(first.id, main.id);
    assert_eq!(keys_of(&mac.uuid), json!([first.id]));
    assert_eq!(
        scoped_user(&mac.uuid)["tags"]["arq-lockdown:serial"],
        "SERIAL-A"
    );
    assert_eq!(
        mac.verify(),
        11,
        "the enrolled key does not work or reaches other data"
    );

    let rotated = run(mac.apply_via_service("SERIAL-A").arg("--rotate"));
    assert_no_secret(&rotated, &[&first.secret, &mac.key().secret]);
    assert_eq!(exit_code(&rotated), 0, "{}", stderr(&rotated));
    let second = mac.key();
    assert_ne!(second.id, first.id);
    assert_eq!(
        keys_of(&mac.uuid),
        json!([second.id]),
        "the old key was not retired"
    );
    assert_eq!(mac.verify(), 11);
    let log = service().log.lock().unwrap().clone();
    for secret in [&main.secret, &first.secret, &second.secret] {
        assert!(
            !log.iter().any(|line| line.contains(secret.as_str())),
            "a secret is in the service's log"
        );
    }
    assert!(log.iter().any(|line| line.contains(&mac.uuid)
        && line.contains("\"endpoint\":\"rotate\"")
        && line.contains("\"result\":\"ok\"")));
}

#[test]
fn a_bound_computer_uuid_cannot_be_enrolled_by_another_mac() {
    let first = Mac::new();
    assert_eq!(
        exit_code(&run(&mut first.apply_via_service("SERIAL-FIRST"))),
        0
    );
    let bound = keys_of(&first.uuid);

    let impostor = Mac::with_uuid(&first.uuid);
    let refused = run(&mut impostor.apply_via_service("SERIAL-OTHER"));
    assert_eq!(exit_code(&refused), CREDENTIALS, "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("computer-already-enrolled"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(keys_of(&first.uuid), bound, "the refusal changed IAM");
    assert_eq!(impostor.key(), moto().admin);

    // The same Mac (same serial) may enroll again, e.g. after a run that died before "Arq S3" changed.
    let again = Mac::with_uuid(&first.uuid);
    assert_eq!(
        exit_code(&run(&mut again.apply_via_service("SERIAL-FIRST"))),
        0
    );
    assert_eq!(keys_of(&first.uuid), json!([again.key().id]));
}

#[test]
fn another_macs_scoped_key_cannot_rotate_this_computer() {
    let mac = Mac::new();
    let other = Mac::new();
    assert_eq!(exit_code(&run(&mut mac.apply_via_service("SERIAL-M"))), 0);
    assert_eq!(exit_code(&run(&mut other.apply_via_service("SERIAL-O"))), 0);
    let before = keys_of(&mac.uuid);
    let (status, body) = http(
        "POST",
        "/v1/rotate",
        &key_request(&mac.uuid, &good_proof(&other.key(), &mac.uuid)),
    );
    assert_eq!(
        (status, error_code(&body)),
        (403, "not-this-computers-key".to_owned()),
        "{body}"
    );
    // Nor may the main keys rotate: only enroll.
    let (status, body) = http(
        "POST",
        "/v1/rotate",
        &key_request(&mac.uuid, &good_proof(&moto().admin, &mac.uuid)),
    );
    assert_eq!(
        (status, error_code(&body)),
        (403, "not-this-computers-key".to_owned()),
        "{body}"
    );
    assert_eq!(keys_of(&mac.uuid), before);
}

fn error_code(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[test]
fn hostile_requests_are_refused_and_create_nothing() {
    let admin = &moto().admin;
    let uuid = fresh_uuid();
    let other = fresh_uuid();
    let now = SystemTime::now();
    let mut tampered_body = good_proof(admin, &uuid);
    tampered_body.body = "Action=GetCallerIdentity&Version=2011-06-15&Extra=1".into();
    let mut tampered_signature = good_proof(admin, &uuid);
    let auth = tampered_signature.headers["authorization"].clone();
    let flipped = if auth.ends_with('0') {
        format!("{}1", &auth[..auth.len() - 1])
    } else {
        format!("{}0", &auth[..auth.len() - 1])
    };
    tampered_signature
        .headers
        .insert("authorization".into(), flipped);
    let mut smuggled = good_proof(admin, &uuid);
    smuggled
        .headers
        .insert("x-forwarded-host".into(), "evil.example".into());
    let not_fleet = good_proof(&moto().seed_2012, &uuid);
    let foreign_bucket = json!({"computer_uuid": uuid, "bucket": "someone-elses-bucket", "proof": good_proof(admin, &uuid)}).to_string();
    let huge = vec![b'x'; 1024 * 1024];

    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "junk JSON",
            "/v1/enroll",
            b"{not json".to_vec(),
            400,
            "bad-json",
        ),
        (
            "unknown field",
            "/v1/enroll",
            json!({"computer_uuid": uuid, "bucket": BUCKET, "admin": true})
                .to_string()
                .into_bytes(),
            400,
            "bad-json",
        ),
        (
            "odd UUID",
            "/v1/enroll",
            json!({"computer_uuid": "../*", "bucket": BUCKET})
                .to_string()
                .into_bytes(),
            400,
            "bad-computer",
        ),
        (
            "neither proof nor token",
            "/v1/enroll",
            json!({"computer_uuid": uuid, "bucket": BUCKET})
                .to_string()
                .into_bytes(),
            400,
            "proof-or-token",
        ),
        (
            "bucket not allowed",
            "/v1/enroll",
            foreign_bucket.into_bytes(),
            403,
            "bucket-not-allowed",
        ),
        (
            "tampered body",
            "/v1/enroll",
            key_request(&uuid, &tampered_body),
            403,
            "proof-malformed",
        ),
        (
            "tampered signature",
            "/v1/enroll",
            key_request(&uuid, &tampered_signature),
            403,
            "proof-rejected",
        ),
        (
            "smuggled header",
            "/v1/enroll",
            key_request(&uuid, &smuggled),
            403,
            "proof-header-not-allowed",
        ),
        (
            "wrong server id",
            "/v1/enroll",
            key_request(
                &uuid,
                &make_proof(admin, &uuid, "another-service", "sts.amazonaws.com", now),
            ),
            403,
            "proof-wrong-server",
        ),
        (
            "client-supplied STS host",
            "/v1/enroll",
            key_request(
                &uuid,
                &make_proof(admin, &uuid, SERVER_ID, "sts.evil.example", now),
            ),
            403,
            "proof-wrong-sts-host",
        ),
        (
            "old proof",
            "/v1/enroll",
            key_request(
                &uuid,
                &make_proof(
                    admin,
                    &uuid,
                    SERVER_ID,
                    "sts.amazonaws.com",
                    now - Duration::from_secs(600),
                ),
            ),
            403,
            "proof-expired",
        ),
        (
            "proof for another computer",
            "/v1/enroll",
            key_request(&uuid, &good_proof(admin, &other)),
            403,
            "proof-wrong-computer",
        ),
        (
            "not a fleet principal",
            "/v1/enroll",
            key_request(&uuid, &not_fleet),
            403,
            "not-a-fleet-principal",
        ),
        (
            "wrong enrollment token",
            "/v1/enroll",
            json!({"computer_uuid": uuid, "bucket": BUCKET, "enrollment_token": "guess"})
                .to_string()
                .into_bytes(),
            403,
            "bad-enrollment-token",
        ),
        ("huge body", "/v1/enroll", huge, 413, ""),
    ];
    for (name, path, body, status, code) in cases {
        let (got_status, got_body) = http("POST", path, &body);
        assert_eq!(got_status, status, "{name}: {got_body}");
        assert_eq!(error_code(&got_body), code, "{name}: {got_body}");
        assert_eq!(
            scoped_user(&uuid)["exists"],
            false,
            "{name}: something was created"
        );
    }
    assert_eq!(http("GET", "/v1/enroll", b"").0, 405);
    assert_eq!(http("GET", "/healthz", b""), (200, "ok\n".to_owned()));
}

#[test]
fn a_proof_works_once() {
    let uuid = fresh_uuid();
    let request = key_request(&uuid, &good_proof(&moto().admin, &uuid));
    let (status, body) = http("POST", "/v1/enroll", &request);
    assert_eq!(status, 200, "{body}");
    let issued: Value = serde_json::from_str(&body).unwrap();
    let (status, body) = http("POST", "/v1/enroll", &request);
    assert_eq!(
        (status, error_code(&body)),
        (403, "proof-replayed".to_owned())
    );
    assert_eq!(keys_of(&uuid), json!([issued["access_key_id"]]));
}

#[test]
fn an_enrollment_token_enrolls_without_main_keys() {
    let uuid = fresh_uuid();
    let request = json!({"computer_uuid": uuid, "bucket": BUCKET, "serial": "SERIAL-TOKEN", "enrollment_token": ENROLLMENT_TOKEN});
    let (status, body) = http("POST", "/v1/enroll", request.to_string().as_bytes());
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        scoped_user(&uuid)["tags"]["arq-lockdown:serial"],
        "SERIAL-TOKEN"
    );
}

#[test]
fn a_slow_client_is_cut_off_and_the_service_stays_healthy() {
    use std::io::{Read, Write};
    let address = service().url.trim_start_matches("http://").to_owned();
    let mut slow = std::net::TcpStream::connect(&address).unwrap();
    slow.write_all(b"POST /v1/enroll HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the connection was kept open"
    );
    assert_eq!(http("GET", "/healthz", b""), (200, "ok\n".to_owned()));
    let (status, metrics) = http("GET", "/metrics", b"");
    assert_eq!(status, 200);
    assert!(metrics.contains("arq_lockdown_requests_total"));
}

#[test]
fn the_service_speaks_tls_and_never_plain_http_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let (ca, cert, key) = (path("ca.pem"), path("cert.pem"), path("key.pem"));
    let openssl = |args: &[&str]| {
        let made = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("openssl");
        assert!(
            made.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    };
    // A test CA, and a certificate for localhost signed by it.
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "1",
                "-subj",
                "/CN=test CA",
                "-keyout",
                "ca-key.pem",
                "-out",
                "ca.pem",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=localhost",
                "-keyout",
                "key.pem",
                "-out",
                "cert.csr",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        path("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "cert.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "cert.pem",
    ]);
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
    assert_eq!(exit_code(&untrusted), 6, "{}", stderr(&untrusted));
    let trusted = run(mac.apply_via(&url).env("SSL_CERT_FILE", &ca));
    assert_eq!(exit_code(&trusted), 0, "{}", stderr(&trusted));
    assert_eq!(keys_of(&mac.uuid), json!([mac.key().id]));

    // Plain HTTP: only on loopback, and a Mac sends keys over it only to itself.
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, service_config("0.0.0.0:0", "")).unwrap();
    let refused = run(arq_lockdown().arg("serve").arg("--config").arg(&plain));
    assert_eq!(exit_code(&refused), 4);
    assert!(
        stderr(&refused).contains("plain HTTP on 0.0.0.0:0"),
        "{}",
        stderr(&refused)
    );
    let insecure = run(Mac::new().apply().args([
        "--source",
        "service",
        "--service-url",
        "http://arq.example.com",
    ]));
    assert_eq!(exit_code(&insecure), 4);
    assert!(
        stderr(&insecure).contains("must be https://"),
        "{}",
        stderr(&insecure)
    );
}
