//! Load benchmark for the provisioning service (not a test): many simulated Macs enroll at once
//! against one `arq-lockdown serve` on moto, then the same IAM and STS calls are made straight to
//! moto for comparison. Run by `bench/service-load`, which starts moto and the service and passes:
//! BENCH_SERVICE_URL, BENCH_SERVICE_PID, BENCH_MOTO_URL, BENCH_ADMIN_ID, BENCH_ADMIN_SECRET,
//! BENCH_MACS (1000), BENCH_CONCURRENCY (50).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arq_lockdown::arq_config::ComputerUuid;
use arq_lockdown::credential_store::AccessKey;
use arq_lockdown::protocol::enrollment::EnrollmentKey;
use arq_lockdown::protocol::sealed::ReplyKey;
use arq_lockdown::protocol::{self, ENROLL, Envelope};
use arq_lockdown::secret::Secret;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;

const BUCKET: &str = "akiaexample.comhaystacksoftwarearq";
const BOUNDARY: &str = "arn:aws:iam::123456789012:policy/arq-lockdown-boundary";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run bench/service-load"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs `job(i)` for i in 0..count, `concurrency` at a time; returns each one's latency and success.
async fn load<F, Fut>(count: usize, concurrency: usize, job: F) -> (Vec<Duration>, usize, Duration)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let future = job(i);
        tasks.spawn(async move {
            let began = Instant::now();
            let ok = future.await;
            drop(permit);
            (began.elapsed(), ok)
        });
    }
    let mut latencies = Vec::with_capacity(count);
    let mut errors = 0;
    while let Some(result) = tasks.join_next().await {
        let (latency, ok) = result.unwrap();
        latencies.push(latency);
        errors += usize::from(!ok);
    }
    latencies.sort();
    (latencies, errors, started.elapsed())
}

fn report(name: &str, latencies: &[Duration], errors: usize, wall: Duration) {
    let mean = latencies.iter().sum::<Duration>() / latencies.len() as u32;
    println!(
        "{name}: {} in {:.1} s = {:.0}/s; latency p50 {:.1} ms, p99 {:.1} ms, mean {:.1} ms; errors {errors}",
        latencies.len(),
        wall.as_secs_f64(),
        latencies.len() as f64 / wall.as_secs_f64(),
        percentile(latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(latencies, 0.99).as_secs_f64() * 1000.0,
        mean.as_secs_f64() * 1000.0,
    );
}

fn peak_memory_kb(pid: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l[6..].trim().to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = env("BENCH_SERVICE_URL");
    let macs: usize = env("BENCH_MACS").parse().unwrap();
    let concurrency: usize = env("BENCH_CONCURRENCY").parse().unwrap();
    let admin = AccessKey {
        id: env("BENCH_ADMIN_ID"),
        secret: Secret::new(env("BENCH_ADMIN_SECRET")),
    };
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();

    let enroll = |_| {
        let uuid = ComputerUuid::parse(&uuid::Uuid::new_v4().to_string().to_uppercase()).unwrap();
        // What a Mac sends: a request signed by its enrollment key, proven by the main keys.
        let enrollment = EnrollmentKey::generate();
        let request = serde_json::json!({
            "computer_uuid": uuid.to_string(), "bucket": BUCKET, "serial": "BENCH",
            "enrollment_key": enrollment.public(), "reply_key": ReplyKey::generate().public(),
            "issued_at": protocol::now_unix(), "nonce": protocol::nonce(),
        });
        let body = serde_json::to_string(&Envelope::new(
            ENROLL,
            "bench",
            "sts.amazonaws.com",
            &uuid,
            request.to_string(),
            Some(&admin),
            Some(&enrollment),
        ))
        .unwrap();
        let request = hyper::Request::post(format!("{url}/v1/enroll"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let client = client.clone();
        async move {
            match client.request(request).await {
                Ok(response) => {
                    let ok = response.status() == 200;
                    let _ = response.into_body().collect().await;
                    ok
                }
                Err(_) => false,
            }
        }
    };
    let (latencies, errors, wall) = load(macs, concurrency, enroll).await;
    report("service enrollments", &latencies, errors, wall);
    let service_mean = latencies.iter().sum::<Duration>() / latencies.len() as u32;
    println!(
        "service peak memory (VmHWM): {}",
        peak_memory_kb(&env("BENCH_SERVICE_PID"))
    );

    // The same AWS calls straight to moto: STS GetCallerIdentity, the binding rule's two listings
    // (UUID/ and glacier/UUID/, max-keys=1, at once), CreateUser, PutUserPolicy, CreateAccessKey.
    let config =
        arq_lockdown::aws::load_config(arq_lockdown::aws::AwsCredentials::Key(&admin)).await;
    let iam = arq_lockdown::aws::iam_client(&config);
    let sts = arq_lockdown::aws::sts_client(&config);
    let s3 = arq_lockdown::aws::s3_client(&config, None);
    let direct = |_| {
        let (iam, sts, s3) = (iam.clone(), sts.clone(), s3.clone());
        async move {
            let uuid = uuid::Uuid::new_v4().to_string().to_uppercase();
            let user = format!("arq-{uuid}");
            let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/x/*"}]}"#;
            let list = |prefix: String| {
                s3.list_objects_v2()
                    .bucket(BUCKET)
                    .prefix(prefix)
                    .max_keys(1)
                    .send()
            };
            let listed = async {
                let (root, glacier) =
                    tokio::join!(list(format!("{uuid}/")), list(format!("glacier/{uuid}/")));
                root.is_ok() && glacier.is_ok()
            };
            sts.get_caller_identity().send().await.is_ok()
                && listed.await
                && iam
                    .create_user()
                    .user_name(&user)
                    .path("/arq-lockdown/")
                    .permissions_boundary(BOUNDARY)
                    .send()
                    .await
                    .is_ok()
                && iam
                    .put_user_policy()
                    .user_name(&user)
                    .policy_name("arq-lockdown")
                    .policy_document(policy)
                    .send()
                    .await
                    .is_ok()
                && iam
                    .create_access_key()
                    .user_name(&user)
                    .send()
                    .await
                    .is_ok()
        }
    };
    let (latencies, errors, wall) = load(macs, concurrency, direct).await;
    report("the same calls straight to moto", &latencies, errors, wall);
    let direct_mean = latencies.iter().sum::<Duration>() / latencies.len() as u32;
    let overhead = service_mean.as_secs_f64() / direct_mean.as_secs_f64() - 1.0;
    println!(
        "service overhead per enrollment: {:.1} ms ({:+.1}% on top of moto's time for the same calls)",
        (service_mean.as_secs_f64() - direct_mean.as_secs_f64()) * 1000.0,
        overhead * 100.0
    );
}
