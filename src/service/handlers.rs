//! The three requests — enroll, rotate, retire — each as its checks in order, from the body to
//! what IAM does. The order is deliberate: a request is parsed, fresh and names a valid computer
//! (and an allowed bucket), its keys are keys (none of small order) and a signature it carries is
//! checked against the key it names, all before anything is looked up; its signature is held
//! against replays once its sender is authenticated, and remembered only if it is served; IAM work
//! waits for a permit; an enrollment binds by the rule of [`super::binding`], its enroller's limits
//! taken just before the IAM work that spends them and given back when it is refused; and a sender
//! who has proven nothing yet gets at most one IAM lookup. The checks themselves are
//! [`super::checks`]', issuing a key [`super::issue`]'.

use std::time::Instant;

use super::Service;
use super::binding::{self, Held, Holder, Refused, Unheld};
use super::config::{BindWithoutPin, Limits};
use super::refusal::Refusal;
use super::routes::Requester;
use super::tokens::Reservation;
use crate::arq_config::{ArqConfig, ComputerUuid};
use crate::iam::{self, ScopedUser, UserTags};
use crate::iam_names;
use crate::protocol::{
    self, ENROLL, EnrollRequest, Envelope, KeyResponse, RETIRE, ROTATE, RetireRequest,
    RotateRequest, enrollment, sealed,
};

const ENROLLMENT_KEY_SHAPE: &str =
    "enrollment_key must be an Ed25519 public key (32 bytes in base64) not of small order";
const REPLY_KEY_SHAPE: &str =
    "reply_key must be an X25519 public key (32 bytes in base64) not of small order";

/// Who vouches for an enrollment, what they may do, and the key the new one replaces in "Arq S3"
/// (for `audit`).
enum Enroller {
    /// A fleet principal, by a proof: the key that signed it is the one replaced (STS vouched).
    Fleet {
        arn: String,
        signed_with: String,
        limits: Limits,
    },
    /// An enrollment token, by its name: the key replaced is only the Mac's word — kept as a hint
    /// when it looks like a key id, never used to decide anything.
    Token {
        name: String,
        limits: Limits,
        claimed: Option<String>,
    },
}

impl Enroller {
    /// The user's `enrolled-by` tag, the log's caller and the name its limits go by: the ARN, or
    /// `token:<name>`.
    fn enrolled_by(&self) -> String {
        match self {
            Self::Fleet { arn, .. } => arn.clone(),
            Self::Token { name, .. } => iam_names::enrolled_by_token(name),
        }
    }

    fn replaced_key(&self) -> Option<&str> {
        match self {
            Self::Fleet { signed_with, .. } => Some(signed_with),
            Self::Token { claimed, .. } => claimed.as_deref(),
        }
    }

    fn limits(&self) -> Limits {
        match self {
            Self::Fleet { limits, .. } | Self::Token { limits, .. } => *limits,
        }
    }

    fn at_its_limit(&self) -> Refusal {
        match self {
            Self::Fleet { .. } => Refusal::fleet_limit(),
            Self::Token { .. } => Refusal::token_limit(),
        }
    }
}

impl Service {
    pub(super) async fn enroll(
        &self,
        body: &[u8],
        who: &mut Requester,
    ) -> Result<KeyResponse, Refusal> {
        let (envelope, request) = self.open::<EnrollRequest>(body)?;
        let config = self.computer(&request.computer_uuid, &request.bucket, who)?;
        if !enrollment::is_public_key(&request.enrollment_key) {
            return Err(Refusal::bad_key(ENROLLMENT_KEY_SHAPE));
        }
        if !sealed::is_reply_key(&request.reply_key) {
            return Err(Refusal::bad_key(REPLY_KEY_SHAPE));
        }
        let binding = protocol::binding(ENROLL, &envelope.request);
        let signature = envelope.enrollment_signature.as_deref().unwrap_or_default();
        let server_id = &self.rules.server_id;
        if !enrollment::verify(&request.enrollment_key, server_id, &binding, signature) {
            return Err(Refusal::not_self_signed());
        }
        let computer = &config.computer_uuid;
        let enroller = self
            .enroller(&envelope, &request, computer, &binding, who)
            .await?;
        let first_use = self.first_use(signature)?;
        let _permit = self.iam_permit().await?;
        let (user, allowance) = self.bind(&config, &request, &enroller).await?;
        self.confirmed(computer, &request.enrollment_key);
        let replaced_key = enroller.replaced_key();
        let key = self
            .issue(&config, &user, &request.reply_key, replaced_key)
            .await?;
        allowance.issued();
        first_use.served();
        Ok(key)
    }

