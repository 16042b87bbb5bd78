//! `apply`: lock this Mac down end to end — the 2012 manual procedure, done right and re-runnable.
//!
//! The steps, in order, each a function below:
//!  1. read Arq's config and build this computer's policy; take this user's run lock;
//!  2. read the key Arq uses now ("Arq S3");
//!  3. read the receipt once and judge it ([`receipt::judge`]): stop if this very lockdown is in
//!     place (no network), or if the policy is outdated and this run's source cannot refresh it;
//!  4. ask STS whose key that is;
//!  5. resolve the key source and plan what it and this Mac need (with --dry-run: print it, stop);
//!  6. make sure Arq and Arq Agent have quit (only when "Arq S3" will change);
//!  7. get the scoped key (IAM or the provisioning service);
//!  8. prove the key: wait until it works, run the verify suite; on failure discard it;
//!  9. update "Arq S3" in place and read it back;
//! 10. retire the keys the new one replaces (never the admin's main keys);
//! 11. relaunch Arq;
//! 12. write the receipt (and forget the setback an earlier run met).
//!
//! Nothing before step 9 changes "Arq S3", so any failure leaves Arq with the key it had. A run
//! killed anywhere is finished by the next: IAM steps are idempotent, and a key already in
//! "Arq S3" that belongs to this computer's user is adopted instead of replaced. The receipt is
//! read once, and the AWS config signed with the key in "Arq S3" built once, then passed along.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::Error;
use crate::arq_app::{self, ArqAppError};
use crate::arq_config::ArqConfig;
use crate::aws::{self, AwsCredentials, Caller, Identity};
use crate::credential_store::{ArqS3, CredentialStore, StoreError};
use crate::exit_code::ExitCode;
use crate::fault;
use crate::iam::{Iam, IamError};
use crate::iam_names;
use crate::key_source::{
    AdminCredentials, Computer, IamIssuer, IssuedKey, KeyIssuer, KeySource, Plan, RootIssuer,
    ServiceCall, ServiceClient, ServiceIssuer, SourceKind, default_boundary,
};
use crate::policy::{PolicyDocument, PolicyOptions};
use crate::receipt::{self, LocalState, Receipt};
use crate::run_lock::RunLock;
use crate::run_log::{RunLog, Severity};
use crate::setback::{Setback, SetbackKind};
use crate::verify::{self, Verdict, VerifyOptions};

/// How often a new key is tried while AWS does not accept it yet.
const POLL: Duration = Duration::from_millis(250);

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
    /// With `quit_arq`: SIGTERM what did not quit when asked (never a busy Arq Agent).
    pub terminate_arq: bool,
    pub verify_timeout: Duration,
    /// How long to wait for another run of this user's to finish.
    pub lock_timeout: Duration,
    pub relaunch: Relaunch,
    pub computer_name: Option<String>,
    pub serial_number: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(
        "AWS refuses the key in \"Arq S3\" ({key_id}: {reason}), so it can neither create IAM users nor prove this Mac to the service: re-enter working keys in Arq, or pass --admin-credentials env or profile:NAME"
    )]
    CurrentKeyRefused { key_id: String, reason: String },
    #[error(
        "the key in \"Arq S3\" belongs to {arn}, not to this computer's user, and cannot create IAM users: pass --admin-credentials env or profile:NAME"
    )]
    ForeignScopedKey { arn: String },
    #[error(
        "the key in \"Arq S3\" belongs to {arn}, a restricted user (not the main keys, not arq-lockdown's: Arq's own \"Create Restricted IAM User\" makes such keys) that cannot create IAM users: pass --admin-credentials env or profile:NAME to replace it with a scoped key (that user and its key stay in IAM), or leave this Mac as it is"
    )]
    RestrictedKey { arn: String },
    #[error(
        "the key in \"Arq S3\" is already this computer's scoped key, which cannot make its successor: pass --admin-credentials env or profile:NAME to rotate"
    )]
    RotateNeedsAdmin,
    #[error(
        "this computer's policy has changed (Arq's bucket, an option such as --legacy-glacier, or a new version), and the scoped key in \"Arq S3\" cannot change it: pass --admin-credentials env or profile:NAME"
    )]
    PolicyNeedsAdmin,
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
        "\"Arq S3\" in {store} did not read back as written (key {key_id}): check that nothing else changes it, then run apply again"
    )]
    StoreReadBack { store: String, key_id: String },
}

