//! What an emulator instance accepts and which faults it injects.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimitConfig {
    pub requests: u64,
    pub window: Duration,
}

#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    pub api_keys: Vec<String>,
    /// `(list id, title)`.
    pub lists: Vec<(String, String)>,
    /// `(client id, client secret)` for the OAuth token endpoint.
    pub oauth_clients: Vec<(String, String)>,
    /// `None`: no limit, but the `X-RateLimit-*` headers are still sent.
    pub rate_limit: Option<RateLimitConfig>,
    /// Share of API requests answered 500 without being applied.
    pub fail_rate: f64,
    /// Share of API requests whose connection is closed without an answer; half of them
    /// after the request was applied.
    pub drop_rate: f64,
    /// Answer delay, drawn uniformly from this range.
    pub latency: Option<(Duration, Duration)>,
    pub seed: u64,
    /// Lifetime of access tokens issued by `/oauth/token`.
    pub token_ttl: Duration,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            api_keys: Vec::new(),
            lists: Vec::new(),
            oauth_clients: Vec::new(),
            rate_limit: None,
            fail_rate: 0.0,
            drop_rate: 0.0,
            latency: None,
            seed: 0,
            token_ttl: Duration::from_secs(1_209_600),
        }
    }
}

/// The headers' numbers when no limit is set: the real API always sends them.
pub(super) const UNLIMITED: RateLimitConfig = RateLimitConfig {
    requests: 1_000_000,
    window: Duration::from_secs(3600),
};
