//! One run of an export, in stages:
//!
//! ```text
//! lock --> preflight (SQL, API, cap) --> checkpoint (fingerprint, journal)
//!   --> batcher (scan, extract, dedupe, cut) --channel--> dispatcher (gate, retries, journal)
//!   --> tally (counts + rejects) --> report + history
//! ```
//!
//! Each stage is its own file; this one only strings them together and turns how they ended
//! into the run's status. Whatever way a run ends after its checkpoint is open, the journal
//! is synced, the rejects file closed and the report's counts are true.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::batcher::Batcher;
use super::checkpoint::{self, Checkpoint};
use super::concurrency::Concurrency;
use super::dispatch::{Dispatched, Dispatcher};
use super::error::ExportError;
use super::preflight::{self, Ready};
use super::progress::{Progress, ProgressMode};
use super::send::Sender;
use super::tally::{Rejects, Tally};
use crate::campaign_monitor::{ClientOptions, Credentials};
use crate::config::{Connection, Pipeline};
use crate::engine;
use crate::error_text::{chain, mask_addresses};
use crate::members::Extractor;
use crate::retry::Backoff;
use crate::state::{
    self, ExportLock, Fingerprint, History, HistoryEntry, Holder, LockError, Report, RunState, RunStatus, SendsTo,
    Trigger,
};

/// How to run, beyond what the pipeline says.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where a copy of the report goes; the state folder always keeps one.
    pub report_path: Option<PathBuf>,
    /// Default [`state::default_dir`] of the pipeline's folder.
    pub state_dir: Option<PathBuf>,
    pub progress: ProgressMode,
    pub backoff: Backoff,
    pub client: ClientOptions,
    pub sandbox: bool,
    /// Continue the last unfinished run of this export instead of starting a new one.
    pub resume: bool,
    pub trigger: Trigger,
    /// The id of a new run; default [`new_run_id`].
    pub run_id: Option<String>,
}

impl Default for RunOptions {
    /// A library caller gets no progress display unless it asks for one.
    fn default() -> Self {
        Self {
            report_path: None,
            state_dir: None,
            progress: ProgressMode::Never,
            backoff: Backoff::default(),
            client: ClientOptions::default(),
            sandbox: false,
            resume: false,
            trigger: Trigger::default(),
            run_id: None,
        }
    }
}

/// Why a run is asked to stop before its next batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// A signal: the run ends `interrupted` and `--resume` continues it.
    Interrupt,
    /// Its definition or connection went away or was disabled: the run ends `cancelled`.
    Cancel(String),
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Interrupt => f.write_str("interrupted"),
            StopReason::Cancel(why) => write!(f, "cancelled: {why}"),
        }
    }
}

/// A new run id: UTC time and a random suffix, so ids sort by start time.
pub fn new_run_id() -> String {
    format!(
        "{}-{:04x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        rand::random::<u16>()
    )
}

/// Milliseconds: the history orders runs by start time, and two may start in one second.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Where a run keeps its files, and the state of the run it resumes, if any.
struct Place {
    state_dir: PathBuf,
    run_dir: PathBuf,
    run_id: String,
    resumed: Option<RunState>,
    /// The state folder's report first, then the `--report` copy.
    reports: Vec<PathBuf>,
    rejects: PathBuf,
}

impl Place {
    fn find(pipeline: &Pipeline, options: &RunOptions) -> Result<Self, ExportError> {
        let dir = options
            .state_dir
            .clone()
            .unwrap_or_else(|| state::default_dir(pipeline.dir()));
        // Absolute, so reports point at their files from wherever they are read.
        let state_dir = std::path::absolute(&dir).unwrap_or(dir);
        let runs = state_dir.join("runs").join(&pipeline.name);
        let (run_dir, resumed) = match options.resume {
            true => state::last_unfinished(&runs, &pipeline.name).map(|(dir, then)| (dir, Some(then)))?,
            false => (runs.join(options.run_id.clone().unwrap_or_else(new_run_id)), None),
        };
        let run_id = run_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let copy = options
            .report_path
            .as_ref()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()));
        let rejects = match &copy {
            Some(report) => report.with_file_name(format!(
                "{}-rejects.parquet",
                report.file_stem().and_then(|s| s.to_str()).unwrap_or("report")
            )),
            None => run_dir.join("rejects.parquet"),
        };
        let reports = std::iter::once(run_dir.join(state::REPORT_FILE)).chain(copy).collect();
        Ok(Self {
            state_dir,
            run_dir,
            run_id,
            resumed,
            reports,
            rejects,
        })
    }
}