impl ApplyError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::CurrentKeyRefused { .. }
            | Self::ForeignScopedKey { .. }
            | Self::RestrictedKey { .. }
            | Self::RotateNeedsAdmin
            | Self::PolicyNeedsAdmin => ExitCode::Credentials,
            Self::NewKeyRejected { verdict, .. } | Self::CurrentKeyRejected { verdict, .. } => {
                verdict.exit_code()
            }
            Self::StoreReadBack { .. } => ExitCode::Credentials,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApplyResult {
    LockedDown,
    AlreadyLockedDown,
    /// The key is this computer's, under a policy an older version wrote, and this run's source
    /// cannot refresh it (the IAM source without admin credentials): the warning names the fix.
    PolicyOutdated,
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
    pub retired_access_key_ids: Vec<String>,
    /// The admin's main keys were in "Arq S3" and are not any more (they stay valid in IAM).
    pub main_keys_removed: bool,
    pub plan: Option<Plan>,
    pub relaunched_with: Option<String>,
    pub receipt: Option<PathBuf>,
    pub steps: Vec<String>,
    pub warnings: Vec<String>,
}

/// Progress: one line per step on stderr and in the user's log, kept for the outcome too. Until
/// the run knows it has work to do, its steps are held back from the log: a run that finds the
/// lockdown in place (every hour, on every Mac) writes one Debug line, not its three steps. A run
/// that fails or goes on writes them after all (on drop, or at [`Steps::has_work`]).
struct Steps<'a> {
    log: Option<&'a RunLog>,
    held_back: Option<Vec<String>>,
    done: Vec<String>,
    warnings: Vec<String>,
}

