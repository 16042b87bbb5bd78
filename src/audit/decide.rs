//! What `audit` concludes from what it read: one state per computer, the action to print, and the
//! fleet's verdict on the main keys. Plain functions over plain data — no AWS, no clock, no
//! printing — so every rule is pinned by a table of cases below.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

use crate::arq_config::{ArqConfig, BucketName, ComputerUuid};
use crate::iam;
use crate::iam_names::{
    ENROLLED_BY_TAG, NAME_TAG, PINNED_KEY_TAG, POLICY_NAME, POLICY_OPTIONS_TAG, REFUSED_CLAIM_TAG,
    REPLACED_KEY_TAG, is_token_enrollment,
};
use crate::policy::{PolicyDocument, PolicyOptions};
use crate::protocol::enrollment::fingerprint;

/// A computer's state: the first that applies, in this order. The words a Mac's own judge uses
/// too ([`crate::receipt::LocalState`], shared by `apply`, `status` and the extension attribute)
/// name the same facts here: `locked-down`, `not-locked-down`; a Mac's `policy-outdated` shows
/// here as `policy-drift` until its policy in IAM is rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComputerState {
    /// A scoped user whose computer has no data in the bucket.
    OrphanUser,
    /// Data in the bucket, no scoped user: the Mac still has the main keys (or nothing).
    NotLockedDown,
    /// Another Mac claims the computer: a refused enrollment recorded, its enrollment key bound
    /// to other computers too, a binding against the admin's pin, or (with `--inventory`) two
    /// Macs reporting it.
    Contested,
    /// Pinned by the admin to a Mac's enrollment key, waiting for that Mac's next run.
    Pinned,
    /// With `--inventory`: no Mac reports the key IAM holds for this computer.
    Unconfirmed,
    /// The user's policy is not the one `policy` builds, or it has other policies or groups.
    PolicyDrift,
    /// More than one active key.
    ExtraKeys,
    /// The active key was not used for `--stale-days` (or there is no active key).
    KeyUnused,
    LockedDown,
}

impl ComputerState {
    pub const ALL: [ComputerState; 9] = [
        ComputerState::OrphanUser,
        ComputerState::NotLockedDown,
        ComputerState::Contested,
        ComputerState::Pinned,
        ComputerState::Unconfirmed,
        ComputerState::PolicyDrift,
        ComputerState::ExtraKeys,
        ComputerState::KeyUnused,
        ComputerState::LockedDown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ComputerState::OrphanUser => "orphan-user",
            ComputerState::NotLockedDown => "not-locked-down",
            ComputerState::Contested => "contested",
            ComputerState::Pinned => "pinned",
            ComputerState::Unconfirmed => "unconfirmed",
            ComputerState::PolicyDrift => "policy-drift",
            ComputerState::ExtraKeys => "extra-keys",
            ComputerState::KeyUnused => "key-unused",
            ComputerState::LockedDown => "locked-down",
        }
    }
}

/// When and where a key was last used, as IAM tracks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastUse {
    pub at: Timestamp,
    pub service: Option<String>,
    pub region: Option<String>,
}

/// One access key of a scoped user. The credential report has no key ids: `id` is known only
/// where audit asked IAM for the user's keys (more than one active, or a user the report does not
/// have yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFacts {
    pub id: Option<String>,
    pub active: bool,
    pub created: Option<Timestamp>,
    pub last_used: Option<LastUse>,
}

/// A scoped user as IAM has it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserFacts {
    pub name: String,
    pub arn: String,
    pub created: Option<Timestamp>,
    pub tags: BTreeMap<String, String>,
    /// Inline policies by name, parsed (`None`: not JSON).
    pub inline_policies: BTreeMap<String, Option<Value>>,
    /// Attached managed policies' ARNs, and groups' names.
    pub attached_policies: Vec<String>,
    pub groups: Vec<String>,
    pub keys: Vec<KeyFacts>,
}

impl UserFacts {
    /// The value of one of the user's tags.
    fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    /// The bucket the user is bound to; `None` for a user bound to none.
    pub fn bound_bucket(&self) -> Option<&str> {
        iam::bound_bucket(&self.tags)
    }

    /// The fingerprint of the enrollment key the service bound the user to.
    pub fn enrollment_key(&self) -> Option<String> {
        iam::bound_enrollment_key(&self.tags).map(|key| fingerprint(key).unwrap_or(key.to_owned()))
    }

    /// The enrollment-key fingerprint the admin pinned the computer to.
    pub fn pinned_key(&self) -> Option<&str> {
        self.tag(PINNED_KEY_TAG)
    }

    /// The ids of its active keys (`None` for a key whose id was not read).
    fn active_key_ids(&self) -> Vec<Option<&str>> {
        self.keys
            .iter()
            .filter(|k| k.active)
            .map(|k| k.id.as_deref())
            .collect()
    }
}

/// What the computer's `computerinfo` said (a plist Arq writes with `computerName` and `userName`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Info {
    Read {
        computer_name: Option<String>,
        user_name: Option<String>,
    },
    /// No computerinfo object (or no `<UUID>/` folder to hold one).
    Missing,
    /// There, but not a plist with those keys.
    Malformed,
    /// S3 refused to read it (the admin lacks `s3:GetObject` on `*/computerinfo`).
    Refused,
    /// `--no-names`.
    Skipped,
}

/// In the report, the word for what was read (the names are the computer's fields).
impl Serialize for Info {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl Info {
    pub fn as_str(&self) -> &'static str {
        match self {
            Info::Read { .. } => "read",
            Info::Missing => "missing",
            Info::Malformed => "malformed",
            Info::Refused => "refused",
            Info::Skipped => "skipped",
        }
    }
}

/// One Mac of the MDM's inventory that reports a computer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MacReport {
    /// Its name, serial and row, for people.
    pub label: String,
    /// The key id in its "Arq S3".
    pub access_key_id: Option<String>,
    /// Its enrollment key's fingerprint.
    pub enrollment_key: Option<String>,
    /// It writes the UUID as Arq does (upper case): only then may it confirm the computer.
    pub as_arq_writes: bool,
}

/// What says whose a computer is, beside its IAM user.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Claims {
    /// Other computers whose users are bound to the same enrollment key.
    pub sharing_enrollment_key: Vec<String>,
    /// With `--inventory`: the Macs reporting this computer (`None`: no inventory was read).
    pub reported_by: Option<Vec<MacReport>>,
}

/// Everything read about one computer UUID.
#[derive(Clone, Debug, PartialEq)]
pub struct ComputerFacts {
    pub uuid: ComputerUuid,
    /// `<UUID>/` or `glacier/<UUID>/` holds objects.
    pub has_data: bool,
    pub info: Info,
    pub user: Option<UserFacts>,
    pub claims: Claims,
}

/// The settings a judgement depends on.
#[derive(Clone, Debug)]
pub struct Rules {
    pub bucket: BucketName,
    /// IAM's time (the `Date` of its answers) where known: the clock that recorded the keys' use.
    pub now: Timestamp,
    pub stale_days: u32,
    /// How long no use of a main key must be recorded before the verdict trusts that nothing
    /// uses it ([`DEFAULT_QUIET_MINUTES`]).
    pub quiet_minutes: u32,
}

/// The quiet period's default. IAM records at most the first use of a key in each 15 minutes
/// ("When an access key is used more than once in a 15-minute span, only the first use is
/// recorded": AWS IAM User Guide, "Getting credential reports"), and a Mac that still holds a
/// main key — not locked down, or an Arq Agent not restarted since its lockdown, which goes on
/// with the key it read at start — uses it at least once per backup interval (Arq's default:
/// hourly). 15 + 60 minutes, with room for a late backup: two hours.
pub const DEFAULT_QUIET_MINUTES: u32 = 120;

