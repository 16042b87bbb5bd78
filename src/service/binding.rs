//! The binding rule (contracts §4): who may bind a computer UUID to their enrollment key. A binding
//! must rest on something only that Mac has (its enrollment key) confirmed through a channel no
//! other fleet member can write: either nobody else can know the UUID yet — it has no data in any
//! allowed bucket, and Arq makes UUIDs at random — or the admin pinned the UUID to the fingerprint
//! its own Mac reported through the MDM. `bind_without_pin` says what a computer nobody holds may
//! have; a pin, whatever the mode, admits its key alone.
//!
//! Here: the rule as a function of what IAM holds ([`unheld`], [`held`]); the bookkeeping of refused claims,
//! recorded on the computer's user so that `audit` shows it contested, but never so often that a
//! flood makes the service hammer IAM ([`worth_recording`], [`ClaimBudget`]); and the bindings this
//! instance confirmed lately ([`Confirmed`]), which let a retire by a known binding skip the small
//! budget of lookups for senders who have proven nothing. The IAM and S3 calls are
//! [`super::handlers`]'.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::config::BindWithoutPin;
use crate::arq_config::ComputerUuid;
use crate::protocol::enrollment;

/// A refused claim by the same key is recorded again only after this long.
pub const CLAIM_REPEAT_SECONDS: i64 = 600;
/// Refused claims recorded (a TagUser each) per minute by one instance, in bursts of as many.
const CLAIMS_PER_MINUTE: f64 = 10.0;
/// Bindings remembered for retires, and for how long.
const CONFIRMED_ENTRIES: usize = 10_000;
const CONFIRMED_FOR: Duration = Duration::from_secs(3600);

/// What IAM holds of a computer's binding: the tags of its user.
#[derive(Clone, Copy, Debug)]
pub struct Holder<'a> {
    /// The enrollment public key it is bound to (`arq-lockdown:enrollment-key`).
    pub enrollment_key: Option<&'a str>,
    /// The fingerprint the admin pinned it to (`arq-lockdown:pinned-key`).
    pub pinned_key: Option<&'a str>,
}

/// What an enrollment may do with a computer nobody holds (no user), under `bind_without_pin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unheld {
    /// Make its user with the binding in the one `CreateUser`.
    Create,
    /// The same, if its UUID has no data in any allowed bucket.
    CreateIfNoData,
    /// The admin must pin it first.
    NeedsPin,
}

/// What an enrollment by a key may do with a computer whose user exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// It is bound to this very key: enroll it again (a run that died, "Arq S3" reset).
    Again,
    /// It is pinned to this key's fingerprint and waits for it: bind it (TagUser).
    TakePin,
    Refuse(Refused),
}

/// Why a binding was refused (the reason codes of contracts §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Bound to another key (or made by `apply --source iam`, bound to no key).
    AlreadyEnrolled,
    /// Pinned to another key's fingerprint.
    PinnedToAnother,
    /// Nobody holds it, and the admin must pin it first.
    NeedsConfirmation,
}

/// The rule for a computer nobody holds.
pub fn unheld(mode: BindWithoutPin) -> Unheld {
    match mode {
        BindWithoutPin::Always => Unheld::Create,
        BindWithoutPin::WhenNoData => Unheld::CreateIfNoData,
        BindWithoutPin::Never => Unheld::NeedsPin,
    }
}

/// The rule for a computer whose user is `holder`, asked by the enrollment key `key`. A pin
/// decides alone when there is one: the admin's word is newer than any binding it disagrees with.
pub fn held(holder: Holder<'_>, key: &str) -> Held {
    let bound_here = holder.enrollment_key == Some(key);
    match holder.pinned_key {
        Some(pin) if enrollment::fingerprint(key).as_deref() != Some(pin) => {
            Held::Refuse(Refused::PinnedToAnother)
        }
        Some(_) if bound_here => Held::Again,
        Some(_) => Held::TakePin,
        None if bound_here => Held::Again,
        None => Held::Refuse(Refused::AlreadyEnrolled),
    }
}

