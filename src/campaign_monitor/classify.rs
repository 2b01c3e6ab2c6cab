//! One pure function that says what an answer (or its absence) means for the caller.

use std::time::Duration;

use bytes::Bytes;

use super::types::{ApiErrorBody, ImportPartialFailure, ImportResult};

/// The rate-limit headers the API sends on every answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Time until the window resets (`X-RateLimit-Reset` is in seconds, not an epoch).
    pub reset: Option<Duration>,
}

/// An HTTP answer, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub rate_limit: RateLimit,
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

/// Why no answer came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportErrorKind {
    /// Connect or request timeout: the request may or may not have landed.
    Timeout,
    /// Could not connect: the request did not land.
    Connect,
    /// The connection closed or reset without a full answer: it may have landed.
    Dropped,
    /// The request could not be built or sent at all.
    Other,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TransportError {
    pub kind: TransportErrorKind,
    pub message: String,
}

/// A permanent failure, with what the API said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HTTP {status}, code {code}: {message}")]
pub struct ApiFailure {
    pub status: u16,
    pub code: i64,
    pub message: String,
}

/// What an answer means.
#[derive(Debug, Clone, PartialEq)]
pub enum Class {
    /// 2xx.
    Success,
    /// 400 code 210 with `ResultData`: the failed rows are listed, the rest was imported.
    PartialFailure(ImportResult),
    /// Worth sending again after `wait` (when the API said how long).
    Retryable {
        wait: Option<Duration>,
        /// Whether the request may already have been applied (a lost answer).
        maybe_applied: bool,
        reason: String,
    },
    /// Sending again will not help.
    Permanent(ApiFailure),
}

/// Classifies an answer or a transport failure. Pure: no I/O, no clock.
pub fn classify(outcome: &Result<Response, TransportError>) -> Class {
    let response = match outcome {
        Ok(response) => response,
        Err(err) => {
            return match err.kind {
                TransportErrorKind::Other => Class::Permanent(ApiFailure {
                    status: 0,
                    code: 0,
                    message: err.message.clone(),
                }),
                kind => Class::Retryable {
                    wait: None,
                    maybe_applied: kind != TransportErrorKind::Connect,
                    reason: err.message.clone(),
                },
            };
        }
    };
    let status = response.status;
    if (200..300).contains(&status) {
        return Class::Success;
    }
    let error_body: Option<ApiErrorBody> = serde_json::from_slice(&response.body).ok();
    if status == 429 {
        let wait = response.retry_after.or(response.rate_limit.reset);
        return Class::Retryable {
            wait,
            maybe_applied: false,
            reason: "HTTP 429 rate limit exceeded".into(),
        };
    }
    if status == 408 || status >= 500 {
        let detail = error_body.map(|b| format!(": {}", b.message)).unwrap_or_default();
        return Class::Retryable {
            wait: response.retry_after,
            maybe_applied: status != 408,
            reason: format!("HTTP {status}{detail}"),
        };
    }
    if status == 400
        && let Ok(partial) = serde_json::from_slice::<ImportPartialFailure>(&response.body)
        && partial.code == 210
    {
        return Class::PartialFailure(partial.result_data);
    }
    Class::Permanent(match error_body {
        Some(body) => ApiFailure {
            status,
            code: body.code,
            message: body.message,
        },
        None => ApiFailure {
            status,
            code: 0,
            message: String::from_utf8_lossy(&response.body).chars().take(200).collect(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Result<Response, TransportError> {
        Ok(Response {
            status,
            rate_limit: RateLimit::default(),
            retry_after: None,
            body: Bytes::from(body.to_owned()),
        })
    }

    fn fixture(name: &str) -> String {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
        std::fs::read_to_string(format!("{dir}{name}")).unwrap()
    }

    fn transport(kind: TransportErrorKind) -> Result<Response, TransportError> {
        Err(TransportError {
            kind,
            message: format!("{kind:?}"),
        })
    }

    #[test]
    fn table_of_statuses() {
        let partial = fixture("import_subscribers_partial_success.json");
        let server = fixture("sample_server_error.json");
        let teapot = fixture("sample_client_error.json");
        // (outcome, expected: "success" | "partial" | "retry" | "retry-applied" | "permanent:CODE")
        let cases: Vec<(Result<Response, TransportError>, &str)> = vec![
            (answer(200, "{}"), "success"),
            (answer(201, &fixture("import_subscribers.json")), "success"),
            (answer(204, ""), "success"),
            (answer(400, &partial), "partial"),
            (answer(400, r#"{"Code":209,"Message":"Too many"}"#), "permanent:209"),
            (
                answer(400, r#"{"Code":101,"Message":"Invalid ListID"}"#),
                "permanent:101",
            ),
            (
                answer(
                    401,
                    r#"{"Code":50,"Message":"Must supply a valid HTTP Basic Authorization header"}"#,
                ),
                "permanent:50",
            ),
            (
                answer(401, &fixture("expired_oauth_token_api_error.json")),
                "permanent:121",
            ),
            (answer(404, ""), "permanent:0"),
            (answer(418, &teapot), "permanent:418"),
            (answer(408, ""), "retry"),
            (answer(429, r#"{"Code":429,"Message":"Rate limit exceeded"}"#), "retry"),
            (answer(500, &server), "retry-applied"),
            (answer(502, "<html>bad gateway</html>"), "retry-applied"),
            (answer(503, ""), "retry-applied"),
            (transport(TransportErrorKind::Timeout), "retry-applied"),
            (transport(TransportErrorKind::Dropped), "retry-applied"),
            (transport(TransportErrorKind::Connect), "retry"),
            (transport(TransportErrorKind::Other), "permanent:0"),
        ];
        for (outcome, expected) in cases {
            let got = match classify(&outcome) {
                Class::Success => "success".to_owned(),
                Class::PartialFailure(_) => "partial".to_owned(),
                Class::Retryable {
                    maybe_applied: false, ..
                } => "retry".to_owned(),
                Class::Retryable {
                    maybe_applied: true, ..
                } => "retry-applied".to_owned(),
                Class::Permanent(f) => format!("permanent:{}", f.code),
            };
            assert_eq!(got, expected, "{outcome:?}");
        }
    }

    #[test]
    fn rate_limit_waits_as_the_headers_say() {
        let mut response = Response {
            status: 429,
            rate_limit: RateLimit {
                limit: Some(10),
                remaining: Some(0),
                reset: Some(Duration::from_secs(7)),
            },
            retry_after: None,
            body: Bytes::new(),
        };
        let wait = |r: &Response| match classify(&Ok(r.clone())) {
            Class::Retryable { wait, .. } => wait,
            other => panic!("{other:?}"),
        };
        assert_eq!(wait(&response), Some(Duration::from_secs(7)));
        response.retry_after = Some(Duration::from_secs(3));
        assert_eq!(wait(&response), Some(Duration::from_secs(3)));
        response.rate_limit = RateLimit::default();
        response.retry_after = None;
        assert_eq!(wait(&response), None);
    }

    #[test]
    fn partial_failure_carries_the_rows() {
        let Class::PartialFailure(result) = classify(&answer(400, &fixture("import_subscribers_partial_success.json")))
        else {
            panic!("not partial");
        };
        assert_eq!(result.failure_details[0].email_address, "example+1@example");
        // A 400 without ResultData is a whole-batch failure.
        assert!(matches!(
            classify(&answer(400, r#"{"Code":210,"Message":"x"}"#)),
            Class::Permanent(ApiFailure { code: 210, .. })
        ));
    }
}
