//! `apply`: lock this Mac down end to end — the 2012 manual procedure, done right and re-runnable.
//!
//! The steps, in order, each a function below:
//!  1. read Arq's config and build this computer's policy;
//!  2. read the key Arq uses now ("Arq S3");
//!  3. stop if the receipt says this very lockdown is in place (no network);
//!  4. ask STS whose key that is;
//!  5. plan what IAM and this Mac need (with --dry-run: print it, change nothing);
//!  6. make sure Arq and Arq Agent have quit (only when "Arq S3" will change);
//!  7. get the scoped key from IAM: user, policy, stale keys out, a new key;
//!  8. prove the key: wait until it works, run the verify suite; on failure delete it;
//!  9. update "Arq S3" in place and read it back;
//! 10. retire the previous scoped key (never the admin's main keys);
//! 11. relaunch Arq;
//! 12. write the receipt.
//!
//! Nothing before step 9 changes "Arq S3", so any failure leaves Arq with the key it had. A run
//! killed anywhere is finished by the next: IAM steps are idempotent, and a key already in
//! "Arq S3" that STS says belongs to this computer's user is adopted instead of replaced.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use serde::Serialize;

use crate::arq_app::{self, ArqAppError};
use crate::arq_config::{ArqConfig, ConfigError};
use crate::aws::{self, AwsCredentials};
use crate::credential_store::{AccessKey, CredentialStore, StoreError};
use crate::exit_code::ExitCode;
use crate::key_source::IssuedKey;
use crate::key_source::iam::{self, Iam, IamError, UserState, WantedUser};
use crate::key_source::service::{ServiceClient, ServiceClientError};
use crate::policy::{PolicyDocument, PolicyOptions, PolicyTooLarge};
use crate::receipt::{self, Receipt, ReceiptError};
use crate::run_log::RunLog;
use crate::session::{self, SessionError};
use crate::verify::{self, Verdict, VerifyError, VerifyOptions};

/// Where the scoped key comes from.
pub enum KeySource {
    /// IAM directly, with these admin credentials.
    Iam(AdminCredentials),
    /// The provisioning service, which holds the IAM rights.
    Service(Box<ServiceClient>),
}

/// Which credentials may create the IAM user and its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminCredentials {
    /// The keys now in "Arq S3" — the fleet's main keys, as the manual procedure starts.
    ArqS3,
    /// The standard AWS credential chain.
    Chain,
    /// A named AWS profile.
    Profile(String),
}

/// How to start Arq again at the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Relaunch {
    Skip,
    /// `open -b com.haystacksoftware.Arq` on macOS; nothing elsewhere.
    Default,
    Command(PathBuf),
}

/// Everything `apply` needs, validated by the caller.
pub struct ApplyRequest<'a> {
    pub home: PathBuf,
    pub store: &'a dyn CredentialStore,
    pub source: KeySource,
    pub policy_options: PolicyOptions,
    pub rotate: bool,
    pub dry_run: bool,
    /// Ask Arq to quit and wait this long, instead of failing when it runs.
    pub quit_arq: Option<Duration>,
    pub verify_timeout: Duration,
    pub relaunch: Relaunch,
    pub computer_name: String,
    pub serial_number: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Policy(#[from] PolicyTooLarge),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Iam(#[from] IamError),
    #[error(transparent)]
    ArqApp(#[from] ArqAppError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
    #[error("cannot reach STS: {0}; check the network and AWS_ENDPOINT_URL")]
    StsUnreachable(String),
    #[error(transparent)]
    Service(#[from] ServiceClientError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(
        "AWS refuses the key in \"Arq S3\" ({key_id}: {reason}), so it can neither create IAM users nor prove this Mac to the service: re-enter working keys in Arq, or pass --admin-credentials env or profile:NAME"
    )]
    CurrentKeyRefused { key_id: String, reason: String },
    #[error(
        "the key in \"Arq S3\" belongs to {arn}, not to this computer's user, and cannot create IAM users: pass --admin-credentials env or profile:NAME"
    )]
    ForeignScopedKey { arn: String },
    #[error(
        "the key in \"Arq S3\" is already this computer's scoped key, which cannot make its successor: pass --admin-credentials env or profile:NAME to rotate"
    )]
    RotateNeedsAdmin,
    #[error(
        "the new key {key_id} failed verification ({detail}); it was deleted and \"Arq S3\" was left as it was"
    )]
    NewKeyRejected {
        key_id: String,
        verdict: Verdict,
        detail: String,
    },
    #[error(
        "the key in \"Arq S3\" failed verification ({detail}); run `arq-lockdown verify` for the full report"
    )]
    CurrentKeyRejected { verdict: Verdict, detail: String },
    #[error(
        "\"Arq S3\" did not read back as written; the previous key was put back and the new one deleted: check {store}"
    )]
    StoreReadBack { store: String },
}

