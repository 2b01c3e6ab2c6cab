//! One run of an export: check, count, then stream the members to the list.
//!
//! ```text
//! Parquet --scan + segment SQL--> mapped columns --extract (normalise, validate, dedupe)-->
//!   batches --channel--> N concurrent imports (gate, retries) --> report + rejects file
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use datafusion::functions_aggregate::expr_fn::count_distinct;
use datafusion::prelude::{lower, trim};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;

use super::concurrency::Concurrency;
use super::error::{ExportError, chain};
use super::progress::{Progress, ProgressMode};
use super::rejects::RejectsWriter;
use super::report::{Rejected, Report, RunStatus, Trigger};
use super::retry::{Backoff, retry_call};
use super::send::{Delivery, Sender};
use crate::alert;
use crate::campaign_monitor::{Client, ClientOptions, Credentials, ImportBatch, ImportSubscriber};
use crate::config::{Connection, Pipeline};
use crate::members::{Extractor, Reject, RejectReason, RowCounts};
use crate::segment::{self, Prepared};
use crate::state::{
    self, ExportLock, Fingerprint, History, HistoryEntry, Holder, Journal, LockError, RunState, StateError,
};

/// How to run, beyond what the pipeline says.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where the report goes; default `<state dir>/runs/<export>/<run id>/report.json`.
    pub report_path: Option<PathBuf>,
    /// Default `.cm-export/` beside the pipeline.
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
    /// Retries of the failure alert.
    pub alert_backoff: Backoff,
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

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            report_path: None,
            state_dir: None,
            progress: ProgressMode::Never,
            backoff: Backoff::default(),
            client: ClientOptions::default(),
            sandbox: false,
            resume: false,
            trigger: Trigger::Manual,
            run_id: None,
            alert_backoff: Backoff {
                base: std::time::Duration::from_secs(1),
                cap: std::time::Duration::from_secs(30),
                max_retries: 5,
                max_rate_limit_wait: std::time::Duration::from_secs(30),
            },
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

fn new_report(pipeline: &Pipeline, connection: &Connection, run_id: &str, options: &RunOptions) -> Report {
    Report {
        export: pipeline.name.clone(),
        run_id: run_id.to_owned(),
        status: RunStatus::Failed,
        trigger: options.trigger,
        connection: connection.name.clone(),
        display_name: connection.display_name.clone(),
        export_user: connection.export_user.clone(),
        list_id: pipeline.destination.list_id.clone(),
        segments: pipeline.destination.segments.clone(),
        sandbox: options.sandbox,
        resumed: false,
        started_at: now_rfc3339(),
        finished_at: String::new(),
        duration_seconds: 0.0,
        source_files: 0,
        rows_matched: 0,
        members_unique: 0,
        members_sent: 0,
        members_new: 0,
        members_existing: 0,
        rejected: Rejected::default(),
        batches: 0,
        requests: 0,
        retries: 0,
        resent_after_unknown: 0,
        members_per_second: 0.0,
        rejects_file: None,
        error: None,
    }
}

/// The state folder a run of `pipeline` uses, absolute so reports point at their files
/// from wherever they are read.
fn state_dir(pipeline: &Pipeline, options: &RunOptions) -> PathBuf {
    let dir = options
        .state_dir
        .clone()
        .unwrap_or_else(|| pipeline.dir().join(".cm-export"));
    std::path::absolute(&dir).unwrap_or(dir)
}

