//! What `audit` reads from AWS, in calls that do not grow with the fleet wherever AWS allows it:
//! - S3: the bucket's top-level `<UUID>/` and `glacier/<UUID>/` folders (ListObjectsV2 with a
//!   delimiter, paginated), then each computer's `computerinfo`, concurrently and bounded;
//! - IAM: every scoped user with its tags and policies (GetAccountAuthorizationDetails, paginated),
//!   every key's state and last use (the credential report), and the last use of each main key;
//!   per user only where the report cannot tell (two active keys: which is which; a user newer
//!   than the report).
//!
//! Every IAM read of a scoped user goes through [`crate::iam`]. It writes nothing but the one
//! thing `--fix-policies` asks for ([`put_policy`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_iam::types::ReportStateType;
use aws_sdk_s3::config::http::HttpResponse;
use jiff::Timestamp;

use super::AuditError;
use super::decide::{Info, KeyFacts, LastUse, Lookup, UserFacts};
use crate::arq_config::ComputerUuid;
use crate::aws;
use crate::iam::{self, CallError, IamError};
use crate::iam_names;
use crate::policy::PolicyDocument;

/// computerinfo reads at once.
pub const CONCURRENCY: usize = 32;

/// ListAccessKeys calls at once with `--inventory` (IAM throttles each account's calls; a few
/// at a time keep well within it).
pub const KEY_ID_CONCURRENCY: usize = 8;

/// A computerinfo is a small plist; only this much of one is read.
const MAX_COMPUTERINFO_BYTES: u64 = 64 * 1024;

/// The credential report is polled this often while IAM makes it, at most this many times.
const REPORT_POLL: Duration = Duration::from_millis(500);
const REPORT_POLLS: u32 = 120;

/// Where a computer has data in the bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Presence {
    /// `<UUID>/` holds objects (and so may hold `computerinfo`).
    pub root: bool,
    /// `glacier/<UUID>/` holds objects.
    pub glacier: bool,
}

fn s3_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    action: &'static str,
    bucket: &str,
    error: SdkError<E, HttpResponse>,
) -> AuditError {
    if let Some(unreachable) = aws::unreachable("S3", &error) {
        return unreachable.into();
    }
    let status = error.raw_response().map(|r| r.status().as_u16());
    match (error.code(), status) {
        (Some("NoSuchBucket"), _) | (None, Some(404)) => AuditError::NoSuchBucket {
            bucket: bucket.to_owned(),
        },
        (Some("AccessDenied"), _) | (None, Some(403)) => AuditError::S3Refused {
            action,
            bucket: bucket.to_owned(),
        },
        _ => AuditError::S3Failed {
            action,
            message: crate::one_line(&DisplayErrorContext(&error).to_string()),
        },
    }
}

/// The computer UUIDs with data in the bucket: the top-level folders and those under `glacier/`,
/// both listings at once. Folders that are not UUIDs are left out.
pub async fn computers(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<BTreeMap<ComputerUuid, Presence>, AuditError> {
    let (root, glacier) =
        tokio::try_join!(folders(s3, bucket, ""), folders(s3, bucket, "glacier/"))?;
    let mut found: BTreeMap<ComputerUuid, Presence> = BTreeMap::new();
    for uuid in root {
        found.entry(uuid).or_default().root = true;
    }
    for uuid in glacier {
        found.entry(uuid).or_default().glacier = true;
    }
    Ok(found)
}

/// The UUID-named folders right under `prefix`.
async fn folders(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<ComputerUuid>, AuditError> {
    let mut found = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .delimiter("/")
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| s3_error("s3:ListBucket", bucket, e))?;
        for common in page.common_prefixes() {
            let name = common
                .prefix()
                .unwrap_or_default()
                .strip_prefix(prefix)
                .and_then(|p| p.strip_suffix('/'));
            if let Some(uuid) = name.and_then(|n| ComputerUuid::parse(n).ok()) {
                found.push(uuid);
            }
        }
        match (page.is_truncated, page.next_continuation_token) {
            (Some(true), Some(next)) => token = Some(next),
            _ => return Ok(found),
        }
    }
}

