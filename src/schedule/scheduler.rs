//! The long-running loop: reload the folder, fire what is due, follow the runs.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::catalog::{Definition, Permit, Standing, read_connections, read_definitions};
use super::clock::Clock;
use crate::alert;
use crate::config::{Connections, Pipeline, Schedule};
use crate::error_text::chain;
use crate::export::{self, ExportError, Live, RunOptions, StopReason, new_run_id, now_rfc3339};
use crate::retry::Backoff;
use crate::state::{ExportLock, History, HistoryEntry, Holder, LockError, RunStatus, Trigger};

/// How the scheduler runs, beyond what the definitions say.
#[derive(Debug, Clone)]
pub struct ScheduleOptions {
    /// The folder of pipeline definitions.
    pub dir: PathBuf,
    /// Default: `$CM_EXPORT_CONNECTIONS`, then `connections.toml` in the folder or its parent.
    pub connections: Option<PathBuf>,
    /// How often the folder is read again for added, changed and removed definitions.
    pub reload_every: Duration,
    /// For every run; its state folder defaults to `.cm-export/` in the folder, as for `run`.
    pub run: RunOptions,
    /// Retries of a failed or cancelled run's alert.
    pub alert_backoff: Backoff,
    /// Asked of every export on every reload and before every run, beside the connection's
    /// own checks.
    pub permit: Option<Permit>,
    /// Where each run in progress can be read, by export and run id, while it goes.
    pub live: LiveRuns,
}

/// Runs in progress and their counts, by export and run id.
pub type LiveRuns = Arc<Mutex<HashMap<(String, String), Arc<Live>>>>;

/// What the scheduler is asked to do besides following its folder.
#[derive(Debug)]
pub enum Command {
    /// Run `export` now; the answer is the run id, or why it cannot run.
    RunNow {
        export: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// Read the folder and the connections again now (a definition or connection was saved
    /// or removed): a removal stops its runs at once.
    Reload,
}

impl ScheduleOptions {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            connections: None,
            reload_every: Duration::from_secs(2),
            run: RunOptions::default(),
            alert_backoff: alert::default_backoff(),
            permit: None,
            live: LiveRuns::default(),
        }
    }
}

