//! `audit`: is the whole fleet locked down, and may the main keys be switched off?
//!
//! Owns the admin's view of one bucket's fleet: [`read`] gathers the computers in the bucket
//! (folders and `computerinfo`), the scoped users with their policies, keys and last use, and the
//! main keys' last use; [`decide`] gives each computer one state and the fleet its verdict;
//! [`html`] renders the report as a page and [`history`] keeps its counts run by run;
//! this file puts them together — with `--inventory`, beside what each Mac reported to the MDM
//! ([`crate::inventory`]) — and, with `--fix-policies`, rewrites drifted inline policies — the
//! only write to AWS it ever makes (never a key, a user, or a detach). Admin credentials only:
//! never a Mac's "Arq S3".

pub mod decide;
pub mod history;
pub mod html;
pub mod read;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use aws_config::SdkConfig;
use jiff::Timestamp;
use serde::Serialize;

use self::decide::{
    Claims, ComputerFacts, ComputerState, Info, Lookup, MacReport, MainKey, MainKeySource,
    MainKeyStatus, Rules, UserFacts,
};
use self::read::Presence;
use crate::arq_config::{BucketName, ComputerUuid};
use crate::aws;
use crate::exit_code::ExitCode;
use crate::iam::IamError;
use crate::iam_names;
use crate::inventory::{Inventory, ReportedBy, ReportingMac};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(
        "IAM refused {action} to these admin credentials: audit needs {} (and {} for --fix-policies); `arq-lockdown policy --kind audit --bucket BUCKET` prints the policy",
        iam_names::AUDIT_ACTIONS.join(", "),
        iam_names::AUDIT_FIX_ACTION
    )]
    Refused { action: &'static str },
    #[error(
        "S3 refused {action} on bucket {bucket} to these admin credentials: audit needs s3:ListBucket there (and s3:GetObject on {bucket}/*/computerinfo); `arq-lockdown policy --kind audit --bucket {bucket}` prints the policy"
    )]
    S3Refused {
        action: &'static str,
        bucket: String,
    },
    #[error(
        "there is no bucket {bucket}: check --bucket (exactly as Arq stores it, dot included) and AWS_REGION"
    )]
    NoSuchBucket { bucket: String },
    #[error(transparent)]
    Unreachable(#[from] crate::aws::Unreachable),
    #[error("S3 {action} failed: {message}")]
    S3Failed {
        action: &'static str,
        message: String,
    },
    #[error(transparent)]
    Iam(IamError),
}

impl AuditError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::NoSuchBucket { .. } => ExitCode::ConfigInvalid,
            _ => ExitCode::Aws,
        }
    }
}

/// What to audit and how.
#[derive(Clone, Debug)]
pub struct AuditOptions {
    pub bucket: BucketName,
    pub main_key_ids: Vec<String>,
    pub stale_days: u32,
    /// Read each computer's `computerinfo` for its name (`--no-names`: not).
    pub names: bool,
    pub fix_policies: bool,
    /// The access key id of the admin credentials audit runs with.
    pub admin_key_id: Option<String>,
    /// How long no use of a main key must be recorded ([`decide::DEFAULT_QUIET_MINUTES`]).
    pub quiet_minutes: u32,
    /// `--inventory`: what the Macs reported to the MDM, to confirm each computer by.
    pub inventory: Option<Inventory>,
}

/// One access key of a computer's scoped user, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct AccessKeyReport {
    /// `null` where audit did not ask IAM for the user's keys (the credential report has no ids).
    pub access_key_id: Option<String>,
    pub active: bool,
    pub created: Option<String>,
    pub last_used: Option<String>,
    pub last_used_service: Option<String>,
    pub last_used_region: Option<String>,
}

/// One computer, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct ComputerReport {
    pub computer_uuid: String,
    pub computer_name: Option<String>,
    /// The Mac's user, from computerinfo.
    pub user_name: Option<String>,
    pub state: ComputerState,
    pub user_arn: Option<String>,
    pub access_keys: Vec<AccessKeyReport>,
    /// What to do; `null` when locked down.
    pub action: Option<String>,
    /// Whether the bucket holds data of this computer.
    pub in_bucket: bool,
    /// `read`, `missing`, `malformed`, `refused` or `skipped` (`--no-names`).
    pub computerinfo: Info,
    /// The fingerprint of the enrollment key the service bound it to.
    pub enrollment_key: Option<String>,
    /// The fingerprint the admin's `pin` confirmed.
    pub pinned_key: Option<String>,
    /// With `--inventory`: each Mac that reports this computer.
    pub reported_by: Vec<ReportedBy>,
}

