//! Attacks on the provisioning service, each tried as an attacker would against moto with IAM
//! enforcement: another AWS account, another Mac, a raced or replayed request, a flood. Each of
//! these succeeded against the service before the fixes that came with them.

use std::time::Duration;

use arq_lockdown::protocol::enrollment::EnrollmentKey;
use arq_lockdown::protocol::sealed::ReplyKey;
use arq_lockdown::protocol::{ENROLL, RETIRE, ROTATE};
use serde_json::{Value, json};

use crate::support::*;

fn keys_of(uuid: &str) -> Value {
    scoped_user(uuid)["keys"].clone()
}

/// Another instance of the service on the same moto, with `extra` in its config.
fn another_service(extra: &str) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("service.toml");
    std::fs::write(&config, service_config("127.0.0.1:0", extra)).unwrap();
    start_service(&config, dir)
}

/// A Mac's enroll request for `uuid`, proven by the main keys: the body, and the reply key that
/// opens its answer.
fn enroll_by_main_keys(uuid: &str, enrollment: &EnrollmentKey) -> (Vec<u8>, ReplyKey) {
    let reply = ReplyKey::generate();
    let request = enroll_request(uuid, enrollment, &reply);
    let body = envelope(
        ENROLL,
        uuid,
        &request,
        Some(&moto().admin),
        Some(enrollment),
    );
    (body, reply)
}

#[test]
fn another_aws_accounts_user_of_the_same_name_cannot_rotate_or_retire_a_mac() {
    let _guard = no_arq_running();
    let victim = Mac::new();
    assert_exit(
        &run(&mut victim.apply_via_service("SERIAL-V")),
        ExitCode::Success,
        &[],
    );
    let before = keys_of(&victim.uuid);
    let attacker = make_user(
        &moto().foreign_admin,
        "/arq-lockdown/",
        &format!("arq-{}", victim.uuid),
    );
    let reply = ReplyKey::generate();
    let rotate = envelope(
        ROTATE,
        &victim.uuid,
        &rotate_request(&victim.uuid, &reply),
        Some(&attacker),
        None,
    );
    let (status, answer) = http("POST", ROTATE, &rotate);
    assert_eq!(
        (status, error_code(&answer)),
        (403, "not-this-computers-key".into()),
        "rotate"
    );
    let victims_key = before[0].as_str().unwrap();
    let stranger = EnrollmentKey::generate();
    let retire = envelope(
        RETIRE,
        &victim.uuid,
        &retire_request(&victim.uuid, victims_key, &stranger),
        Some(&attacker),
        Some(&stranger),
    );
    let (status, answer) = http("POST", RETIRE, &retire);
    assert_eq!(
        (status, error_code(&answer)),
        (403, "enrollment-signature-invalid".into()),
        "retire"
    );
    assert_eq!(keys_of(&victim.uuid), before);
    assert_eq!(
        victim.verify(),
        ExitCode::Success,
        "the victim's key stopped working"
    );
}

#[test]
fn twenty_racing_enrollments_of_a_fresh_uuid_over_two_instances_give_one_key() {
    let _guard = no_arq_running();
    let second = another_service("");
    let uuid = fresh_uuid();
    let urls = [service().url.clone(), second.url.clone()];
    // Twenty different Macs (twenty enrollment keys) claim one fresh computer UUID at once.
    let bodies: Vec<Vec<u8>> = (0..20)
        .map(|_| enroll_by_main_keys(&uuid, &EnrollmentKey::generate()).0)
        .collect();
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let runs: Vec<_> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let url = &urls[i % 2];
                scope.spawn(move || http_to(url, "POST", ENROLL, body).0)
            })
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    let granted = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(granted, 1, "{granted} callers got a key: {statuses:?}");
    assert_eq!(keys_of(&uuid).as_array().unwrap().len(), 1);
}