    /// Who vouches for an enrollment: exactly one of a proof by a fleet principal and an
    /// enrollment token.
    async fn enroller(
        &self,
        envelope: &Envelope,
        request: &EnrollRequest,
        computer: &ComputerUuid,
        binding: &str,
        who: &mut Requester,
    ) -> Result<Enroller, Refusal> {
        match (&envelope.proof, &request.enrollment_token) {
            (Some(proof), None) => {
                let (caller, checked) = self.prove(proof, computer, binding).await?;
                who.caller = Some(caller.arn.clone());
                if !self.config.fleet_principals.contains(&caller.arn) {
                    return Err(Refusal::not_a_fleet_principal());
                }
                Ok(Enroller::Fleet {
                    arn: caller.arn,
                    signed_with: checked.access_key_id,
                    limits: self.config.fleet_limits(),
                })
            }
            (None, Some(token)) => {
                let token = self
                    .enrollers
                    .find(token)
                    .ok_or_else(Refusal::bad_enrollment_token)?;
                who.caller = Some(iam_names::enrolled_by_token(&token.name));
                let claimed = request.replaced_key_id.clone();
                Ok(Enroller::Token {
                    name: token.name.clone(),
                    limits: token.limits(),
                    claimed: claimed.filter(|id| iam::is_access_key_id(id)),
                })
            }
            _ => Err(Refusal::proof_or_token()),
        }
    }

    /// The computer's user, bound to this request's enrollment key by the rule, and what of its
    /// enroller's limits the enrollment holds. The user is made first when the mode — and, by
    /// default, the data check — allows it: a new computer costs IAM nothing more than before.
    /// Otherwise, or when it exists already (another Mac's, this Mac's, the admin's pin), it is
    /// judged as IAM has it.
    async fn bind(
        &self,
        config: &ArqConfig,
        request: &EnrollRequest,
        enroller: &Enroller,
    ) -> Result<(ScopedUser, Reservation<'_>), Refusal> {
        let uuid = &config.computer_uuid;
        let mode = self.config.bind_without_pin;
        let may_create = match binding::unheld(mode) {
            Unheld::Create => true,
            Unheld::CreateIfNoData => !self.buckets.have_data(uuid).await?,
            Unheld::NeedsPin => false,
        };
        if may_create && let Some(made) = self.create(config, request, enroller).await? {
            return Ok(made);
        }
        match self.iam.user(uuid).await? {
            Some(user) => self.bind_held(config, request, enroller, user).await,
            None if may_create => Err(Refusal::busy(
                "this computer's user is being made or deleted: retry",
            )),
            None => {
                let always_pinned = mode == BindWithoutPin::Never;
                Err(Refusal::binding(Refused::NeedsConfirmation, always_pinned))
            }
        }
    }

    /// The computer's user made with its binding tags in the one `CreateUser`, so IAM decides who
    /// binds it first; the enroller's slot is held across the call. `None` when it exists.
    async fn create(
        &self,
        config: &ArqConfig,
        request: &EnrollRequest,
        enroller: &Enroller,
    ) -> Result<Option<(ScopedUser, Reservation<'_>)>, Refusal> {
        let mut allowance = self.reserve(enroller, true)?;
        let tags = binding_tags(config, request, enroller, self.policy_options());
        let boundary = &self.config.permissions_boundary_arn;
        match self
            .iam
            .create_user(&config.computer_uuid, &tags, boundary)
            .await?
        {
            Some(user) => {
                allowance.created();
                Ok(Some((user, allowance)))
            }
            None => Ok(None),
        }
    }

