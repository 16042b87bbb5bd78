//! The three requests — enroll, rotate, retire — each as its checks in order, from the body to
//! what IAM does. The order is deliberate: a request is parsed, fresh and names a valid computer
//! (and an allowed bucket), and its keys are keys (none of small order), before anything else; it
//! is remembered against replays only once its sender is authenticated, so callers who prove
//! nothing cannot fill the replay memory; a token's
//! allowance is spent only after the replay check; IAM work waits for a permit; and a sender who
//! has proven nothing yet gets at most one IAM lookup. The checks themselves are
//! [`super::checks`]', issuing a key [`super::issue`]'.

use std::time::Instant;

use super::Service;
use super::refusal::Refusal;
use super::routes::Requester;
use crate::arq_config::{ArqConfig, ComputerUuid};
use crate::iam::{self, ScopedUser, UserTags};
use crate::protocol::{
    self, ENROLL, EnrollRequest, Envelope, KeyResponse, RETIRE, ROTATE, RetireRequest,
    RotateRequest, enrollment, sealed,
};

const ENROLLMENT_KEY_SHAPE: &str =
    "enrollment_key must be an Ed25519 public key (32 bytes in base64) not of small order";
const REPLY_KEY_SHAPE: &str =
    "reply_key must be an X25519 public key (32 bytes in base64) not of small order";

/// Who vouches for an enrollment, and the key the new one replaces in "Arq S3" (for `audit`).
enum Enroller {
    /// A fleet principal, by a proof: the key that signed it is the one replaced (STS vouched).
    Fleet { arn: String, signed_with: String },
    /// An enrollment token, by its name: the key replaced is only the Mac's word — kept as a hint
    /// when it looks like a key id, never used to decide anything.
    Token {
        name: String,
        claimed: Option<String>,
    },
}

impl Enroller {
    /// The user's `enrolled-by` tag and the log's caller: the ARN, or `token:<name>`.
    fn enrolled_by(&self) -> String {
        match self {
            Self::Fleet { arn, .. } => arn.clone(),
            Self::Token { name, .. } => format!("token:{name}"),
        }
    }

    fn replaced_key(&self) -> Option<&str> {
        match self {
            Self::Fleet { signed_with, .. } => Some(signed_with),
            Self::Token { claimed, .. } => claimed.as_deref(),
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
        let binding = protocol::binding(ENROLL, &envelope.request);
        if !enrollment::is_public_key(&request.enrollment_key) {
            return Err(Refusal::bad_key(ENROLLMENT_KEY_SHAPE));
        }
        if !sealed::is_reply_key(&request.reply_key) {
            return Err(Refusal::bad_key(REPLY_KEY_SHAPE));
        }
        let signature = envelope.enrollment_signature.as_deref().unwrap_or_default();
        let server_id = &self.rules.server_id;
        if !enrollment::verify(&request.enrollment_key, server_id, &binding, signature) {
            return Err(Refusal::not_self_signed());
        }
        let computer = &config.computer_uuid;
        let enroller = self
            .enroller(&envelope, &request, computer, &binding, who)
            .await?;
        self.first_use(signature)?;
        // A replay was refused above without using up the token's allowance.
        if let Enroller::Token { name, .. } = &enroller {
            self.tokens
                .admit(name, Instant::now())
                .map_err(|_| Refusal::token_limit())?;
        }
        let _permit = self.iam_permit().await?;
        let user = self.bind(&config, &request, &enroller).await?;
        let replaced_key = enroller.replaced_key();
        self.issue(&config, &user, &request.reply_key, replaced_key)
            .await
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
                let signed_with = checked.access_key_id;
                Ok(Enroller::Fleet {
                    arn: caller.arn,
                    signed_with,
                })
            }
            (None, Some(token)) => {
                let name = self
                    .tokens
                    .find(token)
                    .ok_or_else(Refusal::bad_enrollment_token)?;
                who.caller = Some(format!("token:{name}"));
                let claimed = request.replaced_key_id.clone();
                Ok(Enroller::Token {
                    name: name.to_owned(),
                    claimed: claimed.filter(|id| iam::is_access_key_id(id)),
                })
            }
            _ => Err(Refusal::proof_or_token()),
        }
    }

    /// The computer's user: made now, its binding tags in the one `CreateUser` (so IAM decides
    /// who binds a computer first), or bound already — then to this very enrollment key only.
    async fn bind(
        &self,
        config: &ArqConfig,
        request: &EnrollRequest,
        enroller: &Enroller,
    ) -> Result<ScopedUser, Refusal> {
        let uuid = &config.computer_uuid;
        let tags = UserTags {
            computer_uuid: uuid.to_string(),
            bucket: config.bucket.to_string(),
            enrollment_key: Some(request.enrollment_key.clone()),
            enrolled_by: Some(enroller.enrolled_by()),
            computer_name: request.computer_name.clone(),
            serial: request.serial.clone(),
            policy_options: Some(self.policy_options()),
            replaced_key: enroller.replaced_key().map(str::to_owned),
        };
        let boundary = &self.config.permissions_boundary_arn;
        match self.iam.create_user(uuid, &tags, boundary).await? {
            Some(user) => {
                if let Enroller::Token { name, .. } = enroller {
                    self.tokens.enrolled(name);
                }
                Ok(user)
            }
            // Bound already (by this Mac before, or by someone else): only its enrollment key may
            // enroll it again.
            None => bound_to(self.iam.inspect(uuid).await?, &request.enrollment_key),
        }
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
        self.first_use(&checked.signature)?;
        self.issue(&config, &user, &request.reply_key, None).await
    }

    /// Only the bound enrollment key may retire a key. Whoever asks is unknown until the signature
    /// is checked, so the lookup before it is one call, from a small budget of its own that never
    /// queues, and an unknown computer is refused exactly as a wrong signature is.
    pub(super) async fn retire(&self, body: &[u8], who: &mut Requester) -> Result<(), Refusal> {
        let (envelope, request) = self.open::<RetireRequest>(body)?;
        let uuid = self.computer_uuid(&request.computer_uuid, who)?;
        let binding = protocol::binding(RETIRE, &envelope.request);
        let signature = envelope
            .enrollment_signature
            .as_deref()
            .ok_or_else(Refusal::bad_signature)?;
        let user = self.unproven_lookup(&uuid).await?;
        let user = user.ok_or_else(Refusal::bad_signature)?;
        self.bound_signature(&user, &binding, Some(signature))?;
        who.caller = Some("enrollment-key".into());
        self.first_use(signature)?;
        let _permit = self.iam_permit().await?;
        let keys = self.iam.inspect(&uuid).await?.unwrap_or_default().key_ids;
        if keys.contains(&request.access_key_id) {
            self.iam.delete_key(&uuid, &request.access_key_id).await?;
        }
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
}

/// The user of a computer bound already, if it is bound to `enrollment_key`. No user at all is a
/// user being made or deleted right now: worth a retry.
fn bound_to(user: Option<ScopedUser>, enrollment_key: &str) -> Result<ScopedUser, Refusal> {
    let user =
        user.ok_or_else(|| Refusal::busy("this computer's user is being made or deleted: retry"))?;
    match user.enrollment_key() == Some(enrollment_key) {
        true => Ok(user),
        false => Err(Refusal::computer_already_enrolled()),
    }
}