#[test]
fn a_token_or_main_key_holder_cannot_re_enroll_a_bound_mac() {
    let _guard = no_arq_running();
    let victim = Mac::new();
    assert_exit(
        &run(&mut victim.apply_via_service("C02XK1ZZJGH5")),
        ExitCode::Success,
        &[],
    );
    let before = keys_of(&victim.uuid);
    // The serial is printed on the case and sits in the user's tags; it proves nothing.
    let attacker = EnrollmentKey::generate();
    let mut by_token = enroll_request(&victim.uuid, &attacker, &ReplyKey::generate());
    by_token["serial"] = json!("C02XK1ZZJGH5");
    by_token["enrollment_token"] = json!(ENROLLMENT_TOKEN);
    let (by_main_keys, _) = enroll_by_main_keys(&victim.uuid, &attacker);
    for (who, body) in [
        (
            "token",
            envelope(ENROLL, &victim.uuid, &by_token, None, Some(&attacker)),
        ),
        ("main keys", by_main_keys),
    ] {
        let (status, answer) = http("POST", ENROLL, &body);
        assert_eq!(
            (status, error_code(&answer)),
            (403, "computer-already-enrolled".into()),
            "{who}: {answer}"
        );
    }
    // Nor may they retire its keys with their own enrollment key.
    let victims_key = before[0].as_str().unwrap();
    let retire = envelope(
        RETIRE,
        &victim.uuid,
        &retire_request(&victim.uuid, victims_key, &attacker),
        None,
        Some(&attacker),
    );
    let (status, answer) = http("POST", RETIRE, &retire);
    assert_eq!(
        (status, error_code(&answer)),
        (403, "enrollment-signature-invalid".into())
    );
    assert_eq!(keys_of(&victim.uuid), before);
}