/// What `--inventory` read.
#[derive(Clone, Debug, Serialize)]
pub struct InventoryReport {
    /// Rows (or objects) naming a computer, in any bucket.
    pub records: usize,
    /// Rows naming none: not configured, nobody logged in, no value yet.
    pub without_computer: usize,
    /// Computers of this bucket that some Mac reports.
    pub computers_reported: usize,
    /// One line per row that could not be used as it was, or Mac listed twice.
    pub warnings: Vec<String>,
    pub warnings_left_out: usize,
}

/// One main key, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct MainKeyReport {
    pub access_key_id: String,
    /// `flag` (`--main-key-id`), `recorded` (a scoped user's replaced-key tag), `claimed` (the
    /// same tag on a user enrolled by token: that Mac's word only).
    pub sources: Vec<MainKeySource>,
    /// How many scoped users of this bucket record it as the key their lockdown replaced.
    pub recorded_by: usize,
    /// `used`, `never-used`, `not-found` (deleted, or not this account's), `refused` (IAM would
    /// not say) or `scoped-key` (a Mac's own scoped key, not a main key).
    pub status: MainKeyStatus,
    /// The IAM user the key belongs to.
    pub user_name: Option<String>,
    pub last_used: Option<String>,
    pub last_used_service: Option<String>,
    pub last_used_region: Option<String>,
    /// The admin credentials of this run are this key (so its last use is this run's).
    pub admin_credentials: bool,
    /// How many computers' lockdowns replaced it by proof (apply with it, or the service after STS
    /// vouched for it).
    pub replaced_by_proof: usize,
    /// The later of its last use and the last lockdown that replaced it by proof.
    pub quiet_since: Option<String>,
    /// When it has been quiet for `quiet_minutes` (if no use is recorded meanwhile).
    pub ready_after: Option<String>,
}

/// A `--fix-policies` change.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyFix {
    pub computer_uuid: String,
    pub user_name: String,
    /// Always `rewrote arq-lockdown`: the one change it makes.
    pub change: &'static str,
    /// The computer's state after the change.
    pub state: ComputerState,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub computers: usize,
    /// The number of computers in each state, every state named.
    pub states: serde_json::Map<String, serde_json::Value>,
    pub main_keys: usize,
    pub newest_scoped_key_created: Option<String>,
    /// When IAM made the credential report the keys' state and last use come from (AWS reuses a
    /// report for up to four hours).
    pub credential_report_generated: Option<String>,
    /// Users under /arq-lockdown/ left out: bound to another bucket, untagged without data here,
    /// or not named after a computer.
    pub scoped_users_elsewhere: usize,
    /// Computers with data whose computerinfo could not be read (missing, junk or refused).
    pub computerinfo_unread: usize,
}

/// The whole audit: stable field names (docs/audit.md lists them).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub bucket: String,
    pub generated_at: String,
    pub ready_to_retire_main_keys: bool,
    /// Why not, when `ready_to_retire_main_keys` is false.
    pub not_ready_reasons: Vec<String>,
    /// The quiet period the verdict asked of each main key (`--quiet-minutes`).
    pub quiet_minutes: u32,
    pub computers: Vec<ComputerReport>,
    pub main_keys: Vec<MainKeyReport>,
    pub policy_fixes: Vec<PolicyFix>,
    pub summary: Summary,
    /// With `--inventory`: what it read.
    pub inventory: Option<InventoryReport>,
}

impl Report {
    /// 0 when every computer is locked down and the main keys may go; 13 otherwise.
    pub fn exit_code(&self) -> ExitCode {
        let all_locked = self
            .computers
            .iter()
            .all(|c| c.state == ComputerState::LockedDown);
        match all_locked && self.ready_to_retire_main_keys {
            true => ExitCode::Success,
            false => ExitCode::NeedsAction,
        }
    }
}

