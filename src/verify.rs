//! `verify`: run the S3 calls Arq makes, and the calls a locked-down key must not be able to make,
//! with one key, and report what S3 allowed and refused.
//!
//! Owns the list of probes, how an S3 answer is read (allowed, refused, not found), and the verdict.
//! It writes only uniquely named probe objects (`arq-lockdown-probe-<uuid>`) and deletes them
//! again; with `read_only` it writes nothing. It never prints object contents or secrets.

use aws_config::Region;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::BucketLocationConstraint;
use serde::Serialize;

use crate::arq_config::{ArqConfig, ComputerUuid};
use crate::aws;
use crate::exit_code::ExitCode;

/// Every Arq computer folder holds this object; the read probe asks for another computer's copy.
const COMPUTER_INFO: &str = "computerinfo";

#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Skip every call that writes (the probe objects), for keys on buckets one must not touch.
    pub read_only: bool,
    /// A computer whose data must be out of reach; else one found by a leaking root listing, else
    /// a random UUID.
    pub other_computer: Option<ComputerUuid>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot reach S3: {0}; check the network, AWS_ENDPOINT_URL and AWS_REGION")]
    Unreachable(String),
}

impl VerifyError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::Aws
    }
}

/// What a check is about, which decides what its failure means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    /// A call Arq makes: it must be allowed.
    ArqCall,
    /// Listing the root or another computer's folder: must be refused (names would leak).
    ListingIsolation,
    /// Reading, writing or deleting another computer's data: must be refused.
    DataIsolation,
}

/// How S3 answered one call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result", content = "code")]
pub enum Answer {
    Allowed,
    /// Refused by IAM (403), with S3's error code when there is one.
    Denied(Option<String>),
    /// Authorized, but the object or bucket is not there (404).
    NotFound(Option<String>),
    /// Any other failure, with S3's message.
    Failed(String),
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub call: String,
    pub kind: CheckKind,
    pub action: &'static str,
    pub resource: String,
    pub expected: &'static str,
    pub got: Answer,
    pub passed: bool,
    /// Why it failed and what to do, for failed checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Isolated,
    DataLeak,
    ArqBroken,
    ListingLeak,
}

impl Verdict {
    pub fn exit_code(self) -> ExitCode {
        match self {
            Self::Isolated => ExitCode::Success,
            Self::DataLeak => ExitCode::DataLeak,
            Self::ArqBroken => ExitCode::ArqBroken,
            Self::ListingLeak => ExitCode::ListingLeak,
        }
    }

