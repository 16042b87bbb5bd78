//! `arq-lockdown policy`: print the scoped policy.

use crate::Error;
use crate::cli::PolicyArgs;
use crate::exit_code::ExitCode;
use crate::policy::{PolicyDocument, PolicyOptions};

pub fn run(args: PolicyArgs) -> Result<ExitCode, Error> {
    let config = super::resolve_target(&args.target)?;
    let policy = PolicyDocument::scoped_to(
        &config,
        PolicyOptions {
            legacy_glacier: args.legacy_glacier,
        },
    )?;
    let json = if args.compact {
        policy.to_compact_json()
    } else {
        policy.to_pretty_json()
    };
    super::print(&format!("{json}\n"))?;
    Ok(ExitCode::Success)
}
