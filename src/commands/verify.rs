//! `arq-lockdown verify`: probe what a key can do in Arq's bucket, and the report's table for
//! people (`--json` prints the report as it is).

use crate::Error;
use crate::aws::{self, AwsCredentials};
use crate::cli::VerifyArgs;
use crate::exit_code::ExitCode;
use crate::verify::{Answer, CheckKind, Report, Verdict, VerifyOptions, verify};

/// Where verify takes a key from, for the error when there is none.
const CREDENTIALS_FIX: &str = "pass --credential-store with the key to check, or set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY";

pub async fn run(args: VerifyArgs) -> Result<ExitCode, Error> {
    let config = super::resolve_target(&args.target)?;
    let other_computer = args.other_computer_uuid.clone();
    let key = match &args.credential_store {
        Some(location) => Some(location.open()?.read()?),
        None => None,
    };

    let sdk_config = match &key {
        Some(key) => aws::load_config(AwsCredentials::Key(key)).await,
        None => aws::load_config(AwsCredentials::Chain).await,
    };
    let access_key_id = match &key {
        Some(key) => key.id.clone(),
        None => {
            let credentials = super::found_credentials(&sdk_config, CREDENTIALS_FIX).await?;
            credentials.access_key_id().to_owned()
        }
    };
    drop(key);

    let options = VerifyOptions {
        read_only: args.read_only,
        other_computer,
        no_computer_listing: args.no_computer_listing,
    };
    let report = verify(&sdk_config, access_key_id, &config, &options).await?;
    if args.json {
        super::print_json(&report)?;
    } else {
        super::print(&to_text(&report))?;
    }
    Ok(report.verdict.exit_code())
}

/// The table for people: call, expected, got, verdict; then what failed and why.
fn to_text(report: &Report) -> String {
    let mut out = format!(
        "bucket {}  computer {}  key {}\nother computer probed: {}  probe object <probe>: {}\n\n",
        report.bucket,
        report.computer_uuid,
        report.access_key_id,
        report.other_computer_uuid,
        report.probe_object_name
    );
    let width = report
        .checks
        .iter()
        .map(|c| c.call.len())
        .max()
        .unwrap_or(4)
        .max(4);
    out += &format!(
        "{:width$}  {:8}  {:22}  VERDICT\n",
        "CALL", "EXPECTED", "GOT"
    );
    for check in &report.checks {
        let got = match &check.got {
            Answer::Allowed => "allowed".to_owned(),
            Answer::Denied(code) => format!("denied ({})", code.as_deref().unwrap_or("403")),
            Answer::NotFound(code) => format!("allowed ({})", code.as_deref().unwrap_or("404")),
            Answer::Failed(_) => "error".to_owned(),
            Answer::NotProbed(_) => "-".to_owned(),
        };
        let verdict = match (&check.got, check.passed, check.kind) {
            (Answer::NotProbed(_), _, _) => "NOT PROBED",
            (_, true, _) => "ok",
            (_, false, CheckKind::ArqCall) => "ARQ BROKEN",
            (_, false, CheckKind::ListingIsolation) => "LISTING LEAK",
            (_, false, CheckKind::DataIsolation) => "DATA LEAK",
        };
        out += &format!(
            "{:width$}  {:8}  {got:22}  {verdict}\n",
            check.call, check.expected
        );
    }
    let details: Vec<_> = report
        .checks
        .iter()
        .filter_map(|c| c.detail.as_deref())
        .collect();
    if !details.is_empty() {
        out += "\n";
        for detail in details {
            out += &format!("- {detail}\n");
        }
    }
    for key in &report.left_behind {
        out +=
            &format!("- probe object {key} could not be deleted: remove it with the main keys\n");
    }
    out += &format!("\nverdict: {}\n", summary(report.verdict));
    out
}

/// The verdict's line under the table.
fn summary(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Isolated => "this key lets Arq work and reaches no other computer's data",
        Verdict::DataLeak => {
            "DATA LEAK: this key can read, write or delete other computers' backups"
        }
        Verdict::ArqBroken => {
            "Arq would fail with this key: a call it needs is refused (see above)"
        }
        Verdict::ListingLeak => {
            "LISTING LEAK: this key can list more than the computers' folder names (its s3:ListBucket conditions are wrong)"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Check;

    fn report(checks: Vec<Check>, left_behind: Vec<String>, verdict: Verdict) -> Report {
        Report {
            bucket: "b".into(),
            computer_uuid: "U".into(),
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            other_computer_uuid: "O".into(),
            probe_object_name: "arq-lockdown-probe-x".into(),
            checks,
            left_behind,
            verdict,
        }
    }

    #[test]
    fn an_unprobed_read_is_its_own_line_and_no_verdict() {
        let unprobed = Check {
            call: "GetObject O/computerinfo".into(),
            kind: CheckKind::DataIsolation,
            action: "s3:GetObject",
            resource: "arn:aws:s3:::b/O/computerinfo".into(),
            expected: "denied",
            got: Answer::NotProbed("nobody else".into()),
            passed: true,
            detail: Some("GetObject O/computerinfo: not probed: nobody else".into()),
        };
        let text = to_text(&report(vec![unprobed], Vec::new(), Verdict::Isolated));
        assert!(
            text.contains("-                       NOT PROBED\n")
                && text.contains("\n- GetObject O/computerinfo: not probed: nobody else\n")
                && text.ends_with(
                    "\nverdict: this key lets Arq work and reaches no other computer's data\n"
                ),
            "{text}"
        );
    }

    #[test]
    fn a_leak_names_its_kind_and_what_was_left_behind() {
        let written = Check {
            call: "PutObject O/<probe>".into(),
            kind: CheckKind::DataIsolation,
            action: "s3:PutObject",
            resource: "arn:aws:s3:::b/O/arq-lockdown-probe-x".into(),
            expected: "denied",
            got: Answer::Allowed,
            passed: false,
            detail: Some("PutObject O/<probe>: s3:PutObject on arn:aws:s3:::b/O/arq-lockdown-probe-x is allowed; it must be refused".into()),
        };
        let left = vec!["O/arq-lockdown-probe-x".to_owned()];
        let text = to_text(&report(vec![written], left, Verdict::DataLeak));
        assert_eq!(
            text,
            "bucket b  computer U  key AKIAIOSFODNN7EXAMPLE\n\
             other computer probed: O  probe object <probe>: arq-lockdown-probe-x\n\
             \n\
             CALL                 EXPECTED  GOT                     VERDICT\n\
             PutObject O/<probe>  denied    allowed                 DATA LEAK\n\
             \n\
             - PutObject O/<probe>: s3:PutObject on arn:aws:s3:::b/O/arq-lockdown-probe-x is allowed; it must be refused\n\
             - probe object O/arq-lockdown-probe-x could not be deleted: remove it with the main keys\n\
             \n\
             verdict: DATA LEAK: this key can read, write or delete other computers' backups\n"
        );
    }
}