impl<'a> Steps<'a> {
    fn new(log: Option<&'a RunLog>) -> Self {
        Self {
            log,
            held_back: Some(Vec::new()),
            done: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn note(&mut self, text: String) {
        eprintln!("arq-lockdown: {text}");
        match (&mut self.held_back, self.log) {
            (Some(held_back), _) => held_back.push(text.clone()),
            (None, Some(log)) => log.write(Severity::Step, &text),
            (None, None) => {}
        }
        self.done.push(text);
    }

    /// A warning: in the log once a day (a run that meets it every hour repeats it every hour),
    /// without the steps held back.
    fn warn(&mut self, text: String) {
        eprintln!("arq-lockdown: warning: {text}");
        if let Some(log) = self.log {
            log.once_a_day(Severity::Warning, &format!("warning: {text}"));
        }
        self.warnings.push(text);
    }

    /// The run has work to do (or something to say): the steps held back go to the log now.
    fn has_work(&mut self) {
        if let (Some(held_back), Some(log)) = (self.held_back.take(), self.log) {
            for text in held_back {
                log.write(Severity::Step, &text);
            }
        }
    }

    /// The run found nothing to do: one Debug line instead of its steps.
    fn nothing_to_do(&mut self) {
        if let (Some(held_back), Some(log)) = (self.held_back.take(), self.log) {
            log.write(Severity::Debug, &held_back.join("; "));
        }
    }
}

impl Drop for Steps<'_> {
    fn drop(&mut self) {
        self.has_work();
    }
}

pub async fn apply(request: ApplyRequest<'_>, log: Option<&RunLog>) -> Result<Outcome, Error> {
    let mut steps = Steps::new(log);
    let result = lock_down(&request, &mut steps).await;
    drop(steps);
    remember_setback(&request, &result);
    result
}

/// The setback's words for a denied Keychain read (`status` and the extension attribute show them).
const KEYCHAIN_DENIED: &str = "keychain access denied by the user";

/// A denied Keychain read is remembered, so that the agent backs off instead of asking every
/// hour; a lockdown forgets whatever stopped an earlier run.
fn remember_setback(request: &ApplyRequest<'_>, result: &Result<Outcome, Error>) {
    let recorded = match result {
        Err(Error::Store(StoreError::DeniedByUser { .. })) => {
            let config = ArqConfig::read_from_home(&request.home).ok();
            let uuid = config.as_ref().map(|c| c.computer_uuid.as_str());
            let detail = KEYCHAIN_DENIED.to_owned();
            let now = receipt::now_unix();
            Setback::record(
                &request.home,
                SetbackKind::KeychainDenied,
                uuid,
                detail,
                now,
            )
            .map(drop)
        }
        Ok(outcome) if matches!(outcome.result, ApplyResult::LockedDown) => {
            Setback::clear(&request.home)
        }
        _ => Ok(()),
    };
    if let Err(e) = recorded {
        eprintln!("arq-lockdown: warning: could not record the setback ({e})");
    }
}

async fn lock_down(request: &ApplyRequest<'_>, steps: &mut Steps<'_>) -> Result<Outcome, Error> {
    let (config, policy) = read_config(request, steps)?;
    let _lock = RunLock::acquire(&request.home, request.lock_timeout).await?;
    let current = read_arq_s3(request.store, steps)?;
    let local = match read_receipt(request, &config, &current.id, steps) {
        ControlFlow::Continue(local) => local,
        ControlFlow::Break(done) => return Ok(done),
    };
    steps.has_work();
    let mut computer = Computer {
        config: &config,
        policy: &policy,
        options: request.policy_options,
        name: request.computer_name.as_deref(),
        serial: request.serial_number.as_deref(),
        replaced_key: None,
    };
    let (issuer, owner) = resolve_issuer(request, &local, &computer, &current).await?;
    // Not this computer's own key: the key this lockdown replaces, for `audit` to follow.
    computer.replaced_key = owner.is_none().then_some(current.id.as_str());
    let plan = issuer.plan(&computer, &current.id, owner.is_some(), local.rotate);
    steps.note(describe_plan(&plan, &config));
    if request.dry_run {
        let result = ApplyResult::DryRun;
        return Ok(outcome(result, &config, &current.id, steps, |o| {
            o.plan = Some(plan);
        }));
    }
    if plan.new_key {
        make_sure_arq_has_quit(request.quit_arq, request.terminate_arq, steps).await?;
    }
    let issued = issuer
        .issue(&plan, &computer, &current, &mut |text| steps.note(text))
        .await?;
    prove_or_discard(
        request,
        &local,
        &issuer,
        &computer,
        &current,
        issued.as_ref(),
        steps,
    )
    .await?;
    fault::after("verified");
    let retired = match &issued {
        Some(new) => switch_arq_s3(request, &issuer, &computer, new, steps).await?,
        None => Vec::new(),
    };
    let main_keys_removed = issued.is_some() && owner.is_none();
    if main_keys_removed {
        steps.note(format!(
            "key {} is no longer on this Mac; it was not deleted from IAM (the main keys, or a key made outside arq-lockdown: the admin's to keep or delete)",
            current.id
        ));
    }
    let relaunched_with = relaunch(&request.relaunch, steps);
    fault::after("relaunched");
    let (final_id, user_arn) = match &issued {
        Some(new) => (&new.key.id, new.user_arn.clone()),
        None => (&current.id, owner.unwrap_or_default()),
    };
    write_receipt(request, &config, &policy, final_id, &user_arn, steps)?;
    Ok(outcome(
        ApplyResult::LockedDown,
        &config,
        final_id,
        steps,
        |o| {
            o.previous_access_key_id = issued.as_ref().map(|_| current.id.clone());
            o.user_arn = Some(user_arn);
            o.retired_access_key_ids = retired;
            o.main_keys_removed = main_keys_removed;
            o.plan = Some(plan);
            o.relaunched_with = relaunched_with;
            o.receipt = Some(Receipt::path(&request.home));
        },
    ))
}

/// Step 1: Arq's config and this computer's policy.
fn read_config(
    request: &ApplyRequest<'_>,
    steps: &mut Steps<'_>,
) -> Result<(ArqConfig, PolicyDocument), Error> {
    let config = ArqConfig::read_from_home(&request.home)?;
    let policy = PolicyDocument::scoped_to(&config, request.policy_options);
    crate::fs::refuse_untrusted_links(&Receipt::path(&request.home))
        .map_err(crate::arq_config::ConfigError::UnsafePath)?;
    steps.note(format!(
        "Arq backs up to {} as computer {}",
        config.bucket, config.computer_uuid
    ));
    Ok((config, policy))
}

/// Step 2: which key Arq uses now — the account alone; the secret waits until a step needs it.
fn read_arq_s3<'a>(
    store: &'a dyn CredentialStore,
    steps: &mut Steps<'_>,
) -> Result<ArqS3<'a>, Error> {
    let current = ArqS3::open(store)?;
    steps.note(format!(
        "\"Arq S3\" in {} holds key {}",
        store.describe(),
        current.id
    ));
    Ok(current)
}

