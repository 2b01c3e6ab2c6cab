//! The batcher: rows from the scan become members (normalised, validated, deduped), members
//! an earlier attempt got accepted or that the synced state has unchanged are left out, and the rest leave in batches of at most
//! `batch-size` members and at most [`MAX_SUBSCRIBER_BYTES`] of JSON, as soon as each is full.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::RecordBatch;
use datafusion::error::DataFusionError;
use futures::Stream;
use tokio::sync::mpsc;

use super::error::ExportError;
use super::scan::Scan;
use super::tally::{Rejects, not_sent};
use crate::campaign_monitor::{ImportBatch, ImportSubscriber, MAX_SUBSCRIBER_BYTES};
use crate::members::{Change, Reject, RejectReason, RowCounts};

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
    pub batch_size: usize,
    /// Lowercased addresses an earlier attempt got accepted.
    pub already_sent: Arc<HashSet<String>>,
    pub rejects: Rejects,
}

/// The members of the batch being filled, and their JSON size.
#[derive(Default)]
struct Filling {
    members: Vec<ImportSubscriber>,
    bytes: usize,
}

impl Filling {
    /// Adds `member`, whose JSON takes `size` bytes with its comma; returns the full batch it
    /// completes, or the batch it did not fit in.
    fn add(&mut self, member: ImportSubscriber, size: usize, batch_size: usize) -> Option<Filling> {
        let overflow = (self.bytes + size > MAX_SUBSCRIBER_BYTES).then(|| self.take());
        self.bytes += size;
        self.members.push(member);
        overflow.or_else(|| (self.members.len() >= batch_size).then(|| self.take()))
    }

    fn take(&mut self) -> Filling {
        std::mem::take(self)
    }
}

impl Batcher {
    /// Reads the scan to the end, or until the dispatcher stops taking batches.
    pub async fn run<S>(self, mut scan: Scan<S>, batches: mpsc::Sender<ImportBatch>) -> Batched
    where
        S: Stream<Item = Result<RecordBatch, DataFusionError>> + Unpin,
    {
        let mut done = Batched::default();
        let mut filling = Filling::default();
        loop {
            let mut full = Vec::new();
            let sorted = scan
                .next(
                    |member, change| {
                        if change != Change::Unchanged {
                            full.extend(self.keep(member, &mut filling));
                        }
                    },
                    |reject| self.rejects.push(reject),
                )
                .await;
            let ended = sorted.is_none();
            if let Some(Err(error)) = sorted {
                done.error = Some(error);
            }
            for members in full {
                done.not_sent += self.hand_over(members, &batches, &scan.counters.queued).await;
            }
            if ended {
                done.not_sent += self.hand_over(filling.take(), &batches, &scan.counters.queued).await;
                break;
            }
            if done.error.is_some() || batches.is_closed() {
                done.not_sent += not_sent(&self.rejects, &filling.members);
                break;
            }
        }
        done.rows = scan.counts;
        done
    }

    /// Adds a member to the batch being filled, unless an earlier attempt got it accepted or
    /// it alone is too large for a request; returns the batch it completed, if any.
    fn keep(&self, member: ImportSubscriber, filling: &mut Filling) -> Option<Filling> {
        if !self.already_sent.is_empty() && self.already_sent.contains(&member.email_address.to_ascii_lowercase()) {
            return None;
        }
        // Its JSON, and one comma between members: measured once, here.
        let size = member.json_len() + 1;
        if size > MAX_SUBSCRIBER_BYTES {
            self.rejects.push(too_large(&member));
            return None;
        }
        filling.add(member, size, self.batch_size)
    }

    /// Sends a batch on; if the dispatcher no longer takes any, its members are `not_sent`.
    async fn hand_over(&self, filled: Filling, batches: &mpsc::Sender<ImportBatch>, queued: &AtomicU64) -> u64 {
        // Batches hold 1..=batch-size (<= 1000) members; an empty one is not sent.
        let Ok(batch) = ImportBatch::measured(filled.members, filled.bytes) else {
            return 0;
        };
        // Counted before it is handed over, so the dispatcher never takes one not counted.
        queued.fetch_add(1, Ordering::Relaxed);
        match batches.send(batch).await {
            Ok(()) => 0,
            Err(refused) => {
                queued.fetch_sub(1, Ordering::Relaxed);
                not_sent(&self.rejects, refused.0.subscribers())
            }
        }
    }
}

fn too_large(member: &ImportSubscriber) -> Reject {
    let mut reject =
        Reject::new(Some(&member.email_address), RejectReason::InvalidField).keyed(member.row_key.as_deref());
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
                    clear: false,
                })
                .collect(),
            consent_to_track: ConsentToTrack::Yes,
            row_key: None,
            mobile_number: None,
            consent_to_send_sms: None,
        }
    }

    #[tokio::test]
    async fn a_scan_that_fails_mid_way_counts_what_it_read_and_accounts_for_every_member() {
        use datafusion::arrow::array::{ArrayRef, StringArray};
        let dir = tempfile::tempdir().unwrap();
        let rejects = Rejects::create(&dir.path().join("rejects.parquet")).unwrap();
        let emails: Vec<String> = (0..25).map(|i| format!("m{i}@x.com")).collect();
        let rows = RecordBatch::try_from_iter([("email", std::sync::Arc::new(StringArray::from(emails)) as ArrayRef)])
            .unwrap();
        let read: Vec<Result<RecordBatch, DataFusionError>> = vec![
            Ok(rows),
            Err(DataFusionError::Execution("Cast error: 'jane@example.com'".into())),
        ];
        let layout = crate::members::Layout {
            consent_default: ConsentToTrack::Yes,
            ..Default::default()
        };
        let scan = Scan::new(
            futures::stream::iter(read),
            crate::members::Extractor::new(layout),
            Default::default(),
        );
        let (batches, mut taken) = mpsc::channel(8);
        let batcher = Batcher {
            batch_size: 10,
            already_sent: Default::default(),
            rejects: rejects.clone(),
        };
        let done = batcher.run(scan, batches).await;
        let mut handed = 0;
        while let Some(batch) = taken.recv().await {
            handed += batch.len();
        }
        assert_eq!(done.rows.rows, 25);
        assert_eq!(
            (handed, done.not_sent),
            (20, 5),
            "two full batches left, five were filling"
        );
        let error = done.error.unwrap().to_string();
        assert!(error.contains("'***'") && !error.contains("jane"), "{error}");
        rejects.close().unwrap();
    }

    fn add(filling: &mut Filling, member: ImportSubscriber, batch_size: usize) -> Option<Vec<ImportSubscriber>> {
        let size = member.json_len() + 1;
        filling.add(member, size, batch_size).map(|full| full.members)
    }

    #[test]
    fn batches_are_cut_by_count_and_by_bytes() {
        let mut filling = Filling::default();
        let full: Vec<_> = (0..5)
            .filter_map(|i| add(&mut filling, member(&format!("{i}@x.com"), 1), 2))
            .collect();
        assert_eq!(full.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2]);
        assert_eq!(filling.take().members.len(), 1);

        // 1000 members of 8 fields of 250 characters: about 2.1 MB, over one request.
        let mut filling = Filling::default();
        let mut sizes = Vec::new();
        for i in 0..1000 {
            if let Some(batch) = add(&mut filling, member(&format!("{i}@x.com"), 250), 1000) {
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
        sizes.push(filling.take().members.len());
        assert_eq!(sizes.iter().sum::<usize>(), 1000);
        assert!(sizes.len() == 2 && sizes[0] < 1000, "{sizes:?}");
    }
}
