//! The command line: every subcommand and flag, with its help text. Parsing only; no work here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::credential_store::StoreLocation;

/// Lock each Mac's Arq backups down to that Mac: a scoped IAM key in Arq's "Arq S3" item that
/// reaches only this computer's folders in the bucket.
#[derive(Debug, Parser)]
#[command(name = "arq-lockdown", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the IAM policy that limits a key to this computer's data in Arq's bucket.
    Policy(PolicyArgs),
    /// Run Arq's S3 calls and the isolation probes with a key; report what is allowed and refused.
    ///
    /// Exit 0: Arq would work and no other computer is reachable. 10: a call Arq needs is refused.
    /// 11: other computers' folder names can be listed. 12: their data can be read, written or
    /// deleted (the most severe wins: 12, then 10, then 11).
    Verify(VerifyArgs),
}

/// Which bucket and computer: Arq's config in a home folder, or both values given directly.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Home folder whose Library/Arq/config/app_config.plist to read [default: $HOME].
    #[arg(long, value_name = "DIR", conflicts_with_all = ["bucket", "computer_uuid"])]
    pub arq_home: Option<PathBuf>,
    /// Arq's bucket, exactly as Arq stores it (instead of reading Arq's config).
    #[arg(long, value_name = "NAME", requires = "computer_uuid")]
    pub bucket: Option<String>,
    /// This computer's UUID in the bucket (instead of reading Arq's config).
    #[arg(long, value_name = "UUID", requires = "bucket")]
    pub computer_uuid: Option<String>,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Also allow Arq 3's Glacier vaults, SNS topics and SQS queues (cannot be scoped to one Mac).
    #[arg(long)]
    pub legacy_glacier: bool,
    /// Print compact JSON on one line, as sent to IAM.
    #[arg(long)]
    pub compact: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Test the key in Arq's credential item (file:PATH) instead of the standard AWS credential
    /// chain (AWS_PROFILE, AWS_ACCESS_KEY_ID, …).
    #[arg(long, value_name = "STORE", env = "ARQ_LOCKDOWN_CREDENTIAL_STORE")]
    pub credential_store: Option<StoreLocation>,
    /// Make no call that writes: skip the probe objects.
    #[arg(long)]
    pub read_only: bool,
    /// Another computer's UUID whose data must be out of reach [default: one found by a leaking
    /// root listing, else a random one].
    #[arg(long, value_name = "UUID")]
    pub other_computer_uuid: Option<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}
