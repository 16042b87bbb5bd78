//! `arq-lockdown status`: is this Mac locked down? Local files only, no network.

use std::path::Path;

use serde::Serialize;

use crate::Error;
use crate::arq_app;
use crate::arq_config::ArqConfig;
use crate::cli::StatusArgs;
use crate::credential_store::{CredentialStore, StoreError};
use crate::exit_code::ExitCode;
use crate::policy::PolicyDocument;
use crate::receipt::Receipt;
use crate::session::SessionError;

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
    user_arn: Option<String>,
    receipt_age_seconds: Option<u64>,
    arq_running: bool,
}

pub fn run(args: StatusArgs) -> Result<ExitCode, Error> {
    let found = status_of_the_user(&args);
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
            ("IAM user", status.user_arn.clone()),
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
        super::print(&text)?;
    }
    Ok(ExitCode::Success)
}

/// The status of the user at the console (root runs again as them, and exits with their run's
/// code), or of this user.
fn status_of_the_user(args: &StatusArgs) -> Result<Status, Error> {
    if let Some(user) =
        super::user_to_act_for(args.mac.user.as_deref(), &args.mac.credential_store)?
    {
        super::run_again_as(&user, &crate::session::Handover::default())?;
    }
    let home = super::home(args.mac.arq_home.clone())?;
    Ok(status(&home, args.mac.credential_store.open()))
}

/// "locked down AKIA… 3600s", "not locked down: why", "not configured", "Arq missing".
fn jamf_extension_attribute(status: &Status) -> String {
    let text = match status.state {
        State::LockedDown => format!(
            "locked down {} {}s",
            status.access_key_id.as_deref().unwrap_or("?"),
            status.receipt_age_seconds.unwrap_or(0)
        ),
        State::NotLockedDown => format!(
            "not locked down: {}",
            status.detail.as_deref().unwrap_or("?")
        ),
        State::NotConfigured => "not configured".to_owned(),
        State::ArqMissing => "Arq missing".to_owned(),
        State::Error => format!("error: {}", status.detail.as_deref().unwrap_or("?")),
    };
    jamf_line(&text)
}

/// `<result>text</result>`: one line, free of the tags Jamf parses.
fn jamf_line(text: &str) -> String {
    let text = text.replace(['<', '>', '\n'], " ");
    format!("<result>{text}</result>\n")
}

fn status(home: &Path, store: Result<Box<dyn CredentialStore>, StoreError>) -> Status {
    let mut status = Status {
        state: State::NotConfigured,
        user: crate::session::current_user().map(|u| u.name),
        detail: None,
        bucket: None,
        computer_uuid: None,
        access_key_id: None,
        user_arn: None,
        receipt_age_seconds: None,
        arq_running: arq_app::running().is_ok_and(|found| !found.is_empty()),
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
    let key_id = match store.and_then(|store| store.account()) {
        Ok(id) => id,
        Err(e) => {
            status.state = State::Error;
            status.detail = Some(e.to_string());
            return status;
        }
    };
    status.access_key_id = Some(key_id.clone());
    let Some(receipt) = Receipt::load(home) else {
        status.detail = Some("no receipt: run apply".to_owned());
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
    status
}
