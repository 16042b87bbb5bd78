//! The command line: every subcommand and flag, with its help text. Parsing only; no work here.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::arq_config::{BucketName, ComputerUuid};
use crate::audit::decide::DEFAULT_QUIET_MINUTES;
use crate::credential_store::StoreLocation;
use crate::key_source::{AdminCredentials, SourceKind};

/// Lock each Mac's Arq backups down to that Mac: a scoped IAM key in Arq's "Arq S3" item that
/// reaches only this computer's folders in the bucket.
///
/// `apply` also takes its settings from a configuration profile (domain org.arq-lockdown); flags
/// win over the profile.
#[derive(Debug, Parser)]
#[command(name = "arq-lockdown", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Lock this Mac down: a scoped IAM key for this computer, proven, in "Arq S3"; Arq relaunched.
    ///
    /// Re-running with nothing changed does nothing (a receipt records what was done); a run that
    /// died half-way is finished by the next. Exit 7: Arq is running (see --quit-arq).
    Apply(ApplyArgs),
    /// Show whether this Mac is locked down, without touching the network.
    Status(StatusArgs),
    /// Admin side: delete a computer's scoped IAM user, its keys and its policy.
    Revoke(RevokeArgs),
    /// Run the provisioning service: Macs get keys scoped to their own computer, and no IAM rights.
    Serve(ServeArgs),
    /// Print the IAM policy that limits a key to this computer's data in Arq's bucket.
    Policy(PolicyArgs),
    /// Run Arq's S3 calls and the isolation probes with a key; report what is allowed and refused.
    ///
    /// Exit 0: Arq would work and no other computer is reachable. 10: a call Arq needs is refused.
    /// 11: other computers' folder names can be listed. 12: their data can be read, written or
    /// deleted (the most severe wins: 12, then 10, then 11).
    Verify(VerifyArgs),
    /// Admin side: is every Mac of a bucket locked down, and may the main keys be switched off?
    ///
    /// One state per computer (orphan-user, not-locked-down, contested, pinned, unconfirmed,
    /// policy-drift, extra-keys, key-unused, locked-down) with what to do, and the verdict
    /// ready_to_retire_main_keys.
    /// Read-only unless --fix-policies. Exit 0: every computer is locked down and the main keys
    /// may be retired; 13: something needs action.
    Audit(AuditArgs),
    /// Admin side, the rollout's last step: switch the main keys off once audit says they may go.
    ///
    /// Sets them Inactive when audit's verdict is ready (exit 13 with the reasons otherwise,
    /// nothing changed); --undo sets them Active again. Switches the keys given with --main-key-id and those a lockdown replaced by proof; never
    /// deletes one. Each change is recorded on the key's IAM user (tag
    /// arq-lockdown:retired-key:KEY), and --undo switches on only what a retirement switched off.
    RetireMainKeys(RetireArgs),
    /// Admin side: bind each computer to the enrollment key its own Mac reported to the MDM.
    ///
    /// From the inventory export (every computer with data that exactly one Mac reports), or one
    /// computer by hand. A computer another key holds is taken back: its keys are deleted, and
    /// only the pinned Mac may enroll it. Exit 13: two Macs report a computer (not pinned).
    Pin(PinArgs),
}

/// Which bucket and computer: Arq's config in a home folder, or both values given directly.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Home folder whose Library/Arq/config/app_config.plist to read [default: $HOME].
    #[arg(long, value_name = "DIR", conflicts_with_all = ["bucket", "computer_uuid"])]
    pub arq_home: Option<PathBuf>,
    /// Arq's bucket, exactly as Arq stores it (instead of reading Arq's config).
    #[arg(long, value_name = "NAME", value_parser = parse_bucket)]
    pub bucket: Option<BucketName>,
    /// This computer's UUID in the bucket (instead of reading Arq's config).
    #[arg(long, value_name = "UUID", requires = "bucket", value_parser = parse_computer_uuid)]
    pub computer_uuid: Option<ComputerUuid>,
}

