//! One run of an export, in stages:
//!
//! ```text
//! lock --> preflight (SQL, API, cap) --> checkpoint (fingerprint, journal)
//!   --> tracking (changes/mirror: diff against the synced state, removal guard)
//!   --> batcher (scan, extract, dedupe, cut) --channel--> dispatcher (gate, retries, journal)
//!   --> remover (mirror) --> tally (counts + rejects) --> synced state --> report + history
//! ```
//!
//! Each stage is its own file; this one only strings them together and turns how they ended
//! into the run's status. Whatever way a run ends after its checkpoint is open, the journal
//! is synced, the rejects file closed and the report's counts are true.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::batcher::Batcher;
use super::checkpoint::{self, Checkpoint, Place};
use super::concurrency::Concurrency;
use super::dispatch::{Dispatched, Dispatcher};
use super::error::ExportError;
use super::options::{RunOptions, StopReason, now_rfc3339};
use super::preflight::{self, Ready};
use super::progress::{Progress, Work};
use super::remove::Remover;
use super::scan::Scan;
use super::send::Sender;
use super::tally::{Rejects, Tally};
use super::tracking::{self, Tracking};
use crate::campaign_monitor::Credentials;
use crate::config::{Connection, Mode, Pipeline};
use crate::engine::{self, OnEngine};
use crate::error_text::{chain, mask_addresses};
use crate::members::Extractor;
use crate::state::{self, Fingerprint, History, HistoryEntry, Report, RunState, RunStatus, SendsTo};
use crate::sync::Verdict;

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
    let _lock = place.lock(&pipeline.name, options.trigger, &history).await?;
    let mut report = new_report(pipeline, connection, &place, options);
    tracing::info!(export = %pipeline.name, run_id = %place.run_id, list_id = %pipeline.destination.list_id, resumed = report.resumed, trigger = options.trigger.as_str(), "run started");
    let outcome = execute(pipeline, connection, credentials, options, &place, &mut report, stop)
        .await
        .map_err(|error| error.on(&pipeline.engine));
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
        mode: pipeline.destination.mode.as_str().to_owned(),
        engine: pipeline.engine.cluster(),
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
    for dropped in &checkpoint.earlier.dropped {
        tally.replay_dropped(dropped);
    }
    tally.resending(checkpoint.earlier.unanswered_members);
    let (sent, tracking) = match track(pipeline, options, place, ready, &checkpoint).await {
        Ok((ready, tracking)) => {
            report.full_sync = tracking.as_ref().and_then(|t| t.full_sync.clone());
            let sent = send(
                pipeline,
                options,
                ready,
                &mut checkpoint,
                &mut tally,
                tracking.as_ref(),
                stop,
            )
            .await;
            (sent, tracking)
        }
        Err(error) => (Err(error), None),
    };
    let synced = checkpoint
        .journal
        .sync()
        .map_err(|e| ExportError::from(state::StateError::from(e)));
    // Whatever way the run ended, what it got accepted enters the synced state now; a
    // journal that could not be synced is not read for it.
    let saved = match (&tracking, &synced) {
        (Some(tracking), Ok(())) => tracking
            .save(&place.run_dir.join(state::JOURNAL_FILE))
            .await
            .map(|members| report.synced_members = Some(members)),
        _ => Ok(()),
    };
    let closed = tally.close(report).map_err(ExportError::from);
    // Every failure is told; a journal that could not be written outranks the others.
    match (sent, synced, saved, closed) {
        (Ok(stop), Ok(()), Ok(()), Ok(())) => Ok(stop),
        (sent, synced, saved, closed) => {
            let mut errors: Vec<ExportError> = [sent.err(), synced.err(), saved.err(), closed.err()]
                .into_iter()
                .flatten()
                .collect();
            errors.sort_by_key(|e| !matches!(e, ExportError::State(_)));
            for later in &errors[1..] {
                tracing::error!("also: {}", mask_addresses(&chain(later)));
            }
            Err(errors.swap_remove(0))
        }
    }
}

