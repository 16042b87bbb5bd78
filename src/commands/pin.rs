//! `arq-lockdown pin`: the admin binds each computer to the enrollment key its own Mac reported
//! to the MDM — every computer the inventory export settles, or one by hand — so that only that
//! Mac may enroll it (the service's `pinned-key` rule) and whatever another key holds of it stops.
//!
//! Per computer: no user → one is made, pinned (its tags only: no policy, no key); bound to that
//! very enrollment key → nothing; otherwise it is taken back → the pin tagged, the binding to
//! another key and the refused claims untagged, every key of the user deleted. From the inventory
//! only a computer with data that exactly one Mac reports, under its own enrollment key, is
//! pinned: two Macs reporting one are a conflict for the admin (exit 13), pinned by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use crate::Error;
use crate::arq_config::{BucketName, ComputerUuid};
use crate::audit::{self, AuditError};
use crate::aws::{self, Identity};
use crate::cli::PinArgs;
use crate::exit_code::ExitCode;
use crate::iam::{self, Iam, IamError, ScopedUser, UserTags};
use crate::iam_names;
use crate::inventory::{Inventory, ReportedBy, ReportingMac};
use crate::key_source::{KeySourceError, default_boundary};
use crate::protocol::enrollment::fingerprint;

/// Computers read and changed at once (IAM throttles each account's calls).
const CONCURRENCY: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error(
        "S3 refused s3:ListBucket on bucket {bucket}: pin --inventory pins only computers with data and needs it there (the audit policy has it: arq-lockdown policy --kind audit --bucket {bucket})"
    )]
    S3Refused { bucket: String },
}

impl PinError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::Aws
    }
}

/// What `pin` did (or, with `--dry-run`, would do) to a computer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Action {
    /// No user: one made, pinned, waiting for the Mac.
    Created,
    /// A user another key held (or none yet bound): the pin tagged, the rest taken away.
    Repinned,
    Unchanged,
    /// Reported by Macs with different enrollment keys: left for the admin.
    Conflict,
    /// Nothing to pin it to, or no need.
    Skipped,
}

#[derive(Clone, Debug, Serialize)]
struct ComputerResult {
    computer_uuid: String,
    action: Action,
    /// The fingerprint it is pinned to.
    enrollment_key: Option<String>,
    computer_name: Option<String>,
    serial: Option<String>,
    deleted_access_keys: Vec<String>,
    untagged: Vec<&'static str>,
    /// Why, for a conflict or a computer skipped.
    reason: Option<String>,
    /// From the inventory: the Macs reporting it.
    reported_by: Vec<ReportedBy>,
}

#[derive(Debug, Serialize)]
struct Answer {
    bucket: String,
    dry_run: bool,
    computers: Vec<ComputerResult>,
    /// Computers with data that no Mac of the inventory reports: not pinned.
    not_reported: Vec<String>,
    inventory_warnings: Vec<String>,
}

/// A computer to pin, and what the inventory says of it.
struct Target {
    uuid: ComputerUuid,
    fingerprint: String,
    tags: UserTags,
    reported_by: Vec<ReportedBy>,
}

