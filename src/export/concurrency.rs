//! How many imports may be in flight: halved on a 429, cut by a quarter when answers become
//! much slower than usual, raised by one for every other answer that came while the limit
//! held a batch back, never above `max-concurrency`. It starts at `concurrency`.
//!
//! Raised only while it is what holds sending back (batches waiting, every slot taken): then
//! one more request in flight is more members a second, as long as the API answers as fast.
//! Once the scan, not the limit, is the bottleneck, the limit stays where it is: it settles
//! at what the latency needs (about rate x latency), not at the ceiling.
//!
//! "Usual" is a long average of latency, not its best: an API's latency jitters (20 to 200 ms
//! is ordinary), and against the best answer ever seen a merely typical one looks slow, so
//! the limit fell to one request in flight. Against the long average, noise cancels out and
//! only a sustained slowdown (an overloaded server) lowers the limit.

use std::time::Duration;

/// Weight of the newest answer in the short average (about the last 5 answers).
const SHORT: f64 = 0.2;
/// Weight of the newest answer in the long average (about the last 50 answers).
const LONG: f64 = 0.02;
/// The short average this many times the long one counts as a slowdown.
const SLOW: f64 = 2.0;

#[derive(Debug, Clone)]
pub struct Concurrency {
    max: usize,
    /// The highest the limit reached.
    peak: usize,
    current: usize,
    short: Option<f64>,
    long: Option<f64>,
    /// Answers since the limit was last lowered: one cut per round of answers in flight.
    since_cut: usize,
}

impl Concurrency {
    /// Starts at `start`, rises to at most `max`.
    pub fn new(start: usize, max: usize) -> Self {
        let max = max.max(1);
        let start = start.clamp(1, max);
        Self {
            max,
            peak: start,
            current: start,
            short: None,
            long: None,
            since_cut: 0,
        }
    }

    pub fn current(&self) -> usize {
        self.current
    }

    pub fn peak(&self) -> usize {
        self.peak
    }

    /// Takes one batch's outcome: whether it met a 429, how long its last request took, and
    /// whether the limit was holding work back when it came (every slot taken, more waiting).
    pub fn on_answer(&mut self, rate_limited: bool, latency: Duration, held_back: bool) {
        self.since_cut += 1;
        if rate_limited {
            self.cut(self.current / 2);
            return;
        }
        let secs = latency.as_secs_f64();
        let short = self.short.map_or(secs, |s| s + SHORT * (secs - s));
        let long = self.long.map_or(secs, |l| l + LONG * (secs - l));
        self.short = Some(short);
        self.long = Some(long);
        if short > SLOW * long {
            // Those in flight were sent under the old limit: their answers say nothing new.
            if self.since_cut > self.current {
                self.cut(self.current - self.current / 4);
            }
        } else if held_back && self.current < self.max {
            self.current += 1;
            self.peak = self.peak.max(self.current);
        }
    }

    fn cut(&mut self, to: usize) {
        self.current = to.clamp(1, self.max);
        self.since_cut = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    const FAST: Duration = Duration::from_millis(10);

    #[test]
    fn halves_on_429_and_climbs_back() {
        let mut c = Concurrency::new(8, 8);
        c.on_answer(false, FAST, true);
        assert_eq!(c.current(), 8);
        c.on_answer(true, FAST, true);
        assert_eq!(c.current(), 4);
        c.on_answer(true, FAST, true);
        c.on_answer(true, FAST, true);
        c.on_answer(true, FAST, true);
        assert_eq!(c.current(), 1);
        for _ in 0..20 {
            c.on_answer(false, FAST, true);
        }
        assert_eq!(c.current(), 8);
    }

    #[test]
    fn rises_only_while_it_holds_sending_back() {
        let mut c = Concurrency::new(8, 64);
        for _ in 0..100 {
            c.on_answer(false, FAST, false);
        }
        assert_eq!(
            c.current(),
            8,
            "the scan is the bottleneck: more slots would stay empty"
        );
        for _ in 0..10 {
            c.on_answer(false, FAST, true);
        }
        assert_eq!(c.current(), 18);
        for _ in 0..100 {
            c.on_answer(false, FAST, true);
        }
        assert_eq!((c.current(), c.peak()), (64, 64), "never above max-concurrency");
        c.on_answer(true, FAST, true);
        assert_eq!((c.current(), c.peak()), (32, 64));
    }

    #[test]
    fn rises_through_jitter_and_never_collapses() {
        // 20 to 200 ms, as a real API answers: noise must neither lower the limit nor stop
        // it from rising while it is what holds sending back.
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let mut c = Concurrency::new(8, 48);
        let mut lowest = usize::MAX;
        for _ in 0..5000 {
            c.on_answer(false, Duration::from_millis(rng.random_range(20..=200)), true);
            lowest = lowest.min(c.current());
        }
        assert_eq!(c.current(), 48);
        assert!(lowest >= 8, "fell to {lowest}");
    }

    #[test]
    fn backs_off_while_the_server_slows_down() {
        let mut c = Concurrency::new(16, 16);
        for _ in 0..200 {
            c.on_answer(false, FAST, true);
        }
        let mut lowest = usize::MAX;
        for _ in 0..60 {
            c.on_answer(false, Duration::from_millis(400), true);
            lowest = lowest.min(c.current());
        }
        assert!(lowest <= 8, "{lowest}");
        // Once the slower latency is the usual one, the limit climbs back.
        for _ in 0..400 {
            c.on_answer(false, Duration::from_millis(400), true);
        }
        assert_eq!(c.current(), 16);
    }
}
