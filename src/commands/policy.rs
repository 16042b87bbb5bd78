//! `arq-lockdown policy`: print a policy: a computer's, the permissions boundary, the admin's, the
//! service's or audit's.

use crate::Error;
use crate::cli::{PolicyArgs, PolicyKind};
use crate::exit_code::ExitCode;
use crate::policy::{PolicyDocument, PolicyOptions};
use crate::service::ServiceConfig;

pub fn run(args: PolicyArgs) -> Result<ExitCode, Error> {
    let options = PolicyOptions {
        legacy_glacier: args.legacy_glacier,
        no_computer_listing: args.no_computer_listing,
    };
    let policy = match args.kind {
        PolicyKind::Computer => {
            PolicyDocument::scoped_to(&super::resolve_target(&args.target)?, options)
        }
        PolicyKind::Boundary => {
            let bucket = super::resolve_bucket(&args.target)?;
            PolicyDocument::boundary(&[&bucket], options)
        }
        PolicyKind::Audit => {
            PolicyDocument::audit(&super::resolve_bucket(&args.target)?, args.fix_policies)
        }
        PolicyKind::Retire => PolicyDocument::retire(&super::resolve_bucket(&args.target)?),
        PolicyKind::Admin => PolicyDocument::admin(
            args.permissions_boundary
                .as_deref()
                .expect("clap requires it with --kind admin"),
        ),
        PolicyKind::Service => {
            let path = args.config.expect("clap requires it with --kind service");
            let config = ServiceConfig::load(&path)?;
            let buckets: Vec<_> = config.allowed_buckets.iter().collect();
            PolicyDocument::service(&config.permissions_boundary_arn, &buckets)
        }
    };
    let json = if args.compact {
        policy.to_compact_json()
    } else {
        policy.to_pretty_json()
    };
    super::print(&format!("{json}\n"))?;
    Ok(ExitCode::Success)
}