pub async fn run(args: PinArgs) -> Result<ExitCode, Error> {
    let inventory = match &args.inventory {
        Some(path) => Some(Inventory::read(path, args.inventory_column.as_deref())?),
        None => None,
    };
    let sdk_config = super::admin_config(&args.admin_credentials).await;
    super::found_credentials(&sdk_config, super::ADMIN_CREDENTIALS_FIX).await?;
    let mut answer = Answer {
        bucket: args.bucket.to_string(),
        dry_run: args.dry_run,
        computers: Vec::new(),
        not_reported: Vec::new(),
        inventory_warnings: Vec::new(),
    };
    let targets = match (&inventory, &args.computer_uuid, &args.enrollment_key) {
        (Some(inventory), _, _) => {
            let with_data = computers_with_data(&sdk_config, &args.bucket).await?;
            from_inventory(inventory, &args.bucket, &with_data, &mut answer)
        }
        (None, Some(uuid), Some(print)) => vec![Target {
            uuid: uuid.clone(),
            fingerprint: print.clone(),
            tags: tags_for(uuid, &args.bucket, None, None),
            reported_by: Vec::new(),
        }],
        _ => unreachable!("the command line asks for --inventory or both by-hand flags"),
    };
    let boundary = match args.permissions_boundary.clone() {
        Some(arn) => arn,
        None => match aws::identify(&sdk_config).await? {
            Identity::Known(caller) => default_boundary(&caller.account),
            Identity::Refused(reason) => return Err(KeySourceError::AdminRefused { reason }.into()),
        },
    };
    let iam = Arc::new(Iam::new(&sdk_config));
    answer
        .computers
        .extend(pin_all(iam, targets, Arc::new(boundary), args.dry_run).await?);
    answer
        .computers
        .sort_by(|a, b| a.computer_uuid.cmp(&b.computer_uuid));
    let conflicts = answer
        .computers
        .iter()
        .any(|c| c.action == Action::Conflict);
    match args.json {
        true => super::print_json(&answer)?,
        false => super::print(&to_text(&answer))?,
    }
    Ok(match conflicts {
        true => ExitCode::NeedsAction,
        false => ExitCode::Success,
    })
}

/// The computers with data in the bucket (only those need a pin: the first enrollment of one
/// without data binds it).
async fn computers_with_data(
    sdk_config: &aws_config::SdkConfig,
    bucket: &BucketName,
) -> Result<BTreeSet<String>, Error> {
    let s3 = aws::s3_for_bucket(sdk_config, bucket.as_str()).await;
    match audit::read::computers(&s3, bucket.as_str()).await {
        Ok(found) => Ok(found.keys().map(ToString::to_string).collect()),
        Err(AuditError::S3Refused { bucket, .. }) => Err(PinError::S3Refused { bucket }.into()),
        Err(e) => Err(e.into()),
    }
}

/// The computers the inventory settles — one Mac (or Macs of one enrollment key) reporting it,
/// with data — as targets; conflicts and the rest into `answer`.
fn from_inventory(
    inventory: &Inventory,
    bucket: &BucketName,
    with_data: &BTreeSet<String>,
    answer: &mut Answer,
) -> Vec<Target> {
    answer.inventory_warnings = inventory.warnings.clone();
    answer
        .inventory_warnings
        .extend(inventory.duplicates(bucket));
    let by_computer = inventory.macs_by_computer(bucket);
    answer.not_reported = with_data
        .iter()
        .filter(|uuid| !by_computer.contains_key(uuid.as_str()))
        .cloned()
        .collect();
    let mut targets = Vec::new();
    for (uuid, macs) in &by_computer {
        match settle(uuid, macs, with_data) {
            Ok(target) => targets.push(Target {
                tags: tags_for(&target.0, bucket, macs[0].computer_name(), macs[0].serial()),
                uuid: target.0,
                fingerprint: target.1,
                reported_by: macs.iter().map(ReportingMac::summary).collect(),
            }),
            Err((action, reason)) => answer.computers.push(ComputerResult {
                action,
                reason: Some(reason),
                reported_by: macs.iter().map(ReportingMac::summary).collect(),
                computer_name: macs[0].computer_name().map(str::to_owned),
                serial: macs[0].serial().map(str::to_owned),
                ..result(uuid, action)
            }),
        }
    }
    targets
}

