//! Capped exponential backoff with full jitter and a bounded number of attempts, and the one
//! retry loop every caller shares (API calls, alert webhooks); imports add the rate gate on top.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The longest a rate-limited request waits for the window to reset.
    pub max_rate_limit_wait: Duration,
}

impl Default for Backoff {
    /// About five minutes of retrying before a batch gives up: enough to ride out an outage.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(250),
            cap: Duration::from_secs(30),
            max_retries: 20,
            max_rate_limit_wait: Duration::from_secs(120),
        }
    }
}

impl Backoff {
    /// The ceiling of the wait before retry number `retry` (1-based): `base * 2^(retry-1)`,
    /// capped. Saturating, so no `retry` can overflow.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Full jitter: uniform in `[0, ceiling]`, with `unit` drawn from `[0, 1)`.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        self.ceiling(retry).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// The wait the API asked for (a 429's reset, a `Retry-After`), bounded, with a little
    /// jitter so waiting workers do not all come back in the same instant.
    pub fn asked(&self, wait: Duration, unit: f64) -> Duration {
        wait.min(self.max_rate_limit_wait) + Duration::from_millis(50).mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// What one attempt came to.
pub enum Attempt<T, E> {
    /// Success, or a failure that another attempt cannot mend.
    Done(Result<T, E>),
    /// Worth another attempt; `wait` is what the other side asked for, if it said.
    Retry { error: E, wait: Option<Duration> },
}

impl<T, E> Attempt<T, E> {
    /// Reads a final answer further; a retry stays a retry.
    pub fn and_then<U>(self, read: impl FnOnce(T) -> Result<U, E>) -> Attempt<U, E> {
        match self {
            Attempt::Done(done) => Attempt::Done(done.and_then(read)),
            Attempt::Retry { error, wait } => Attempt::Retry { error, wait },
        }
    }
}

/// Calls `attempt` until it is done or `backoff.max_retries` retries are spent; between
/// attempts waits with full jitter (or what the other side asked, bounded). The last
/// retryable error is returned when the retries run out.
pub async fn retry<T, E: std::fmt::Display, F, Fut>(backoff: &Backoff, mut attempt: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Attempt<T, E>>,
{
    let mut retries = 0;
    loop {
        match attempt().await {
            Attempt::Done(result) => return result,
            Attempt::Retry { error, .. } if retries >= backoff.max_retries => return Err(error),
            Attempt::Retry { error, wait } => {
                retries += 1;
                let unit = rand::random();
                let delay = wait.map_or_else(|| backoff.delay(retries, unit), |w| backoff.asked(w, unit));
                tracing::debug!(
                    retry = retries,
                    delay_ms = delay.as_millis() as u64,
                    "retrying: {error}"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_never_overflows() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(1), Duration::from_millis(250));
        assert_eq!(b.ceiling(2), Duration::from_millis(500));
        assert_eq!(b.ceiling(5), Duration::from_secs(4));
        assert_eq!(b.ceiling(8), Duration::from_secs(30));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(30));
        assert_eq!(b.delay(3, 0.0), Duration::ZERO);
        assert_eq!(b.delay(3, 0.5), Duration::from_millis(500));
        assert!(b.delay(40, 0.999_999) <= Duration::from_secs(30));
        assert_eq!(b.asked(Duration::from_secs(3600), 0.0), Duration::from_secs(120));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_done_or_out_of_retries() {
        let backoff = Backoff {
            max_retries: 3,
            ..Backoff::default()
        };
        let mut calls = 0;
        let done: Result<u32, String> = retry(&backoff, || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Attempt::Retry {
                        error: format!("busy {n}"),
                        wait: None,
                    }
                } else {
                    Attempt::Done(Ok(n))
                }
            }
        })
        .await;
        assert_eq!(done, Ok(3));
        let mut calls = 0;
        let spent: Result<(), String> = retry(&backoff, || {
            calls += 1;
            let n = calls;
            async move {
                Attempt::Retry {
                    error: format!("busy {n}"),
                    wait: Some(Duration::from_secs(1)),
                }
            }
        })
        .await;
        assert_eq!(spent, Err("busy 4".to_owned()));
    }

    #[test]
    fn default_rides_out_minutes_of_outage() {
        let b = Backoff::default();
        let worst: Duration = (1..=b.max_retries).map(|r| b.ceiling(r)).sum();
        assert!(worst >= Duration::from_secs(300), "{worst:?}");
    }
}