/// Whether a refused claim by `fingerprint` at `now` (unix seconds) should be written over
/// `recorded`, the claim the user's tag holds: not when the same key's claim is recorded already,
/// less than [`CLAIM_REPEAT_SECONDS`] ago.
pub fn worth_recording(recorded: Option<(i64, &str)>, fingerprint: &str, now: i64) -> bool {
    !recorded.is_some_and(|(when, by)| by == fingerprint && now - when < CLAIM_REPEAT_SECONDS)
}

/// How many refused claims one instance may still record now: a token bucket of
/// [`CLAIMS_PER_MINUTE`], so claims by a flood of fresh keys cost at most that many TagUsers.
pub struct ClaimBudget {
    left: f64,
    topped_up: Instant,
}

impl ClaimBudget {
    pub fn new(now: Instant) -> Self {
        Self {
            left: CLAIMS_PER_MINUTE,
            topped_up: now,
        }
    }

    /// Takes one record from the budget; `false` when it is spent.
    pub fn take(&mut self, now: Instant) -> bool {
        let minutes = now.duration_since(self.topped_up).as_secs_f64() / 60.0;
        self.left = (self.left + minutes * CLAIMS_PER_MINUTE).min(CLAIMS_PER_MINUTE);
        self.topped_up = now;
        let left = self.left >= 1.0;
        if left {
            self.left -= 1.0;
        }
        left
    }
}

/// The bindings (computer → enrollment public key) this instance checked against IAM in the last
/// [`CONFIRMED_FOR`]. It only says whether a retire may wait for IAM like any proven request; what
/// the retire may do is decided on IAM's answer all the same.
#[derive(Default)]
pub struct Confirmed {
    bindings: HashMap<ComputerUuid, (String, Instant)>,
}

impl Confirmed {
    /// Remembers that `uuid` is bound to `key`, as IAM said just now.
    pub fn confirm(&mut self, uuid: &ComputerUuid, key: &str, now: Instant) {
        if self.bindings.len() >= CONFIRMED_ENTRIES {
            self.bindings
                .retain(|_, (_, at)| now.duration_since(*at) < CONFIRMED_FOR);
        }
        if self.bindings.len() >= CONFIRMED_ENTRIES {
            self.bindings.clear();
        }
        self.bindings.insert(uuid.clone(), (key.to_owned(), now));
    }