    fn summary(self) -> &'static str {
        match self {
            Self::Isolated => "this key lets Arq work and reaches no other computer's data",
            Self::DataLeak => {
                "DATA LEAK: this key can read, write or delete other computers' backups"
            }
            Self::ArqBroken => {
                "Arq would fail with this key: a call it needs is refused (see above)"
            }
            Self::ListingLeak => {
                "LISTING LEAK: this key can list other computers' folder names (emulators that ignore IAM conditions, such as moto, always show this)"
            }
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub bucket: String,
    pub computer_uuid: String,
    pub access_key_id: String,
    pub other_computer_uuid: String,
    /// The name of the probe objects written (shown as `<probe>` in the table).
    pub probe_object_name: String,
    pub checks: Vec<Check>,
    /// Probe objects that could be written but not deleted again: remove them with the main keys.
    pub left_behind: Vec<String>,
    pub verdict: Verdict,
}

/// Runs every probe with `client`'s key against `config`'s bucket.
pub async fn verify(
    sdk_config: &aws_config::SdkConfig,
    access_key_id: String,
    config: &ArqConfig,
    options: &VerifyOptions,
) -> Result<Report, VerifyError> {
    let mut probe = Prober {
        client: aws::s3_client(sdk_config, None),
        bucket: config.bucket.as_str().to_owned(),
        probe_name: format!("arq-lockdown-probe-{}", uuid::Uuid::new_v4()),
        checks: Vec::new(),
        left_behind: Vec::new(),
    };
    let own = config.computer_uuid.as_str();

    probe.list_buckets().await?;
    if let Some(region) = probe.bucket_location().await? {
        probe.client = aws::s3_client(sdk_config, Some(region));
    }
    probe.bucket_versioning().await?;
    for folder in [format!("{own}/"), format!("glacier/{own}/")] {
        probe.list(CheckKind::ArqCall, &folder).await?;
        if !options.read_only {
            probe.object_round_trip(&folder).await?;
        }
    }

    let discovered = probe.list(CheckKind::ListingIsolation, "").await?;
    let other = options
        .other_computer
        .clone()
        .or_else(|| discovered.into_iter().find(|uuid| uuid.as_str() != own))
        .unwrap_or_else(|| {
            ComputerUuid::parse(&uuid::Uuid::new_v4().to_string().to_uppercase())
                .expect("a v4 UUID is canonical")
        });
    probe
        .list(CheckKind::ListingIsolation, &format!("{other}/"))
        .await?;
    probe.get_other(&format!("{other}/{COMPUTER_INFO}")).await?;
    if !options.read_only {
        for folder in [format!("{other}/"), format!("glacier/{other}/")] {
            probe.write_and_delete_other(&folder).await?;
        }
    }

    let checks = probe.checks;
    let failed = |kind| checks.iter().any(|c| c.kind == kind && !c.passed);
    let verdict = if failed(CheckKind::DataIsolation) {
        Verdict::DataLeak
    } else if failed(CheckKind::ArqCall) {
        Verdict::ArqBroken
    } else if failed(CheckKind::ListingIsolation) {
        Verdict::ListingLeak
    } else {
        Verdict::Isolated
    };
    Ok(Report {
        bucket: config.bucket.to_string(),
        computer_uuid: own.to_owned(),
        access_key_id,
        other_computer_uuid: other.to_string(),
        probe_object_name: probe.probe_name,
        checks,
        left_behind: probe.left_behind,
        verdict,
    })
}

/// Makes the calls and records one [`Check`] per call.
struct Prober {
    client: Client,
    bucket: String,
    probe_name: String,
    checks: Vec<Check>,
    left_behind: Vec<String>,
}

impl Prober {
    fn bucket_arn(&self) -> String {
        format!("arn:aws:s3:::{}", self.bucket)
    }

    fn object_arn(&self, key: &str) -> String {
        format!("arn:aws:s3:::{}/{key}", self.bucket)
    }

    /// Records a check; returns whether the call was allowed.
    fn record(
        &mut self,
        call: String,
        kind: CheckKind,
        action: &'static str,
        resource: String,
        got: Answer,
    ) -> bool {
        let allowed = matches!(got, Answer::Allowed | Answer::NotFound(_));
        let (expected, passed) = match kind {
            CheckKind::ArqCall => ("allowed", got == Answer::Allowed),
            _ => ("denied", matches!(got, Answer::Denied(_))),
        };
        let detail = (!passed).then(|| match (&got, kind) {
            (Answer::Denied(code), CheckKind::ArqCall) => format!(
                "{call}: {action} on {resource} was refused ({}); the key's policy must allow it",
                code.as_deref().unwrap_or("403")
            ),
            (Answer::NotFound(code), CheckKind::ArqCall) => format!(
                "{call}: {} for {resource}; is the bucket name exact (dot included) and in this account?",
                code.as_deref().unwrap_or("404")
            ),
            (Answer::Failed(message), CheckKind::ArqCall) => format!("{call}: {action} on {resource} failed: {message}"),
            (Answer::Failed(message), _) => {
                format!("{call}: could not tell whether {action} on {resource} is refused: {message}")
            }
            (_, _) => format!("{call}: {action} on {resource} is allowed; it must be refused"),
        });
        self.checks.push(Check {
            call,
            kind,
            action,
            resource,
            expected,
            got,
            passed,
            detail,
        });
        allowed
    }

    async fn list_buckets(&mut self) -> Result<(), VerifyError> {
        let result = self.client.list_buckets().send().await;
        let listed = result.as_ref().ok().map(|out| {
            out.buckets()
                .iter()
                .any(|b| b.name() == Some(self.bucket.as_str()))
        });
        let got = answer(result)?;
        self.record(
            "ListBuckets".into(),
            CheckKind::ArqCall,
            "s3:ListAllMyBuckets",
            "*".into(),
            got,
        );
        if listed == Some(false) {
            let check = self.checks.last_mut().expect("just recorded");
            check.passed = false;
            check.detail = Some(format!(
                "bucket {} is not among this account's buckets: is the name exact (dot included)?",
                self.bucket
            ));
        }
        Ok(())
    }

