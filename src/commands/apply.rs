//! `arq-lockdown apply`: lock this Mac down, with settings from flags, then the configuration profile.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Error;
use crate::apply::{ApplyRequest, ApplyResult, Outcome, Relaunch, apply};
use crate::arq_app;
use crate::arq_config::{ArqConfig, ConfigError};
use crate::cli::ApplyArgs;
use crate::credential_store::CredentialStore;
use crate::exit_code::ExitCode;
use crate::key_source::root::{Request, Response, RootBroker, RootsChoices};
use crate::key_source::{AdminCredentials, KeySource, ServiceClient, SourceKind};
use crate::policy::PolicyOptions;
use crate::preferences::{PreferenceFiles, Preferences};
use crate::receipt;
use crate::run_log::{self, RunLog, Severity};
use crate::secret::Secret;
use crate::session::{self, Handover, UserRun};
use crate::setback::{Setback, SetbackKind};
use crate::system;

pub async fn run(mut args: ApplyArgs) -> Result<ExitCode, Error> {
    // A run started by root is the user's run already (even when that user is root).
    let mac = &args.mac;
    if !mac.handover_stdin
        && let Some((user, home)) = super::user_to_act_for(
            mac.user.as_deref(),
            &mac.credential_store,
            mac.arq_home.as_deref(),
        )?
    {
        return run_as_the_user(&args, &user, home).await;
    }
    let enrollment_token = take_handover(&mut args)?;
    let user = session::current_user().map(|u| u.name).unwrap_or_default();
    let preferences = PreferenceFiles::for_user(&user).load()?;
    let home = super::home(args.mac.arq_home.clone())?;
    let log = RunLog::open(&home, preferences.log_level.unwrap_or_default());
    if args.managed {
        if let Some(reason) = why_this_managed_run_waits(&preferences, &home) {
            return nothing_done(&reason, log.as_ref(), args.json);
        }
    } else if preferences.enabled == Some(false) {
        eprintln!(
            "arq-lockdown: warning: the configuration profile switches arq-lockdown off on this Mac (Enabled = false); going on because this run was started by hand"
        );
    }
    let store = args.mac.credential_store.open()?;
    let json = args.json;
    let request = request_from(args, preferences, home, store.as_ref(), enrollment_token)?;
    let outcome = apply(request, log.as_ref()).await.inspect_err(|error| {
        if let Some(log) = &log {
            let severity = match error.exit_code() {
                ExitCode::Internal => Severity::Fault,
                _ => Severity::Error,
            };
            log.write(severity, &format!("error: {error}"));
        }
    })?;
    output(&match json {
        true => super::json_text(&outcome),
        false => summary(&outcome),
    })?;
    Ok(ExitCode::Success)
}

/// Prints `text`; in a run started by root, sends it up for root to print.
fn output(text: &str) -> Result<(), Error> {
    match session::to_root() {
        Some(mut root) => Ok(root.send(&Request::Output {
            text: text.to_owned(),
        })?),
        None => super::print(text),
    }
}

/// In a run started by root: takes root's handover (the settings, root's offer to do the IAM
/// work with admin credentials it keeps) and returns the enrollment token. Otherwise the token
/// is the environment's.
fn take_handover(args: &mut ApplyArgs) -> Result<Option<Secret>, Error> {
    if !args.mac.handover_stdin {
        return Ok(enrollment_token_from_env());
    }
    let mut handover = session::receive_handover()?;
    let admin_elsewhere = matches!(
        args.admin_credentials,
        AdminCredentials::Chain | AdminCredentials::Profile(_)
    );
    if handover.iam_by_root && admin_elsewhere {
        args.admin_credentials = AdminCredentials::Root;
    }
    Ok(handover.enrollment_token.take().map(Secret::new))
}

