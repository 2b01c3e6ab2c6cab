//! Mirror's removals: members this export sent that left the segment, taken off the list one
//! call each (the API has no bulk removal) under the same adaptive concurrency, rate gate and
//! retries as imports, each journaled once done. A member that left the list on its own is
//! not touched; a removal the API refuses is a `removal_failed` reject, tried again next run.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::concurrency::Concurrency;
use super::dispatch::Dispatched;
use super::error::ExportError;
use super::options::StopReason;
use super::send::{RemovalOutcome, Sender};
use super::tally::Tally;
use crate::config::Removal;
use crate::state::{Dropped, Journal, StateError};

pub struct Remover<'a> {
    pub sender: Arc<Sender>,
    pub how: Removal,
    pub limit: &'a mut Concurrency,
    pub journal: &'a mut Journal,
    pub tally: &'a mut Tally,
    /// Removals answered so far, for the progress display.
    pub answered: &'a AtomicU64,
}

impl Remover<'_> {
    pub async fn run(self, keys: Vec<String>, stop: impl Future<Output = StopReason>) -> Dispatched {
        tokio::pin!(stop);
        let mut keys = keys.into_iter();
        let mut in_flight = FuturesUnordered::new();
        let mut ended: Option<Dispatched> = None;
        loop {
            while ended.is_none() && in_flight.len() < self.limit.current() {
                let Some(key) = keys.next() else { break };
                let (sender, how) = (self.sender.clone(), self.how);
                in_flight.push(async move {
                    let removed = sender.remove(&key, how).await;
                    (key, removed)
                });
            }
            if in_flight.is_empty() {
                break;
            }
            tokio::select! {
                Some((key, removed)) = in_flight.next() => {
                    let held_back = in_flight.len() + 1 >= self.limit.current() && keys.len() > 0;
                    self.limit.on_answer(removed.rate_limited > 0, removed.latency, held_back);
                    self.tally.removal(&key, &removed);
                    self.answered.fetch_add(1, Ordering::Relaxed);
                    let journaled = match removed.outcome {
                        RemovalOutcome::Removed => self.journal.dropped(&Dropped::Removed(key)),
                        RemovalOutcome::Gone(_) => self.journal.dropped(&Dropped::Gone(key)),
                        // Credentials or the list refused: every other removal would be too.
                        RemovalOutcome::Failed(failure) if matches!(failure.status, 401 | 403) || failure.code == 101 => {
                            ended.get_or_insert(Dispatched::Failed(ExportError::Removal {
                                list_id: self.sender.list_id().to_owned(),
                                source: failure,
                            }));
                            Ok(())
                        }
                        RemovalOutcome::Failed(_) => Ok(()),
                    };
                    if let Err(error) = journaled {
                        // What the journal cannot hold would be removed again: stop first.
                        ended = Some(Dispatched::Failed(StateError::from(error).into()));
                    }
                }
                reason = &mut stop, if ended.is_none() => {
                    tracing::warn!("{reason}: no new removals; waiting for those in flight");
                    ended = Some(Dispatched::Stopped(reason));
                }
            }
        }
        ended.unwrap_or(Dispatched::Finished)
    }
}