    /// Returns the bucket's region when it is not the client's own.
    async fn bucket_location(&mut self) -> Result<Option<Region>, VerifyError> {
        let result = self
            .client
            .get_bucket_location()
            .bucket(&self.bucket)
            .send()
            .await;
        let region = result
            .as_ref()
            .ok()
            .map(|out| match out.location_constraint() {
                None => "us-east-1".to_owned(),
                Some(BucketLocationConstraint::Eu) => "eu-west-1".to_owned(),
                Some(constraint) if constraint.as_str().is_empty() => "us-east-1".to_owned(),
                Some(constraint) => constraint.as_str().to_owned(),
            });
        let got = answer(result)?;
        self.record(
            "GetBucketLocation".into(),
            CheckKind::ArqCall,
            "s3:GetBucketLocation",
            self.bucket_arn(),
            got,
        );
        let current = self.client.config().region().map(|r| r.as_ref().to_owned());
        Ok(region
            .filter(|r| Some(r) != current.as_ref())
            .map(Region::new))
    }

    async fn bucket_versioning(&mut self) -> Result<(), VerifyError> {
        let got = answer(
            self.client
                .get_bucket_versioning()
                .bucket(&self.bucket)
                .send()
                .await,
        )?;
        self.record(
            "GetBucketVersioning".into(),
            CheckKind::ArqCall,
            "s3:GetBucketVersioning",
            self.bucket_arn(),
            got,
        );
        Ok(())
    }

    /// Classic ListObjects (v1) with a delimiter, as Arq lists. Returns the computer UUIDs among
    /// the listed folders (only a leaking root listing has any).
    async fn list(
        &mut self,
        kind: CheckKind,
        prefix: &str,
    ) -> Result<Vec<ComputerUuid>, VerifyError> {
        let result = self
            .client
            .list_objects()
            .bucket(&self.bucket)
            .prefix(prefix)
            .delimiter("/")
            .max_keys(500)
            .send()
            .await;
        let folders = result.as_ref().map_or_else(
            |_| Vec::new(),
            |out| {
                out.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix()?.strip_suffix('/'))
                    .filter_map(|name| ComputerUuid::parse(name).ok())
                    .collect()
            },
        );
        let got = answer(result)?;
        let call = format!("ListObjects prefix={prefix:?} delimiter=\"/\"");
        self.record(call, kind, "s3:ListBucket", self.bucket_arn(), got);
        Ok(folders)
    }

    /// Put, head, get and delete of a probe object in this computer's `folder`.
    async fn object_round_trip(&mut self, folder: &str) -> Result<(), VerifyError> {
        let key = format!("{folder}{}", self.probe_name);
        let arn = self.object_arn(&key);
        let put = self.put(&key).await?;
        let written = self.record(
            format!("PutObject {folder}<probe>"),
            CheckKind::ArqCall,
            "s3:PutObject",
            arn.clone(),
            put,
        );
        let head = answer(
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await,
        )?;
        self.record(
            format!("HeadObject {folder}<probe>"),
            CheckKind::ArqCall,
            "s3:GetObject",
            arn.clone(),
            head,
        );
        let get = self.get(&key).await?;
        self.record(
            format!("GetObject {folder}<probe>"),
            CheckKind::ArqCall,
            "s3:GetObject",
            arn.clone(),
            get,
        );
        let delete = self.delete(&key).await?;
        let deleted = self.record(
            format!("DeleteObject {folder}<probe>"),
            CheckKind::ArqCall,
            "s3:DeleteObject",
            arn,
            delete,
        );
        if written && !deleted {
            self.left_behind.push(key);
        }
        Ok(())
    }

    async fn get_other(&mut self, key: &str) -> Result<(), VerifyError> {
        let got = self.get(key).await?;
        self.record(
            format!("GetObject {key}"),
            CheckKind::DataIsolation,
            "s3:GetObject",
            self.object_arn(key),
            got,
        );
        Ok(())
    }

