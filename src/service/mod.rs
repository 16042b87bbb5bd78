//! `arq-lockdown serve`: the provisioning service, so that Macs never hold IAM rights.
//!
//! It holds the IAM credentials (aws-config's standard chain) and hands each Mac a key scoped to
//! that Mac's computer UUID ([`crate::iam`]). Who may get which key (the wire format is
//! [`crate::protocol`]):
//! - **enroll**: the fleet's main keys (a proof by a `fleet_principals` ARN) or an enrollment
//!   token, always with a signature by the Mac's enrollment key. IAM decides who binds a computer
//!   first: the user is created with its binding tags (bucket, enrollment public key) in one
//!   `CreateUser`; whoever finds it existing must sign with the bound enrollment key.
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
//! Every request is treated as hostile: bodies are capped, connections are capped and those that
//! trickle are cut, accept errors back off, JSON with unknown fields is refused, STS and IAM work
//! waits for one of a few permits, and the log line per request names the computer, the caller
//! and the result — never a secret.
//!
//! Under systemd ([`lifecycle`]): SIGHUP reads the TLS certificate and key again ([`tls`]), and
//! SIGTERM stops accepting and lets the requests in flight finish before the process exits.

mod config;
mod lifecycle;
mod replay;
mod sts;
mod tls;
mod tokens;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use self::config::{EnrollmentToken, ServiceConfig, TlsFiles, TokenHash};
use self::lifecycle::{DRAIN_TIMEOUT, Event, InFlight, Signals, Ticket};
use self::replay::ReplayCache;
use self::sts::{Sts, StsError};
use self::tls::{Tls, TlsError};
use self::tokens::Tokens;
use crate::arq_config::{ArqConfig, ComputerUuid};
use crate::aws::{self, AwsCredentials, Caller, Identity};
use crate::exit_code::ExitCode;
use crate::https::HttpsClient;
use crate::iam::{self, Iam, IamError, ScopedUser, UserTags};
use crate::policy::{PolicyDocument, PolicyOptions};
use crate::protocol::proof::{ProofRefusal, ProofRules};
use crate::protocol::{
    self, ENROLL, EnrollRequest, Envelope, ErrorBody, KeyResponse, RETIRE, ROTATE, Request,
    RetireRequest, RotateRequest, enrollment, sealed,
};

