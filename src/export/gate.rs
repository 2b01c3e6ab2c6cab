//! Keeps the run under the API's rate limit: every request asks the gate first, and every
//! answer's `X-RateLimit-*` headers tell it how much room is left.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::campaign_monitor::RateLimit;

#[derive(Debug, Default)]
struct Room {
    /// Requests the window still has for requests not yet in flight; `None`: unknown.
    remaining: Option<u64>,
    reset_at: Option<Instant>,
    /// Set by a 429: nobody sends before this.
    paused_until: Option<Instant>,
    in_flight: u64,
}

#[derive(Debug, Default)]
pub struct RateGate {
    room: Mutex<Room>,
}

impl RateGate {
    fn room(&self) -> std::sync::MutexGuard<'_, Room> {
        self.room.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a request may be sent, and counts it as in flight.
    pub async fn acquire(&self) {
        loop {
            let now = Instant::now();
            let wait_until = {
                let mut room = self.room();
                match (room.paused_until, room.remaining, room.reset_at) {
                    (Some(until), _, _) if until > now => Some(until),
                    (_, Some(0), Some(reset)) if reset > now => Some(reset),
                    _ => {
                        if room.reset_at.is_some_and(|r| r <= now) {
                            // A new window: its room is unknown until the next answer.
                            room.remaining = None;
                            room.reset_at = None;
                        }
                        room.remaining = room.remaining.map(|r| r.saturating_sub(1));
                        room.in_flight += 1;
                        None
                    }
                }
            };
            match wait_until {
                Some(until) => tokio::time::sleep_until(until).await,
                None => return,
            }
        }
    }

    /// Reads an answer's headers; call once per `acquire`, answer or not.
    pub fn observe(&self, limit: Option<&RateLimit>) {
        let now = Instant::now();
        let mut room = self.room();
        room.in_flight = room.in_flight.saturating_sub(1);
        if let Some(RateLimit {
            remaining: Some(remaining),
            reset: Some(reset),
            ..
        }) = limit
        {
            room.remaining = Some(remaining.saturating_sub(room.in_flight));
            // The header is in whole seconds, rounded up: each answer bounds the window's end
            // from above, and the earliest bound of the window is the tightest.
            let bound = now + *reset;
            room.reset_at = Some(match room.reset_at {
                Some(known) if known > now => known.min(bound),
                _ => bound,
            });
        }
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
        gate.acquire().await;
        // The server saw the first: one left, but the second is still in flight.
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
    async fn a_pause_holds_everyone() {
        let gate = RateGate::default();
        let start = Instant::now();
        gate.pause(Duration::from_secs(2));
        gate.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
