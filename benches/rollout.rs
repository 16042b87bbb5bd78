//! The rollout benchmark (not a test): a fleet of BENCH_MACS (1,000) simulated Macs locked down
//! through two service instances and straight from IAM, while IAM throttles above BENCH_IAM_RATE
//! (10) calls a second and new keys are refused for BENCH_NEW_KEY_DELAY (5) seconds; then the
//! main keys retired (bench/rollout_driver.rs, which tests/cli/rollout.rs runs with 30 Macs).
//! Run by `bench/rollout` (as root), which starts the emulator and passes BENCH_MOTO_URL and
//! BENCH_BINARY. Prints the figures bench/README.md keeps.

#[path = "../bench/rollout_driver.rs"]
mod driver;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use driver::{Kind, Plan};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn main() {
    let macs: usize = env("BENCH_MACS", "1000").parse().unwrap();
    let work = tempfile::tempdir().unwrap();
    let plan = Plan {
        binary: env("BENCH_BINARY", "target/release/arq-lockdown").into(),
        endpoint: std::env::var("BENCH_MOTO_URL").expect("BENCH_MOTO_URL: run bench/rollout"),
        account: "500000000001".into(),
        bucket: "rollout-bench.example".into(),
        // 40% enroll with the token, 30% prove with the main keys, 30% straight from IAM.
        macs: BTreeMap::from([
            (Kind::Token, macs * 4 / 10),
            (Kind::Proof, macs * 3 / 10),
            (Kind::Iam, macs - macs * 4 / 10 - macs * 3 / 10),
        ]),
        no_relaunch: macs / 100,
        iam_calls_per_second: env("BENCH_IAM_RATE", "10").parse().unwrap(),
        new_key_delay: env("BENCH_NEW_KEY_DELAY", "5").parse().unwrap(),
        // An hour of the fleet's clock a minute: the LaunchAgent's hourly run and Arq's hourly
        // backup every 60 s, the two-hour quiet period in two minutes.
        clock_speed: 60.0,
        backup_every: Duration::from_secs(60),
        agent_every: Duration::from_secs(60),
        login_spread: Duration::from_secs(env("BENCH_LOGIN_SPREAD", "60").parse().unwrap()),
        concurrent_applies: 32,
        audit_every: Duration::from_secs(15),
        backups_after_retirement: 2,
        deadline: Duration::from_secs(3600),
        work: work.path().to_owned(),
    };
    let started = std::time::Instant::now();
    let report = driver::rehearse(plan.clone(), Arc::new(|_| {}));
    print!("{}", report.figures(&plan));
    let premature = report
        .audits
        .iter()
        .filter(|a| a.ready && a.macs_on_main_keys > 0)
        .count();
    let main = &report.main_keys[0];
    let locked = report
        .macs
        .iter()
        .filter(|m| m.locked_down_after.is_some() && &m.final_key != main)
        .count();
    let after_retirement = report
        .macs
        .iter()
        .map(|m| m.backups_after_retirement)
        .min()
        .unwrap_or(0);
    let failures: u64 = report.macs.iter().map(|m| m.failures_after_lockdown).sum();
    let writes = report.macs.iter().filter(|m| m.writes != 1).count();
    let token_reads = report
        .macs
        .iter()
        .filter(|m| m.kind == "token" && m.secret_reads > 0)
        .count();
    println!(
        "checks: {locked}/{} locked down; {failures} backup failures after lockdown (each Mac backed up at least {after_retirement} times after the retirement); {premature} audits ready while a Mac used the main keys; {writes} Macs with other than one keychain write; {token_reads} token Macs that read the secret; retirement: {}; final audit exit {}; {:.0} s in all",
        report.macs.len(),
        report
            .retirement
            .as_ref()
            .map_or("none".to_owned(), |r| r.1["result"].to_string()),
        report.final_audit.0,
        started.elapsed().as_secs_f64(),
    );
}
