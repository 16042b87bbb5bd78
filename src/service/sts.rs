//! Replaying a proof to the service's own STS endpoint, and reading STS's answer.
//!
//! The answer is parsed as XML and must have exactly one `GetCallerIdentityResponse /
//! GetCallerIdentityResult` with exactly one `Arn`, `UserId` and `Account`: a lax reading (a
//! substring search, say) lets a crafted answer name someone else — Vault's CVE-2020-16250.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::Semaphore;

use crate::aws::Caller;
use crate::https::{HttpsClient, HttpsError};
use crate::protocol::Proof;

/// STS's XML namespace for GetCallerIdentity.
const STS_NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// How long a proof may wait for one of the STS permits.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Sts {
    http: HttpsClient,
    endpoint: String,
    permits: Semaphore,
}

/// Why STS could not vouch for a proof.
#[derive(Debug)]
pub enum StsError {
    /// Too many proofs are waiting for STS.
    Busy,
    Unreachable(HttpsError),
    /// STS refused the signature, or answered with something that is not a caller identity.
    Rejected,
}

impl Sts {
    pub fn new(http: HttpsClient, endpoint: &str, concurrency: usize) -> Self {
        Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            permits: Semaphore::new(concurrency),
        }
    }

    /// Replays `proof` (already checked) to STS and returns whose key signed it.
    pub async fn caller_of(&self, proof: &Proof) -> Result<Caller, StsError> {
        let _permit = tokio::time::timeout(QUEUE_TIMEOUT, self.permits.acquire())
            .await
            .map_err(|_| StsError::Busy)?
            .expect("the semaphore is never closed");
        let mut request = hyper::Request::post(format!("{}/", self.endpoint));
        for (name, value) in &proof.headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(proof.body.clone())))
            .map_err(|_| StsError::Rejected)?;
        let (status, answer) = self
            .http
            .send(request)
            .await
            .map_err(StsError::Unreachable)?;
        if status != hyper::StatusCode::OK {
            return Err(StsError::Rejected);
        }
        std::str::from_utf8(&answer)
            .ok()
            .and_then(caller_identity)
            .ok_or(StsError::Rejected)
    }
}

/// The one child element of `parent` named `name` in STS's namespace; `None` when there is none
/// or more than one.
fn only_child<'a, 'input>(
    parent: roxmltree::Node<'a, 'input>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    let mut found = parent
        .children()
        .filter(|n| n.is_element() && n.tag_name().name() == name);
    let one = found.next()?;
    let single = found.next().is_none() && one.tag_name().namespace() == Some(STS_NAMESPACE);
    single.then_some(one)
}

/// The caller in a GetCallerIdentity answer; `None` unless the answer has exactly the expected
/// shape.
pub fn caller_identity(xml: &str) -> Option<Caller> {
    let document = roxmltree::Document::parse(xml).ok()?;
    let root = document.root_element();
    if !root.has_tag_name((STS_NAMESPACE, "GetCallerIdentityResponse")) {
        return None;
    }
    let result = only_child(root, "GetCallerIdentityResult")?;
    let text = |name: &str| -> Option<String> {
        let node = only_child(result, name)?;
        if node.children().any(|c| c.is_element()) {
            return None;
        }
        let value = node.text()?.trim();
        (!value.is_empty()).then(|| value.to_owned())
    };
    let caller = Caller {
        arn: text("Arn")?,
        account: text("Account")?,
        user_id: text("UserId")?,
    };
    let well_formed = caller
        .arn
        .starts_with(&format!("arn:aws:iam::{}:", caller.account))
        || caller
            .arn
            .starts_with(&format!("arn:aws:sts::{}:", caller.account));
    well_formed.then_some(caller)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(result: &str) -> String {
        format!(
            r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>{result}</GetCallerIdentityResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetCallerIdentityResponse>"#
        )
    }

    const GOOD: &str = "<Arn>arn:aws:iam::123456789012:user/arq-lockdown/arq-X</Arn><UserId>AIDAEXAMPLE</UserId><Account>123456789012</Account>";

    #[test]
    fn a_real_answer_names_the_caller() {
        assert_eq!(
            caller_identity(&answer(GOOD)),
            Some(Caller {
                arn: "arn:aws:iam::123456789012:user/arq-lockdown/arq-X".into(),
                account: "123456789012".into(),
                user_id: "AIDAEXAMPLE".into(),
            })
        );
    }

    #[test]
    fn anything_but_exactly_one_caller_is_refused() {
        let two_arns = GOOD.replace(
            "<Arn>",
            "<Arn>arn:aws:iam::123456789012:user/fleet</Arn><Arn>",
        );
        let nested = GOOD.replace(
            "<Arn>arn:aws:iam::123456789012:user/arq-lockdown/arq-X</Arn>",
            "<Arn><Arn>arn:aws:iam::123456789012:user/fleet</Arn></Arn>",
        );
        let cases = [
            answer(&two_arns),
            answer(&nested),
            answer(&GOOD.replace("<UserId>AIDAEXAMPLE</UserId>", "")),
            answer(&GOOD.replace("123456789012</Account>", "999999999999</Account>")),
            answer(&GOOD.replace("AIDAEXAMPLE", "")),
            answer(GOOD).replace("2011-06-15", "2099-01-01"),
            answer(GOOD).replace("GetCallerIdentityResponse", "AssumeRoleResponse"),
            format!("<Wrapper>{}</Wrapper>", answer(GOOD)),
            format!(
                "{}<GetCallerIdentityResult>{GOOD}</GetCallerIdentityResult>",
                answer(GOOD)
            ),
            answer(&format!(
                "{GOOD}</GetCallerIdentityResult><GetCallerIdentityResult>{GOOD}"
            )),
            "<ErrorResponse><Arn>arn:aws:iam::123456789012:user/fleet</Arn></ErrorResponse>".into(),
            "not xml".into(),
        ];
        for case in cases {
            assert_eq!(caller_identity(&case), None, "{case}");
        }
    }
}