/// Request bodies are a few kilobytes; anything over this is refused unread.
const MAX_BODY_BYTES: usize = 16 * 1024;
/// A client must send its request headers within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection is closed after this long, whatever it is doing (slow-body clients).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// How long a request may wait for an IAM permit before the service answers 503.
const IAM_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);
/// Proofs and signatures remembered per instance (each entry is under 200 bytes).
const REPLAY_CACHE_ENTRIES: usize = 100_000;
/// IAM lookups at once for requests whose sender has proven nothing yet; more are refused at once.
const UNPROVEN_LOOKUPS: usize = 2;
/// Accept errors (file descriptors exhausted, say) are retried after this long, doubling.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

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
        "the service's own AWS credentials do not work ({0}): give it an IAM role or AWS_PROFILE with the rights in the README"
    )]
    OwnCredentials(String),
    #[error(transparent)]
    Unreachable(#[from] aws::Unreachable),
    #[error(transparent)]
    Iam(#[from] IamError),
}

impl ServiceError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::OwnCredentials(_) | Self::Unreachable(_) | Self::Iam(_) => ExitCode::Aws,
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
    tokens: Tokens,
    iam: Iam,
    iam_permits: Semaphore,
    /// IAM lookups made before the caller has proven anything (retire's binding lookup).
    unproven_lookups: Semaphore,
    replays: Mutex<ReplayCache>,
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
    let sdk_config = aws::load_config(AwsCredentials::Chain).await;
    let account = match aws::identify(&sdk_config).await? {
        Identity::Known(caller) => caller.account,
        Identity::Refused(reason) => return Err(ServiceError::OwnCredentials(reason)),
    };
    let iam = Iam::new(&sdk_config);
    let enrolled = match Tokens::count_enrollments(&config.enrollment_tokens) {
        true => iam.scoped_users().await?,
        false => Vec::new(),
    };
    let tokens = Tokens::new(config.enrollment_tokens.clone(), |name| {
        let by = format!("token:{name}");
        enrolled
            .iter()
            .filter(|u| u.enrolled_by() == Some(by.as_str()))
            .count() as u64
    });
    let max_age = Duration::from_secs(config.proof_max_age_seconds);
    let http =
        HttpsClient::new(Duration::from_secs(10)).map_err(|e| ServiceError::Tls(e.to_string()))?;
    let service = Arc::new(Service {
        rules: ProofRules {
            server_id: config.server_id.clone(),
            sts_host: config.sts_host.clone(),
            max_age,
        },
        sts: Sts::new(http, &config.sts_endpoint, config.sts_concurrency),
        account,
        tokens,
        iam,
        iam_permits: Semaphore::new(config.iam_concurrency),
        unproven_lookups: Semaphore::new(UNPROVEN_LOOKUPS),
        // A proof is valid from max_age before its date to max_age after; whole seconds round.
        replays: Mutex::new(ReplayCache::new(
            2 * max_age + Duration::from_secs(2),
            REPLAY_CACHE_ENTRIES,
        )),
        metrics: Mutex::new(BTreeMap::new()),
        in_flight: InFlight::new(),
        config: config.clone(),
    });
    let app = Router::new()
        .route(ENROLL, post(enroll))
        .route(ROTATE, post(rotate))
        .route(RETIRE, post(retire))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(service.clone());

    let listen_error = |e: std::io::Error| ServiceError::Listen {
        addr: config.listen,
        reason: e.to_string(),
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(listen_error)?;
    let local = listener.local_addr().map_err(listen_error)?;
    let mut signals = Signals::install().map_err(ServiceError::Signals)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("arq-lockdown serve: listening on {scheme}://{local}");
    let connections = Arc::new(Semaphore::new(config.max_connections));
    let mut backoff = ACCEPT_BACKOFF.0;
    let stopped_by = loop {
        let event = tokio::select! {
            event = signals.next() => event,
            (stream, permit) = accept(&listener, &connections, &mut backoff) => {
                let acceptor = tls.as_ref().map(Tls::acceptor);
                let ticket = service.in_flight.ticket();
                tokio::spawn(connection(stream, acceptor, app.clone(), permit, ticket));
                continue;
            }
        };
        match event {
            Event::Reload => reload(tls.as_ref()),
            Event::Stop(signal) => break signal,
        }
    };
    // New connections are refused from here on; those open finish their requests.
    drop(listener);
    eprintln!(
        "{}",
        serde_json::json!({"signal": stopped_by, "stopping": "no new connections; requests in flight may finish", "drain_seconds": DRAIN_TIMEOUT.as_secs()})
    );
    let cut = service.in_flight.drain(DRAIN_TIMEOUT).await;
    eprintln!(
        "{}",
        serde_json::json!({"stopped": if cut == 0 { "drained" } else { "drain timed out" }, "cut": cut})
    );
    Ok(())
}

/// The next connection and its permit. At `max_connections` this waits for a permit, and new
/// connections wait in the kernel's queue; an accept error (out of file descriptors, say) is
/// retried after `backoff`, which doubles: retrying at once would spin a core. Cancel-safe.
async fn accept(
    listener: &TcpListener,
    connections: &Arc<Semaphore>,
    backoff: &mut Duration,
) -> (TcpStream, OwnedSemaphorePermit) {
    loop {
        let permit = connections
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        match listener.accept().await {
            Ok((stream, _peer)) => {
                *backoff = ACCEPT_BACKOFF.0;
                return (stream, permit);
            }
            Err(error) => {
                eprintln!(
                    "{}",
                    serde_json::json!({"accept_error": error.to_string(), "retry_ms": backoff.as_millis() as u64})
                );
                tokio::time::sleep(*backoff).await;
                *backoff = (*backoff * 2).min(ACCEPT_BACKOFF.1);
            }
        }
    }
}

/// One connection, TLS first when configured, for at most [`CONNECTION_LIFETIME`].
async fn connection(
    stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    _permit: OwnedSemaphorePermit,
    ticket: Ticket,
) {
    let connection = async {
        match tls {
            Some(acceptor) => {
                if let Ok(Ok(stream)) =
                    tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await
                {
                    serve_connection(stream, app, ticket).await;
                }
            }
            None => serve_connection(stream, app, ticket).await,
        }
    };
    let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
}

/// Serves HTTP/1.1 on one connection; once the service is stopping, the request under way is
/// finished and the connection closed (an idle one at once).
async fn serve_connection<S>(stream: S, app: Router, mut ticket: Ticket)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(app);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        () = ticket.stopping() => connection.as_mut().graceful_shutdown(),
    }
    let _ = connection.await;
}