/// Runs the export under its lock, writes its report, records it in the history and, when
/// it failed or was cancelled, alerts the webhook. `credentials` default to the connection's
/// own, read where `connections.toml` says they are. Failures of the run itself are in the
/// report (status `failed`, `error`). `Err` when the run could not start (another run of the
/// export holds the lock: recorded as `skipped`) or its report cannot be written.
pub async fn run(
    pipeline: &Pipeline,
    connection: &Connection,
    credentials: Option<&Credentials>,
    options: &RunOptions,
    stop: impl Future<Output = StopReason>,
) -> Result<Report, ExportError> {
    let clock = Instant::now();
    let state_dir = state_dir(pipeline, options);
    let history = History::new(&state_dir);
    let runs_dir = state_dir.join("runs").join(&pipeline.name);
    let (run_dir, resumed) = if options.resume {
        let (dir, state) = state::last_unfinished(&runs_dir, &pipeline.name)?;
        (dir, Some(state))
    } else {
        (runs_dir.join(options.run_id.clone().unwrap_or_else(new_run_id)), None)
    };
    let run_id = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let holder = Holder {
        run_id: run_id.clone(),
        trigger: options.trigger,
        pid: std::process::id(),
        started_at: now_rfc3339(),
    };
    let _lock = match ExportLock::acquire(&state_dir, &pipeline.name, &holder) {
        Ok(lock) => lock,
        Err(error @ LockError::Held { .. }) => {
            let entry = HistoryEntry::without_report(
                &pipeline.name,
                &run_id,
                options.trigger,
                RunStatus::Skipped,
                &holder.started_at,
                error.to_string(),
            );
            history.append(entry).await;
            return Err(error.into());
        }
        Err(error) => return Err(error.into()),
    };

    // The state folder always keeps the report (resume reads it); `--report` gets a copy.
    let report_paths: Vec<PathBuf> = std::iter::once(run_dir.join(state::REPORT_FILE))
        .chain(
            options
                .report_path
                .iter()
                .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())),
        )
        .collect();
    let rejects_path = match report_paths.get(1) {
        Some(report) => report.with_file_name(format!(
            "{}-rejects.parquet",
            report.file_stem().and_then(|s| s.to_str()).unwrap_or("report")
        )),
        None => run_dir.join("rejects.parquet"),
    };
    let mut report = new_report(pipeline, connection, &run_id, options);
    report.resumed = resumed.is_some();
    tracing::info!(export = %pipeline.name, run_id = %run_id, list_id = %pipeline.destination.list_id, resumed = report.resumed, trigger = options.trigger.as_str(), "run started");

    let files = Files {
        run_dir: &run_dir,
        rejects: &rejects_path,
        resumed: resumed.as_ref(),
    };
    let outcome = execute(pipeline, connection, credentials, options, files, &mut report, stop).await;
    report.duration_seconds = clock.elapsed().as_secs_f64();
    report.finished_at = now_rfc3339();
    report.members_per_second = if report.duration_seconds > 0.0 {
        report.members_sent as f64 / report.duration_seconds
    } else {
        0.0
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
            tracing::error!("run failed: {}", chain(&error));
            report.error = Some(chain(&error));
            RunStatus::Failed
        }
    };
    for path in &report_paths {
        report.write(path).map_err(|source| ExportError::Report {
            path: path.clone(),
            source,
        })?;
    }
    let report_path = &report_paths[report_paths.len() - 1];
    tracing::info!(status = ?report.status, report = %report_path.display(), "run finished");
    history.append(HistoryEntry::of(&report, report_path)).await;
    if report.status.alerts()
        && let Some(url) = pipeline.alert_webhook.as_ref().or(connection.alert_webhook.as_ref())
    {
        let summary = alert::Summary::of(&report, report_path);
        match alert::notify(url, &summary, &options.alert_backoff).await {
            Ok(()) => tracing::info!(%url, "alert sent"),
            Err(error) => tracing::error!("{}", chain(&error)),
        }
    }
    Ok(report)
}

/// Where a run keeps its files, and the state it resumes, if any.
#[derive(Clone, Copy)]
struct Files<'a> {
    run_dir: &'a std::path::Path,
    rejects: &'a std::path::Path,
    resumed: Option<&'a RunState>,
}

enum Stop {
    Finished,
    Early(StopReason),
}

