//! The per-instance memory of proofs and signatures already used: the second line against
//! replays (the first is that a replayed request's answer is sealed to its sender, and that its
//! proof covers the whole request). A signature is held while its request is served (a copy sent
//! meanwhile is a replay) and remembered only once the request was served: refused requests —
//! however many a token holder sends — leave nothing. It is bounded anyway, and forgets in time
//! order.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

pub struct ReplayCache {
    seen: HashSet<String>,
    /// Signatures of requests being served now.
    held: HashSet<String>,
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
            held: HashSet::new(),
            by_age: VecDeque::new(),
            keep,
            capacity,
        }
    }

    /// Holds `signature` while its request is served; `false` when it is remembered or held
    /// already (a replay).
    pub fn hold(&mut self, signature: &str, now: Instant) -> bool {
        while self
            .by_age
            .front()
            .is_some_and(|(expires, _)| *expires <= now)
        {
            self.forget_oldest();
        }
        !self.seen.contains(signature) && self.held.insert(signature.to_owned())
    }

    /// Lets go of a held signature whose request was refused: nothing of it is kept.
    pub fn release(&mut self, signature: &str) {
        self.held.remove(signature);
    }

    /// Remembers a held signature whose request was served.
    pub fn remember(&mut self, signature: &str, now: Instant) {
        self.held.remove(signature);
        if self.seen.len() >= self.capacity {
            self.forget_oldest();
        }
        self.seen.insert(signature.to_owned());
        self.by_age
            .push_back((now + self.keep, signature.to_owned()));
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

    /// The whole life of a served request: held, then remembered.
    fn first_use(cache: &mut ReplayCache, signature: &str, now: Instant) -> bool {
        let fresh = cache.hold(signature, now);
        if fresh {
            cache.remember(signature, now);
        }
        fresh
    }

    #[test]
    fn a_signature_counts_once_until_it_is_forgotten() {
        let mut cache = ReplayCache::new(Duration::from_secs(600), 100);
        let start = Instant::now();
        assert!(first_use(&mut cache, "a", start));
        assert!(!first_use(
            &mut cache,
            "a",
            start + Duration::from_secs(599)
        ));
        assert!(first_use(&mut cache, "b", start + Duration::from_secs(300)));
        // At 601 s "a" is forgotten; "b" (made at 300 s) is still known.
        assert!(first_use(&mut cache, "a", start + Duration::from_secs(601)));
        assert!(!first_use(
            &mut cache,
            "b",
            start + Duration::from_secs(601)
        ));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn it_never_holds_more_than_its_capacity_and_drops_the_oldest() {
        let mut cache = ReplayCache::new(Duration::from_secs(600), 3);
        let now = Instant::now();
        for name in ["a", "b", "c", "d"] {
            assert!(first_use(&mut cache, name, now));
        }
        assert_eq!(cache.len(), 3);
        assert!(
            !first_use(&mut cache, "b", now),
            "a replay is caught even when the cache is full"
        );
        assert!(first_use(&mut cache, "a", now), "the oldest went first");
        assert!(!first_use(&mut cache, "d", now));
    }

    #[test]
    fn a_request_being_served_is_not_served_twice_and_a_refused_one_leaves_nothing() {
        let mut cache = ReplayCache::new(Duration::from_secs(600), 3);
        let now = Instant::now();
        assert!(cache.hold("a", now));
        assert!(
            !cache.hold("a", now),
            "a copy sent while the first is served"
        );
        cache.release("a");
        assert_eq!(cache.len(), 0);
        assert!(cache.hold("a", now), "refused, so it may come again");
        cache.remember("a", now);
        assert!(!cache.hold("a", now));
        // A flood of refused requests never pushes out what was served.
        for i in 0..10 {
            let flood = format!("flood-{i}");
            assert!(cache.hold(&flood, now));
            cache.release(&flood);
        }
        assert!(!cache.hold("a", now));
        assert_eq!(cache.len(), 1);
    }
}