/// IAM's last-use data can lag behind real use (AWS: last-accessed data "usually appears within
/// four hours", GenerateServiceLastAccessedDetails): the quiet period the verdict suggests to be
/// surer.
pub const SURER_QUIET_MINUTES: u32 = 240;

/// Why a user's policies are not what `policy` builds, and whether `--fix-policies` may mend it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    pub reasons: Vec<String>,
    /// The policy `--fix-policies` writes as `arq-lockdown`, when the inline policy is the problem
    /// and the options it must be built with are known.
    pub fix: Option<PolicyDocument>,
}

/// A computer judged.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    pub state: ComputerState,
    pub action: Option<String>,
    pub drift: Option<Drift>,
}

/// The computer's name: from its computerinfo, else from its user's tag.
pub fn computer_name(facts: &ComputerFacts) -> Option<String> {
    match &facts.info {
        Info::Read {
            computer_name: Some(name),
            ..
        } => Some(name.clone()),
        _ => facts.user.as_ref()?.tag(NAME_TAG).map(str::to_owned),
    }
}

impl Judgement {
    /// `state`, with `action` to take.
    fn act(state: ComputerState, action: String) -> Self {
        Self {
            state,
            action: Some(action),
            drift: None,
        }
    }
}

/// The one state of a computer and what to do about it.
pub fn judge(facts: &ComputerFacts, rules: &Rules) -> Judgement {
    let uuid = facts.uuid.as_str();
    let user = match (&facts.user, facts.has_data) {
        (Some(_), false) => {
            return Judgement::act(
                ComputerState::OrphanUser,
                format!(
                    "no data in the bucket: if that Mac is gone, arq-lockdown revoke --computer-uuid {uuid}"
                ),
            );
        }
        (None, _) => return without_user(facts, rules),
        (Some(user), true) => user,
    };
    if let Some(judged) = whose(facts, user, rules) {
        return judged;
    }
    if let Some(drift) = drift(user, &rules.bucket, &facts.uuid) {
        let mut action = match drift.fix {
            Some(_) => {
                "arq-lockdown audit --fix-policies, or apply --rotate on that Mac".to_owned()
            }
            None => "fix by hand (audit --fix-policies cannot)".to_owned(),
        };
        action += &format!(": {}", drift.reasons.join("; "));
        return Judgement {
            state: ComputerState::PolicyDrift,
            action: Some(action),
            drift: Some(drift),
        };
    }
    key_use(user, rules)
}

/// A computer with data and no scoped user: not locked down, unless two Macs report it.
fn without_user(facts: &ComputerFacts, rules: &Rules) -> Judgement {
    if let Some(twice) = reported_twice(facts) {
        return contested(rules, facts, &[twice]);
    }
    let who = match computer_name(facts) {
        Some(name) => format!("\"{name}\""),
        None => "the Mac (name unknown)".to_owned(),
    };
    let user_name = match &facts.info {
        Info::Read {
            user_name: Some(user),
            ..
        } => format!(", user {user}"),
        _ => String::new(),
    };
    Judgement::act(
        ComputerState::NotLockedDown,
        format!("run arq-lockdown apply on {who}{user_name}: it still has the main keys"),
    )
}

/// A user whose owner and policies are in order, by its keys: `extra-keys`, `key-unused` or
/// `locked-down`.
fn key_use(user: &UserFacts, rules: &Rules) -> Judgement {
    let active: Vec<&KeyFacts> = user.keys.iter().filter(|k| k.active).collect();
    if active.len() > 1 {
        return Judgement::act(
            ComputerState::ExtraKeys,
            extra_keys_action(&user.name, &active),
        );
    }
    let Some(key) = active.first() else {
        return Judgement::act(
            ComputerState::KeyUnused,
            "no active key: that Mac cannot back up; run arq-lockdown apply --rotate --admin-credentials env there".to_owned(),
        );
    };
    let since = key.last_used.as_ref().map(|u| u.at).or(key.created);
    let stale_seconds = i64::from(rules.stale_days) * 86_400;
    match since {
        Some(since) if rules.now.as_second() - since.as_second() >= stale_seconds => {
            let days = (rules.now.as_second() - since.as_second()) / 86_400;
            let what = match &key.last_used {
                Some(used) => format!("last used {} ({days} days ago)", day(used.at)),
                None => format!(
                    "never used since it was made {} ({days} days ago)",
                    day(since)
                ),
            };
            Judgement::act(
                ComputerState::KeyUnused,
                format!(
                    "the key was {what}: the Mac is off, or its key never reached Arq (check it with arq-lockdown status there)"
                ),
            )
        }
        _ => Judgement {
            state: ComputerState::LockedDown,
            action: None,
            drift: None,
        },
    }
}

/// The admin's `pin` of this computer, but for the fingerprint.
fn pin_command(rules: &Rules, facts: &ComputerFacts) -> String {
    format!(
        "arq-lockdown pin --bucket {} --computer-uuid {} --enrollment-key",
        rules.bucket, facts.uuid
    )
}

/// `contested`, for these reasons.
fn contested(rules: &Rules, facts: &ComputerFacts, reasons: &[String]) -> Judgement {
    Judgement {
        state: ComputerState::Contested,
        action: Some(format!(
            "{}: find out which Mac is this computer's (audit --inventory, its status there), then {} THAT-MACS-FINGERPRINT; revoke a UUID no Mac uses any more",
            reasons.join("; "),
            pin_command(rules, facts)
        )),
        drift: None,
    }
}

/// Whether the computer is another Mac's, in doubt, or waiting for its pinned Mac: `contested`,
/// `pinned` or `unconfirmed`, in that order; `None` when nothing says it is not its own Mac's.
fn whose(facts: &ComputerFacts, user: &UserFacts, rules: &Rules) -> Option<Judgement> {
    let pin = pin_command(rules, facts);
    let contest = contest(facts, user);
    if !contest.is_empty() {
        return Some(contested(rules, facts, &contest));
    }
    let active = user.active_key_ids();
    if let (Some(pinned), None, true) =
        (user.pinned_key(), user.enrollment_key(), active.is_empty())
    {
        return Some(Judgement::act(
            ComputerState::Pinned,
            format!(
                "pinned to enrollment key {pinned}: that Mac binds it at its next run (check arq-lockdown status there)"
            ),
        ));
    }
    let reported_by = facts.claims.reported_by.as_ref()?;
    let confirmed = reported_by.iter().any(|mac| {
        mac.as_arq_writes
            && active.contains(&mac.access_key_id.as_deref())
            && mac.access_key_id.is_some()
    });
    if confirmed || active.is_empty() {
        return None;
    }
    let held: Vec<&str> = active
        .iter()
        .map(|id| id.unwrap_or("(id not read)"))
        .collect();
    let held = held.join(", ");
    let action = match reported_by.first() {
        None => format!(
            "no Mac in the inventory reports this computer, so nothing confirms that its key {held} is its own Mac's: find that Mac and compare its status; a key no Mac holds is a squatter's: {pin} THAT-MACS-FINGERPRINT, or revoke it if the Mac is gone"
        ),
        Some(mac) => {
            let reports = mac.access_key_id.as_deref().unwrap_or("no key");
            let then = match &mac.enrollment_key {
                Some(print) => format!("{pin} {print}"),
                None => "lock that Mac down with arq-lockdown apply and admin credentials (it deletes the keys that are not in its \"Arq S3\")".to_owned(),
            };
            format!(
                "its Mac {} reports {reports}, not {held}: the key IAM holds is not that Mac's (a squatter's?): {then}",
                mac.label
            )
        }
    };
    Some(Judgement::act(ComputerState::Unconfirmed, action))
}