/// The computer `uuid` (upper case) and the fingerprint to pin it to, when the Macs reporting it
/// settle that; else why not.
fn settle(
    uuid: &str,
    macs: &[ReportingMac<'_>],
    with_data: &BTreeSet<String>,
) -> Result<(ComputerUuid, String), (Action, String)> {
    let prints: BTreeSet<Option<&str>> = macs.iter().map(ReportingMac::enrollment_key).collect();
    if prints.len() > 1 {
        let macs: Vec<String> = macs
            .iter()
            .map(|m| {
                format!(
                    "{} ({})",
                    m.label(),
                    m.enrollment_key().unwrap_or("no enrollment key")
                )
            })
            .collect();
        return Err((
            Action::Conflict,
            format!(
                "{} Macs with different enrollment keys report it: {}; find out which is its own, then pin it by hand",
                macs.len(),
                macs.join(", ")
            ),
        ));
    }
    let skipped = |reason: &str| Err((Action::Skipped, reason.to_owned()));
    if !macs.iter().all(ReportingMac::as_arq_writes) {
        return skipped(
            "its Mac writes the UUID in lower case, not as Arq does: check that Mac's app_config.plist",
        );
    }
    let Some(print) = prints.into_iter().next().flatten() else {
        return skipped(
            "its Mac reports no enrollment key (it has not used the service yet): nothing to pin it to",
        );
    };
    if !with_data.contains(uuid) {
        return skipped("no data in the bucket yet: its first enrollment binds it");
    }
    let uuid = ComputerUuid::parse(uuid).expect("an inventory record's UUID");
    Ok((uuid, print.to_owned()))
}

/// The tags a pinned computer's user gets: its UUID and bucket, and the Mac's name and serial
/// when the inventory has them.
fn tags_for(
    uuid: &ComputerUuid,
    bucket: &BucketName,
    name: Option<&str>,
    serial: Option<&str>,
) -> UserTags {
    UserTags {
        computer_uuid: uuid.to_string(),
        bucket: bucket.to_string(),
        computer_name: name.map(str::to_owned),
        serial: serial.map(str::to_owned),
        ..UserTags::default()
    }
}

fn result(uuid: &str, action: Action) -> ComputerResult {
    ComputerResult {
        computer_uuid: uuid.to_owned(),
        action,
        enrollment_key: None,
        computer_name: None,
        serial: None,
        deleted_access_keys: Vec::new(),
        untagged: Vec::new(),
        reason: None,
        reported_by: Vec::new(),
    }
}

/// Pins every target, [`CONCURRENCY`] at a time; the first IAM error stops the run (a run again
/// converges: every step is idempotent).
async fn pin_all(
    iam: Arc<Iam>,
    targets: Vec<Target>,
    boundary: Arc<String>,
    dry_run: bool,
) -> Result<Vec<ComputerResult>, IamError> {
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for target in targets {
        let (iam, boundary, permits) = (iam.clone(), boundary.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("never closed");
            pin_one(&iam, target, &boundary, dry_run).await
        });
    }
    let mut results = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let done = done.map_err(|e| IamError::Failed {
            action: "iam:GetUser",
            message: e.to_string(),
        })?;
        results.push(done?);
    }
    Ok(results)
}

/// One computer: read its user, decide, and (unless a dry run) make the change.
async fn pin_one(
    iam: &Iam,
    target: Target,
    boundary: &str,
    dry_run: bool,
) -> Result<ComputerResult, IamError> {
    let uuid = &target.uuid;
    let mut answer = ComputerResult {
        enrollment_key: Some(target.fingerprint.clone()),
        computer_name: target.tags.computer_name.clone(),
        serial: target.tags.serial.clone(),
        reported_by: target.reported_by.clone(),
        ..result(uuid.as_str(), Action::Unchanged)
    };
    let pinned = iam::pinned_tags(&target.tags, &target.fingerprint);
    // Twice at most: a user made by someone else between our read and our CreateUser is read again.
    for _ in 0..2 {
        let user = iam.user(uuid).await?;
        let key_ids = match &user {
            Some(user) if !bound_to(user, &target.fingerprint) => iam.key_ids(uuid).await?,
            _ => Vec::new(),
        };
        match change(user.as_ref(), &key_ids, &target.fingerprint, &pinned) {
            Change::Unchanged => return Ok(answer),
            Change::Create => {
                answer.action = Action::Created;
                if dry_run
                    || iam
                        .create_tagged_user(uuid, &pinned, boundary)
                        .await?
                        .is_some()
                {
                    return Ok(answer);
                }
            }
            Change::Repin {
                tags,
                untag,
                delete_keys,
            } => {
                answer.action = Action::Repinned;
                if !dry_run {
                    // The pin first: from then on only the pinned key may bind the computer.
                    if !tags.is_empty() {
                        iam.add_tags(uuid, &tags).await?;
                    }
                    if !untag.is_empty() {
                        iam.untag(uuid, &untag).await?;
                    }
                    for key in &delete_keys {
                        iam.delete_key(uuid, key).await?;
                    }
                }
                answer.untagged = untag;
                answer.deleted_access_keys = delete_keys;
                return Ok(answer);
            }
        }
    }
    Err(IamError::Failed {
        action: "iam:CreateUser",
        message: format!("the user of {uuid} was made and deleted meanwhile twice; run again"),
    })
}

