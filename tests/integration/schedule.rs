//! The scheduler on a hand-moved clock: schedules fire, overlaps are skipped, the folder is
//! followed, runs stop when their definition or connection goes away, the lock is shared
//! with on-demand runs, and every outcome lands in the history.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use cm_export::config::{Connections, Pipeline};
use cm_export::emulator::Emulator;
use cm_export::export::{self, ExportError, RunOptions, StopReason};
use cm_export::schedule::{Event, ManualClock, ScheduleOptions, Scheduler};
use cm_export::state::{ExportLock, History, Holder, LockError, RunStatus, Trigger};
use tokio::sync::{mpsc, oneshot};

use crate::support::{KEY, LIST, active_emails, emulator};

/// A folder with profiles, a key file, `pipelines/connections.toml` and an emulator.
struct Folder {
    dir: tempfile::TempDir,
    emulator: Emulator,
}

fn connections(emulator: &Emulator) -> String {
    format!(
        "[cm]\ndisplay-name = \"Test account\"\ndata-privacy-consent = true\napi-key-file = \"../key.txt\"\nexport-user = \"scheduler@example.com\"\nbase-url = \"{}\"\n",
        emulator.base_url()
    )
}

/// `rows` profiles, a key and a connection to an emulator. A test that needs a run to last
/// while it acts holds the emulator's imports (`hold_imports`) and lets them through later.
async fn folder(rows: u64) -> Folder {
    let dir = tempfile::tempdir().unwrap();
    cm_export::sample::generate(&dir.path().join("profiles"), rows, 2, 11).unwrap();
    std::fs::write(dir.path().join("key.txt"), KEY).unwrap();
    let emulator = emulator().await;
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    std::fs::write(dir.path().join("pipelines/connections.toml"), connections(&emulator)).unwrap();
    Folder { dir, emulator }
}

fn definition(schedule: &str) -> String {
    format!(
        r#"
[source]
path = "../profiles"
[[segment]]
name = "all"
sql = "SELECT * FROM profiles"
[destination]
connection = "cm"
list-id = "{LIST}"
[mapping]
email = "email"
[options]
batch-size = 50
concurrency = 1
{schedule}
"#
    )
}

impl Folder {
    fn pipelines(&self) -> PathBuf {
        self.dir.path().join("pipelines")
    }

    /// Writes a definition as an editor saves it: whole, by renaming a finished file over it,
    /// so the scheduler never reads half of it.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.pipelines().join(format!("{name}.toml"));
        write_whole(&path, text);
        path
    }

    fn history(&self) -> History {
        History::new(&self.pipelines().join(".cm-export"))
    }
}

fn write_whole(path: &Path, text: &str) {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, path).unwrap();
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

/// A scheduler on `clock`, its events, and the way to stop it.
struct Running {
    events: mpsc::UnboundedReceiver<Event>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

fn start(folder: &Folder, clock: &ManualClock) -> Running {
    let (tx, events) = mpsc::unbounded_channel();
    let scheduler = Scheduler::new(ScheduleOptions::new(folder.pipelines()), clock.clock())
        .unwrap()
        .with_events(tx);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        scheduler
            .run(async {
                let _ = stopped.await;
            })
            .await;
    });
    Running {
        events,
        stop: Some(stop),
        task,
    }
}

impl Running {
    /// The first event `pick` takes, skipping the others. The timeout only keeps a broken
    /// scheduler from hanging the suite; nothing waits on it when things work.
    async fn until<T>(&mut self, what: &str, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
        let mut skipped = Vec::new();
        let found = tokio::time::timeout(Duration::from_secs(120), async {
            loop {
                let event = self.events.recv().await.expect("the scheduler ended");
                if let Some(found) = pick(&event) {
                    return found;
                }
                skipped.push(event);
            }
        })
        .await;
        // What came instead says what went wrong.
        found.unwrap_or_else(|_| panic!("no event: {what}; the scheduler said instead: {skipped:#?}"))
    }