    /// A computer whose user exists: enrolled again by the key it is bound to, bound now to the
    /// key it is pinned to, or refused — and the refused claim recorded on the user.
    async fn bind_held(
        &self,
        config: &ArqConfig,
        request: &EnrollRequest,
        enroller: &Enroller,
        user: ScopedUser,
    ) -> Result<(ScopedUser, Reservation<'_>), Refusal> {
        let holder = Holder {
            enrollment_key: user.enrollment_key(),
            pinned_key: user.pinned_key(),
        };
        let uuid = &config.computer_uuid;
        match binding::held(holder, &request.enrollment_key) {
            Held::Again => {
                let allowance = self.reserve(enroller, false)?;
                Ok((self.iam.with_policy_and_keys(uuid, user).await?, allowance))
            }
            Held::TakePin => {
                if user.bound_bucket() != Some(config.bucket.as_str()) {
                    return Err(Refusal::bucket_mismatch());
                }
                let allowance = self.reserve(enroller, false)?;
                let tags = binding_tags(config, request, enroller, self.policy_options());
                self.iam.tag_user(uuid, &tags).await?;
                let user = self.iam.with_policy_and_keys(uuid, user).await?;
                Ok((user.tagged_with(&tags), allowance))
            }
            Held::Refuse(refused) => {
                let mut refusal = Refusal::binding(refused, false);
                refusal.detail = self
                    .record_claim(uuid, &user, &request.enrollment_key)
                    .await;
                Err(refusal)
            }
        }
    }

    /// Records a refused claim on the computer's user (`arq-lockdown:refused-claim`) unless the
    /// same key's claim is recorded already or this minute's budget is spent. What kept it from
    /// being recorded, for the log.
    async fn record_claim(
        &self,
        uuid: &ComputerUuid,
        user: &ScopedUser,
        enrollment_key: &str,
    ) -> Option<String> {
        let fingerprint = enrollment::fingerprint(enrollment_key)?;
        let now = protocol::now_unix();
        if !binding::worth_recording(user.refused_claim(), &fingerprint, now) {
            return None;
        }
        let budget = self
            .claims
            .lock()
            .expect("claim budget lock")
            .take(Instant::now());
        if !budget {
            return Some("refused claim not recorded: too many this minute".into());
        }
        let claim = [(iam_names::REFUSED_CLAIM_TAG, format!("{now} {fingerprint}"))];
        let recorded = self.iam.add_tags(uuid, &claim).await;
        recorded
            .err()
            .map(|e| format!("refused claim not recorded: {e}"))
    }

