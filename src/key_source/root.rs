//! Scoped keys from the root run that started this one (`sudo arq-lockdown apply --user U
//! --admin-credentials env|profile:NAME`): the admin's credentials stay in root's process, with
//! root's environment and AWS config, and never reach the run as the user — a process the user
//! controls (ptrace on Linux; its `~/.aws/config` would send admin-signed requests where the user
//! likes). Root does the IAM work (who the admin is, the user, its policy and tags, its keys);
//! the run as the user gets only the new scoped key, its own, which it verifies and writes to
//! "Arq S3".
//!
//! The run as the user asks over the channel of [`crate::session`] ([`RootIssuer`], one
//! [`Request`] and [`Response`] per JSON line); root answers with the real [`IamIssuer`]
//! ([`RootBroker`]). Root trusts nothing it is told but the key id in "Arq S3" (the user's to
//! say, and only ever a key of this computer's own user is deleted for it): it reads the user's
//! Arq config itself, once, by [`crate::fs`]'s rules, decides the policy options, tags and
//! rotation from its own arguments and the profile, and refuses every request that names another
//! computer. It deletes only the key it issued (a discard) or the keys its own plan retires, once.

use std::path::PathBuf;

use aws_config::SdkConfig;
use serde::{Deserialize, Serialize};

use super::{Computer, IamIssuer, IssuedKey, Plan};
use crate::Error;
use crate::arq_config::ArqConfig;
use crate::credential_store::AccessKey;
use crate::exit_code::ExitCode;
use crate::policy::{PolicyDocument, PolicyOptions};
use crate::secret::Secret;
use crate::session::{SessionError, to_root};

/// What the run as the user asks root (one JSON line each).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Read IAM for this computer; "Arq S3" holds `current_id`.
    Connect {
        computer_uuid: String,
        bucket: String,
        current_id: String,
    },
    /// Make the plan's changes and the new key.
    Issue { computer_uuid: String },
    /// The new key failed verification: delete it.
    Discard {
        computer_uuid: String,
        key_id: String,
    },
    /// "Arq S3" holds the new key: delete the keys it replaces.
    Retire { computer_uuid: String },
    /// The run's outcome, for root to print: the last message.
    Output { text: String },
}

/// Root's answer to a [`Request`].
#[derive(Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Response {
    Connected {
        owner: Option<String>,
        plan: Plan,
    },
    Issued {
        key: Option<HandedKey>,
        notes: Vec<String>,
    },
    Done,
    /// Each retired key with the error, if deleting it failed.
    Retired {
        results: Vec<(String, Option<String>)>,
    },
    Failed {
        message: String,
        exit_code: i32,
    },
}

/// The new scoped key as it goes down the pipe (its secret is the user's own).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandedKey {
    access_key_id: String,
    secret_access_key: String,
    user_arn: String,
    user_id: String,
    retire: Vec<String>,
}

impl Drop for HandedKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret_access_key);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "the run as the user asks for computer {asked}, not the computer of the Arq config root read ({read}): nothing was done; run apply again"
    )]
    OtherComputer { asked: String, read: String },
    #[error("the run as the user asked out of turn ({0}): nothing more was done")]
    OutOfTurn(&'static str),
}

impl BrokerError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::OtherComputer { .. } => ExitCode::ConfigInvalid,
            Self::OutOfTurn(_) => ExitCode::Internal,
        }
    }
}

/// The run as the user's side: asks root, which keeps the admin's credentials.
pub struct RootIssuer {
    pub plan: Plan,
    owner: Option<String>,
    computer_uuid: String,
}

impl RootIssuer {
    /// Asks root to read IAM for `computer`, whose "Arq S3" holds `current_id`; root plans.
    pub fn connect(computer: &Computer<'_>, current_id: &str) -> Result<Self, Error> {
        let computer_uuid = computer.config.computer_uuid.to_string();
        match ask(&Request::Connect {
            computer_uuid: computer_uuid.clone(),
            bucket: computer.config.bucket.to_string(),
            current_id: current_id.to_owned(),
        })? {
            Response::Connected { owner, plan } => Ok(Self {
                plan,
                owner,
                computer_uuid,
            }),
            _ => Err(unexpected()),
        }
    }

    /// The scoped user's ARN, when the key in "Arq S3" is one of its keys (IAM says, to root).
    pub fn owner(&self) -> Option<String> {
        self.owner.clone()
    }