impl ApplyError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Config(e) => e.exit_code(),
            Self::Policy(_) => ExitCode::ConfigInvalid,
            Self::Store(e) => e.exit_code(),
            Self::Iam(e) => e.exit_code(),
            Self::ArqApp(e) => e.exit_code(),
            Self::Verify(e) => e.exit_code(),
            Self::Receipt(_) => ExitCode::Internal,
            Self::StsUnreachable(_) => ExitCode::Aws,
            Self::Service(e) => e.exit_code(),
            Self::Session(e) => e.exit_code(),
            Self::CurrentKeyRefused { .. }
            | Self::ForeignScopedKey { .. }
            | Self::RotateNeedsAdmin => ExitCode::Credentials,
            Self::NewKeyRejected { verdict, .. } | Self::CurrentKeyRejected { verdict, .. } => {
                verdict.exit_code()
            }
            Self::StoreReadBack { .. } => ExitCode::Credentials,
        }
    }
}

/// What IAM and this Mac need, decided before anything changes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    pub create_user: bool,
    pub retag_user: bool,
    pub put_policy: bool,
    /// Keys of the scoped user that are not in "Arq S3" (left by a run that died): deleted first.
    pub delete_stale_keys: Vec<String>,
    /// A new key replaces the one in "Arq S3".
    pub new_key: bool,
    /// The previous scoped key, deleted once "Arq S3" holds the new one.
    pub retire_key: Option<String>,
    /// With the service as the source: what to ask it for.
    pub service_call: Option<ServiceCall>,
}

/// What `apply` asks the provisioning service for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceCall {
    /// A first key, proven by the main keys now in "Arq S3".
    Enroll,
    /// A new key, proven by this computer's scoped key now in "Arq S3".
    Rotate,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApplyResult {
    LockedDown,
    AlreadyLockedDown,
    DryRun,
}

/// The result of a run, for people and (as JSON) for scripts. Never holds a secret.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub result: ApplyResult,
    pub computer_uuid: String,
    pub bucket: String,
    /// The key in "Arq S3" at the end (for a dry run: now).
    pub access_key_id: String,
    pub previous_access_key_id: Option<String>,
    pub user_arn: Option<String>,
    pub retired_access_key_id: Option<String>,
    /// The admin's main keys were in "Arq S3" and are not any more (they stay valid in IAM).
    pub main_keys_removed: bool,
    pub plan: Option<Plan>,
    pub relaunched_with: Option<String>,
    pub receipt: Option<PathBuf>,
    pub steps: Vec<String>,
    pub warnings: Vec<String>,
}

/// Progress: one line per step on stderr and in the user's log, kept for the outcome too.
struct Steps<'a> {
    log: Option<&'a RunLog>,
    done: Vec<String>,
    warnings: Vec<String>,
}

impl Steps<'_> {
    fn note(&mut self, text: String) {
        eprintln!("arq-lockdown: {text}");
        if let Some(log) = self.log {
            log.step(&text);
        }
        self.done.push(text);
    }

    fn warn(&mut self, text: String) {
        eprintln!("arq-lockdown: warning: {text}");
        if let Some(log) = self.log {
            log.line(&format!("warning: {text}"));
        }
        self.warnings.push(text);
    }
}

/// Who owns the key in "Arq S3", as STS reports it.
enum Identity {
    /// The caller ARN: the main keys' user, this computer's scoped user, or another's.
    Known(String),
    /// AWS does not accept the key at all (the reason: its error code).
    Refused(String),
}

impl Identity {
    /// Whether the key belongs to `config`'s computer's scoped user.
    fn is_scoped_user_of(&self, config: &ArqConfig) -> bool {
        matches!(self, Self::Known(arn) if iam::is_scoped_user_arn(arn, &config.computer_uuid))
    }
}