/// The tracking stage, on the engine where the query lives: `None` for `upsert`.
async fn track(
    pipeline: &Pipeline,
    options: &RunOptions,
    place: &Place,
    ready: Ready,
    checkpoint: &Checkpoint,
) -> Result<(Ready, Option<Tracking>), ExportError> {
    if !pipeline.destination.mode.tracks() {
        return Ok((ready, None));
    }
    let done: HashSet<String> = checkpoint.earlier.dropped.iter().map(|d| d.key().to_owned()).collect();
    let Ready {
        query,
        client,
        rows_expected,
    } = ready;
    let (pipeline, options, state_dir) = (pipeline.clone(), options.clone(), place.state_dir.clone());
    let (query, tracking) = engine::run(async move {
        let mut query = query.into_inner();
        let tracking = tracking::prepare(&mut query, &pipeline, &state_dir, &options, rows_expected, &done).await;
        (OnEngine::new(query), tracking)
    })
    .await;
    let tracking = tracking?;
    if let Some(Verdict::Refuse(why)) = tracking.as_ref().map(|t| &t.verdict) {
        return Err(ExportError::RemovalsRefused(why.clone()));
    }
    let ready = Ready {
        query,
        client,
        rows_expected,
    };
    Ok((ready, tracking))
}

/// The batcher in its own task, the dispatcher here, joined by a channel of batches.
async fn send(
    pipeline: &Pipeline,
    options: &RunOptions,
    ready: Ready,
    checkpoint: &mut Checkpoint,
    tally: &mut Tally,
    tracking: Option<&Tracking>,
    stop: impl Future<Output = StopReason>,
) -> Result<Stop, ExportError> {
    tokio::pin!(stop);
    let Ready {
        query,
        client,
        rows_expected,
    } = ready;
    let progress = Progress::start(
        options.progress,
        Work::Scan,
        rows_expected,
        &pipeline.name,
        options.live.as_deref(),
    );
    let concurrency = pipeline.options.concurrency.get();
    let (batches, taken) = mpsc::channel(concurrency * 2);
    let batcher = Batcher {
        batch_size: pipeline.options.batch_size.get(),
        already_sent: Arc::new(std::mem::take(&mut checkpoint.earlier.sent)),
        rejects: tally.rejects().clone(),
    };
    let extractor = Extractor::expecting(query.get().layout.clone(), rows_expected);
    let rows = engine::stream(query, |query| query.export.clone());
    let batching = tokio::spawn(batcher.run(Scan::new(rows, extractor, progress.counters.clone()), batches));
    let sender = Arc::new(Sender::new(
        Arc::new(client),
        pipeline.destination.list_id.clone(),
        pipeline.options.resubscribe,
        options.backoff,
    ));
    let mut limit = Concurrency::new(concurrency, pipeline.options.max_concurrency.get());
    let dispatched = Dispatcher {
        sender: sender.clone(),
        limit: &mut limit,
        journal: &mut checkpoint.journal,
        tally,
        counters: progress.counters.clone(),
        next_batch: checkpoint.earlier.next_batch,
        fingerprints: tracking.is_some(),
    }
    .run(taken, &mut stop)
    .await;
    let batched = batching
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    progress.finish();
    tally.batched(&batched.rows, batched.not_sent);
    let dispatched = match (dispatched, batched.error) {
        (Dispatched::Failed(error), _) | (_, Some(error)) => return Err(error),
        (dispatched, None) => dispatched,
    };
    // Removals only after every member of the segment was sent: a run that stopped early
    // leaves them to the next.
    let removals = match (dispatched, tracking) {
        (Dispatched::Finished, Some(tracking)) if !tracking.leaving.is_empty() => {
            let Mode::Mirror(how) = tracking.mode else {
                unreachable!("only mirror finds members to remove")
            };
            tracing::info!(
                members = tracking.leaving.len(),
                "removing members who left the segment"
            );
            let total = tracking.leaving.len() as u64;
            let progress = Progress::start(
                options.progress,
                Work::Removals,
                total,
                &pipeline.name,
                options.live.as_deref(),
            );
            let removed = Remover {
                sender,
                how,
                limit: &mut limit,
                journal: &mut checkpoint.journal,
                tally,
                answered: &progress.counters.rows,
            }
            .run(tracking.leaving.clone(), &mut stop)
            .await;
            progress.finish();
            removed
        }
        (dispatched, _) => dispatched,
    };
    tally.concurrency(limit.current(), limit.peak());
    match removals {
        Dispatched::Failed(error) => Err(error),
        Dispatched::Stopped(reason) => Ok(Stop::Early(reason)),
        Dispatched::Finished => Ok(Stop::Finished),
    }
}