/// What pinning a computer to `print` changes.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    /// No user: make it with the `pinned` tags.
    Create,
    Unchanged,
    /// Take the user back: set `tags`, remove `untag`, delete `delete_keys`.
    Repin {
        tags: Vec<(&'static str, String)>,
        untag: Vec<&'static str>,
        delete_keys: Vec<String>,
    },
}

/// Whether the service bound `user` to the enrollment key with fingerprint `print`.
fn bound_to(user: &ScopedUser, print: &str) -> bool {
    user.enrollment_key().and_then(fingerprint).as_deref() == Some(print)
}

/// The change that pins `user` (with keys `key_ids`) to `print`, given the tags a pinned user
/// has (`pinned`). A user bound to that very key keeps everything but refused claims.
fn change(
    user: Option<&ScopedUser>,
    key_ids: &[String],
    print: &str,
    pinned: &[(&'static str, String)],
) -> Change {
    let Some(user) = user else {
        return Change::Create;
    };
    let present = |keys: &[&'static str]| -> Vec<&'static str> {
        keys.iter()
            .copied()
            .filter(|key| user.tag(key).is_some())
            .collect()
    };
    let (tags, untag, delete_keys) = match bound_to(user, print) {
        true => (
            Vec::new(),
            present(&[iam_names::REFUSED_CLAIM_TAG]),
            Vec::new(),
        ),
        false => (
            pinned
                .iter()
                .filter(|(key, value)| user.tag(key) != Some(value.as_str()))
                .cloned()
                .collect(),
            present(&iam::UNPINNED_TAGS),
            key_ids.to_vec(),
        ),
    };
    match tags.is_empty() && untag.is_empty() && delete_keys.is_empty() {
        true => Change::Unchanged,
        false => Change::Repin {
            tags,
            untag,
            delete_keys,
        },
    }
}

/// A line per computer, then the counts.
fn to_text(answer: &Answer) -> String {
    let mut text = String::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for computer in &answer.computers {
        let print = computer.enrollment_key.as_deref().unwrap_or("?");
        let uuid = &computer.computer_uuid;
        let (word, detail) = match computer.action {
            Action::Created => (
                "pinned",
                format!("to {print}: a user waiting for that Mac's enrollment"),
            ),
            Action::Repinned => ("pinned", repinned(computer, print)),
            Action::Unchanged => ("unchanged", format!("already pinned or bound to {print}")),
            Action::Conflict => (
                "conflict",
                format!(
                    "{}: arq-lockdown pin --bucket {} --computer-uuid {uuid} --enrollment-key SHA256:…",
                    computer.reason.as_deref().unwrap_or_default(),
                    answer.bucket
                ),
            ),
            Action::Skipped => ("skipped", computer.reason.clone().unwrap_or_default()),
        };
        *counts.entry(word).or_default() += 1;
        let word = match (answer.dry_run, word) {
            (true, "pinned") => "would pin",
            _ => word,
        };
        text += &format!("{word} {uuid}: {detail}\n");
    }
    for warning in &answer.inventory_warnings {
        text += &format!("inventory warning: {warning}\n");
    }
    if !answer.not_reported.is_empty() {
        text += &format!(
            "{} computer(s) with data that no Mac of the inventory reports: not pinned (audit --inventory shows them)\n",
            answer.not_reported.len()
        );
    }
    let count = |word| counts.get(word).copied().unwrap_or(0);
    text += &format!(
        "{}{} pinned, {} unchanged, {} conflicts, {} skipped\n",
        if answer.dry_run {
            "dry run, nothing changed: "
        } else {
            ""
        },
        count("pinned"),
        count("unchanged"),
        count("conflict"),
        count("skipped")
    );
    text
}

/// What taking a computer back did.
fn repinned(computer: &ComputerResult, print: &str) -> String {
    let mut done = vec![format!("to {print}")];
    if !computer.deleted_access_keys.is_empty() {
        done.push(format!(
            "deleted key(s) {} (they no longer work)",
            computer.deleted_access_keys.join(", ")
        ));
    }
    if !computer.untagged.is_empty() {
        done.push(format!("removed {}", computer.untagged.join(", ")));
    }
    done.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRINT: &str = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
    /// A 32-byte enrollment public key (base64), and another.
    const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    const OTHER_KEY: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

    fn pinned_tags() -> Vec<(&'static str, String)> {
        let uuid = ComputerUuid::parse("32D9D7A2-3B3E-4BE7-B85B-0605AF24F570").unwrap();
        let bucket = BucketName::parse("fleet.example").unwrap();
        iam::pinned_tags(&tags_for(&uuid, &bucket, Some("Vic's Mac"), None), PRINT)
    }

    /// A user with the pinned tags, then `extra` (a value of "" removes the tag).
    fn user(extra: &[(&str, &str)]) -> ScopedUser {
        let mut tags: BTreeMap<String, String> = pinned_tags()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        for (key, value) in extra {
            match value.is_empty() {
                true => tags.remove(*key),
                false => tags.insert((*key).to_owned(), (*value).to_owned()),
            };
        }
        ScopedUser::with_tags(tags)
    }

    #[test]
    #[rustfmt::skip]
    fn a_computer_is_made_pinned_taken_back_or_left_alone() {
        let print_of_key = fingerprint(KEY).unwrap();
        let enrollment = "arq-lockdown:enrollment-key";
        let keys = vec!["AKIASQUATTEREXAMPLE1".to_owned()];
        type Case<'a> = (&'a str, Option<ScopedUser>, Vec<String>, &'a str, Change);
        let cases: Vec<Case> = vec![
            ("no user", None, vec![], PRINT, Change::Create),
            ("pinned and waiting", Some(user(&[])), vec![], PRINT, Change::Unchanged),
            ("bound to that very key", Some(user(&[(enrollment, KEY)])), vec![], &print_of_key, Change::Unchanged),
            ("bound to it, a refused claim recorded", Some(user(&[(enrollment, KEY), (iam_names::REFUSED_CLAIM_TAG, "1 x")])), vec![], &print_of_key, Change::Repin { tags: vec![], untag: vec![iam_names::REFUSED_CLAIM_TAG], delete_keys: vec![] }),
            ("a squatter's user (apply --source iam)", Some(user(&[(iam_names::PINNED_KEY_TAG, "")])), keys.clone(), PRINT, Change::Repin { tags: vec![(iam_names::PINNED_KEY_TAG, PRINT.into())], untag: vec![], delete_keys: keys.clone() }),
            ("bound to another Mac's key", Some(user(&[(enrollment, OTHER_KEY), (iam_names::PINNED_KEY_TAG, "")])), keys.clone(), PRINT, Change::Repin { tags: vec![(iam_names::PINNED_KEY_TAG, PRINT.into())], untag: vec![enrollment], delete_keys: keys.clone() }),
            ("pinned, but a key made since", Some(user(&[])), keys.clone(), PRINT, Change::Repin { tags: vec![], untag: vec![], delete_keys: keys.clone() }),
            ("pinned to another key", Some(user(&[(iam_names::PINNED_KEY_TAG, "SHA256:other")])), vec![], PRINT, Change::Repin { tags: vec![(iam_names::PINNED_KEY_TAG, PRINT.into())], untag: vec![], delete_keys: vec![] }),
            ("the squatter's name and another bucket", Some(user(&[(iam_names::NAME_TAG, "Sam's Mac"), ("arq-lockdown:bucket", "other.example"), (iam_names::REFUSED_CLAIM_TAG, "1 x")])), vec![], PRINT, Change::Repin { tags: vec![("arq-lockdown:bucket", "fleet.example".into()), (iam_names::NAME_TAG, "Vic_s Mac".into())], untag: vec![iam_names::REFUSED_CLAIM_TAG], delete_keys: vec![] }),
        ];
        for (name, user, key_ids, print, expected) in cases {
            assert_eq!(change(user.as_ref(), &key_ids, print, &pinned_tags()), expected, "{name}");
        }
    }
}
