//! `arq-lockdown status`: is this Mac locked down? Local files only — the receipt, Arq's config,
//! the id of the key in "Arq S3", the fingerprint of this Mac's enrollment key (our own item, no
//! dialog), the setback of the last apply, the profile — unless `--check` asks AWS about the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::arq_app;
use crate::arq_config::ArqConfig;
use crate::aws::{self, AwsCredentials, Identity};
use crate::cli::StatusArgs;
use crate::credential_store::{ArqS3, CredentialStore, StoreError};
use crate::exit_code::ExitCode;
use crate::extension_attribute::Line;
use crate::preferences::PreferenceFiles;
use crate::protocol::enrollment::{self, EnrollmentKey};
use crate::receipt::{self, LocalState, Receipt};
use crate::session::{self, SessionError};
use crate::setback::{Setback, SetbackKind};

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum State {
    /// The receipt covers the key in "Arq S3" and this computer's policy.
    LockedDown,
    /// Arq is set up, but `apply` has not locked it down (or the key changed since).
    NotLockedDown,
    /// This computer's scoped key, under a policy an older arq-lockdown wrote (see
    /// [`LocalState::PolicyOutdated`]).
    PolicyOutdated,
    /// No usable Arq config for this user.
    NotConfigured,
    /// No Arq config, and no Arq app either (macOS: /Applications/Arq.app).
    ArqMissing,
    /// Arq is set up, but the credential item cannot be read (a locked Keychain, say).
    Error,
    /// `--check`: the receipt says locked down, but AWS refuses the key (revoked, or deleted).
    KeyRefused,
    /// The service refused: another Mac holds (or the admin pinned another Mac to) this computer.
    ClaimedByAnotherMac,
    /// The service refused: this computer has backups, and the admin has not confirmed this Mac.
    AwaitingConfirmation,
    /// The user denied arq-lockdown the "Arq S3" secret in the Keychain dialog.
    KeychainAccessDenied,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Status {
    state: State,
    /// The user this status is for (root acts for the console user).
    user: Option<String>,
    /// Why, when not locked down.
    detail: Option<String>,
    bucket: Option<String>,
    computer_uuid: Option<String>,
    access_key_id: Option<String>,
    /// The fingerprint (`SHA256:…`) of this Mac's enrollment key, when it has one: what the admin
    /// pins this computer to.
    enrollment_key_fingerprint: Option<String>,
    user_arn: Option<String>,
    receipt_age_seconds: Option<u64>,
    arq_running: bool,
    /// False when the configuration profile switches arq-lockdown off here (Enabled = false).
    enabled: bool,
    /// `--check`: what AWS said about the key in "Arq S3".
    aws_check: Option<AwsCheck>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AwsCheck {
    accepted: bool,
    /// Whose key it is, when accepted.
    arn: Option<String>,
    /// AWS's error code, when refused.
    refused_with: Option<String>,
}

/// How long root's extension attribute waits for the run as the user, in all (Jamf runs every
/// attribute in turn at each inventory); and `status` by hand (with `--check`, one STS call).
const EXTENSION_ATTRIBUTE_WAIT: Duration = Duration::from_secs(5);
const STATUS_WAIT: Duration = Duration::from_secs(60);

/// What the run as the user sends root: its status, or why it has none.
#[derive(Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "kebab-case", deny_unknown_fields)]
enum Answer {
    Status(Box<Status>),
    Failed { message: String, exit_code: i32 },
}

pub async fn run(args: StatusArgs) -> Result<ExitCode, Error> {
    if args.mac.handover_stdin {
        return answer_root(&args).await;
    }
    let mac = &args.mac;
    let target = super::user_to_act_for(
        mac.user.as_deref(),
        &mac.credential_store,
        mac.arq_home.as_deref(),
    );
    let for_user = target
        .as_ref()
        .ok()
        .and_then(Option::as_ref)
        .map(|(u, _)| u.name.clone());
    let found = match target {
        Ok(Some((user, home))) => status_as_the_user(&args, &user, home).await,
        Ok(None) => status_here(&args).await,
        Err(error) => Err(error),
    };
    if args.jamf_ea {
        // Jamf keeps whatever the script printed: always one line, also with nobody logged in or
        // on an error, never an empty attribute.
        let line = match &found {
            Ok(status) => {
                let line = extension_attribute(status);
                if for_user.is_some() {
                    crate::extension_attribute::remember(&line);
                }
                line
            }
            Err(Error::Session(SessionError::NoUser)) => crate::extension_attribute::last_known(),
            Err(Error::Session(SessionError::TimedOut { user, .. })) => {
                Line::new("timed-out").field("user", Some(user)).text(Some(
                    "the run as the user did not answer in time and was stopped",
                ))
            }
            Err(error) => Line::new("error")
                .field("user", for_user.as_deref())
                .text(Some(&error.to_string())),
        };
        super::print(&line.render())?;
        return Ok(ExitCode::Success);
    }
    let status = found?;
    if args.json {
        super::print_json(&status)?;
    } else {
        super::print(&session::shown_safely(&as_text(&status)))?;
    }
    Ok(ExitCode::Success)
}

/// In a run started by root: sends root this user's status (or why there is none).
async fn answer_root(args: &StatusArgs) -> Result<ExitCode, Error> {
    session::receive_handover()?;
    let (answer, code) = match status_here(args).await {
        Ok(status) => (Answer::Status(Box::new(status)), ExitCode::Success),
        Err(error) => {
            let message = error.to_string();
            let exit_code = error.exit_code();
            (
                Answer::Failed {
                    message,
                    exit_code: exit_code as i32,
                },
                exit_code,
            )
        }
    };
    session::to_root()
        .ok_or_else(|| SessionError::Handover("no channel".into()))?
        .send(&answer)?;
    Ok(code)
}

/// Root, for a user: their status from a run as them, within a deadline; `user` is root's to say.
async fn status_as_the_user(
    args: &StatusArgs,
    user: &session::User,
    home: Option<PathBuf>,
) -> Result<Status, Error> {
    let handover = session::Handover {
        settings: session::settings_from_env(),
        enrollment_token: None,
        iam_by_root: false,
    };
    let forwarded = session::forwarded_arguments(
        std::env::args_os().skip(1),
        &args.mac.credential_store,
        home.as_deref(),
    );
    let within = match args.jamf_ea {
        true => EXTENSION_ATTRIBUTE_WAIT,
        false => STATUS_WAIT,
    };
    let mut run = session::UserRun::start(user, &forwarded, &handover, within).await?;
    let answer = run.receive::<Answer>().await?;
    // An answer counts even from a run that then hangs (it is killed at the deadline).
    let ended = run.finish().await;
    match answer {
        Some(Answer::Status(mut status)) => {
            status.user = Some(user.name.clone());
            Ok(*status)
        }
        Some(Answer::Failed { message, exit_code }) => {
            Err(SessionError::reported(message, exit_code).into())
        }
        None => {
            let code = ended?;
            let message = format!(
                "the run as {} ended without an answer (exit {code})",
                user.name
            );
            Err(SessionError::reported(message, ExitCode::Internal as i32).into())
        }
    }
}

/// What `status` prints for people.
fn as_text(status: &Status) -> String {
    let mut text = format!("state: {}\n", state_word(&status.state));
    for (label, value) in [
        ("detail", status.detail.clone()),
        ("bucket", status.bucket.clone()),
        ("computer", status.computer_uuid.clone()),
        ("key in \"Arq S3\"", status.access_key_id.clone()),
        ("enrollment key", status.enrollment_key_fingerprint.clone()),
        ("IAM user", status.user_arn.clone()),
        (
            "AWS says",
            status.aws_check.as_ref().map(|check| match check {
                AwsCheck { arn: Some(arn), .. } => format!("the key works, as {arn}"),
                AwsCheck { refused_with, .. } => format!(
                    "the key is refused ({})",
                    refused_with.as_deref().unwrap_or("?")
                ),
            }),
        ),
        (
            "receipt age",
            status.receipt_age_seconds.map(|s| format!("{s} s")),
        ),
    ] {
        if let Some(value) = value {
            text += &format!("{label}: {value}\n");
        }
    }
    text += &format!(
        "Arq running: {}\n",
        if status.arq_running { "yes" } else { "no" }
    );
    if !status.enabled {
        text += "switched off: the configuration profile sets Enabled = false\n";
    }
    text
}

/// The state's kebab-case word.
fn state_word(state: &State) -> String {
    serde_json::to_value(state)
        .expect("serializes")
        .as_str()
        .unwrap_or("error")
        .to_owned()
}

/// The status of this user (of the home given).
async fn status_here(args: &StatusArgs) -> Result<Status, Error> {
    let home = super::home(args.mac.arq_home.clone())?;
    let store = args.mac.credential_store.open();
    let mut status = status(&home, &store);
    // A profile apply cannot read stops apply with its own message; here it only cannot say "off".
    status.enabled = PreferenceFiles::for_user(status.user.as_deref().unwrap_or_default())
        .load()
        .map_or(true, |preferences| preferences.enabled != Some(false));
    if let (true, Ok(store), Some(_)) = (args.check, &store, &status.access_key_id) {
        check_with_aws(&mut status, store.as_ref()).await?;
    }
    Ok(status)
}

/// `--check`: one STS call signed with the key in "Arq S3" (which reads its secret). A refused key
/// is not locked down whatever the receipt says; nor is a key that works as another user.
async fn check_with_aws(status: &mut Status, store: &dyn CredentialStore) -> Result<(), Error> {
    let arq_s3 = ArqS3::open(store)?;
    let sdk_config = aws::load_config(AwsCredentials::Key(arq_s3.key()?)).await;
    let identity = aws::identify(&sdk_config).await?;
    let locked_down = matches!(status.state, State::LockedDown | State::PolicyOutdated);
    status.aws_check = Some(match identity {
        Identity::Known(caller) => {
            if locked_down && status.user_arn.as_deref() != Some(caller.arn.as_str()) {
                status.state = State::NotLockedDown;
                status.detail = Some(format!(
                    "the key works as {}, not as the receipt's user: run apply",
                    caller.arn
                ));
            }
            AwsCheck {
                accepted: true,
                arn: Some(caller.arn),
                refused_with: None,
            }
        }
        Identity::Refused(code) => {
            if locked_down {
                status.state = State::KeyRefused;
                status.detail = Some(
                    "AWS refuses the key in \"Arq S3\" (revoked?): run apply with --admin-credentials, or re-enter working keys in Arq"
                        .to_owned(),
                );
            }
            AwsCheck {
                accepted: false,
                arn: None,
                refused_with: Some(code),
            }
        }
    });
    Ok(())
}

/// `STATE key=… computer=… bucket=… enrollment-key=… user=…; what to do` (docs/deploying.md's
/// extension attribute, see [`crate::extension_attribute`]): the state and the fields an
/// inventory export is read by — each left out when unknown — then a few words for people, with
/// nothing in them that reads as a field; nothing that changes while the state does not (no ages).
fn extension_attribute(status: &Status) -> Line {
    let mut words: Vec<&str> = match status.state {
        State::LockedDown | State::NotConfigured | State::ArqMissing => vec![],
        State::ClaimedByAnotherMac => vec!["claimed by another Mac - tell your admin"],
        State::AwaitingConfirmation => {
            vec!["this Mac has backups - the admin must confirm it from the inventory"]
        }
        State::PolicyOutdated => {
            vec![
                "an older policy - the next apply with the service or admin credentials refreshes it",
            ]
        }
        State::NotLockedDown | State::Error | State::KeychainAccessDenied => {
            status.detail.as_deref().into_iter().collect()
        }
        State::KeyRefused => unreachable!("the extension attribute never checks with AWS"),
    };
    if !status.enabled {
        words.push("switched off by the configuration profile");
    }
    let text = words.join("; ").replace('=', " ");
    Line::new(&state_word(&status.state))
        .field("key", status.access_key_id.as_deref())
        .field("computer", status.computer_uuid.as_deref())
        .field("bucket", status.bucket.as_deref())
        .field(
            "enrollment-key",
            status.enrollment_key_fingerprint.as_deref(),
        )
        .field("user", status.user.as_deref())
        .text(Some(&text))
}

fn status(home: &Path, store: &Result<Box<dyn CredentialStore>, StoreError>) -> Status {
    let mut status = Status {
        state: State::NotConfigured,
        user: crate::session::current_user().map(|u| u.name),
        detail: None,
        bucket: None,
        computer_uuid: None,
        access_key_id: None,
        enrollment_key_fingerprint: None,
        user_arn: None,
        receipt_age_seconds: None,
        arq_running: arq_app::running().is_ok_and(|found| !found.is_empty()),
        enabled: true,
        aws_check: None,
    };
    let config = match ArqConfig::read_from_home(home) {
        Ok(config) => config,
        Err(e) => {
            if cfg!(target_os = "macos") && !Path::new("/Applications/Arq.app").exists() {
                status.state = State::ArqMissing;
            }
            status.detail = Some(e.to_string());
            return status;
        }
    };
    status.bucket = Some(config.bucket.to_string());
    status.computer_uuid = Some(config.computer_uuid.to_string());
    status.state = State::NotLockedDown;
    // The account alone: on a Mac reading the secret would be a dialog (Jamf runs this at every
    // inventory).
    let key_id = match store
        .as_ref()
        .map_err(ToString::to_string)
        .and_then(|store| store.account().map_err(|e| e.to_string()))
    {
        Ok(id) => id,
        Err(reason) => {
            status.state = State::Error;
            status.detail = Some(reason);
            return status;
        }
    };
    status.access_key_id = Some(key_id.clone());
    status.enrollment_key_fingerprint =
        store.as_ref().ok().and_then(|s| fingerprint_of(s.as_ref()));
    let receipt = Receipt::load(home);
    judged(&mut status, receipt.as_ref(), &config, &key_id);
    setback_state(&mut status, home, &config);
    status
}

/// The judge's state of the receipt (see [`receipt::judge`]), under the options the receipt
/// records: `status` cannot know the flags of the next apply.
fn judged(status: &mut Status, receipt: Option<&Receipt>, config: &ArqConfig, key_id: &str) {
    let options = receipt.map(|r| r.policy_options).unwrap_or_default();
    let local = receipt::judge(receipt, config, key_id, options);
    status.state = match local {
        LocalState::LockedDown => State::LockedDown,
        LocalState::PolicyOutdated => State::PolicyOutdated,
        LocalState::NoReceipt | LocalState::OtherKey(_) | LocalState::OtherPolicy => {
            State::NotLockedDown
        }
    };
    status.detail = local.detail();
    if let Some(receipt) = receipt {
        status.receipt_age_seconds = Some(receipt.age_seconds());
        if matches!(local, LocalState::LockedDown | LocalState::PolicyOutdated) {
            status.user_arn = Some(receipt.user_arn.clone());
        }
    }
}

/// The fingerprint of the enrollment key kept in `store` (arq-lockdown's own item: reading it
/// shows no dialog; "Arq S3"'s secret is never read here).
fn fingerprint_of(store: &dyn CredentialStore) -> Option<String> {
    let key = EnrollmentKey::from_stored(store.enrollment_key().ok()??)?;
    enrollment::fingerprint(&key.public())
}

/// A Mac not locked down whose last apply met a setback for this computer says so instead.
fn setback_state(status: &mut Status, home: &Path, config: &ArqConfig) {
    if !matches!(status.state, State::NotLockedDown) {
        return;
    }
    let Some(setback) = Setback::load(home).filter(|s| {
        s.computer_uuid
            .as_deref()
            .is_none_or(|uuid| uuid == config.computer_uuid.as_str())
    }) else {
        return;
    };
    status.state = match setback.kind {
        SetbackKind::ClaimedByAnotherMac => State::ClaimedByAnotherMac,
        SetbackKind::AwaitingConfirmation => State::AwaitingConfirmation,
        SetbackKind::KeychainDenied => State::KeychainAccessDenied,
    };
    status.detail = Some(setback.detail);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::{NextStep, Refresh, next_step};
    use crate::policy::{PolicyDocument, PolicyOptions};
    use crate::receipt::SourceKind;

    const KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    const UUID: &str = "32D9D7A2-3B3E-4BE7-B85B-0605AF24F570";

    fn config() -> ArqConfig {
        ArqConfig::from_values("fleet.example", UUID, "t").unwrap()
    }

    /// A receipt for `bucket` and `uuid` with `options`, under the policy this version writes
    /// unless `policy_sha256` says another.
    fn receipt(
        bucket: &str,
        uuid: &str,
        options: PolicyOptions,
        policy_sha256: Option<&str>,
    ) -> Receipt {
        let written = ArqConfig::from_values(bucket, uuid, "t").unwrap();
        let policy = receipt::policy_sha256(&PolicyDocument::scoped_to(&written, options));
        Receipt {
            bucket: bucket.to_owned(),
            computer_uuid: uuid.to_owned(),
            access_key_id: KEY.to_owned(),
            user_arn: format!("arn:aws:iam::123456789012:user/arq-lockdown/arq-{uuid}"),
            policy_sha256: policy_sha256.map_or(policy, str::to_owned),
            policy_options: options,
            source: SourceKind::Iam,
            applied_at_unix: receipt::now_unix() - 60,
        }
    }

    /// What `status` (text and JSON: the same word) and the extension attribute say for this
    /// receipt, with `key` in "Arq S3".
    fn status_and_ea(receipt: Option<&Receipt>, key: &str) -> (String, String) {
        let mut status = Status {
            state: State::NotConfigured,
            user: None,
            detail: None,
            bucket: None,
            computer_uuid: None,
            access_key_id: Some(key.to_owned()),
            enrollment_key_fingerprint: None,
            user_arn: None,
            receipt_age_seconds: None,
            arq_running: false,
            enabled: true,
            aws_check: None,
        };
        judged(&mut status, receipt, &config(), key);
        let line = extension_attribute(&status).render();
        let ea = line["<result>".len()..]
            .split([' ', ';', '<'])
            .next()
            .unwrap();
        (state_word(&status.state), ea.to_owned())
    }

    /// For the same receipt: what the agent's apply does with each key source (under the options
    /// the receipt records, as the agent's profile gave them), what `status` and the extension
    /// attribute say. Apply has nothing to do exactly where both say `locked-down`; after an
    /// upgrade that changed the policy (`policy-outdated`) every source that can refreshes it —
    /// admin credentials rewrite it, the service rotates — and the one that cannot reports it.
    #[test]
    #[rustfmt::skip]
    fn apply_status_and_the_extension_attribute_agree_on_every_receipt() {
        use NextStep::{LockDown, Nothing, Report};
        let (def, legacy) = (PolicyOptions::default(), PolicyOptions { legacy_glacier: true, ..PolicyOptions::default() });
        let older = "0".repeat(64);
        let (keep, rotate) = (LockDown { rotate: false }, LockDown { rotate: true });
        let other_uuid = "7A1E5C3B-9D2F-4E8A-B6C4-1F3D5E7A9B2C";
        for (case, receipt, key, scoped_key, admin, service, word) in [
            ("this lockdown",          Some(receipt("fleet.example", UUID, def, None)),              KEY,  Nothing, Nothing, Nothing, "locked-down"),
            ("this, legacy glacier",   Some(receipt("fleet.example", UUID, legacy, None)),           KEY,  Nothing, Nothing, Nothing, "locked-down"),
            ("newer policy",           Some(receipt("fleet.example", UUID, def, Some(&older))),      KEY,  Report,  keep,    rotate,  "policy-outdated"),
            ("newer, legacy glacier",  Some(receipt("fleet.example", UUID, legacy, Some(&older))),   KEY,  Report,  keep,    rotate,  "policy-outdated"),
            ("no receipt",             None,                                                         KEY,  keep,    keep,    keep,    "not-locked-down"),
            ("another key",            Some(receipt("fleet.example", UUID, def, None)),              "AKIAI44QH8DHBEXAMPLE", keep, keep, keep, "not-locked-down"),
            ("another bucket",         Some(receipt("old.example", UUID, def, None)),                KEY,  keep,    keep,    keep,    "not-locked-down"),
            ("another computer",       Some(receipt("fleet.example", other_uuid, def, None)),        KEY,  keep,    keep,    keep,    "not-locked-down"),
        ] {
            let options = receipt.as_ref().map(|r| r.policy_options).unwrap_or_default();
            let state = receipt::judge(receipt.as_ref(), &config(), key, options);
            let apply = |refresh| next_step(&state, false, refresh);
            assert_eq!((apply(Refresh::Cannot), apply(Refresh::WritePolicy), apply(Refresh::Rotate)), (scoped_key, admin, service), "{case}: apply");
            let (status, ea) = status_and_ea(receipt.as_ref(), key);
            assert_eq!((status.as_str(), ea.as_str()), (word, word), "{case}: status, EA");
            for found in [scoped_key, admin, service] {
                assert_eq!(found == Nothing, word == "locked-down", "{case}: apply is done exactly where status says so");
            }
            assert_eq!(scoped_key == Report, word == "policy-outdated", "{case}: apply reports what it cannot refresh");
            for refresh in [Refresh::Cannot, Refresh::WritePolicy, Refresh::Rotate] {
                assert_eq!(next_step(&state, true, refresh), rotate, "{case}: --rotate rotates");
            }
        }
    }
}
