//! The service as systemd drives it: `systemctl reload` (SIGHUP) serves a renewed certificate
//! without a restart and never a broken one; `systemctl stop` (SIGTERM) refuses new connections,
//! lets the requests in flight finish — also work whose client went away — and exits 0. A request
//! whose client hung up is logged and counted like any other.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use arq_lockdown::protocol::ENROLL;
use arq_lockdown::protocol::enrollment::EnrollmentKey;
use arq_lockdown::protocol::sealed::ReplyKey;
use serde_json::{Value, json};

use crate::support::*;

/// A token enrollment for a fresh computer: its UUID, the body, and the key that opens the answer.
fn token_enrollment() -> (String, Vec<u8>, ReplyKey) {
    let (uuid, enrollment, reply) = (
        fresh_uuid(),
        EnrollmentKey::generate(),
        ReplyKey::generate(),
    );
    let mut request = enroll_request(&uuid, &enrollment, &reply);
    request["enrollment_token"] = json!(ENROLLMENT_TOKEN);
    let body = envelope(ENROLL, &uuid, &request, None, Some(&enrollment));
    (uuid, body, reply)
}

/// A service whose IAM calls go through a proxy holding every CreateUser, and its address.
fn service_holding_create_user() -> (Proxy, Service, String) {
    let proxy = Proxy::holding("CreateUser");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("service.toml");
    std::fs::write(&config, service_config("127.0.0.1:0", "")).unwrap();
    let service = start_service_with(
        &config,
        dir,
        &format!("export AWS_ENDPOINT_URL={};", proxy.endpoint),
    );
    let address = service.url.trim_start_matches("http://").to_owned();
    (proxy, service, address)
}