pub async fn apply(request: ApplyRequest<'_>, log: Option<&RunLog>) -> Result<Outcome, ApplyError> {
    let mut steps = Steps {
        log,
        done: Vec::new(),
        warnings: Vec::new(),
    };

    // 1. Arq's config and this computer's policy.
    let config = ArqConfig::read_from_home(&request.home)?;
    let policy = PolicyDocument::scoped_to(&config, request.policy_options)?;
    session::refuse_user_symlinks(&Receipt::path(&request.home))?;
    steps.note(format!(
        "Arq backs up to {} as computer {}",
        config.bucket, config.computer_uuid
    ));

    // 2. The key Arq uses now.
    let current = request.store.read()?;
    steps.note(format!(
        "\"Arq S3\" in {} holds key {}",
        request.store.describe(),
        current.id
    ));

    // 3. Done already?
    if let Some(receipt) =
        Receipt::load(&request.home).filter(|r| r.covers(&config, &current.id, &policy))
        && !request.rotate
    {
        steps.note(format!(
            "already locked down {} s ago; nothing to do",
            receipt.age_seconds()
        ));
        return Ok(outcome(
            ApplyResult::AlreadyLockedDown,
            &config,
            &current,
            steps,
            |o| {
                o.user_arn = Some(receipt.user_arn.clone());
                o.receipt = Some(Receipt::path(&request.home));
            },
        ));
    }

    // 4. Whose key is in "Arq S3"?
    let current_config = aws::load_config(AwsCredentials::Key(&current)).await;
    let identity = identify(&current_config).await?;
    check_admin(&request, &identity, &config, &current)?;

    // 5. The plan.
    let (iam, existing) = match iam_admin(&request, &identity, &config) {
        Some(admin) => {
            let iam = match admin {
                AdminCredentials::ArqS3 => Iam::new(&current_config),
                AdminCredentials::Chain => Iam::new(&aws::load_config(AwsCredentials::Chain).await),
                AdminCredentials::Profile(name) => {
                    Iam::new(&aws::load_config(AwsCredentials::Profile(name)).await)
                }
            };
            let existing = iam.inspect(&config.computer_uuid).await?;
            (Some(iam), existing)
        }
        None => (None, None),
    };
    let plan = plan(
        &request,
        &config,
        &policy,
        &current,
        &identity,
        existing.as_ref(),
    );
    steps.note(describe_plan(&plan, &config));
    if request.dry_run {
        return Ok(outcome(
            ApplyResult::DryRun,
            &config,
            &current,
            steps,
            |o| o.plan = Some(plan),
        ));
    }

    // 6. Arq must not run while "Arq S3" changes.
    if plan.new_key {
        make_sure_arq_has_quit(request.quit_arq, &mut steps).await?;
    }

    // 7. The scoped key from IAM.
    let mut user_arn = match &identity {
        Identity::Known(arn) if identity.is_scoped_user_of(&config) => Some(arn.clone()),
        _ => None,
    };
    let mut issued = None;
    if let Some(iam) = &iam {
        let wanted = WantedUser {
            uuid: &config.computer_uuid,
            policy: &policy,
            tags: iam::user_tags(&config, &request.computer_name, &request.serial_number),
        };
        let provisioned = iam
            .provision(
                &wanted,
                existing.as_ref(),
                Some(&current.id),
                plan.new_key,
                &mut |text| steps.note(text),
            )
            .await?;
        issued = provisioned.key;
        user_arn = Some(provisioned.user_arn);
    }
    if let (KeySource::Service(service), Some(call)) = (&request.source, plan.service_call) {
        let key = match call {
            ServiceCall::Rotate => service.rotate(&config, &current).await?,
            ServiceCall::Enroll => {
                service
                    .enroll(
                        &config,
                        &current,
                        &request.computer_name,
                        &request.serial_number,
                    )
                    .await?
            }
        };
        steps.note(format!(
            "the service issued key {} for {}",
            key.key.id, key.user_arn
        ));
        user_arn = Some(key.user_arn.clone());
        issued = Some(key);
    }

    // 8. Prove the key before Arq gets it.
    let candidate = issued.as_ref().map_or(&current, |i| &i.key);
    match prove(candidate, &config, request.verify_timeout, &mut steps).await {
        Ok(()) => {}
        Err(error) => {
            match (&iam, &issued) {
                (Some(iam), Some(new)) => iam.delete_key(&config.computer_uuid, &new.key.id).await?,
                (None, Some(new)) => steps.warn(format!(
                    "key {} was not used; the service deletes it at this computer's next enrollment or rotation",
                    new.key.id
                )),
                _ => {}
            }
            return Err(error);
        }
    }

    // 9. "Arq S3" gets the new key.
    if let Some(new) = &issued {
        update_arq_s3(request.store, &current, new, iam.as_ref(), &config).await?;
        steps.note(format!("\"Arq S3\" now holds key {}", new.key.id));
    }

    // 10. The previous scoped key goes; the main keys are the admin's and stay.
    let mut retired = None;
    if let (Some(old), Some(new)) = (&plan.retire_key, &issued) {
        let deleted = match (&iam, &request.source) {
            (Some(iam), _) => iam
                .delete_key(&config.computer_uuid, old)
                .await
                .map_err(|e| e.to_string()),
            (None, KeySource::Service(service)) => service
                .retire(&config.computer_uuid, &new.key, old)
                .await
                .map_err(|e| e.to_string()),
            (None, KeySource::Iam(_)) => Ok(()),
        };
        match deleted {
            Ok(()) => {
                steps.note(format!("retired the previous scoped key {old}"));
                retired = Some(old.clone());
            }
            Err(e) => steps.warn(format!(
                "the previous scoped key {old} was not deleted ({e}); the next rotation removes it"
            )),
        }
    }
    let main_keys_removed = issued.is_some() && !identity.is_scoped_user_of(&config);
    if main_keys_removed {
        steps.note(format!(
            "key {} is no longer on this Mac; it was not deleted from IAM (it is the admin's)",
            current.id
        ));
    }

    // 11. Arq runs again.
    let relaunched_with = relaunch(&request.relaunch, &mut steps);

    // 12. The receipt, last: a run that dies before this point is simply done again.
    let final_key = issued.as_ref().map_or(&current, |i| &i.key);
    let user_arn = user_arn.unwrap_or_default();
    Receipt {
        bucket: config.bucket.to_string(),
        computer_uuid: config.computer_uuid.to_string(),
        access_key_id: final_key.id.clone(),
        user_arn: user_arn.clone(),
        policy_sha256: receipt::policy_sha256(&policy),
        source: match request.source {
            KeySource::Iam(_) => "iam".into(),
            KeySource::Service(_) => "service".into(),
        },
        applied_at_unix: receipt::now_unix(),
    }
    .save(&request.home)?;
    steps.note(format!(
        "receipt written to {}",
        Receipt::path(&request.home).display()
    ));

    let previous = issued.as_ref().map(|_| current.id.clone());
    Ok(outcome(
        ApplyResult::LockedDown,
        &config,
        final_key,
        steps,
        |o| {
            o.previous_access_key_id = previous;
            o.user_arn = Some(user_arn);
            o.retired_access_key_id = retired;
            o.main_keys_removed = main_keys_removed;
            o.plan = Some(plan);
            o.relaunched_with = relaunched_with;
            o.receipt = Some(Receipt::path(&request.home));
        },
    ))
}

