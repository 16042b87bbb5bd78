//! `arq-lockdown serve`: the provisioning service, so that Macs never hold IAM rights.
//!
//! It holds the IAM credentials (aws-config's standard chain) and hands each Mac a key scoped to
//! that Mac's computer UUID, doing the IAM work of `apply` through the same code
//! ([`crate::key_source::iam`]). Who may get which key is decided by an identity proof
//! ([`proof`]): the fleet's main-key principal may enroll a computer that has no scoped user yet
//! (first come binds: the UUID, name and serial go into the user's tags); a computer's own scoped
//! key may rotate that computer only. Everything else is refused with 403 and a reason code, and
//! nothing is created. IAM is the only state, so any number of instances can run side by side.
//!
//! Every request is treated as hostile: bodies are capped, connections that trickle are cut,
//! JSON with unknown fields is refused, IAM work waits for one of a few permits, and the log line
//! per request names the computer, the caller and the result — never a secret.

pub mod api;
pub mod proof;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::Full;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use self::api::{ErrorBody, KeyRequest, KeyResponse, RetireRequest};
use self::proof::{Proof, ProofRefusal, ProofRules};
use crate::arq_config::{ArqConfig, BucketName, ComputerUuid};
use crate::aws::{self, AwsCredentials};
use crate::exit_code::ExitCode;
use crate::https::HttpsClient;
use crate::key_source::iam::{self, Iam, IamError, WantedUser};
use crate::policy::{PolicyDocument, PolicyOptions};

/// Request bodies are a few hundred bytes; anything over this is refused unread.
const MAX_BODY_BYTES: usize = 16 * 1024;
/// A client must send its request headers within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection is closed after this long, whatever it is doing (slow-body clients).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// How long a request may wait for an IAM permit before the service answers 503.
const IAM_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// The service's configuration file (TOML).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Address to listen on, e.g. "0.0.0.0:8443".
    pub listen: SocketAddr,
    /// The value Macs put in the signed `x-arq-lockdown-server-id` header: names this service.
    pub server_id: String,
    /// Where proofs are replayed; never a host a client names.
    #[serde(default = "default_sts_endpoint")]
    pub sts_endpoint: String,
    /// The STS host proofs must be signed for.
    #[serde(default = "default_sts_host")]
    pub sts_host: String,
    /// Buckets Macs may get keys for.
    pub allowed_buckets: Vec<String>,
    /// IAM principal ARNs of the fleet's main keys: the callers that may enroll a computer.
    #[serde(default)]
    pub fleet_principals: Vec<String>,
    /// SHA-256 (hex) of enrollment tokens, for fleets whose Macs never hold main keys.
    #[serde(default)]
    pub enrollment_token_sha256: Vec<String>,
    /// How old a proof may be.
    #[serde(default = "default_proof_max_age")]
    pub proof_max_age_seconds: u64,
    /// IAM requests at once; more wait (IAM's rate limits are per account).
    #[serde(default = "default_iam_concurrency")]
    pub iam_concurrency: usize,
    /// Certificate and key (PEM) for HTTPS; without them only loopback (or --insecure-http) is served.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

fn default_sts_endpoint() -> String {
    "https://sts.amazonaws.com".to_owned()
}
fn default_sts_host() -> String {
    "sts.amazonaws.com".to_owned()
}
fn default_proof_max_age() -> u64 {
    300
}
fn default_iam_concurrency() -> usize {
    4
}

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
}

impl ServiceError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::ConfigInvalid
    }
}

