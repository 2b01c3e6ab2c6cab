//! Keeps the run under the API's rate limit: every request asks the gate first, and every
//! answer's `X-RateLimit-*` headers tell it how much room is left.
//!
//! The gate remembers the window's size (`X-RateLimit-Limit`) across windows: when one
//! resets, the next starts with that many requests (less those still in flight), not with
//! "unknown", which let every worker through at once into a wall of 429s. Until the first
//! answer says what the limit is, one request goes at a time.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::campaign_monitor::RateLimit;

#[derive(Debug, Default)]
struct Room {
    /// Requests per window, as the API last said.
    limit: Option<u64>,
    /// Requests the window still has for requests not yet in flight; `None`: unknown.
    remaining: Option<u64>,
    reset_at: Option<Instant>,
    /// Set by a 429: nobody sends before this.
    paused_until: Option<Instant>,
    in_flight: u64,
    /// Whether any answer came back: one without headers means the API does not limit.
    answered: bool,
}

/// What `acquire` must do now.
enum Wait {
    Until(Instant),
    ForAnAnswer,
}

#[derive(Debug, Default)]
pub struct RateGate {
    room: Mutex<Room>,
    answers: Notify,
}

impl RateGate {
    fn room(&self) -> std::sync::MutexGuard<'_, Room> {
        self.room.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a request may be sent, and counts it as in flight.
    pub async fn acquire(&self) {
        loop {
            // Registered before the room is read, so an answer in between is not missed.
            let answer = self.answers.notified();
            tokio::pin!(answer);
            answer.as_mut().enable();
            match self.try_acquire(Instant::now()) {
                None => return,
                Some(Wait::Until(until)) => tokio::time::sleep_until(until).await,
                Some(Wait::ForAnAnswer) => answer.await,
            }
        }
    }

    fn try_acquire(&self, now: Instant) -> Option<Wait> {
        let mut room = self.room();
        if let Some(until) = room.paused_until.filter(|u| *u > now) {
            return Some(Wait::Until(until));
        }
        if room.reset_at.is_some_and(|r| r <= now) {
            // A new window, as large as the last; its end is known at the next answer.
            room.remaining = room.limit.map(|l| l.saturating_sub(room.in_flight));
            room.reset_at = None;
        }
        let unknown = room.remaining.is_none() && room.limit.is_none() && !room.answered;
        match room.remaining {
            Some(0) => match room.reset_at {
                Some(reset) => return Some(Wait::Until(reset)),
                // Nobody knows when this window ends; an answer will say.
                None if room.in_flight > 0 => return Some(Wait::ForAnAnswer),
                // Nothing in flight to tell: one request finds out.
                None => {}
            },
            // Before the first answer: one request at a time, to learn the limit.
            None if unknown && room.in_flight > 0 => return Some(Wait::ForAnAnswer),
            _ => {}
        }
        room.remaining = room.remaining.map(|r| r.saturating_sub(1));
        room.in_flight += 1;
        None
    }

    /// Reads an answer's headers; call once per `acquire`, answer or not.
    pub fn observe(&self, limit: Option<&RateLimit>) {
        let now = Instant::now();
        {
            let mut room = self.room();
            room.in_flight = room.in_flight.saturating_sub(1);
            if let Some(limit) = limit {
                room.answered = true;
                if let Some(size) = limit.limit {
                    room.limit = Some(size);
                }
                if let (Some(remaining), Some(reset)) = (limit.remaining, limit.reset) {
                    let fresh = remaining.saturating_sub(room.in_flight);
                    // Answers overtake each other: within a window the room only shrinks, so
                    // an older answer's larger number must not give back room already used.
                    let same_window = room.reset_at.is_some_and(|r| r > now);
                    room.remaining = Some(match room.remaining {
                        Some(known) if same_window => known.min(fresh),
                        _ => fresh,
                    });
                    // The header is in whole seconds, rounded up: each answer bounds the
                    // window's end from above, and the earliest bound of a window is the tightest.
                    let bound = now + reset;
                    room.reset_at = Some(match room.reset_at {
                        Some(known) if known > now => known.min(bound),
                        _ => bound,
                    });
                }
            }
        }
        self.answers.notify_waiters();
    }

