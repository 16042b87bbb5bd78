//! Enrollment tokens and their limits. A token sits in a profile every user of every Mac can read,
//! so it is treated as semi-public: it can enroll only computer UUIDs nobody has bound yet, at most
//! `max_per_hour` an hour through one instance and `max_enrollments` in all (counted from IAM's
//! tags at start, so a restart does not reset it), which keeps one leaked token from exhausting
//! IAM's 5,000-user quota.

use std::sync::Mutex;
use std::time::Instant;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::config::EnrollmentToken;

pub struct Tokens {
    tokens: Vec<EnrollmentToken>,
    usage: Mutex<Vec<Usage>>,
}

struct Usage {
    /// Computers this token enrolled, in IAM (at start) plus since.
    enrolled: u64,
    /// A token bucket for `max_per_hour`: what is left, and when it was last topped up.
    allowance: f64,
    topped_up: Instant,
}

/// Why a token may not enroll now.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenRefusal {
    RateLimited,
    Exhausted,
}

impl Tokens {
    /// The configured tokens, with `enrolled(name)` computers already enrolled by each.
    pub fn new(tokens: Vec<EnrollmentToken>, enrolled: impl Fn(&str) -> u64) -> Self {
        let now = Instant::now();
        let usage = tokens
            .iter()
            .map(|t| Usage {
                enrolled: enrolled(&t.name),
                allowance: f64::from(t.max_per_hour.unwrap_or(0)),
                topped_up: now,
            })
            .collect();
        Self {
            tokens,
            usage: Mutex::new(usage),
        }
    }

    /// Whether any token has a total limit (then the service counts enrollments in IAM at start).
    pub fn count_enrollments(tokens: &[EnrollmentToken]) -> bool {
        tokens.iter().any(|t| t.max_enrollments.is_some())
    }

    /// The name of `token`, if it is one of ours (compared against every known hash in constant
    /// time).
    pub fn find(&self, token: &str) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for known in &self.tokens {
            if bool::from(known.sha256.0.ct_eq(&digest)) {
                found = Some(known.name.as_str());
            }
        }
        found
    }

    /// Takes one enrollment from the allowance of the token `name` (a name [`Tokens::find`] gave).
    pub fn admit(&self, name: &str, now: Instant) -> Result<(), TokenRefusal> {
        let i = self
            .tokens
            .iter()
            .position(|t| t.name == name)
            .expect("a name find gave");
        let token = &self.tokens[i];
        let mut usage = self.usage.lock().expect("token usage lock");
        let usage = &mut usage[i];
        if token
            .max_enrollments
            .is_some_and(|max| usage.enrolled >= max)
        {
            return Err(TokenRefusal::Exhausted);
        }
        if let Some(per_hour) = token.max_per_hour {
            let per_hour = f64::from(per_hour);
            let hours = now.duration_since(usage.topped_up).as_secs_f64() / 3600.0;
            usage.allowance = (usage.allowance + hours * per_hour).min(per_hour);
            usage.topped_up = now;
            if usage.allowance < 1.0 {
                return Err(TokenRefusal::RateLimited);
            }
            usage.allowance -= 1.0;
        }
        Ok(())
    }

    /// Counts a computer newly bound through the token `name`.
    pub fn enrolled(&self, name: &str) {
        let mut usage = self.usage.lock().expect("token usage lock");
        if let Some(i) = self.tokens.iter().position(|t| t.name == name) {
            usage[i].enrolled += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::service::config::TokenHash;

    fn token(
        name: &str,
        secret: &str,
        max_enrollments: Option<u64>,
        max_per_hour: Option<u32>,
    ) -> EnrollmentToken {
        EnrollmentToken {
            name: name.into(),
            sha256: TokenHash(Sha256::digest(secret.as_bytes()).into()),
            max_enrollments,
            max_per_hour,
        }
    }

    #[test]
    fn only_known_tokens_are_admitted_by_name() {
        let tokens = Tokens::new(
            vec![
                token("a", "secret-a", None, None),
                token("b", "secret-b", None, None),
            ],
            |_| 0,
        );
        assert_eq!(tokens.find("secret-b"), Some("b"));
        assert_eq!(tokens.find("secret-c"), None);
    }

    #[test]
    fn the_hourly_allowance_runs_out_and_refills() {
        let tokens = Tokens::new(vec![token("a", "s", None, Some(3))], |_| 0);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(tokens.admit("a", start).is_ok());
        }
        assert_eq!(tokens.admit("a", start), Err(TokenRefusal::RateLimited));
        // A third of an hour later one more is allowed.
        let later = start + Duration::from_secs(1200);
        assert!(tokens.admit("a", later).is_ok());
        assert_eq!(tokens.admit("a", later), Err(TokenRefusal::RateLimited));
    }

    #[test]
    fn the_total_counts_what_iam_had_at_start() {
        let tokens = Tokens::new(vec![token("a", "s", Some(3), None)], |name| {
            assert_eq!(name, "a");
            2
        });
        let now = Instant::now();
        assert!(tokens.admit("a", now).is_ok());
        tokens.enrolled("a");
        assert_eq!(tokens.admit("a", now), Err(TokenRefusal::Exhausted));
    }
}