/// Runs the audit with the admin's `sdk_config`; `progress` counts computerinfo reads (hidden
/// unless the caller shows it).
pub async fn audit(
    sdk_config: &SdkConfig,
    options: &AuditOptions,
    progress: &indicatif::ProgressBar,
) -> Result<Report, AuditError> {
    let bucket = options.bucket.as_str();
    let s3 = aws::s3_for_bucket(sdk_config, bucket).await;
    let iam_clock = read::IamClock::default();
    let iam_client = iam_clock.client(sdk_config);
    // Two lines of work side by side: the bucket (its folders, then each computerinfo) and IAM
    // (the users and the credential report, then the keys the report cannot tell and the main
    // keys' last use).
    let (bucket_facts, iam_facts) = tokio::try_join!(
        read_bucket(&s3, bucket, options.names, progress),
        read_iam(&iam_client, options),
    )?;
    progress.finish_and_clear();
    let (users, not_ours) = users_by_computer(iam_facts.candidates, &bucket_facts.in_bucket);
    let mut facts = computer_facts(&bucket_facts, users, options.names);
    let reporting = options
        .inventory
        .as_ref()
        .map(|inventory| inventory.macs_by_computer(&options.bucket));
    add_claims(&mut facts, reporting.as_ref());

    let rules = Rules {
        bucket: options.bucket.clone(),
        now: iam_clock.now().unwrap_or_else(Timestamp::now),
        stale_days: options.stale_days,
        quiet_minutes: options.quiet_minutes,
    };
    let policy_fixes = match options.fix_policies {
        true => fix_policies(&iam_client, &mut facts, &rules).await?,
        false => Vec::new(),
    };

    let judged_users: Vec<&UserFacts> = facts.iter().filter_map(|c| c.user.as_ref()).collect();
    let newest = decide::newest_key(&judged_users);
    let main_keys = main_keys(
        iam_facts.main_key_ids,
        &iam_facts.main_key_lookups,
        &iam_facts.scoped_user_names,
        options.admin_key_id.as_deref(),
        decide::replacements(&facts),
    );
    let computers = computer_reports(&facts, &rules, reporting.as_ref());
    let (mut ready, mut reasons) =
        decide::verdict(&not_locked_down(&computers), &main_keys, &rules);
    let unsettled = decide::unsettled(&states(&computers));
    ready &= unsettled.is_empty();
    reasons.extend(unsettled);

    let summary = Summary {
        computers: computers.len(),
        states: count_by_state(&computers),
        main_keys: main_keys.iter().filter(|k| !k.scoped).count(),
        newest_scoped_key_created: newest.map(decide::second),
        credential_report_generated: iam_facts.report_generated.map(decide::second),
        scoped_users_elsewhere: iam_facts.elsewhere + not_ours,
        computerinfo_unread: computerinfo_unread(&facts),
    };
    Ok(Report {
        bucket: bucket.to_owned(),
        generated_at: decide::second(rules.now),
        ready_to_retire_main_keys: ready,
        not_ready_reasons: reasons,
        quiet_minutes: rules.quiet_minutes,
        computers,
        main_keys: main_keys
            .iter()
            .map(|k| main_key_report(k, rules.quiet_minutes))
            .collect(),
        policy_fixes,
        summary,
        inventory: options
            .inventory
            .as_ref()
            .map(|inventory| inventory_report(inventory, &options.bucket, reporting.as_ref())),
    })
}

/// What the bucket holds of the fleet.
struct BucketFacts {
    /// The computers with data in the bucket, and where.
    in_bucket: BTreeMap<ComputerUuid, Presence>,
    /// What each computerinfo read said (none read with `--no-names`).
    infos: HashMap<ComputerUuid, Info>,
}

/// The bucket side: the computers with data in the bucket, then what their computerinfo says.
async fn read_bucket(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    names: bool,
    progress: &indicatif::ProgressBar,
) -> Result<BucketFacts, AuditError> {
    let in_bucket = read::computers(s3, bucket).await?;
    let infos = read_names(s3, bucket, &in_bucket, names, progress).await?;
    Ok(BucketFacts { in_bucket, infos })
}

/// The computerinfo of each computer with a `<UUID>/` folder (none with `--no-names`), one tick
/// of `progress` a read.
async fn read_names(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    in_bucket: &BTreeMap<ComputerUuid, Presence>,
    names: bool,
    progress: &indicatif::ProgressBar,
) -> Result<HashMap<ComputerUuid, Info>, AuditError> {
    let with_folder: Vec<ComputerUuid> = in_bucket
        .iter()
        .filter(|(_, presence)| presence.root && names)
        .map(|(uuid, _)| uuid.clone())
        .collect();
    progress.set_length(with_folder.len() as u64);
    let tick = {
        let progress = progress.clone();
        Arc::new(move || progress.inc(1))
    };
    read::computerinfo(s3, bucket, with_folder, tick).await
}

