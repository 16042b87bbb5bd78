//! Enrollment tokens, and the limits of everyone who may enroll. A token sits in a profile every
//! user of every Mac can read, and copies of the main keys survive on Macs, so every enroller — each
//! token by its name, each fleet principal by its ARN — has limits ([`Limits`], defaults in the
//! config): at most `max_per_hour` enrollments an hour through one instance, and `max_enrollments`
//! computers bound by creating their user, in all (counted from IAM's tags at start, so a restart
//! does not reset it). That keeps one holder from filling IAM's 5,000-user quota.
//!
//! Both are taken before the IAM work and given back when it does not happen ([`Reservation`]):
//! a creation's slot is held across `CreateUser`, so parallel requests never exceed the total, and
//! a refused or failed request costs its enroller nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::config::{EnrollmentToken, Limits};

/// Who may enroll, and what each has used.
pub struct Enrollers {
    tokens: Vec<EnrollmentToken>,
    /// By enroller (its `enrolled-by` tag value), created at its first request.
    usage: Mutex<HashMap<String, Usage>>,
    /// Computers each enroller had created users for when the service started, from IAM.
    at_start: HashMap<String, u64>,
}

struct Usage {
    /// Users this enroller created, in IAM (at start) plus since.
    enrolled: u64,
    /// Slots held by requests whose `CreateUser` has not answered yet.
    creating: u64,
    /// A token bucket for `max_per_hour`: what is left, and when it was last topped up.
    allowance: f64,
    topped_up: Instant,
}

/// Why an enroller may not enroll now.
#[derive(Debug, PartialEq, Eq)]
pub enum LimitRefusal {
    RateLimited,
    Exhausted,
}

/// What a request holds of its enroller's limits while IAM works: one enrollment of the hour and,
/// for a creation, one slot of the total. Whatever is not committed is given back when it drops.
pub struct Reservation<'a> {
    enrollers: &'a Enrollers,
    enroller: String,
    per_hour: u32,
    hour: bool,
    slot: bool,
}

impl Enrollers {
    /// The configured tokens; `at_start` holds how many users each enroller (by its `enrolled-by`
    /// value) had created, as IAM's tags said at start.
    pub fn new(tokens: Vec<EnrollmentToken>, at_start: HashMap<String, u64>) -> Self {
        Self {
            tokens,
            usage: Mutex::new(HashMap::new()),
            at_start,
        }
    }

    /// The token `token` is, if it is one of ours (compared against every known hash in constant
    /// time).
    pub fn find(&self, token: &str) -> Option<&EnrollmentToken> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for known in &self.tokens {
            if bool::from(known.sha256.0.ct_eq(&digest)) {
                found = Some(known);
            }
        }
        found
    }

    /// Takes one enrollment of `enroller`'s hour and, when the request may create a user
    /// (`creates`), one slot of its total — both or neither.
    pub fn reserve(
        &self,
        enroller: &str,
        limits: Limits,
        creates: bool,
        now: Instant,
    ) -> Result<Reservation<'_>, LimitRefusal> {
        let mut usage = self.usage.lock().expect("enroller usage lock");
        let usage = usage.entry(enroller.to_owned()).or_insert_with(|| Usage {
            enrolled: self.at_start.get(enroller).copied().unwrap_or(0),
            creating: 0,
            allowance: f64::from(limits.max_per_hour),
            topped_up: now,
        });
        if creates && usage.enrolled + usage.creating >= limits.max_enrollments {
            return Err(LimitRefusal::Exhausted);
        }
        let per_hour = f64::from(limits.max_per_hour);
        let hours = now.duration_since(usage.topped_up).as_secs_f64() / 3600.0;
        usage.allowance = (usage.allowance + hours * per_hour).min(per_hour);
        usage.topped_up = now;
        if usage.allowance < 1.0 {
            return Err(LimitRefusal::RateLimited);
        }
        usage.allowance -= 1.0;
        usage.creating += u64::from(creates);
        Ok(Reservation {
            enrollers: self,
            enroller: enroller.to_owned(),
            per_hour: limits.max_per_hour,
            hour: true,
            slot: creates,
        })
    }

    fn settle(&self, enroller: &str, give_back_hour: Option<u32>, slot: Option<bool>) {
        let mut usage = self.usage.lock().expect("enroller usage lock");
        let usage = usage.get_mut(enroller).expect("a reservation's enroller");
        if let Some(per_hour) = give_back_hour {
            usage.allowance = (usage.allowance + 1.0).min(f64::from(per_hour));
        }
        if let Some(created) = slot {
            usage.creating -= 1;
            usage.enrolled += u64::from(created);
        }
    }
}

