//! `arq-lockdown status`: is this Mac locked down? Local files only — the receipt, Arq's config,
//! the id of the key in "Arq S3", the fingerprint of this Mac's enrollment key (our own item, no
//! dialog), the setback of the last apply, the profile — unless `--check` asks AWS about the key.

use std::path::Path;

use serde::Serialize;

use crate::Error;
use crate::arq_app;
use crate::arq_config::ArqConfig;
use crate::aws::{self, AwsCredentials, Identity};
use crate::cli::StatusArgs;
use crate::credential_store::{ArqS3, CredentialStore, StoreError};
use crate::exit_code::ExitCode;
use crate::policy::PolicyDocument;
use crate::preferences::PreferenceFiles;
use crate::protocol::enrollment::{self, EnrollmentKey};
use crate::receipt::Receipt;
use crate::session::SessionError;
use crate::setback::{Setback, SetbackKind};

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
enum State {
    /// The receipt covers the key in "Arq S3" and this computer's policy.
    LockedDown,
    /// Arq is set up, but `apply` has not locked it down (or the key changed since).
    NotLockedDown,
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

#[derive(Debug, Serialize)]
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

#[derive(Debug, Serialize)]
struct AwsCheck {
    accepted: bool,
    /// Whose key it is, when accepted.
    arn: Option<String>,
    /// AWS's error code, when refused.
    refused_with: Option<String>,
}

pub async fn run(args: StatusArgs) -> Result<ExitCode, Error> {
    let found = status_of_the_user(&args).await;
    if args.jamf_ea {
        // Jamf keeps whatever the script printed: always one line, also with nobody logged in or
        // on an error, never an empty attribute.
        let line = match &found {
            Ok(status) => jamf_extension_attribute(status),
            Err(Error::Session(SessionError::NoUser)) => jamf_line("nobody logged in"),
            Err(error) => jamf_line(&format!("error: {error}")),
        };
        super::print(&line)?;
        return Ok(ExitCode::Success);
    }
    let status = found?;
    if args.json {
        super::print_json(&status)?;
    } else {
        let mut text = format!(
            "state: {}\n",
            serde_json::to_value(&status.state)
                .expect("serializes")
                .as_str()
                .unwrap_or("?")
        );
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
        super::print(&text)?;
    }
    Ok(ExitCode::Success)
}

/// The status of the user at the console (root runs again as them, and exits with their run's
/// code), or of this user.
async fn status_of_the_user(args: &StatusArgs) -> Result<Status, Error> {
    if let Some(user) =
        super::user_to_act_for(args.mac.user.as_deref(), &args.mac.credential_store)?
    {
        super::run_again_as(&user, &crate::session::Handover::default())?;
    }
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
    let locked_down = matches!(status.state, State::LockedDown);
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

/// `STATE key=… computer=… bucket=… enrollment-key=… user=…; what to do` (the README's extension
/// attribute): the state and the fields an inventory export is read by — each left out when
/// unknown — then a few words for people, with nothing in them that reads as a field.
fn jamf_extension_attribute(status: &Status) -> String {
    let mut line = serde_json::to_value(&status.state)
        .expect("serializes")
        .as_str()
        .unwrap_or("error")
        .to_owned();
    let fields = [
        ("key", &status.access_key_id),
        ("computer", &status.computer_uuid),
        ("bucket", &status.bucket),
        ("enrollment-key", &status.enrollment_key_fingerprint),
        ("user", &status.user),
    ];
    for (name, value) in fields {
        let value = value.as_deref().unwrap_or_default();
        if !value.is_empty() && !value.contains(|c: char| c.is_whitespace() || c == ';') {
            line += &format!(" {name}={value}");
        }
    }
    let mut words: Vec<&str> = match status.state {
        State::LockedDown | State::NotConfigured | State::ArqMissing => vec![],
        State::ClaimedByAnotherMac => vec!["claimed by another Mac - tell your admin"],
        State::AwaitingConfirmation => {
            vec!["this Mac has backups - the admin must confirm it from the inventory"]
        }
        State::NotLockedDown | State::Error | State::KeychainAccessDenied => {
            status.detail.as_deref().into_iter().collect()
        }
        State::KeyRefused => unreachable!("the extension attribute never checks with AWS"),
    };
    if !status.enabled {
        words.push("switched off by the configuration profile");
    }
    if !words.is_empty() {
        line += &format!("; {}", words.join("; ").replace('=', " "));
    }
    jamf_line(&line)
}

/// `<result>text</result>`: one line, free of the tags Jamf parses.
fn jamf_line(text: &str) -> String {
    let text = text.replace(['<', '>', '\n'], " ");
    format!("<result>{text}</result>\n")
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
    let Some(receipt) = Receipt::load(home) else {
        status.detail = Some("no receipt: run apply".to_owned());
        setback_state(&mut status, home, &config);
        return status;
    };
    status.receipt_age_seconds = Some(receipt.age_seconds());
    // The policy this version of the tool makes with the options the receipt records.
    let policy = PolicyDocument::scoped_to(&config, receipt.policy_options);
    if receipt.covers(&config, &key_id, &policy) {
        status.state = State::LockedDown;
        status.user_arn = Some(receipt.user_arn.clone());
    } else if receipt.access_key_id != key_id {
        status.detail = Some(format!(
            "the receipt is for key {}, not the one in \"Arq S3\": run apply",
            receipt.access_key_id
        ));
    } else {
        status.detail = Some(
            "the receipt is for another policy (a new version of arq-lockdown?): run apply"
                .to_owned(),
        );
    }
    setback_state(&mut status, home, &config);
    status
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