/// Asks STS who owns `key` (GetCallerIdentity needs no permission, so any valid key answers).
async fn identify(sdk_config: &SdkConfig) -> Result<Identity, ApplyError> {
    let sts = aws::sts_client(sdk_config);
    match sts.get_caller_identity().send().await {
        Ok(output) => Ok(Identity::Known(output.arn.unwrap_or_default())),
        Err(error) => {
            use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
            if let SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) = error {
                return Err(ApplyError::StsUnreachable(crate::one_line(
                    &DisplayErrorContext(&error).to_string(),
                )));
            }
            let status = error.raw_response().map_or(0, |r| r.status().as_u16());
            Ok(Identity::Refused(
                error
                    .code()
                    .map_or_else(|| format!("HTTP {status}"), str::to_owned),
            ))
        }
    }
}

/// The admin credentials for IAM work, or `None`: the service is the source, or the key in
/// "Arq S3" is this computer's and nothing asks for IAM (a run that died after step 9 is finished
/// without IAM).
fn iam_admin<'a>(
    request: &'a ApplyRequest<'_>,
    identity: &Identity,
    config: &ArqConfig,
) -> Option<&'a AdminCredentials> {
    let KeySource::Iam(admin) = &request.source else {
        return None;
    };
    let owned = identity.is_scoped_user_of(config);
    (!owned || *admin != AdminCredentials::ArqS3).then_some(admin)
}

