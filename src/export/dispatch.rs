//! The dispatcher: takes batches from the batcher, journals each before it leaves, keeps up
//! to the concurrency limit of imports in flight, and hands every answer to the journal and
//! the tally. A stop (signal, cancel, a batch refused for good, a journal that cannot be
//! written) ends the taking of batches; those in flight are still answered and counted.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;

use super::concurrency::Concurrency;
use super::error::ExportError;
use super::options::StopReason;
use super::progress::Counters;
use super::send::{Delivery, Sender, Sent};
use super::tally::{Tally, failure_keys};
use crate::campaign_monitor::ImportBatch;
use crate::members::fingerprint;
use crate::state::{AcceptedBatch, Journal, StateError};

/// How the sending ended.
pub enum Dispatched {
    /// Every batch the batcher made was answered.
    Finished,
    /// Asked to stop: the batches not yet sent are `not_sent`.
    Stopped(StopReason),
    Failed(ExportError),
}

/// Import bodies in flight at once, at most (and one more batch): what bounds the memory
/// of sending when the limit rises, since a batch can weigh 2 MiB of JSON.
const IN_FLIGHT_BYTES: usize = 32 * 1024 * 1024;

pub struct Dispatcher<'a> {
    pub sender: Arc<Sender>,
    pub limit: &'a mut Concurrency,
    pub journal: &'a mut Journal,
    pub tally: &'a mut Tally,
    pub counters: Arc<Counters>,
    /// The number of the next batch (after those of earlier attempts).
    pub next_batch: u64,
    /// Whether accepted batches are journaled with their members' value fingerprints (the
    /// export keeps a synced state).
    pub fingerprints: bool,
}

impl Dispatcher<'_> {
    pub async fn run(
        mut self,
        mut batches: mpsc::Receiver<ImportBatch>,
        stop: impl Future<Output = StopReason>,
    ) -> Dispatched {
        tokio::pin!(stop);
        let mut in_flight = FuturesUnordered::new();
        let mut in_flight_bytes = 0;
        let mut open = true;
        let mut ended: Option<Dispatched> = None;
        while open || !in_flight.is_empty() {
            let can_take =
                open && ended.is_none() && in_flight.len() < self.limit.current() && in_flight_bytes < IN_FLIGHT_BYTES;
            tokio::select! {
                Some((number, sent)) = in_flight.next(), if !in_flight.is_empty() => {
                    in_flight_bytes -= self.adapt(&sent, in_flight.len() + 1, !batches.is_empty());
                    if let Err(error) = self.answered(number, sent) {
                        fail(&mut ended, error);
                    }
                }
                reason = &mut stop, if ended.is_none() => {
                    tracing::warn!("{reason}: no new batches; waiting for those in flight");
                    ended = Some(Dispatched::Stopped(reason));
                }
                next = batches.recv(), if can_take => match next {
                    Some(batch) => {
                        self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                        let number = self.next_batch;
                        self.next_batch += 1;
                        if let Err(error) = self.journal.sending(number, batch.len() as u64) {
                            self.tally.not_sent(batch.subscribers());
                            fail(&mut ended, StateError::from(error).into());
                            continue;
                        }
                        in_flight_bytes += batch.json_bytes();
                        let sender = self.sender.clone();
                        in_flight.push(async move { (number, sender.send(batch).await) });
                    }
                    None => open = false,
                },
            }
            if ended.is_some() && open {
                batches.close();
                while let Some(batch) = batches.recv().await {
                    self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                    self.tally.not_sent(batch.subscribers());
                }
                open = false;
            }
        }
        ended.unwrap_or(Dispatched::Finished)
    }

    /// Feeds one answer to the limit, given how many were in flight with it and whether
    /// batches waited; returns the bytes it no longer holds in flight.
    fn adapt(&mut self, sent: &Sent, in_flight: usize, waiting: bool) -> usize {
        let held_back = in_flight >= self.limit.current() && waiting;
        self.limit.on_answer(sent.rate_limited > 0, sent.latency, held_back);
        sent.batch.json_bytes()
    }

    /// Counts one answer; journals it if accepted. `Err` when the run must stop.
    fn answered(&mut self, number: u64, sent: Sent) -> Result<(), ExportError> {
        self.tally.requests(&sent);
        match sent.delivery {
            Delivery::Accepted {
                new,
                existing,
                failures,
            } => {
                let members = sent.batch.subscribers();
                let fingerprints: Vec<u64> = match self.fingerprints {
                    true => members.iter().map(fingerprint).collect(),
                    false => Vec::new(),
                };
                let keys = failure_keys(members, &failures);
                let journaled = self.journal.accepted(&AcceptedBatch {
                    batch: number,
                    new,
                    existing,
                    emails: members.iter().map(|m| m.email_address.as_str()).collect(),
                    failures: &failures,
                    fingerprints: &fingerprints,
                    failure_keys: &keys,
                });
                self.tally.accepted(new, existing, &failures, &keys);
                self.counters.sent.fetch_add(new + existing, Ordering::Relaxed);
                journaled.map_err(|e| StateError::from(e).into())
            }
            Delivery::Failed(failure) => {
                self.tally
                    .refused(sent.batch.subscribers(), failure.code, &failure.message);
                // Unless an answer was lost on the way, nothing of it landed: a resume need
                // not count it as possibly sent twice.
                if !sent.maybe_landed {
                    self.journal.refused(number).map_err(StateError::from)?;
                }
                Err(ExportError::Import {
                    list_id: self.sender.list_id().to_owned(),
                    source: failure,
                })
            }
        }
    }
}

/// Records why the run must stop: the first failure wins, but a journal that cannot be
/// written outranks every other reason (what it could not record would be sent again).
fn fail(ended: &mut Option<Dispatched>, error: ExportError) {
    let replace = match ended {
        Some(Dispatched::Failed(first)) => {
            !matches!(first, ExportError::State(_)) && matches!(error, ExportError::State(_))
        }
        _ => true,
    };
    if replace {
        *ended = Some(Dispatched::Failed(error));
    }
}
