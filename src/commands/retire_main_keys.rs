//! `arq-lockdown retire-main-keys`: the rollout's last step. Runs audit's verdict and sets the main
//! keys Inactive only when it is ready (else exit 13 with the reasons, nothing changed); `--undo`
//! sets Active again the keys a retirement switched off. Only keys the admin names
//! (`--main-key-id`) or that a lockdown replaced by proof are switched: a key only token-enrolled
//! Macs name is their claim, and may be anyone's (the service's own, say).

use serde::Serialize;

use crate::Error;
use crate::audit::decide::{MainKeySource, MainKeyStatus};
use crate::audit::{self, AuditOptions, MainKeyReport, Report};
use crate::cli::RetireArgs;
use crate::exit_code::ExitCode;
use crate::retire::{self, ChangeResult, KeyChange};

/// What the run did, for `--json`.
#[derive(Debug, Serialize)]
struct Outcome {
    result: Finished,
    changes: Vec<KeyChange>,
    /// Main keys audit knows that were not switched, and why.
    left: Vec<Left>,
    not_ready_reasons: Vec<String>,
}

/// How the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Finished {
    Retired,
    /// Nothing changed.
    NotReady,
    Restored,
}

#[derive(Debug, Serialize)]
struct Left {
    access_key_id: String,
    why: String,
}

pub async fn run(args: RetireArgs) -> Result<ExitCode, Error> {
    let sdk_config = super::admin_config(&args.admin_credentials).await;
    let admin_key_id = super::found_credentials(&sdk_config, super::ADMIN_CREDENTIALS_FIX)
        .await?
        .access_key_id()
        .to_owned();
    let clock = audit::read::IamClock::default();
    let iam_client = clock.client(&sdk_config);
    let outcome = match (&args.bucket, args.undo) {
        (Some(bucket), undo) => {
            let options = AuditOptions {
                bucket: bucket.clone(),
                main_key_ids: args.main_key_ids.clone(),
                stale_days: 30,
                names: false,
                fix_policies: false,
                admin_key_id: Some(admin_key_id),
                quiet_minutes: args.quiet_minutes,
                inventory: None,
            };
            let progress = indicatif::ProgressBar::hidden();
            let report = audit::audit(&sdk_config, &options, &progress).await?;
            match undo {
                false => retire_when_ready(&iam_client, &report).await?,
                true => {
                    let keys = switchable(&report.main_keys).0;
                    restore(&iam_client, &keys, &report.generated_at).await?
                }
            }
        }
        (None, true) if !args.main_key_ids.is_empty() => {
            restore_named(&iam_client, &clock, &args.main_key_ids).await?
        }
        (None, _) => {
            return Err(Error::Usage(
                "retire-main-keys needs --bucket (with --undo, --bucket or --main-key-id)".into(),
            ));
        }
    };
    if args.json {
        super::print_json(&outcome)?;
    } else {
        super::print(&to_text(&outcome, args.bucket.as_ref().map(|b| b.as_str())))?;
    }
    Ok(match outcome.result {
        Finished::NotReady => ExitCode::NeedsAction,
        Finished::Retired | Finished::Restored => ExitCode::Success,
    })
}

/// The main keys to switch, (id, IAM user), and those left as they are with why: only keys IAM
/// knows, named by the admin or replaced by proof, owned by a user that is not a Mac's.
fn switchable(keys: &[MainKeyReport]) -> (Vec<(String, String)>, Vec<Left>) {
    let mut switch = Vec::new();
    let mut left = Vec::new();
    for key in keys {
        let named = key
            .sources
            .iter()
            .any(|s| matches!(s, MainKeySource::Flag | MainKeySource::Recorded));
        let why = match (key.status, &key.user_name) {
            (MainKeyStatus::ScopedKey, _) => Some("a Mac's scoped key, not a main key".to_owned()),
            (MainKeyStatus::NotFound | MainKeyStatus::Refused, _) | (_, None) => {
                Some("IAM does not say whose it is (deleted, or another account's)".to_owned())
            }
            _ if !named => Some(format!(
                "only token-enrolled Macs name it (their claim, which may be anyone's key): pass --main-key-id {} if it is a main key",
                key.access_key_id
            )),
            _ => None,
        };
        match (why, &key.user_name) {
            (None, Some(user)) => switch.push((key.access_key_id.clone(), user.clone())),
            (Some(why), _) => left.push(Left {
                access_key_id: key.access_key_id.clone(),
                why,
            }),
            (None, None) => unreachable!("a key without a user is left"),
        }
    }
    (switch, left)
}

