//! Turning frames into a decision: [`Fusion`] fuses per-frame scores (k of n
//! frames above the threshold of the probe's condition), [`Lockout`] backs
//! off after repeated failures.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Outcome of fusing frames.
#[derive(Debug, Clone, PartialEq)]
pub enum Fused {
    /// Enough frames passed: mean score of the passing frames.
    Accept { score: f32, passed: u32, seen: u32 },
    /// Too many frames failed for `min` to be reachable within `max`.
    Reject { best: f32, seen: u32 },
}

/// k-of-n frame fusion.
#[derive(Debug, Clone)]
pub struct Fusion {
    min: u32,
    max: u32,
    passed: Vec<f32>,
    seen: u32,
    best: Option<f32>,
}

impl Fusion {
    pub fn new(min: u32, max: u32) -> Fusion {
        Fusion {
            min: min.max(1),
            max: max.max(min.max(1)),
            passed: Vec::new(),
            seen: 0,
            best: None,
        }
    }

    /// Add one face frame's score against its threshold; `Some` when decided.
    pub fn push(&mut self, score: f32, threshold: f32) -> Option<Fused> {
        self.seen += 1;
        self.best = Some(self.best.map_or(score, |b| b.max(score)));
        if score >= threshold {
            self.passed.push(score);
        }
        let passed = self.passed.len() as u32;
        if passed >= self.min {
            return Some(Fused::Accept {
                score: self.passed.iter().sum::<f32>() / passed as f32,
                passed,
                seen: self.seen,
            });
        }
        if passed + (self.max - self.seen.min(self.max)) < self.min {
            return Some(Fused::Reject {
                best: self.best.unwrap_or(score),
                seen: self.seen,
            });
        }
        None
    }

    /// Frames that passed so far.
    pub fn passed(&self) -> u32 {
        self.passed.len() as u32
    }

    pub fn seen(&self) -> u32 {
        self.seen
    }

    pub fn best(&self) -> Option<f32> {
        self.best
    }
}

/// Per-user failure back-off: `free` failures, then a delay of
/// `base · 2^(n-free-1)` (capped at `max`) after each further failure.
#[derive(Debug)]
pub struct Lockout {
    pub free: u32,
    pub base: Duration,
    pub max: Duration,
    state: HashMap<String, (u32, Instant)>,
}

impl Lockout {
    pub fn new(free: u32, base: Duration, max: Duration) -> Lockout {
        Lockout {
            free,
            base,
            max,
            state: HashMap::new(),
        }
    }

    /// `Err(remaining)` while `user` is locked out at `now`.
    pub fn check(&self, user: &str, now: Instant) -> Result<(), Duration> {
        match self.state.get(user) {
            Some(&(n, until)) if n > self.free && until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Record a failure; returns the delay now imposed (zero while free).
    pub fn failure(&mut self, user: &str, now: Instant) -> Duration {
        if self.state.len() > 10_000 {
            self.state.retain(|_, (_, until)| *until > now);
        }
        let e = self.state.entry(user.to_string()).or_insert((0, now));
        e.0 = e.0.saturating_add(1);
        let delay = if e.0 > self.free {
            let k = (e.0 - self.free - 1).min(20);
            self.base.saturating_mul(1u32 << k).min(self.max)
        } else {
            Duration::ZERO
        };
        e.1 = now + delay;
        delay
    }

    pub fn success(&mut self, user: &str) {
        self.state.remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fusion_k_of_n() {
        let mut f = Fusion::new(2, 4);
        assert_eq!(f.push(0.9, 0.5), None);
        assert_eq!(f.push(0.1, 0.5), None);
        match f.push(0.7, 0.5) {
            Some(Fused::Accept {
                score,
                passed: 2,
                seen: 3,
            }) => assert!((score - 0.8).abs() < 1e-6, "mean of passing scores {score}"),
            other => panic!("expected accept 2 of 3, got {other:?}"),
        }
        let mut f = Fusion::new(2, 3);
        assert_eq!(f.push(0.1, 0.5), None);
        assert_eq!(f.push(0.3, 0.5), Some(Fused::Reject { best: 0.3, seen: 2 }));
    }

    #[test]
    fn lockout_grows_and_resets() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut l = Lockout::new(3, s, Duration::from_secs(5));
        for _ in 0..3 {
            assert_eq!(l.failure("ann", t0), Duration::ZERO);
            assert!(l.check("ann", t0).is_ok());
        }
        assert_eq!(l.failure("ann", t0), s);
        assert_eq!(l.check("ann", t0), Err(s));
        assert!(l.check("bob", t0).is_ok());
        assert!(l.check("ann", t0 + s).is_ok());
        assert_eq!(l.failure("ann", t0 + s), 2 * s);
        assert_eq!(l.failure("ann", t0 + s), 4 * s);
        assert_eq!(l.failure("ann", t0 + s), 5 * s, "capped");
        l.success("ann");
        assert!(l.check("ann", t0 + s).is_ok());
        assert_eq!(l.failure("ann", t0), Duration::ZERO);
    }
}
