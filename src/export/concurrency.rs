//! How many imports may be in flight: halved on a 429, lowered when answers slow down,
//! raised by one for each answer that comes back quickly, never above the configured
//! `concurrency`.

use std::time::Duration;

/// Weight of the newest answer in the smoothed latency.
const SMOOTHING: f64 = 0.2;
/// Slower than this many times the best smoothed latency seen counts as rising latency.
const SLOW: f64 = 2.0;

#[derive(Debug, Clone)]
pub struct Concurrency {
    max: usize,
    current: usize,
    smoothed: Option<f64>,
    best: Option<f64>,
}

impl Concurrency {
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            current: max.max(1),
            smoothed: None,
            best: None,
        }
    }

    pub fn current(&self) -> usize {
        self.current
    }

    /// Takes one batch's outcome: whether it met a 429, and how long its last request took.
    pub fn on_answer(&mut self, rate_limited: bool, latency: Duration) {
        if rate_limited {
            self.current = (self.current / 2).max(1);
            return;
        }
        let secs = latency.as_secs_f64();
        let smoothed = self.smoothed.map_or(secs, |s| s + SMOOTHING * (secs - s));
        self.smoothed = Some(smoothed);
        let best = self.best.map_or(smoothed, |b| b.min(smoothed));
        self.best = Some(best);
        if smoothed > SLOW * best {
            self.current = self.current.saturating_sub(1).max(1);
        } else if self.current < self.max {
            self.current += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Duration = Duration::from_millis(10);

    #[test]
    fn halves_on_429_and_climbs_back() {
        let mut c = Concurrency::new(8);
        c.on_answer(false, FAST);
        assert_eq!(c.current(), 8);
        c.on_answer(true, FAST);
        assert_eq!(c.current(), 4);
        c.on_answer(true, FAST);
        c.on_answer(true, FAST);
        c.on_answer(true, FAST);
        assert_eq!(c.current(), 1);
        for _ in 0..20 {
            c.on_answer(false, FAST);
        }
        assert_eq!(c.current(), 8);
    }

    #[test]
    fn backs_off_while_latency_rises() {
        let mut c = Concurrency::new(8);
        for _ in 0..5 {
            c.on_answer(false, FAST);
        }
        for _ in 0..20 {
            c.on_answer(false, Duration::from_millis(100));
        }
        // Every answer slower than twice the best lowers the limit by one, down to one.
        assert_eq!(c.current(), 1);
    }
}