    /// After a 429: everyone waits `wait`.
    pub fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut room = self.room();
        room.paused_until = Some(room.paused_until.map_or(until, |u| u.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn limit(remaining: u64, reset_secs: u64) -> RateLimit {
        RateLimit {
            limit: Some(10),
            remaining: Some(remaining),
            reset: Some(Duration::from_secs(reset_secs)),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_the_window_when_no_room_is_left() {
        let gate = RateGate::default();
        let start = Instant::now();
        gate.acquire().await;
        gate.observe(Some(&limit(0, 5)));
        gate.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        gate.observe(Some(&limit(9, 10)));
        gate.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn counts_requests_in_flight_against_the_room() {
        let gate = RateGate::default();
        let start = Instant::now();
        gate.acquire().await;
        gate.observe(Some(&limit(5, 3)));
        gate.acquire().await;
        gate.acquire().await;
        // The server saw the first two: one left, but the third is still in flight.
        gate.observe(Some(&limit(1, 3)));
        gate.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn the_earliest_reset_bound_of_a_window_wins() {
        let gate = RateGate::default();
        let start = Instant::now();
        gate.acquire().await;
        gate.observe(Some(&limit(5, 1)));
        tokio::time::advance(Duration::from_millis(600)).await;
        gate.acquire().await;
        // Rounded up again: "1 second" from now, but the window ends 400 ms from now.
        gate.observe(Some(&limit(0, 1)));
        gate.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_older_answer_does_not_give_back_room() {
        let gate = RateGate::default();
        gate.acquire().await;
        gate.observe(Some(&limit(9, 5)));
        for _ in 0..3 {
            gate.acquire().await;
        }
        // The newest answer says 4 left; an older one, overtaken on the way, says 6.
        gate.observe(Some(&limit(4, 5)));
        gate.observe(Some(&limit(6, 5)));
        // The newest said 4 with 2 still in flight: 2 at most, not the older answer's 5.
        assert_eq!(gate.room().remaining, Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_everyone() {
        let gate = RateGate::default();
        let start = Instant::now();
        gate.pause(Duration::from_secs(2));
        gate.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    /// A server that allows `per_window` requests a second, answering after `latency`, with
    /// the headers the real API sends; it counts what it refused.
    struct Server {
        per_window: u64,
        window_start: Mutex<(Instant, u64)>,
        refused: Mutex<u64>,
    }

    impl Server {
        fn answer(&self) -> RateLimit {
            let now = Instant::now();
            let mut window = self.window_start.lock().unwrap();
            if now.duration_since(window.0) >= Duration::from_secs(1) {
                *window = (now, 0);
            }
            window.1 += 1;
            if window.1 > self.per_window {
                *self.refused.lock().unwrap() += 1;
            }
            let reset = Duration::from_secs(1).saturating_sub(now.duration_since(window.0));
            RateLimit {
                limit: Some(self.per_window),
                remaining: Some(self.per_window.saturating_sub(window.1)),
                reset: Some(Duration::from_millis(reset.as_millis().div_ceil(1000) as u64 * 1000)),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn many_workers_stay_under_a_small_limit_across_windows() {
        // 64 workers against 5 requests a second: the gate must carry the limit from one
        // window to the next instead of letting all 64 through when a window resets.
        let gate = Arc::new(RateGate::default());
        let server = Arc::new(Server {
            per_window: 5,
            window_start: Mutex::new((Instant::now(), 0)),
            refused: Mutex::new(0),
        });
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let (gate, server) = (gate.clone(), server.clone());
            workers.spawn(async move {
                for _ in 0..3 {
                    gate.acquire().await;
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    let headers = server.answer();
                    gate.observe(Some(&headers));
                }
            });
        }
        while workers.join_next().await.is_some() {}
        let refused = *server.refused.lock().unwrap();
        assert!(refused <= 5, "{refused} of 192 requests were over the limit");
    }
}
