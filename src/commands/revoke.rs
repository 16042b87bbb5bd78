//! `arq-lockdown revoke`: delete a computer's scoped IAM user (admin side).

use crate::Error;
use crate::cli::RevokeArgs;
use crate::exit_code::ExitCode;
use crate::iam::Iam;
use crate::iam_names;

pub async fn run(args: RevokeArgs) -> Result<ExitCode, Error> {
    let uuid = &args.computer_uuid;
    let existed = Iam::new(&super::admin_config(&args.admin_credentials).await)
        .revoke(uuid)
        .await?;
    let user = format!("{}{}", iam_names::USER_PATH, iam_names::user_name(uuid));
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