/// Which policy `policy` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyKind {
    /// The policy of one computer's scoped user (what apply writes).
    Computer,
    /// The permissions boundary every scoped user is created under: create it once per account
    /// (`aws iam create-policy --policy-name arq-lockdown-boundary …`).
    Boundary,
    /// What the admin credentials of apply and revoke need: scoped users only under the boundary
    /// given with --permissions-boundary.
    Admin,
    /// What serve needs with the config given with --config: the admin policy for its boundary,
    /// plus counting enrollments at start and listing its allowed buckets (the binding rule's
    /// data check).
    Service,
    /// The least `audit --bucket B` needs (with --fix-policies: also rewriting scoped users'
    /// inline policies).
    Audit,
    /// The least `retire-main-keys --bucket B` (and --undo) needs: audit's reads, and switching
    /// keys of users outside /arq-lockdown/ (narrow it to your main keys' users).
    Retire,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Which policy.
    #[arg(long, value_enum, default_value = "computer")]
    pub kind: PolicyKind,
    #[command(flatten)]
    pub target: TargetArgs,
    /// With --kind admin: the permissions boundary's ARN.
    #[arg(long, value_name = "ARN", required_if_eq("kind", "admin"))]
    pub permissions_boundary: Option<String>,
    /// With --kind service: the service's configuration file.
    #[arg(long, value_name = "FILE", required_if_eq("kind", "service"))]
    pub config: Option<PathBuf>,
    /// Also allow Arq 3's Glacier vaults, SNS topics and SQS queues (cannot be scoped to one Mac).
    #[arg(long)]
    pub legacy_glacier: bool,
    /// Refuse the root listing too: other computers' UUIDs stay hidden, but Arq cannot list
    /// computers or restore with arq_restore, and a Mac with a cold cache cannot write its
    /// computerinfo (see docs/policy.md).
    #[arg(long)]
    pub no_computer_listing: bool,
    /// Print compact JSON on one line, as sent to IAM.
    #[arg(long)]
    pub compact: bool,
    /// With --kind audit: also what audit --fix-policies needs.
    #[arg(long)]
    pub fix_policies: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Test the key in Arq's credential item — keychain (the login Keychain: reading the secret
    /// shows the user one dialog) or file:PATH — instead of the standard AWS credential chain
    /// (AWS_PROFILE, AWS_ACCESS_KEY_ID, …).
    #[arg(long, value_name = "STORE", env = "ARQ_LOCKDOWN_CREDENTIAL_STORE")]
    pub credential_store: Option<StoreLocation>,
    /// Make no call that writes: skip the probe objects.
    #[arg(long)]
    pub read_only: bool,
    /// The key's policy was made with --no-computer-listing: the root listing must be refused.
    #[arg(long)]
    pub no_computer_listing: bool,
    /// Another computer's UUID whose data must be out of reach [default: one the root listing
    /// names; without one, reads of other computers' data are not probed].
    #[arg(long, value_name = "UUID", value_parser = parse_computer_uuid)]
    pub other_computer_uuid: Option<ComputerUuid>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Whose Arq: the home folder, the user to act for when root, and where "Arq S3" lives.