/// Why another Mac may hold the computer: each reason in words (none: not contested).
fn contest(facts: &ComputerFacts, user: &UserFacts) -> Vec<String> {
    let mut reasons = Vec::new();
    let bound = user.enrollment_key();
    // A claim refused once the pinned Mac holds the computer is a squat that failed: the service
    // binds nobody else now, so it is no doubt about the owner.
    let settled = user.pinned_key().is_some() && user.pinned_key() == bound.as_deref();
    if let Some(claim) = user.tag(REFUSED_CLAIM_TAG).filter(|_| !settled) {
        let (at, print) = claim.split_once(' ').unwrap_or(("", claim));
        let when = at
            .parse::<i64>()
            .ok()
            .and_then(|s| Timestamp::from_second(s).ok())
            .map_or(String::new(), |t| format!(" on {}", second(t)));
        reasons.push(format!(
            "the service refused another Mac's enrollment of it (enrollment key {print}){when}"
        ));
    }
    if !facts.claims.sharing_enrollment_key.is_empty() {
        reasons.push(format!(
            "its enrollment key {} is bound to {} too (Arq reinstalled on that Mac, or a squat)",
            bound.as_deref().unwrap_or("?"),
            facts.claims.sharing_enrollment_key.join(", ")
        ));
    }
    match (user.pinned_key(), &bound) {
        (Some(pinned), Some(bound)) if pinned != bound => reasons.push(format!(
            "it is bound to enrollment key {bound}, not to {pinned} it is pinned to"
        )),
        (Some(pinned), None) if user.keys.iter().any(|k| k.active) => reasons.push(format!(
            "it is pinned to {pinned} but holds a key no enrollment made (the main keys?)"
        )),
        _ => {}
    }
    reasons.extend(reported_twice(facts));
    reasons
}

/// "N Macs report it: …" when the inventory has more than one Mac naming the computer.
fn reported_twice(facts: &ComputerFacts) -> Option<String> {
    let macs = facts.claims.reported_by.as_ref().filter(|m| m.len() > 1)?;
    let labels: Vec<String> = macs
        .iter()
        .map(|m| match &m.enrollment_key {
            Some(print) => format!("{} ({print})", m.label),
            None => m.label.clone(),
        })
        .collect();
    Some(format!(
        "{} Macs report it: {}",
        macs.len(),
        labels.join(", ")
    ))
}

/// Why the main keys must wait for computers whose owner is in doubt (`contested`, `unconfirmed`):
/// a squatter's key would keep reading them after the main keys go. Each `(state, UUID, name)`.
pub fn unsettled(computers: &[(ComputerState, String, Option<String>)]) -> Vec<String> {
    let mut reasons = Vec::new();
    for (state, why) in [
        (ComputerState::Contested, "another Mac claims them"),
        (
            ComputerState::Unconfirmed,
            "no Mac in the inventory reports the key IAM holds for them",
        ),
    ] {
        let these: Vec<_> = computers.iter().filter(|c| c.0 == state).collect();
        let Some((_, uuid, name)) = these.first() else {
            continue;
        };
        let first = match name {
            Some(name) => format!("\"{name}\" ({uuid})"),
            None => uuid.clone(),
        };
        let more = match these.len() {
            1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        reasons.push(format!(
            "{first}{more} {}: {why}; settle them with arq-lockdown pin (or revoke) first",
            state.as_str()
        ));
    }
    reasons
}

/// With two active keys: keep the one used last, delete the other.
fn extra_keys_action(user: &str, active: &[&KeyFacts]) -> String {
    let mut keys = active.to_vec();
    // The most recently used first; never used last.
    keys.sort_by_key(|k| std::cmp::Reverse(k.last_used.as_ref().map(|u| u.at)));
    let describe = |k: &KeyFacts| {
        let id = k.id.clone().unwrap_or_else(|| "(id not read)".to_owned());
        match &k.last_used {
            Some(used) => format!("{id} (last used {})", day(used.at)),
            None => format!("{id} (never used)"),
        }
    };
    let keep = describe(keys[0]);
    let delete: Vec<String> = keys[1..].iter().map(|k| describe(k)).collect();
    let command = match keys[1..].iter().filter_map(|k| k.id.as_deref()).next() {
        Some(id) => format!(": aws iam delete-access-key --user-name {user} --access-key-id {id}"),
        None => String::new(),
    };
    format!(
        "{keep} is the one in use; delete {}{command}",
        delete.join(", ")
    )
}

/// The user's policies against what `policy` builds for this bucket, UUID and the options its tag
/// records (the defaults when it has no tag). `None`: no drift.
pub fn drift(user: &UserFacts, bucket: &BucketName, uuid: &ComputerUuid) -> Option<Drift> {
    let config = ArqConfig {
        bucket: bucket.clone(),
        computer_uuid: uuid.clone(),
    };
    let built = |options| PolicyDocument::scoped_to(&config, options);
    let mut reasons = Vec::new();
    let tag = user.tag(POLICY_OPTIONS_TAG);
    let options = match tag {
        Some(value) => PolicyOptions::from_tag_value(value),
        None => Some(PolicyOptions::default()),
    };
    let current = user.inline_policies.get(POLICY_NAME);
    let mut fix = None;
    match options {
        None => reasons.push(format!(
            "its tag {POLICY_OPTIONS_TAG} = {:?} names no options this version knows",
            tag.unwrap_or_default()
        )),
        Some(options) => {
            let expected = built(options);
            match current {
                Some(Some(document)) if document == expected.as_value() => {}
                Some(current) => {
                    // A user made before the options were recorded, whose policy is exactly the
                    // one for other options: rewriting it would take something from that Mac.
                    let other = PolicyOptions::all()
                        .into_iter()
                        .find(|o| tag.is_none() && current.as_ref() == Some(built(*o).as_value()));
                    match other {
                        Some(other) => reasons.push(format!(
                            "its policy is the one for options {} but that is not recorded in {POLICY_OPTIONS_TAG}: run apply --rotate there",
                            other.tag_value()
                        )),
                        None => {
                            reasons.push(format!(
                                "inline policy {POLICY_NAME} is not the one for options {}",
                                options.tag_value()
                            ));
                            fix = Some(expected);
                        }
                    }
                }
                None => {
                    reasons.push(format!("no inline policy {POLICY_NAME}"));
                    fix = Some(expected);
                }
            }
        }
    }
    let others: Vec<&str> = user
        .inline_policies
        .keys()
        .map(String::as_str)
        .filter(|name| *name != POLICY_NAME)
        .collect();
    if !others.is_empty() {
        reasons.push(format!("other inline policies: {}", others.join(", ")));
    }
    if !user.attached_policies.is_empty() {
        reasons.push(format!(
            "attached policies: {}",
            user.attached_policies.join(", ")
        ));
    }
    if !user.groups.is_empty() {
        reasons.push(format!("in groups: {}", user.groups.join(", ")));
    }
    (!reasons.is_empty()).then_some(Drift { reasons, fix })
}

/// Where audit learnt of a main key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MainKeySource {
    /// `--main-key-id`.
    Flag,
    /// A scoped user's `arq-lockdown:replaced-key`, written by apply or by the service after a
    /// proof by that key.
    Recorded,
    /// The same tag on a user the service enrolled by token: only that Mac's claim.
    Claimed,
}

/// What IAM says about a main key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    Used {
        owner: String,
        last: LastUse,
    },
    NeverUsed {
        owner: String,
    },
    /// IAM knows no such key: deleted (so it cannot be used), or another account's.
    NotFound,
    /// IAM refused to say: the admin lacks `iam:GetAccessKeyLastUsed`, or (on AWS) the key is
    /// not in this account.
    Refused,
}

/// A main key: its id, where audit learnt of it, how many users record it, and its last use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MainKey {
    pub id: String,
    pub sources: Vec<MainKeySource>,
    pub recorded_by: usize,
    pub lookup: Lookup,
    /// Its owner is a scoped user: a Mac's scoped key, not a main key.
    pub scoped: bool,
    /// It is the key audit itself runs with: its last use is this very run.
    pub audits: bool,
    /// The computers whose lockdown replaced it in "Arq S3".
    pub replaced_by: Vec<Replacement>,
}