/// SIGHUP: the TLS pair is read again; one that does not load is logged and the one in use kept.
fn reload(tls: Option<&Tls>) {
    let line = match tls.map(|tls| (tls, tls.reload())) {
        None => serde_json::json!({"signal": "SIGHUP", "tls": "not configured: nothing to reload"}),
        Some((tls, Ok(()))) => serde_json::json!({
            "signal": "SIGHUP",
            "tls": "reloaded",
            "certificate": tls.files().certificate.display().to_string(),
        }),
        Some((_, Err(error))) => serde_json::json!({
            "signal": "SIGHUP",
            "tls": "kept the certificate in use",
            "error": error.to_string(),
        }),
    };
    eprintln!("{line}");
}

/// Why a request was not served: the HTTP status, a reason code, and a message for people.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// With `key-limit`: the keys that fill the user's two slots.
    access_key_ids: Vec<String>,
    /// What went wrong on the service's side, for its log only (never sent to the caller).
    detail: Option<String>,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            access_key_ids: Vec::new(),
            detail: None,
        }
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    fn busy(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
    }

    fn bad_signature() -> Self {
        Self::forbidden(
            "enrollment-signature-invalid",
            "only the enrollment key this computer is bound to may do that",
        )
    }

    fn not_this_computers_key() -> Self {
        Self::forbidden(
            "not-this-computers-key",
            "only this computer's own scoped user, in this service's account, may do that",
        )
    }

    fn key_limit(key_ids: Vec<String>) -> Self {
        Self {
            access_key_ids: key_ids,
            ..Self::new(
                StatusCode::CONFLICT,
                "key-limit",
                "this computer's user has two keys (IAM's limit): retire the one not in \"Arq S3\" first",
            )
        }
    }
}

impl From<ProofRefusal> for Refusal {
    fn from(refusal: ProofRefusal) -> Self {
        Self::forbidden(refusal.code(), refusal.to_string())
    }
}

impl From<StsError> for Refusal {
    fn from(error: StsError) -> Self {
        match error {
            StsError::Busy => Self::busy("too many proofs waiting for STS: retry later"),
            StsError::Unreachable(e) => Self {
                detail: Some(e.to_string()),
                ..Self::new(
                    StatusCode::BAD_GATEWAY,
                    "sts-unreachable",
                    "the service cannot reach STS: retry later",
                )
            },
            StsError::Rejected => ProofRefusal::Rejected.into(),
        }
    }
}

impl From<IamError> for Refusal {
    /// The caller learns only that IAM failed; the service's log has which call and why.
    fn from(error: IamError) -> Self {
        let refusal = match error {
            IamError::Throttled { .. } => Self::busy("IAM is throttling: retry later"),
            IamError::Quota { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "iam-quota",
                "the AWS account's IAM quota is reached: ask the admin",
            ),
            _ => Self::new(
                StatusCode::BAD_GATEWAY,
                "iam-failed",
                "IAM failed: retry later; the service's log has the detail",
            ),
        };
        Self {
            detail: Some(error.to_string()),
            ..refusal
        }
    }
}

/// Who asked for what, for the log line.
#[derive(Default)]
struct Requester {
    computer_uuid: Option<String>,
    caller: Option<String>,
}

async fn enroll(State(service): State<Arc<Service>>, body: Bytes) -> Response {
    let started = Instant::now();
    let work = service.clone();
    let (who, result) = detached(service.in_flight.ticket(), async move {
        let mut who = Requester::default();
        let result = work.enroll(&body, &mut who).await;
        (who, result)
    })
    .await;
    service.finish("enroll", who, started, result.map(axum::Json))
}

async fn rotate(State(service): State<Arc<Service>>, body: Bytes) -> Response {
    let started = Instant::now();
    let work = service.clone();
    let (who, result) = detached(service.in_flight.ticket(), async move {
        let mut who = Requester::default();
        let result = work.rotate(&body, &mut who).await;
        (who, result)
    })
    .await;
    service.finish("rotate", who, started, result.map(axum::Json))
}