/// Reads every `<UUID>/computerinfo` in `uuids`, `CONCURRENCY` at a time; `read_one` is called
/// after each (for progress). A computerinfo that is missing, junk or refused is an [`Info`], not
/// an error; only an unreachable S3 stops the run.
pub async fn computerinfo(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    uuids: Vec<ComputerUuid>,
    read_one: Arc<dyn Fn() + Send + Sync>,
) -> Result<HashMap<ComputerUuid, Info>, AuditError> {
    let (s3, bucket) = (s3.clone(), bucket.to_owned());
    let read = move |uuid: ComputerUuid| {
        let (s3, bucket, read_one) = (s3.clone(), bucket.clone(), read_one.clone());
        async move {
            let info = read_computerinfo(&s3, &bucket, &uuid).await?;
            read_one();
            Ok((uuid, info))
        }
    };
    let failed = |message| AuditError::S3Failed {
        action: "s3:GetObject",
        message,
    };
    let infos = bounded(uuids, CONCURRENCY, read, failed).await?;
    Ok(infos.into_iter().collect())
}

/// `work` on each of `items`, `concurrency` at a time, the results in any order; the first error
/// stops the run (`failed` names a task that died).
async fn bounded<T, R, F, Fut>(
    items: Vec<T>,
    concurrency: usize,
    work: F,
    failed: fn(String) -> AuditError,
) -> Result<Vec<R>, AuditError>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<R, AuditError>> + Send + 'static,
{
    let workers_wanted = concurrency.min(items.len());
    let queue = Arc::new(std::sync::Mutex::new(items.into_iter()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..workers_wanted {
        let (queue, work) = (queue.clone(), work.clone());
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                let Some(item) = next else {
                    return Ok::<_, AuditError>(done);
                };
                done.push(work(item).await?);
            }
        });
    }
    let mut results = Vec::new();
    while let Some(result) = workers.join_next().await {
        results.extend(result.map_err(|e| failed(e.to_string()))??);
    }
    Ok(results)
}

async fn read_computerinfo(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    uuid: &ComputerUuid,
) -> Result<Info, AuditError> {
    let answer = s3
        .get_object()
        .bucket(bucket)
        .key(format!("{uuid}/computerinfo"))
        .range(format!("bytes=0-{}", MAX_COMPUTERINFO_BYTES - 1))
        .send()
        .await;
    let object = match answer {
        Ok(object) => object,
        Err(error) => {
            if let Some(unreachable) = aws::unreachable("S3", &error) {
                return Err(unreachable.into());
            }
            let status = error.raw_response().map(|r| r.status().as_u16());
            return Ok(match (error.code(), status) {
                (Some("NoSuchKey"), _) | (_, Some(404)) => Info::Missing,
                (Some("AccessDenied"), _) | (_, Some(403)) => Info::Refused,
                // An empty object cannot satisfy a range (416), and anything else S3 will not
                // hand over is as good as junk here.
                _ => Info::Malformed,
            });
        }
    };
    let Ok(bytes) = object.body.collect().await else {
        return Ok(Info::Malformed);
    };
    Ok(parse_computerinfo(&bytes.into_bytes()))
}

/// `computerName` and `userName` from a computerinfo plist (XML or binary); text that is not
/// printable is dropped, and each is cut to 256 characters: a Mac writes its own computerinfo.
pub fn parse_computerinfo(bytes: &[u8]) -> Info {
    let Ok(plist::Value::Dictionary(dict)) = plist::Value::from_reader(std::io::Cursor::new(bytes))
    else {
        return Info::Malformed;
    };
    let text = |key: &str| {
        dict.get(key)
            .and_then(plist::Value::as_string)
            .map(|s| {
                s.chars()
                    .filter(|c| !c.is_control())
                    .take(256)
                    .collect::<String>()
            })
            .filter(|s| !s.trim().is_empty())
    };
    let (computer_name, user_name) = (text("computerName"), text("userName"));
    if computer_name.is_none() && user_name.is_none() {
        return Info::Malformed;
    }
    Info::Read {
        computer_name,
        user_name,
    }
}

fn iam_error(error: IamError) -> AuditError {
    match error {
        IamError::Refused { action } => AuditError::Refused { action },
        other => AuditError::Iam(other),
    }
}

fn iam_fail<E: ProvideErrorMetadata + std::error::Error + 'static>(
    action: &'static str,
    error: SdkError<E, aws_sdk_iam::config::http::HttpResponse>,
) -> AuditError {
    call_failed(action, iam::classify(action, error))
}