/// A computer whose lockdown replaced a main key in "Arq S3", as its scoped user records it
/// (`arq-lockdown:replaced-key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replacement {
    pub computer_uuid: String,
    pub computer_name: Option<String>,
    /// Recorded by proof — apply with that key, or the service after STS vouched for it — not a
    /// token enrollment's claim.
    pub proven: bool,
    /// When IAM made the user, by IAM's clock: the lockdown's time, which nothing a Mac does to
    /// its own key (a rotation, an enrollment) moves later.
    pub at: Option<Timestamp>,
    /// The user has an active key of its own: the lockdown gave the Mac its key.
    pub has_own_key: bool,
}

/// When a main key went quiet, and when the verdict may trust that nothing uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quiet {
    /// The later of its recorded last use and the last lockdown that replaced it by proof.
    pub since: Timestamp,
    /// Whether `since` is the recorded last use (else: that lockdown).
    pub from_use: bool,
    /// `since` plus the quiet period.
    pub ready_after: Timestamp,
}

/// When `key` went quiet: the later of its recorded last use and the last proven lockdown that
/// replaced it — so a use recorded before a Mac switched away from it counts from the switch —
/// plus `quiet_minutes`. `None`: never used and never replaced by proof.
pub fn quiet(key: &MainKey, quiet_minutes: u32) -> Option<Quiet> {
    let used = match &key.lookup {
        Lookup::Used { last, .. } => Some(last.at),
        _ => None,
    };
    let replaced = key
        .replaced_by
        .iter()
        .filter(|r| r.proven)
        .filter_map(|r| r.at)
        .max();
    let (since, from_use) = match (used, replaced) {
        (Some(used), Some(replaced)) if replaced > used => (replaced, false),
        (Some(used), _) => (used, true),
        (None, Some(replaced)) => (replaced, false),
        (None, None) => return None,
    };
    let period = jiff::SignedDuration::from_mins(i64::from(quiet_minutes));
    Some(Quiet {
        since,
        from_use,
        ready_after: since
            .saturating_add(period)
            .expect("a whole number of minutes"),
    })
}

impl MainKey {
    /// Only claims of token-enrolled Macs name it.
    fn only_claimed(&self) -> bool {
        self.sources.iter().all(|s| *s == MainKeySource::Claimed)
    }

    /// Whether the verdict judges this key: not a scoped key, and not a claim IAM cannot confirm
    /// (a claim can make audit more careful, never less).
    pub fn judged(&self) -> bool {
        let unconfirmed_claim =
            self.only_claimed() && matches!(self.lookup, Lookup::NotFound | Lookup::Refused);
        !self.scoped && !unconfirmed_claim
    }

    pub fn status(&self) -> MainKeyStatus {
        match (&self.lookup, self.scoped) {
            (_, true) => MainKeyStatus::ScopedKey,
            (Lookup::Used { .. }, _) => MainKeyStatus::Used,
            (Lookup::NeverUsed { .. }, _) => MainKeyStatus::NeverUsed,
            (Lookup::NotFound, _) => MainKeyStatus::NotFound,
            (Lookup::Refused, _) => MainKeyStatus::Refused,
        }
    }
}

/// A main key's status in one word: what IAM says of it, or that it is a Mac's own scoped key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MainKeyStatus {
    Used,
    NeverUsed,
    /// Deleted, or not this account's.
    NotFound,
    /// IAM would not say.
    Refused,
    /// A Mac's own scoped key, not a main key.
    ScopedKey,
}

impl MainKeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Used => "used",
            Self::NeverUsed => "never-used",
            Self::NotFound => "not-found",
            Self::Refused => "refused",
            Self::ScopedKey => "scoped-key",
        }
    }
}

/// The fleet's verdict: may the main keys be retired? Whether a Mac still uses a main key can only
/// be seen as a use IAM recorded, and IAM records at most the first in each 15 minutes; so, per
/// main key judged: every computer whose lockdown replaced it by proof has a key of its own, and
/// no use of it has been recorded for the quiet period, counted from the later of its recorded
/// last use and that last lockdown ([`quiet`]) — by IAM's clock (`rules.now`). And no computer
/// may be `not-locked-down`. Nothing a Mac does to its own key (a rotation, a new enrollment)
/// makes it ready: no scoped key's creation is looked at. The reasons say when it may flip.
pub fn verdict(
    not_locked_down: &[(String, Option<String>)],
    main_keys: &[MainKey],
    rules: &Rules,
) -> (bool, Vec<String>) {
    let mut reasons = Vec::new();
    if let Some(first) = some_computers(not_locked_down) {
        reasons.push(format!(
            "{first} not locked down: run arq-lockdown apply there first"
        ));
    }
    let judged: Vec<&MainKey> = main_keys.iter().filter(|k| k.judged()).collect();
    for key in &judged {
        match &key.lookup {
            _ if key.audits => reasons.push(format!(
                "audit runs with {} itself, so IAM's last use of it is this run: audit with other admin credentials (--admin-credentials profile:NAME) to judge it",
                key.id
            )),
            Lookup::Refused => reasons.push(format!(
                "cannot tell whether {} is still used: IAM refused iam:GetAccessKeyLastUsed (the admin needs it, or the key is not in this account)",
                key.id
            )),
            Lookup::NotFound => {}
            Lookup::Used { .. } | Lookup::NeverUsed { .. } => reasons.extend(held_back(key, rules)),
        }
    }
    if judged.is_empty() {
        reasons.push(
            "no main key known: pass --main-key-id AKIA… (apply and the service record the key each lockdown replaces; no user here records one)"
                .to_owned(),
        );
    }
    (reasons.is_empty(), reasons)
}

/// Why one main key IAM knows may not go yet: a Mac that replaced it has no key of its own, or
/// its quiet period has not passed.
fn held_back(key: &MainKey, rules: &Rules) -> Vec<String> {
    let mut reasons = Vec::new();
    let unfinished: Vec<(String, Option<String>)> = key
        .replaced_by
        .iter()
        .filter(|r| r.proven && !r.has_own_key)
        .map(|r| (r.computer_uuid.clone(), r.computer_name.clone()))
        .collect();
    if let Some(first) = some_computers(&unfinished) {
        reasons.push(format!(
            "{first} replaced {} but has no active key of its own (its lockdown did not finish, so it may still use {}): run arq-lockdown apply there",
            key.id, key.id
        ));
    }
    let Some(quiet) = quiet(key, rules.quiet_minutes) else {
        return reasons;
    };
    // IAM's clock is the `Date` of its answers, in whole seconds: a lockdown within the second
    // of `now` has not been made after it.
    if rules.now.as_second() < quiet.ready_after.as_second() {
        let since = match (&key.lookup, quiet.from_use) {
            (Lookup::Used { last, .. }, true) => format!(
                "{} was last used by {} in {} at {}",
                key.id,
                last.service.as_deref().unwrap_or("an unknown service"),
                last.region.as_deref().unwrap_or("an unknown region"),
                second(last.at),
            ),
            _ => format!(
                "the last lockdown that replaced {} was at {}",
                key.id,
                second(quiet.since)
            ),
        };
        reasons.push(format!(
            "{since} (IAM records one use per 15 minutes, and a Mac that still has it uses it every backup): no use recorded since; ready after {} if none is recorded by then (--quiet-minutes {}; IAM's last-use data can lag, --quiet-minutes {SURER_QUIET_MINUTES} to be surer)",
            second(quiet.ready_after),
            rules.quiet_minutes,
        ));
    }
    reasons
}

/// The first of `computers` by name and UUID, and how many more; `None` for none.
fn some_computers(computers: &[(String, Option<String>)]) -> Option<String> {
    let (uuid, name) = computers.first()?;
    let first = match name {
        Some(name) => format!("\"{name}\" ({uuid})"),
        None => uuid.clone(),
    };
    Some(match computers.len() {
        1 => first,
        n => format!("{first} and {} more", n - 1),
    })
}