/// The warning of a run that cannot refresh an outdated policy, naming the fix.
const POLICY_OUTDATED: &str = "this version of arq-lockdown writes a newer policy than the one the key in \"Arq S3\" was issued under, and that key cannot rewrite its own policy: run apply once with --admin-credentials env or profile:NAME (the key stays)";

/// What step 3 read once and the later steps share: the receipt and the judge's state of it,
/// whether this run makes a new key, and the AWS config signed with the key in "Arq S3" (built by
/// the first step that needs it, then reused).
struct Local {
    receipt: Option<Receipt>,
    state: LocalState,
    /// Asked to (`--rotate`), or the service's way to refresh an outdated policy.
    rotate: bool,
    signed_by_current: OnceCell<SdkConfig>,
}

impl Local {
    /// The AWS config signed with `current`, the key in "Arq S3" (reading its secret, once).
    async fn signed_by(&self, current: &ArqS3<'_>) -> Result<&SdkConfig, Error> {
        let load = || async {
            Ok::<_, Error>(aws::load_config(AwsCredentials::Key(current.key()?)).await)
        };
        self.signed_by_current.get_or_try_init(load).await
    }
}

/// Step 3: the receipt, read once, and the judge's state of it (see [`receipt::judge`]). The run
/// stops here ([`ControlFlow::Break`]) when this very lockdown is in place — no network, no
/// secret — or when the policy is outdated and this run cannot refresh it: a warning naming the
/// fix, not work at every login.
fn read_receipt(
    request: &ApplyRequest<'_>,
    config: &ArqConfig,
    current_id: &str,
    steps: &mut Steps<'_>,
) -> ControlFlow<Outcome, Local> {
    let receipt = Receipt::load(&request.home);
    let state = receipt::judge(receipt.as_ref(), config, current_id, request.policy_options);
    let result = match next_step(&state, request.rotate, refresh_of(&request.source)) {
        NextStep::LockDown { rotate } => {
            let signed_by_current = OnceCell::new();
            return ControlFlow::Continue(Local {
                receipt,
                state,
                rotate,
                signed_by_current,
            });
        }
        NextStep::Nothing => ApplyResult::AlreadyLockedDown,
        NextStep::Report => ApplyResult::PolicyOutdated,
    };
    let receipt = receipt.expect("the judge found a receipt");
    let age = receipt.age_seconds();
    if let ApplyResult::PolicyOutdated = result {
        steps.note(format!("locked down {age} s ago, under an older policy"));
        steps.warn(POLICY_OUTDATED.to_owned());
    } else {
        steps.note(format!("already locked down {age} s ago; nothing to do"));
    }
    steps.nothing_to_do();
    ControlFlow::Break(outcome(result, config, current_id, steps, |o| {
        o.user_arn = Some(receipt.user_arn);
        o.receipt = Some(Receipt::path(&request.home));
    }))
}