async fn retire(State(service): State<Arc<Service>>, body: Bytes) -> Response {
    let started = Instant::now();
    let work = service.clone();
    let (who, result) = detached(service.in_flight.ticket(), async move {
        let mut who = Requester::default();
        let result = work.retire(&body, &mut who).await;
        (who, result)
    })
    .await;
    let result = result.map(|()| axum::Json(serde_json::json!({})));
    service.finish("retire", who, started, result)
}

/// Runs a request's work on a task of its own: a client that goes away, or a connection cut at
/// its lifetime, never stops an IAM write half-way (a key made but never handed out). The work
/// holds its `ticket`, so a stop waits for it too.
async fn detached<T: Send + 'static>(
    ticket: Ticket,
    work: impl Future<Output = (Requester, Result<T, Refusal>)> + Send + 'static,
) -> (Requester, Result<T, Refusal>) {
    let work = async move {
        let _ticket = ticket;
        work.await
    };
    tokio::spawn(work).await.unwrap_or_else(|_| {
        let refusal = Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the service failed; its log has the detail",
        );
        (Requester::default(), Err(refusal))
    })
}

async fn metrics(State(service): State<Arc<Service>>) -> String {
    let counts = service.metrics.lock().expect("metrics lock").clone();
    let mut text = String::from(
        "# HELP arq_lockdown_requests_total Requests by endpoint and result.\n# TYPE arq_lockdown_requests_total counter\n",
    );
    for ((endpoint, result), count) in &counts {
        text += &format!(
            "arq_lockdown_requests_total{{endpoint=\"{endpoint}\",result=\"{result}\"}} {count}\n"
        );
    }
    text += &format!(
        "# HELP arq_lockdown_iam_permits_free IAM permits not in use.\n# TYPE arq_lockdown_iam_permits_free gauge\narq_lockdown_iam_permits_free {}\n",
        service.iam_permits.available_permits()
    );
    text += &format!(
        "# HELP arq_lockdown_replay_cache_entries Proofs remembered against replays.\n# TYPE arq_lockdown_replay_cache_entries gauge\narq_lockdown_replay_cache_entries {}\n",
        service.replays.lock().expect("replay cache lock").len()
    );
    text
}

