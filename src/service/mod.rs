//! `arq-lockdown serve`: the provisioning service, so that Macs never hold IAM rights.
//!
//! It holds the IAM credentials (aws-config's standard chain) and hands each Mac a key scoped to
//! that Mac's computer UUID ([`crate::iam`]). Who may get which key (the wire format is
//! [`crate::protocol`]):
//! - **enroll**: the fleet's main keys (a proof by a `fleet_principals` ARN) or an enrollment
//!   token, always with a signature by the Mac's enrollment key. Neither proves which Mac is which
//!   (every fleet member may hold them), so a computer UUID is bound only where nobody else can
//!   know it yet or the admin pinned it ([`binding`]): by default a UUID with no data in any
//!   allowed bucket, its user created with its binding tags in one `CreateUser` (IAM decides who
//!   binds it first), or a user the admin pinned to this key's fingerprint. Whoever finds it bound
//!   must sign with the bound key; a refused claim is recorded on the user for `audit`.
//! - **rotate**: only that computer's own scoped user in this service's own account — the whole
//!   ARN and the user's unique id (AIDA…), from one of its active long-term keys — together with
//!   the bound enrollment key may get a new key.
//! - **retire**: only the bound enrollment key may delete one of its keys.
//!
//! Issuing never deletes a key (the user's two slots full is a refusal naming the keys), and every
//! secret is sealed to the one-time reply key inside the signed request: a captured request
//! replayed anywhere yields nothing usable and cannot take a working key away. IAM is the only
//! state, so any number of instances can run side by side.
//!
//! Every request is treated as hostile: headers and bodies are capped and must arrive in time,
//! connections are capped, accept errors back off, JSON with unknown fields and keys of small order
//! are refused, STS and IAM work waits for one of a few permits, every enroller has limits
//! ([`tokens`]) that refused requests do not spend, and the log line per request names the
//! computer, the caller and the result — never a secret.
//!
//! Under systemd ([`lifecycle`]): SIGHUP reads the TLS certificate and key again ([`tls`]), and
//! SIGTERM stops accepting and lets the requests in flight finish before the process exits.
//!
//! The parts: [`connections`] accepts and serves connections; [`routes`] maps paths to handlers
//! and gives every request its task, log line and count; [`handlers`] holds enroll, rotate and
//! retire, each as its checks in order, from the checks in [`checks`] and the rule in
//! [`binding`] (whose data check is [`buckets`]'); [`issue`] makes the key; [`refusal`] names every
//! reason code a request can be refused with.

mod binding;
mod buckets;
mod checks;
mod config;
mod connections;
mod handlers;
mod issue;
mod lifecycle;
mod refusal;
mod replay;
mod routes;
mod sts;
mod tls;
mod tokens;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use self::binding::{ClaimBudget, Confirmed};
use self::buckets::{BucketError, Buckets};
pub use self::config::{BindWithoutPin, EnrollmentToken, ServiceConfig, TlsFiles, TokenHash};
use self::lifecycle::InFlight;
use self::replay::ReplayCache;
use self::sts::Sts;
use self::tls::{Tls, TlsError};
use self::tokens::Enrollers;
use crate::aws::{self, AwsCredentials, Identity};
use crate::exit_code::ExitCode;
use crate::https::HttpsClient;
use crate::iam::{Iam, IamError};
use crate::protocol::proof::ProofRules;

/// Proofs and signatures remembered per instance (each entry is under 200 bytes).
const REPLAY_CACHE_ENTRIES: usize = 100_000;
/// IAM lookups at once for requests whose sender has proven nothing yet; more are refused at once.
const UNPROVEN_LOOKUPS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("service config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error(
        "plain HTTP on {0} would expose keys on the network: add [tls] to the config, listen on loopback, or pass --insecure-http (behind a TLS-terminating proxy)"
    )]
    PlainHttp(SocketAddr),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    TlsFiles(#[from] TlsError),
    #[error("cannot take over SIGHUP, SIGTERM and SIGINT: {0}")]
    Signals(std::io::Error),
    #[error(
        "the service's own AWS credentials do not work ({0}): give it an IAM role or AWS_PROFILE with the rights in docs/policy.md"
    )]
    OwnCredentials(String),
    #[error(transparent)]
    Unreachable(#[from] aws::Unreachable),
    #[error(transparent)]
    Iam(#[from] IamError),
    #[error("the allowed buckets: {0}")]
    Buckets(#[from] BucketError),
}

impl ServiceError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::OwnCredentials(_) | Self::Unreachable(_) | Self::Iam(_) | Self::Buckets(_) => {
                ExitCode::Aws
            }
            Self::Signals(_) => ExitCode::Internal,
            _ => ExitCode::ConfigInvalid,
        }
    }
}