/// Root, for a user: runs this command again as them (see [`crate::session`]), answers its IAM
/// requests with the admin credentials `env` or `profile:NAME` resolve here — root's environment
/// and AWS config, which never go down — and prints its outcome. Returns the run's exit code.
async fn run_as_the_user(
    args: &ApplyArgs,
    user: &session::User,
    home: Option<PathBuf>,
) -> Result<ExitCode, Error> {
    let admin = match args.admin_credentials.sdk_config().await {
        Some(config) => {
            super::found_credentials(&config, super::ADMIN_CREDENTIALS_FIX).await?;
            Some(config)
        }
        None => None,
    };
    let mut settings = session::settings_from_env();
    if let Some(config) = &admin {
        where_the_admins_aws_is(&mut settings, config);
    }
    let handover = Handover {
        settings,
        enrollment_token: enrollment_token_from_env().map(|t| t.expose().to_owned()),
        iam_by_root: admin.is_some(),
    };
    // The profile is root's to read (/Library/Managed Preferences); the run reports its errors.
    let preferences = PreferenceFiles::for_user(&user.name)
        .load()
        .unwrap_or_default();
    let mac = &args.mac;
    let forwarded = session::forwarded_arguments(
        std::env::args_os().skip(1),
        &mac.credential_store,
        home.as_deref(),
    );
    let within = longest_run(args, &preferences);
    let mut run = UserRun::start(user, &forwarded, &handover, within).await?;
    let home = home.unwrap_or_else(|| user.home.clone());
    let mut broker =
        admin.map(|config| RootBroker::new(config, home, roots_choices(args, &preferences)));
    while let Some(request) = run.receive::<Request>().await? {
        match (request, broker.as_mut()) {
            (Request::Output { text }, _) => super::print(&session::shown_safely(&text))?,
            (request, Some(broker)) => run.send(&broker.answer(request).await).await?,
            (_, None) => {
                let message = "root holds no admin credentials for this run".to_owned();
                let exit_code = ExitCode::Internal as i32;
                run.send(&Response::Failed { message, exit_code }).await?;
            }
        }
    }
    let code = run.finish().await?;
    Ok(ExitCode::from_code(code).unwrap_or(ExitCode::Internal))
}

/// The endpoint and region of the admin's AWS config (root's), for the run as the user to verify
/// the new key where it was made — so the user's own `~/.aws/config` cannot point it elsewhere.
fn where_the_admins_aws_is(settings: &mut Vec<(String, String)>, config: &aws_config::SdkConfig) {
    let resolved = [
        ("AWS_ENDPOINT_URL", config.endpoint_url().map(str::to_owned)),
        ("AWS_REGION", config.region().map(|r| r.to_string())),
    ];
    for (name, value) in resolved {
        if let Some(value) = value {
            settings.retain(|(n, _)| n != name);
            settings.push((name.to_owned(), value));
        }
    }
}

/// What root decides itself about the computer's IAM user: the policy options, boundary, tags
/// and rotation, from its own arguments and the profile (never from the run as the user).
fn roots_choices(args: &ApplyArgs, preferences: &Preferences) -> RootsChoices {
    RootsChoices {
        options: policy_options(args, preferences),
        boundary: (args.permissions_boundary.clone())
            .or_else(|| preferences.permissions_boundary.clone()),
        name: args.computer_name.clone().or_else(system::computer_name),
        serial: args.serial_number.clone().or_else(system::serial_number),
        rotate: args.rotate,
    }
}

/// How long root waits for its run as the user: the run's own waits (the lock, Arq quitting,
/// the new key working), plus a margin for its AWS calls, each bounded by the SDK's time-outs.
fn longest_run(args: &ApplyArgs, preferences: &Preferences) -> Duration {
    const AWS_MARGIN: Duration = Duration::from_secs(300);
    let seconds = |flag: Option<Duration>, preference: Option<u64>, default: u64| {
        flag.unwrap_or(Duration::from_secs(preference.unwrap_or(default)))
    };
    args.lock_timeout.unwrap_or(Duration::from_secs(120))
        + seconds(args.wait, preferences.wait_seconds, 30)
        + seconds(args.verify_timeout, preferences.verify_timeout_seconds, 60)
        + AWS_MARGIN
}

fn policy_options(args: &ApplyArgs, preferences: &Preferences) -> PolicyOptions {
    PolicyOptions {
        legacy_glacier: args.legacy_glacier || preferences.legacy_glacier == Some(true),
        no_computer_listing: args.no_computer_listing
            || preferences.no_computer_listing == Some(true),
    }
}

/// The run's settings: each flag, else the profile's value, else the default.
fn request_from(
    args: ApplyArgs,
    preferences: Preferences,
    home: PathBuf,
    store: &dyn CredentialStore,
    enrollment_token: Option<Secret>,
) -> Result<ApplyRequest<'_>, Error> {
    let seconds = |flag: Option<Duration>, preference: Option<u64>, default: u64| {
        flag.unwrap_or(Duration::from_secs(preference.unwrap_or(default)))
    };
    let policy_options = policy_options(&args, &preferences);
    let relaunch = match (
        args.no_relaunch || preferences.relaunch == Some(false),
        args.relaunch_command,
    ) {
        (true, _) => Relaunch::Skip,
        (false, Some(program)) => Relaunch::Command(program),
        (false, None) => Relaunch::Default,
    };
    let source = match args.source.or(preferences.source) {
        Some(SourceKind::Service) => {
            let url = args
                .service_url
                .or(preferences.service_url)
                .ok_or(Error::MissingServiceUrl)?;
            let token = enrollment_token.or(preferences.enrollment_token);
            let service_id = args.service_id.or(preferences.service_id);
            KeySource::Service(Box::new(ServiceClient::new(&url, service_id, token)?))
        }
        Some(SourceKind::Iam) | None => KeySource::Iam {
            admin: args.admin_credentials,
            permissions_boundary: args
                .permissions_boundary
                .or(preferences.permissions_boundary),
        },
    };
    Ok(ApplyRequest {
        home,
        store,
        source,
        policy_options,
        rotate: args.rotate,
        dry_run: args.dry_run,
        quit_arq: (args.quit_arq || preferences.quit_arq == Some(true))
            .then(|| seconds(args.wait, preferences.wait_seconds, 30)),
        terminate_arq: args.terminate_arq || preferences.terminate_arq == Some(true),
        verify_timeout: seconds(args.verify_timeout, preferences.verify_timeout_seconds, 60),
        lock_timeout: args.lock_timeout.unwrap_or(Duration::from_secs(120)),
        relaunch,
        computer_name: args.computer_name.or_else(system::computer_name),
        serial_number: args.serial_number.or_else(system::serial_number),
    })
}

