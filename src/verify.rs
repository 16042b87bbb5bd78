//! `verify`: run the S3 calls Arq makes, in the shapes Arq makes them, and the calls a
//! locked-down key must not be able to make, with one key; report what S3 allowed and refused.
//!
//! Owns the list of probes, how an S3 answer is read (allowed, refused, not found), and the verdict.
//! The Arq calls follow Haystack's published S3 code (arqbackup/arq_restore, Arq 5 at d4a3d0e;
//! the README's policy table cites file and line for each): classic ListObjects with
//! `max-keys=500`, the bucket root listed with `delimiter=/` to find computers, `U/objects/00`
//! listed without a delimiter, GET with a Range, HEAD, single-request PUT, one DELETE per key.
//!
//! The probes run side by side, beside the first round trip (the bucket list and its region) in
//! the client's own region, and from round trip 2 in the bucket's when that differs (under other
//! probe names; the first run's answers set aside): every probe is independent,
//! but for one probe object's put → (head ‖ get) → delete chain and the other computer's probes,
//! which wait for the root listing that names it (then put → delete). That is 3 round trips on the
//! critical path when the bucket is in the client's region (4 when not), whatever the number of
//! probes.
//!
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

/// Arq lists at most this many keys a page (S3Lister.m).
const PAGE: i32 = 500;