/// What every request handler shares.
struct Service {
    rules: ProofRules,
    sts: Sts,
    /// The service's own AWS account: scoped users anywhere else are strangers.
    account: String,
    config: ServiceConfig,
    /// The tokens, and every enroller's limits.
    enrollers: Enrollers,
    iam: Iam,
    /// The allowed buckets, for the binding rule's data check.
    buckets: Buckets,
    /// How many refused claims may still be recorded this minute.
    claims: Mutex<ClaimBudget>,
    /// Bindings confirmed lately, for retires.
    confirmed: Mutex<Confirmed>,
    iam_permits: Semaphore,
    /// IAM lookups made before the caller has proven anything (retire's binding lookup).
    unproven_lookups: Semaphore,
    replays: Mutex<ReplayCache>,
    /// Requests by endpoint and result (the reason code, or `ok`), for `/metrics`.
    metrics: Mutex<BTreeMap<(&'static str, String), u64>>,
    /// Open connections and request work: what a stop waits for.
    in_flight: InFlight,
}

/// Runs the service until SIGTERM or SIGINT, then drains (see [`lifecycle`]) and returns.
pub async fn serve(config: ServiceConfig, insecure_http: bool) -> Result<(), ServiceError> {
    if config.tls.is_none() && !config.listen.ip().is_loopback() && !insecure_http {
        return Err(ServiceError::PlainHttp(config.listen));
    }
    let tls = config.tls.as_ref().map(Tls::load).transpose()?;
    let service = Arc::new(Service::start(config).await?);
    let app = routes::router(service.clone());
    connections::run(&service, tls, app).await
}

impl Service {
    /// The service's state at start: its own account (its credentials must work), its IAM, S3
    /// and STS clients and their permits (the buckets listable when the data check needs it), and
    /// each enroller's use so far.
    async fn start(config: ServiceConfig) -> Result<Self, ServiceError> {
        let sdk_config = aws::load_config(AwsCredentials::Chain).await;
        let account = match aws::identify(&sdk_config).await? {
            Identity::Known(caller) => caller.account,
            Identity::Refused(reason) => return Err(ServiceError::OwnCredentials(reason)),
        };
        let iam = Iam::new(&aws::rate_limited(&sdk_config));
        let buckets = Buckets::connect(&sdk_config, &config.allowed_buckets).await;
        if config.bind_without_pin == BindWithoutPin::WhenNoData {
            buckets.check().await?;
        }
        let enrollers = enrollers(&iam, &config).await?;
        let max_age = Duration::from_secs(config.proof_max_age_seconds);
        let http = HttpsClient::new(Duration::from_secs(10))
            .map_err(|e| ServiceError::Tls(e.to_string()))?;
        Ok(Self {
            rules: ProofRules {
                server_id: config.server_id.clone(),
                sts_host: config.sts_host.clone(),
                max_age,
            },
            sts: Sts::new(http, &config.sts_endpoint, config.sts_concurrency),
            account,
            enrollers,
            iam,
            buckets,
            claims: Mutex::new(ClaimBudget::new(Instant::now())),
            confirmed: Mutex::new(Confirmed::default()),
            iam_permits: Semaphore::new(config.iam_concurrency),
            unproven_lookups: Semaphore::new(UNPROVEN_LOOKUPS),
            // A proof is valid from max_age before its date to max_age after; whole seconds round.
            replays: Mutex::new(ReplayCache::new(
                2 * max_age + Duration::from_secs(2),
                REPLAY_CACHE_ENTRIES,
            )),
            metrics: Mutex::new(BTreeMap::new()),
            in_flight: InFlight::new(),
            config,
        })
    }
}

/// The enrollment tokens, and each enroller with the users it created already, counted from the
/// users' tags in IAM (a user the admin's pin made is not its enroller's).
async fn enrollers(iam: &Iam, config: &ServiceConfig) -> Result<Enrollers, IamError> {
    let mut at_start: HashMap<String, u64> = HashMap::new();
    for user in iam.scoped_users().await? {
        if let (Some(by), None) = (user.enrolled_by(), user.pinned_key()) {
            *at_start.entry(by.to_owned()).or_default() += 1;
        }
    }
    Ok(Enrollers::new(config.enrollment_tokens.clone(), at_start))
}