/// Decides every change from what is known, without making any.
/// Refuses, before any IAM or service call, when the key in "Arq S3" must do the work (create IAM
/// users, or prove this Mac to the service) and cannot: AWS rejects it, or (IAM) it is another
/// computer's scoped key from a cloned disk, or this computer's scoped key asked to rotate itself.
fn check_admin(
    request: &ApplyRequest<'_>,
    identity: &Identity,
    config: &ArqConfig,
    current: &AccessKey,
) -> Result<(), ApplyError> {
    let owned = identity.is_scoped_user_of(config);
    match &request.source {
        KeySource::Iam(AdminCredentials::ArqS3) => {}
        KeySource::Service(service) if !service.has_enrollment_token() || owned => {
            return match identity {
                Identity::Refused(reason) => Err(ApplyError::CurrentKeyRefused {
                    key_id: current.id.clone(),
                    reason: reason.clone(),
                }),
                Identity::Known(_) => Ok(()),
            };
        }
        _ => return Ok(()),
    }
    match identity {
        Identity::Refused(reason) => Err(ApplyError::CurrentKeyRefused {
            key_id: current.id.clone(),
            reason: reason.clone(),
        }),
        Identity::Known(_) if owned && request.rotate => Err(ApplyError::RotateNeedsAdmin),
        Identity::Known(arn) if !owned && arn.contains(&format!(":user{}", iam::USER_PATH)) => {
            Err(ApplyError::ForeignScopedKey { arn: arn.clone() })
        }
        Identity::Known(_) => Ok(()),
    }
}

/// Decides every change from what is known, without making any.
fn plan(
    request: &ApplyRequest<'_>,
    config: &ArqConfig,
    policy: &PolicyDocument,
    current: &AccessKey,
    identity: &Identity,
    existing: Option<&UserState>,
) -> Plan {
    let uses_arq_s3 = matches!(request.source, KeySource::Iam(AdminCredentials::ArqS3));
    let owned = identity.is_scoped_user_of(config);
    let new_key = !owned || request.rotate;
    let mut plan = Plan {
        new_key,
        ..Plan::default()
    };
    if let KeySource::Service(_) = request.source {
        plan.service_call = plan.new_key.then_some(if owned {
            ServiceCall::Rotate
        } else {
            ServiceCall::Enroll
        });
        plan.retire_key = (owned && plan.new_key).then(|| current.id.clone());
        return plan;
    }
    if owned && uses_arq_s3 {
        return plan;
    }
    match existing {
        None => {
            plan.create_user = true;
            plan.put_policy = true;
        }
        Some(state) => {
            plan.retag_user = state.tags
                != iam::user_tags(config, &request.computer_name, &request.serial_number);
            plan.put_policy = state.policy.as_ref() != Some(policy.as_value());
            plan.delete_stale_keys = state
                .key_ids
                .iter()
                .filter(|id| **id != current.id)
                .cloned()
                .collect();
            if new_key && state.key_ids.contains(&current.id) {
                plan.retire_key = Some(current.id.clone());
            }
        }
    }
    plan
}

fn describe_plan(plan: &Plan, config: &ArqConfig) -> String {
    let user = iam::user_name(&config.computer_uuid);
    let mut parts = Vec::new();
    if plan.create_user {
        parts.push(format!("create IAM user {}{user}", iam::USER_PATH));
    }
    if plan.retag_user {
        parts.push("update its tags".to_owned());
    }
    if plan.put_policy {
        parts.push(format!("write policy {}", iam::POLICY_NAME));
    }
    for key in &plan.delete_stale_keys {
        parts.push(format!("delete stale key {key}"));
    }
    if let Some(call) = plan.service_call {
        let call = match call {
            ServiceCall::Enroll => "enroll",
            ServiceCall::Rotate => "rotate",
        };
        parts.push(format!(
            "ask the service to {call}, verify the key, put it in \"Arq S3\""
        ));
    } else if plan.new_key {
        parts.push("create a key, verify it, put it in \"Arq S3\"".to_owned());
    } else {
        parts.push("verify the scoped key already in \"Arq S3\"".to_owned());
    }
    if let Some(key) = &plan.retire_key {
        parts.push(format!("delete the previous key {key}"));
    }
    parts.push("relaunch Arq, write the receipt".to_owned());
    format!("plan: {}", parts.join("; "))
}

async fn make_sure_arq_has_quit(
    quit_arq: Option<Duration>,
    steps: &mut Steps<'_>,
) -> Result<(), ArqAppError> {
    match quit_arq {
        None => arq_app::ensure_not_running()?,
        Some(wait) => {
            let running = arq_app::running()?;
            if !running.is_empty() {
                steps.note(format!(
                    "asking Arq to quit ({} process(es)), waiting up to {} s",
                    running.len(),
                    wait.as_secs()
                ));
                arq_app::quit(wait).await?;
            }
        }
    }
    steps.note("Arq and Arq Agent are not running".to_owned());
    Ok(())
}