impl Service {
    async fn enroll(&self, body: &[u8], who: &mut Requester) -> Result<KeyResponse, Refusal> {
        let (envelope, request) = self.open::<EnrollRequest>(body)?;
        let config = self.computer(&request.computer_uuid, &request.bucket, who)?;
        let binding = protocol::binding(ENROLL, &envelope.request);
        for key in [&request.enrollment_key, &request.reply_key] {
            if !protocol::is_public_key(key) {
                return Err(Refusal::bad_request(
                    "bad-key",
                    "enrollment_key and reply_key must be 32-byte keys in base64",
                ));
            }
        }
        let signature = envelope.enrollment_signature.as_deref().unwrap_or_default();
        if !enrollment::verify(
            &request.enrollment_key,
            &self.rules.server_id,
            &binding,
            signature,
        ) {
            return Err(Refusal::forbidden(
                "enrollment-signature-invalid",
                "an enrollment must be signed by the enrollment key it names",
            ));
        }
        // The key this lockdown replaces in "Arq S3", for `audit`: with a proof, the key that
        // signed it (STS vouched for it); with a token, only the Mac's word — kept as a hint when
        // it looks like a key id, never used to decide anything.
        let (enrolled_by, replaced_key) = match (&envelope.proof, &request.enrollment_token) {
            (Some(proof), None) => {
                let (caller, checked) = self.prove(proof, &config.computer_uuid, &binding).await?;
                who.caller = Some(caller.arn.clone());
                if !self.config.fleet_principals.contains(&caller.arn) {
                    return Err(Refusal::forbidden(
                        "not-a-fleet-principal",
                        "only the fleet's main keys (or an enrollment token) may enroll a computer",
                    ));
                }
                (caller.arn, Some(checked.access_key_id))
            }
            (None, Some(token)) => {
                let name = self.tokens.find(token).ok_or_else(|| {
                    Refusal::forbidden(
                        "bad-enrollment-token",
                        "the enrollment token is not one this service accepts",
                    )
                })?;
                who.caller = Some(format!("token:{name}"));
                let claimed = request
                    .replaced_key_id
                    .clone()
                    .filter(|id| iam::is_access_key_id(id));
                (format!("token:{name}"), claimed)
            }
            _ => {
                return Err(Refusal::bad_request(
                    "proof-or-token",
                    "send exactly one of a proof and an enrollment token",
                ));
            }
        };
        self.first_use(signature)?;
        // A replay was refused above without using up the token's allowance.
        if let Some(name) = enrolled_by.strip_prefix("token:") {
            self.tokens.admit(name, Instant::now()).map_err(|_| {
                Refusal::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "token-limit",
                    "this enrollment token has reached its limit (service.toml): retry later, or ask the admin",
                )
            })?;
        }
        let _permit = self.iam_permit().await?;
        let tags = UserTags {
            computer_uuid: config.computer_uuid.to_string(),
            bucket: config.bucket.to_string(),
            enrollment_key: Some(request.enrollment_key.clone()),
            enrolled_by: Some(enrolled_by.clone()),
            computer_name: request.computer_name.clone(),
            serial: request.serial.clone(),
            policy_options: Some(self.policy_options()),
            replaced_key: replaced_key.clone(),
        };
        let uuid = &config.computer_uuid;
        let user = match self
            .iam
            .create_user(uuid, &tags, &self.config.permissions_boundary_arn)
            .await?
        {
            Some(user) => {
                if let Some(name) = enrolled_by.strip_prefix("token:") {
                    self.tokens.enrolled(name);
                }
                user
            }
            // Bound already (by this Mac before, or by someone else): only its enrollment key may
            // enroll it again.
            None => {
                let user = self.iam.inspect(uuid).await?.ok_or_else(|| {
                    Refusal::busy("this computer's user is being made or deleted: retry")
                })?;
                if user.enrollment_key() != Some(request.enrollment_key.as_str()) {
                    return Err(Refusal::forbidden(
                        "computer-already-enrolled",
                        "this computer UUID is bound to another Mac: an admin must revoke it first",
                    ));
                }
                user
            }
        };
        self.issue(&config, &user, &request.reply_key, replaced_key.as_deref())
            .await
    }

    async fn rotate(&self, body: &[u8], who: &mut Requester) -> Result<KeyResponse, Refusal> {
        let (envelope, request) = self.open::<RotateRequest>(body)?;
        let config = self.computer(&request.computer_uuid, &request.bucket, who)?;
        if !protocol::is_public_key(&request.reply_key) {
            return Err(Refusal::bad_request(
                "bad-key",
                "reply_key must be a 32-byte key in base64",
            ));
        }
        let binding = protocol::binding(ROTATE, &envelope.request);
        let proof = envelope
            .proof
            .as_ref()
            .ok_or_else(|| Refusal::bad_request("proof-missing", "rotate needs a proof"))?;
        let (caller, checked) = self.prove(proof, &config.computer_uuid, &binding).await?;
        who.caller = Some(caller.arn.clone());
        let _permit = self.iam_permit().await?;
        let user = self
            .own_user(&caller, &checked.access_key_id, &config.computer_uuid)
            .await?;
        // A copy of the key in "Arq S3" is not enough: the Mac's enrollment key must sign too.
        self.bound_signature(&user, &binding, envelope.enrollment_signature.as_deref())?;
        self.first_use(&checked.signature)?;
        self.issue(&config, &user, &request.reply_key, None).await
    }

    /// Only the bound enrollment key may retire a key. Whoever asks is unknown until the signature
    /// is checked, so the lookup before it is one call, from a small budget of its own that never
    /// queues, and an unknown computer is refused exactly as a wrong signature is.
    async fn retire(&self, body: &[u8], who: &mut Requester) -> Result<(), Refusal> {
        let (envelope, request) = self.open::<RetireRequest>(body)?;
        let uuid = self.computer_uuid(&request.computer_uuid, who)?;
        let binding = protocol::binding(RETIRE, &envelope.request);
        let signature = envelope
            .enrollment_signature
            .as_deref()
            .ok_or_else(Refusal::bad_signature)?;
        let user = {
            let _permit = self
                .unproven_lookups
                .try_acquire()
                .map_err(|_| Refusal::busy("too many unproven requests: retry later"))?;
            self.iam.user(&uuid).await?
        };
        let user = user.ok_or_else(Refusal::bad_signature)?;
        self.bound_signature(&user, &binding, Some(signature))?;
        who.caller = Some("enrollment-key".into());
        self.first_use(signature)?;
        let _permit = self.iam_permit().await?;
        let keys = self.iam.inspect(&uuid).await?.unwrap_or_default().key_ids;
        if keys.contains(&request.access_key_id) {
            self.iam.delete_key(&uuid, &request.access_key_id).await?;
        }
        Ok(())
    }

    /// Refuses unless `signature` is the bound enrollment key's over `binding`.
    fn bound_signature(
        &self,
        user: &ScopedUser,
        binding: &str,
        signature: Option<&str>,
    ) -> Result<(), Refusal> {
        let bound = user.enrollment_key().unwrap_or_default();
        match enrollment::verify(
            bound,
            &self.rules.server_id,
            binding,
            signature.unwrap_or_default(),
        ) {
            true => Ok(()),
            false => Err(Refusal::bad_signature()),
        }
    }

    /// Parses the envelope and the request inside, and refuses requests that are not fresh.
    fn open<R: Request>(&self, body: &[u8]) -> Result<(Envelope, R), Refusal> {
        // Only the kind of error and where: serde_json's messages can quote the input's values.
        let bad = |e: serde_json::Error| {
            let kind = match e.classify() {
                serde_json::error::Category::Data => "not the expected fields or types",
                _ => "not JSON",
            };
            let at = format!("line {} column {}", e.line(), e.column());
            Refusal::bad_request("bad-json", format!("{kind} at {at}"))
        };
        let envelope: Envelope = serde_json::from_slice(body).map_err(bad)?;
        let request: R = serde_json::from_str(&envelope.request).map_err(bad)?;
        let max_age = self.rules.max_age;
        if !protocol::within(request.issued_at(), SystemTime::now(), max_age) {
            return Err(Refusal::forbidden(
                "request-expired",
                "the request is older than the service accepts (or from the future): check the Mac's clock",
            ));
        }
        Ok((envelope, request))
    }

    /// Validates the computer and bucket a request names, and the bucket against the allow-list.
    fn computer(
        &self,
        uuid: &str,
        bucket: &str,
        who: &mut Requester,
    ) -> Result<ArqConfig, Refusal> {
        let computer_uuid = self.computer_uuid(uuid, who)?;
        let config = ArqConfig::from_values(bucket, computer_uuid.as_str(), "request")
            .map_err(|e| Refusal::bad_request("bad-computer", e.to_string()))?;
        if !self.config.allowed_buckets.contains(&config.bucket) {
            return Err(Refusal::forbidden(
                "bucket-not-allowed",
                "this service does not hand out keys for that bucket",
            ));
        }
        Ok(config)
    }

    /// Validates a computer UUID a request names. Only upper case, as Arq writes them: IAM user
    /// names ignore case while S3 prefixes do not, so `arq-<uuid>` must name one computer only.
    fn computer_uuid(&self, uuid: &str, who: &mut Requester) -> Result<ComputerUuid, Refusal> {
        let parsed = ComputerUuid::parse(uuid).map_err(|reason| {
            Refusal::bad_request("bad-computer", format!("computer UUID: {reason}"))
        })?;
        if uuid.bytes().any(|b| b.is_ascii_lowercase()) {
            return Err(Refusal::bad_request(
                "bad-computer",
                "computer UUIDs are upper-case, as Arq writes them",
            ));
        }
        who.computer_uuid = Some(parsed.to_string());
        Ok(parsed)
    }

    /// Checks a proof's shape for `computer` and the request `binding`, then has STS say whose
    /// key signed it.
    async fn prove(
        &self,
        proof: &protocol::Proof,
        computer: &ComputerUuid,
        binding: &str,
    ) -> Result<(Caller, protocol::proof::CheckedProof), Refusal> {
        let checked = self
            .rules
            .check(proof, computer, binding, SystemTime::now())?;
        let caller = self.sts.caller_of(proof).await?;
        Ok((caller, checked))
    }

    /// The scoped user of `uuid`, if and only if `caller` is that very user: in this service's
    /// account, by its whole ARN, and by its unique id (a user deleted and made again under the
    /// same name is someone else) — and `key_id`, the key that signed, is still one of its active
    /// keys (STS may honour a deleted key for a while).
    async fn own_user(
        &self,
        caller: &Caller,
        key_id: &str,
        uuid: &ComputerUuid,
    ) -> Result<ScopedUser, Refusal> {
        if caller.account != self.account || caller.arn != iam::scoped_user_arn(&self.account, uuid)
        {
            return Err(Refusal::not_this_computers_key());
        }
        match self.iam.inspect(uuid).await? {
            Some(user)
                if user.user_id == caller.user_id
                    && user.arn == caller.arn
                    && user.active_key_ids.iter().any(|k| k == key_id) =>
            {
                Ok(user)
            }
            _ => Err(Refusal::not_this_computers_key()),
        }
    }

    /// Refuses a proof or signature this instance has seen before.
    fn first_use(&self, signature: &str) -> Result<(), Refusal> {
        let mut replays = self.replays.lock().expect("replay cache lock");
        match replays.first_use(signature, Instant::now()) {
            true => Ok(()),
            false => Err(ProofRefusal::Replayed.into()),
        }
    }

    async fn iam_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Refusal> {
        match tokio::time::timeout(IAM_QUEUE_TIMEOUT, self.iam_permits.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Refusal::busy(
                "too many requests waiting for IAM: retry later",
            )),
        }
    }

    /// The policy options this service builds every computer's policy with.
    fn policy_options(&self) -> PolicyOptions {
        PolicyOptions {
            no_computer_listing: self.config.no_computer_listing,
            ..PolicyOptions::default()
        }
    }

    /// The policy brought up to date (and its options recorded in the user's tags, with the key
    /// this lockdown replaced when the user has none recorded yet), then a new key sealed to
    /// `reply_key`. Never deletes a key: with both slots taken it refuses and names them.
    async fn issue(
        &self,
        config: &ArqConfig,
        user: &ScopedUser,
        reply_key: &str,
        replaced_key: Option<&str>,
    ) -> Result<KeyResponse, Refusal> {
        let uuid = &config.computer_uuid;
        if user.bound_bucket() != Some(config.bucket.as_str()) {
            return Err(Refusal::forbidden(
                "bucket-mismatch",
                "this computer is bound to another bucket",
            ));
        }
        if user.key_ids.len() >= 2 {
            return Err(Refusal::key_limit(user.key_ids.clone()));
        }
        let options = self.policy_options();
        let policy = PolicyDocument::scoped_to(config, options);
        self.iam
            .ensure_policy(uuid, &policy, user.policy.as_ref())
            .await?;
        let mut retag = Vec::new();
        if user.tag(iam::POLICY_OPTIONS_TAG) != Some(options.tag_value().as_str()) {
            retag.push((iam::POLICY_OPTIONS_TAG, options.tag_value()));
        }
        if let Some(id) = replaced_key
            && user.tag(iam::REPLACED_KEY_TAG).is_none()
            && !user.key_ids.iter().any(|k| k == id)
        {
            retag.push((iam::REPLACED_KEY_TAG, id.to_owned()));
        }
        if !retag.is_empty() {
            self.iam.add_tags(uuid, &retag).await?;
        }
        let key = match self.iam.create_key(uuid).await {
            Ok(key) => key,
            Err(IamError::KeyLimit { .. }) => {
                let now = self.iam.inspect(uuid).await?.unwrap_or_default();
                return Err(Refusal::key_limit(now.key_ids));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(KeyResponse {
            sealed_secret_access_key: sealed::seal(reply_key, &key.secret)
                .expect("the reply key was checked"),
            access_key_id: key.id.clone(),
            user_arn: user.arn.clone(),
            user_id: user.user_id.clone(),
            other_access_key_ids: user.key_ids.clone(),
        })
    }

    /// Logs one line, counts the result, and turns it into the HTTP answer.
    fn finish(
        &self,
        endpoint: &'static str,
        who: Requester,
        started: Instant,
        result: Result<impl IntoResponse, Refusal>,
    ) -> Response {
        let (status, code, detail, response) = match result {
            Ok(body) => (StatusCode::OK, "ok", None, body.into_response()),
            Err(refusal) => {
                let body = axum::Json(ErrorBody {
                    error: refusal.code.to_owned(),
                    message: refusal.message,
                    access_key_ids: refusal.access_key_ids,
                });
                let response = (refusal.status, body).into_response();
                (refusal.status, refusal.code, refusal.detail, response)
            }
        };
        let line = serde_json::json!({
            "endpoint": endpoint,
            "computer_uuid": who.computer_uuid,
            "caller": who.caller,
            "status": status.as_u16(),
            "result": code,
            "detail": detail,
            "ms": started.elapsed().as_millis() as u64,
        });
        eprintln!("{line}");
        *self
            .metrics
            .lock()
            .expect("metrics lock")
            .entry((endpoint, code.to_owned()))
            .or_default() += 1;
        response
    }
}