#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Skip every call that writes (the probe objects), for keys on buckets one must not touch.
    pub read_only: bool,
    /// A computer whose data must be out of reach; else one the root listing names.
    pub other_computer: Option<ComputerUuid>,
    /// The key's policy was made with `--no-computer-listing`: the root listing must be refused.
    pub no_computer_listing: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Unreachable(#[from] aws::Unreachable),
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
    /// Listing more than the computers' folder names (object names, another computer's folder):
    /// must be refused.
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
    /// Not asked, and why: a refusal would prove nothing (see [`Prober::read_other`]).
    NotProbed(String),
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
    /// Why it failed and what to do, for failed (and unprobed) checks.
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
                "LISTING LEAK: this key can list more than the computers' folder names (its s3:ListBucket conditions are wrong)"
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

/// Runs every probe with `sdk_config`'s key against `config`'s bucket.
pub async fn verify(
    sdk_config: &aws_config::SdkConfig,
    access_key_id: String,
    config: &ArqConfig,
    options: &VerifyOptions,
) -> Result<Report, VerifyError> {
    let bucket = config.bucket.as_str();
    let own = config.computer_uuid.as_str();
    let probe_name = || format!("arq-lockdown-probe-{}", uuid::Uuid::new_v4());

    // Round trip 1: the buckets and where this one is, asked in the key's configured region —
    // and beside them every probe in that region, which is the bucket's almost always. When the
    // bucket lives elsewhere, its probes start as soon as its region is known (under other probe
    // names, so the two runs never touch each other's objects); the first run's answers are set
    // aside, but whatever it could not delete is still reported.
    let own_region = Prober::new(aws::s3_client(sdk_config, None), bucket, probe_name());
    let elsewhere = async {
        let (location, region) = own_region.bucket_location().await?;
        let probes = match region {
            None => None,
            Some(region) => {
                let regional = Prober::new(
                    aws::s3_client(sdk_config, Some(region)),
                    bucket,
                    probe_name(),
                );
                Some(regional.probe(own, options).await)
            }
        };
        Ok::<_, VerifyError>((location, probes))
    };
    let (buckets, located, in_own_region) = tokio::join!(
        own_region.list_buckets(),
        elsewhere,
        own_region.probe(own, options),
    );
    let (buckets, (location, elsewhere)) = (buckets?, located?);
    let probes = match elsewhere {
        None => in_own_region?,
        Some(probes) => {
            let mut probes = probes?;
            if let Ok(set_aside) = in_own_region {
                probes.left_behind.extend(set_aside.left_behind);
            }
            probes
        }
    };

    let mut checks = vec![buckets, location];
    checks.extend(probes.checks);
    let left_behind = probes.left_behind;
    let verdict = verdict(&checks);
    Ok(Report {
        bucket: bucket.to_owned(),
        computer_uuid: own.to_owned(),
        access_key_id,
        other_computer_uuid: probes.other.to_string(),
        probe_object_name: probes.probe_object_name,
        checks,
        left_behind,
        verdict,
    })
}

/// The other computer to probe: the one named, else one the root listing showed — only then is
/// its data known to exist, which the read probe needs — else a made-up one.
fn other_computer(
    options: &VerifyOptions,
    found: Vec<ComputerUuid>,
    own: &str,
) -> (ComputerUuid, bool) {
    let seen = found.into_iter().find(|uuid| uuid.as_str() != own);
    match (&options.other_computer, seen) {
        (Some(named), _) => (named.clone(), true),
        (None, Some(seen)) => (seen, true),
        (None, None) => (
            ComputerUuid::parse(&uuid::Uuid::new_v4().to_string().to_uppercase())
                .expect("a v4 UUID is canonical"),
            false,
        ),
    }
}

/// The most severe finding decides: another computer's data, then a broken Arq call, then a
/// listing leak.
fn verdict(checks: &[Check]) -> Verdict {
    let failed = |kind| checks.iter().any(|c| c.kind == kind && !c.passed);
    if failed(CheckKind::DataIsolation) {
        Verdict::DataLeak
    } else if failed(CheckKind::ArqCall) {
        Verdict::ArqBroken
    } else if failed(CheckKind::ListingIsolation) {
        Verdict::ListingLeak
    } else {
        Verdict::Isolated
    }
}

/// Checks from several calls, and the probe objects left behind by them.
type Checks = (Vec<Check>, Vec<String>);

/// What one run of every probe found (all but the bucket list and its location), the other
/// computer it was aimed at and the name of its probe objects.
struct Probes {
    checks: Vec<Check>,
    /// Probe objects written but not deleted again.
    left_behind: Vec<String>,
    other: ComputerUuid,
    probe_object_name: String,
}

/// Makes the calls; each returns its [`Check`].
struct Prober {
    client: Client,
    bucket: String,
    probe_name: String,
}

impl Prober {
    fn new(client: Client, bucket: &str, probe_name: String) -> Self {
        Self {
            client,
            bucket: bucket.to_owned(),
            probe_name,
        }
    }

    fn bucket_arn(&self) -> String {
        format!("arn:aws:s3:::{}", self.bucket)
    }

    fn object_arn(&self, key: &str) -> String {
        format!("arn:aws:s3:::{}/{key}", self.bucket)
    }

    async fn list_buckets(&self) -> Result<Check, VerifyError> {
        let result = self.client.list_buckets().send().await;
        let listed = result.as_ref().ok().map(|out| {
            out.buckets()
                .iter()
                .any(|b| b.name() == Some(self.bucket.as_str()))
        });
        let got = answer(result)?;
        let mut check = check(
            "ListBuckets".into(),
            CheckKind::ArqCall,
            "s3:ListAllMyBuckets",
            "*".into(),
            got,
        );
        if listed == Some(false) {
            check.passed = false;
            check.detail = Some(format!(
                "bucket {} is not among this account's buckets: is the name exact (dot included)?",
                self.bucket
            ));
        }
        Ok(check)
    }

    /// GetBucketLocation, and the bucket's region when S3 named one other than the client's own
    /// (`None` also when the call failed: the probes then run in the client's region, as before
    /// the location was asked).
    async fn bucket_location(&self) -> Result<(Check, Option<Region>), VerifyError> {
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
        let check = check(
            "GetBucketLocation".into(),
            CheckKind::ArqCall,
            "s3:GetBucketLocation",
            self.bucket_arn(),
            got,
        );
        let current = self.client.config().region().map(|r| r.as_ref().to_owned());
        let other_region = region.filter(|r| Some(r) != current.as_ref());
        Ok((check, other_region.map(Region::new)))
    }

    /// Every probe at once, in this client's region: the computer listings (the other
    /// computer's probes start as soon as the root listing names one), this computer's own
    /// folders, and the object names across all computers (only folder names may be listed).
    async fn probe(&self, own: &str, options: &VerifyOptions) -> Result<Probes, VerifyError> {
        let computers_and_other = async {
            let kind = match options.no_computer_listing {
                false => CheckKind::ArqCall,
                true => CheckKind::ListingIsolation,
            };
            let ((root, found), (glacier, _)) = tokio::try_join!(
                self.list(kind, "", Some("/")),
                self.list(kind, "glacier/", Some("/")),
            )?;
            let (other, known_to_exist) = other_computer(options, found, own);
            let other_checks = self
                .other_computer(&other, known_to_exist, options.read_only)
                .await?;
            Ok::<_, VerifyError>((vec![root, glacier], other, other_checks))
        };
        let all_names = self.list(CheckKind::ListingIsolation, "", None);
        let ((computer_checks, other, other_checks), own_checks, glacier_checks, (all_names, _)) =
            tokio::try_join!(
                computers_and_other,
                self.own_folder(own, options.read_only),
                self.own_glacier(own, options.read_only),
                all_names,
            )?;
        let mut checks = computer_checks;
        checks.extend(own_checks.0);
        checks.extend(glacier_checks.0);
        checks.push(all_names);
        checks.extend(other_checks.0);
        Ok(Probes {
            checks,
            left_behind: [own_checks.1, glacier_checks.1, other_checks.1].concat(),
            other,
            probe_object_name: self.probe_name.clone(),
        })
    }

    /// Classic ListObjects (v1) as Arq lists: `prefix` always sent, `max-keys=500`, with or
    /// without a delimiter. Returns the check and the computer UUIDs among the folders listed.
    async fn list(
        &self,
        kind: CheckKind,
        prefix: &str,
        delimiter: Option<&str>,
    ) -> Result<(Check, Vec<ComputerUuid>), VerifyError> {
        let (check, page) = self.list_page(kind, prefix, delimiter, None).await?;
        let found = page
            .map(|(folders, _)| {
                folders
                    .iter()
                    .filter_map(|f| f.strip_suffix('/')?.rsplit('/').next())
                    .filter_map(|name| ComputerUuid::parse(name).ok())
                    .collect()
            })
            .unwrap_or_default();
        Ok((check, found))
    }

    /// One page: the check, and when allowed the folders listed and the marker for the next
    /// page (the last key, as Arq takes it) if there is one.
    async fn list_page(
        &self,
        kind: CheckKind,
        prefix: &str,
        delimiter: Option<&str>,
        marker: Option<&str>,
    ) -> Result<(Check, Option<(Vec<String>, Option<String>)>), VerifyError> {
        let result = self
            .client
            .list_objects()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_owned))
            .set_marker(marker.map(str::to_owned))
            .max_keys(PAGE)
            .send()
            .await;
        let page = result.as_ref().ok().map(|out| {
            let folders = out
                .common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_owned))
                .collect();
            let next = out
                .is_truncated()
                .unwrap_or(false)
                .then(|| {
                    out.contents()
                        .last()
                        .and_then(|o| o.key().map(str::to_owned))
                })
                .flatten();
            (folders, next)
        });
        let got = answer(result)?;
        let mut call = format!("ListObjects prefix={prefix:?}");
        if let Some(delimiter) = delimiter {
            call += &format!(" delimiter={delimiter:?}");
        }
        if marker.is_some() {
            call += " marker=<last key>";
        }
        let check = check(call, kind, "s3:ListBucket", self.bucket_arn(), got);
        Ok((check, page))
    }

    /// This computer's folder as Arq uses it: listed (and its next page, when there is one), its
    /// objects listed by their first hex byte without a delimiter, and a probe object's round
    /// trip.
    async fn own_folder(&self, own: &str, read_only: bool) -> Result<Checks, VerifyError> {
        let folder = format!("{own}/");
        let listing = async {
            let (first, page) = self
                .list_page(CheckKind::ArqCall, &folder, Some("/"), None)
                .await?;
            let mut checks = vec![first];
            if let Some((_, Some(marker))) = page {
                let (next, _) = self
                    .list_page(CheckKind::ArqCall, &folder, Some("/"), Some(&marker))
                    .await?;
                checks.push(next);
            }
            Ok::<_, VerifyError>(checks)
        };
        let first_objects = format!("{own}/objects/00");
        let objects = self.list(CheckKind::ArqCall, &first_objects, None);
        let round_trip = self.round_trip(&folder, CheckKind::ArqCall, read_only);
        let (mut checks, (objects, _), (trip, left)) =
            tokio::try_join!(listing, objects, round_trip)?;
        checks.push(objects);
        checks.extend(trip);
        Ok((checks, left))
    }

    /// This computer's S3-Glacier folder: listed, and a probe object's round trip.
    async fn own_glacier(&self, own: &str, read_only: bool) -> Result<Checks, VerifyError> {
        let folder = format!("glacier/{own}/");
        let listing = self.list(CheckKind::ArqCall, &folder, Some("/"));
        let round_trip = self.round_trip(&folder, CheckKind::ArqCall, read_only);
        let ((listed, _), (trip, left)) = tokio::try_join!(listing, round_trip)?;
        Ok(([vec![listed], trip].concat(), left))
    }

    /// Another computer's folders listed, its data read, a probe object written and deleted in
    /// both its folders: all must be refused.
    async fn other_computer(
        &self,
        other: &ComputerUuid,
        known_to_exist: bool,
        read_only: bool,
    ) -> Result<Checks, VerifyError> {
        let folder = format!("{other}/");
        let glacier = format!("glacier/{other}/");
        let info = format!("{other}/{COMPUTER_INFO}");
        let kind = CheckKind::DataIsolation;
        let (listed, listed_glacier, read, written, written_glacier) = tokio::try_join!(
            self.list(CheckKind::ListingIsolation, &folder, Some("/")),
            self.list(CheckKind::ListingIsolation, &glacier, Some("/")),
            self.read_other(&info, known_to_exist),
            self.round_trip(&folder, kind, read_only),
            self.round_trip(&glacier, kind, read_only),
        )?;
        let mut checks = vec![listed.0, listed_glacier.0];
        checks.extend(read);
        checks.extend(written.0);
        checks.extend(written_glacier.0);
        Ok((checks, [written.1, written_glacier.1].concat()))
    }

    /// GET (with a Range, as Arq reads packs) and HEAD of another computer's object. Without a
    /// right to list its folder S3 answers 403 for a key that does not exist, so a refusal proves
    /// something only for an object known to exist: otherwise the read is reported as not probed.
    async fn read_other(&self, key: &str, known_to_exist: bool) -> Result<Vec<Check>, VerifyError> {
        let arn = self.object_arn(key);
        if !known_to_exist {
            let reason = "no other computer has data in this bucket (or the root listing is refused): a refused read of an object that may not exist proves nothing";
            return Ok(vec![check(
                format!("GetObject {key}"),
                CheckKind::DataIsolation,
                "s3:GetObject",
                arn,
                Answer::NotProbed(reason.to_owned()),
            )]);
        }
        let (get, head) = tokio::try_join!(self.get(key, Some("bytes=0-9")), self.head(key))?;
        let kind = CheckKind::DataIsolation;
        Ok(vec![
            check(
                format!("GetObject {key} range=0-9"),
                kind,
                "s3:GetObject",
                arn.clone(),
                get,
            ),
            check(format!("HeadObject {key}"), kind, "s3:GetObject", arn, head),
        ])
    }

    /// Put, then head and get (with a Range) and delete of a probe object in `folder` — the one
    /// chain of calls that must wait for each other. For another computer's folder (`kind` data
    /// isolation) only the put and the delete, which must both be refused.
    async fn round_trip(
        &self,
        folder: &str,
        kind: CheckKind,
        read_only: bool,
    ) -> Result<Checks, VerifyError> {
        if read_only {
            return Ok((Vec::new(), Vec::new()));
        }
        let key = format!("{folder}{}", self.probe_name);
        let arn = self.object_arn(&key);
        let shown = format!("{folder}<probe>");
        let put = self.put(&key).await?;
        let written = matches!(put, Answer::Allowed);
        let mut checks = vec![check(
            format!("PutObject {shown}"),
            kind,
            "s3:PutObject",
            arn.clone(),
            put,
        )];
        if kind == CheckKind::ArqCall {
            // Both only read the probe: side by side.
            let (head, get) = tokio::try_join!(self.head(&key), self.get(&key, Some("bytes=0-9")))?;
            checks.push(check(
                format!("HeadObject {shown}"),
                kind,
                "s3:GetObject",
                arn.clone(),
                head,
            ));
            checks.push(check(
                format!("GetObject {shown} range=0-9"),
                kind,
                "s3:GetObject",
                arn.clone(),
                get,
            ));
        }
        let delete = self.delete(&key).await?;
        let deleted = matches!(delete, Answer::Allowed | Answer::NotFound(_));
        checks.push(check(
            format!("DeleteObject {shown}"),
            kind,
            "s3:DeleteObject",
            arn,
            delete,
        ));
        let left = match written && !deleted {
            true => vec![key],
            false => Vec::new(),
        };
        Ok((checks, left))
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

    async fn head(&self, key: &str) -> Result<Answer, VerifyError> {
        answer(
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await,
        )
    }

    /// GetObject, reading and discarding the body so the whole call is exercised.
    async fn get(&self, key: &str, range: Option<&str>) -> Result<Answer, VerifyError> {
        let sent = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_range(range.map(str::to_owned))
            .send()
            .await;
        match sent {
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

/// A check of one call: what was expected of it, whether it held, and if not, why and what to do.
fn check(
    call: String,
    kind: CheckKind,
    action: &'static str,
    resource: String,
    got: Answer,
) -> Check {
    let (expected, passed) = match (&got, kind) {
        (Answer::NotProbed(_), _) => ("denied", true),
        (_, CheckKind::ArqCall) => ("allowed", got == Answer::Allowed),
        (_, _) => ("denied", matches!(got, Answer::Denied(_))),
    };
    let detail = match (&got, kind) {
        (Answer::NotProbed(reason), _) => Some(format!("{call}: not probed: {reason}")),
        _ if passed => None,
        (Answer::Denied(code), CheckKind::ArqCall) => Some(format!(
            "{call}: {action} on {resource} was refused ({}); the key's policy must allow it",
            code.as_deref().unwrap_or("403")
        )),
        (Answer::NotFound(code), CheckKind::ArqCall) => Some(format!(
            "{call}: {} for {resource}; is the bucket name exact (dot included) and in this account?",
            code.as_deref().unwrap_or("404")
        )),
        (Answer::Failed(message), CheckKind::ArqCall) => {
            Some(format!("{call}: {action} on {resource} failed: {message}"))
        }
        (Answer::Failed(message), _) => Some(format!(
            "{call}: could not tell whether {action} on {resource} is refused: {message}"
        )),
        (_, _) => Some(format!(
            "{call}: {action} on {resource} is allowed; it must be refused"
        )),
    };
    Check {
        call,
        kind,
        action,
        resource,
        expected,
        got,
        passed,
        detail,
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
    if let Some(unreachable) = aws::unreachable("S3", &error) {
        return Err(VerifyError::Unreachable(unreachable));
    }
    match &error {
        // Authorization is judged by the HTTP status: a 2xx whose body the SDK cannot parse was
        // still allowed.
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
    /// The first failed check's detail, and how many more failed: for a one-line error.
    pub fn failures_in_brief(&self) -> String {
        let failed: Vec<&str> = self
            .checks
            .iter()
            .filter_map(|c| c.detail.as_deref())
            .collect();
        match failed.as_slice() {
            [] => "no detail".to_owned(),
            [one] => (*one).to_owned(),
            [first, rest @ ..] => format!("{first}; and {} more", rest.len()),
        }
    }

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
                Answer::NotProbed(_) => "-".to_owned(),
            };
            let verdict = match (&check.got, check.passed, check.kind) {
                (Answer::NotProbed(_), _, _) => "NOT PROBED",
                (_, true, _) => "ok",
                (_, false, CheckKind::ArqCall) => "ARQ BROKEN",
                (_, false, CheckKind::ListingIsolation) => "LISTING LEAK",
                (_, false, CheckKind::DataIsolation) => "DATA LEAK",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn uuid(text: &str) -> ComputerUuid {
        ComputerUuid::parse(text).unwrap()
    }

    #[test]
    fn another_computers_data_is_read_only_when_it_is_known_to_exist() {
        let own = "32D9D7A2-3B3E-4BE7-B85B-0605AF24F570";
        let other = uuid("7A1E5C3B-9D2F-4E8A-B6C4-1F3D5E7A9B2C");
        let options = VerifyOptions::default();
        assert_eq!(
            other_computer(&options, vec![uuid(own), other.clone()], own),
            (other.clone(), true),
            "one the root listing named"
        );
        let (made_up, known) = other_computer(&options, vec![uuid(own)], own);
        assert!(
            !known && made_up.as_str() != own,
            "nobody else: a made-up computer"
        );
        let named = VerifyOptions {
            other_computer: Some(other.clone()),
            ..VerifyOptions::default()
        };
        assert_eq!(other_computer(&named, Vec::new(), own), (other, true));
    }

    #[test]
    fn an_unprobed_read_is_its_own_line_and_no_verdict() {
        let unprobed = check(
            "GetObject O/computerinfo".into(),
            CheckKind::DataIsolation,
            "s3:GetObject",
            "arn:aws:s3:::b/O/computerinfo".into(),
            Answer::NotProbed("nobody else".into()),
        );
        assert!(unprobed.passed);
        assert_eq!(verdict(std::slice::from_ref(&unprobed)), Verdict::Isolated);
        let report = Report {
            bucket: "b".into(),
            computer_uuid: "U".into(),
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            other_computer_uuid: "O".into(),
            probe_object_name: "arq-lockdown-probe-x".into(),
            checks: vec![unprobed],
            left_behind: Vec::new(),
            verdict: Verdict::Isolated,
        };
        let text = report.to_text();
        assert!(
            text.contains("NOT PROBED") && text.contains("not probed: nobody else"),
            "{text}"
        );
    }

    #[test]
    fn the_most_severe_finding_decides_the_verdict() {
        let failing = |kind| {
            check(
                "c".into(),
                kind,
                "a",
                "r".into(),
                match kind {
                    CheckKind::ArqCall => Answer::Denied(None),
                    _ => Answer::Allowed,
                },
            )
        };
        let data = failing(CheckKind::DataIsolation);
        let arq = failing(CheckKind::ArqCall);
        let listing = failing(CheckKind::ListingIsolation);
        assert_eq!(
            verdict(&[listing.clone(), arq.clone(), data]),
            Verdict::DataLeak
        );
        assert_eq!(verdict(&[listing.clone(), arq]), Verdict::ArqBroken);
        assert_eq!(verdict(&[listing]), Verdict::ListingLeak);
        assert_eq!(verdict(&[]), Verdict::Isolated);
    }
}