impl Reservation<'_> {
    /// `CreateUser` made the user: the slot is spent for good.
    pub fn created(&mut self) {
        if std::mem::take(&mut self.slot) {
            self.enrollers.settle(&self.enroller, None, Some(true));
        }
    }

    /// A key was issued: the hour's enrollment is spent; a slot not used for a creation is given
    /// back.
    pub fn issued(mut self) {
        self.hour = false;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let hour = self.hour.then_some(self.per_hour);
        let slot = self.slot.then_some(false);
        if hour.is_some() || slot.is_some() {
            self.enrollers.settle(&self.enroller, hour, slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::service::config::TokenHash;

    fn token(name: &str, secret: &str) -> EnrollmentToken {
        EnrollmentToken {
            name: name.into(),
            sha256: TokenHash(Sha256::digest(secret.as_bytes()).into()),
            max_enrollments: 1000,
            max_per_hour: 100,
        }
    }

    const fn limits(max_per_hour: u32, max_enrollments: u64) -> Limits {
        Limits {
            max_per_hour,
            max_enrollments,
        }
    }

    #[test]
    fn only_known_tokens_are_found() {
        let enrollers = Enrollers::new(
            vec![token("a", "secret-a"), token("b", "secret-b")],
            HashMap::new(),
        );
        assert_eq!(
            enrollers.find("secret-b").map(|t| t.name.as_str()),
            Some("b")
        );
        assert!(enrollers.find("secret-c").is_none());
    }

    #[test]
    fn the_hourly_allowance_runs_out_and_refills() {
        let enrollers = Enrollers::new(vec![], HashMap::new());
        let start = Instant::now();
        let take = |at| {
            enrollers
                .reserve("token:a", limits(3, 100), false, at)
                .map(Reservation::issued)
        };
        for _ in 0..3 {
            assert_eq!(take(start), Ok(()));
        }
        assert_eq!(take(start), Err(LimitRefusal::RateLimited));
        // A third of an hour later one more is allowed, and never more than the hour's worth.
        let later = start + Duration::from_secs(1200);
        assert_eq!(take(later), Ok(()));
        assert_eq!(take(later), Err(LimitRefusal::RateLimited));
        let much_later = later + Duration::from_secs(10 * 3600);
        for _ in 0..3 {
            assert_eq!(take(much_later), Ok(()));
        }
        assert_eq!(take(much_later), Err(LimitRefusal::RateLimited));
    }

    #[test]
    fn the_total_counts_what_iam_had_at_start_and_each_creation_since() {
        let at_start = HashMap::from([("token:a".to_owned(), 2)]);
        let enrollers = Enrollers::new(vec![], at_start);
        let now = Instant::now();
        let mut first = enrollers
            .reserve("token:a", limits(100, 3), true, now)
            .unwrap();
        assert_eq!(
            enrollers
                .reserve("token:a", limits(100, 3), true, now)
                .err(),
            Some(LimitRefusal::Exhausted),
            "a slot held by a creation in flight counts"
        );
        // Enrolling a computer bound already needs no slot.
        assert!(
            enrollers
                .reserve("token:a", limits(100, 3), false, now)
                .is_ok()
        );
        first.created();
        first.issued();
        assert_eq!(
            enrollers
                .reserve("token:a", limits(100, 3), true, now)
                .err(),
            Some(LimitRefusal::Exhausted)
        );
        // Another enroller has its own count.
        assert!(
            enrollers
                .reserve("arn:aws:iam::1:user/fleet", limits(100, 3), true, now)
                .is_ok()
        );
    }

    #[test]
    fn what_a_request_does_not_use_is_given_back() {
        let enrollers = Enrollers::new(vec![], HashMap::new());
        let now = Instant::now();
        let reserve = |creates| enrollers.reserve("token:a", limits(1, 1), creates, now);
        // Refused or failed: both come back.
        drop(reserve(true).unwrap());
        // Not a creation after all (the user existed): the slot comes back, the hour is spent.
        let existed = reserve(true).unwrap();
        existed.issued();
        assert_eq!(reserve(false).err(), Some(LimitRefusal::RateLimited));
        let later = now + Duration::from_secs(3600);
        let mut created = enrollers
            .reserve("token:a", limits(1, 1), true, later)
            .unwrap();
        // Made the user, then failed to issue: the slot stays spent (the user exists), the hour
        // comes back.
        created.created();
        drop(created);
        assert_eq!(
            enrollers
                .reserve("token:a", limits(1, 1), true, later)
                .err(),
            Some(LimitRefusal::Exhausted)
        );
        assert!(
            enrollers
                .reserve("token:a", limits(1, 1), false, later)
                .is_ok()
        );
    }
}
