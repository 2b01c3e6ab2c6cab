//! Sends one batch until it is accepted, refused for good, or out of retries, and takes one
//! member off the list (mirror): the shared retry loop (`crate::retry`), with the rate gate
//! around every request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::gate::RateGate;
use crate::campaign_monitor::types::{ImportFailure, ImportResult, SubscriberDetails};
use crate::campaign_monitor::{ApiFailure, Class, Client, ImportBatch, MemberCall, Response, TransportError, classify};
use crate::config::Removal;
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

impl Failure {
    /// What the caller is told once the retries are over, after `attempts` requests.
    fn into_api_failure(self, attempts: u64) -> ApiFailure {
        match self {
            Failure::Refused(failure) => failure,
            Failure::Busy { status, reason } => ApiFailure {
                status,
                code: if status == 429 { 429 } else { 0 },
                message: format!("gave up after {attempts} attempts; last: {reason}"),
            },
        }
    }
}

/// A removal that did not go through: "not in the list" means it is already done.
fn removal_failure(failure: Failure, tries: &Mutex<Tries>) -> RemovalOutcome {
    match failure {
        Failure::Refused(failure) if failure.code == NOT_IN_LIST => RemovalOutcome::Gone("not in the list".to_owned()),
        failure => {
            let attempts = tries.lock().unwrap_or_else(|p| p.into_inner()).requests;
            RemovalOutcome::Failed(failure.into_api_failure(attempts))
        }
    }
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
            Err(failure) => Delivery::Failed(failure.into_api_failure(requests)),
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

    /// One import attempt, and what its answer means.
    async fn attempt(&self, body: Bytes, tries: &Mutex<Tries>) -> Attempt<Delivery, Failure> {
        let request = self.client.import_body(&self.list_id, body);
        self.through_gate(tries, request).await.and_then(|answer| match answer {
            Answer::Ok(body) => read_accepted(body),
            Answer::Partial(result) => Ok(accepted(result)),
            Answer::Refused(failure) => Err(Failure::Refused(failure)),
        })
    }

    /// Takes the member keyed `key` off the list, unless it left on its own: its details
    /// first (only an active or unconfirmed member is removed), then the removal.
    pub async fn remove(&self, key: &str, how: Removal) -> Removed {
        let tries = Mutex::new(Tries::default());
        let mut calls = 1;
        let state = retry(&self.backoff, || self.member_call(key, MemberCall::Details, &tries)).await;
        let outcome = match state {
            Ok(body) => match serde_json::from_slice::<SubscriberDetails>(&body) {
                Ok(details) if matches!(details.state.as_str(), "Active" | "Unconfirmed") => {
                    let which = match how {
                        Removal::Delete => MemberCall::Delete,
                        Removal::Unsubscribe => MemberCall::Unsubscribe,
                    };
                    calls += 1;
                    match retry(&self.backoff, || self.member_call(key, which, &tries)).await {
                        Ok(_) => RemovalOutcome::Removed,
                        Err(failure) => removal_failure(failure, &tries),
                    }
                }
                Ok(details) => RemovalOutcome::Gone(details.state),
                Err(e) => RemovalOutcome::Failed(ApiFailure {
                    status: 200,
                    code: 0,
                    message: format!("the subscriber's details could not be read: {e}"),
                }),
            },
            Err(failure) => removal_failure(failure, &tries),
        };
        let tries = tries.into_inner().unwrap_or_else(|p| p.into_inner());
        Removed {
            outcome,
            requests: tries.requests,
            retries: tries.requests.saturating_sub(calls),
            rate_limited: tries.rate_limited,
            latency: tries.latency,
        }
    }

    async fn member_call(&self, key: &str, which: MemberCall, tries: &Mutex<Tries>) -> Attempt<Bytes, Failure> {
        let request = self.client.member_request(&self.list_id, key, which);
        self.through_gate(tries, request).await.and_then(|answer| match answer {
            Answer::Ok(body) => Ok(body),
            Answer::Partial(_) => Err(Failure::Refused(ApiFailure {
                status: 400,
                code: 210,
                message: "an import answer to a subscriber call".to_owned(),
            })),
            Answer::Refused(failure) => Err(Failure::Refused(failure)),
        })
    }

    /// One request through the gate: its answer when it is final, a retry when the API is
    /// busy (a 429 pauses everyone, not only this request).
    async fn through_gate(
        &self,
        tries: &Mutex<Tries>,
        request: impl std::future::Future<Output = Result<Response, TransportError>>,
    ) -> Attempt<Answer, Failure> {
        let tally = |change: &dyn Fn(&mut Tries)| change(&mut tries.lock().unwrap_or_else(|p| p.into_inner()));
        // A retry of a request whose answer was lost may apply it twice.
        tally(&|t| t.resent += u64::from(t.maybe_landed));
        self.gate.acquire().await;
        let started = tokio::time::Instant::now();
        let outcome = request.await;
        let took = started.elapsed();
        self.gate.observe(outcome.as_ref().ok().map(|r| &r.rate_limit));
        tally(&|t| {
            t.requests += 1;
            t.latency = took;
        });
        let status = outcome.as_ref().map_or(0, |r| r.status);
        match classify(&outcome) {
            Class::Success => Attempt::Done(Ok(Answer::Ok(outcome.map(|r| r.body).unwrap_or_default()))),
            Class::PartialFailure(result) => Attempt::Done(Ok(Answer::Partial(result))),
            Class::Permanent(failure) => Attempt::Done(Ok(Answer::Refused(failure))),
            Class::Retryable {
                wait,
                maybe_applied,
                reason,
            } => {
                tally(&|t| t.maybe_landed |= maybe_applied);
                if status == 429 {
                    tally(&|t| t.rate_limited += 1);
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

/// `Subscriber not in list or has already been removed.`
const NOT_IN_LIST: i64 = 203;

/// A final answer, before the caller reads it.
enum Answer {
    Ok(Bytes),
    Partial(ImportResult),
    Refused(ApiFailure),
}

/// How one removal ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemovalOutcome {
    Removed,
    /// The member had left on its own (its state), or was not on the list: not touched.
    Gone(String),
    /// The API refused, or stayed busy past the retries: the member stays in the state and
    /// is tried again next run.
    Failed(ApiFailure),
}

#[derive(Debug)]
pub struct Removed {
    pub outcome: RemovalOutcome,
    pub requests: u64,
    /// Requests past the first of each call (details, then removal).
    pub retries: u64,
    pub rate_limited: u64,
    pub latency: Duration,
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