/// An IAM call's failure, for audit: nothing it asks should be missing or exist already.
fn call_failed(action: &'static str, error: CallError) -> AuditError {
    match error {
        CallError::Error(e) => iam_error(e),
        CallError::NoSuchEntity | CallError::AlreadyExists => AuditError::Iam(IamError::Failed {
            action,
            message: "an unexpected answer".into(),
        }),
    }
}

/// Every user under `/arq-lockdown/` with its tags, inline policies, attached policies and
/// groups, as [`iam::scoped_user_details`] reads them. Keys are filled in later.
pub async fn scoped_users(iam: &aws_sdk_iam::Client) -> Result<Vec<UserFacts>, AuditError> {
    let details = iam::scoped_user_details(iam)
        .await
        .map_err(|e| call_failed("iam:GetAccountAuthorizationDetails", e))?;
    Ok(details.iter().map(user_facts).collect())
}

/// What audit judges of a user IAM detailed.
fn user_facts(user: &aws_sdk_iam::types::UserDetail) -> UserFacts {
    UserFacts {
        name: user.user_name().unwrap_or_default().to_owned(),
        arn: user.arn().unwrap_or_default().to_owned(),
        created: user.create_date().and_then(iam::timestamp),
        tags: iam::tag_map(user.tags()),
        inline_policies: user
            .user_policy_list()
            .iter()
            .map(|p| {
                let document = p.policy_document().and_then(iam::decode_policy);
                (p.policy_name().unwrap_or_default().to_owned(), document)
            })
            .collect(),
        attached_policies: user
            .attached_managed_policies()
            .iter()
            .map(|p| p.policy_arn().unwrap_or_default().to_owned())
            .collect(),
        groups: user.group_list().to_vec(),
        keys: Vec::new(),
    }
}

/// IAM's own time: the `Date` of its latest answer. Key use is recorded on IAM's clock, so the
/// quiet period is measured on it too — an admin's laptop with a skewed clock judges the same.
#[derive(Clone, Debug, Default)]
pub struct IamClock(Arc<std::sync::Mutex<Option<Timestamp>>>);

impl IamClock {
    /// An IAM client for `sdk_config` whose answers set this clock.
    pub fn client(&self, sdk_config: &aws_config::SdkConfig) -> aws_sdk_iam::Client {
        let config = aws::iam_client(sdk_config)
            .config()
            .to_builder()
            .interceptor(self.clone())
            .build();
        aws_sdk_iam::Client::from_conf(config)
    }

    /// The time of IAM's latest answer, if one had a `Date`.
    pub fn now(&self) -> Option<Timestamp> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl aws_sdk_iam::config::Intercept for IamClock {
    fn name(&self) -> &'static str {
        "IamClock"
    }

    fn read_after_transmit(
        &self,
        context: &aws_sdk_iam::config::interceptors::BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &aws_sdk_iam::config::RuntimeComponents,
        _cfg: &mut aws_sdk_iam::config::ConfigBag,
    ) -> Result<(), aws_sdk_iam::error::BoxError> {
        static HTTP_DATE: jiff::fmt::rfc2822::DateTimeParser =
            jiff::fmt::rfc2822::DateTimeParser::new();
        let date = context.response().headers().get("date");
        if let Some(at) = date.and_then(|d| HTTP_DATE.parse_timestamp(d).ok()) {
            let mut latest = self.0.lock().unwrap_or_else(|e| e.into_inner());
            *latest = Some(latest.map_or(at, |seen| seen.max(at)));
        }
        Ok(())
    }
}

/// One user's row of the credential report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRow {
    pub created: Option<Timestamp>,
    pub keys: Vec<KeyFacts>,
}