/// Waits until AWS accepts `key` (new IAM keys take seconds to work), then runs the verify suite
/// until every Arq call works or `timeout` passes. Another computer's data being reachable fails at
/// once; a listing leak is only a warning (emulators cannot evaluate the condition that stops it).
async fn prove(
    key: &AccessKey,
    config: &ArqConfig,
    timeout: Duration,
    steps: &mut Steps<'_>,
) -> Result<(), ApplyError> {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(200);
    let mut wait = async || {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep(delay.min(deadline - now)).await;
        delay = (delay * 2).min(Duration::from_secs(5));
        true
    };
    let sdk_config = aws::load_config(AwsCredentials::Key(key)).await;
    while let Identity::Refused(_) = identify(&sdk_config).await? {
        if !wait().await {
            break;
        }
    }
    loop {
        let report = verify::verify(
            &sdk_config,
            key.id.clone(),
            config,
            &VerifyOptions::default(),
        )
        .await?;
        let detail = || {
            let failed: Vec<&str> = report
                .checks
                .iter()
                .filter_map(|c| c.detail.as_deref())
                .collect();
            match failed.as_slice() {
                [] => "no detail".to_owned(),
                [one] => (*one).to_owned(),
                [first, rest @ ..] => format!("{first}; and {} more", rest.len()),
            }
        };
        match report.verdict {
            Verdict::Isolated => {
                steps.note(format!(
                    "key {} verified: Arq's calls work, other computers' data is refused",
                    key.id
                ));
                return Ok(());
            }
            Verdict::ListingLeak => {
                steps.note(format!(
                    "key {} verified: Arq's calls work, other computers' data is refused",
                    key.id
                ));
                steps.warn(format!(
                    "the endpoint let key {} list other computers' folders; AWS refuses that under this policy, emulators such as moto do not",
                    key.id
                ));
                return Ok(());
            }
            Verdict::ArqBroken if wait().await => continue,
            verdict => {
                return Err(ApplyError::NewKeyRejected {
                    key_id: key.id.clone(),
                    verdict,
                    detail: detail(),
                });
            }
        }
    }
}

/// Writes the new key into "Arq S3" and reads it back; on any doubt puts the old key back and
/// deletes the new one, so Arq keeps a key that works.
async fn update_arq_s3(
    store: &dyn CredentialStore,
    old: &AccessKey,
    new: &IssuedKey,
    iam: Option<&Iam>,
    config: &ArqConfig,
) -> Result<(), ApplyError> {
    let written = store.update(&new.key);
    let read_back = written.as_ref().ok().map(|()| store.read());
    match (written, read_back) {
        (Ok(()), Some(Ok(key))) if key == new.key => Ok(()),
        (result, _) => {
            let _ = store.update(old);
            if let Some(iam) = iam {
                iam.delete_key(&config.computer_uuid, &new.key.id).await?;
            }
            match result {
                Err(e) => Err(e.into()),
                Ok(()) => Err(ApplyError::StoreReadBack {
                    store: store.describe(),
                }),
            }
        }
    }
}

fn relaunch(relaunch: &Relaunch, steps: &mut Steps<'_>) -> Option<String> {
    let command = match relaunch {
        Relaunch::Skip => return None,
        Relaunch::Default => None,
        Relaunch::Command(path) => Some(path.as_path()),
    };
    match arq_app::relaunch(command) {
        Ok(Some(shown)) => {
            steps.note(format!("Arq relaunched ({shown})"));
            Some(shown)
        }
        Ok(None) => {
            steps.note("no way to start Arq on this platform; pass --relaunch-command".to_owned());
            None
        }
        Err(e) => {
            steps.warn(e.to_string());
            None
        }
    }
}

fn outcome(
    result: ApplyResult,
    config: &ArqConfig,
    key: &AccessKey,
    steps: Steps<'_>,
    fill: impl FnOnce(&mut Outcome),
) -> Outcome {
    let mut outcome = Outcome {
        result,
        computer_uuid: config.computer_uuid.to_string(),
        bucket: config.bucket.to_string(),
        access_key_id: key.id.clone(),
        previous_access_key_id: None,
        user_arn: None,
        retired_access_key_id: None,
        main_keys_removed: false,
        plan: None,
        relaunched_with: None,
        receipt: None,
        steps: steps.done,
        warnings: steps.warnings,
    };
    fill(&mut outcome);
    outcome
}
