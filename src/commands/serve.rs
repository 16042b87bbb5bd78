//! `arq-lockdown serve`: run the provisioning service.

use crate::Error;
use crate::cli::ServeArgs;
use crate::exit_code::ExitCode;
use crate::service::{ServiceConfig, serve};

pub async fn run(args: ServeArgs) -> Result<ExitCode, Error> {
    let config = ServiceConfig::load(&args.config)?;
    serve(config, args.insecure_http).await?;
    Ok(ExitCode::Success)
}
