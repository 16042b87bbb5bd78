//! What `verify`'s answers mean: how an S3 answer is read (allowed, refused, not found, failed),
//! whether it is what a check of its kind expects — with the detail that says why not and what to
//! do — and the verdict over all checks. Pure functions over S3's answers; no calls, no output.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use super::{Answer, Check, CheckKind, Verdict, VerifyError};
use crate::aws;

/// A check of one call: what was expected of it, whether it held, and if not, why and what to do.
pub(super) fn check(
    call: String,
    kind: CheckKind,
    action: &'static str,
    resource: String,
    got: Answer,
) -> Check {
    let (expected, passed) = match (&got, kind) {
        (Answer::NotProbed(_), _) => ("denied", true),
        (_, CheckKind::ArqCall) => ("allowed", got == Answer::Allowed),
        (_, _) => ("denied", matches!(got, Answer::Denied(_))),
    };
    let detail = match (&got, kind) {
        (Answer::NotProbed(reason), _) => Some(format!("{call}: not probed: {reason}")),
        _ if passed => None,
        (Answer::Denied(code), CheckKind::ArqCall) => Some(format!(
            "{call}: {action} on {resource} was refused ({}); the key's policy must allow it",
            code.as_deref().unwrap_or("403")
        )),
        (Answer::NotFound(code), CheckKind::ArqCall) => Some(format!(
            "{call}: {} for {resource}; is the bucket name exact (dot included) and in this account?",
            code.as_deref().unwrap_or("404")
        )),
        (Answer::Failed(message), CheckKind::ArqCall) => {
            Some(format!("{call}: {action} on {resource} failed: {message}"))
        }
        (Answer::Failed(message), _) => Some(format!(
            "{call}: could not tell whether {action} on {resource} is refused: {message}"
        )),
        (_, _) => Some(format!(
            "{call}: {action} on {resource} is allowed; it must be refused"
        )),
    };
    Check {
        call,
        kind,
        action,
        resource,
        expected,
        got,
        passed,
        detail,
    }
}

/// Reads an S3 answer. Only a network-level failure is an error: it makes the whole run meaningless.
pub(super) fn answer<T, E>(
    result: Result<T, SdkError<E, HttpResponse>>,
) -> Result<Answer, VerifyError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let error = match result {
        Ok(_) => return Ok(Answer::Allowed),
        Err(error) => error,
    };
    if let Some(unreachable) = aws::unreachable("S3", &error) {
        return Err(VerifyError::Unreachable(unreachable));
    }
    match &error {
        // Authorization is judged by the HTTP status: a 2xx whose body the SDK cannot parse was
        // still allowed.
        SdkError::ServiceError(service) if service.raw().status().is_success() => {
            Ok(Answer::Allowed)
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().map(str::to_owned);
            Ok(match (service.raw().status().as_u16(), code.as_deref()) {
                (403, _) | (_, Some("AccessDenied")) => Answer::Denied(code),
                (404, _) | (_, Some("NoSuchKey" | "NoSuchBucket")) => Answer::NotFound(code),
                _ => Answer::Failed(crate::one_line(&DisplayErrorContext(&error).to_string())),
            })
        }
        _ => Ok(Answer::Failed(crate::one_line(
            &DisplayErrorContext(&error).to_string(),
        ))),
    }
}