    /// Writes a probe object into another computer's `folder`, then deletes it: both must be refused.
    async fn write_and_delete_other(&mut self, folder: &str) -> Result<(), VerifyError> {
        let key = format!("{folder}{}", self.probe_name);
        let arn = self.object_arn(&key);
        let put = self.put(&key).await?;
        let written = self.record(
            format!("PutObject {folder}<probe>"),
            CheckKind::DataIsolation,
            "s3:PutObject",
            arn.clone(),
            put,
        );
        let delete = self.delete(&key).await?;
        let deleted = self.record(
            format!("DeleteObject {folder}<probe>"),
            CheckKind::DataIsolation,
            "s3:DeleteObject",
            arn,
            delete,
        );
        if written && !deleted {
            self.left_behind.push(key);
        }
        Ok(())
    }

    async fn put(&self, key: &str) -> Result<Answer, VerifyError> {
        let body = ByteStream::from_static(b"arq-lockdown verify probe; safe to delete\n");
        answer(
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(body)
                .send()
                .await,
        )
    }

    /// GetObject, reading and discarding the body so the whole call is exercised.
    async fn get(&self, key: &str) -> Result<Answer, VerifyError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => Ok(match output.body.collect().await {
                Ok(_) => Answer::Allowed,
                Err(e) => Answer::Failed(format!("reading the body: {e}")),
            }),
            Err(e) => answer::<(), _>(Err(e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<Answer, VerifyError> {
        answer(
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await,
        )
    }
}

/// Reads an S3 answer. Only a network-level failure is an error: it makes the whole run meaningless.
fn answer<T, E>(result: Result<T, SdkError<E, HttpResponse>>) -> Result<Answer, VerifyError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let error = match result {
        Ok(_) => return Ok(Answer::Allowed),
        Err(error) => error,
    };
    match &error {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => Err(VerifyError::Unreachable(
            DisplayErrorContext(&error).to_string(),
        )),
        // Authorization is judged by the HTTP status: a 2xx whose body the SDK cannot parse (moto's
        // GetBucketVersioning answer for a bucket that never had versioning) was still allowed.
        SdkError::ServiceError(service) if service.raw().status().is_success() => {
            Ok(Answer::Allowed)
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().map(str::to_owned);
            Ok(match (service.raw().status().as_u16(), code.as_deref()) {
                (403, _) | (_, Some("AccessDenied")) => Answer::Denied(code),
                (404, _) | (_, Some("NoSuchKey" | "NoSuchBucket")) => Answer::NotFound(code),
                _ => Answer::Failed(crate::one_line(&DisplayErrorContext(&error).to_string())),
            })
        }
        _ => Ok(Answer::Failed(crate::one_line(
            &DisplayErrorContext(&error).to_string(),
        ))),
    }
}

impl Report {
    /// The table for people: call, expected, got, verdict; then what failed and why.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "bucket {}  computer {}  key {}\nother computer probed: {}  probe object <probe>: {}\n\n",
            self.bucket,
            self.computer_uuid,
            self.access_key_id,
            self.other_computer_uuid,
            self.probe_object_name
        );
        let width = self
            .checks
            .iter()
            .map(|c| c.call.len())
            .max()
            .unwrap_or(4)
            .max(4);
        out += &format!(
            "{:width$}  {:8}  {:22}  VERDICT\n",
            "CALL", "EXPECTED", "GOT"
        );
        for check in &self.checks {
            let got = match &check.got {
                Answer::Allowed => "allowed".to_owned(),
                Answer::Denied(code) => format!("denied ({})", code.as_deref().unwrap_or("403")),
                Answer::NotFound(code) => format!("allowed ({})", code.as_deref().unwrap_or("404")),
                Answer::Failed(_) => "error".to_owned(),
            };
            let verdict = match (check.passed, check.kind) {
                (true, _) => "ok",
                (false, CheckKind::ArqCall) => "ARQ BROKEN",
                (false, CheckKind::ListingIsolation) => "LISTING LEAK",
                (false, CheckKind::DataIsolation) => "DATA LEAK",
            };
            out += &format!(
                "{:width$}  {:8}  {got:22}  {verdict}\n",
                check.call, check.expected
            );
        }
        let details: Vec<_> = self
            .checks
            .iter()
            .filter_map(|c| c.detail.as_deref())
            .collect();
        if !details.is_empty() {
            out += "\n";
            for detail in details {
                out += &format!("- {detail}\n");
            }
        }
        for key in &self.left_behind {
            out += &format!(
                "- probe object {key} could not be deleted: remove it with the main keys\n"
            );
        }
        out += &format!("\nverdict: {}\n", self.verdict.summary());
        out
    }
}
