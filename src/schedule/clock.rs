//! The scheduler's time: the system clock, or one a test moves by hand so that schedules
//! fire without waiting on the wall clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub enum Clock {
    System,
    Manual(watch::Receiver<DateTime<Utc>>),
}

/// The longest the system clock sleeps at once, so a jump of the wall clock (suspend, NTP)
/// delays a run by at most this.
const MAX_NAP: Duration = Duration::from_secs(30);

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(time) => *time.borrow(),
        }
    }

    /// Returns once `now() >= at`.
    pub async fn sleep_until(&self, at: DateTime<Utc>) {
        match self {
            Clock::System => loop {
                let left = at - Utc::now();
                match left.to_std() {
                    Ok(left) if !left.is_zero() => tokio::time::sleep(left.min(MAX_NAP)).await,
                    _ => return,
                }
            },
            Clock::Manual(time) => {
                let mut time = time.clone();
                if time.wait_for(|now| *now >= at).await.is_err() {
                    // The test dropped its clock: time stands still for good.
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock(watch::Sender<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(watch::Sender::new(start))
    }

    pub fn clock(&self) -> Clock {
        Clock::Manual(self.0.subscribe())
    }

    pub fn now(&self) -> DateTime<Utc> {
        *self.0.borrow()
    }

    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        self.0.send_modify(|now| *now += by);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_moved_past_their_time() {
        let manual = ManualClock::new(DateTime::UNIX_EPOCH);
        let clock = manual.clock();
        let at = DateTime::UNIX_EPOCH + chrono::Duration::seconds(60);
        let sleeper = tokio::spawn(async move { clock.sleep_until(at).await });
        manual.advance(Duration::from_secs(59));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        manual.advance(Duration::from_secs(1));
        sleeper.await.unwrap();
        assert_eq!(manual.now(), at);
    }
}