/// The computers whose lockdown replaced each main key, from their users' tags: proven unless
/// the service enrolled the user by token (then it is only that Mac's claim).
pub fn replacements(computers: &[ComputerFacts]) -> BTreeMap<String, Vec<Replacement>> {
    let mut found: BTreeMap<String, Vec<Replacement>> = BTreeMap::new();
    for computer in computers {
        let Some(user) = &computer.user else {
            continue;
        };
        let Some(id) = user.tag(REPLACED_KEY_TAG) else {
            continue;
        };
        let proven = !user.tag(ENROLLED_BY_TAG).is_some_and(is_token_enrollment);
        found.entry(id.to_owned()).or_default().push(Replacement {
            computer_uuid: computer.uuid.to_string(),
            computer_name: computer_name(computer),
            proven,
            at: user.created,
            has_own_key: user.keys.iter().any(|k| k.active),
        });
    }
    found
}

/// The main keys to look up: `--main-key-id`s, then every key a scoped user of this bucket
/// records as replaced — a claim when the service enrolled that user by token.
pub fn main_key_ids(
    flags: &[String],
    users: &[&UserFacts],
) -> BTreeMap<String, (Vec<MainKeySource>, usize)> {
    let mut keys: BTreeMap<String, (Vec<MainKeySource>, usize)> = BTreeMap::new();
    for id in flags {
        let entry = keys.entry(id.clone()).or_default();
        if !entry.0.contains(&MainKeySource::Flag) {
            entry.0.push(MainKeySource::Flag);
        }
    }
    for user in users {
        let Some(id) = user.tag(REPLACED_KEY_TAG) else {
            continue;
        };
        let source = match user.tag(ENROLLED_BY_TAG) {
            Some(by) if is_token_enrollment(by) => MainKeySource::Claimed,
            _ => MainKeySource::Recorded,
        };
        let entry = keys.entry(id.to_owned()).or_default();
        entry.1 += 1;
        if !entry.0.contains(&source) {
            entry.0.push(source);
            entry.0.sort();
        }
    }
    keys
}

/// The newest creation time of an active key of these users.
pub fn newest_key(users: &[&UserFacts]) -> Option<Timestamp> {
    users
        .iter()
        .flat_map(|u| &u.keys)
        .filter(|k| k.active)
        .filter_map(|k| k.created)
        .max()
}