/// What IAM says of the fleet.
struct IamFacts {
    /// Scoped users bound to this bucket or to none, with their keys.
    candidates: Vec<UserFacts>,
    /// Scoped users left out: bound to another bucket, or not named after a computer.
    elsewhere: usize,
    /// Every scoped user's name, whichever bucket it is bound to.
    scoped_user_names: BTreeSet<String>,
    /// The main keys to judge: where audit learnt of each, and how many candidates record it.
    main_key_ids: BTreeMap<String, (Vec<MainKeySource>, usize)>,
    /// Each main key's last use.
    main_key_lookups: BTreeMap<String, Lookup>,
    /// When IAM made the credential report.
    report_generated: Option<Timestamp>,
}

/// The IAM side: the scoped users and the credential report at once, then the keys the report
/// cannot tell beside the main keys' last use.
async fn read_iam(
    iam_client: &aws_sdk_iam::Client,
    options: &AuditOptions,
) -> Result<IamFacts, AuditError> {
    let (users, report) = tokio::join!(
        read::scoped_users(iam_client),
        read::credential_report(iam_client),
    );
    let all_users = users?;
    let (report, report_generated) = report?;
    let scoped_user_names: BTreeSet<String> = all_users.iter().map(|u| u.name.clone()).collect();
    // Users bound to this bucket, and those bound to none (`users_by_computer` keeps them if
    // their computer has data here); the rest belong to other fleets.
    let (mut candidates, others): (Vec<UserFacts>, Vec<UserFacts>) =
        all_users.into_iter().partition(|user| {
            iam_names::computer_of(&user.name).is_some()
                && user
                    .bound_bucket()
                    .is_none_or(|bound| bound == options.bucket.as_str())
        });
    let main_key_ids = decide::main_key_ids(
        &options.main_key_ids,
        &candidates.iter().collect::<Vec<_>>(),
    );
    let ids: BTreeSet<String> = main_key_ids.keys().cloned().collect();
    let (filled, main_key_lookups) = tokio::join!(
        read::fill_keys(iam_client, &mut candidates, &report),
        read::main_keys(iam_client, &ids),
    );
    filled?;
    if options.inventory.is_some() {
        // The inventory names the key each Mac holds: compare ids (the report has none).
        read::key_ids(iam_client, &mut candidates).await?;
    }
    Ok(IamFacts {
        candidates,
        elsewhere: others.len(),
        scoped_user_names,
        main_key_ids,
        main_key_lookups: main_key_lookups?,
        report_generated,
    })
}

/// The candidates of this fleet by computer — bound to this bucket, or bound to none with data
/// here — and how many were neither.
fn users_by_computer(
    candidates: Vec<UserFacts>,
    in_bucket: &BTreeMap<ComputerUuid, Presence>,
) -> (BTreeMap<ComputerUuid, UserFacts>, usize) {
    let mut ours = BTreeMap::new();
    let mut not_ours = 0;
    for user in candidates {
        let uuid =
            iam_names::computer_of(&user.name).expect("candidates are named after a computer");
        match user.bound_bucket().is_some() || in_bucket.contains_key(&uuid) {
            true => {
                ours.insert(uuid, user);
            }
            false => not_ours += 1,
        }
    }
    (ours, not_ours)
}

/// Every computer with data in the bucket or a user of this fleet: its data, computerinfo and user.
fn computer_facts(
    BucketFacts { in_bucket, infos }: &BucketFacts,
    mut users: BTreeMap<ComputerUuid, UserFacts>,
    names: bool,
) -> Vec<ComputerFacts> {
    let uuids: BTreeSet<ComputerUuid> = in_bucket.keys().chain(users.keys()).cloned().collect();
    uuids
        .into_iter()
        .map(|uuid| {
            let info = match (in_bucket.get(&uuid), names) {
                (_, false) => Info::Skipped,
                (Some(presence), true) if presence.root => {
                    infos.get(&uuid).cloned().unwrap_or(Info::Missing)
                }
                _ => Info::Missing,
            };
            ComputerFacts {
                has_data: in_bucket.contains_key(&uuid),
                info,
                user: users.remove(&uuid),
                uuid,
                claims: Claims::default(),
            }
        })
        .collect()
}