    async fn started(&mut self, export: &str) -> String {
        self.until("started", |e| match e {
            Event::Started { export: x, run_id } if x == export => Some(run_id.clone()),
            _ => None,
        })
        .await
    }

    async fn finished(&mut self, run: &str) -> RunStatus {
        self.until("finished", |e| match e {
            Event::Finished { run_id, status, .. } if run_id == run => Some(*status),
            _ => None,
        })
        .await
    }

    async fn loaded(&mut self, export: &str) -> Option<DateTime<Utc>> {
        self.until("loaded", |e| match e {
            Event::Loaded { export: x, next } if x == export => Some(*next),
            _ => None,
        })
        .await
    }

    async fn shut_down(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(120), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

fn report(folder: &Folder, export: &str, run_id: &str) -> serde_json::Value {
    let path = folder
        .pipelines()
        .join(".cm-export/runs")
        .join(export)
        .join(run_id)
        .join("report.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_at_its_time_in_its_time_zone() {
    let folder = folder(600).await;
    folder.write(
        "nightly",
        &definition("[schedule]\ncron = \"0 3 * * *\"\ntimezone = \"Europe/Bucharest\"\n"),
    );
    folder.write("manual", &definition(""));
    // 03:00 in Bucharest is 01:00 UTC in November.
    let clock = ManualClock::new(at("2026-11-28T00:59:00Z"));
    let mut scheduler = start(&folder, &clock);
    assert_eq!(scheduler.loaded("manual").await, None, "no [schedule]: on demand only");
    let second = Scheduler::new(ScheduleOptions::new(folder.pipelines()), clock.clock())
        .err()
        .unwrap()
        .to_string();
    assert!(
        second.contains("another `cm-export schedule` already uses the state folder"),
        "{second}"
    );
    assert_eq!(scheduler.loaded("nightly").await, Some(at("2026-11-28T01:00:00Z")));
    assert_eq!(folder.emulator.stats().import_calls, 0);

    clock.advance(Duration::from_secs(60));
    let run_id = scheduler.started("nightly").await;
    assert_eq!(scheduler.finished(&run_id).await, RunStatus::SucceededWithRejects);

    let report = report(&folder, "nightly", &run_id);
    assert_eq!(report["trigger"], "schedule");
    assert_eq!(
        active_emails(&folder.emulator).len() as u64,
        report["members_sent"].as_u64().unwrap()
    );
    let history = folder.history().list(None, 10).unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].run_id, run_id);
    assert_eq!(history[0].trigger, Trigger::Schedule);
    assert_eq!(history[0].status, RunStatus::SucceededWithRejects);
    assert_eq!(history[0].members_sent, report["members_sent"].as_u64().unwrap());
    scheduler.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlapping_time_is_skipped_and_removing_the_file_cancels_the_run() {
    let folder = folder(3_000).await;
    let file = folder.write("minutely", &definition("[schedule]\ncron = \"* * * * *\"\n"));
    let clock = ManualClock::new(at("2026-11-28T02:59:59Z"));
    let mut scheduler = start(&folder, &clock);
    assert_eq!(scheduler.loaded("minutely").await, Some(at("2026-11-28T03:00:00Z")));
    // Two batches land; the third waits at the emulator while the test acts.
    folder.emulator.hold_imports();
    folder.emulator.release_imports(2);
    clock.advance(Duration::from_secs(1));
    let run_id = scheduler.started("minutely").await;
    folder.emulator.imports_waiting(1).await;

    clock.advance(Duration::from_secs(60));
    let running = scheduler
        .until("skipped", |e| match e {
            Event::Skipped { running, .. } => Some(running.clone()),
            _ => None,
        })
        .await;
    assert_eq!(running, run_id);

    std::fs::remove_file(&file).unwrap();
    clock.advance(Duration::from_secs(2));
    let reason = scheduler
        .until("cancelling", |e| match e {
            Event::Cancelling { run_id: r, reason, .. } if *r == run_id => Some(reason.clone()),
            _ => None,
        })
        .await;
    folder.emulator.open_imports();
    assert!(
        reason.contains("minutely.toml") && reason.contains("was removed"),
        "{reason}"
    );
    assert_eq!(scheduler.finished(&run_id).await, RunStatus::Cancelled);

    let report = report(&folder, "minutely", &run_id);
    assert_eq!(report["status"], "cancelled");
    assert!(report["error"].as_str().unwrap().contains("was removed"), "{report}");
    // Stopped before its next batch: part of the segment was sent, and the list holds
    // exactly what the report says.
    let sent = report["members_sent"].as_u64().unwrap();
    assert!(
        sent > 0 && sent < report["members_unique"].as_u64().unwrap(),
        "{report}"
    );
    assert_eq!(active_emails(&folder.emulator).len() as u64, sent);

    let history = folder.history().list(Some("minutely"), 10).unwrap();
    let statuses: Vec<RunStatus> = history.iter().map(|e| e.status).collect();
    assert!(
        statuses == [RunStatus::Cancelled, RunStatus::Skipped]
            || statuses == [RunStatus::Skipped, RunStatus::Cancelled],
        "{history:?}"
    );
    let skipped = history.iter().find(|e| e.status == RunStatus::Skipped).unwrap();
    assert!(skipped.message.as_deref().unwrap().contains(&run_id), "{skipped:?}");

    // Removed: its times no longer come.
    let calls = folder.emulator.stats().import_calls;
    clock.advance(Duration::from_secs(120));
    clock.advance(Duration::from_secs(2));
    folder.write("other", &definition(""));
    clock.advance(Duration::from_secs(2));
    scheduler.loaded("other").await;
    assert_eq!(folder.emulator.stats().import_calls, calls);
    scheduler.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_or_removing_the_connection_stops_the_run_at_once() {
    let folder = folder(3_000).await;
    let scheduled = definition("[schedule]\ncron = \"0 * * * *\"\n");
    let file = folder.write("hourly", &scheduled);
    let clock = ManualClock::new(at("2026-11-28T02:59:59Z"));
    let mut scheduler = start(&folder, &clock);
    scheduler.loaded("hourly").await;

    // Disable.
    folder.emulator.hold_imports();
    folder.emulator.release_imports(2);
    clock.advance(Duration::from_secs(1));
    let first = scheduler.started("hourly").await;
    folder.emulator.imports_waiting(1).await;
    write_whole(&file, &scheduled.replace("cron = ", "enabled = false\ncron = "));
    clock.advance(Duration::from_secs(2));
    assert_eq!(scheduler.loaded("hourly").await, None, "disabled: no next time");
    folder.emulator.open_imports();
    assert_eq!(scheduler.finished(&first).await, RunStatus::Cancelled);
    assert!(
        report(&folder, "hourly", &first)["error"]
            .as_str()
            .unwrap()
            .contains("enabled = false")
    );

    // Enable again; then remove its connection.
    write_whole(&file, &scheduled);
    clock.advance(Duration::from_secs(2));
    assert_eq!(scheduler.loaded("hourly").await, Some(at("2026-11-28T04:00:00Z")));
    folder.emulator.hold_imports();
    folder.emulator.release_imports(2);
    clock.advance(Duration::from_secs(3600));
    let second = scheduler.started("hourly").await;
    folder.emulator.imports_waiting(1).await;
    write_whole(
        &folder.pipelines().join("connections.toml"),
        &connections(&folder.emulator).replace("[cm]", "[renamed]"),
    );
    clock.advance(Duration::from_secs(2));
    let error = scheduler
        .until("broken", |e| match e {
            Event::Broken { export, error } if export == "hourly" => Some(error.clone()),
            _ => None,
        })
        .await;
    assert!(error.contains("connection `cm` is not defined"), "{error}");
    folder.emulator.open_imports();
    assert_eq!(scheduler.finished(&second).await, RunStatus::Cancelled);
    let report = report(&folder, "hourly", &second);
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("connection `cm` is not defined"),
        "{report}"
    );

    let statuses: Vec<RunStatus> = folder
        .history()
        .list(Some("hourly"), 10)
        .unwrap()
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(statuses, [RunStatus::Cancelled, RunStatus::Cancelled]);
    scheduler.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_and_broken_files_are_picked_up_without_a_restart() {
    let folder = folder(300).await;
    let clock = ManualClock::new(at("2026-11-28T02:58:00Z"));
    let mut scheduler = start(&folder, &clock);

    folder.write("late", &definition("[schedule]\ncron = \"0 3 * * *\"\n"));
    folder.write("broken", &definition("[schedule]\ncron = \"0 3 * *\"\n"));
    clock.advance(Duration::from_secs(2));
    let error = scheduler
        .until("broken", |e| match e {
            Event::Broken { export, error } if export == "broken" => Some(error.clone()),
            _ => None,
        })
        .await;
    assert!(
        error.contains("broken.toml") && error.contains("schedule.cron"),
        "{error}"
    );
    assert_eq!(scheduler.loaded("late").await, Some(at("2026-11-28T03:00:00Z")));

    clock.advance(Duration::from_secs(118));
    let run_id = scheduler.started("late").await;
    assert_eq!(scheduler.finished(&run_id).await, RunStatus::SucceededWithRejects);

    // Fixing the broken file schedules it.
    folder.write("broken", &definition("[schedule]\ncron = \"0 4 * * *\"\n"));
    clock.advance(Duration::from_secs(2));
    assert_eq!(scheduler.loaded("broken").await, Some(at("2026-11-28T04:00:00Z")));

    // A segment kept in its own file is followed too.
    let sql = folder.pipelines().join("segment.sql");
    std::fs::write(&sql, "SELECT * FROM profiles").unwrap();
    let with_file = definition("[schedule]\ncron = \"0 5 * * *\"\n")
        .replace("sql = \"SELECT * FROM profiles\"", "sql-file = \"segment.sql\"");
    folder.write("from_file", &with_file);
    clock.advance(Duration::from_secs(2));
    scheduler.loaded("from_file").await;
    std::fs::write(&sql, "SELECT * FROM profiles WHERE country = 'RO'").unwrap();
    clock.advance(Duration::from_secs(2));
    assert_eq!(scheduler.loaded("from_file").await, Some(at("2026-11-28T05:00:00Z")));

    // A half-saved connections file: the last good one is kept and exports stay scheduled.
    std::fs::write(folder.pipelines().join("connections.toml"), "[cm\ndisplay-name = ").unwrap();
    folder.write("probe", &definition("[schedule]\ncron = \"0 6 * * *\"\n"));
    clock.advance(Duration::from_secs(2));
    assert_eq!(scheduler.loaded("probe").await, Some(at("2026-11-28T06:00:00Z")));
    scheduler.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_is_shared_with_on_demand_runs_both_ways() {
    let folder = folder(3_000).await;
    let path = folder.write("shared", &definition("[schedule]\ncron = \"0 3 * * *\"\n"));
    let state_dir = folder.pipelines().join(".cm-export");
    let clock = ManualClock::new(at("2026-11-28T02:59:59Z"));
    let mut scheduler = start(&folder, &clock);
    scheduler.loaded("shared").await;

    // An on-demand run holds the export when the time comes: the scheduled run is skipped.
    let manual = Holder {
        run_id: "20261128T025950Z-abcd".into(),
        trigger: Trigger::Manual,
        pid: std::process::id(),
        started_at: "2026-11-28T02:59:50Z".into(),
    };
    let held = ExportLock::acquire(&state_dir, "shared", &manual).unwrap();
    clock.advance(Duration::from_secs(1));
    let refused = scheduler.started("shared").await;
    assert_eq!(scheduler.finished(&refused).await, RunStatus::Skipped);
    drop(held);
    let entry = &folder.history().list(Some("shared"), 1).unwrap()[0];
    assert_eq!((entry.status, entry.trigger), (RunStatus::Skipped, Trigger::Schedule));
    let message = entry.message.as_deref().unwrap();
    assert!(
        message.contains("run 20261128T025950Z-abcd (manual"),
        "the skip names the run that held the export: {message}"
    );

    // A scheduled run holds it: an on-demand run is refused and told which run has it.
    folder.emulator.hold_imports();
    folder.emulator.release_imports(2);
    clock.advance(Duration::from_secs(24 * 3600));
    let scheduled = scheduler.started("shared").await;
    folder.emulator.imports_waiting(1).await;
    let pipeline = Pipeline::load(&path).unwrap();
    let all = Connections::load(&folder.pipelines().join("connections.toml")).unwrap();
    let options = RunOptions::default();
    let outcome = export::run(
        &pipeline,
        all.get("cm").unwrap(),
        None,
        &options,
        std::future::pending::<StopReason>(),
    )
    .await;
    let Err(ExportError::Lock(error @ LockError::Held { .. })) = outcome else {
        panic!("the on-demand run was not refused: {outcome:?}");
    };
    let text = error.to_string();
    assert!(text.contains(&format!("run {scheduled} (schedule")), "{text}");
    let entry = &folder.history().list(Some("shared"), 1).unwrap()[0];
    assert_eq!((entry.status, entry.trigger), (RunStatus::Skipped, Trigger::Manual));

    // Stopping the scheduler interrupts its run, as a signal does; `--resume` continues it.
    scheduler.stop.take().unwrap().send(()).unwrap();
    scheduler
        .until("stopping", |e| matches!(e, Event::Stopping { runs: 1 }).then_some(()))
        .await;
    folder.emulator.open_imports();
    assert_eq!(scheduler.finished(&scheduled).await, RunStatus::Interrupted);
    tokio::time::timeout(Duration::from_secs(120), scheduler.task)
        .await
        .unwrap()
        .unwrap();
    let attempts = folder.history().run("shared", &scheduled).unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].status, attempts[0].trigger),
        (RunStatus::Interrupted, Trigger::Schedule)
    );
    let resumed = export::run(
        &pipeline,
        all.get("cm").unwrap(),
        None,
        &RunOptions {
            resume: true,
            ..RunOptions::default()
        },
        std::future::pending::<StopReason>(),
    )
    .await
    .unwrap();
    assert_eq!(resumed.run_id, scheduled);
    assert_eq!(resumed.status, RunStatus::SucceededWithRejects);
    assert_eq!(active_emails(&folder.emulator).len() as u64, resumed.members_unique);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_of_thousands_of_terms_runs_beside_the_others() {
    // 1,500 terms aborted the whole scheduler, and every run in it.
    let folder = folder(600).await;
    let terms: Vec<String> = (0..3000).map(|i| format!("customer_id = {i}")).collect();
    let deep = definition("[schedule]\ncron = \"0 3 * * *\"\n").replace(
        "sql = \"SELECT * FROM profiles\"",
        &format!("sql = \"SELECT * FROM profiles WHERE {}\"", terms.join(" OR ")),
    );
    folder.write("deep", &deep);
    folder.write("plain", &definition("[schedule]\ncron = \"0 3 * * *\"\n"));
    let clock = ManualClock::new(at("2026-11-28T02:59:59Z"));
    let mut scheduler = start(&folder, &clock);
    scheduler.loaded("deep").await;
    clock.advance(Duration::from_secs(1));
    let mut started = Vec::new();
    for _ in 0..2 {
        started.push(
            scheduler
                .until("started", |e| match e {
                    Event::Started { run_id, .. } => Some(run_id.clone()),
                    _ => None,
                })
                .await,
        );
    }
    // They finish in either order.
    let mut finished = Vec::new();
    while finished.len() < 2 {
        finished.push(
            scheduler
                .until("finished", |e| match e {
                    Event::Finished { run_id, status, .. } if started.contains(run_id) => Some(*status),
                    _ => None,
                })
                .await,
        );
    }
    assert_eq!(finished, [RunStatus::SucceededWithRejects; 2]);
    scheduler.shut_down().await;
}