/// Runs the export under its lock, writes its report and records it in the history.
/// `credentials` default to the connection's own, read where `connections.toml` says they
/// are. Failures of the run itself are in the report (status `failed`, `error`); alerting
/// on them is the caller's (`alert::after_run`). `Err` when the run could not start (another
/// run of the export holds the lock: recorded as `skipped`) or its report cannot be written.
pub async fn run(
    pipeline: &Pipeline,
    connection: &Connection,
    credentials: Option<&Credentials>,
    options: &RunOptions,
    stop: impl Future<Output = StopReason>,
) -> Result<Report, ExportError> {
    let clock = Instant::now();
    let place = Place::find(pipeline, options)?;
    let history = History::new(&place.state_dir);
    let _lock = lock(pipeline, options, &place, &history).await?;
    let mut report = new_report(pipeline, connection, &place, options);
    tracing::info!(export = %pipeline.name, run_id = %place.run_id, list_id = %pipeline.destination.list_id, resumed = report.resumed, trigger = options.trigger.as_str(), "run started");
    let outcome = execute(pipeline, connection, credentials, options, &place, &mut report, stop).await;
    finish(&mut report, outcome, clock);
    for path in &place.reports {
        report.write(path).map_err(|source| ExportError::Report {
            path: path.clone(),
            source,
        })?;
    }
    tracing::info!(status = ?report.status, report = %report.report_file.as_deref().unwrap_or(&place.run_dir).display(), "run finished");
    history.append(HistoryEntry::of(&report)).await;
    Ok(report)
}

/// Takes the export's lock, or records the run as skipped and says who holds it.
async fn lock(
    pipeline: &Pipeline,
    options: &RunOptions,
    place: &Place,
    history: &History,
) -> Result<ExportLock, ExportError> {
    let holder = Holder {
        run_id: place.run_id.clone(),
        trigger: options.trigger,
        pid: std::process::id(),
        started_at: now_rfc3339(),
    };
    match ExportLock::acquire(&place.state_dir, &pipeline.name, &holder) {
        Ok(lock) => Ok(lock),
        Err(error @ LockError::Held { .. }) => {
            let why = error.to_string();
            let entry = HistoryEntry::without_report(
                &pipeline.name,
                &place.run_id,
                options.trigger,
                RunStatus::Skipped,
                &holder.started_at,
                why,
            );
            history.append(entry).await;
            Err(error.into())
        }
        Err(error) => Err(error.into()),
    }
}

fn new_report(pipeline: &Pipeline, connection: &Connection, place: &Place, options: &RunOptions) -> Report {
    Report {
        export: pipeline.name.clone(),
        run_id: place.run_id.clone(),
        trigger: options.trigger,
        connection: connection.name.clone(),
        display_name: connection.display_name.clone(),
        export_user: connection.export_user.clone(),
        list_id: pipeline.destination.list_id.clone(),
        segments: pipeline.destination.segments.clone(),
        sandbox: options.sandbox,
        resumed: place.resumed.is_some(),
        started_at: now_rfc3339(),
        report_file: place.reports.last().cloned(),
        ..Report::default()
    }
}

/// How a run ended, before it becomes a status.
enum Stop {
    Finished,
    Early(StopReason),
}

fn finish(report: &mut Report, outcome: Result<Stop, ExportError>, clock: Instant) {
    report.duration_seconds = clock.elapsed().as_secs_f64();
    report.finished_at = now_rfc3339();
    report.members_per_second = match report.duration_seconds > 0.0 {
        true => report.members_sent as f64 / report.duration_seconds,
        false => 0.0,
    };
    report.status = match outcome {
        Ok(Stop::Finished) if report.rejected_rows() == 0 => RunStatus::Succeeded,
        Ok(Stop::Finished) => RunStatus::SucceededWithRejects,
        Ok(Stop::Early(StopReason::Interrupt)) => RunStatus::Interrupted,
        Ok(Stop::Early(reason @ StopReason::Cancel(_))) => {
            report.error = Some(reason.to_string());
            RunStatus::Cancelled
        }
        Err(error) => {
            // It leaves the process (report, history, alerts): no addresses in it. Errors
            // about the data itself had their values masked where they were made.
            let why = mask_addresses(&chain(&error));
            tracing::error!("run failed: {why}");
            report.error = Some(why);
            RunStatus::Failed
        }
    };
}