/// How this run's key source can bring an outdated policy up to date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// The service writes its current policy whenever it issues a key: one rotation.
    Rotate,
    /// Admin credentials (`env`, `profile:NAME`, or root's) write the policy; the key stays.
    WritePolicy,
    /// This computer's scoped key as the IAM admin: it cannot change its own policy.
    Cannot,
}

pub(crate) fn refresh_of(source: &KeySource) -> Refresh {
    match source {
        KeySource::Service(_) => Refresh::Rotate,
        KeySource::Iam {
            admin: AdminCredentials::ArqS3,
            ..
        } => Refresh::Cannot,
        KeySource::Iam { .. } => Refresh::WritePolicy,
    }
}

/// What a run does about the state the receipt shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NextStep {
    /// This very lockdown is in place: `already-locked-down`.
    Nothing,
    /// The policy is outdated and this run cannot refresh it: `policy-outdated`, with a warning.
    Report,
    /// Steps 4 on; `rotate`: with a new key.
    LockDown { rotate: bool },
}

/// The judge's state and the run's request decide: an outdated policy is refreshed by any source
/// that can (what an admin expects after upgrading the pkg), and reported by the one that cannot.
pub(crate) fn next_step(state: &LocalState, rotate: bool, refresh: Refresh) -> NextStep {
    match (state, rotate, refresh) {
        (_, true, _) => NextStep::LockDown { rotate: true },
        (LocalState::LockedDown, false, _) => NextStep::Nothing,
        (LocalState::PolicyOutdated, false, Refresh::Cannot) => NextStep::Report,
        (LocalState::PolicyOutdated, false, Refresh::Rotate) => NextStep::LockDown { rotate: true },
        _ => NextStep::LockDown { rotate: false },
    }
}

/// Step 4: the key source for this run, and the scoped user the key in "Arq S3" belongs to if it
/// is this computer's. The secret of "Arq S3" is read (once) only when the source needs the key
/// itself: as the IAM admin (`arq-s3`), or to sign a proof for the service.
async fn resolve_issuer<'a>(
    request: &'a ApplyRequest<'_>,
    local: &Local,
    computer: &Computer<'_>,
    current: &ArqS3<'_>,
) -> Result<(KeyIssuer<'a>, Option<String>), Error> {
    match &request.source {
        KeySource::Service(client) => {
            let owner = owner_for_the_service(local, client, computer, current).await?;
            let (store, home) = (request.store, request.home.as_path());
            let issuer = ServiceIssuer {
                client,
                store,
                home,
            };
            Ok((KeyIssuer::Service(issuer), owner))
        }
        KeySource::Iam {
            admin: AdminCredentials::ArqS3,
            permissions_boundary,
        } => {
            let boundary = permissions_boundary.as_deref();
            arq_s3_as_admin(local, boundary, computer, current).await
        }
        KeySource::Iam {
            admin: AdminCredentials::Root,
            ..
        } => {
            let issuer = RootIssuer::connect(computer, &current.id)?;
            let owner = issuer.owner();
            Ok((KeyIssuer::Root(issuer), owner))
        }
        KeySource::Iam {
            admin,
            permissions_boundary,
        } => {
            let boundary = permissions_boundary.as_deref();
            let sdk_config = admin
                .sdk_config()
                .await
                .expect("env or profile: not arq-s3");
            let issuer = IamIssuer::connect(&sdk_config, boundary, computer).await?;
            let owner = issuer.owner_of(&current.id);
            Ok((KeyIssuer::Iam(Box::new(issuer)), owner))
        }
    }
}

/// With the service: whether the key in "Arq S3" is this computer's scoped key. With an
/// enrollment token nothing needs that key, so our receipt decides; otherwise STS says (the key
/// signs the proof anyway).
async fn owner_for_the_service(
    local: &Local,
    client: &ServiceClient,
    computer: &Computer<'_>,
    current: &ArqS3<'_>,
) -> Result<Option<String>, Error> {
    if client.has_enrollment_token() && !local.rotate {
        return Ok((local.receipt.as_ref())
            .filter(|r| r.access_key_id == current.id && r.source == SourceKind::Service)
            .map(|r| r.user_arn.clone()));
    }
    let caller = identify(current, local.signed_by(current).await?).await?;
    Ok(this_computers(&caller, computer.config))
}

