//! `arq-lockdown revoke`: delete a computer's scoped IAM user (admin side).

use crate::Error;
use crate::aws::{self, AwsCredentials};
use crate::cli::RevokeArgs;
use crate::exit_code::ExitCode;
use crate::iam::{self, Iam};
use crate::key_source::AdminCredentials;

pub async fn run(args: RevokeArgs) -> Result<ExitCode, Error> {
    let uuid = &args.computer_uuid;
    let credentials = match &args.admin_credentials {
        AdminCredentials::Profile(name) => AwsCredentials::Profile(name),
        AdminCredentials::Chain => AwsCredentials::Chain,
        AdminCredentials::ArqS3 | AdminCredentials::HandedOver(_) => {
            unreachable!("the command line refuses them for revoke")
        }
    };
    let existed = Iam::new(&aws::load_config(credentials).await)
        .revoke(uuid)
        .await?;
    let user = format!("{}{}", iam::USER_PATH, iam::user_name(uuid));
    if args.json {
        super::print_json(&serde_json::json!({"user": user, "deleted": existed}))?;
    } else if existed {
        super::print(&format!(
            "deleted IAM user {user} with its keys and policy; that computer's keys no longer work (and the UUID can be enrolled again: withdraw the token that Mac had)\n"
        ))?;
    } else {
        super::print(&format!("no IAM user {user}: nothing to revoke\n"))?;
    }
    Ok(ExitCode::Success)
}