/// Starts a POST of `body` to `path` on the service at `address`: the connection to drop to hang up.
fn start_request(address: &str, path: &str, body: &[u8]) -> std::net::TcpStream {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(stream, "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).unwrap();
    stream.write_all(body).unwrap();
    stream
}

/// Waits until the proxy holds a request naming each of `uuids`.
fn wait_until_held(proxy: &Proxy, uuids: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !uuids
        .iter()
        .all(|uuid| proxy.held().iter().any(|b| b.contains(uuid)))
    {
        assert!(Instant::now() < deadline, "the requests never reached IAM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Copies a certificate and its key over another pair's files.
fn copy_pair(from: &(PathBuf, PathBuf), to: &(PathBuf, PathBuf)) {
    std::fs::copy(&from.0, &to.0).unwrap();
    std::fs::copy(&from.1, &to.1).unwrap();
}

#[test]
fn a_renewed_certificate_is_served_after_sighup_and_a_broken_one_never() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca(dir.path());
    let (a, b) = (
        localhost_certificate(dir.path(), "a"),
        localhost_certificate(dir.path(), "b"),
    );
    // The files the config names: A now, B after the renewal.
    let served = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    copy_pair(&a, &served);
    let config = dir.path().join("service.toml");
    let tls = format!(
        "[tls]\ncertificate = \"{}\"\nkey = \"{}\"\n",
        served.0.display(),
        served.1.display()
    );
    std::fs::write(&config, service_config("127.0.0.1:0", &tls)).unwrap();
    let service = start_service(&config, tempfile::tempdir().unwrap());
    let address = service.url.trim_start_matches("https://").to_owned();
    assert_eq!(
        tls_get(&address, &ca, "/healthz"),
        (fingerprint_of(&a.0), 200)
    );

    // The renewal: new files, then `systemctl reload`.
    copy_pair(&b, &served);
    let seen = service.log_lines();
    service.signal("HUP");
    service.wait_for_log(seen, r#""tls":"reloaded""#);
    assert_eq!(
        tls_get(&address, &ca, "/healthz"),
        (fingerprint_of(&b.0), 200),
        "a new connection is not shown the renewed certificate"
    );

    // Pairs that do not load are refused, and B stays: junk, A's certificate with B's key, and a
    // key whose PEM lines are run together (the parser's message would quote the key).
    let b_key = std::fs::read_to_string(&b.1).unwrap();
    let run_together = b_key.replace('\n', "");
    for (certificate, key, says) in [
        ("junk".to_owned(), "junk".to_owned(), "no PEM certificate"),
        (
            std::fs::read_to_string(&a.0).unwrap(),
            b_key.clone(),
            "do not make a pair",
        ),
        (
            std::fs::read_to_string(&b.0).unwrap(),
            run_together,
            "not a PEM private key",
        ),
    ] {
        std::fs::write(&served.0, certificate).unwrap();
        std::fs::write(&served.1, key).unwrap();
        let seen = service.log_lines();
        service.signal("HUP");
        let line = service.wait_for_log(seen, r#""tls":"kept the certificate in use""#);
        assert!(line.contains(says), "{line}");
        assert_eq!(
            tls_get(&address, &ca, "/healthz"),
            (fingerprint_of(&b.0), 200),
            "after {says}"
        );
    }
    let log = service.log.lock().unwrap().join("\n");
    assert_no_secret_in("the service's log", &log, &[]);
    for line in b_key.lines().filter(|l| !l.starts_with("-----")) {
        assert!(
            !log.contains(line),
            "the TLS key appeared in the service's log"
        );
    }
}

#[test]
fn sigterm_refuses_new_connections_finishes_the_requests_in_flight_and_exits_0() {
    // Every CreateUser is held at the proxy: the two requests are inside their IAM work.
    let (proxy, service, address) = service_holding_create_user();

    // A Mac waiting for its key, and one that goes away once its work has begun.
    let (waiting, body, reply) = token_enrollment();
    let url = service.url.clone();
    let answer = std::thread::spawn(move || http_to(&url, "POST", ENROLL, &body));
    let (gone, body, _) = token_enrollment();
    let leaving = start_request(&address, ENROLL, &body);
    wait_until_held(&proxy, &[&waiting, &gone]);
    drop(leaving);

    let seen = service.log_lines();
    service.signal("TERM");
    service.wait_for_log(seen, r#""signal":"SIGTERM""#);
    let refused = std::net::TcpStream::connect(&address).map_err(|e| e.kind());
    assert_eq!(
        refused.err(),
        Some(std::io::ErrorKind::ConnectionRefused),
        "a new connection was accepted while stopping"
    );

    // The waiting Mac gets its key, as if nothing had happened.
    proxy.release(&waiting);
    let (status, answer) = answer.join().unwrap();
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let sealed = answer["sealed_secret_access_key"].as_str().unwrap();
    let secret = reply.open(sealed).expect("the answer opens");
    assert_eq!(
        scoped_user(&waiting)["keys"],
        json!([answer["access_key_id"]])
    );

    // The work of the Mac that went away still holds the stop until it is done.
    std::thread::sleep(Duration::from_millis(500));
    let log = service.log.lock().unwrap().join("\n");
    assert!(
        !log.contains("exited with status"),
        "the service exited with work in flight:\n{log}"
    );
    proxy.release(&gone);
    let exited = service.wait_for_log(seen, "exited with status");
    assert_eq!(exited, "exited with status 0");
    assert_eq!(scoped_user(&gone)["keys"].as_array().map(Vec::len), Some(1));
    service.wait_for_log(seen, r#""stopped":"drained""#);
    let log = service.log.lock().unwrap().join("\n");
    assert_no_secret_in("the service's log", &log, &[secret.expose()]);
}

#[test]
fn a_request_whose_client_hung_up_is_still_logged_and_counted() {
    // Every CreateUser is held at the proxy: the client hangs up while its request is in IAM.
    let (proxy, service, address) = service_holding_create_user();
    let (gone, body, _) = token_enrollment();
    let leaving = start_request(&address, ENROLL, &body);
    wait_until_held(&proxy, &[&gone]);
    let seen = service.log_lines();
    drop(leaving);
    // Time for the service to see the hang-up (nothing outside shows it) before the work ends.
    std::thread::sleep(Duration::from_millis(500));

    proxy.release(&gone);
    let line = service.wait_for_log(seen, &gone);
    let line: Value = serde_json::from_str(&line).unwrap();
    let logged = ["endpoint", "status", "result", "caller"].map(|field| line[field].to_string());
    assert_eq!(
        logged,
        [r#""enroll""#, "200", r#""ok""#, r#""token:tests""#]
    );
    let (status, metrics) = http_to(&service.url, "GET", "/metrics", b"");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("arq_lockdown_requests_total{endpoint=\"enroll\",result=\"ok\"} 1\n"),
        "{metrics}"
    );
}