/// Why a managed run (the agent's, every hour) has nothing to do here, if it has not: the profile
/// switches arq-lockdown off; this user has no Arq that arq-lockdown can lock down (none set up,
/// or Arq 6 or later); no profile says where keys come from yet; or the user denied the Keychain
/// dialog and the backoff ([`crate::setback::keychain_backoff_hours`]) has not run out.
fn why_this_managed_run_waits(preferences: &Preferences, home: &Path) -> Option<String> {
    if preferences.enabled == Some(false) {
        return preferences.why_a_managed_run_waits().map(str::to_owned);
    }
    if let Some(version) = arq_app::unsupported_version() {
        return Some(format!(
            "Arq {version} is installed, and arq-lockdown locks down Arq 5 and earlier only (Arq 6 and later keep their keys elsewhere)"
        ));
    }
    if let Err(ConfigError::NotFound { path }) = ArqConfig::read_from_home(home) {
        return Some(format!(
            "Arq is not set up for this user (no {})",
            path.display()
        ));
    }
    if let Some(reason) = preferences.why_a_managed_run_waits() {
        return Some(reason.to_owned());
    }
    let setback = Setback::load(home).filter(|s| s.kind == SetbackKind::KeychainDenied)?;
    let retry_after = setback.retry_after_unix();
    (receipt::now_unix() < retry_after).then(|| {
        format!(
            "{} ({} time(s) in a row), so the agent does not ask again before {}; a run by hand asks at once",
            setback.detail,
            setback.count,
            run_log::utc_timestamp(retry_after)
        )
    })
}

/// A managed run with nothing to do here: says why (stdout, and once a day the log an admin
/// reads), exit 0 — nothing is wrong that this run could mend, and the agent looks again within
/// the hour.
fn nothing_done(reason: &str, log: Option<&RunLog>, json: bool) -> Result<ExitCode, Error> {
    if let Some(log) = log {
        log.once_a_day(Severity::Step, &format!("nothing done: {reason}"));
    }
    output(&match json {
        true => super::json_text(&serde_json::json!({"result": "nothing-done", "reason": reason})),
        false => format!("nothing done: {reason}\n"),
    })?;
    Ok(ExitCode::Success)
}

/// `ARQ_LOCKDOWN_ENROLLMENT_TOKEN`, when set and not empty.
fn enrollment_token_from_env() -> Option<Secret> {
    std::env::var("ARQ_LOCKDOWN_ENROLLMENT_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .map(Secret::new)
}

fn summary(outcome: &Outcome) -> String {
    let mut text = match outcome.result {
        ApplyResult::AlreadyLockedDown => {
            format!(
                "already locked down: \"Arq S3\" holds {}, the key of {}\n",
                outcome.access_key_id,
                outcome.user_arn.as_deref().unwrap_or("?")
            )
        }
        ApplyResult::PolicyOutdated => format!(
            "locked down under an older policy (policy-outdated): \"Arq S3\" holds {}, the key of {}\n",
            outcome.access_key_id,
            outcome.user_arn.as_deref().unwrap_or("?")
        ),
        ApplyResult::DryRun => {
            format!(
                "dry run, nothing was changed; {}\n",
                outcome.steps.last().map_or("", String::as_str)
            )
        }
        ApplyResult::LockedDown => format!(
            "locked down: \"Arq S3\" holds {}, the key of {}\n",
            outcome.access_key_id,
            outcome.user_arn.as_deref().unwrap_or("?")
        ),
    };
    if let (true, Some(previous)) = (outcome.main_keys_removed, &outcome.previous_access_key_id) {
        text += &format!(
            "the previous key {previous} is no longer on this Mac; it is still valid in IAM (the main keys, or a key made outside arq-lockdown: yours to keep or delete)\n"
        );
    }
    for warning in &outcome.warnings {
        text += &format!("warning: {warning}\n");
    }
    text
}