    /// Whether `uuid` was confirmed bound to `key` lately.
    pub fn knows(&self, uuid: &ComputerUuid, key: &str, now: Instant) -> bool {
        self.bindings
            .get(uuid)
            .is_some_and(|(bound, at)| bound == key && now.duration_since(*at) < CONFIRMED_FOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::enrollment::EnrollmentKey;

    #[test]
    fn a_computer_nobody_holds_is_bound_as_the_mode_says() {
        assert_eq!(unheld(BindWithoutPin::WhenNoData), Unheld::CreateIfNoData);
        assert_eq!(unheld(BindWithoutPin::Always), Unheld::Create);
        assert_eq!(unheld(BindWithoutPin::Never), Unheld::NeedsPin);
    }

    #[test]
    #[rustfmt::skip]
    fn a_held_computer_is_bound_by_its_key_or_its_pin_alone() {
        use Held::*;
        use Refused::*;
        let (key, other) = (EnrollmentKey::generate().public(), EnrollmentKey::generate().public());
        let (pin, other_pin) = (enrollment::fingerprint(&key).unwrap(), enrollment::fingerprint(&other).unwrap());
        let holder = |enrollment_key, pinned_key| Holder { enrollment_key, pinned_key };
        let (key, other) = (key.as_str(), other.as_str());
        let cases = [
            // enrollment-key, pinned-key           decision
            (holder(Some(key), None),               Again),
            (holder(Some(other), None),             Refuse(AlreadyEnrolled)),
            (holder(None, None),                    Refuse(AlreadyEnrolled)),
            (holder(None, Some(pin.as_str())),      TakePin),
            (holder(None, Some(&other_pin)),        Refuse(PinnedToAnother)),
            (holder(Some(key), Some(&pin)),         Again),
            // The admin pinned another Mac after this one bound it: the pin wins.
            (holder(Some(key), Some(&other_pin)),   Refuse(PinnedToAnother)),
            (holder(Some(other), Some(&pin)),       TakePin),
            (holder(None, Some("SHA256:junk")),     Refuse(PinnedToAnother)),
        ];
        for (i, (holder, decision)) in cases.into_iter().enumerate() {
            assert_eq!(held(holder, key), decision, "case {i}: {holder:?}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn a_claim_is_recorded_again_only_for_another_key_or_after_ten_minutes() {
        let cases = [
            (None,                   "SHA256:a", 1_000, true),
            (Some((1_000, "SHA256:a")), "SHA256:a", 1_000, false),
            (Some((1_000, "SHA256:a")), "SHA256:a", 1_599, false),
            (Some((1_000, "SHA256:a")), "SHA256:a", 1_600, true),
            (Some((1_000, "SHA256:a")), "SHA256:b", 1_001, true),
            (Some((9_000, "SHA256:a")), "SHA256:a", 1_000, false),
        ];
        for (recorded, fingerprint, now, worth) in cases {
            assert_eq!(worth_recording(recorded, fingerprint, now), worth, "{recorded:?} {fingerprint} {now}");
        }
    }

    #[test]
    fn the_claim_budget_allows_a_burst_then_its_rate() {
        let start = Instant::now();
        let mut budget = ClaimBudget::new(start);
        for _ in 0..10 {
            assert!(budget.take(start));
        }
        assert!(!budget.take(start));
        let later = start + Duration::from_secs(6);
        assert!(budget.take(later), "one more after six seconds");
        assert!(!budget.take(later));
        let much_later = later + Duration::from_secs(3600);
        assert_eq!((0..20).filter(|_| budget.take(much_later)).count(), 10);
    }

    #[test]
    fn confirmed_bindings_are_known_for_their_key_for_an_hour() {
        let uuid = ComputerUuid::parse("32D9D7A2-3B3E-4BE7-B85B-0605AF24F570").unwrap();
        let now = Instant::now();
        let mut confirmed = Confirmed::default();
        assert!(!confirmed.knows(&uuid, "k", now));
        confirmed.confirm(&uuid, "k", now);
        assert!(confirmed.knows(&uuid, "k", now + Duration::from_secs(3599)));
        assert!(!confirmed.knows(&uuid, "other", now));
        assert!(!confirmed.knows(&uuid, "k", now + CONFIRMED_FOR));
        // Full: what is old goes first, and it never holds more than its capacity.
        let mut confirmed = Confirmed::default();
        let start = now - CONFIRMED_FOR;
        for i in 0..CONFIRMED_ENTRIES {
            let other = ComputerUuid::parse(&format!("32D9D7A2-3B3E-4BE7-B85B-{i:012X}")).unwrap();
            confirmed.confirm(&other, "old", start);
        }
        assert_eq!(confirmed.bindings.len(), CONFIRMED_ENTRIES);
        confirmed.confirm(&uuid, "k", now);
        assert!(confirmed.knows(&uuid, "k", now));
        assert_eq!(confirmed.bindings.len(), 1);
        for i in 0..=CONFIRMED_ENTRIES {
            let other = ComputerUuid::parse(&format!("7A1E5C3B-9D2F-4E8A-B6C4-{i:012X}")).unwrap();
            confirmed.confirm(&other, "new", now);
        }
        assert!(confirmed.bindings.len() <= CONFIRMED_ENTRIES);
    }
}