/// With the keys in "Arq S3" as the IAM admin. STS says whose key it is; IAM's view of this
/// computer's user is asked for meanwhile with the same key, and used only if it is an admin's.
/// This computer's scoped key cannot do IAM work: it is adopted (a run that died after step 9 is
/// finished this way) unless the run asks for what only admin credentials can do. Refused: another
/// computer's scoped key (a cloned disk), and a key IAM refuses that is a user's but not ours — a
/// restricted user's, such as Arq's own "Create Restricted IAM User" makes.
async fn arq_s3_as_admin<'a>(
    local: &Local,
    boundary: Option<&str>,
    computer: &Computer<'_>,
    current: &ArqS3<'_>,
) -> Result<(KeyIssuer<'a>, Option<String>), Error> {
    let sdk_config = local.signed_by(current).await?;
    let iam = Iam::new(sdk_config);
    let (caller, existing) = tokio::join!(
        identify(current, sdk_config),
        iam.inspect(&computer.config.computer_uuid)
    );
    let caller = caller?;
    if let Some(arn) = this_computers(&caller, computer.config) {
        refuse_what_only_an_admin_can_do(local)?;
        return Ok((KeyIssuer::Adopt, Some(arn)));
    }
    if iam_names::is_scoped_user_arn(&caller.arn) {
        let arn = caller.arn;
        return Err(ApplyError::ForeignScopedKey { arn }.into());
    }
    let existing = match existing {
        Err(IamError::Refused { .. }) if caller.arn.contains(":user/") => {
            let arn = caller.arn;
            return Err(ApplyError::RestrictedKey { arn }.into());
        }
        existing => existing?,
    };
    let boundary = boundary.map_or_else(|| default_boundary(&caller.account), str::to_owned);
    let issuer = IamIssuer::new(iam, boundary, existing);
    let owner = issuer.owner_of(&current.id);
    Ok((KeyIssuer::Iam(Box::new(issuer)), owner))
}

/// This computer's scoped key cannot make its successor, nor rewrite its own policy (a new bucket,
/// other options: the receipt is for this key, under another policy).
fn refuse_what_only_an_admin_can_do(local: &Local) -> Result<(), Error> {
    if local.rotate {
        return Err(ApplyError::RotateNeedsAdmin.into());
    }
    if matches!(local.state, LocalState::OtherPolicy) {
        return Err(ApplyError::PolicyNeedsAdmin.into());
    }
    Ok(())
}

/// Asks STS who owns the key in "Arq S3" (signed with `sdk_config`, made from it); refuses a key
/// AWS does not accept.
async fn identify(current: &ArqS3<'_>, sdk_config: &SdkConfig) -> Result<Caller, Error> {
    match aws::identify(sdk_config).await? {
        Identity::Refused(reason) => Err(ApplyError::CurrentKeyRefused {
            key_id: current.id.clone(),
            reason,
        }
        .into()),
        Identity::Known(caller) => Ok(caller),
    }
}

/// The ARN, when `identity` is this computer's scoped user in its own account (the whole ARN).
fn this_computers(caller: &Caller, config: &ArqConfig) -> Option<String> {
    (caller.arn == iam_names::scoped_user_arn(&caller.account, &config.computer_uuid))
        .then(|| caller.arn.clone())
}

fn describe_plan(plan: &Plan, config: &ArqConfig) -> String {
    let user = iam_names::user_name(&config.computer_uuid);
    let mut parts = Vec::new();
    if plan.create_user {
        parts.push(format!("create IAM user {}{user}", iam_names::USER_PATH));
    }
    if plan.retag_user {
        parts.push("update its tags".to_owned());
    }
    if plan.put_policy {
        parts.push(format!("write policy {}", iam_names::POLICY_NAME));
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

/// Step 6: Arq must not run while "Arq S3" changes.
async fn make_sure_arq_has_quit(
    quit_arq: Option<Duration>,
    terminate_arq: bool,
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
                arq_app::quit(wait, terminate_arq).await?;
            }
        }
    }
    steps.note("Arq and Arq Agent are not running".to_owned());
    Ok(())
}