#[derive(Debug, Args)]
pub struct MacArgs {
    /// Home folder whose Library/Arq/config/app_config.plist to read [default: $HOME].
    #[arg(long, value_name = "DIR")]
    pub arq_home: Option<PathBuf>,
    /// As root: the user to act for [default: the user at the console].
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Internal: this run was started by root, which talks to it over stdin and stdout.
    #[arg(long, hide = true)]
    pub handover_stdin: bool,
    /// Arq's credential item: keychain (the login Keychain, macOS) or file:PATH (a JSON stand-in).
    #[arg(
        long,
        value_name = "STORE",
        env = "ARQ_LOCKDOWN_CREDENTIAL_STORE",
        default_value = "keychain"
    )]
    pub credential_store: StoreLocation,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub mac: MacArgs,
    /// Where the scoped key comes from [default: the profile's Source, else iam].
    #[arg(long, value_enum)]
    pub source: Option<SourceKind>,
    /// Act only as the configuration profile says, as the LaunchAgent does (a Jamf policy should
    /// too): do nothing until a profile sets Source, or while it sets Enabled to false.
    #[arg(long, conflicts_with = "source")]
    pub managed: bool,
    /// With --source iam: who may create the IAM user and key: arq-s3 (the keys now in "Arq S3",
    /// the main keys), env (the standard AWS credential chain) or profile:NAME.
    #[arg(long, value_name = "WHO", default_value = "arq-s3", value_parser = parse_admin)]
    pub admin_credentials: AdminCredentials,
    /// With --source iam: the managed policy every scoped user is created with as its permissions
    /// boundary [default: arq-lockdown-boundary in the admin's account].
    #[arg(long, value_name = "ARN")]
    pub permissions_boundary: Option<String>,
    /// With --source service: the service's URL (https://, or http:// to this machine only).
    #[arg(long, value_name = "URL")]
    pub service_url: Option<String>,
    /// With --source service: the service's server id [default: the URL's host].
    #[arg(long, value_name = "ID")]
    pub service_id: Option<String>,
    /// Also allow Arq 3's Glacier vaults, SNS topics and SQS queues (cannot be scoped to one Mac).
    #[arg(long)]
    pub legacy_glacier: bool,
    /// Refuse the root listing too: other computers' UUIDs stay hidden, but Arq cannot list
    /// computers or restore with arq_restore, and a Mac with a cold cache cannot write its
    /// computerinfo (see docs/policy.md).
    #[arg(long)]
    pub no_computer_listing: bool,
    /// Replace the scoped key even if the receipt says it is in place.
    #[arg(long)]
    pub rotate: bool,
    /// Print every step it would take; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Ask Arq and Arq Agent to quit instead of failing when they run.
    #[arg(long)]
    pub quit_arq: bool,
    /// With --quit-arq (or the profile's QuitArq): SIGTERM what did not quit when asked, or could
    /// not be asked (never an Arq Agent that looks busy with a backup). Without it a refused
    /// request stops the run (exit 7).
    #[arg(long)]
    pub terminate_arq: bool,
    /// With --quit-arq: how long to wait for them to quit [default: 30].
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub wait: Option<Duration>,
    /// How long a new key may take to start working (IAM is eventually consistent) [default: 60].
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub verify_timeout: Option<Duration>,
    /// How long to wait for another arq-lockdown run for this user to finish (exit 9 after)
    /// [default: 120].
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub lock_timeout: Option<Duration>,
    /// Do not start Arq again at the end.
    #[arg(long)]
    pub no_relaunch: bool,
    /// Program that starts Arq again [default on macOS: open -b com.haystacksoftware.Arq].
    #[arg(long, value_name = "PROGRAM", conflicts_with = "no_relaunch")]
    pub relaunch_command: Option<PathBuf>,
    /// The Mac's name for the IAM user's tag [default: the computer name].
    #[arg(long, value_name = "NAME")]
    pub computer_name: Option<String>,
    /// The Mac's serial number for the IAM user's tag [default: this Mac's].
    #[arg(long, value_name = "SERIAL")]
    pub serial_number: Option<String>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one line for a Jamf extension attribute: <result>STATE key=… computer=… bucket=…
    /// enrollment-key=… user=NAME; what to do</result> (no network, no Keychain secret); as root
    /// with nobody logged in, the last user's line.
    #[arg(long, conflicts_with = "json")]
    pub jamf_ea: bool,
    /// Also ask AWS (one STS call) whether it still accepts the key in "Arq S3" — after a revoke
    /// the receipt alone still says locked down. Signing reads the secret: on a Mac that is a
    /// Keychain dialog, so this is for use by hand, never from the agent or an extension attribute.
    #[arg(long, conflicts_with = "jamf_ea")]
    pub check: bool,
    #[command(flatten)]
    pub mac: MacArgs,
    /// Print the status as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The computer whose scoped user to delete.
    #[arg(long, value_name = "UUID", value_parser = parse_computer_uuid)]
    pub computer_uuid: ComputerUuid,
    /// Admin credentials: env (the standard AWS credential chain) or profile:NAME.
    #[arg(long, value_name = "WHO", default_value = "env", value_parser = parse_admin_elsewhere)]
    pub admin_credentials: AdminCredentials,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The fleet's bucket, exactly as Arq stores it.
    #[arg(long, value_name = "NAME", value_parser = parse_bucket)]
    pub bucket: BucketName,
    /// Admin credentials: env (the standard AWS credential chain) or profile:NAME.
    #[arg(long, value_name = "WHO", default_value = "env", value_parser = parse_admin_elsewhere)]
    pub admin_credentials: AdminCredentials,
    /// A main key's access key id (repeat for more). The keys apply and the service replaced in
    /// "Arq S3" are read from the scoped users' tags as well.
    #[arg(long = "main-key-id", value_name = "AKIA…", value_parser = parse_key_id)]
    pub main_key_ids: Vec<String>,
    /// A scoped key not used for this many days (never used: since it was made) is key-unused.
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub stale_days: u32,
    /// The main keys may go only when no use of them has been recorded for this many minutes,
    /// nor since the last lockdown that replaced them (IAM records one use per 15 minutes; a Mac
    /// with them uses them every backup, hourly by default). 240: surer, as IAM's data can lag.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_QUIET_MINUTES, value_parser = quiet_minutes())]
    pub quiet_minutes: u32,
    /// Do not read each computer's computerinfo for its name (one S3 GET per computer).
    #[arg(long)]
    pub no_names: bool,
    /// Rewrite drifted inline policies arq-lockdown (never a key, a user, or another policy).
    #[arg(long)]
    pub fix_policies: bool,
    /// The MDM's inventory export (Jamf's advanced-search CSV with the status extension attribute,
    /// or status --json objects): confirm each computer's key by what its own Mac reports.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// With --inventory: the CSV column holding the extension attribute [default: the column whose
    /// cells are arq-lockdown status lines].
    #[arg(long, value_name = "NAME", requires = "inventory")]
    pub inventory_column: Option<String>,
    /// Print the report as one JSON object.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print one CSV row per computer, for a spreadsheet.
    #[arg(long)]
    pub csv: bool,
    /// Also write the fleet's page to FILE: one self-contained HTML file (the verdict, the counts
    /// per state, the computers needing action; with --history, the rollout over time).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also record this run's counts in DIR/audit-BUCKET.jsonl (a line a run; runs over a month
    /// old are thinned to one a day), which --html draws over time.
    #[arg(long, value_name = "DIR")]
    pub history: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PinArgs {
    /// The fleet's bucket, exactly as Arq stores it.
    #[arg(long, value_name = "NAME", value_parser = parse_bucket)]
    pub bucket: BucketName,
    /// The MDM's inventory export (Jamf's advanced-search CSV with the status extension attribute,
    /// or status --json objects): pin every computer with data that exactly one Mac reports.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "computer_uuid",
        conflicts_with = "computer_uuid"
    )]
    pub inventory: Option<PathBuf>,
    /// With --inventory: the CSV column holding the extension attribute [default: the column whose
    /// cells are arq-lockdown status lines].
    #[arg(long, value_name = "NAME", requires = "inventory")]
    pub inventory_column: Option<String>,
    /// By hand: the computer to pin.
    #[arg(long, value_name = "UUID", value_parser = parse_computer_uuid, requires = "enrollment_key")]
    pub computer_uuid: Option<ComputerUuid>,
    /// By hand: the fingerprint of its Mac's enrollment key, as that Mac's status shows it.
    #[arg(long, value_name = "SHA256:…", value_parser = parse_fingerprint, requires = "computer_uuid")]
    pub enrollment_key: Option<String>,
    /// Admin credentials: env (the standard AWS credential chain) or profile:NAME.
    #[arg(long, value_name = "WHO", default_value = "env", value_parser = parse_admin_elsewhere)]
    pub admin_credentials: AdminCredentials,
    /// The permissions boundary a pinned computer's user is created with [default:
    /// arq-lockdown-boundary in the admin's account].
    #[arg(long, value_name = "ARN")]
    pub permissions_boundary: Option<String>,
    /// Say what it would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn parse_fingerprint(value: &str) -> Result<String, String> {
    match crate::inventory::is_fingerprint(value) {
        true => Ok(value.to_owned()),
        false => Err(
            "an enrollment-key fingerprint as arq-lockdown status shows it: SHA256: and 43 characters of base64".to_owned(),
        ),
    }
}