/// The credential report: generated (or the recent one reused, as IAM does for four hours), then
/// read. Returns the rows by user ARN and when it was generated.
pub async fn credential_report(
    iam: &aws_sdk_iam::Client,
) -> Result<(HashMap<String, ReportRow>, Option<Timestamp>), AuditError> {
    for poll in 0..REPORT_POLLS {
        let generated = iam
            .generate_credential_report()
            .send()
            .await
            .map_err(|e| iam_fail("iam:GenerateCredentialReport", e))?;
        if poll > 0 && generated.state() != Some(&ReportStateType::Complete) {
            tokio::time::sleep(REPORT_POLL).await;
            continue;
        }
        match iam.get_credential_report().send().await {
            Ok(report) => {
                let content = report
                    .content()
                    .map(|b| b.as_ref().to_vec())
                    .unwrap_or_default();
                let generated_at = report.generated_time().and_then(iam::timestamp);
                return Ok((parse_report(&content), generated_at));
            }
            // Not made yet (or expired): ask again shortly.
            Err(e)
                if matches!(
                    e.code(),
                    Some("ReportInProgress" | "ReportNotPresent" | "ReportExpired")
                ) =>
            {
                tokio::time::sleep(REPORT_POLL).await;
            }
            Err(e) => return Err(iam_fail("iam:GetCredentialReport", e)),
        }
    }
    Err(AuditError::Iam(IamError::Failed {
        action: "iam:GetCredentialReport",
        message: "IAM did not finish the credential report within a minute; run again".into(),
    }))
}

/// The rows of scoped users (ARNs under `/arq-lockdown/`) in a credential report's CSV.
pub fn parse_report(csv_text: &[u8]) -> HashMap<String, ReportRow> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(csv_text);
    let Ok(header) = reader.headers().cloned() else {
        return HashMap::new();
    };
    let column = |name: &str| header.iter().position(|h| h == name);
    let (Some(arn), created) = (column("arn"), column("user_creation_time")) else {
        return HashMap::new();
    };
    let slot = |n: u8| {
        [
            "active",
            "last_rotated",
            "last_used_date",
            "last_used_service",
            "last_used_region",
        ]
        .map(|field| column(&format!("access_key_{n}_{field}")))
    };
    let slots = [slot(1), slot(2)];
    let date = |text: Option<&str>| text.and_then(|t| t.parse::<Timestamp>().ok());
    let known = |text: Option<&str>| {
        text.filter(|t| !matches!(*t, "N/A" | "not_supported" | "no_information" | ""))
            .map(str::to_owned)
    };
    let mut rows = HashMap::new();
    for record in reader.records().flatten() {
        let Some(user_arn) = record.get(arn) else {
            continue;
        };
        if !iam_names::is_scoped_user_arn(user_arn) {
            continue;
        }
        let field = |i: Option<usize>| i.and_then(|i| record.get(i));
        let mut keys = Vec::new();
        for [active, rotated, used, service, region] in slots {
            // A slot holds a key when it has a creation ("last rotated") date.
            let Some(created) = date(field(rotated)) else {
                continue;
            };
            keys.push(KeyFacts {
                id: None,
                active: field(active) == Some("true"),
                created: Some(created),
                last_used: date(field(used)).map(|at| LastUse {
                    at,
                    service: known(field(service)),
                    region: known(field(region)),
                }),
            });
        }
        rows.insert(
            user_arn.to_owned(),
            ReportRow {
                created: date(field(created)),
                keys,
            },
        );
    }
    rows
}

/// A user's keys asked of IAM one by one (ids included): ListAccessKeys, then each key's last use.
pub async fn keys_of(iam: &aws_sdk_iam::Client, user: &str) -> Result<Vec<KeyFacts>, AuditError> {
    let mut keys = list_keys(iam, user).await?;
    for key in &mut keys {
        let id = key.id.as_deref().unwrap_or_default();
        key.last_used = match last_use(iam, id).await? {
            Lookup::Used { last, .. } => Some(last),
            _ => None,
        };
    }
    Ok(keys)
}

/// When a key was last used, and by whom (GetAccessKeyLastUsed).
pub async fn last_use(iam: &aws_sdk_iam::Client, key_id: &str) -> Result<Lookup, AuditError> {
    const ACTION: &str = "iam:GetAccessKeyLastUsed";
    let answer = match iam
        .get_access_key_last_used()
        .access_key_id(key_id)
        .send()
        .await
    {
        Ok(answer) => answer,
        Err(e) => {
            return match iam::classify(ACTION, e) {
                CallError::NoSuchEntity => Ok(Lookup::NotFound),
                CallError::Error(IamError::Refused { .. }) => Ok(Lookup::Refused),
                CallError::Error(e) => Err(AuditError::Iam(e)),
                CallError::AlreadyExists => Ok(Lookup::NotFound),
            };
        }
    };
    let owner = answer.user_name().unwrap_or_default().to_owned();
    let used = answer.access_key_last_used();
    let known = |text: &str| (!matches!(text, "N/A" | "")).then(|| text.to_owned());
    Ok(
        match used
            .and_then(|u| u.last_used_date())
            .and_then(iam::timestamp)
        {
            Some(at) => Lookup::Used {
                owner,
                last: LastUse {
                    at,
                    service: used.and_then(|u| known(u.service_name())),
                    region: used.and_then(|u| known(u.region())),
                },
            },
            None => Lookup::NeverUsed { owner },
        },
    )
}