impl ServiceConfig {
    /// Reads and checks the config file.
    pub fn load(path: &Path) -> Result<Self, ServiceError> {
        let error = |reason: String| ServiceError::Config {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        let config: Self = toml::from_str(&text).map_err(|e| error(e.message().to_owned()))?;
        if config.server_id.trim().is_empty() {
            return Err(error("server_id is empty".into()));
        }
        if config.allowed_buckets.is_empty() {
            return Err(error(
                "allowed_buckets is empty: no Mac could get a key".into(),
            ));
        }
        for bucket in &config.allowed_buckets {
            BucketName::parse(bucket)
                .map_err(|reason| error(format!("bucket {bucket:?}: {reason}")))?;
        }
        if config
            .fleet_principals
            .iter()
            .any(|arn| !arn.starts_with("arn:aws"))
        {
            return Err(error(
                "fleet_principals must be IAM ARNs (arn:aws:iam::ACCOUNT:user/NAME)".into(),
            ));
        }
        if config
            .enrollment_token_sha256
            .iter()
            .any(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(error(
                "enrollment_token_sha256 entries must be 64 hex digits".into(),
            ));
        }
        if config.fleet_principals.is_empty() && config.enrollment_token_sha256.is_empty() {
            return Err(error(
                "neither fleet_principals nor enrollment_token_sha256: no Mac could enroll".into(),
            ));
        }
        if config.iam_concurrency == 0 {
            return Err(error("iam_concurrency must be at least 1".into()));
        }
        config
            .sts_endpoint
            .parse::<hyper::Uri>()
            .map_err(|e| error(format!("sts_endpoint: {e}")))?;
        Ok(config)
    }
}

/// What every request handler shares.
struct Service {
    rules: ProofRules,
    sts: HttpsClient,
    sts_endpoint: String,
    allowed_buckets: Vec<String>,
    fleet_principals: Vec<String>,
    token_hashes: Vec<[u8; 32]>,
    iam: Iam,
    iam_permits: Semaphore,
    used_proofs: Mutex<HashMap<String, Instant>>,
    metrics: Mutex<BTreeMap<(&'static str, String), u64>>,
}

/// Runs the service until the process is stopped.
pub async fn serve(config: ServiceConfig, insecure_http: bool) -> Result<(), ServiceError> {
    if config.tls.is_none() && !config.listen.ip().is_loopback() && !insecure_http {
        return Err(ServiceError::PlainHttp(config.listen));
    }
    let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
    let service = Arc::new(Service {
        rules: ProofRules {
            server_id: config.server_id.clone(),
            sts_host: config.sts_host.clone(),
            max_age: Duration::from_secs(config.proof_max_age_seconds),
        },
        sts: HttpsClient::new(Duration::from_secs(10))
            .map_err(|e| ServiceError::Tls(e.to_string()))?,
        sts_endpoint: config.sts_endpoint.trim_end_matches('/').to_owned(),
        allowed_buckets: config.allowed_buckets.clone(),
        fleet_principals: config.fleet_principals.clone(),
        token_hashes: config
            .enrollment_token_sha256
            .iter()
            .map(|h| hex_to_bytes(h))
            .collect(),
        iam: Iam::new(&aws::load_config(AwsCredentials::Chain).await),
        iam_permits: Semaphore::new(config.iam_concurrency),
        used_proofs: Mutex::new(HashMap::new()),
        metrics: Mutex::new(BTreeMap::new()),
    });
    let app = Router::new()
        .route("/v1/enroll", post(enroll))
        .route("/v1/rotate", post(rotate))
        .route("/v1/retire", post(retire))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(service);

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| ServiceError::Listen {
            addr: config.listen,
            reason: e.to_string(),
        })?;
    let local = listener.local_addr().map_err(|e| ServiceError::Listen {
        addr: config.listen,
        reason: e.to_string(),
    })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("arq-lockdown serve: listening on {scheme}://{local}");
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            continue;
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let connection = async {
                match tls {
                    Some(acceptor) => {
                        if let Ok(Ok(stream)) =
                            tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await
                        {
                            serve_connection(stream, app).await;
                        }
                    }
                    None => serve_connection(stream, app).await,
                }
            };
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
        });
    }
}

async fn serve_connection<S>(stream: S, app: Router)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(app);
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
}

fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, ServiceError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certificates = CertificateDer::pem_file_iter(&files.certificate)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServiceError::Tls(format!("{}: {e}", files.certificate.display())))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| ServiceError::Tls(format!("{}: {e}", files.key.display())))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .and_then(|builder| {
        builder
            .with_no_client_auth()
            .with_single_cert(certificates, key)
    })
    .map_err(|e| ServiceError::Tls(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Why a request was not served: the HTTP status, a reason code, and a message for people.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code,
            message: message.into(),
        }
    }
}

impl From<ProofRefusal> for Refusal {
    fn from(refusal: ProofRefusal) -> Self {
        Self::forbidden(refusal.code(), refusal.to_string())
    }
}

impl From<IamError> for Refusal {
    fn from(error: IamError) -> Self {
        let status = match error {
            IamError::Throttled { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        };
        Self {
            status,
            code: "iam-failed",
            message: error.to_string(),
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
    let mut requester = Requester::default();
    let started = Instant::now();
    let result = service.enroll(&body, &mut requester).await;
    service.finish("enroll", requester, started, result.map(axum::Json))
}

async fn rotate(State(service): State<Arc<Service>>, body: Bytes) -> Response {
    let mut requester = Requester::default();
    let started = Instant::now();
    let result = service.rotate(&body, &mut requester).await;
    service.finish("rotate", requester, started, result.map(axum::Json))
}

async fn retire(State(service): State<Arc<Service>>, body: Bytes) -> Response {
    let mut requester = Requester::default();
    let started = Instant::now();
    let result = service.retire(&body, &mut requester).await;
    service.finish(
        "retire",
        requester,
        started,
        result.map(|()| axum::Json(serde_json::json!({}))),
    )
}

async fn metrics(State(service): State<Arc<Service>>) -> String {
    let counts = service.metrics.lock().expect("metrics lock");
    let mut text = String::from(
        "# HELP arq_lockdown_requests_total Requests by endpoint and result.\n# TYPE arq_lockdown_requests_total counter\n",
    );
    for ((endpoint, result), count) in counts.iter() {
        text += &format!(
            "arq_lockdown_requests_total{{endpoint=\"{endpoint}\",result=\"{result}\"}} {count}\n"
        );
    }
    text += &format!(
        "# HELP arq_lockdown_iam_permits_free IAM permits not in use.\n# TYPE arq_lockdown_iam_permits_free gauge\narq_lockdown_iam_permits_free {}\n",
        service.iam_permits.available_permits()
    );
    text
}

impl Service {
    async fn enroll(&self, body: &[u8], requester: &mut Requester) -> Result<KeyResponse, Refusal> {
        let request: KeyRequest = parse(body)?;
        let config = self.computer(&request.computer_uuid, &request.bucket, requester)?;
        requester.caller = Some(match (&request.proof, &request.enrollment_token) {
            (Some(proof), None) => {
                let (arn, _) = self.prove(proof, &config.computer_uuid).await?;
                if !self.fleet_principals.contains(&arn) {
                    requester.caller = Some(arn);
                    return Err(Refusal::forbidden(
                        "not-a-fleet-principal",
                        "only the fleet's main keys may enroll a computer",
                    ));
                }
                arn
            }
            (None, Some(token)) => {
                self.check_token(token)?;
                "enrollment-token".to_owned()
            }
            _ => {
                return Err(Refusal::bad_request(
                    "proof-or-token",
                    "send exactly one of proof and enrollment_token",
                ));
            }
        });
        let _permit = self.iam_permit().await?;
        let existing = self.iam.inspect(&config.computer_uuid).await?;
        if let Some(user) = &existing {
            // First come binds: only the same Mac (same serial) may enroll again, e.g. after a run
            // that died before its key reached "Arq S3".
            let same_mac = !request.serial.is_empty()
                && user.tags.get(iam::SERIAL_TAG) == Some(&request.serial);
            if !same_mac {
                return Err(Refusal::forbidden(
                    "computer-already-enrolled",
                    "this computer UUID is bound to another Mac: revoke it first",
                ));
            }
        }
        self.issue(&config, &request, existing.as_ref(), None).await
    }

    async fn rotate(&self, body: &[u8], requester: &mut Requester) -> Result<KeyResponse, Refusal> {
        let request: KeyRequest = parse(body)?;
        let config = self.computer(&request.computer_uuid, &request.bucket, requester)?;
        let proof = request
            .proof
            .as_ref()
            .ok_or_else(|| Refusal::bad_request("proof-or-token", "rotate needs a proof"))?;
        let (arn, caller_key) = self.prove(proof, &config.computer_uuid).await?;
        requester.caller = Some(arn.clone());
        if !iam::is_scoped_user_arn(&arn, &config.computer_uuid) {
            return Err(Refusal::forbidden(
                "not-this-computers-key",
                "only this computer's scoped key may rotate it",
            ));
        }
        let _permit = self.iam_permit().await?;
        let existing = self.iam.inspect(&config.computer_uuid).await?;
        let bound_bucket = existing.as_ref().and_then(|u| u.tags.get(iam::BUCKET_TAG));
        if bound_bucket != Some(&request.bucket) {
            return Err(Refusal::forbidden(
                "bucket-mismatch",
                "this computer is bound to another bucket",
            ));
        }
        self.issue(&config, &request, existing.as_ref(), Some(&caller_key))
            .await
    }

    async fn retire(&self, body: &[u8], requester: &mut Requester) -> Result<(), Refusal> {
        let request: RetireRequest = parse(body)?;
        let uuid = ComputerUuid::parse(&request.computer_uuid)
            .map_err(|reason| Refusal::bad_request("bad-computer-uuid", reason))?;
        requester.computer_uuid = Some(uuid.to_string());
        let (arn, caller_key) = self.prove(&request.proof, &uuid).await?;
        requester.caller = Some(arn.clone());
        if !iam::is_scoped_user_arn(&arn, &uuid) {
            return Err(Refusal::forbidden(
                "not-this-computers-key",
                "only this computer's scoped key may retire its keys",
            ));
        }
        if request.access_key_id == caller_key {
            return Err(Refusal::forbidden(
                "retire-own-key",
                "a key cannot retire itself",
            ));
        }
        let _permit = self.iam_permit().await?;
        let existing = self.iam.inspect(&uuid).await?;
        if existing.is_some_and(|u| u.key_ids.contains(&request.access_key_id)) {
            self.iam.delete_key(&uuid, &request.access_key_id).await?;
        }
        Ok(())
    }

    /// Validates the computer and bucket a request names, and the bucket against the allow-list.
    fn computer(
        &self,
        uuid: &str,
        bucket: &str,
        requester: &mut Requester,
    ) -> Result<ArqConfig, Refusal> {
        let config = ArqConfig::from_values(bucket, uuid, "request")
            .map_err(|e| Refusal::bad_request("bad-computer", e.to_string()))?;
        requester.computer_uuid = Some(config.computer_uuid.to_string());
        if !self.allowed_buckets.iter().any(|b| b == bucket) {
            return Err(Refusal::forbidden(
                "bucket-not-allowed",
                "this service does not hand out keys for that bucket",
            ));
        }
        Ok(config)
    }

    /// Checks a proof and has STS vouch for it. Returns the caller's ARN and access key id.
    async fn prove(
        &self,
        proof: &Proof,
        computer: &ComputerUuid,
    ) -> Result<(String, String), Refusal> {
        let checked = self.rules.check(proof, computer, SystemTime::now())?;
        {
            let mut used = self.used_proofs.lock().expect("proof cache lock");
            let now = Instant::now();
            used.retain(|_, expires| *expires > now);
            if used
                .insert(checked.signature.clone(), now + 2 * self.rules.max_age)
                .is_some()
            {
                return Err(ProofRefusal::Replayed.into());
            }
        }
        let mut request = hyper::Request::post(format!("{}/", self.sts_endpoint));
        for (name, value) in &proof.headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(proof.body.clone())))
            .map_err(|_| Refusal::from(ProofRefusal::Malformed))?;
        let (status, answer) = self.sts.send(request).await.map_err(|e| Refusal {
            status: StatusCode::BAD_GATEWAY,
            code: "sts-unreachable",
            message: e.to_string(),
        })?;
        let answer = String::from_utf8_lossy(&answer);
        match (status, caller_arn(&answer)) {
            (StatusCode::OK, Some(arn)) => Ok((arn, checked.access_key_id)),
            _ => Err(ProofRefusal::Rejected.into()),
        }
    }

    fn check_token(&self, token: &str) -> Result<(), Refusal> {
        use sha2::{Digest, Sha256};
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut matched = subtle::Choice::from(0);
        for known in &self.token_hashes {
            matched |= known.ct_eq(&digest);
        }
        match bool::from(matched) {
            true => Ok(()),
            false => Err(Refusal::forbidden(
                "bad-enrollment-token",
                "the enrollment token is not one this service accepts",
            )),
        }
    }

    async fn iam_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Refusal> {
        match tokio::time::timeout(IAM_QUEUE_TIMEOUT, self.iam_permits.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "busy",
                message: "too many requests waiting for IAM: retry later".into(),
            }),
        }
    }

    /// The IAM work of `apply`: user, tags, policy, stale keys out (all but `keep`), a new key.
    async fn issue(
        &self,
        config: &ArqConfig,
        request: &KeyRequest,
        existing: Option<&iam::UserState>,
        keep: Option<&str>,
    ) -> Result<KeyResponse, Refusal> {
        let policy = PolicyDocument::scoped_to(config, PolicyOptions::default())
            .map_err(|e| Refusal::bad_request("policy-too-large", e.to_string()))?;
        let wanted = WantedUser {
            uuid: &config.computer_uuid,
            policy: &policy,
            tags: iam::user_tags(config, &request.computer_name, &request.serial),
        };
        let provisioned = self
            .iam
            .provision(&wanted, existing, keep, true, &mut |_| {})
            .await?;
        let issued = provisioned.key.expect("provision was asked for a key");
        Ok(KeyResponse {
            access_key_id: issued.key.id.clone(),
            secret_access_key: issued.key.secret.expose().to_owned(),
            user_arn: provisioned.user_arn,
        })
    }

    /// Logs one line, counts the result, and turns it into the HTTP answer.
    fn finish(
        &self,
        endpoint: &'static str,
        requester: Requester,
        started: Instant,
        result: Result<impl IntoResponse, Refusal>,
    ) -> Response {
        let (status, code, response) = match result {
            Ok(body) => (StatusCode::OK, "ok", body.into_response()),
            Err(refusal) => {
                let body = axum::Json(ErrorBody {
                    error: refusal.code.to_owned(),
                    message: refusal.message,
                });
                (
                    refusal.status,
                    refusal.code,
                    (refusal.status, body).into_response(),
                )
            }
        };
        let line = serde_json::json!({
            "endpoint": endpoint,
            "computer_uuid": requester.computer_uuid,
            "caller": requester.caller,
            "status": status.as_u16(),
            "result": code,
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

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    // serde_json's messages name a position and a field, never the field's value.
    serde_json::from_slice(body).map_err(|e| Refusal::bad_request("bad-json", e.to_string()))
}

/// The caller ARN in an STS GetCallerIdentity answer.
fn caller_arn(xml: &str) -> Option<String> {
    if !xml.contains("<GetCallerIdentityResponse") {
        return None;
    }
    let start = xml.find("<Arn>")? + "<Arn>".len();
    let end = start + xml[start..].find("</Arn>")?;
    let arn = xml[start..end].trim();
    (arn.starts_with("arn:aws") && !arn.contains('<')).then(|| arn.to_owned())
}

fn hex_to_bytes(hex: &str) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .expect("checked when the config was loaded");
    }
    bytes
}
