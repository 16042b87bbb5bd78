//! `arq-lockdown verify`: probe what a key can do in Arq's bucket.

use crate::Error;
use crate::aws::{self, AwsCredentials};
use crate::cli::VerifyArgs;
use crate::exit_code::ExitCode;
use crate::verify::{VerifyOptions, verify};

/// Where verify takes a key from, for the error when there is none.
const CREDENTIALS_FIX: &str = "pass --credential-store with the key to check, or set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY";

pub async fn run(args: VerifyArgs) -> Result<ExitCode, Error> {
    let config = super::resolve_target(&args.target)?;
    let other_computer = args.other_computer_uuid.clone();
    let key = match &args.credential_store {
        Some(location) => Some(location.open()?.read()?),
        None => None,
    };

    let sdk_config = match &key {
        Some(key) => aws::load_config(AwsCredentials::Key(key)).await,
        None => aws::load_config(AwsCredentials::Chain).await,
    };
    let access_key_id = match &key {
        Some(key) => key.id.clone(),
        None => {
            let credentials = super::found_credentials(&sdk_config, CREDENTIALS_FIX).await?;
            credentials.access_key_id().to_owned()
        }
    };
    drop(key);

    let options = VerifyOptions {
        read_only: args.read_only,
        other_computer,
        no_computer_listing: args.no_computer_listing,
    };
    let report = verify(&sdk_config, access_key_id, &config, &options).await?;
    if args.json {
        super::print_json(&report)?;
    } else {
        super::print(&report.to_text())?;
    }
    Ok(report.verdict.exit_code())
}
