//! The tally: the one owner of a run's counts and of its rejects file. Every stage reports
//! to it; whatever way the run ends, [`Tally::close`] closes the rejects file and puts true
//! counts in the report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::rejects::{RejectsError, RejectsWriter};
use super::send::Sent;
use super::send::{RemovalOutcome, Removed};
use crate::campaign_monitor::ApiFailure;
use crate::campaign_monitor::ImportSubscriber;
use crate::campaign_monitor::types::ImportFailure;
use crate::members::{Reject, RejectReason, RowCounts};
use crate::state::{Accepted, Dropped, Report};

/// The rejects file, shared by the batcher (rows it cannot send) and the dispatcher (rows
/// the API refused). A write error is kept and returned by [`Rejects::close`], never lost.
#[derive(Clone)]
pub struct Rejects(Arc<Mutex<RejectsFile>>);

struct RejectsFile {
    path: PathBuf,
    writer: Option<RejectsWriter>,
    error: Option<RejectsError>,
}

impl Rejects {
    pub fn create(path: &Path) -> Result<Self, RejectsError> {
        Ok(Self(Arc::new(Mutex::new(RejectsFile {
            path: path.to_owned(),
            writer: Some(RejectsWriter::create(path)?),
            error: None,
        }))))
    }

    fn file(&self) -> std::sync::MutexGuard<'_, RejectsFile> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, reject: Reject) {
        let mut file = self.file();
        if let Some(writer) = file.writer.as_mut()
            && let Err(error) = writer.push(reject)
        {
            file.writer = None;
            file.error.get_or_insert(error);
        }
    }

    pub fn path(&self) -> PathBuf {
        self.file().path.clone()
    }

    /// Writes what is pending and closes the file; the first error met on the way, if any.
    pub fn close(&self) -> Result<(), RejectsError> {
        let mut file = self.file();
        if let Some(writer) = file.writer.take()
            && let Err(error) = writer.finish()
        {
            file.error.get_or_insert(error);
        }
        match file.error.take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// The `[mapping] key` of each row the API refused, found among the batch's members by the
/// address the API names (as sent); empty when no member has a key.
pub fn failure_keys(members: &[ImportSubscriber], failures: &[ImportFailure]) -> Vec<Option<String>> {
    if failures.is_empty() || members.iter().all(|m| m.row_key.is_none()) {
        return Vec::new();
    }
    failures
        .iter()
        .map(|failure| {
            members
                .iter()
                .find(|m| m.email_address.eq_ignore_ascii_case(failure.email_address.trim()))
                .and_then(|m| m.row_key.clone())
        })
        .collect()
}

/// Members whose batch was not accepted because the run stopped first: into the rejects
/// file as `not_sent`, so every member is accounted for.
pub fn not_sent(rejects: &Rejects, members: &[ImportSubscriber]) -> u64 {
    for member in members {
        let mut reject =
            Reject::new(Some(&member.email_address), RejectReason::NotSent).keyed(member.row_key.as_deref());
        reject.message = Some("the run stopped before this batch".to_owned());
        rejects.push(reject);
    }
    members.len() as u64
}

/// The counts of one run (an attempt and the attempts it resumes).
pub struct Tally {
    rejects: Rejects,
    rows: RowCounts,
    batches: u64,
    requests: u64,
    retries: u64,
    resent_after_unknown: u64,
    members_maybe_resent: u64,
    new: u64,
    existing: u64,
    not_sent: u64,
    /// API failure code -> rows.
    api: BTreeMap<i64, u64>,
    concurrency_at_end: u64,
    concurrency_peak: u64,
    removed: u64,
    already_gone: u64,
    removal_failures: u64,
}

impl Tally {
    pub fn new(rejects: Rejects) -> Self {
        Self {
            rejects,
            rows: RowCounts::default(),
            batches: 0,
            requests: 0,
            retries: 0,
            resent_after_unknown: 0,
            members_maybe_resent: 0,
            new: 0,
            existing: 0,
            not_sent: 0,
            api: BTreeMap::new(),
            concurrency_at_end: 0,
            concurrency_peak: 0,
            removed: 0,
            already_gone: 0,
            removal_failures: 0,
        }
    }

    pub fn rejects(&self) -> &Rejects {
        &self.rejects
    }

    /// A batch an earlier attempt got accepted: it counts, and its refused rows are rejects
    /// again (the rejects file is per attempt), without their keys: the journal keeps
    /// addresses only.
    pub fn replay(&mut self, batch: &Accepted) {
        self.accepted(batch.new, batch.existing, &batch.failures, &batch.failure_keys);
    }

    /// A removal an earlier attempt made (or found done).
    pub fn replay_dropped(&mut self, dropped: &Dropped) {
        match dropped {
            Dropped::Removed(_) => self.removed += 1,
            Dropped::Gone(_) => self.already_gone += 1,
        }
    }

    /// One removal's requests and outcome.
    pub fn removal(&mut self, key: &str, removed: &Removed) {
        self.requests += removed.requests;
        self.retries += removed.retries;
        match &removed.outcome {
            RemovalOutcome::Removed => self.removed += 1,
            RemovalOutcome::Gone(_) => self.already_gone += 1,
            RemovalOutcome::Failed(ApiFailure { code, message, .. }) => {
                self.removal_failures += 1;
                let mut reject = Reject::new(Some(key), RejectReason::RemovalFailed);
                reject.code = Some(*code);
                reject.message = Some(message.clone());
                self.rejects.push(reject);
            }
        }
    }

    /// Members an earlier attempt sent without seeing the answer: this attempt sends them
    /// again, so they may be imported twice (an import updates a member already there).
    pub fn resending(&mut self, members: u64) {
        self.members_maybe_resent += members;
    }

    /// One batch's requests, whatever its outcome.
    pub fn requests(&mut self, sent: &Sent) {
        self.batches += 1;
        self.requests += sent.requests;
        self.retries += sent.retries;
        self.resent_after_unknown += sent.resent_after_unknown;
        if sent.resent_after_unknown > 0 {
            self.members_maybe_resent += sent.batch.len() as u64;
        }
    }

    /// A batch accepted but for `failures`, whose rows' keys are `keys` (see [`failure_keys`]).
    pub fn accepted(&mut self, new: u64, existing: u64, failures: &[ImportFailure], keys: &[Option<String>]) {
        self.new += new;
        self.existing += existing;
        for (i, failure) in failures.iter().enumerate() {
            let key = keys.get(i).and_then(Option::as_deref);
            self.api_reject(&failure.email_address, key, failure.code, &failure.message);
        }
    }

    /// The API refused a whole batch for good.
    pub fn refused(&mut self, members: &[ImportSubscriber], code: i64, message: &str) {
        for member in members {
            self.api_reject(&member.email_address, member.row_key.as_deref(), code, message);
        }
    }

    fn api_reject(&mut self, email: &str, key: Option<&str>, code: i64, message: &str) {
        *self.api.entry(code).or_insert(0) += 1;
        let mut reject = Reject::new(Some(email), RejectReason::Api).keyed(key);
        reject.code = Some(code);
        reject.message = Some(message.to_owned());
        self.rejects.push(reject);
    }

    pub fn not_sent(&mut self, members: &[ImportSubscriber]) {
        self.not_sent += not_sent(&self.rejects, members);
    }

    /// The adaptive concurrency limit when sending ended, and the highest it reached.
    pub fn concurrency(&mut self, at_end: usize, peak: usize) {
        self.concurrency_at_end = at_end as u64;
        self.concurrency_peak = peak as u64;
    }

    /// What the batcher did: rows read and sorted, and members it could not hand over.
    pub fn batched(&mut self, rows: &RowCounts, not_sent: u64) {
        self.rows.add(rows);
        self.not_sent += not_sent;
    }

    /// Closes the rejects file and writes the counts into `report`: on every path out of a run.
    pub fn close(self, report: &mut Report) -> Result<(), RejectsError> {
        report.count_rows(&self.rows);
        report.batches = self.batches;
        report.requests = self.requests;
        report.retries = self.retries;
        report.resent_after_unknown = self.resent_after_unknown;
        report.members_maybe_resent = self.members_maybe_resent;
        report.members_new = self.new;
        report.members_existing = self.existing;
        report.members_sent = self.new + self.existing;
        report.rejected.api = self.api;
        report.rejected.not_sent = self.not_sent;
        report.concurrency_at_end = self.concurrency_at_end;
        report.concurrency_peak = self.concurrency_peak;
        report.members_removed = self.removed;
        report.members_already_gone = self.already_gone;
        report.removal_failures = self.removal_failures;
        report.rejects_file = Some(self.rejects.path());
        self.rejects.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign_monitor::ConsentToTrack;
    use datafusion::arrow::array::AsArray;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn member(email: &str) -> ImportSubscriber {
        ImportSubscriber {
            email_address: email.into(),
            name: None,
            custom_fields: vec![],
            consent_to_track: ConsentToTrack::Yes,
            row_key: None,
            mobile_number: None,
            consent_to_send_sms: None,
        }
    }

    fn rows_in(path: &Path) -> usize {
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .sum()
    }

    /// The rejects file's first record batch (these tests write fewer rows than one holds).
    fn first_batch(path: &Path) -> datafusion::arrow::array::RecordBatch {
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
    }

    #[test]
    fn counts_every_member_once_and_writes_every_reject() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rejects.parquet");
        let mut tally = Tally::new(Rejects::create(&path).unwrap());
        let earlier = Accepted {
            batch: Some(0),
            new: 2,
            existing: 1,
            emails: vec!["a@x.com".into(), "b@x.com".into(), "c@x.com".into(), "d@x.com".into()],
            failures: vec![ImportFailure {
                email_address: "d@x.com".into(),
                code: 206,
                message: "Unsubscribed".into(),
            }],
            fingerprints: vec![],
            failure_keys: vec![Some("c-4".into())],
        };
        tally.replay(&earlier);
        tally.resending(5);
        tally.accepted(1, 0, &[], &[]);
        assert_eq!(
            failure_keys(
                &[
                    member("x@y.com"),
                    ImportSubscriber {
                        row_key: Some("c-9".into()),
                        ..member("Z@y.com")
                    }
                ],
                &[ImportFailure {
                    email_address: "z@y.com".into(),
                    code: 1,
                    message: "m".into()
                }],
            ),
            [Some("c-9".to_owned())]
        );
        tally.refused(&[member("e@x.com")], 204, "In suppression list");
        tally.not_sent(&[member("f@x.com"), member("g@x.com")]);
        tally.batched(
            &RowCounts {
                rows: 9,
                unique: 7,
                duplicate: 1,
                missing_email: 1,
                ..RowCounts::default()
            },
            1,
        );
        let mut report = Report::default();
        tally.close(&mut report).unwrap();
        assert_eq!(
            (report.members_new, report.members_existing, report.members_sent),
            (3, 1, 4)
        );
        assert_eq!(report.rejected.api, BTreeMap::from([(204, 1), (206, 1)]));
        assert_eq!(report.rejected.not_sent, 3);
        assert_eq!(report.members_maybe_resent, 5);
        assert_eq!((report.rows_matched, report.members_unique), (9, 7));
        // API 2 + not sent 2; the batcher writes the rows it rejects itself.
        assert_eq!(rows_in(&path), 4);
        // The replayed refusal keeps the key its journal line kept.
        let batch = first_batch(&path);
        let keys = batch.column_by_name("key").unwrap().as_string::<i32>();
        assert_eq!(keys.iter().flatten().collect::<Vec<_>>(), ["c-4"]);
    }

    #[test]
    fn a_failed_removal_is_a_reject_with_the_apis_code() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rejects.parquet");
        let mut tally = Tally::new(Rejects::create(&path).unwrap());
        let removed = |outcome| Removed {
            outcome,
            requests: 3,
            retries: 1,
            rate_limited: 0,
            latency: std::time::Duration::ZERO,
        };
        tally.removal("a@x.com", &removed(RemovalOutcome::Removed));
        tally.removal("b@x.com", &removed(RemovalOutcome::Gone("Unsubscribed".into())));
        let refused = ApiFailure {
            status: 400,
            code: 1,
            message: "Invalid Email Address".into(),
        };
        tally.removal("c@x.com", &removed(RemovalOutcome::Failed(refused)));
        tally.replay_dropped(&Dropped::Removed("d@x.com".into()));
        let mut report = Report::default();
        tally.close(&mut report).unwrap();
        assert_eq!(
            (
                report.members_removed,
                report.members_already_gone,
                report.removal_failures
            ),
            (2, 1, 1)
        );
        assert_eq!((report.requests, report.retries, report.rejected_rows()), (9, 3, 1));
        let batch = first_batch(&path);
        let column = |name: &str| {
            datafusion::arrow::compute::cast(
                batch.column_by_name(name).unwrap(),
                &datafusion::arrow::datatypes::DataType::Utf8,
            )
            .unwrap()
        };
        assert_eq!(column("email").as_string::<i32>().value(0), "c@x.com");
        assert_eq!(column("reason").as_string::<i32>().value(0), "removal_failed");
        assert_eq!(column("api_code").as_string::<i32>().value(0), "1");
    }
}
