//! arq-lockdown: lock each Mac's Arq backups down to that Mac.
//!
//! Modules, one concept each:
//! - [`arq_config`]: Arq's app_config.plist (bucket, computer UUID), validated;
//! - [`policy`]: the IAM policy scoped to one computer;
//! - [`credential_store`]: the "Arq S3" item (Keychain on macOS, a JSON file elsewhere);
//! - [`aws`]: how AWS clients are built;
//! - [`verify`]: Arq's S3 calls and the isolation probes, and their verdict;
//! - [`iam`]: the scoped IAM users, their binding tags and keys, and every read of them (audit's too);
//! - [`iam_names`]: IAM's names (user path, policy name, tag keys, action lists), a leaf;
//! - [`key_source`]: where `apply` gets a scoped key: IAM, or the provisioning service;
//! - [`protocol`]: the wire format between a Mac and the provisioning service;
//! - [`arq_app`]: Arq's processes (running? quit, relaunch);
//! - [`receipt`]: the record that makes a re-run a no-op; `run_log`: the user's log file;
//! - [`setback`]: what stopped the last `apply` that an admin must hear of (status, backoff);
//! - [`apply`]: the lockdown, step by step;
//! - [`service`]: the provisioning service (`serve`);
//! - [`audit`]: the admin's view of a fleet: each computer's state, the main keys' verdict;
//! - [`retire`]: the main keys switched off (and on again), the rollout's last step;
//! - [`audit`]: the admin's view of a fleet: each computer's state, the main keys' verdict, the page;
//! - [`inventory`]: what each Mac reported to the MDM (its UUID, key id, enrollment key), read
//!   from the admin's export;
//! - [`session`]: running as root, acting for a user;
//! - [`extension_attribute`]: the Jamf extension attribute line, and the last one root keeps;
//! - [`preferences`]: settings from configuration profiles;
//! - [`system`]: this computer's name and serial;
//! - [`cli`] and [`commands`]: the command line and one function per subcommand.

pub mod apply;
pub mod arq_app;
pub mod arq_config;
pub mod audit;
pub mod aws;
pub mod cli;
mod commands;
pub mod credential_store;
pub mod exit_code;
pub mod extension_attribute;
mod fault;
mod fs;
mod https;
pub mod iam;
pub mod iam_names;
pub mod inventory;
pub mod key_source;
pub mod policy;
pub mod preferences;
pub mod protocol;
pub mod receipt;
pub mod retire;
pub mod run_lock;
pub mod run_log;
pub mod secret;
pub mod service;
pub mod session;
pub mod setback;
pub mod system;
pub mod verify;

use exit_code::ExitCode;

/// Every way a run can fail, each mapped to its class's exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] arq_config::ConfigError),
    #[error(transparent)]
    Store(#[from] credential_store::StoreError),
    #[error(transparent)]
    Verify(#[from] verify::VerifyError),
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
    #[error(transparent)]
    Iam(#[from] iam::IamError),
    #[error(transparent)]
    KeySource(#[from] key_source::KeySourceError),
    #[error(transparent)]
    ServiceClient(#[from] key_source::service::ServiceClientError),
    #[error(transparent)]
    Service(#[from] service::ServiceError),
    #[error(transparent)]
    Session(#[from] session::SessionError),
    #[error(transparent)]
    Broker(#[from] key_source::root::BrokerError),
    #[error(transparent)]
    Unreachable(#[from] aws::Unreachable),
    #[error(transparent)]
    ArqApp(#[from] arq_app::ArqAppError),
    #[error(transparent)]
    Receipt(#[from] receipt::ReceiptError),
    #[error(transparent)]
    Lock(#[from] run_lock::LockError),
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    #[error(transparent)]
    Retire(#[from] retire::RetireError),
    #[error(transparent)]
    Inventory(#[from] inventory::InventoryError),
    #[error(transparent)]
    Pin(#[from] commands::pin::PinError),
    /// The standard chain found no credentials; `fix` says where this command takes them from.
    #[error("no AWS credentials found: {fix}")]
    NoCredentials { fix: &'static str },
    #[error(transparent)]
    Preferences(#[from] preferences::PreferencesError),
    #[error("--source service needs --service-url, or ServiceURL in the configuration profile")]
    MissingServiceUrl,
    #[error("{0}")]
    Usage(String),
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Config(e) => e.exit_code(),
            Self::Store(e) => e.exit_code(),
            Self::Verify(e) => e.exit_code(),
            Self::Apply(e) => e.exit_code(),
            Self::Iam(e) => e.exit_code(),
            Self::KeySource(e) => e.exit_code(),
            Self::ServiceClient(e) => e.exit_code(),
            Self::Service(e) => e.exit_code(),
            Self::Session(e) => e.exit_code(),
            Self::Broker(e) => e.exit_code(),
            Self::Unreachable(_) => ExitCode::Aws,
            Self::ArqApp(e) => e.exit_code(),
            Self::Receipt(_) => ExitCode::Internal,
            Self::Lock(e) => e.exit_code(),
            Self::Audit(e) => e.exit_code(),
            Self::Retire(e) => e.exit_code(),
            Self::Inventory(e) => e.exit_code(),
            Self::Pin(e) => e.exit_code(),
            Self::NoCredentials { .. } => ExitCode::Credentials,
            Self::Preferences(e) => e.exit_code(),
            Self::MissingServiceUrl | Self::Usage(_) => ExitCode::Usage,
            Self::Output(_) => ExitCode::Internal,
        }
    }
}

/// Error text from a library (a parser, the AWS SDK) on one line: every message this tool prints
/// is one line.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs one parsed command line to completion and returns the process's exit code.
pub fn run(cli: cli::Cli) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a single-threaded tokio runtime starts");
    match runtime.block_on(commands::run(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("arq-lockdown: error: {error}");
            error.exit_code()
        }
    }
}
