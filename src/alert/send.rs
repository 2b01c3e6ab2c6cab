//! POST the summary, retrying while the receiver is unreachable or busy.

use std::time::Duration;

use serde::Serialize;

use crate::config::{Connection, Pipeline, WebhookUrl};
use crate::error_text::chain;
use crate::retry::{Attempt, Backoff, retry};
use crate::state::{HistoryEntry, Report};

/// What the webhook receives: the run's history entry (status, counts, times, why, the
/// report's path) and where it sent to; nothing personal or secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// `cm-export.run.failed` or `cm-export.run.cancelled`.
    pub event: String,
    #[serde(flatten)]
    pub run: HistoryEntry,
    pub connection: String,
    pub display_name: String,
    pub list_id: String,
    /// Members whose batch never left because the run stopped.
    pub not_sent: u64,
    /// A line for chat tools that show `text`.
    pub text: String,
}

impl Summary {
    pub fn of(report: &Report) -> Self {
        let status = serde_json::to_value(report.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        Self {
            event: format!("cm-export.run.{status}"),
            run: HistoryEntry::of(report),
            connection: report.connection.clone(),
            display_name: report.display_name.clone(),
            list_id: report.list_id.clone(),
            not_sent: report.rejected.not_sent,
            text: format!(
                "cm-export: export `{}` run {} {status}: {} of {} matched rows sent{}",
                report.export,
                report.run_id,
                report.members_sent,
                report.rows_matched,
                report.error.as_deref().map(|e| format!("; {e}")).unwrap_or_default()
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("the alert webhook {url} refused the alert with HTTP {status}")]
    Refused { url: WebhookUrl, status: u16 },
    #[error("the alert webhook {url} could not be reached after {attempts} attempts: {reason}")]
    Unreachable {
        url: WebhookUrl,
        attempts: u32,
        reason: String,
    },
}

/// What to do after one attempt.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Done,
    Retry(String),
    GiveUp(u16),
}

/// Success is 2xx; a busy (429) or failing (5xx) receiver, or no answer, is worth another try;
/// any other answer will not change.
fn classify(outcome: &Result<u16, String>) -> Next {
    match outcome {
        Ok(status) if (200..300).contains(status) => Next::Done,
        Ok(status) if *status == 429 || *status >= 500 => Next::Retry(format!("HTTP {status}")),
        Ok(status) => Next::GiveUp(*status),
        Err(reason) => Next::Retry(reason.clone()),
    }
}

/// After a run: a failed or cancelled one alerts the pipeline's webhook, else its
/// connection's. The run's callers (the command line, the scheduler) call this, not the run.
/// A webhook that cannot be reached is logged; the run's outcome stands.
pub async fn after_run(pipeline: &Pipeline, connection: &Connection, report: &Report, backoff: &Backoff) {
    if !report.status.alerts() {
        return;
    }
    let Some(url) = pipeline.alert_webhook.as_ref().or(connection.alert_webhook.as_ref()) else {
        return;
    };
    match notify(url, &Summary::of(report), backoff).await {
        Ok(()) => tracing::info!(%url, "alert sent"),
        Err(error) => tracing::error!("{}", chain(&error)),
    }
}

/// How alerts retry: about two minutes of a receiver being away, then the alert is logged
/// as lost.
pub fn default_backoff() -> Backoff {
    Backoff {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(30),
        max_retries: 5,
        max_rate_limit_wait: Duration::from_secs(30),
    }
}

/// Posts `summary` to `url`: up to `backoff.max_retries` retries.
pub async fn notify(url: &WebhookUrl, summary: &Summary, backoff: &Backoff) -> Result<(), AlertError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("cm-export/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AlertError::Unreachable {
            url: url.clone(),
            attempts: 0,
            reason: e.to_string(),
        })?;
    let mut attempts = 0;
    let outcome = retry(backoff, || {
        attempts += 1;
        let sent = client.post(url.as_url().clone()).json(summary).send();
        async move {
            // Without the URL: it holds the hook's secret.
            let outcome = sent
                .await
                .map(|r| r.status().as_u16())
                .map_err(|e| chain(&e.without_url()));
            match classify(&outcome) {
                Next::Done => Attempt::Done(Ok(())),
                Next::GiveUp(status) => Attempt::Done(Err(Next::GiveUp(status))),
                Next::Retry(reason) => Attempt::Retry {
                    error: Next::Retry(reason),
                    wait: None,
                },
            }
        }
    })
    .await;
    match outcome {
        Ok(()) => Ok(()),
        Err(Next::GiveUp(status)) => Err(AlertError::Refused {
            url: url.clone(),
            status,
        }),
        Err(last) => Err(AlertError::Unreachable {
            url: url.clone(),
            attempts,
            reason: last.to_string(),
        }),
    }
}

impl std::fmt::Display for Next {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Next::Done => f.write_str("delivered"),
            Next::Retry(reason) => f.write_str(reason),
            Next::GiveUp(status) => write!(f, "HTTP {status}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_only_what_may_change() {
        assert_eq!(classify(&Ok(204)), Next::Done);
        assert_eq!(classify(&Ok(503)), Next::Retry("HTTP 503".into()));
        assert_eq!(classify(&Ok(429)), Next::Retry("HTTP 429".into()));
        assert_eq!(classify(&Ok(404)), Next::GiveUp(404));
        assert_eq!(classify(&Err("timed out".into())), Next::Retry("timed out".into()));
    }
}