/// `--fix-policies`: rewrites the drifted inline policies it can build, and updates `facts` to
/// match, so the report judges what IAM now holds.
async fn fix_policies(
    iam_client: &aws_sdk_iam::Client,
    facts: &mut [ComputerFacts],
    rules: &Rules,
) -> Result<Vec<PolicyFix>, AuditError> {
    let mut fixes = Vec::new();
    for computer in facts.iter_mut() {
        let judged = decide::judge(computer, rules);
        let (Some(drift), Some(user)) = (judged.drift, computer.user.as_mut()) else {
            continue;
        };
        let Some(document) = drift.fix else {
            continue;
        };
        read::put_policy(iam_client, &user.name, &document).await?;
        user.inline_policies.insert(
            iam_names::POLICY_NAME.to_owned(),
            Some(document.as_value().clone()),
        );
        fixes.push(PolicyFix {
            computer_uuid: computer.uuid.to_string(),
            user_name: user.name.clone(),
            change: "rewrote arq-lockdown",
            state: decide::judge(computer, rules).state,
        });
    }
    Ok(fixes)
}

/// Each main key with its last use (refused where IAM gave none), whether a scoped user owns it,
/// whether audit runs with it, and the lockdowns that replaced it.
fn main_keys(
    ids: BTreeMap<String, (Vec<MainKeySource>, usize)>,
    lookups: &BTreeMap<String, Lookup>,
    scoped_user_names: &BTreeSet<String>,
    admin_key_id: Option<&str>,
    mut replacements: BTreeMap<String, Vec<decide::Replacement>>,
) -> Vec<MainKey> {
    ids.into_iter()
        .map(|(id, (sources, recorded_by))| {
            let lookup = lookups.get(&id).cloned().unwrap_or(Lookup::Refused);
            let scoped = match &lookup {
                Lookup::Used { owner, .. } | Lookup::NeverUsed { owner } => {
                    scoped_user_names.contains(owner)
                }
                _ => false,
            };
            MainKey {
                audits: admin_key_id == Some(id.as_str()),
                replaced_by: replacements.remove(&id).unwrap_or_default(),
                id,
                sources,
                recorded_by,
                lookup,
                scoped,
            }
        })
        .collect()
}

/// Each computer judged, for the report: by state, then UUID.
fn computer_reports(
    facts: &[ComputerFacts],
    rules: &Rules,
    reporting: Option<&Reporting<'_>>,
) -> Vec<ComputerReport> {
    let mut computers: Vec<ComputerReport> = facts
        .iter()
        .map(|c| {
            let mut report = computer_report(c, &decide::judge(c, rules));
            report.reported_by = reported_by(reporting, &c.uuid);
            report
        })
        .collect();
    computers.sort_by(|a, b| (a.state, &a.computer_uuid).cmp(&(b.state, &b.computer_uuid)));
    computers
}

/// The Macs of the inventory reporting each computer of the bucket, by UUID in upper case.
type Reporting<'a> = BTreeMap<String, Vec<ReportingMac<'a>>>;

/// What says whose each computer is beside its user: the other computers bound to its
/// enrollment key, and (with the inventory) the Macs reporting it.
fn add_claims(facts: &mut [ComputerFacts], reporting: Option<&Reporting<'_>>) {
    let mut by_enrollment_key: HashMap<String, Vec<String>> = HashMap::new();
    for computer in facts.iter() {
        if let Some(key) = computer.user.as_ref().and_then(UserFacts::enrollment_key) {
            let uuids = by_enrollment_key.entry(key).or_default();
            uuids.push(computer.uuid.to_string());
        }
    }
    for computer in facts.iter_mut() {
        let uuid = computer.uuid.to_string();
        if let Some(key) = computer.user.as_ref().and_then(UserFacts::enrollment_key) {
            computer.claims.sharing_enrollment_key = by_enrollment_key[&key]
                .iter()
                .filter(|other| **other != uuid)
                .cloned()
                .collect();
        }
        computer.claims.reported_by = reporting.map(|reporting| {
            macs_reporting(reporting, &computer.uuid)
                .iter()
                .map(|mac| MacReport {
                    label: mac.label(),
                    access_key_id: mac.access_key_id().map(str::to_owned),
                    enrollment_key: mac.enrollment_key().map(str::to_owned),
                    as_arq_writes: mac.as_arq_writes(),
                })
                .collect()
        });
    }
}

/// The Macs reporting `uuid` (IAM's user names ignore case: so does the match).
fn macs_reporting<'r, 'a>(
    reporting: &'r Reporting<'a>,
    uuid: &ComputerUuid,
) -> &'r [ReportingMac<'a>] {
    reporting
        .get(&uuid.as_str().to_ascii_uppercase())
        .map_or(&[], Vec::as_slice)
}