/// The verdict ready: every switchable main key Inactive; else nothing changed.
async fn retire_when_ready(
    client: &aws_sdk_iam::Client,
    report: &Report,
) -> Result<Outcome, Error> {
    if !report.ready_to_retire_main_keys {
        return Ok(Outcome {
            result: Finished::NotReady,
            changes: Vec::new(),
            left: Vec::new(),
            not_ready_reasons: report.not_ready_reasons.clone(),
        });
    }
    let (keys, left) = switchable(&report.main_keys);
    let mut changes = Vec::new();
    for (id, user) in &keys {
        changes.push(retire::deactivate(client, id, user, &report.generated_at).await?);
    }
    Ok(Outcome {
        result: Finished::Retired,
        changes,
        left,
        not_ready_reasons: Vec::new(),
    })
}

/// `--undo`: the keys a retirement switched off, Active again.
async fn restore(
    client: &aws_sdk_iam::Client,
    keys: &[(String, String)],
    at: &str,
) -> Result<Outcome, Error> {
    let mut changes = Vec::new();
    for (id, user) in keys {
        changes.push(retire::reactivate(client, id, user, at).await?);
    }
    Ok(Outcome {
        result: Finished::Restored,
        changes,
        left: Vec::new(),
        not_ready_reasons: Vec::new(),
    })
}

/// `--undo --main-key-id …` without a bucket: each key's user from IAM (GetAccessKeyLastUsed).
async fn restore_named(
    client: &aws_sdk_iam::Client,
    clock: &audit::read::IamClock,
    ids: &[String],
) -> Result<Outcome, Error> {
    use crate::audit::decide::Lookup;
    let mut keys = Vec::new();
    let mut left = Vec::new();
    for id in ids {
        match audit::read::last_use(client, id).await? {
            Lookup::Used { owner, .. } | Lookup::NeverUsed { owner } => {
                keys.push((id.clone(), owner));
            }
            Lookup::NotFound | Lookup::Refused => left.push(Left {
                access_key_id: id.clone(),
                why: "IAM does not say whose it is (deleted, or another account's)".into(),
            }),
        }
    }
    let now = audit::decide::second(clock.now().unwrap_or_else(jiff::Timestamp::now));
    let mut outcome = restore(client, &keys, &now).await?;
    outcome.left = left;
    Ok(outcome)
}

fn to_text(outcome: &Outcome, bucket: Option<&str>) -> String {
    let mut text = String::new();
    if outcome.result == Finished::NotReady {
        text += "the main keys may not be retired yet; nothing was changed:\n";
        for reason in &outcome.not_ready_reasons {
            text += &format!("- {reason}\n");
        }
        return text;
    }
    for change in &outcome.changes {
        let what = match change.result {
            ChangeResult::Changed => format!("{} → {}", change.from, change.to),
            ChangeResult::Unchanged => format!("already {}", change.to),
            ChangeResult::LeftAlone => format!(
                "{}, but not by retire-main-keys: left alone (aws iam update-access-key switches it on by hand)",
                change.from
            ),
        };
        text += &format!(
            "{} (IAM user {}): {what}\n",
            change.access_key_id, change.user_name
        );
    }
    for left in &outcome.left {
        text += &format!("{}: not switched: {}\n", left.access_key_id, left.why);
    }
    let bucket = bucket.unwrap_or("BUCKET");
    text += &match outcome.result {
        Finished::Retired => format!(
            "the main keys are off. If a Mac's backups fail, `arq-lockdown retire-main-keys --undo --bucket {bucket}` switches them on again; delete them (aws iam delete-access-key) once they have been off for a week with no Mac failing\n"
        ),
        _ => "the main keys a retirement switched off are on again\n".to_owned(),
    };
    text
}