/// Step 8, around [`prove`]: the key to prove is the new one, or the one in "Arq S3" being
/// adopted, signing with the config the run already has for it. A new key that fails is
/// discarded: "Arq S3" never saw it.
async fn prove_or_discard(
    request: &ApplyRequest<'_>,
    local: &Local,
    issuer: &KeyIssuer<'_>,
    computer: &Computer<'_>,
    current: &ArqS3<'_>,
    issued: Option<&IssuedKey>,
    steps: &mut Steps<'_>,
) -> Result<(), Error> {
    let signed_by_new;
    let (key_id, sdk_config) = match issued {
        Some(new) => {
            signed_by_new = aws::load_config(AwsCredentials::Key(&new.key)).await;
            (&new.key.id, &signed_by_new)
        }
        None => (&current.id, local.signed_by(current).await?),
    };
    let proven = prove(
        key_id,
        sdk_config,
        issued.is_some(),
        computer.config,
        request.policy_options,
        request.verify_timeout,
        steps,
    )
    .await;
    if let (Err(_), Some(new)) = (&proven, issued) {
        issuer.discard(computer, new).await?;
    }
    proven
}

/// Step 8: waits until AWS accepts `key_id` (signed with `sdk_config`; new IAM keys take seconds
/// to work), then runs the verify suite until every Arq call works or `timeout` passes. Another
/// computer's data being reachable, or more than the computers' folder names being listable (a
/// policy whose listing conditions are wrong), fails at once. The first verify runs beside the
/// first identity check — a key that already works is proven without waiting for STS — and is set
/// aside if STS does not accept the key yet; the waits after that are short and even, so the run
/// goes on within a poll of the key working.
async fn prove(
    key_id: &str,
    sdk_config: &SdkConfig,
    new_key: bool,
    config: &ArqConfig,
    options: PolicyOptions,
    timeout: Duration,
    steps: &mut Steps<'_>,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    let wait = async || {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep(POLL.min(deadline - now)).await;
        true
    };
    let options = VerifyOptions {
        no_computer_listing: options.no_computer_listing,
        ..VerifyOptions::default()
    };
    let run_verify = || verify::verify(sdk_config, key_id.to_owned(), config, &options);
    let (identity, first) = tokio::join!(aws::identify(sdk_config), run_verify());
    let mut report = match identity? {
        Identity::Known(_) => first?,
        Identity::Refused(_) => {
            while let Identity::Refused(_) = aws::identify(sdk_config).await? {
                if !wait().await {
                    break;
                }
            }
            run_verify().await?
        }
    };
    loop {
        match report.verdict {
            Verdict::Isolated => {
                steps.note(format!(
                    "key {} verified: Arq's calls work, other computers' data is refused",
                    key_id
                ));
                return Ok(());
            }
            Verdict::ArqBroken if wait().await => report = run_verify().await?,
            verdict if new_key => {
                return Err(ApplyError::NewKeyRejected {
                    key_id: key_id.to_owned(),
                    verdict,
                    detail: report.failures_in_brief(),
                }
                .into());
            }
            verdict => {
                return Err(ApplyError::CurrentKeyRejected {
                    verdict,
                    detail: report.failures_in_brief(),
                }
                .into());
            }
        }
    }
}

