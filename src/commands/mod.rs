//! One function per subcommand: resolve the arguments into validated inputs, do the work through
//! the concept modules, and print the result. Returns the exit code for a completed run.

mod apply;
mod audit;
pub(crate) mod pin;
mod policy;
mod retire_main_keys;
mod revoke;
mod serve;
mod status;
mod verify;

use std::path::{Path, PathBuf};

use aws_credential_types::provider::ProvideCredentials;

use crate::Error;
use crate::arq_config::{ArqConfig, BucketName, ConfigError};
use crate::aws::{self, AwsCredentials};
use crate::cli::{Command, TargetArgs};
use crate::credential_store::StoreLocation;
use crate::exit_code::ExitCode;
use crate::key_source::AdminCredentials;
use crate::session::{self, SessionError, Target};

pub async fn run(command: Command) -> Result<ExitCode, Error> {
    match command {
        Command::Apply(args) => apply::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Revoke(args) => revoke::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Policy(args) => policy::run(args),
        Command::Verify(args) => verify::run(args).await,
        Command::Audit(args) => audit::run(args).await,
        Command::RetireMainKeys(args) => retire_main_keys::run(args).await,
        Command::Pin(args) => pin::run(args).await,
    }
}

/// The SDK configuration of admin credentials given as `env` or `profile:NAME` (commands run
/// where the admin is: the command line refuses `arq-s3` for them).
async fn admin_config(admin: &AdminCredentials) -> aws_config::SdkConfig {
    let credentials = match admin {
        AdminCredentials::Profile(name) => AwsCredentials::Profile(name),
        AdminCredentials::Chain => AwsCredentials::Chain,
        AdminCredentials::ArqS3 | AdminCredentials::Root => {
            unreachable!("the command line refuses them here")
        }
    };
    aws::load_config(credentials).await
}

/// How to give admin credentials, for the error when there are none.
const ADMIN_CREDENTIALS_FIX: &str = "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or pass --admin-credentials profile:NAME naming a profile with keys";

/// The credentials `sdk_config`'s chain resolves to, found locally (environment, profile) before
/// any call; none is [`Error::NoCredentials`] naming `fix`.
async fn found_credentials(
    sdk_config: &aws_config::SdkConfig,
    fix: &'static str,
) -> Result<aws_credential_types::Credentials, Error> {
    let none = Error::NoCredentials { fix };
    let provider = sdk_config.credentials_provider().ok_or(none)?;
    provider
        .provide_credentials()
        .await
        .map_err(|_| Error::NoCredentials { fix })
}

/// The bucket and computer UUID, from flags or from Arq's config.
fn resolve_target(target: &TargetArgs) -> Result<ArqConfig, Error> {
    match (&target.bucket, &target.computer_uuid) {
        (Some(bucket), Some(uuid)) => Ok(ArqConfig {
            bucket: bucket.clone(),
            computer_uuid: uuid.clone(),
        }),
        (Some(_), None) => Err(Error::Usage(
            "--bucket needs --computer-uuid here (or read both from Arq's config with --arq-home)"
                .into(),
        )),
        _ => Ok(ArqConfig::read_from_home(&home(target.arq_home.clone())?)?),
    }
}

/// The bucket alone, from `--bucket` or from Arq's config.
fn resolve_bucket(target: &TargetArgs) -> Result<BucketName, Error> {
    match &target.bucket {
        Some(bucket) => Ok(bucket.clone()),
        None => Ok(ArqConfig::read_from_home(&home(target.arq_home.clone())?)?.bucket),
    }
}

/// The home folder holding Arq's config: `--arq-home`, else `$HOME`.
fn home(arq_home: Option<PathBuf>) -> Result<PathBuf, ConfigError> {
    arq_home
        .or_else(|| std::env::var_os("HOME").map(PathBuf::from))
        .ok_or(ConfigError::NoHome)
}

/// As root, when the work is a user's: that user, and the home folder to name to their run (see
/// [`crate::session`]). `--user`, or the console user when the Keychain is the store; with a
/// file store the owner of the home folder (`--arq-home`, else `$HOME`) — root works in place
/// only on a home of its own. `None`: the command runs here.
fn user_to_act_for(
    user: Option<&str>,
    store: &StoreLocation,
    arq_home: Option<&Path>,
) -> Result<Option<(session::User, Option<PathBuf>)>, Error> {
    let is_root = session::is_root();
    if is_root && user.is_none() && *store != StoreLocation::Keychain {
        let Ok(home) = home(arq_home.map(Path::to_owned)) else {
            return Ok(None);
        };
        return Ok(session::owner_of(&home).map(|owner| (owner, Some(home))));
    }
    match session::choose(is_root, user, session::console_user().as_deref())? {
        Target::Here => Ok(None),
        Target::Nobody => Err(SessionError::NoUser.into()),
        Target::User(name) => Ok(Some((
            session::user_by_name(&name).ok_or(SessionError::UnknownUser(name))?,
            arq_home.map(Path::to_owned),
        ))),
    }
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error.
fn print(text: &str) -> Result<(), Error> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Output(e)),
        _ => Ok(()),
    }
}

/// Writes `value` as indented JSON to stdout.
fn print_json(value: &impl serde::Serialize) -> Result<(), Error> {
    print(&json_text(value))
}

/// `value` as indented JSON, one line feed at the end.
fn json_text(value: &impl serde::Serialize) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(value).expect("output serializes")
    )
}