/// What happened, for whoever watches (the tests; the log says the same).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A definition was read for the first time or again; `next` is when it runs, if it is
    /// scheduled and usable.
    Loaded {
        export: String,
        next: Option<DateTime<Utc>>,
    },
    /// A definition (or its connection) cannot be used; it does not run.
    Broken {
        export: String,
        error: String,
    },
    Removed {
        export: String,
    },
    Started {
        export: String,
        run_id: String,
    },
    /// A time came while the export's run `running` was still going.
    Skipped {
        export: String,
        running: String,
    },
    /// A run in progress is asked to stop before its next batch.
    Cancelling {
        export: String,
        run_id: String,
        reason: String,
    },
    Finished {
        export: String,
        run_id: String,
        status: RunStatus,
    },
    /// Shutting down: the runs going were asked to stop; the scheduler waits for them.
    Stopping {
        runs: usize,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("cannot read the pipelines folder `{}`", dir.display())]
    Folder {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Lock(#[from] LockError),
}

struct Export {
    standing: Standing,
    next: Option<DateTime<Utc>>,
}

struct Running {
    run_id: String,
    /// Started by its schedule (not asked for): losing the schedule stops it.
    scheduled: bool,
    started: DateTime<Utc>,
    stop: watch::Sender<Option<StopReason>>,
}

pub struct Scheduler {
    options: ScheduleOptions,
    /// This process is the state folder's one scheduler while this is held.
    _only: ExportLock,
    connections_file: PathBuf,
    history: History,
    clock: Clock,
    events: Option<mpsc::UnboundedSender<Event>>,
    commands: Option<mpsc::UnboundedReceiver<Command>>,
    definitions: BTreeMap<String, Definition>,
    /// The last connections file that could be read, or why none could.
    connections: Result<Connections, String>,
    exports: BTreeMap<String, Export>,
    running: HashMap<String, Running>,
    tasks: JoinSet<RunStatus>,
    /// Which export and run each task is.
    task_runs: HashMap<tokio::task::Id, (String, String)>,
    /// Problems with the folder or the connections file, as last logged: said once, not
    /// every reload.
    problems: HashMap<&'static str, String>,
}

impl Scheduler {
    pub fn new(mut options: ScheduleOptions, clock: Clock) -> Result<Self, ScheduleError> {
        if !options.dir.is_dir() {
            return Err(ScheduleError::Folder {
                dir: options.dir.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a folder"),
            });
        }
        let connections_file = Connections::locate(options.connections.as_deref(), &options.dir)?;
        let state_dir = options
            .run
            .state_dir
            .clone()
            .unwrap_or_else(|| crate::state::default_dir(&options.dir));
        let state_dir = std::path::absolute(&state_dir).unwrap_or(state_dir);
        options.run.state_dir = Some(state_dir.clone());
        options.run.trigger = Trigger::Schedule;
        options.run.resume = false;
        options.run.report_path = None;
        let me = Holder {
            run_id: "scheduler".to_owned(),
            trigger: Trigger::Schedule,
            pid: std::process::id(),
            started_at: now_rfc3339(),
        };
        let only = ExportLock::scheduler(&state_dir, &me)?;
        Ok(Self {
            options,
            _only: only,
            connections_file,
            history: History::new(&state_dir),
            clock,
            events: None,
            commands: None,
            definitions: BTreeMap::new(),
            connections: Err("not read yet".to_owned()),
            exports: BTreeMap::new(),
            running: HashMap::new(),
            tasks: JoinSet::new(),
            task_runs: HashMap::new(),
            problems: HashMap::new(),
        })
    }

    /// Sends every [`Event`] to `events` as well as to the log.
    pub fn with_events(mut self, events: mpsc::UnboundedSender<Event>) -> Self {
        self.events = Some(events);
        self
    }

    /// Takes [`Command`]s from `commands`.
    pub fn with_commands(mut self, commands: mpsc::UnboundedReceiver<Command>) -> Self {
        self.commands = Some(commands);
        self
    }

    /// Runs until `shutdown`; then starts nothing new, asks the runs going to stop as an
    /// interrupted run does (resumable), and waits for them.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        tracing::info!(dir = %self.options.dir.display(), connections = %self.connections_file.display(), "scheduler started");
        loop {
            let now = self.clock.now();
            self.reload(now);
            let due: Vec<String> = self
                .exports
                .iter()
                .filter(|(_, e)| e.next.is_some_and(|at| at <= now))
                .map(|(name, _)| name.clone())
                .collect();
            for name in due {
                self.fire(&name, now).await;
            }
            let reload_at =
                now + chrono::Duration::from_std(self.options.reload_every).unwrap_or(chrono::Duration::MAX);
            let wake = self
                .exports
                .values()
                .filter_map(|e| e.next)
                .fold(reload_at, DateTime::min);
            let clock = self.clock.clone();
            let mut commands = self.commands.take();
            let next_command = async {
                match commands.as_mut() {
                    Some(commands) => commands.recv().await,
                    None => std::future::pending().await,
                }
            };
            let woke = tokio::select! {
                () = &mut shutdown => break,
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => Woke::Finished(done),
                Some(command) = next_command => Woke::Command(command),
                () = clock.sleep_until(wake) => Woke::Time,
            };
            self.commands = commands;
            match woke {
                Woke::Finished(done) => self.finished(done).await,
                Woke::Command(Command::RunNow { export, reply }) => {
                    let now = self.clock.now();
                    self.reload(now);
                    let _ = reply.send(self.run_now(&export, now));
                }
                // The loop reads the folder again first thing.
                Woke::Command(Command::Reload) | Woke::Time => {}
            }
        }
        tracing::info!(running = self.running.len(), "scheduler stopping: no new runs");
        for running in self.running.values() {
            running.stop.send_replace(Some(StopReason::Interrupt));
        }
        self.emit(Event::Stopping {
            runs: self.running.len(),
        });
        while let Some(done) = self.tasks.join_next_with_id().await {
            self.finished(done).await;
        }
        tracing::info!("scheduler stopped");
    }

    fn emit(&self, event: Event) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }

    /// Logs a problem when it appears or changes, and once when it is gone.
    fn problem(&mut self, what: &'static str, problem: Option<String>) {
        match problem {
            Some(message) => {
                if self.problems.get(what) != Some(&message) {
                    tracing::error!("{message}");
                    self.problems.insert(what, message);
                }
            }
            None => {
                if self.problems.remove(what).is_some() {
                    tracing::info!("the {what} can be read again");
                }
            }
        }
    }

    fn reload(&mut self, now: DateTime<Utc>) {
        match read_connections(&self.connections_file) {
            Ok(connections) => {
                self.problem("connections file", None);
                self.connections = Ok(connections);
            }
            // A half-saved connections file must not stop every export: keep the last good one.
            Err(error) if self.connections.is_ok() => {
                self.problem(
                    "connections file",
                    Some(format!("{error}; using the connections read before")),
                );
            }
            Err(error) => {
                self.problem("connections file", Some(error.clone()));
                self.connections = Err(error);
            }
        }
        // A folder that cannot be read (a network mount gone for a moment) is not a folder
        // whose definitions were all removed: nothing changes until it can be read again.
        let definitions = match read_definitions(&self.options.dir, &self.connections_file) {
            Ok(definitions) => {
                self.problem("pipelines folder", None);
                definitions
            }
            Err(error) => {
                let message = format!(
                    "cannot read the pipelines folder `{}`: {error}; runs go on as last read",
                    self.options.dir.display()
                );
                self.problem("pipelines folder", Some(message));
                return;
            }
        };
        let removed: Vec<String> = self
            .exports
            .keys()
            .filter(|name| !definitions.contains_key(*name))
            .cloned()
            .collect();
        for name in removed {
            self.exports.remove(&name);
            let file = self.definitions.get(&name).map(|d| d.file.display().to_string());
            tracing::info!(export = %name, "definition removed: no more runs");
            self.cancel(
                &name,
                format!("its definition `{}` was removed", file.unwrap_or_default()),
            );
            self.emit(Event::Removed { export: name });
        }
        for (name, definition) in &definitions {
            let standing = Standing::of(name, definition, &self.connections, self.options.permit.as_ref());
            let previous = self.exports.get(name);
            // A reload that changes nothing says nothing.
            let unchanged = previous.is_some_and(|p| describe(&p.standing) == describe(&standing))
                && self.definitions.get(name).map(|d| &d.signature) == Some(&definition.signature);
            let next = match (standing.schedule(), previous) {
                // A schedule that did not change keeps its next time: a reload must not skip a time that is due.
                (Some(new), Some(previous))
                    if previous.standing.schedule().is_some_and(|old| same_schedule(old, new)) =>
                {
                    previous.next
                }
                (Some(new), _) => new.next_after(now),
                (None, _) => None,
            };
            if !unchanged {
                let scheduled_run = self.running.get(name).is_some_and(|r| r.scheduled);
                let stop = match &standing {
                    Standing::Scheduled(_) | Standing::Broken(_) => None,
                    Standing::OnDemand(_) => scheduled_run.then(|| "its [schedule] was removed".to_owned()),
                    Standing::Disabled => {
                        scheduled_run.then(|| "its schedule was disabled (`enabled = false`)".to_owned())
                    }
                    Standing::Unusable(why, _) => Some(why.clone()),
                };
                if let Some(why) = stop {
                    self.cancel(name, why);
                }
                self.announce(name, definition, &standing, next);
            }
            self.exports.insert(name.clone(), Export { standing, next });
        }
        self.definitions = definitions;
    }

    fn announce(&self, name: &str, definition: &Definition, standing: &Standing, next: Option<DateTime<Utc>>) {
        let file = definition.file.display();
        match standing {
            Standing::Scheduled(scheduled) => {
                let schedule = scheduled.0.schedule.as_ref();
                let local = next
                    .zip(schedule)
                    .map(|(at, s)| at.with_timezone(&s.timezone).to_rfc3339());
                tracing::info!(
                    export = %name,
                    %file,
                    cron = schedule.map(|s| s.expression.as_str()).unwrap_or_default(),
                    timezone = %schedule.map(|s| s.timezone.name()).unwrap_or_default(),
                    "next run at {}",
                    local.unwrap_or_else(|| "never (the expression matches no future time)".to_owned())
                );
            }
            Standing::OnDemand(_) => {
                tracing::info!(export = %name, %file, "no [schedule]: runs only when asked")
            }
            Standing::Disabled => tracing::info!(export = %name, %file, "schedule disabled (`enabled = false`)"),
            Standing::Broken(error) | Standing::Unusable(error, _) => {
                tracing::error!(export = %name, %file, "not scheduled: {error}");
                self.emit(Event::Broken {
                    export: name.to_owned(),
                    error: error.clone(),
                });
                return;
            }
        }
        self.emit(Event::Loaded {
            export: name.to_owned(),
            next,
        });
    }

    /// Asks the export's run in progress, if any, to stop before its next batch.
    fn cancel(&self, name: &str, reason: String) {
        if let Some(running) = self.running.get(name) {
            tracing::warn!(export = %name, run_id = %running.run_id, "cancelling the run in progress: {reason}");
            running.stop.send_replace(Some(StopReason::Cancel(reason.clone())));
            self.emit(Event::Cancelling {
                export: name.to_owned(),
                run_id: running.run_id.clone(),
                reason,
            });
        }
    }

    /// A scheduled time that did not start a run: said in the log and the history.
    async fn skipped(&self, name: &str, why: String) {
        tracing::warn!(export = %name, "skipped: {why}");
        let entry = HistoryEntry::without_report(
            name,
            &new_run_id(),
            Trigger::Schedule,
            RunStatus::Skipped,
            &now_rfc3339(),
            why,
        );
        self.history.append(entry).await;
    }

    async fn fire(&mut self, name: &str, now: DateTime<Utc>) {
        let Some(export) = self.exports.get_mut(name) else {
            return;
        };
        let scheduled = match &export.standing {
            Standing::Scheduled(scheduled) => scheduled,
            Standing::Unusable(why, Some(schedule)) => {
                // Its time came, and it may not run: the history says so, every time.
                let why = format!("not run at its time: {why}");
                export.next = schedule.next_after(now);
                self.skipped(name, why).await;
                return;
            }
            _ => {
                export.next = None;
                return;
            }
        };
        let (pipeline, connection) = (**scheduled).clone();
        export.next = pipeline.schedule.as_ref().and_then(|s| s.next_after(now));
        if let Some(running) = self.running.get(name) {
            let why = format!(
                "the time {} came while run {} (started {}) was still going",
                now.to_rfc3339(),
                running.run_id,
                running.started.to_rfc3339()
            );
            let running = running.run_id.clone();
            self.skipped(name, why).await;
            self.emit(Event::Skipped {
                export: name.to_owned(),
                running,
            });
            return;
        }
        self.start(name, pipeline, connection, Trigger::Schedule, now);
    }

    /// Starts `export` now when it may run and is not running: its run id, or why not.
    fn run_now(&mut self, name: &str, now: DateTime<Utc>) -> Result<String, String> {
        let export = self
            .exports
            .get(name)
            .ok_or_else(|| format!("there is no export `{name}`"))?;
        let (pipeline, connection) = match &export.standing {
            Standing::Broken(why) | Standing::Unusable(why, _) => return Err(why.clone()),
            Standing::Disabled => {
                return Err("its schedule is disabled (`enabled = false`); enable it to run it".to_owned());
            }
            runnable => runnable.runnable().cloned().ok_or_else(|| "it cannot run".to_owned())?,
        };
        if let Some(running) = self.running.get(name) {
            return Err(format!("run {} is still going", running.run_id));
        }
        Ok(self.start(name, pipeline, connection, Trigger::Manual, now))
    }

    fn start(
        &mut self,
        name: &str,
        pipeline: Pipeline,
        connection: crate::config::Connection,
        trigger: Trigger,
        now: DateTime<Utc>,
    ) -> String {
        let run_id = new_run_id();
        let live = Arc::new(Live::default());
        self.options
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((name.to_owned(), run_id.clone()), live.clone());
        let options = RunOptions {
            run_id: Some(run_id.clone()),
            trigger,
            live: Some(live),
            ..self.options.run.clone()
        };
        let (stop, mut stopped) = watch::channel(None::<StopReason>);
        let stop_signal = async move {
            let asked = stopped.wait_for(Option::is_some).await.map(|reason| reason.clone());
            match asked {
                Ok(reason) => reason.unwrap_or(StopReason::Interrupt),
                // The scheduler is gone, and with it anyone to ask for a stop.
                Err(_) => std::future::pending().await,
            }
        };
        let task_name = name.to_owned();
        let task_run_id = run_id.clone();
        let alert_backoff = self.options.alert_backoff;
        let task = self.tasks.spawn(async move {
            match export::run(&pipeline, &connection, None, &options, stop_signal).await {
                Ok(report) => {
                    alert::after_run(&pipeline, &connection, &report, &alert_backoff).await;
                    report.status
                }
                // Another process (an on-demand run) holds the export; the history says so.
                Err(ExportError::Lock(held @ LockError::Held { .. })) => {
                    tracing::warn!(export = %task_name, run_id = %task_run_id, "skipped: {held}");
                    RunStatus::Skipped
                }
                Err(error) => {
                    tracing::error!(export = %task_name, run_id = %task_run_id, "run failed: {}", chain(&error));
                    RunStatus::Failed
                }
            }
        });
        self.task_runs.insert(task.id(), (name.to_owned(), run_id.clone()));
        tracing::info!(export = %name, run_id = %run_id, trigger = trigger.as_str(), "run started");
        self.running.insert(
            name.to_owned(),
            Running {
                run_id: run_id.clone(),
                scheduled: trigger == Trigger::Schedule,
                started: now,
                stop,
            },
        );
        self.emit(Event::Started {
            export: name.to_owned(),
            run_id: run_id.clone(),
        });
        run_id
    }

    async fn finished(&mut self, done: Result<(tokio::task::Id, RunStatus), tokio::task::JoinError>) {
        let (id, status, abnormal) = match done {
            Ok((id, status)) => (id, status, None),
            Err(error) => (error.id(), RunStatus::Failed, Some(error.to_string())),
        };
        let Some((name, run_id)) = self.task_runs.remove(&id) else {
            return;
        };
        self.options
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(name.clone(), run_id.clone()));
        if self.running.get(&name).is_some_and(|r| r.run_id == run_id) {
            self.running.remove(&name);
        }
        // A bug, not an outcome: the run wrote no report, so the history gets its own line.
        if let Some(why) = abnormal {
            let why = format!("the run ended abnormally ({why}); its journal is kept, `run --resume` continues it");
            tracing::error!(export = %name, run_id = %run_id, "{why}");
            let entry = HistoryEntry::without_report(
                &name,
                &run_id,
                Trigger::Schedule,
                RunStatus::Failed,
                &now_rfc3339(),
                why,
            );
            self.history.append(entry).await;
        }
        tracing::info!(export = %name, run_id = %run_id, "scheduled run ended: {}", status.describe());
        self.emit(Event::Finished {
            export: name,
            run_id,
            status,
        });
    }
}

enum Woke {
    Finished(Result<(tokio::task::Id, RunStatus), tokio::task::JoinError>),
    Command(Command),
    Time,
}

fn describe(standing: &Standing) -> String {
    match standing {
        Standing::Scheduled(scheduled) => {
            let (pipeline, connection) = &**scheduled;
            let schedule = pipeline.schedule.as_ref();
            format!(
                "scheduled {:?} {:?} on {}",
                schedule.map(|s| &s.expression),
                schedule.map(|s| s.timezone.name()),
                connection.name
            )
        }
        Standing::OnDemand(runnable) => format!("on demand on {}", runnable.1.name),
        Standing::Disabled => "disabled".to_owned(),
        Standing::Broken(error) => format!("broken: {error}"),
        Standing::Unusable(error, schedule) => format!(
            "unusable: {error} (schedule {:?})",
            schedule.as_ref().map(|s| (&s.expression, s.timezone.name()))
        ),
    }
}

fn same_schedule(a: &Schedule, b: &Schedule) -> bool {
    (&a.expression, a.timezone) == (&b.expression, b.timezone)
}