/// Fills in each user's keys: from the report, or asked of IAM where the report cannot tell —
/// the user is not in it (newer than the report) or was made again since, or has two active keys
/// (the report has no key ids, and the action must name the key to delete).
pub async fn fill_keys(
    iam: &aws_sdk_iam::Client,
    users: &mut [UserFacts],
    report: &HashMap<String, ReportRow>,
) -> Result<(), AuditError> {
    for user in users.iter_mut() {
        let row = report.get(&user.arn).filter(|row| {
            row.created.map(|t| t.as_second()) == user.created.map(|t| t.as_second())
        });
        match row {
            Some(row) if row.keys.iter().filter(|k| k.active).count() < 2 => {
                user.keys = row.keys.clone();
            }
            _ => {
                user.keys = keys_of(iam, &user.name).await?;
            }
        }
    }
    Ok(())
}

/// With `--inventory`: the ids of each user's keys, which the credential report does not have —
/// one ListAccessKeys per user with a key, [`KEY_ID_CONCURRENCY`] at a time. A key the report has
/// (made in the same second) keeps the report's last use; one it has not is asked for.
pub async fn key_ids(iam: &aws_sdk_iam::Client, users: &mut [UserFacts]) -> Result<(), AuditError> {
    let wanted: Vec<(usize, String)> = users
        .iter()
        .enumerate()
        .filter(|(_, user)| user.keys.iter().any(|k| k.id.is_none()))
        .map(|(i, user)| (i, user.name.clone()))
        .collect();
    let client = iam.clone();
    let list = move |(i, name): (usize, String)| {
        let iam = client.clone();
        async move { Ok((i, list_keys(&iam, &name).await?)) }
    };
    let failed = |message| {
        AuditError::Iam(IamError::Failed {
            action: "iam:ListAccessKeys",
            message,
        })
    };
    for (i, listed) in bounded(wanted, KEY_ID_CONCURRENCY, list, failed).await? {
        let user = &mut users[i];
        let mut keys = Vec::new();
        for mut key in listed {
            let second = key.created.map(|t| t.as_second());
            let reported = user
                .keys
                .iter()
                .find(|k| k.id.is_none() && k.created.map(|t| t.as_second()) == second);
            key.last_used = match reported {
                Some(reported) => reported.last_used.clone(),
                None => match last_use(iam, key.id.as_deref().unwrap_or_default()).await? {
                    Lookup::Used { last, .. } => Some(last),
                    _ => None,
                },
            };
            keys.push(key);
        }
        user.keys = keys;
    }
    Ok(())
}

/// A user's keys as ListAccessKeys has them: ids, state, creation (no last use).
async fn list_keys(iam: &aws_sdk_iam::Client, user: &str) -> Result<Vec<KeyFacts>, AuditError> {
    let listed = iam::list_keys(iam, user)
        .await
        .map_err(|e| call_failed("iam:ListAccessKeys", e))?;
    Ok(listed
        .into_iter()
        .map(|key| KeyFacts {
            id: Some(key.id),
            active: key.active,
            created: key.created,
            last_used: None,
        })
        .collect())
}

/// The main keys' last use, all at once.
pub async fn main_keys(
    iam: &aws_sdk_iam::Client,
    ids: &BTreeSet<String>,
) -> Result<BTreeMap<String, Lookup>, AuditError> {
    let mut lookups = tokio::task::JoinSet::new();
    for id in ids {
        let (iam, id) = (iam.clone(), id.clone());
        lookups.spawn(async move {
            let lookup = last_use(&iam, &id).await;
            (id, lookup)
        });
    }
    let mut found = BTreeMap::new();
    while let Some(result) = lookups.join_next().await {
        let (id, lookup) = result.map_err(|e| {
            AuditError::Iam(IamError::Failed {
                action: "iam:GetAccessKeyLastUsed",
                message: e.to_string(),
            })
        })?;
        found.insert(id, lookup?);
    }
    Ok(found)
}