    /// One enrollment of the enroller's hour, and with `creates` one slot of its total.
    fn reserve(&self, enroller: &Enroller, creates: bool) -> Result<Reservation<'_>, Refusal> {
        let by = enroller.enrolled_by();
        self.enrollers
            .reserve(&by, enroller.limits(), creates, Instant::now())
            .map_err(|_| enroller.at_its_limit())
    }

    pub(super) async fn rotate(
        &self,
        body: &[u8],
        who: &mut Requester,
    ) -> Result<KeyResponse, Refusal> {
        let (envelope, request) = self.open::<RotateRequest>(body)?;
        let config = self.computer(&request.computer_uuid, &request.bucket, who)?;
        if !sealed::is_reply_key(&request.reply_key) {
            return Err(Refusal::bad_key(REPLY_KEY_SHAPE));
        }
        let binding = protocol::binding(ROTATE, &envelope.request);
        let proof = envelope.proof.as_ref().ok_or_else(Refusal::proof_missing)?;
        let (caller, checked) = self.prove(proof, &config.computer_uuid, &binding).await?;
        who.caller = Some(caller.arn.clone());
        let _permit = self.iam_permit().await?;
        let user = self
            .own_user(&caller, &checked.access_key_id, &config.computer_uuid)
            .await?;
        // A copy of the key in "Arq S3" is not enough: the Mac's enrollment key must sign too.
        self.bound_signature(&user, &binding, envelope.enrollment_signature.as_deref())?;
        let first_use = self.first_use(&checked.signature)?;
        self.confirmed(
            &config.computer_uuid,
            user.enrollment_key().unwrap_or_default(),
        );
        let key = self.issue(&config, &user, &request.reply_key, None).await?;
        first_use.served();
        Ok(key)
    }

    /// Only the bound enrollment key may retire a key. The request names its key, so a signature
    /// that is not by it is refused before anything is looked up; whether it is the bound key, a
    /// binding this instance confirmed lately says at once, and any other is one lookup from a
    /// small budget of its own that never queues. An unknown computer is refused exactly as a
    /// wrong key is.
    pub(super) async fn retire(&self, body: &[u8], who: &mut Requester) -> Result<(), Refusal> {
        let (envelope, request) = self.open::<RetireRequest>(body)?;
        let uuid = self.computer_uuid(&request.computer_uuid, who)?;
        let binding = protocol::binding(RETIRE, &envelope.request);
        let signature = envelope.enrollment_signature.as_deref().unwrap_or_default();
        let key = &request.enrollment_key;
        if !enrollment::verify(key, &self.rules.server_id, &binding, signature) {
            return Err(Refusal::bad_signature());
        }
        let first_use = self.first_use(signature)?;
        let known = self
            .confirmed
            .lock()
            .expect("confirmed bindings lock")
            .knows(&uuid, key, Instant::now());
        if !known {
            let user = self.unproven_lookup(&uuid).await?;
            bound_to(user.as_ref(), key)?;
        }
        who.caller = Some("enrollment-key".into());
        let _permit = self.iam_permit().await?;
        let user = self.iam.inspect(&uuid).await?;
        let user = bound_to(user.as_ref(), key)?;
        self.confirmed(&uuid, key);
        if user.key_ids.contains(&request.access_key_id) {
            self.iam.delete_key(&uuid, &request.access_key_id).await?;
        }
        first_use.served();
        Ok(())
    }

    /// `uuid`'s user, for a sender who has proven nothing yet: one IAM call, from a budget of its
    /// own that never queues.
    async fn unproven_lookup(&self, uuid: &ComputerUuid) -> Result<Option<ScopedUser>, Refusal> {
        let _permit = self
            .unproven_lookups
            .try_acquire()
            .map_err(|_| Refusal::busy("too many unproven requests: retry later"))?;
        Ok(self.iam.user(uuid).await?)
    }

    /// Remembers that IAM just said `uuid` is bound to `key`.
    fn confirmed(&self, uuid: &ComputerUuid, key: &str) {
        let mut confirmed = self.confirmed.lock().expect("confirmed bindings lock");
        confirmed.confirm(uuid, key, Instant::now());
    }
}

/// `user`, if it is bound to the enrollment key `key`; refused as a wrong signature otherwise.
fn bound_to<'a>(user: Option<&'a ScopedUser>, key: &str) -> Result<&'a ScopedUser, Refusal> {
    user.filter(|user| user.enrollment_key() == Some(key))
        .ok_or_else(Refusal::bad_signature)
}

/// The tags that bind a computer to the request's enrollment key, and say who enrolled it.
fn binding_tags(
    config: &ArqConfig,
    request: &EnrollRequest,
    enroller: &Enroller,
    options: crate::policy::PolicyOptions,
) -> UserTags {
    UserTags {
        computer_uuid: config.computer_uuid.to_string(),
        bucket: config.bucket.to_string(),
        enrollment_key: Some(request.enrollment_key.clone()),
        enrolled_by: Some(enroller.enrolled_by()),
        computer_name: request.computer_name.clone(),
        serial: request.serial.clone(),
        policy_options: Some(options),
        replaced_key: enroller.replaced_key().map(str::to_owned),
    }
}