    pub fn issue(&self, note: &mut (dyn FnMut(String) + Send)) -> Result<Option<IssuedKey>, Error> {
        let computer_uuid = self.computer_uuid.clone();
        let Response::Issued { key, notes } = ask(&Request::Issue { computer_uuid })? else {
            return Err(unexpected());
        };
        notes.into_iter().for_each(&mut *note);
        Ok(key.map(|key| IssuedKey {
            key: AccessKey {
                id: key.access_key_id.clone(),
                secret: Secret::new(key.secret_access_key.clone()),
            },
            user_arn: key.user_arn.clone(),
            user_id: key.user_id.clone(),
            retire: key.retire.clone(),
        }))
    }

    pub fn discard(&self, new: &IssuedKey) -> Result<(), Error> {
        let request = Request::Discard {
            computer_uuid: self.computer_uuid.clone(),
            key_id: new.key.id.clone(),
        };
        match ask(&request)? {
            Response::Done => Ok(()),
            _ => Err(unexpected()),
        }
    }

    /// Asks root to retire the keys its plan replaces; each with its result.
    pub fn retire(&self) -> Vec<(String, Result<(), String>)> {
        let computer_uuid = self.computer_uuid.clone();
        let failed = |error: Error| {
            let planned = self.plan.retire_key.iter();
            planned
                .map(|key| (key.clone(), Err(error.to_string())))
                .collect()
        };
        match ask(&Request::Retire { computer_uuid }) {
            Ok(Response::Retired { results }) => results
                .into_iter()
                .map(|(key, error)| (key, error.map_or(Ok(()), Err)))
                .collect(),
            Ok(_) => failed(unexpected()),
            Err(error) => failed(error),
        }
    }
}

/// One request to root and its answer (a refusal as [`RootError`]).
fn ask(request: &Request) -> Result<Response, Error> {
    let mut channel = to_root()
        .ok_or_else(|| SessionError::Handover("this run was not started by root".into()))?;
    channel.send(request)?;
    match channel.receive::<Response>()? {
        Response::Failed { message, exit_code } => {
            Err(SessionError::reported(message, exit_code).into())
        }
        response => Ok(response),
    }
}

fn unexpected() -> Error {
    SessionError::Handover("root answered out of turn".into()).into()
}

/// What root decides about the computer itself (its arguments, the profile), not the user.
pub struct RootsChoices {
    pub options: PolicyOptions,
    pub boundary: Option<String>,
    pub name: Option<String>,
    pub serial: Option<String>,
    pub rotate: bool,
}

/// Root's side: answers the run as the user with the admin's credentials.
pub struct RootBroker {
    sdk_config: SdkConfig,
    /// The user's home, whose Arq config root reads itself.
    home: PathBuf,
    choices: RootsChoices,
    work: Option<Work>,
}

/// One computer's IAM work, from the Arq config root read.
struct Work {
    config: ArqConfig,
    policy: PolicyDocument,
    current_id: String,
    replaced_key: Option<String>,
    issuer: IamIssuer,
    plan: Plan,
    issued: Option<IssuedKey>,
    retired: bool,
}

impl RootBroker {
    pub fn new(sdk_config: SdkConfig, home: PathBuf, choices: RootsChoices) -> Self {
        Self {
            sdk_config,
            home,
            choices,
            work: None,
        }
    }

    /// The answer to `request`: root's result, or its refusal or error.
    pub async fn answer(&mut self, request: Request) -> Response {
        let answered = match request {
            Request::Connect {
                computer_uuid,
                bucket,
                current_id,
            } => self.connect(&computer_uuid, &bucket, current_id).await,
            Request::Issue { computer_uuid } => self.issue(&computer_uuid).await,
            Request::Discard {
                computer_uuid,
                key_id,
            } => self.discard(&computer_uuid, &key_id).await,
            Request::Retire { computer_uuid } => self.retire(&computer_uuid).await,
            Request::Output { .. } => Err(BrokerError::OutOfTurn("output").into()),
        };
        answered.unwrap_or_else(|error| Response::Failed {
            message: error.to_string(),
            exit_code: error.exit_code() as i32,
        })
    }

