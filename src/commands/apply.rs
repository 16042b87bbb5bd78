//! `arq-lockdown apply`: lock this Mac down.

use crate::Error;
use crate::apply::{ApplyRequest, ApplyResult, KeySource, Outcome, Relaunch, apply};
use crate::cli::ApplyArgs;
use crate::exit_code::ExitCode;
use crate::key_source::service::ServiceClient;
use crate::policy::PolicyOptions;
use crate::secret::Secret;
use crate::system;

pub async fn run(args: ApplyArgs) -> Result<ExitCode, Error> {
    super::act_for_user(args.user.as_deref(), &args.store.credential_store)?;
    let store = args.store.credential_store.open()?;
    let request = ApplyRequest {
        home: super::home(args.arq_home)?,
        store: store.as_ref(),
        source: match args.service_url {
            Some(url) if args.source == "service" => {
                let token = std::env::var("ARQ_LOCKDOWN_ENROLLMENT_TOKEN")
                    .ok()
                    .filter(|t| !t.is_empty());
                KeySource::Service(Box::new(ServiceClient::new(
                    &url,
                    args.service_id,
                    token.map(Secret::new),
                )?))
            }
            _ => KeySource::Iam(args.admin_credentials),
        },
        policy_options: PolicyOptions {
            legacy_glacier: args.legacy_glacier,
        },
        rotate: args.rotate,
        dry_run: args.dry_run,
        quit_arq: args.quit_arq.then_some(args.wait),
        verify_timeout: args.verify_timeout,
        relaunch: match (args.no_relaunch, args.relaunch_command) {
            (true, _) => Relaunch::Skip,
            (false, Some(program)) => Relaunch::Command(program),
            (false, None) => Relaunch::Default,
        },
        computer_name: args.computer_name.unwrap_or_else(system::computer_name),
        serial_number: args.serial_number.unwrap_or_else(system::serial_number),
    };
    let outcome = apply(request).await?;
    if args.json {
        super::print_json(&outcome)?;
    } else {
        super::print(&summary(&outcome))?;
    }
    Ok(ExitCode::Success)
}

fn summary(outcome: &Outcome) -> String {
    let mut text = match outcome.result {
        ApplyResult::AlreadyLockedDown => {
            format!(
                "already locked down: \"Arq S3\" holds {}, the key of {}\n",
                outcome.access_key_id,
                outcome.user_arn.as_deref().unwrap_or("?")
            )
        }
        ApplyResult::DryRun => {
            format!(
                "dry run, nothing was changed; {}\n",
                outcome.steps.last().map_or("", String::as_str)
            )
        }
        ApplyResult::LockedDown => format!(
            "locked down: \"Arq S3\" holds {}, the key of {}\n",
            outcome.access_key_id,
            outcome.user_arn.as_deref().unwrap_or("?")
        ),
    };
    if let (true, Some(previous)) = (outcome.main_keys_removed, &outcome.previous_access_key_id) {
        text += &format!(
            "the main keys {previous} are no longer on this Mac (still valid in IAM: they are yours)\n"
        );
    }
    for warning in &outcome.warnings {
        text += &format!("warning: {warning}\n");
    }
    text
}
