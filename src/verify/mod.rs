//! `verify`: run the S3 calls Arq makes, in the shapes Arq makes them, and the calls a
//! locked-down key must not be able to make, with one key; report what S3 allowed and refused.
//!
//! Owns the entry ([`verify`]: both regions' runs and their merging), its options, and the
//! report's types: each [`Check`] with S3's [`Answer`], and the [`Verdict`]. The calls are in
//! [`probe`], what their answers mean in [`judge`]; `commands/verify.rs` renders the report for
//! people. It never prints object contents or secrets.

mod judge;
mod probe;

use serde::Serialize;

use crate::arq_config::{ArqConfig, ComputerUuid};
use crate::aws;
use crate::exit_code::ExitCode;
use judge::verdict;
use probe::Prober;

#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Skip every call that writes (the probe objects), for keys on buckets one must not touch.
    pub read_only: bool,
    /// A computer whose data must be out of reach; else one the root listing names.
    pub other_computer: Option<ComputerUuid>,
    /// The key's policy was made with `--no-computer-listing`: the root listing must be refused.
    pub no_computer_listing: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Unreachable(#[from] aws::Unreachable),
}

impl VerifyError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::Aws
    }
}

/// What a check is about, which decides what its failure means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    /// A call Arq makes: it must be allowed.
    ArqCall,
    /// Listing more than the computers' folder names (object names, another computer's folder):
    /// must be refused.
    ListingIsolation,
    /// Reading, writing or deleting another computer's data: must be refused.
    DataIsolation,
}

/// How S3 answered one call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result", content = "code")]
pub enum Answer {
    Allowed,
    /// Refused by IAM (403), with S3's error code when there is one.
    Denied(Option<String>),
    /// Authorized, but the object or bucket is not there (404).
    NotFound(Option<String>),
    /// Any other failure, with S3's message.
    Failed(String),
    /// Not asked, and why: a refusal would prove nothing (see `Prober::read_other` in [`probe`]).
    NotProbed(String),
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub call: String,
    pub kind: CheckKind,
    pub action: &'static str,
    pub resource: String,
    pub expected: &'static str,
    pub got: Answer,
    pub passed: bool,
    /// Why it failed and what to do, for failed (and unprobed) checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Isolated,
    DataLeak,
    ArqBroken,
    ListingLeak,
}

impl Verdict {
    pub fn exit_code(self) -> ExitCode {
        match self {
            Self::Isolated => ExitCode::Success,
            Self::DataLeak => ExitCode::DataLeak,
            Self::ArqBroken => ExitCode::ArqBroken,
            Self::ListingLeak => ExitCode::ListingLeak,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub bucket: String,
    pub computer_uuid: String,
    pub access_key_id: String,
    pub other_computer_uuid: String,
    /// The name of the probe objects written (shown as `<probe>` in the table).
    pub probe_object_name: String,
    pub checks: Vec<Check>,
    /// Probe objects that could be written but not deleted again: remove them with the main keys.
    pub left_behind: Vec<String>,
    pub verdict: Verdict,
}

/// Runs every probe with `sdk_config`'s key against `config`'s bucket.
pub async fn verify(
    sdk_config: &aws_config::SdkConfig,
    access_key_id: String,
    config: &ArqConfig,
    options: &VerifyOptions,
) -> Result<Report, VerifyError> {
    let bucket = config.bucket.as_str();
    let own = config.computer_uuid.as_str();
    let probe_name = || format!("arq-lockdown-probe-{}", uuid::Uuid::new_v4());

    // Round trip 1: the buckets and where this one is, asked in the key's configured region —
    // and beside them every probe in that region, which is the bucket's almost always. When the
    // bucket lives elsewhere, its probes start as soon as its region is known (under other probe
    // names, so the two runs never touch each other's objects); the first run's answers are set
    // aside, but whatever it could not delete is still reported.
    let own_region = Prober::new(aws::s3_client(sdk_config, None), bucket, probe_name());
    let elsewhere = async {
        let (location, region) = own_region.bucket_location().await?;
        let probes = match region {
            None => None,
            Some(region) => {
                let regional = Prober::new(
                    aws::s3_client(sdk_config, Some(region)),
                    bucket,
                    probe_name(),
                );
                Some(regional.probe(own, options).await)
            }
        };
        Ok::<_, VerifyError>((location, probes))
    };
    let (buckets, located, in_own_region) = tokio::join!(
        own_region.list_buckets(),
        elsewhere,
        own_region.probe(own, options),
    );
    let (buckets, (location, elsewhere)) = (buckets?, located?);
    let probes = match elsewhere {
        None => in_own_region?,
        Some(probes) => {
            let mut probes = probes?;
            if let Ok(set_aside) = in_own_region {
                probes.left_behind.extend(set_aside.left_behind);
            }
            probes
        }
    };

    let mut checks = vec![buckets, location];
    checks.extend(probes.checks);
    let left_behind = probes.left_behind;
    let verdict = verdict(&checks);
    Ok(Report {
        bucket: bucket.to_owned(),
        computer_uuid: own.to_owned(),
        access_key_id,
        other_computer_uuid: probes.other.to_string(),
        probe_object_name: probes.probe_object_name,
        checks,
        left_behind,
        verdict,
    })
}

impl Report {
    /// The first failed check's detail, and how many more failed: for a one-line error.
    pub fn failures_in_brief(&self) -> String {
        let failed: Vec<&str> = self
            .checks
            .iter()
            .filter_map(|c| c.detail.as_deref())
            .collect();
        match failed.as_slice() {
            [] => "no detail".to_owned(),
            [one] => (*one).to_owned(),
            [first, rest @ ..] => format!("{first}; and {} more", rest.len()),
        }
    }
}
