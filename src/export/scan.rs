//! The step `plan` and `run` share: read the export query's next record batch, sort its rows
//! into members and rejects, and count them (also on the progress display).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use datafusion::arrow::array::RecordBatch;
use datafusion::error::DataFusionError;
use futures::{Stream, StreamExt};

use super::error::ExportError;
use super::progress::Counters;
use crate::campaign_monitor::ImportSubscriber;
use crate::members::{Change, Extractor, Reject, RowCounts};

pub struct Scan<S> {
    rows: S,
    extractor: Extractor,
    pub counters: Arc<Counters>,
    /// Every row read so far, sorted.
    pub counts: RowCounts,
}

impl<S: Stream<Item = Result<RecordBatch, DataFusionError>> + Unpin> Scan<S> {
    pub fn new(rows: S, extractor: Extractor, counters: Arc<Counters>) -> Self {
        Self {
            rows,
            extractor,
            counters,
            counts: RowCounts::default(),
        }
    }

    /// Sorts the next record batch: members to `member` (with how they stand against the
    /// synced state), rejected rows to `reject`.
    /// `None` at the end of the query.
    pub async fn next(
        &mut self,
        member: impl FnMut(ImportSubscriber, Change),
        reject: impl FnMut(Reject),
    ) -> Option<Result<(), ExportError>> {
        let read = self.rows.next().await?;
        let sorted = read.map_err(ExportError::scan).and_then(|rows| {
            self.extractor
                .extract(&rows, member, reject)
                .map_err(|e| ExportError::scan(e.into()))
        });
        Some(sorted.map(|counts| {
            self.counts.add(&counts);
            self.counters.rows.fetch_add(counts.rows, Ordering::Relaxed);
        }))
    }
}
