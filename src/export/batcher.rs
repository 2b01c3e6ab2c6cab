//! The batcher: rows from the scan become members (normalised, validated, deduped), members
//! an earlier attempt got accepted are left out, and the rest leave in batches of at most
//! `batch-size` members and at most [`MAX_SUBSCRIBER_BYTES`] of JSON, as soon as each is full.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use datafusion::arrow::array::RecordBatch;
use datafusion::error::DataFusionError;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::error::ExportError;
use super::progress::Counters;
use super::tally::{Rejects, not_sent};
use crate::campaign_monitor::{ImportBatch, ImportSubscriber, MAX_SUBSCRIBER_BYTES};
use crate::members::{Extractor, Reject, RejectReason, RowCounts};

const STOPPED: &str = "the run stopped before this batch";

/// What the batcher did, also when it ended early.
#[derive(Debug, Default)]
pub struct Batched {
    pub rows: RowCounts,
    /// Members it could not hand over because the run stopped.
    pub not_sent: u64,
    /// Why it ended early, if it did.
    pub error: Option<ExportError>,
}

pub struct Batcher {
    pub extractor: Extractor,
    pub batch_size: usize,
    /// Lowercased addresses an earlier attempt got accepted.
    pub already_sent: Arc<HashSet<String>>,
    pub rejects: Rejects,
    pub counters: Arc<Counters>,
}

/// The members of the batch being filled, and their JSON size.
#[derive(Default)]
struct Filling {
    members: Vec<ImportSubscriber>,
    bytes: usize,
}

impl Filling {
    /// Adds `member`; returns the full batch it completes, or the batch it did not fit in.
    fn add(&mut self, member: ImportSubscriber, batch_size: usize) -> Option<Vec<ImportSubscriber>> {
        // One comma between members.
        let size = member.json_len() + 1;
        let overflow = (self.bytes + size > MAX_SUBSCRIBER_BYTES).then(|| self.take());
        self.bytes += size;
        self.members.push(member);
        overflow.or_else(|| (self.members.len() >= batch_size).then(|| self.take()))
    }

    fn take(&mut self) -> Vec<ImportSubscriber> {
        self.bytes = 0;
        std::mem::take(&mut self.members)
    }
}

impl Batcher {
    /// Reads `rows` to the end, or until the dispatcher stops taking batches.
    pub async fn run(
        mut self,
        mut rows: impl Stream<Item = Result<RecordBatch, DataFusionError>> + Unpin,
        batches: mpsc::Sender<ImportBatch>,
    ) -> Batched {
        let mut done = Batched::default();
        let mut filling = Filling::default();
        while let Some(rows_read) = rows.next().await {
            let full = match rows_read
                .map_err(ExportError::scan)
                .and_then(|rows_read| self.sort(&rows_read, &mut filling, &mut done.rows))
            {
                Ok(full) => full,
                Err(error) => {
                    done.not_sent += not_sent(&self.rejects, &filling.members, STOPPED);
                    done.error = Some(error);
                    return done;
                }
            };
            for members in full {
                done.not_sent += self.hand_over(members, &batches).await;
            }
            if batches.is_closed() {
                done.not_sent += not_sent(&self.rejects, &filling.members, STOPPED);
                return done;
            }
        }
        done.not_sent += self.hand_over(filling.take(), &batches).await;
        done
    }

    /// Sorts one record batch's rows; returns the batches they filled.
    fn sort(
        &mut self,
        rows_read: &RecordBatch,
        filling: &mut Filling,
        rows: &mut RowCounts,
    ) -> Result<Vec<Vec<ImportSubscriber>>, ExportError> {
        let mut full = Vec::new();
        let (already_sent, batch_size, rejects) = (&self.already_sent, self.batch_size, &self.rejects);
        let counts = self
            .extractor
            .extract(
                rows_read,
                |member| {
                    if !already_sent.is_empty() && already_sent.contains(&member.email_address.to_ascii_lowercase()) {
                        return;
                    }
                    if member.json_len() + 1 > MAX_SUBSCRIBER_BYTES {
                        rejects.push(too_large(&member));
                        return;
                    }
                    full.extend(filling.add(member, batch_size));
                },
                |reject| rejects.push(reject),
            )
            .map_err(|e| ExportError::scan(e.into()))?;
        rows.add(&counts);
        self.counters.rows.fetch_add(counts.rows, Ordering::Relaxed);
        Ok(full)
    }

    /// Sends a batch on; if the dispatcher no longer takes any, its members are `not_sent`.
    async fn hand_over(&self, members: Vec<ImportSubscriber>, batches: &mpsc::Sender<ImportBatch>) -> u64 {
        // Batches hold 1..=batch-size (<= 1000) members; an empty one is not sent.
        let Ok(batch) = ImportBatch::new(members) else {
            return 0;
        };
        match batches.send(batch).await {
            Ok(()) => 0,
            Err(refused) => not_sent(&self.rejects, refused.0.subscribers(), STOPPED),
        }
    }
}

fn too_large(member: &ImportSubscriber) -> Reject {
    let mut reject = Reject::new(Some(&member.email_address), RejectReason::InvalidField);
    reject.message = Some(format!(
        "this member's values take {} bytes, more than one import request may carry ({MAX_SUBSCRIBER_BYTES}); shorten its name or fields",
        member.json_len()
    ));
    reject
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign_monitor::{ConsentToTrack, ImportField};

    fn member(email: &str, value_len: usize) -> ImportSubscriber {
        ImportSubscriber {
            email_address: email.into(),
            name: None,
            custom_fields: (0..8)
                .map(|i| ImportField {
                    key: format!("Field{i}"),
                    value: "v".repeat(value_len),
                })
                .collect(),
            consent_to_track: ConsentToTrack::Yes,
        }
    }

    #[test]
    fn batches_are_cut_by_count_and_by_bytes() {
        let mut filling = Filling::default();
        let full: Vec<_> = (0..5)
            .filter_map(|i| filling.add(member(&format!("{i}@x.com"), 1), 2))
            .collect();
        assert_eq!(full.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2]);
        assert_eq!(filling.take().len(), 1);

        // 1000 members of 8 fields of 250 characters: about 2.1 MB, over one request.
        let mut filling = Filling::default();
        let mut sizes = Vec::new();
        for i in 0..1000 {
            if let Some(batch) = filling.add(member(&format!("{i}@x.com"), 250), 1000) {
                let bytes: usize = batch.iter().map(|m| m.json_len() + 1).sum();
                assert!(bytes <= MAX_SUBSCRIBER_BYTES);
                let body = ImportBatch::new(batch.clone()).unwrap().to_body(false);
                assert!(
                    body.len() <= crate::campaign_monitor::MAX_REQUEST_BYTES,
                    "{}",
                    body.len()
                );
                sizes.push(batch.len());
            }
        }
        sizes.push(filling.take().len());
        assert_eq!(sizes.iter().sum::<usize>(), 1000);
        assert!(sizes.len() == 2 && sizes[0] < 1000, "{sizes:?}");
    }
}