/// At most 30 days.
fn quiet_minutes() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(0..=43_200)
}

#[derive(Debug, Args)]
pub struct RetireArgs {
    /// The fleet's bucket, exactly as Arq stores it (with --undo: or name the keys with
    /// --main-key-id).
    #[arg(long, value_name = "NAME", value_parser = parse_bucket, required_unless_present = "undo")]
    pub bucket: Option<BucketName>,
    /// A main key's access key id (repeat for more), beside those the lockdowns recorded.
    #[arg(long = "main-key-id", value_name = "AKIA…", value_parser = parse_key_id)]
    pub main_key_ids: Vec<String>,
    /// Admin credentials: env (the standard AWS credential chain) or profile:NAME — not the main
    /// keys themselves.
    #[arg(long, value_name = "WHO", default_value = "env", value_parser = parse_admin_elsewhere)]
    pub admin_credentials: AdminCredentials,
    /// As for audit: how long no use of the main keys must be recorded.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_QUIET_MINUTES, value_parser = quiet_minutes())]
    pub quiet_minutes: u32,
    /// Set Active again the main keys a retirement set Inactive.
    #[arg(long)]
    pub undo: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn parse_key_id(value: &str) -> Result<String, String> {
    match crate::iam::is_access_key_id(value) {
        true => Ok(value.to_owned()),
        false => {
            Err("an access key id: 16 to 128 upper-case letters and digits (AKIA…)".to_owned())
        }
    }
}

fn parse_admin(value: &str) -> Result<AdminCredentials, String> {
    match value.split_once(':') {
        None if value == "arq-s3" => Ok(AdminCredentials::ArqS3),
        None if value == "env" => Ok(AdminCredentials::Chain),
        Some(("profile", name)) if !name.is_empty() => {
            Ok(AdminCredentials::Profile(name.to_owned()))
        }
        _ => Err("use arq-s3, env or profile:NAME".to_owned()),
    }
}

/// Admin credentials for commands run where the admin is, not on a Mac: no "Arq S3" there.
fn parse_admin_elsewhere(value: &str) -> Result<AdminCredentials, String> {
    match parse_admin(value)? {
        AdminCredentials::ArqS3 => Err("arq-s3 is a Mac's key: use env or profile:NAME".to_owned()),
        admin => Ok(admin),
    }
}

fn parse_bucket(value: &str) -> Result<BucketName, String> {
    BucketName::parse(value).map_err(|reason| {
        format!("not a valid S3 bucket name ({reason}); use the name exactly as Arq stores it")
    })
}

fn parse_computer_uuid(value: &str) -> Result<ComputerUuid, String> {
    ComputerUuid::parse(value).map_err(|reason| {
        format!(
            "not a UUID ({reason}); use the value exactly as Arq stores it, like 32D9D7A2-3B3E-4BE7-B85B-0605AF24F570"
        )
    })
}

fn parse_seconds(value: &str) -> Result<Duration, String> {
    match value.parse::<u64>() {
        Ok(seconds) if seconds <= 3600 => Ok(Duration::from_secs(seconds)),
        _ => Err("a whole number of seconds, at most 3600".to_owned()),
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The service's configuration file (TOML; see docs/service.md).
    #[arg(long, value_name = "FILE", env = "ARQ_LOCKDOWN_SERVICE_CONFIG")]
    pub config: PathBuf,
    /// Serve plain HTTP on a non-loopback address (only behind a TLS-terminating proxy).
    #[arg(long)]
    pub insecure_http: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn admin_credentials_parse_and_arq_s3_is_refused_away_from_a_mac() {
        assert_eq!(parse_admin("arq-s3"), Ok(AdminCredentials::ArqS3));
        assert_eq!(parse_admin("env"), Ok(AdminCredentials::Chain));
        assert_eq!(
            parse_admin("profile:fleet"),
            Ok(AdminCredentials::Profile("fleet".into()))
        );
        for junk in ["", "profile:", "profile", "ENV", "root", "file:/x"] {
            assert!(parse_admin(junk).is_err(), "{junk:?}");
        }
        assert!(parse_admin_elsewhere("arq-s3").is_err());
        assert_eq!(parse_admin_elsewhere("env"), Ok(AdminCredentials::Chain));
    }

    #[test]
    fn seconds_are_whole_and_at_most_an_hour() {
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        assert_eq!(parse_seconds("3600"), Ok(Duration::from_secs(3600)));
        for junk in ["3601", "-1", "1.5", "", "ten"] {
            assert!(parse_seconds(junk).is_err(), "{junk:?}");
        }
    }
}