/// Preflight, then the checkpoint, then sending; a stop asked for during the checks ends the
/// run there, with nothing sent.
async fn execute(
    pipeline: &Pipeline,
    connection: &Connection,
    credentials: Option<&Credentials>,
    options: &RunOptions,
    place: &Place,
    report: &mut Report,
    stop: impl Future<Output = StopReason>,
) -> Result<Stop, ExportError> {
    tokio::pin!(stop);
    let resolved;
    let credentials = match credentials {
        Some(given) => given,
        None => {
            resolved = connection.resolve_credentials()?;
            &resolved
        }
    };
    let checks = preflight::check(pipeline, connection, credentials, options.client, &options.backoff);
    let ready = tokio::select! {
        ready = checks => ready?,
        reason = &mut stop => return Ok(Stop::Early(reason)),
    };
    let snapshot = &ready.query.get().snapshot;
    report.source_files = snapshot.files.len() as u64;
    let sends_to = SendsTo {
        sandbox: options.sandbox,
        base_url: if options.sandbox {
            "sandbox".to_owned()
        } else {
            connection.base_url.to_string()
        },
        connection: connection.name.clone(),
        account: if options.sandbox {
            "sandbox".to_owned()
        } else {
            credentials.account()
        },
        list_id: pipeline.destination.list_id.clone(),
    };
    let now = RunState {
        export: pipeline.name.clone(),
        run_id: place.run_id.clone(),
        fingerprint: Fingerprint::of(pipeline, snapshot.files.clone(), sends_to),
    };
    let mut checkpoint = checkpoint::open(&place.run_dir, now, place.resumed.as_ref())?;
    let mut tally = Tally::new(Rejects::create(&place.rejects)?);
    for batch in &checkpoint.earlier.batches {
        tally.replay(batch);
    }
    tally.resending(checkpoint.earlier.unanswered_members);
    let sent = send(pipeline, options, ready, &mut checkpoint, &mut tally, stop).await;
    let synced = checkpoint.journal.sync();
    let closed = tally.close(report);
    let stop = sent?;
    synced.map_err(state::StateError::from)?;
    closed?;
    Ok(stop)
}

/// The batcher in its own task, the dispatcher here, joined by a channel of batches.
async fn send(
    pipeline: &Pipeline,
    options: &RunOptions,
    ready: Ready,
    checkpoint: &mut Checkpoint,
    tally: &mut Tally,
    stop: impl Future<Output = StopReason>,
) -> Result<Stop, ExportError> {
    let Ready {
        query,
        client,
        rows_expected,
    } = ready;
    let progress = Progress::start(options.progress, rows_expected, &pipeline.name);
    let concurrency = pipeline.options.concurrency.get();
    let (batches, taken) = mpsc::channel(concurrency * 2);
    let batcher = Batcher {
        extractor: Extractor::new(query.get().layout.clone()),
        batch_size: pipeline.options.batch_size.get(),
        already_sent: Arc::new(std::mem::take(&mut checkpoint.earlier.sent)),
        rejects: tally.rejects().clone(),
        counters: progress.counters.clone(),
    };
    let rows = engine::stream(query, |query| query.export.clone());
    let batching = tokio::spawn(batcher.run(rows, batches));
    let sender = Sender::new(
        Arc::new(client),
        pipeline.destination.list_id.clone(),
        pipeline.options.resubscribe,
        options.backoff,
    );
    let dispatched = Dispatcher {
        sender: Arc::new(sender),
        limit: Concurrency::new(concurrency),
        journal: &mut checkpoint.journal,
        tally,
        counters: progress.counters.clone(),
        next_batch: checkpoint.earlier.next_batch,
    }
    .run(taken, stop)
    .await;
    let batched = batching
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    progress.finish();
    tally.batched(&batched.rows, batched.not_sent);
    match (dispatched, batched.error) {
        (Dispatched::Failed(error), _) | (_, Some(error)) => Err(error),
        (Dispatched::Stopped(reason), None) => Ok(Stop::Early(reason)),
        (Dispatched::Finished, None) => Ok(Stop::Finished),
    }
}