    async fn connect(
        &mut self,
        computer_uuid: &str,
        bucket: &str,
        current_id: String,
    ) -> Result<Response, Error> {
        if self.work.is_some() {
            return Err(BrokerError::OutOfTurn("a second connect").into());
        }
        if !crate::iam::is_access_key_id(&current_id) {
            return Err(BrokerError::OutOfTurn("a key id that is not one").into());
        }
        let config = ArqConfig::read_from_home(&self.home)?;
        if computer_uuid != config.computer_uuid.as_str() || bucket != config.bucket.as_str() {
            return Err(BrokerError::OtherComputer {
                asked: format!("{computer_uuid} in {bucket}"),
                read: format!("{} in {}", config.computer_uuid, config.bucket),
            }
            .into());
        }
        let policy = PolicyDocument::scoped_to(&config, self.choices.options);
        let choices = &self.choices;
        let issuer = {
            let computer = Computer {
                config: &config,
                policy: &policy,
                options: choices.options,
                name: choices.name.as_deref(),
                serial: choices.serial.as_deref(),
                replaced_key: None,
            };
            IamIssuer::connect(&self.sdk_config, choices.boundary.as_deref(), &computer).await?
        };
        let owner = issuer.owner_of(&current_id);
        let mut work = Work {
            config,
            policy,
            replaced_key: owner.is_none().then(|| current_id.clone()),
            current_id,
            issuer,
            plan: Plan::default(),
            issued: None,
            retired: false,
        };
        let new_key = owner.is_none() || choices.rotate;
        work.plan = work
            .issuer
            .plan(&work.computer(choices), &work.current_id, new_key);
        let plan = work.plan.clone();
        self.work = Some(work);
        Ok(Response::Connected { owner, plan })
    }

    async fn issue(&mut self, computer_uuid: &str) -> Result<Response, Error> {
        let work = work_for(&mut self.work, computer_uuid)?;
        if work.issued.is_some() {
            return Err(BrokerError::OutOfTurn("a second key").into());
        }
        let mut notes = Vec::new();
        let computer = work.computer(&self.choices);
        let issued = work
            .issuer
            .issue(&work.plan, &computer, &work.current_id, &mut |n| {
                notes.push(n)
            })
            .await;
        let issued = match issued {
            Ok(issued) => issued,
            Err(error) => {
                notes.iter().for_each(|n| eprintln!("arq-lockdown: {n}"));
                return Err(error);
            }
        };
        let key = issued.as_ref().map(|new| HandedKey {
            access_key_id: new.key.id.clone(),
            secret_access_key: new.key.secret.expose().to_owned(),
            user_arn: new.user_arn.clone(),
            user_id: new.user_id.clone(),
            retire: new.retire.clone(),
        });
        work_for(&mut self.work, computer_uuid)?.issued = issued;
        Ok(Response::Issued { key, notes })
    }

    async fn discard(&mut self, computer_uuid: &str, key_id: &str) -> Result<Response, Error> {
        let work = work_for(&mut self.work, computer_uuid)?;
        let Some(new) = work.issued.take().filter(|new| new.key.id == key_id) else {
            return Err(BrokerError::OutOfTurn("a discard of a key root did not issue").into());
        };
        work.issuer
            .discard(&work.computer(&self.choices), &new)
            .await?;
        Ok(Response::Done)
    }

    async fn retire(&mut self, computer_uuid: &str) -> Result<Response, Error> {
        let work = work_for(&mut self.work, computer_uuid)?;
        let (Some(new), false) = (&work.issued, work.retired) else {
            return Err(BrokerError::OutOfTurn("a retirement without a new key").into());
        };
        let computer = work.computer(&self.choices);
        let mut results = Vec::new();
        for old in &new.retire {
            let result = work.issuer.retire(&computer, old).await;
            results.push((old.clone(), result.err()));
        }
        work_for(&mut self.work, computer_uuid)?.retired = true;
        Ok(Response::Retired { results })
    }
}

/// The work begun for `computer_uuid`, which must be the computer root read.
fn work_for<'a>(work: &'a mut Option<Work>, computer_uuid: &str) -> Result<&'a mut Work, Error> {
    let work = work
        .as_mut()
        .ok_or(BrokerError::OutOfTurn("a request before connect"))?;
    if computer_uuid != work.config.computer_uuid.as_str() {
        return Err(BrokerError::OtherComputer {
            asked: computer_uuid.to_owned(),
            read: work.config.computer_uuid.to_string(),
        }
        .into());
    }
    Ok(work)
}

impl Work {
    fn computer<'a>(&'a self, choices: &'a RootsChoices) -> Computer<'a> {
        Computer {
            config: &self.config,
            policy: &self.policy,
            options: choices.options,
            name: choices.name.as_deref(),
            serial: choices.serial.as_deref(),
            replaced_key: self.replaced_key.as_deref(),
        }
    }
}