/// The most severe finding decides: another computer's data, then a broken Arq call, then a
/// listing leak.
pub(super) fn verdict(checks: &[Check]) -> Verdict {
    let failed = |kind| checks.iter().any(|c| c.kind == kind && !c.passed);
    if failed(CheckKind::DataIsolation) {
        Verdict::DataLeak
    } else if failed(CheckKind::ArqCall) {
        Verdict::ArqBroken
    } else if failed(CheckKind::ListingIsolation) {
        Verdict::ListingLeak
    } else {
        Verdict::Isolated
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_s3::operation::head_object::HeadObjectError;
    use aws_sdk_s3::primitives::SdkBody;

    use super::*;

    const DENIED: &str = "AccessDenied";

    fn code(code: &str) -> Option<String> {
        Some(code.to_owned())
    }

    fn judged(kind: CheckKind, got: Answer) -> Check {
        check("Call k".into(), kind, "s3:Action", "arn:r".into(), got)
    }

    /// A case, what the check is about, S3's answer; what the check then expects, whether it
    /// passed, and its detail.
    type Judged = (
        &'static str,
        CheckKind,
        Answer,
        &'static str,
        bool,
        Option<&'static str>,
    );

    #[test]
    #[rustfmt::skip]
    fn each_answer_is_judged_by_what_its_check_is_about() {
        use Answer::*;
        use CheckKind::*;
        let cases: Vec<Judged> = vec![
            ("Arq's call allowed", ArqCall, Allowed, "allowed", true, None),
            ("Arq's call refused", ArqCall, Denied(code(DENIED)), "allowed", false, Some("Call k: s3:Action on arn:r was refused (AccessDenied); the key's policy must allow it")),
            ("Arq's call refused without a code", ArqCall, Denied(None), "allowed", false, Some("Call k: s3:Action on arn:r was refused (403); the key's policy must allow it")),
            ("Arq's bucket not there", ArqCall, NotFound(code("NoSuchBucket")), "allowed", false, Some("Call k: NoSuchBucket for arn:r; is the bucket name exact (dot included) and in this account?")),
            ("Arq's object not there, no code", ArqCall, NotFound(None), "allowed", false, Some("Call k: 404 for arn:r; is the bucket name exact (dot included) and in this account?")),
            ("Arq's call failed", ArqCall, Failed("boom".into()), "allowed", false, Some("Call k: s3:Action on arn:r failed: boom")),
            ("a listing refused", ListingIsolation, Denied(None), "denied", true, None),
            ("a listing allowed", ListingIsolation, Allowed, "denied", false, Some("Call k: s3:Action on arn:r is allowed; it must be refused")),
            ("another's data refused", DataIsolation, Denied(code(DENIED)), "denied", true, None),
            ("another's data written", DataIsolation, Allowed, "denied", false, Some("Call k: s3:Action on arn:r is allowed; it must be refused")),
            // A 404 is S3 saying the key was let in to look.
            ("another's object not there", DataIsolation, NotFound(code("NoSuchKey")), "denied", false, Some("Call k: s3:Action on arn:r is allowed; it must be refused")),
            ("a refusal not told", DataIsolation, Failed("boom".into()), "denied", false, Some("Call k: could not tell whether s3:Action on arn:r is refused: boom")),
            ("a read not probed", DataIsolation, NotProbed("why".into()), "denied", true, Some("Call k: not probed: why")),
        ];
        for (name, kind, got, expected, passed, detail) in cases {
            let check = judged(kind, got);
            assert_eq!((check.expected, check.passed), (expected, passed), "{name}");
            assert_eq!(check.detail.as_deref(), detail, "{name}");
        }
    }

    /// What the SDK hands back for one call.
    type Sent = Result<(), SdkError<HeadObjectError, HttpResponse>>;

    /// S3's error answer with `status` and, when given, an error code in its body.
    fn refused(status: u16, code: Option<&str>) -> SdkError<HeadObjectError, HttpResponse> {
        let mut meta = ErrorMetadata::builder();
        if let Some(code) = code {
            meta = meta.code(code);
        }
        let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        SdkError::service_error(HeadObjectError::generic(meta.build()), raw)
    }

    #[test]
    #[rustfmt::skip]
    fn an_answer_is_read_by_its_status_and_then_its_code() {
        use Answer::*;
        let failed = Failed(String::new());
        let cases: Vec<(&str, Sent, Answer)> = vec![
            ("a success", Ok(()), Allowed),
            ("a 2xx whose body did not parse", Err(refused(200, None)), Allowed),
            ("403", Err(refused(403, Some(DENIED))), Denied(code(DENIED))),
            ("403 without a body (HEAD)", Err(refused(403, None)), Denied(None)),
            ("AccessDenied under another status", Err(refused(400, Some(DENIED))), Denied(code(DENIED))),
            ("404", Err(refused(404, Some("NoSuchKey"))), NotFound(code("NoSuchKey"))),
            ("404 without a body (HEAD)", Err(refused(404, None)), NotFound(None)),
            ("NoSuchBucket under another status", Err(refused(301, Some("NoSuchBucket"))), NotFound(code("NoSuchBucket"))),
            ("a server error", Err(refused(500, Some("InternalError"))), failed.clone()),
            ("a client error", Err(refused(400, Some("InvalidRequest"))), failed),
        ];
        for (name, result, expected) in cases {
            let got = answer(result).expect(name);
            match expected {
                Failed(_) => assert!(matches!(got, Failed(_)), "{name}: {got:?}"),
                expected => assert_eq!(got, expected, "{name}"),
            }
        }
        let unreachable: Sent = Err(SdkError::dispatch_failure(ConnectorError::io(
            "connection refused".into(),
        )));
        assert!(matches!(answer(unreachable), Err(VerifyError::Unreachable(_))), "no answer at all: the run is meaningless");
    }

    #[test]
    #[rustfmt::skip]
    fn the_most_severe_finding_decides_the_verdict() {
        use CheckKind::*;
        use Verdict::*;
        let failing = |kind| judged(kind, match kind { ArqCall => Answer::Denied(None), _ => Answer::Allowed });
        let (data, arq, listing) = (failing(DataIsolation), failing(ArqCall), failing(ListingIsolation));
        let unprobed = judged(DataIsolation, Answer::NotProbed("nobody else".into()));
        let fine = judged(ArqCall, Answer::Allowed);
        let cases: Vec<(&str, Vec<Check>, Verdict)> = vec![
            ("no checks", vec![], Isolated),
            ("every check passed", vec![fine.clone(), judged(DataIsolation, Answer::Denied(None))], Isolated),
            ("an unprobed read is no finding", vec![unprobed, fine], Isolated),
            ("a listing leak", vec![listing.clone()], ListingLeak),
            ("a broken Arq call beats a listing leak", vec![listing.clone(), arq.clone()], ArqBroken),
            ("a data leak beats everything", vec![listing, arq, data], DataLeak),
        ];
        for (name, checks, expected) in cases {
            assert_eq!(verdict(&checks), expected, "{name}");
        }
    }
}