/// Steps 9 and 10 for a new key: "Arq S3" updated in place, then the keys it replaces retired;
/// and the user told, once, why Arq will ask for their password. Returns the keys retired.
async fn switch_arq_s3(
    request: &ApplyRequest<'_>,
    issuer: &KeyIssuer<'_>,
    computer: &Computer<'_>,
    new: &IssuedKey,
    steps: &mut Steps<'_>,
) -> Result<Vec<String>, Error> {
    update_arq_s3(request.store, new, issuer, computer).await?;
    steps.note(format!("\"Arq S3\" now holds key {}", new.key.id));
    fault::after("updated-arq-s3");
    let retired = retire_replaced(issuer, computer, new, steps).await;
    fault::after("retired");
    // Arq is not on the record's new partition list yet: its next read asks once.
    let notice = "Arq will ask for your login keychain password once when it starts again: arq-lockdown changed its S3 key. That is expected.";
    steps.note(notice.to_owned());
    arq_app::notify(notice).await;
    Ok(retired)
}

/// Step 9: writes the new key into "Arq S3" and reads back the account (never the secret: that
/// would be a second dialog). A write that fails changed nothing, so the new key is discarded and
/// Arq keeps the key it had. A write that succeeded but does not read back (someone else changed
/// the item meanwhile, or it cannot be read) keeps the new key, which may be what Arq has now.
async fn update_arq_s3(
    store: &dyn CredentialStore,
    new: &IssuedKey,
    issuer: &KeyIssuer<'_>,
    computer: &Computer<'_>,
) -> Result<(), Error> {
    if let Err(error) = store.update(&new.key) {
        issuer.discard(computer, new).await?;
        return Err(error.into());
    }
    match store.account() {
        Ok(id) if id == new.key.id => Ok(()),
        _ => Err(ApplyError::StoreReadBack {
            store: store.describe(),
            key_id: new.key.id.clone(),
        }
        .into()),
    }
}

/// Step 10: the keys the new one replaces go (the previous scoped key; with the service, any the user
/// still has); the main keys are the admin's and stay. Returns the keys deleted.
async fn retire_replaced(
    issuer: &KeyIssuer<'_>,
    computer: &Computer<'_>,
    new: &IssuedKey,
    steps: &mut Steps<'_>,
) -> Vec<String> {
    let mut retired = Vec::new();
    for (old, result) in issuer.retire(computer, new).await {
        match result {
            Ok(()) => {
                steps.note(format!("retired the previous scoped key {old}"));
                retired.push(old);
            }
            Err(e) => steps.warn(format!(
                "the previous scoped key {old} was not deleted ({e}); the next rotation removes it"
            )),
        }
    }
    retired
}

/// Step 11: Arq runs again.
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

/// Step 12: the receipt, last: a run that dies before this point is simply done again.
fn write_receipt(
    request: &ApplyRequest<'_>,
    config: &ArqConfig,
    policy: &PolicyDocument,
    key_id: &str,
    user_arn: &str,
    steps: &mut Steps<'_>,
) -> Result<(), Error> {
    Receipt {
        bucket: config.bucket.to_string(),
        computer_uuid: config.computer_uuid.to_string(),
        access_key_id: key_id.to_owned(),
        user_arn: user_arn.to_owned(),
        policy_sha256: receipt::policy_sha256(policy),
        policy_options: request.policy_options,
        source: request.source.kind(),
        applied_at_unix: receipt::now_unix(),
    }
    .save(&request.home)?;
    steps.note(format!(
        "receipt written to {}",
        Receipt::path(&request.home).display()
    ));
    Ok(())
}

fn outcome(
    result: ApplyResult,
    config: &ArqConfig,
    key_id: &str,
    steps: &mut Steps<'_>,
    fill: impl FnOnce(&mut Outcome),
) -> Outcome {
    let mut outcome = Outcome {
        result,
        computer_uuid: config.computer_uuid.to_string(),
        bucket: config.bucket.to_string(),
        access_key_id: key_id.to_owned(),
        previous_access_key_id: None,
        user_arn: None,
        retired_access_key_ids: Vec::new(),
        main_keys_removed: false,
        plan: None,
        relaunched_with: None,
        receipt: None,
        steps: std::mem::take(&mut steps.done),
        warnings: std::mem::take(&mut steps.warnings),
    };
    fill(&mut outcome);
    outcome
}