/// The Macs reporting `uuid`, for the report.
fn reported_by(reporting: Option<&Reporting<'_>>, uuid: &ComputerUuid) -> Vec<ReportedBy> {
    reporting.map_or(Vec::new(), |reporting| {
        macs_reporting(reporting, uuid)
            .iter()
            .map(ReportingMac::summary)
            .collect()
    })
}

/// What the inventory held, and its warnings (rows it could not use, Macs listed twice).
fn inventory_report(
    inventory: &Inventory,
    bucket: &BucketName,
    reporting: Option<&Reporting<'_>>,
) -> InventoryReport {
    let mut warnings = inventory.warnings.clone();
    warnings.extend(inventory.duplicates(bucket));
    InventoryReport {
        records: inventory.records.len(),
        without_computer: inventory.without_computer,
        computers_reported: reporting.map_or(0, BTreeMap::len),
        warnings,
        warnings_left_out: inventory.warnings_left_out,
    }
}

/// Each computer's state, UUID and name, for the verdict.
fn states(computers: &[ComputerReport]) -> Vec<(ComputerState, String, Option<String>)> {
    computers
        .iter()
        .map(|c| (c.state, c.computer_uuid.clone(), c.computer_name.clone()))
        .collect()
}

/// The computers not locked down, by UUID and name, for the verdict.
fn not_locked_down(computers: &[ComputerReport]) -> Vec<(String, Option<String>)> {
    computers
        .iter()
        .filter(|c| c.state == ComputerState::NotLockedDown)
        .map(|c| (c.computer_uuid.clone(), c.computer_name.clone()))
        .collect()
}

/// The number of computers in each state, every state named.
fn count_by_state(computers: &[ComputerReport]) -> serde_json::Map<String, serde_json::Value> {
    let mut states = serde_json::Map::new();
    for state in ComputerState::ALL {
        let count = computers.iter().filter(|c| c.state == state).count();
        states.insert(state.as_str().to_owned(), count.into());
    }
    states
}

/// The computers with data whose computerinfo could not be read (missing, junk or refused).
fn computerinfo_unread(facts: &[ComputerFacts]) -> usize {
    facts
        .iter()
        .filter(|c| c.has_data && matches!(c.info, Info::Missing | Info::Malformed | Info::Refused))
        .count()
}

fn computer_report(facts: &ComputerFacts, judged: &decide::Judgement) -> ComputerReport {
    let user_name = match &facts.info {
        Info::Read { user_name, .. } => user_name.clone(),
        _ => None,
    };
    ComputerReport {
        computer_uuid: facts.uuid.to_string(),
        computer_name: decide::computer_name(facts),
        user_name,
        state: judged.state,
        user_arn: facts.user.as_ref().map(|u| u.arn.clone()),
        access_keys: facts
            .user
            .iter()
            .flat_map(|u| &u.keys)
            .map(|k| AccessKeyReport {
                access_key_id: k.id.clone(),
                active: k.active,
                created: k.created.map(decide::second),
                last_used: k.last_used.as_ref().map(|u| decide::second(u.at)),
                last_used_service: k.last_used.as_ref().and_then(|u| u.service.clone()),
                last_used_region: k.last_used.as_ref().and_then(|u| u.region.clone()),
            })
            .collect(),
        action: judged.action.clone(),
        in_bucket: facts.has_data,
        computerinfo: facts.info.clone(),
        enrollment_key: facts.user.as_ref().and_then(UserFacts::enrollment_key),
        pinned_key: facts
            .user
            .as_ref()
            .and_then(|u| u.pinned_key())
            .map(str::to_owned),
        reported_by: Vec::new(),
    }
}

fn main_key_report(key: &MainKey, quiet_minutes: u32) -> MainKeyReport {
    let (owner, last) = match &key.lookup {
        Lookup::Used { owner, last } => (Some(owner.clone()), Some(last)),
        Lookup::NeverUsed { owner } => (Some(owner.clone()), None),
        _ => (None, None),
    };
    let quiet = decide::quiet(key, quiet_minutes);
    MainKeyReport {
        access_key_id: key.id.clone(),
        sources: key.sources.clone(),
        recorded_by: key.recorded_by,
        status: key.status(),
        user_name: owner,
        last_used: last.map(|l| decide::second(l.at)),
        last_used_service: last.and_then(|l| l.service.clone()),
        last_used_region: last.and_then(|l| l.region.clone()),
        admin_credentials: key.audits,
        replaced_by_proof: key.replaced_by.iter().filter(|r| r.proven).count(),
        quiet_since: quiet.map(|q| decide::second(q.since)),
        ready_after: quiet.map(|q| decide::second(q.ready_after)),
    }
}
