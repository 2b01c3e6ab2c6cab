//! Sends one batch until it is accepted, refused for good, or out of retries: the shared
//! retry loop (`crate::retry`), with the rate gate around every request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::gate::RateGate;
use crate::campaign_monitor::types::{ImportFailure, ImportResult};
use crate::campaign_monitor::{ApiFailure, Class, Client, ImportBatch, classify};
use crate::retry::{Attempt, Backoff, retry};

/// How a batch ended.
#[derive(Debug)]
pub enum Delivery {
    /// Imported; `failures` are rows the API refused (code 210), the rest landed.
    Accepted {
        new: u64,
        existing: u64,
        failures: Vec<ImportFailure>,
    },
    /// Nothing more can be done for this batch; the run must stop.
    Failed(ApiFailure),
}

#[derive(Debug)]
pub struct Sent {
    pub batch: ImportBatch,
    pub delivery: Delivery,
    pub requests: u64,
    pub retries: u64,
    /// Requests sent again after an answer was lost (the batch may have landed before).
    pub resent_after_unknown: u64,
    pub rate_limited: u64,
    /// Whether an answer was lost after the request may have been applied.
    pub maybe_landed: bool,
    /// How long the last request took.
    pub latency: Duration,
}

pub struct Sender {
    client: Arc<Client>,
    list_id: String,
    resubscribe: bool,
    backoff: Backoff,
    gate: RateGate,
}

/// What the attempts of one batch add up to.
#[derive(Default)]
struct Tries {
    requests: u64,
    rate_limited: u64,
    resent: u64,
    /// Whether an earlier attempt's answer was lost after it may have been applied.
    maybe_landed: bool,
    latency: Duration,
}

/// Why an attempt did not deliver, as the retry loop carries it.
enum Failure {
    /// For good.
    Refused(ApiFailure),
    /// For now: worth another attempt while retries last.
    Busy { status: u16, reason: String },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(failure) => failure.fmt(f),
            Failure::Busy { reason, .. } => f.write_str(reason),
        }
    }
}

impl Sender {
    pub fn new(client: Arc<Client>, list_id: String, resubscribe: bool, backoff: Backoff) -> Self {
        Self {
            client,
            list_id,
            resubscribe,
            backoff,
            gate: RateGate::default(),
        }
    }

    pub fn list_id(&self) -> &str {
        &self.list_id
    }

    pub async fn send(&self, batch: ImportBatch) -> Sent {
        let body = Bytes::from(batch.to_body(self.resubscribe));
        // One attempt at a time: the lock is only ever taken between awaits.
        let tries = Mutex::new(Tries::default());
        let outcome = retry(&self.backoff, || self.attempt(body.clone(), &tries)).await;
        let tries = tries.into_inner().unwrap_or_else(|p| p.into_inner());
        let requests = tries.requests;
        let delivery = match outcome {
            Ok(delivery) => delivery,
            Err(Failure::Refused(failure)) => Delivery::Failed(failure),
            Err(Failure::Busy { status, reason }) => Delivery::Failed(ApiFailure {
                status,
                code: if status == 429 { 429 } else { 0 },
                message: format!("gave up after {requests} attempts; last: {reason}"),
            }),
        };
        Sent {
            batch,
            delivery,
            requests,
            retries: requests.saturating_sub(1),
            resent_after_unknown: tries.resent,
            rate_limited: tries.rate_limited,
            maybe_landed: tries.maybe_landed,
            latency: tries.latency,
        }
    }

    /// One request through the gate, and what its answer means.
    async fn attempt(&self, body: Bytes, tries: &Mutex<Tries>) -> Attempt<Delivery, Failure> {
        let tally = |change: &dyn Fn(&mut Tries)| change(&mut tries.lock().unwrap_or_else(|p| p.into_inner()));
        // A retry of a request whose answer was lost may import the batch twice.
        tally(&|t| t.resent += u64::from(t.maybe_landed));
        self.gate.acquire().await;
        let started = tokio::time::Instant::now();
        let outcome = self.client.import_body(&self.list_id, body).await;
        let took = started.elapsed();
        self.gate.observe(outcome.as_ref().ok().map(|r| &r.rate_limit));
        tally(&|t| {
            t.requests += 1;
            t.latency = took;
        });
        let status = outcome.as_ref().map_or(0, |r| r.status);
        match classify(&outcome) {
            Class::Success => Attempt::Done(read_accepted(outcome.map(|r| r.body).unwrap_or_default())),
            Class::PartialFailure(result) => Attempt::Done(Ok(accepted(result))),
            Class::Permanent(failure) => Attempt::Done(Err(Failure::Refused(failure))),
            Class::Retryable {
                wait,
                maybe_applied,
                reason,
            } => {
                tally(&|t| t.maybe_landed |= maybe_applied);
                if status == 429 {
                    tally(&|t| t.rate_limited += 1);
                    // Everyone waits for the window, not only this batch.
                    let pause = wait.map_or(self.backoff.ceiling(1), |w| w.min(self.backoff.max_rate_limit_wait));
                    self.gate.pause(pause);
                }
                Attempt::Retry {
                    error: Failure::Busy { status, reason },
                    wait,
                }
            }
        }
    }
}

fn read_accepted(body: Bytes) -> Result<Delivery, Failure> {
    serde_json::from_slice::<ImportResult>(&body)
        .map(accepted)
        .map_err(|e| {
            Failure::Refused(ApiFailure {
                status: 201,
                code: 0,
                message: format!("the import answer could not be read: {e}"),
            })
        })
}

fn accepted(result: ImportResult) -> Delivery {
    Delivery::Accepted {
        new: result.total_new_subscribers,
        existing: result.total_existing_subscribers,
        failures: result.failure_details,
    }
}
