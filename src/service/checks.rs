//! The checks the handlers share, each refusing with its reason code: the request parsed and
//! fresh, the computer and bucket it names, a proof's caller as STS names it, the caller as the
//! computer's own user, the bound enrollment key's signature, first use against replays (held
//! while the request is served, remembered only if it was) — and the IAM permits a request waits
//! for. Which handler runs which, in what order, is [`super::handlers`]'.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::SemaphorePermit;

use super::Service;
use super::refusal::Refusal;
use super::replay::ReplayCache;
use super::routes::Requester;
use crate::arq_config::{ArqConfig, ComputerUuid};
use crate::aws::Caller;
use crate::iam::ScopedUser;
use crate::iam_names;
use crate::protocol::proof::{CheckedProof, ProofRefusal};
use crate::protocol::{self, Envelope, Proof, Request, enrollment};

/// How long a request may wait for an IAM permit before the service answers 503.
const IAM_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

impl Service {
    /// Parses the envelope and the request inside, and refuses requests that are not fresh.
    pub(super) fn open<R: Request>(&self, body: &[u8]) -> Result<(Envelope, R), Refusal> {
        // Only the kind of error and where: serde_json's messages can quote the input's values.
        let bad = |e: serde_json::Error| {
            let kind = match e.classify() {
                serde_json::error::Category::Data => "not the expected fields or types",
                _ => "not JSON",
            };
            let at = format!("line {} column {}", e.line(), e.column());
            Refusal::bad_json(format!("{kind} at {at}"))
        };
        let envelope: Envelope = serde_json::from_slice(body).map_err(bad)?;
        let request: R = serde_json::from_str(&envelope.request).map_err(bad)?;
        let max_age = self.rules.max_age;
        if !protocol::within(request.issued_at(), SystemTime::now(), max_age) {
            return Err(Refusal::request_expired());
        }
        Ok((envelope, request))
    }

    /// Validates the computer and bucket a request names, and the bucket against the allow-list.
    pub(super) fn computer(
        &self,
        uuid: &str,
        bucket: &str,
        who: &mut Requester,
    ) -> Result<ArqConfig, Refusal> {
        let computer_uuid = self.computer_uuid(uuid, who)?;
        let config = ArqConfig::from_values(bucket, computer_uuid.as_str(), "request")
            .map_err(|e| Refusal::bad_computer(e.to_string()))?;
        if !self.config.allowed_buckets.contains(&config.bucket) {
            return Err(Refusal::bucket_not_allowed());
        }
        Ok(config)
    }

    /// Validates a computer UUID a request names, and names it in the log line.
    pub(super) fn computer_uuid(
        &self,
        uuid: &str,
        who: &mut Requester,
    ) -> Result<ComputerUuid, Refusal> {
        let parsed = upper_case_uuid(uuid)?;
        who.computer_uuid = Some(parsed.to_string());
        Ok(parsed)
    }

    /// Checks a proof's shape for `computer` and the request `binding`, then has STS say whose
    /// key signed it.
    pub(super) async fn prove(
        &self,
        proof: &Proof,
        computer: &ComputerUuid,
        binding: &str,
    ) -> Result<(Caller, CheckedProof), Refusal> {
        let checked = self
            .rules
            .check(proof, computer, binding, SystemTime::now())?;
        let caller = self.sts.caller_of(proof).await?;
        Ok((caller, checked))
    }

    /// The scoped user of `uuid`, if and only if `caller` is that very user: in this service's
    /// account, by its whole ARN, and by its unique id (a user deleted and made again under the
    /// same name is someone else) — and `key_id`, the key that signed, is still one of its active
    /// keys (STS may honour a deleted key for a while).
    pub(super) async fn own_user(
        &self,
        caller: &Caller,
        key_id: &str,
        uuid: &ComputerUuid,
    ) -> Result<ScopedUser, Refusal> {
        if caller.account != self.account
            || caller.arn != iam_names::scoped_user_arn(&self.account, uuid)
        {
            return Err(Refusal::not_this_computers_key());
        }
        match self.iam.inspect(uuid).await? {
            Some(user) if is_signed_by(&user, caller, key_id) => Ok(user),
            _ => Err(Refusal::not_this_computers_key()),
        }
    }

    /// Refuses unless `signature` is the bound enrollment key's over `binding`.
    pub(super) fn bound_signature(
        &self,
        user: &ScopedUser,
        binding: &str,
        signature: Option<&str>,
    ) -> Result<(), Refusal> {
        let bound = user.enrollment_key().unwrap_or_default();
        match enrollment::verify(
            bound,
            &self.rules.server_id,
            binding,
            signature.unwrap_or_default(),
        ) {
            true => Ok(()),
            false => Err(Refusal::bad_signature()),
        }
    }

    /// Refuses a proof or signature this instance has served, or is serving, before; holds it
    /// against replays while its request is served.
    pub(super) fn first_use(&self, signature: &str) -> Result<FirstUse<'_>, Refusal> {
        let mut replays = self.replays.lock().expect("replay cache lock");
        match replays.hold(signature, Instant::now()) {
            true => Ok(FirstUse {
                replays: &self.replays,
                signature: signature.to_owned(),
                served: false,
            }),
            false => Err(ProofRefusal::Replayed.into()),
        }
    }

    /// One of the IAM permits, waiting at most [`IAM_QUEUE_TIMEOUT`].
    pub(super) async fn iam_permit(&self) -> Result<SemaphorePermit<'_>, Refusal> {
        match tokio::time::timeout(IAM_QUEUE_TIMEOUT, self.iam_permits.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Refusal::busy(
                "too many requests waiting for IAM: retry later",
            )),
        }
    }
}

/// A request's signature, held against replays while the request is served: remembered once it is
/// [`FirstUse::served`], let go when it drops unserved (a refused request leaves nothing behind).
pub(super) struct FirstUse<'a> {
    replays: &'a Mutex<ReplayCache>,
    signature: String,
    served: bool,
}

impl FirstUse<'_> {
    pub fn served(mut self) {
        self.served = true;
        let mut replays = self.replays.lock().expect("replay cache lock");
        replays.remember(&self.signature, Instant::now());
    }
}

impl Drop for FirstUse<'_> {
    fn drop(&mut self) {
        if !self.served {
            self.replays
                .lock()
                .expect("replay cache lock")
                .release(&self.signature);
        }
    }
}

/// A computer UUID as a request names it. Only upper case, as Arq writes them: IAM user names
/// ignore case while S3 prefixes do not, so `arq-<uuid>` must name one computer only.
fn upper_case_uuid(uuid: &str) -> Result<ComputerUuid, Refusal> {
    let parsed = ComputerUuid::parse(uuid)
        .map_err(|reason| Refusal::bad_computer(format!("computer UUID: {reason}")))?;
    if uuid.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(Refusal::bad_computer(
            "computer UUIDs are upper-case, as Arq writes them",
        ));
    }
    Ok(parsed)
}

/// Whether `user`, as IAM has it now, is the `caller` STS named — the same ARN and unique id —
/// and `key_id` one of its active keys.
fn is_signed_by(user: &ScopedUser, caller: &Caller, key_id: &str) -> bool {
    user.user_id == caller.user_id
        && user.arn == caller.arn
        && user.active_key_ids.iter().any(|k| k == key_id)
}
