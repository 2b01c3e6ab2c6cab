//! Sends one batch until it is accepted, refused for good, or out of retries.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::gate::RateGate;
use crate::campaign_monitor::types::{ImportFailure, ImportResult};
use crate::campaign_monitor::{ApiFailure, Class, Client, ImportBatch, classify};
use crate::retry::Backoff;

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
    pub resent_after_unknown: u64,
    pub rate_limited: u64,
    /// How long the last request took.
    pub latency: std::time::Duration,
}

pub struct Sender {
    client: Arc<Client>,
    list_id: String,
    resubscribe: bool,
    backoff: Backoff,
    gate: RateGate,
    rng: Mutex<SmallRng>,
}

impl Sender {
    pub fn new(client: Arc<Client>, list_id: String, resubscribe: bool, backoff: Backoff) -> Self {
        Self {
            client,
            list_id,
            resubscribe,
            backoff,
            gate: RateGate::default(),
            rng: Mutex::new(SmallRng::from_os_rng()),
        }
    }

    pub fn list_id(&self) -> &str {
        &self.list_id
    }

    fn unit(&self) -> f64 {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).random()
    }

    pub async fn send(&self, batch: ImportBatch) -> Sent {
        let body = Bytes::from(batch.to_body(self.resubscribe));
        let mut sent = Sent {
            batch,
            delivery: Delivery::Failed(ApiFailure {
                status: 0,
                code: 0,
                message: String::new(),
            }),
            requests: 0,
            retries: 0,
            resent_after_unknown: 0,
            rate_limited: 0,
            latency: std::time::Duration::ZERO,
        };
        let mut maybe_landed = false;
        loop {
            self.gate.acquire().await;
            let started = tokio::time::Instant::now();
            let outcome = self.client.import_body(&self.list_id, body.clone()).await;
            sent.latency = started.elapsed();
            self.gate.observe(outcome.as_ref().ok().map(|r| &r.rate_limit));
            sent.requests += 1;
            let class = classify(&outcome);
            let (wait, reason) = match class {
                Class::Success => {
                    let body = outcome.map(|r| r.body).unwrap_or_default();
                    sent.delivery = match serde_json::from_slice::<ImportResult>(&body) {
                        Ok(result) => accepted(result),
                        Err(e) => Delivery::Failed(ApiFailure {
                            status: 201,
                            code: 0,
                            message: format!("the import answer could not be read: {e}"),
                        }),
                    };
                    return sent;
                }
                Class::PartialFailure(result) => {
                    sent.delivery = accepted(result);
                    return sent;
                }
                Class::Permanent(failure) => {
                    sent.delivery = Delivery::Failed(failure);
                    return sent;
                }
                Class::Retryable {
                    wait,
                    maybe_applied,
                    reason,
                } => {
                    maybe_landed |= maybe_applied;
                    (wait, reason)
                }
            };
            let status = outcome.as_ref().map(|r| r.status).unwrap_or(0);
            if sent.retries >= u64::from(self.backoff.max_retries) {
                sent.delivery = Delivery::Failed(ApiFailure {
                    status,
                    code: if status == 429 { 429 } else { 0 },
                    message: format!("gave up after {} attempts; last: {reason}", sent.requests),
                });
                return sent;
            }
            sent.retries += 1;
            if maybe_landed {
                sent.resent_after_unknown += 1;
            }
            let delay = if status == 429 {
                sent.rate_limited += 1;
                // Without headers, back off as for any other retryable answer.
                let delay = wait.map_or_else(
                    || self.backoff.delay(sent.retries as u32, self.unit()),
                    |w| self.backoff.asked(w, self.unit()),
                );
                self.gate.pause(delay);
                delay
            } else {
                match wait {
                    Some(w) => self.backoff.asked(w, self.unit()),
                    None => self.backoff.delay(sent.retries as u32, self.unit()),
                }
            };
            tracing::debug!(
                retry = sent.retries,
                delay_ms = delay.as_millis() as u64,
                "retrying an import: {reason}"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

fn accepted(result: ImportResult) -> Delivery {
    Delivery::Accepted {
        new: result.total_new_subscribers,
        existing: result.total_existing_subscribers,
        failures: result.failure_details,
    }
}