/// The client, with the credential check and list check done.
pub async fn connect(
    pipeline: &Pipeline,
    connection: &Connection,
    credentials: &Credentials,
    options: ClientOptions,
    backoff: &Backoff,
) -> Result<Client, ExportError> {
    let client = Client::new(connection.base_url.clone(), credentials, options).map_err(ExportError::Client)?;
    retry_call(backoff, || client.system_date())
        .await
        .map_err(|source| ExportError::Credentials {
            connection: connection.name.clone(),
            source,
        })?;
    let list_id = &pipeline.destination.list_id;
    let list_error = |source| ExportError::List {
        list_id: list_id.clone(),
        connection: connection.name.clone(),
        source,
    };
    retry_call(backoff, || client.list_details(list_id))
        .await
        .map_err(list_error)?;
    if !pipeline.mapping.custom_fields.is_empty() {
        let fields = retry_call(backoff, || client.custom_fields(list_id))
            .await
            .map_err(list_error)?;
        let bare = |key: &str| key.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        for (key, _) in &pipeline.mapping.custom_fields {
            if !fields.iter().any(|f| bare(&f.key) == bare(key)) {
                return Err(ExportError::UnknownCustomField {
                    list_id: list_id.clone(),
                    key: key.clone(),
                    available: fields
                        .iter()
                        .map(|f| format!("`{}`", bare(&f.key)))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
    }
    Ok(client)
}

/// Rows the export query yields, and — when that is over the cap — the exact number of
/// distinct addresses, which is what the cap is about.
pub async fn check_cap(prepared: &Prepared, max_profiles: u64) -> Result<u64, ExportError> {
    let rows = prepared.export.clone().count().await.map_err(ExportError::Scan)? as u64;
    if rows > max_profiles {
        let email = datafusion::prelude::ident("email");
        let distinct = prepared
            .export
            .clone()
            .aggregate(vec![], vec![count_distinct(lower(trim(vec![email]))).alias("n")])
            .map_err(ExportError::Scan)?
            .collect()
            .await
            .map_err(ExportError::Scan)?;
        let members = distinct
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::Int64Array>()
            })
            .map_or(rows, |a| a.value(0) as u64);
        if members > max_profiles {
            return Err(ExportError::OverCap {
                members,
                max: max_profiles,
            });
        }
    }
    Ok(rows)
}

type SharedRejects = Arc<Mutex<Option<RejectsWriter>>>;

fn write_reject(rejects: &SharedRejects, reject: Reject) {
    let mut guard = rejects.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(writer) = guard.as_mut()
        && let Err(e) = writer.push(reject)
    {
        tracing::error!("{}", chain(&e));
    }
}

/// A row the API refused: into the rejects file and the count by code.
fn api_reject(rejects: &SharedRejects, codes: &mut BTreeMap<i64, u64>, email: &str, code: i64, message: &str) {
    *codes.entry(code).or_insert(0) += 1;
    let mut reject = Reject::new(Some(email), RejectReason::Api);
    reject.code = Some(code);
    reject.message = Some(message.to_owned());
    write_reject(rejects, reject);
}

fn not_sent(rejects: &SharedRejects, members: &[ImportSubscriber], why: &str) -> u64 {
    for m in members {
        let mut reject = Reject::new(Some(&m.email_address), RejectReason::NotSent);
        reject.message = Some(why.to_owned());
        write_reject(rejects, reject);
    }
    members.len() as u64
}

async fn execute(
    pipeline: &Pipeline,
    connection: &Connection,
    credentials: Option<&Credentials>,
    options: &RunOptions,
    files: Files<'_>,
    report: &mut Report,
    stop_signal: impl Future<Output = StopReason>,
) -> Result<Stop, ExportError> {
    tokio::pin!(stop_signal);
    // Local checks first (SQL, schema), then the API (credentials, list), then the cap:
    // anything wrong stops the run before a single member leaves. A stop asked for meanwhile
    // ends the run here: nothing was sent.
    let checks = async {
        let resolved;
        let credentials = match credentials {
            Some(given) => given,
            None => {
                resolved = connection.resolve_credentials()?;
                &resolved
            }
        };
        let prepared = segment::prepare(pipeline).await?;
        let client = connect(pipeline, connection, credentials, options.client, &options.backoff).await?;
        let rows_expected = check_cap(&prepared, pipeline.options.max_profiles).await?;
        Ok::<_, ExportError>((prepared, client, rows_expected))
    };
    let (prepared, client, rows_expected) = tokio::select! {
        checked = checks => checked?,
        reason = &mut stop_signal => return Ok(Stop::Early(reason)),
    };
    report.source_files = prepared.snapshot.files.len() as u64;
    let client = Arc::new(client);

    // The checkpoint: what an earlier attempt got accepted is not sent again, and counts.
    let fingerprint = Fingerprint::of(pipeline, &prepared.snapshot.files);
    if let Some(then) = files.resumed
        && let Some(why) = fingerprint.difference(&then.fingerprint)
    {
        return Err(StateError::Changed {
            export: pipeline.name.clone(),
            run_id: then.run_id.clone(),
            why,
        }
        .into());
    }
    RunState {
        export: pipeline.name.clone(),
        run_id: report.run_id.clone(),
        fingerprint,
    }
    .write(files.run_dir)?;
    let journal_path = files.run_dir.join(state::JOURNAL_FILE);
    let earlier = Journal::read(&journal_path).map_err(StateError::from)?;
    let mut journal = Journal::open(&journal_path).map_err(StateError::from)?;

    let rejects: SharedRejects = Arc::new(Mutex::new(Some(RejectsWriter::create(files.rejects)?)));
    report.rejects_file = Some(files.rejects.to_owned());
    let mut api_codes: BTreeMap<i64, u64> = BTreeMap::new();
    for batch in &earlier.batches {
        report.batches += 1;
        report.members_new += batch.new;
        report.members_existing += batch.existing;
        report.members_sent += batch.new + batch.existing;
        for failure in &batch.failures {
            api_reject(
                &rejects,
                &mut api_codes,
                &failure.email_address,
                failure.code,
                &failure.message,
            );
        }
    }
    let already_sent = Arc::new(earlier.sent);
    let progress = Progress::start(options.progress, rows_expected, &pipeline.name);
    let counters = progress.counters.clone();

    // Stage 1 (its own task): scan, extract, dedupe, and cut batches that leave at once.
    let batch_size = pipeline.options.batch_size.get();
    let concurrency = pipeline.options.concurrency.get();
    let (tx, mut rx) = mpsc::channel::<ImportBatch>(concurrency * 2);
    let producer = {
        let rejects = rejects.clone();
        let counters = counters.clone();
        let already_sent = already_sent.clone();
        let Prepared { export, layout, .. } = prepared;
        tokio::spawn(async move {
            let mut rows = RowCounts::default();
            let mut unsent = 0u64;
            let mut stream = export.execute_stream().await.map_err(ExportError::Scan)?;
            let mut extractor = Extractor::new(layout);
            let mut current: Vec<ImportSubscriber> = Vec::with_capacity(batch_size);
            let mut full: Vec<Vec<ImportSubscriber>> = Vec::new();
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(ExportError::Scan)?;
                let counts = extractor
                    .extract(
                        &batch,
                        |member| {
                            if !already_sent.is_empty()
                                && already_sent.contains(&member.email_address.to_ascii_lowercase())
                            {
                                return;
                            }
                            current.push(member);
                            if current.len() == batch_size {
                                full.push(std::mem::replace(&mut current, Vec::with_capacity(batch_size)));
                            }
                        },
                        |reject| write_reject(&rejects, reject),
                    )
                    .map_err(|e| ExportError::Scan(e.into()))?;
                rows.add(&counts);
                counters.rows.fetch_add(counts.rows, Ordering::Relaxed);
                // Full batches hold `batch_size` (1..=1000) members, so `new` cannot refuse them.
                for batch in full.drain(..).filter_map(|members| ImportBatch::new(members).ok()) {
                    if let Err(refused) = tx.send(batch).await {
                        unsent += not_sent(&rejects, refused.0.subscribers(), "the run stopped before this batch");
                    }
                }
                if tx.is_closed() {
                    unsent += not_sent(&rejects, &current, "the run stopped before this batch");
                    return Ok((rows, unsent));
                }
            }
            if let Ok(batch) = ImportBatch::new(current)
                && let Err(refused) = tx.send(batch).await
            {
                unsent += not_sent(&rejects, refused.0.subscribers(), "the run stopped before this batch");
            }
            Ok::<_, ExportError>((rows, unsent))
        })
    };

    // Stage 2: up to `concurrency` imports in flight; each answer is counted as it lands.
    let sender = Arc::new(Sender::new(
        client,
        pipeline.destination.list_id.clone(),
        pipeline.options.resubscribe,
        options.backoff,
    ));
    let mut limit = Concurrency::new(concurrency);
    let mut in_flight = FuturesUnordered::new();
    let mut open = true;
    let mut stop: Option<Result<Stop, ExportError>> = None;
    loop {
        if !open && in_flight.is_empty() {
            break;
        }
        let can_take = open && stop.is_none() && in_flight.len() < limit.current();
        tokio::select! {
            Some(sent) = in_flight.next(), if !in_flight.is_empty() => {
                let sent: super::send::Sent = sent;
                report.batches += 1;
                report.requests += sent.requests;
                report.retries += sent.retries;
                report.resent_after_unknown += sent.resent_after_unknown;
                limit.on_answer(sent.rate_limited > 0, sent.latency);
                match sent.delivery {
                    Delivery::Accepted { new, existing, failures } => {
                        let emails = sent.batch.subscribers().iter().map(|m| m.email_address.as_str());
                        if let Err(error) = journal.append(new, existing, emails, &failures)
                            && stop.is_none()
                        {
                            stop = Some(Err(StateError::from(error).into()));
                        }
                        report.members_new += new;
                        report.members_existing += existing;
                        report.members_sent += new + existing;
                        counters.sent.fetch_add(new + existing, Ordering::Relaxed);
                        for failure in failures {
                            api_reject(&rejects, &mut api_codes, &failure.email_address, failure.code, &failure.message);
                        }
                    }
                    Delivery::Failed(failure) => {
                        for m in sent.batch.subscribers() {
                            api_reject(&rejects, &mut api_codes, &m.email_address, failure.code, &failure.message);
                        }
                        if stop.is_none() {
                            stop = Some(Err(ExportError::Import {
                                list_id: pipeline.destination.list_id.clone(),
                                source: failure,
                            }));
                        }
                    }
                }
            }
            reason = &mut stop_signal, if stop.is_none() => {
                tracing::warn!("{reason}: no new batches; waiting for those in flight");
                stop = Some(Ok(Stop::Early(reason)));
            }
            next = rx.recv(), if can_take => match next {
                Some(batch) => {
                    let sender = sender.clone();
                    in_flight.push(async move { sender.send(batch).await });
                }
                None => open = false,
            },
        }
        if stop.is_some() && open {
            rx.close();
            while let Some(batch) = rx.recv().await {
                report.rejected.not_sent +=
                    not_sent(&rejects, batch.subscribers(), "the run stopped before this batch");
            }
            open = false;
        }
    }
    drop(rx);
    let (rows, unsent) = producer
        .await
        .map_err(|e| ExportError::Scan(datafusion::error::DataFusionError::External(Box::new(e))))??;
    progress.finish();
    report.count_rows(&rows);
    report.rejected.not_sent += unsent;
    report.rejected.api = api_codes;
    journal.sync().map_err(StateError::from)?;
    let writer = rejects.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(writer) = writer {
        writer.finish()?;
    }
    stop.unwrap_or(Ok(Stop::Finished))
}