#[test]
fn a_mac_whose_run_died_after_the_service_made_its_key_recovers_on_the_next_run() {
    let _guard = no_arq_running();
    use std::io::{BufRead, BufReader};
    let mac = Mac::new();
    let mut dying = mac.apply_via_service("SERIAL-D");
    let mut child = dying
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for line in BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        if line.contains("the service issued key") {
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    assert_eq!(
        mac.key(),
        moto().admin,
        "\"Arq S3\" changed before the kill"
    );
    assert_eq!(
        keys_of(&mac.uuid).as_array().unwrap().len(),
        1,
        "the service made no key"
    );

    let rerun = run(&mut mac.apply_via_service("SERIAL-D"));
    assert_exit(&rerun, ExitCode::Success, &[]);
    assert_eq!(
        keys_of(&mac.uuid),
        json!([mac.key().id]),
        "the orphaned key was not retired"
    );
    assert_eq!(mac.verify(), ExitCode::Success);
}

#[test]
fn a_captured_request_replayed_to_another_instance_yields_nothing_usable() {
    let _guard = no_arq_running();
    let second = another_service("");
    let uuid = fresh_uuid();
    let enrollment = EnrollmentKey::generate();
    let (captured, reply) = enroll_by_main_keys(&uuid, &enrollment);
    let (status, answer) = http("POST", ENROLL, &captured);
    assert_eq!(status, 200, "{answer}");
    let legit: Value = serde_json::from_str(&answer).unwrap();
    assert!(
        reply
            .open(legit["sealed_secret_access_key"].as_str().unwrap())
            .is_some()
    );

    // The eavesdropper sends the same bytes to another instance: the answer is sealed to the
    // real Mac's reply key, and the real Mac's key stays.
    let eavesdropper = ReplyKey::generate();
    let (status, answer) = http_to(&second.url, "POST", ENROLL, &captured);
    let replayed: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
    assert!(replayed.get("secret_access_key").is_none());
    if status == 200 {
        let sealed = replayed["sealed_secret_access_key"].as_str().unwrap();
        assert!(eavesdropper.open(sealed).is_none());
    }
    let keys = keys_of(&uuid);
    assert!(
        keys.as_array().unwrap().contains(&legit["access_key_id"]),
        "the replay deleted the real Mac's key: {keys}"
    );
    // The same bytes to the first instance again: refused outright.
    let (status, answer) = http("POST", ENROLL, &captured);
    assert_eq!(
        (status, error_code(&answer)),
        (403, "proof-replayed".into())
    );

    // A captured rotation, replayed after the Mac moved on, takes nothing away either.
    let mac = Mac::new();
    assert_exit(
        &run(&mut mac.apply_via_service("SERIAL-R")),
        ExitCode::Success,
        &[],
    );
    let first = mac.key();
    let rotate = envelope(
        ROTATE,
        &mac.uuid,
        &rotate_request(&mac.uuid, &ReplyKey::generate()),
        Some(&first),
        Some(&mac.enrollment_key()),
    );
    let (status, answer) = http("POST", ROTATE, &rotate);
    assert_eq!(status, 200, "{answer}");
    let (status, _) = http_to(&second.url, "POST", ROTATE, &rotate);
    assert_ne!(status, 200, "two keys are the limit: the replay gets none");
    assert!(
        keys_of(&mac.uuid)
            .as_array()
            .unwrap()
            .contains(&json!(first.id))
    );
    assert_eq!(mac.verify(), ExitCode::Success);
}

#[test]
fn an_enrollment_token_has_an_hourly_and_a_total_limit() {
    let _guard = no_arq_running();
    let limited = |limits: &str| {
        another_service(&format!(
            "[[enrollment_tokens]]\nname = \"limited\"\nsha256 = \"{}\"\n{limits}",
            sha256_hex("limited-token")
        ))
    };
    let enroll = |service: &Service| {
        let uuid = fresh_uuid();
        let enrollment = EnrollmentKey::generate();
        let mut request = enroll_request(&uuid, &enrollment, &ReplyKey::generate());
        request["enrollment_token"] = json!("limited-token");
        let (status, body) = http_to(
            &service.url,
            "POST",
            ENROLL,
            &envelope(ENROLL, &uuid, &request, None, Some(&enrollment)),
        );
        (status, error_code(&body))
    };
    let hourly = limited("max_per_hour = 3");
    for _ in 0..3 {
        assert_eq!(enroll(&hourly).0, 200);
    }
    assert_eq!(enroll(&hourly), (429, "token-limit".into()));

    // The total is counted in IAM: 3 are enrolled already, so a limit of 4 allows one more, and
    // a restarted service still knows.
    let total = limited("max_enrollments = 4");
    assert_eq!(enroll(&total).0, 200);
    assert_eq!(enroll(&total), (429, "token-limit".into()));
    drop(total);
    assert_eq!(
        enroll(&limited("max_enrollments = 4")),
        (429, "token-limit".into())
    );
}

#[test]
fn scoped_users_are_created_under_the_permissions_boundary() {
    let _guard = no_arq_running();
    let proxy = Proxy::recording();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("service.toml");
    let text = service_config("127.0.0.1:0", "").replace(&moto().endpoint, &proxy.endpoint);
    std::fs::write(&config, text).unwrap();
    // The service's IAM calls (AWS_ENDPOINT_URL) and STS replays (its config) go through the proxy.
    let proxied = start_service_with(
        &config,
        dir,
        &format!("export AWS_ENDPOINT_URL={};", proxy.endpoint),
    );
    let uuid = fresh_uuid();
    let (body, _) = enroll_by_main_keys(&uuid, &EnrollmentKey::generate());
    let (status, answer) = http_to(&proxied.url, "POST", ENROLL, &body);
    assert_eq!(status, 200, "{answer}");
    let create_user: Vec<Recorded> = proxy
        .recorded()
        .into_iter()
        .filter(|r| r.body.contains("Action=CreateUser"))
        .collect();
    assert_eq!(create_user.len(), 1);
    let boundary = format!("PermissionsBoundary={}", percent_encode(BOUNDARY));
    assert!(
        create_user[0].body.contains(&boundary),
        "{}",
        create_user[0].body
    );
}

#[test]
fn a_flood_that_exhausts_file_descriptors_neither_spins_nor_kills_the_service() {
    let _guard = no_arq_running();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("service.toml");
    std::fs::write(&config, service_config("127.0.0.1:0", "")).unwrap();
    let flooded = start_service_with(&config, dir, "ulimit -n 48;");
    let address = flooded.url.trim_start_matches("http://").to_owned();
    let connections: Vec<_> = (0..200)
        .filter_map(|_| std::net::TcpStream::connect(&address).ok())
        .collect();
    assert!(
        connections.len() > 48,
        "the flood did not exhaust descriptors"
    );
    let cpu = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
        // utime and stime, in clock ticks (fields 14 and 15 of the whole line).
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let (before, started) = (cpu(flooded.pid), std::time::Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let ticks = cpu(flooded.pid) - before;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let share = ticks as f64 / per_second / started.elapsed().as_secs_f64();
    assert!(
        share < 0.10,
        "the service used {:.0}% of a core during the flood",
        share * 100.0
    );
    drop(connections);
    let mut healthy = false;
    for _ in 0..50 {
        if http_to(&flooded.url, "GET", "/healthz", b"") == (200, "ok\n".to_owned()) {
            healthy = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(healthy, "the service does not answer after the flood");
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn a_copy_of_the_key_in_arq_s3_alone_can_neither_rotate_nor_retire() {
    let _guard = no_arq_running();
    let mac = Mac::new();
    assert_exit(
        &run(&mut mac.apply_via_service("SERIAL-C")),
        ExitCode::Success,
        &[],
    );
    let stolen = mac.key();
    let before = keys_of(&mac.uuid);
    let rotate = envelope(
        ROTATE,
        &mac.uuid,
        &rotate_request(&mac.uuid, &ReplyKey::generate()),
        Some(&stolen),
        None,
    );
    let (status, answer) = http("POST", ROTATE, &rotate);
    assert_eq!(
        (status, error_code(&answer)),
        (403, "enrollment-signature-invalid".into())
    );
    // Naming the Mac's enrollment key without its signature.
    let retire = envelope(
        RETIRE,
        &mac.uuid,
        &retire_request(&mac.uuid, &stolen.id, &mac.enrollment_key()),
        Some(&stolen),
        None,
    );
    let (status, answer) = http("POST", RETIRE, &retire);
    assert_eq!(
        (status, error_code(&answer)),
        (403, "enrollment-signature-invalid".into())
    );
    assert_eq!(keys_of(&mac.uuid), before);
}

#[test]
fn a_retire_nobody_signed_costs_at_most_one_iam_lookup_and_says_nothing_of_enrollment() {
    let _guard = no_arq_running();
    let proxy = Proxy::recording();
    let proxied = start_service_behind(&proxy);
    let enrolled = Mac::new();
    assert_exit(
        &run(&mut enrolled.apply_via(&proxied.url)),
        ExitCode::Success,
        &[],
    );
    let stranger = EnrollmentKey::generate();
    let mut answers = Vec::new();
    for uuid in [enrolled.uuid.clone(), fresh_uuid()] {
        let iam_calls = || {
            proxy
                .recorded()
                .iter()
                .filter(|r| r.body.contains("Action="))
                .count()
        };
        let before = iam_calls();
        let retire = envelope(
            RETIRE,
            &uuid,
            &retire_request(&uuid, &enrolled.key().id, &stranger),
            None,
            Some(&stranger),
        );
        let (status, answer) = http_to(&proxied.url, "POST", RETIRE, &retire);
        assert!(
            iam_calls() - before <= 1,
            "an unproven retire made {} IAM calls",
            iam_calls() - before
        );
        answers.push((status, error_code(&answer)));
    }
    assert_eq!(answers[0], (403, "enrollment-signature-invalid".into()));
    assert_eq!(
        answers[0], answers[1],
        "enrolled and unknown computers must look alike"
    );
    assert_eq!(keys_of(&enrolled.uuid), json!([enrolled.key().id]));
}

#[test]
fn racing_issues_for_one_user_end_in_key_limit_not_an_error() {
    let _guard = no_arq_running();
    let second = another_service("");
    let uuid = fresh_uuid();
    let enrollment = EnrollmentKey::generate();
    let (body, _) = enroll_by_main_keys(&uuid, &enrollment);
    assert_eq!(http("POST", ENROLL, &body).0, 200);
    // The same Mac enrolls again twice at once (two runs, or a replay): one more key fits.
    let bodies = [
        enroll_by_main_keys(&uuid, &enrollment).0,
        enroll_by_main_keys(&uuid, &enrollment).0,
    ];
    let urls = [service().url.clone(), second.url.clone()];
    let mut statuses: Vec<u16> = std::thread::scope(|scope| {
        let runs: Vec<_> = bodies
            .iter()
            .zip(&urls)
            .map(|(body, url)| scope.spawn(move || http_to(url, "POST", ENROLL, body).0))
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 409],
        "one more key, and key-limit for the other"
    );
    assert_eq!(keys_of(&uuid).as_array().unwrap().len(), 2);
}

#[test]
fn a_bound_computer_cannot_be_moved_to_another_bucket_or_named_in_lower_case() {
    let _guard = no_arq_running();
    let other_bucket = "another-arq-bucket.example";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("service.toml");
    let allowed = format!("allowed_buckets = [\"{BUCKET}\"]");
    let both = format!("allowed_buckets = [\"{BUCKET}\", \"{other_bucket}\"]");
    let text = service_config("127.0.0.1:0", "").replace(&allowed, &both);
    std::fs::write(&config, text).unwrap();
    let service = start_service(&config, dir);
    let uuid = fresh_uuid();
    let enrollment = EnrollmentKey::generate();
    let (body, _) = enroll_by_main_keys(&uuid, &enrollment);
    assert_eq!(http_to(&service.url, "POST", ENROLL, &body).0, 200);
    let policy_before = scoped_user(&uuid)["policies"].clone();
    let mut moved = enroll_request(&uuid, &enrollment, &ReplyKey::generate());
    moved["bucket"] = json!(other_bucket);
    let body = envelope(
        ENROLL,
        &uuid,
        &moved,
        Some(&moto().admin),
        Some(&enrollment),
    );
    let (status, answer) = http_to(&service.url, "POST", ENROLL, &body);
    assert_eq!(
        (status, error_code(&answer)),
        (403, "bucket-mismatch".into())
    );
    assert_eq!(
        scoped_user(&uuid)["policies"],
        policy_before,
        "the refusal changed the policy"
    );

    let lower = uuid.to_lowercase();
    let (body, _) = enroll_by_main_keys(&lower, &enrollment);
    let (status, answer) = http("POST", ENROLL, &body);
    assert_eq!((status, error_code(&answer)), (400, "bad-computer".into()));
}

#[test]
fn a_key_iam_deleted_cannot_rotate_while_sts_still_honours_it() {
    let _guard = no_arq_running();
    let proxy = Proxy::recording();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("service.toml");
    let text = service_config("127.0.0.1:0", "").replace(&moto().endpoint, &proxy.endpoint);
    std::fs::write(&config, text).unwrap();
    let lagging = start_service(&config, dir);
    let mac = Mac::new();
    assert_exit(
        &run(&mut mac.apply_via(&lagging.url)),
        ExitCode::Success,
        &[],
    );
    let old = mac.key();
    assert_exit(
        &run(mac.apply_via(&lagging.url).arg("--rotate")),
        ExitCode::Success,
        &[],
    );
    let user = scoped_user(&mac.uuid);
    assert!(
        !user["keys"].as_array().unwrap().contains(&json!(old.id)),
        "the old key was not retired"
    );
    // STS has not heard yet: it still names the user for the deleted key.
    proxy.answer_sts_for(
        &old.id,
        user["arn"].as_str().unwrap(),
        user["user_id"].as_str().unwrap(),
    );
    let reply = ReplyKey::generate();
    let rotate = envelope(
        ROTATE,
        &mac.uuid,
        &rotate_request(&mac.uuid, &reply),
        Some(&old),
        Some(&mac.enrollment_key()),
    );
    let (status, answer) = http_to(&lagging.url, "POST", ROTATE, &rotate);
    assert_eq!(
        (status, error_code(&answer)),
        (403, "not-this-computers-key".into())
    );
    assert_eq!(keys_of(&mac.uuid), json!([mac.key().id]));
}