/// A time as people and scripts read it: RFC 3339 in UTC, whole seconds.
pub fn second(at: Timestamp) -> String {
    Timestamp::from_second(at.as_second())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The day of a time, for actions.
fn day(at: Timestamp) -> String {
    second(at).chars().take(10).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const UUID: &str = "32D9D7A2-3B3E-4BE7-B85B-0605AF24F570";
    const DAY: i64 = 86_400;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn rules() -> Rules {
        Rules {
            bucket: BucketName::parse("fleet.example").unwrap(),
            now: t(100 * DAY),
            stale_days: 30,
            quiet_minutes: DEFAULT_QUIET_MINUTES,
        }
    }

    fn policy(options: PolicyOptions) -> Value {
        PolicyDocument::scoped_to(
            &ArqConfig::from_values("fleet.example", UUID, "test").unwrap(),
            options,
        )
        .as_value()
        .clone()
    }

    const LEGACY: PolicyOptions = PolicyOptions {
        legacy_glacier: true,
        no_computer_listing: false,
    };

    /// A key made at `created`, last used at `used` (times in seconds after [`t`]'s origin).
    fn key(active: bool, created: i64, used: Option<i64>) -> KeyFacts {
        KeyFacts {
            id: Some(format!("AKIAEXAMPLE{created:09}")),
            active,
            created: Some(t(created)),
            last_used: used.map(|u| LastUse {
                at: t(u),
                service: Some("s3".into()),
                region: Some("eu-west-1".into()),
            }),
        }
    }

    fn user(options_tag: Option<&str>, policy: Option<Value>, keys: Vec<KeyFacts>) -> UserFacts {
        let mut tags = BTreeMap::new();
        if let Some(tag) = options_tag {
            tags.insert(POLICY_OPTIONS_TAG.to_owned(), tag.to_owned());
        }
        let mut inline_policies = BTreeMap::new();
        if let Some(policy) = policy {
            inline_policies.insert(POLICY_NAME.to_owned(), Some(policy));
        }
        UserFacts {
            name: format!("arq-{UUID}"),
            arn: format!("arn:aws:iam::123456789012:user/arq-lockdown/arq-{UUID}"),
            tags,
            inline_policies,
            keys,
            ..UserFacts::default()
        }
    }

    /// Tagged with the default options, their policy, one key used a day before [`rules`]' now.
    fn good_user() -> UserFacts {
        user(
            Some("default"),
            Some(policy(PolicyOptions::default())),
            vec![key(true, 10 * DAY, Some(99 * DAY))],
        )
    }

    fn computer(has_data: bool, user: Option<UserFacts>) -> ComputerFacts {
        ComputerFacts {
            uuid: ComputerUuid::parse(UUID).unwrap(),
            has_data,
            info: Info::Read {
                computer_name: Some("Bob's Mac".into()),
                user_name: Some("bob".into()),
            },
            user,
            claims: Claims::default(),
        }
    }

    /// The id of [`good_user`]'s key.
    const GOOD_KEY: &str = "AKIAEXAMPLE000864000";
    const PRINT: &str = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
    /// A 32-byte enrollment public key (base64) and another one.
    const BOUND: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    const OTHER_BOUND: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

    /// A Mac of the inventory reporting the key `key`.
    fn mac(key: Option<&str>) -> MacReport {
        MacReport {
            label: "\"Bob's Mac\", row 2".into(),
            access_key_id: key.map(str::to_owned),
            enrollment_key: Some(PRINT.into()),
            as_arq_writes: true,
        }
    }

    /// [`good_user`]'s computer as the inventory `macs` reports it.
    fn reported(macs: Vec<MacReport>) -> ComputerFacts {
        ComputerFacts {
            claims: Claims {
                reported_by: Some(macs),
                ..Claims::default()
            },
            ..computer(true, Some(good_user()))
        }
    }

    /// [`good_user`] after `change`, its computer with `claims`.
    fn claimed(change: impl FnOnce(&mut UserFacts), claims: Claims) -> ComputerFacts {
        ComputerFacts {
            claims,
            ..changed(change)
        }
    }

    fn tag(user: &mut UserFacts, key: &str, value: &str) {
        user.tags.insert(key.to_owned(), value.to_owned());
    }

    /// A computer with data whose user is [`good_user`] after `change`.
    fn changed<R>(change: impl FnOnce(&mut UserFacts) -> R) -> ComputerFacts {
        let mut user = good_user();
        change(&mut user);
        computer(true, Some(user))
    }

    #[test]
    #[rustfmt::skip]
    fn each_computer_gets_the_first_state_that_applies() {
        use ComputerState::*;
        let cases: Vec<(&str, ComputerFacts, ComputerState)> = vec![
            ("user, no data", ComputerFacts { has_data: false, ..changed(|u| u.keys.clear()) }, OrphanUser),
            ("data, no user", computer(true, None), NotLockedDown),
            ("nothing wrong", computer(true, Some(good_user())), LockedDown),
            ("policy edited", changed(|u| u.inline_policies.insert(POLICY_NAME.into(), Some(json!({"Statement": []})))), PolicyDrift),
            ("policy not JSON", changed(|u| u.inline_policies.insert(POLICY_NAME.into(), None)), PolicyDrift),
            ("no policy", changed(|u| u.inline_policies.clear()), PolicyDrift),
            ("another inline policy", changed(|u| u.inline_policies.insert("extra".into(), Some(Value::Null))), PolicyDrift),
            ("an attached policy", changed(|u| u.attached_policies.push("arn:aws:iam::aws:policy/AmazonS3FullAccess".into())), PolicyDrift),
            ("in a group", changed(|u| u.groups.push("admins".into())), PolicyDrift),
            ("options recorded, policy for defaults", changed(|u| u.tags.insert(POLICY_OPTIONS_TAG.into(), "legacy-glacier".into())), PolicyDrift),
            ("options recorded and matching", changed(|u| {
                u.tags.insert(POLICY_OPTIONS_TAG.into(), "legacy-glacier".into());
                u.inline_policies.insert(POLICY_NAME.into(), Some(policy(LEGACY)));
            }), LockedDown),
            ("no options tag: judged as defaults", changed(|u| u.tags.clear()), LockedDown),
            ("unknown options tag", changed(|u| u.tags.insert(POLICY_OPTIONS_TAG.into(), "everything".into())), PolicyDrift),
            ("drift wins over extra keys", changed(|u| {
                u.groups.push("g".into());
                u.keys.push(key(true, 20 * DAY, None));
            }), PolicyDrift),
            ("two active keys", changed(|u| u.keys.push(key(true, 20 * DAY, None))), ExtraKeys),
            ("an inactive second key", changed(|u| u.keys.push(key(false, 20 * DAY, None))), LockedDown),
            ("extra keys win over unused", changed(|u| u.keys = vec![key(true, 0, None), key(true, DAY, None)]), ExtraKeys),
            ("last used 31 days ago", changed(|u| u.keys = vec![key(true, 0, Some(69 * DAY))]), KeyUnused),
            ("last used 29 days ago", changed(|u| u.keys = vec![key(true, 0, Some(71 * DAY))]), LockedDown),
            ("exactly 30 days", changed(|u| u.keys = vec![key(true, 0, Some(70 * DAY))]), KeyUnused),
            ("never used, made 40 days ago", changed(|u| u.keys = vec![key(true, 60 * DAY, None)]), KeyUnused),
            ("never used, made 2 days ago", changed(|u| u.keys = vec![key(true, 98 * DAY, None)]), LockedDown),
            ("no active key", changed(|u| u.keys = vec![key(false, 0, Some(99 * DAY))]), KeyUnused),
            ("no key at all", changed(|u| u.keys.clear()), KeyUnused),
            // Whose it is: contested, pinned, unconfirmed.
            ("a refused claim recorded", changed(|u| tag(u, REFUSED_CLAIM_TAG, &format!("1800000000 {PRINT}"))), Contested),
            ("its enrollment key binds another computer too", claimed(|u| tag(u, "arq-lockdown:enrollment-key", BOUND), Claims { sharing_enrollment_key: vec!["U2".into()], ..Claims::default() }), Contested),
            ("bound to a key other than the pin", changed(|u| { tag(u, "arq-lockdown:enrollment-key", OTHER_BOUND); tag(u, PINNED_KEY_TAG, PRINT); }), Contested),
            ("bound to the pinned key", changed(|u| { tag(u, "arq-lockdown:enrollment-key", BOUND); tag(u, PINNED_KEY_TAG, &fingerprint(BOUND).unwrap()); }), LockedDown),
            ("a claim refused after the pinned Mac bound it", changed(|u| { tag(u, "arq-lockdown:enrollment-key", BOUND); tag(u, PINNED_KEY_TAG, &fingerprint(BOUND).unwrap()); tag(u, REFUSED_CLAIM_TAG, &format!("1800000000 {PRINT}")); }), LockedDown),
            ("a claim refused, bound but not pinned", changed(|u| { tag(u, "arq-lockdown:enrollment-key", BOUND); tag(u, REFUSED_CLAIM_TAG, &format!("1800000000 {PRINT}")); }), Contested),
            ("pinned, unbound, and a key no enrollment made", changed(|u| tag(u, PINNED_KEY_TAG, PRINT)), Contested),
            ("pinned, waiting for its Mac", changed(|u| { tag(u, PINNED_KEY_TAG, PRINT); u.keys.clear(); }), Pinned),
            ("pinned, an inactive key left", changed(|u| { tag(u, PINNED_KEY_TAG, PRINT); u.keys[0].active = false; }), Pinned),
            ("an orphan beats a refused claim", ComputerFacts { has_data: false, ..changed(|u| tag(u, REFUSED_CLAIM_TAG, "1 x")) }, OrphanUser),
            ("contested beats drift", changed(|u| { tag(u, REFUSED_CLAIM_TAG, "1 x"); u.groups.push("g".into()); }), Contested),
            ("no inventory: nothing to confirm by", computer(true, Some(good_user())), LockedDown),
            ("its Mac reports its key", reported(vec![mac(Some(GOOD_KEY))]), LockedDown),
            ("its Mac reports another key", reported(vec![mac(Some("AKIAMAIN1EXAMPLE0000"))]), Unconfirmed),
            ("its Mac reports no key", reported(vec![mac(None)]), Unconfirmed),
            ("no Mac reports it", reported(vec![]), Unconfirmed),
            ("only in lower case", reported(vec![MacReport { as_arq_writes: false, ..mac(Some(GOOD_KEY)) }]), Unconfirmed),
            ("two Macs report it", reported(vec![mac(Some(GOOD_KEY)), mac(Some("AKIAMAIN1EXAMPLE0000"))]), Contested),
            ("two Macs report it, no user yet", ComputerFacts { user: None, ..reported(vec![mac(None), mac(None)]) }, Contested),
            ("one Mac reports it, no user yet", ComputerFacts { user: None, ..reported(vec![mac(None)]) }, NotLockedDown),
            ("a key id not read", ComputerFacts { claims: reported(vec![mac(Some(GOOD_KEY))]).claims, ..changed(|u| u.keys[0].id = None) }, Unconfirmed),
            ("unconfirmed beats drift", ComputerFacts { claims: reported(vec![]).claims, ..changed(|u| u.groups.push("g".into())) }, Unconfirmed),
            ("two active keys, one reported", ComputerFacts { claims: reported(vec![mac(Some(GOOD_KEY))]).claims, ..changed(|u| u.keys.push(key(true, 20 * DAY, None))) }, ExtraKeys),
            ("no active key: nothing to confirm", ComputerFacts { claims: reported(vec![]).claims, ..changed(|u| u.keys.clear()) }, KeyUnused),
        ];
        for (name, facts, expected) in cases {
            let judged = judge(&facts, &rules());
            assert_eq!(judged.state, expected, "{name}: {:?}", judged.action);
            assert_eq!(judged.action.is_none(), expected == LockedDown, "{name}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn only_a_drifted_inline_policy_with_known_options_is_fixable() {
        let (bucket, uuid) = (rules().bucket, ComputerUuid::parse(UUID).unwrap());
        let defaults = policy(PolicyOptions::default());
        let cases: Vec<(&str, UserFacts, Option<Value>)> = vec![
            ("edited", user(Some("default"), Some(json!({})), vec![]), Some(defaults.clone())),
            ("missing", user(Some("legacy-glacier"), None, vec![]), Some(policy(LEGACY))),
            ("unknown options", user(Some("x"), Some(json!({})), vec![]), None),
            // Made before the options were recorded, with other options: not guessed at.
            ("untagged, another option's policy", user(None, Some(policy(LEGACY)), vec![]), None),
            ("untagged, edited", user(None, Some(json!({})), vec![]), Some(defaults)),
        ];
        for (name, user, fix) in cases {
            let drift = drift(&user, &bucket, &uuid).expect(name);
            assert_eq!(drift.fix.as_ref().map(PolicyDocument::as_value), fix.as_ref(), "{name}: {:?}", drift.reasons);
        }
        let mut extra = good_user();
        extra.groups.push("g".into());
        let drift = drift(&extra, &bucket, &uuid).unwrap();
        assert_eq!(drift.fix, None, "the inline policy is fine: nothing to rewrite");
        assert_eq!(drift.reasons, ["in groups: g"]);
    }

    #[test]
    fn extra_keys_name_the_key_in_use_and_the_one_to_delete() {
        let facts = changed(|u| u.keys = vec![key(true, 5, None), key(true, 6, Some(99 * DAY))]);
        let action = judge(&facts, &rules()).action.unwrap();
        assert!(
            action.starts_with("AKIAEXAMPLE000000006 (last used 2027-"),
            "{action}"
        );
        let delete = format!("--user-name arq-{UUID} --access-key-id AKIAEXAMPLE000000005");
        assert!(action.ends_with(&delete), "{action}");
    }

    #[test]
    fn the_actions_say_who_claims_it_and_how_to_pin_it() {
        let action = |facts: ComputerFacts| judge(&facts, &rules()).action.unwrap();
        let refused = action(changed(|u| {
            tag(u, REFUSED_CLAIM_TAG, &format!("1800000000 {PRINT}"))
        }));
        assert!(
            refused.starts_with(&format!("the service refused another Mac's enrollment of it (enrollment key {PRINT}) on 2027-01-15T08:00:00Z: find out which Mac"))
                && refused.contains(&format!("arq-lockdown pin --bucket fleet.example --computer-uuid {UUID} --enrollment-key THAT-MACS-FINGERPRINT")),
            "{refused}"
        );
        let shared = action(claimed(
            |u| tag(u, "arq-lockdown:enrollment-key", BOUND),
            Claims {
                sharing_enrollment_key: vec!["U2".into(), "U3".into()],
                ..Claims::default()
            },
        ));
        assert!(
            shared.starts_with(&format!(
                "its enrollment key {} is bound to U2, U3 too",
                fingerprint(BOUND).unwrap()
            )),
            "{shared}"
        );
        let twins = action(reported(vec![
            mac(Some(GOOD_KEY)),
            MacReport {
                label: "\"Eve's Mac\", row 3".into(),
                ..mac(None)
            },
        ]));
        assert!(
            twins.starts_with(&format!(
                "2 Macs report it: \"Bob's Mac\", row 2 ({PRINT}), \"Eve's Mac\", row 3 ({PRINT})"
            )),
            "{twins}"
        );
        let other = action(reported(vec![mac(Some("AKIAMAIN1EXAMPLE0000"))]));
        assert_eq!(
            other,
            format!(
                "its Mac \"Bob's Mac\", row 2 reports AKIAMAIN1EXAMPLE0000, not {GOOD_KEY}: the key IAM holds is not that Mac's (a squatter's?): arq-lockdown pin --bucket fleet.example --computer-uuid {UUID} --enrollment-key {PRINT}"
            )
        );
        let iam_mac = action(reported(vec![MacReport {
            enrollment_key: None,
            ..mac(Some("AKIAMAIN1EXAMPLE0000"))
        }]));
        assert!(iam_mac.ends_with("lock that Mac down with arq-lockdown apply and admin credentials (it deletes the keys that are not in its \"Arq S3\")"), "{iam_mac}");
        let nobody = action(reported(vec![]));
        assert!(nobody.starts_with(&format!("no Mac in the inventory reports this computer, so nothing confirms that its key {GOOD_KEY} is its own Mac's")), "{nobody}");
    }

    #[test]
    #[rustfmt::skip]
    fn contested_and_unconfirmed_computers_hold_the_main_keys_back() {
        use ComputerState::*;
        type Computers = Vec<(ComputerState, String, Option<String>)>;
        let cases: Vec<(&str, Computers, Vec<&str>)> = vec![
            ("none", vec![(LockedDown, "U1".into(), None), (Pinned, "U2".into(), None), (KeyUnused, "U3".into(), None)], vec![]),
            ("one contested", vec![(Contested, "U1".into(), Some("Bob's Mac".into()))], vec!["\"Bob's Mac\" (U1) contested: another Mac claims them; settle them with arq-lockdown pin (or revoke) first"]),
            ("both, and more", vec![(Unconfirmed, "U1".into(), None), (Contested, "U2".into(), None), (Unconfirmed, "U3".into(), None)], vec![
                "U2 contested: another Mac claims them; settle them with arq-lockdown pin (or revoke) first",
                "U1 and 1 more unconfirmed: no Mac in the inventory reports the key IAM holds for them; settle them with arq-lockdown pin (or revoke) first",
            ]),
        ];
        for (name, computers, expected) in cases {
            assert_eq!(unsettled(&computers), expected, "{name}");
        }
    }

    fn main_key(sources: &[MainKeySource], lookup: Lookup) -> MainKey {
        MainKey {
            id: "AKIAMAIN1EXAMPLE0000".into(),
            sources: sources.to_vec(),
            recorded_by: 1,
            lookup,
            scoped: false,
            audits: false,
            replaced_by: Vec::new(),
        }
    }

    /// `key` under another id.
    fn second_key(key: MainKey) -> MainKey {
        MainKey {
            id: "AKIAMAIN2EXAMPLE0000".into(),
            ..key
        }
    }

    fn used(at: i64) -> Lookup {
        Lookup::Used {
            owner: "fleet-admin".into(),
            last: LastUse {
                at: t(at),
                service: Some("s3".into()),
                region: Some("eu-west-1".into()),
            },
        }
    }

    const MINUTE: i64 = 60;

    /// `minutes` before [`rules`]' now.
    fn ago(minutes: i64) -> i64 {
        100 * DAY - minutes * MINUTE
    }

    /// A lockdown that replaced the key `minutes` ago, `proven` or claimed, with or without a key
    /// of its own.
    fn replaced(minutes: i64, proven: bool, has_own_key: bool) -> Replacement {
        Replacement {
            computer_uuid: UUID.into(),
            computer_name: Some("Bob's Mac".into()),
            proven,
            at: Some(t(ago(minutes))),
            has_own_key,
        }
    }

    fn with(key: MainKey, replaced_by: Vec<Replacement>) -> MainKey {
        MainKey { replaced_by, ..key }
    }

    /// A name, the Macs not locked down, the main keys, the quiet period, the verdict.
    #[rustfmt::skip]
    type VerdictCase = (&'static str, Vec<(String, Option<String>)>, Vec<MainKey>, u32, bool);

    #[test]
    #[rustfmt::skip]
    fn a_main_key_may_go_only_after_a_quiet_period_with_every_mac_that_replaced_it_done() {
        use MainKeySource::*;
        let q = DEFAULT_QUIET_MINUTES;
        let never = || Lookup::NeverUsed { owner: "fleet-admin".into() };
        let flag = |lookup| main_key(&[Flag], lookup);
        let mac = vec![("U1".to_owned(), Some("Bob's Mac".to_owned()))];
        let cases: Vec<VerdictCase> = vec![
            ("used 3 hours ago, nothing since", vec![], vec![flag(used(ago(180)))], q, true),
            ("used 5 minutes after the last lockdown, as IAM records it", vec![], vec![with(flag(used(ago(20))), vec![replaced(10, true, true)])], q, false),
            ("used exactly the quiet period ago", vec![], vec![flag(used(ago(120)))], q, true),
            ("used a minute less than that ago", vec![], vec![flag(used(ago(119)))], q, false),
            ("a use in IAM's future", vec![], vec![flag(used(ago(-1)))], q, false),
            ("quiet long, but a proven lockdown 30 minutes ago", vec![], vec![with(flag(used(ago(300))), vec![replaced(30, true, true)])], q, false),
            ("quiet long, the last proven lockdown 3 hours ago", vec![], vec![with(flag(used(ago(300))), vec![replaced(180, true, true), replaced(240, true, true)])], q, true),
            ("a claimed lockdown 30 minutes ago does not restart it", vec![], vec![with(flag(used(ago(300))), vec![replaced(30, false, true)])], q, true),
            ("a proven lockdown without a key of its own", vec![], vec![with(flag(used(ago(300))), vec![replaced(300, true, false)])], q, false),
            ("a claimed one without a key of its own", vec![], vec![with(flag(used(ago(300))), vec![replaced(300, false, false)])], q, true),
            ("never used, never replaced", vec![], vec![flag(never())], q, true),
            ("never used, replaced by proof 10 minutes ago", vec![], vec![with(flag(never()), vec![replaced(10, true, true)])], q, false),
            ("surer: used 3 hours ago, 240 minutes asked", vec![], vec![flag(used(ago(180)))], SURER_QUIET_MINUTES, false),
            ("surer: used 5 hours ago", vec![], vec![flag(used(ago(300)))], SURER_QUIET_MINUTES, true),
            ("no quiet period asked", vec![], vec![flag(used(ago(0)))], 0, true),
            ("none asked, a lockdown within IAM's current second", vec![], vec![with(flag(never()), vec![Replacement { at: t(ago(0)).checked_add(jiff::SignedDuration::from_millis(400)).ok(), ..replaced(0, true, true) }])], 0, true),
            ("deleted", vec![], vec![main_key(&[Recorded], Lookup::NotFound)], q, true),
            ("IAM refused", vec![], vec![flag(Lookup::Refused)], q, false),
            ("a Mac not locked down", mac, vec![flag(never())], q, false),
            ("no main key known", vec![], vec![], q, false),
            ("a claim IAM does not know", vec![], vec![main_key(&[Claimed], Lookup::NotFound)], q, false),
            ("a claim IAM refuses, beside a quiet key", vec![], vec![main_key(&[Claimed], Lookup::Refused), second_key(flag(used(ago(300))))], q, true),
            ("a claim used minutes ago", vec![], vec![main_key(&[Claimed], used(ago(5)))], q, false),
            ("audit runs with the main key", vec![], vec![MainKey { audits: true, ..flag(used(ago(300))) }], q, false),
            ("a scoped key recorded as replaced", vec![], vec![MainKey { scoped: true, ..main_key(&[Recorded], used(ago(1))) }, second_key(flag(used(ago(300))))], q, true),
            ("one of two keys used minutes ago", vec![], vec![flag(used(ago(300))), second_key(flag(used(ago(5))))], q, false),
        ];
        for (name, not_locked_down, keys, quiet_minutes, ready) in cases {
            let rules = Rules { quiet_minutes, ..rules() };
            let (verdict, reasons) = verdict(&not_locked_down, &keys, &rules);
            assert_eq!(verdict, ready, "{name}: {reasons:?}");
            assert_eq!(reasons.is_empty(), ready, "{name}");
        }
    }

    #[test]
    fn the_reasons_say_when_the_verdict_may_flip_and_how_to_be_surer() {
        let key = main_key(&[MainKeySource::Flag], used(ago(20)));
        let (_, reasons) = verdict(&[], std::slice::from_ref(&key), &rules());
        assert_eq!(
            reasons,
            [
                "AKIAMAIN1EXAMPLE0000 was last used by s3 in eu-west-1 at 2027-04-25T07:40:00Z (IAM records one use per 15 minutes, and a Mac that still has it uses it every backup): no use recorded since; ready after 2027-04-25T09:40:00Z if none is recorded by then (--quiet-minutes 120; IAM's last-use data can lag, --quiet-minutes 240 to be surer)"
            ]
        );
        let lockdown = with(
            key,
            vec![replaced(10, true, true), replaced(300, true, false)],
        );
        let (_, reasons) = verdict(&[], &[lockdown], &rules());
        assert_eq!(
            reasons,
            [
                format!("\"Bob's Mac\" ({UUID}) replaced AKIAMAIN1EXAMPLE0000 but has no active key of its own (its lockdown did not finish, so it may still use AKIAMAIN1EXAMPLE0000): run arq-lockdown apply there"),
                "the last lockdown that replaced AKIAMAIN1EXAMPLE0000 was at 2027-04-25T07:50:00Z (IAM records one use per 15 minutes, and a Mac that still has it uses it every backup): no use recorded since; ready after 2027-04-25T09:50:00Z if none is recorded by then (--quiet-minutes 120; IAM's last-use data can lag, --quiet-minutes 240 to be surer)".to_owned(),
            ]
        );
        let mac = [
            ("U1".to_owned(), Some("Bob's Mac".to_owned())),
            ("U2".to_owned(), None),
        ];
        let quiet = main_key(&[MainKeySource::Flag], used(ago(300)));
        let (_, reasons) = verdict(&mac, &[quiet], &rules());
        assert_eq!(
            reasons,
            ["\"Bob's Mac\" (U1) and 1 more not locked down: run arq-lockdown apply there first"]
        );
    }

    #[test]
    fn each_lockdown_that_replaced_a_main_key_is_found_proven_or_claimed() {
        let tagged = |id: &str, by: Option<&str>, keys: Vec<KeyFacts>| {
            let mut user = good_user();
            user.created = Some(t(5));
            user.keys = keys;
            user.tags.insert(REPLACED_KEY_TAG.into(), id.into());
            if let Some(by) = by {
                user.tags.insert(ENROLLED_BY_TAG.into(), by.into());
            }
            computer(true, Some(user))
        };
        let computers = [
            tagged("AKIAMAIN1EXAMPLE0000", None, vec![key(true, 6, None)]),
            tagged(
                "AKIAMAIN1EXAMPLE0000",
                Some("token:fleet"),
                vec![key(false, 6, None)],
            ),
            tagged(
                "AKIAMAIN2EXAMPLE0000",
                Some("arn:aws:iam::123456789012:user/fleet"),
                vec![],
            ),
            computer(true, Some(good_user())),
            computer(true, None),
        ];
        let found = replacements(&computers);
        let summary: Vec<(&str, bool, bool)> = found
            .iter()
            .flat_map(|(id, rs)| {
                rs.iter()
                    .map(move |r| (id.as_str(), r.proven, r.has_own_key))
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("AKIAMAIN1EXAMPLE0000", true, true),
                ("AKIAMAIN1EXAMPLE0000", false, false),
                ("AKIAMAIN2EXAMPLE0000", true, false),
            ]
        );
        let first = &found["AKIAMAIN1EXAMPLE0000"][0];
        assert_eq!(
            (first.at, first.computer_name.as_deref()),
            (Some(t(5)), Some("Bob's Mac"))
        );
    }

    #[test]
    fn main_keys_come_from_the_flag_and_the_users_tags_and_token_users_only_claim() {
        let mut by_proof = good_user();
        by_proof
            .tags
            .insert(REPLACED_KEY_TAG.into(), "AKIAMAIN1EXAMPLE0000".into());
        let mut by_token = by_proof.clone();
        by_token
            .tags
            .insert(ENROLLED_BY_TAG.into(), "token:fleet".into());
        let mut other = by_token.clone();
        other
            .tags
            .insert(REPLACED_KEY_TAG.into(), "AKIACLAIMEXAMPLE0001".into());
        let keys = main_key_ids(
            &["AKIAMAIN1EXAMPLE0000".into(), "AKIAFLAG1EXAMPLE0000".into()],
            &[&by_proof, &by_token, &other, &good_user()],
        );
        use MainKeySource::*;
        assert_eq!(
            keys.into_iter().collect::<Vec<_>>(),
            [
                ("AKIACLAIMEXAMPLE0001".to_owned(), (vec![Claimed], 1)),
                ("AKIAFLAG1EXAMPLE0000".to_owned(), (vec![Flag], 0)),
                (
                    "AKIAMAIN1EXAMPLE0000".to_owned(),
                    (vec![Flag, Recorded, Claimed], 2)
                ),
            ]
        );
    }

    #[test]
    fn the_newest_scoped_key_is_the_newest_active_one() {
        let mut a = good_user();
        a.keys = vec![key(true, 5, None), key(false, 9, None)];
        let mut b = good_user();
        b.keys = vec![key(true, 7, None)];
        assert_eq!(newest_key(&[&a, &b]), Some(t(7)));
        assert_eq!(newest_key(&[]), None);
    }
}