/// `--fix-policies`: writes `document` as the user's inline policy `arq-lockdown`.
pub async fn put_policy(
    iam: &aws_sdk_iam::Client,
    user: &str,
    document: &PolicyDocument,
) -> Result<(), AuditError> {
    iam::put_policy(iam, user, document)
        .await
        .map_err(|e| call_failed("iam:PutUserPolicy", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computerinfo_gives_names_and_junk_gives_none() {
        let plist = |entries: &[(&str, &str)]| {
            let mut dict = plist::Dictionary::new();
            for (k, v) in entries {
                dict.insert((*k).into(), (*v).into());
            }
            let mut bytes = Vec::new();
            plist::Value::Dictionary(dict)
                .to_writer_xml(&mut bytes)
                .unwrap();
            bytes
        };
        let cases: Vec<(&str, Vec<u8>, Info)> = vec![
            (
                "both",
                plist(&[("computerName", "Bob's Mac"), ("userName", "bob")]),
                Info::Read {
                    computer_name: Some("Bob's Mac".into()),
                    user_name: Some("bob".into()),
                },
            ),
            (
                "terminal escapes dropped",
                plist(&[("computerName", "Mac\u{1b}[2J\u{7}")]),
                Info::Read {
                    computer_name: Some("Mac[2J".into()),
                    user_name: None,
                },
            ),
            ("no names", plist(&[("other", "x")]), Info::Malformed),
            ("not a plist", b"\x00\x01 junk".to_vec(), Info::Malformed),
            ("empty", Vec::new(), Info::Malformed),
            (
                "an array",
                b"<?xml version=\"1.0\"?><plist version=\"1.0\"><array/></plist>".to_vec(),
                Info::Malformed,
            ),
        ];
        for (name, bytes, expected) in cases {
            assert_eq!(parse_computerinfo(&bytes), expected, "{name}");
        }
        let long = "x".repeat(1000);
        match parse_computerinfo(&plist(&[("computerName", &long)])) {
            Info::Read {
                computer_name: Some(name),
                ..
            } => assert_eq!(name.len(), 256),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_credential_report_gives_each_scoped_users_keys() {
        let report = "user,arn,user_creation_time,password_enabled,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service\n\
<root_account>,arn:aws:iam::123456789012:root,2020-01-01T00:00:00+00:00,not_supported,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A\n\
fleet-admin,arn:aws:iam::123456789012:user/fleet-admin,2020-01-01T00:00:00+00:00,false,true,2020-01-01T00:00:00+00:00,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A\n\
arq-A,arn:aws:iam::123456789012:user/arq-lockdown/arq-A,2026-01-01T00:00:00+00:00,false,true,2026-01-01T00:00:01+00:00,2026-01-02T00:00:00+00:00,eu-west-1,s3,false,N/A,N/A,N/A,N/A\n\
arq-B,arn:aws:iam::123456789012:user/arq-lockdown/arq-B,2026-01-01T00:00:00+00:00,false,false,2026-01-01T00:00:01+00:00,N/A,N/A,N/A,true,2026-01-03T00:00:00+00:00,N/A,not_supported,not_supported\n\
short,row\n";
        let rows = parse_report(report.as_bytes());
        assert_eq!(rows.len(), 2, "{rows:?}");
        let a = &rows["arn:aws:iam::123456789012:user/arq-lockdown/arq-A"];
        assert_eq!(a.created, Some("2026-01-01T00:00:00Z".parse().unwrap()));
        assert_eq!(
            a.keys,
            [KeyFacts {
                id: None,
                active: true,
                created: Some("2026-01-01T00:00:01Z".parse().unwrap()),
                last_used: Some(LastUse {
                    at: "2026-01-02T00:00:00Z".parse().unwrap(),
                    service: Some("s3".into()),
                    region: Some("eu-west-1".into()),
                }),
            }]
        );
        let b = &rows["arn:aws:iam::123456789012:user/arq-lockdown/arq-B"];
        assert_eq!(
            b.keys
                .iter()
                .map(|k| (k.active, k.last_used.is_some()))
                .collect::<Vec<_>>(),
            [(false, false), (true, false)]
        );
        assert!(parse_report(b"").is_empty());
        assert!(parse_report(b"no,arn,column\n1,2,3\n").is_empty());
    }
}
