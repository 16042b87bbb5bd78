//! The per-instance memory of proofs and signatures already used: the second line against
//! replays (the first is that a replayed request's answer is sealed to its sender, and that its
//! proof covers the whole request). Only requests that passed every check are remembered, so
//! callers who prove nothing cannot fill it; it is bounded anyway, and forgets in time order.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

pub struct ReplayCache {
    seen: HashSet<String>,
    /// The same entries, oldest first, with the time each may be forgotten.
    by_age: VecDeque<(Instant, String)>,
    /// How long an entry is kept: longer than a proof stays valid.
    keep: Duration,
    capacity: usize,
}

impl ReplayCache {
    pub fn new(keep: Duration, capacity: usize) -> Self {
        Self {
            seen: HashSet::new(),
            by_age: VecDeque::new(),
            keep,
            capacity,
        }
    }

    /// Records `signature`; `false` when it was recorded already (a replay).
    pub fn first_use(&mut self, signature: &str, now: Instant) -> bool {
        while self
            .by_age
            .front()
            .is_some_and(|(expires, _)| *expires <= now)
        {
            self.forget_oldest();
        }
        if self.seen.contains(signature) {
            return false;
        }
        if self.seen.len() >= self.capacity {
            self.forget_oldest();
        }
        self.seen.insert(signature.to_owned());
        self.by_age
            .push_back((now + self.keep, signature.to_owned()));
        true
    }

    fn forget_oldest(&mut self) {
        if let Some((_, oldest)) = self.by_age.pop_front() {
            self.seen.remove(&oldest);
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_counts_once_until_it_is_forgotten() {
        let mut cache = ReplayCache::new(Duration::from_secs(600), 100);
        let start = Instant::now();
        assert!(cache.first_use("a", start));
        assert!(!cache.first_use("a", start + Duration::from_secs(599)));
        assert!(cache.first_use("b", start + Duration::from_secs(300)));
        // At 601 s "a" is forgotten; "b" (made at 300 s) is still known.
        assert!(cache.first_use("a", start + Duration::from_secs(601)));
        assert!(!cache.first_use("b", start + Duration::from_secs(601)));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn it_never_holds_more_than_its_capacity_and_drops_the_oldest() {
        let mut cache = ReplayCache::new(Duration::from_secs(600), 3);
        let now = Instant::now();
        for name in ["a", "b", "c", "d"] {
            assert!(cache.first_use(name, now));
        }
        assert_eq!(cache.len(), 3);
        assert!(
            !cache.first_use("b", now),
            "a replay is caught even when the cache is full"
        );
        assert!(cache.first_use("a", now), "the oldest went first");
        assert!(!cache.first_use("d", now));
    }
}
