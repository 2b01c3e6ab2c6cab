//! The foundation's defects, each shown as it was seen: resumes that sent to the wrong place
//! or twice, a snapshot read differently from its listing, long SQL, personal data in
//! errors, late failures, bodies over the API's limit. Runs are stopped between batches by
//! holding the emulator's imports, never by the clock.

use std::path::{Path, PathBuf};

use cm_export::config::{Connection, Connections, Pipeline};
use cm_export::emulator::Emulator;
use cm_export::export::{self, ProgressMode, RunOptions, StopReason};
use cm_export::state::{History, Report, RunStatus};
use tokio::sync::oneshot;

use std::sync::LazyLock;

use crate::support::{KEY, LIST, all_profiles, emulator};

static PIPELINE: LazyLock<String> = LazyLock::new(|| {
    all_profiles(
        r#"[mapping]
email = "email"
[options]
batch-size = 100
concurrency = 1
max-concurrency = 1
"#,
    )
});

/// A folder with profiles, a key file and a connection to `emulator`.
fn folder(emulator: &Emulator, rows: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    cm_export::sample::generate(&dir.path().join("profiles"), rows, 2, 11).unwrap();
    std::fs::write(dir.path().join("key.txt"), KEY).unwrap();
    std::fs::write(dir.path().join("connections.toml"), connections(emulator)).unwrap();
    dir
}

fn connections(emulator: &Emulator) -> String {
    format!(
        "[cm]\ndisplay-name = \"T\"\ndata-privacy-consent = true\napi-key-file = \"key.txt\"\nexport-user = \"t\"\nbase-url = \"{}\"\n",
        emulator.base_url()
    )
}

fn definition(dir: &Path, name: &str, text: &str) -> Pipeline {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    Pipeline::load(&path).unwrap()
}

fn connection(dir: &Path) -> Connection {
    Connections::load(&dir.join("connections.toml"))
        .unwrap()
        .get("cm")
        .unwrap()
        .clone()
}

fn options(dir: &Path, resume: bool) -> RunOptions {
    RunOptions {
        state_dir: Some(dir.join("state")),
        resume,
        progress: ProgressMode::Never,
        ..RunOptions::default()
    }
}

async fn run_to_end(pipeline: &Pipeline, connection: &Connection, options: &RunOptions) -> Report {
    export::run(pipeline, connection, None, options, std::future::pending())
        .await
        .unwrap()
}

/// Runs until `batches` imports went through the held emulator, then interrupts; the batch in
/// flight at the stop is let through and counted.
async fn run_then_interrupt(
    emulator: &Emulator,
    pipeline: &Pipeline,
    connection: &Connection,
    options: &RunOptions,
    batches: usize,
) -> Report {
    emulator.hold_imports();
    emulator.release_imports(batches);
    let (stop, stopped) = oneshot::channel::<()>();
    let stop_signal = async move {
        let _ = stopped.await;
        StopReason::Interrupt
    };
    let run = export::run(pipeline, connection, None, options, stop_signal);
    let interrupt = async {
        emulator.imports_waiting(1).await;
        stop.send(()).unwrap();
        emulator.open_imports();
    };
    let (report, ()) = tokio::join!(run, interrupt);
    report.unwrap()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(files.len() >= 6, "{files:?}");
    files
}

fn journal_of(dir: &Path, export: &str) -> PathBuf {
    let runs = dir.join("state/runs").join(export);
    let run = std::fs::read_dir(&runs).unwrap().next().unwrap().unwrap().path();
    run.join("journal.jsonl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_towards_another_destination_is_refused() {
    // The first attempt ran with --sandbox; its list is not the real one.
    let sandbox = emulator().await;
    let real = emulator().await;
    let dir = folder(&real, 1000);
    let pipeline = definition(dir.path(), "all", PIPELINE.as_str());
    let mut in_sandbox = connection(dir.path());
    in_sandbox.base_url = cm_export::campaign_monitor::BaseUrl::parse(&sandbox.base_url()).unwrap();
    let sandboxed = RunOptions {
        sandbox: true,
        ..options(dir.path(), false)
    };
    let first = run_then_interrupt(&sandbox, &pipeline, &in_sandbox, &sandboxed, 3).await;
    assert_eq!(first.status, RunStatus::Interrupted);
    assert!(first.members_sent >= 300);

    let second = run_to_end(&pipeline, &connection(dir.path()), &options(dir.path(), true)).await;
    assert_eq!(second.status, RunStatus::Failed);
    let why = second.error.unwrap();
    assert!(
        why.contains(
            "the earlier attempt sent to the sandbox emulator (--sandbox), this one would send to `http://127.0.0.1:"
        ),
        "{why}"
    );
    assert!(why.contains("start a new run without --resume"), "{why}");
    assert_eq!(real.stats().import_calls, 0, "nothing reached the real list");

    // A new run sends everything to the real list.
    let fresh = run_to_end(&pipeline, &connection(dir.path()), &options(dir.path(), false)).await;
    assert_eq!(fresh.members_sent, fresh.members_unique);
    // Everything the state folder holds is its owner's alone.
    #[cfg(unix)]
    for file in files_under(&dir.path().join("state")) {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
}

/// An emulator, a folder of `rows` profiles, the `all` export and its connection.
async fn export_all(rows: u64) -> (Emulator, tempfile::TempDir, Pipeline, Connection) {
    let emulator = emulator().await;
    let dir = folder(&emulator, rows);
    let pipeline = definition(dir.path(), "all", PIPELINE.as_str());
    let connection = connection(dir.path());
    (emulator, dir, pipeline, connection)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_journal_line_is_cut_and_no_member_is_sent_twice() {
    let (emulator, dir, pipeline, connection) = export_all(1500).await;

    let first = run_then_interrupt(&emulator, &pipeline, &connection, &options(dir.path(), false), 3).await;
    assert_eq!(first.status, RunStatus::Interrupted);
    // A kill in the middle of writing a line.
    let journal = journal_of(dir.path(), "all");
    let mut text = std::fs::read(&journal).unwrap();
    text.extend_from_slice(br#"{"batch":7,"new":100,"existing":0,"emails":["torn@exa"#);
    std::fs::write(&journal, text).unwrap();

    let second = run_then_interrupt(&emulator, &pipeline, &connection, &options(dir.path(), true), 2).await;
    assert_eq!(second.status, RunStatus::Interrupted, "{:?}", second.error);
    let third = run_to_end(&pipeline, &connection, &options(dir.path(), true)).await;
    assert_eq!(third.status, RunStatus::SucceededWithRejects, "{:?}", third.error);

    let unique = third.members_unique;
    assert_eq!(third.members_sent, unique);
    assert_eq!(third.members_maybe_resent, 0, "every batch got its answer");
    let stats = emulator.stats();
    assert_eq!(
        stats.subscribers_received, unique,
        "each member reached the API exactly once"
    );
    assert_eq!(stats.lists[LIST].imported_existing, 0);

    // A bad line anywhere but at the end is refused, with its number.
    let mut lines: Vec<String> = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines[1] = "not a journal line".to_owned();
    std::fs::write(&journal, lines.join("\n") + "\n").unwrap();
    std::fs::remove_file(
        dir.path()
            .join("state/runs/all")
            .join(&third.run_id)
            .join("report.json"),
    )
    .unwrap();
    let refused = run_to_end(&pipeline, &connection, &options(dir.path(), true)).await;
    let why = refused.error.unwrap();
    assert!(why.contains("line 2 of the checkpoint"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_in_flight_at_a_kill_is_counted_as_re_sent() {
    let (emulator, dir, pipeline, connection) = export_all(600).await;
    let first = run_then_interrupt(&emulator, &pipeline, &connection, &options(dir.path(), false), 2).await;
    // As a kill leaves it: batch 2 left, its answer was never journaled.
    let journal = journal_of(dir.path(), "all");
    let text = std::fs::read_to_string(&journal).unwrap();
    let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with("{\"batch\":2,")).collect();
    assert_eq!(kept.len() + 1, text.lines().count(), "{text}");
    std::fs::write(&journal, kept.join("\n") + "\n").unwrap();
    assert_eq!(first.status, RunStatus::Interrupted);

    let second = run_to_end(&pipeline, &connection, &options(dir.path(), true)).await;
    assert_eq!(second.members_maybe_resent, 100, "{second:?}");
    assert!(second.summary().contains("100 members re-sent after a lost answer"));
    assert_eq!(emulator.stats().lists[LIST].imported_existing, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_pipeline_spelled_another_way_resumes() {
    let emulator = emulator().await;
    let dir = folder(&emulator, 600);
    definition(dir.path(), "all", PIPELINE.as_str());
    let connection = connection(dir.path());
    let dotted = Pipeline::load(&dir.path().join(".").join("all.toml")).unwrap();
    let first = run_then_interrupt(&emulator, &dotted, &connection, &options(dir.path(), false), 2).await;
    assert_eq!(first.status, RunStatus::Interrupted);
    let plain = Pipeline::load(&dir.path().join("all.toml")).unwrap();
    let second = run_to_end(&plain, &connection, &options(dir.path(), true)).await;
    assert!(second.resumed && second.error.is_none(), "{:?}", second.error);
    assert_eq!(emulator.stats().subscribers_received, second.members_unique);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_value_stops_the_run_before_anything_is_sent_and_stays_masked() {
    let emulator = emulator().await;
    let dir = folder(&emulator, 500);
    let pipeline = definition(
        dir.path(),
        "casts",
        &PIPELINE
            .replace(
                "SELECT * FROM profiles",
                "SELECT *, CAST(email AS BIGINT) AS n FROM profiles",
            )
            .replace("email = \"email\"", "email = \"email\"\ncustom-fields = { N = \"n\" }"),
    );
    emulator.with_list_mut(LIST, |list| {
        list.add_custom_field("N", "Text", vec![], true).unwrap();
    });
    let report = run_to_end(&pipeline, &connection(dir.path()), &options(dir.path(), false)).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(emulator.stats().import_calls, 0, "nothing was sent");
    let why = report.error.clone().unwrap();
    assert!(why.contains("Cast error") && why.contains("'***'"), "{why}");
    let history = History::new(&dir.path().join("state")).list(Some("casts"), 5).unwrap();
    let text = format!(
        "{why}\n{}\n{}",
        serde_json::to_string(&history).unwrap(),
        std::fs::read_to_string(report.report_file.as_ref().unwrap()).unwrap()
    );
    for word in text.split(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
        if let Some((local, _)) = word.split_once('@') {
            assert!(local.ends_with("***"), "an address left the run: {word}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_fails_mid_way_leaves_true_counts_and_a_readable_rejects_file() {
    let (emulator, dir, pipeline, connection) = export_all(1000).await;
    emulator.hold_imports();
    emulator.release_imports(3);
    let options = options(dir.path(), false);
    let run = run_to_end(&pipeline, &connection, &options);
    let remove = async {
        emulator.imports_waiting(1).await;
        // The list is deleted in Campaign Monitor while the run goes.
        emulator.remove_list(LIST);
        emulator.open_imports();
    };
    let (report, ()) = tokio::join!(run, remove);
    assert_eq!(report.status, RunStatus::Failed);
    assert!(
        report.error.as_deref().unwrap().contains("Invalid ListID"),
        "{:?}",
        report.error
    );
    assert_eq!(report.members_sent, 300);
    assert_eq!(report.rejected.api.get(&101), Some(&100));
    assert!(report.rows_matched >= report.members_unique && report.members_unique > 400);
    // The refused batch is answered in the journal: a resume will not count it as maybe landed.
    let journal = std::fs::read_to_string(journal_of(dir.path(), "all")).unwrap();
    assert!(journal.lines().any(|l| l == r#"{"refused":3}"#), "{journal}");
    let accounted = report.members_sent + report.rejected.api[&101] + report.rejected.not_sent;
    assert_eq!(accounted, report.members_unique, "{report:?}");
    let rejects = report.rejects_file.as_ref().unwrap();
    let rows: usize = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(rejects).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap()
    .map(|b| b.unwrap().num_rows())
    .sum();
    assert_eq!(rows as u64, report.rejected_rows());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_members_are_batched_under_the_request_size_limit() {
    let emulator = emulator().await;
    let dir = folder(&emulator, 1000);
    let fields: Vec<String> = (0..8).map(|i| format!("F{i} = \"wide\"")).collect();
    let pipeline = definition(
        dir.path(),
        "wide",
        &PIPELINE
            .replace(
                "SELECT * FROM profiles",
                "SELECT *, repeat('x', 250) AS wide FROM profiles",
            )
            .replace("batch-size = 100", "batch-size = 1000")
            .replace(
                "email = \"email\"",
                &format!("email = \"email\"\ncustom-fields = {{ {} }}", fields.join(", ")),
            ),
    );
    emulator.with_list_mut(LIST, |list| {
        for i in 0..8 {
            list.add_custom_field(&format!("F{i}"), "Text", vec![], true).unwrap();
        }
    });
    let report = run_to_end(&pipeline, &connection(dir.path()), &options(dir.path(), false)).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(report.members_sent, report.members_unique);
    let stats = emulator.stats();
    assert!(stats.import_calls >= 2, "{} calls", stats.import_calls);
    assert!(
        !stats.requests.values().any(|by_status| by_status.contains_key(&413)),
        "{:?}",
        stats.requests
    );
}

/// Why `plan` refused `pipeline`.
async fn plan_error(pipeline: &Pipeline) -> String {
    export::plan(pipeline, &RunOptions::default())
        .await
        .err()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn the_snapshot_read_is_the_snapshot_listed() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap");
    cm_export::sample::generate(&snap.join("region=RO"), 300, 1, 1).unwrap();
    cm_export::sample::generate(&snap.join("extra"), 300, 1, 2).unwrap();
    let folder_pipeline = |path: &str| {
        definition(
            dir.path(),
            "p",
            &PIPELINE.replace("path = \"profiles\"", &format!("path = \"{path}\"")),
        )
    };
    // A plain folder beside partition folders was silently left out.
    let error = plan_error(&folder_pipeline("snap")).await;
    assert!(
        error.contains("extra/part-00000.parquet")
            && error.contains("region=RO")
            && error.contains("same partition layout"),
        "{error}"
    );

    // A hidden file is refused by name, not read unlisted.
    std::fs::remove_dir_all(snap.join("extra")).unwrap();
    std::fs::copy(
        snap.join("region=RO/part-00000.parquet"),
        snap.join("region=RO/.tmp-part.parquet"),
    )
    .unwrap();
    let error = plan_error(&folder_pipeline("snap")).await;
    assert!(
        error.contains(".tmp-part.parquet") && error.contains("hidden"),
        "{error}"
    );

    // A glob across folders reads every file it matches, and says how many.
    let data = dir.path().join("data");
    cm_export::sample::generate(&data.join("a"), 200, 1, 3).unwrap();
    cm_export::sample::generate(&data.join("b"), 200, 1, 4).unwrap();
    let plan = export::plan(&folder_pipeline("data/*/*.parquet"), &RunOptions::default())
        .await
        .unwrap();
    assert_eq!((plan.source_files, plan.rows_matched), (2, 400));

    // A folder that loops on itself is a listing error, not a Parquet one.
    #[cfg(unix)]
    {
        let looped = dir.path().join("looped");
        std::fs::create_dir_all(&looped).unwrap();
        std::os::unix::fs::symlink(&looped, looped.join("again")).unwrap();
        let error = plan_error(&folder_pipeline("looped")).await;
        assert!(!error.contains("valid Parquet"), "{error}");
        assert!(error.contains("looped"), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_or_terms_validate_and_run_and_deeper_nesting_is_refused() {
    // The binary, with the stack its main thread has: this aborted the process before.
    let emulator = emulator().await;
    let dir = folder(&emulator, 2000);
    let terms: Vec<String> = (0..5000).map(|i| format!("customer_id = {i}")).collect();
    let deep = PIPELINE.replace(
        "SELECT * FROM profiles",
        &format!("SELECT * FROM profiles WHERE {}", terms.join(" OR ")),
    );
    std::fs::write(dir.path().join("deep.toml"), &deep).unwrap();
    let cm = |args: &[&str]| {
        let mut command = crate::support::command();
        command.args(args).current_dir(dir.path());
        crate::support::output(command)
    };
    let (code, stdout, stderr) = cm(&["validate", "deep.toml"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let (code, stdout, stderr) = cm(&["run", "deep.toml", "--progress", "never"]).await;
    assert!(code <= 1, "{stdout}\n{stderr}");
    assert!(stdout.contains("rows matched 2000"), "{stdout}");

    let chained: Vec<&str> = vec!["email"; 1500];
    let too_deep = PIPELINE.replace(
        "SELECT * FROM profiles",
        &format!("SELECT *, {} AS x FROM profiles", chained.join(" || ")),
    );
    std::fs::write(dir.path().join("too_deep.toml"), &too_deep).unwrap();
    let (code, _, stderr) = cm(&["validate", "too_deep.toml"]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("segment `all` nests an expression 1501 levels deep, past the 1000"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_custom_field_named_with_a_space_works_in_the_sandbox() {
    let emulator = emulator().await;
    let dir = folder(&emulator, 300);
    let pipeline = PIPELINE.replace(
        "email = \"email\"",
        "email = \"email\"\ncustom-fields = { \"Loyalty Tier\" = \"loyalty_tier\" }",
    );
    std::fs::write(dir.path().join("tiers.toml"), pipeline).unwrap();
    let mut command = crate::support::command();
    command
        .args(["run", "tiers.toml", "--sandbox", "--progress", "never"])
        .current_dir(dir.path());
    let (code, stdout, stderr) = crate::support::output(command).await;
    assert!(code <= 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("on the sandbox emulator (in place of `cm`)") && stdout.contains("now holds"),
        "{stdout}"
    );
    assert!(!stderr.contains("create it in Campaign Monitor"), "{stderr}");
}

#[tokio::test]
async fn plan_takes_the_connections_file_and_checks_the_connection() {
    let emulator = emulator().await;
    let dir = folder(&emulator, 200);
    std::fs::write(dir.path().join("all.toml"), PIPELINE.as_str()).unwrap();
    std::fs::write(
        dir.path().join("elsewhere.toml"),
        connections(&emulator).replace("data-privacy-consent = true\n", ""),
    )
    .unwrap();
    let plan = |args: &[&str]| {
        let mut command = crate::support::command();
        command
            .args(["plan", "all.toml", "--progress", "never"])
            .args(args)
            .current_dir(dir.path());
        crate::support::output(command)
    };
    let (code, stdout, stderr) = plan(&[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("on `cm` (T)"), "{stdout}");
    let (code, _, stderr) = plan(&["--connections", "elsewhere.toml"]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("no data-privacy consent"), "{stderr}");
    std::fs::remove_file(dir.path().join("connections.toml")).unwrap();
    let (code, stdout, _) = plan(&[]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("`cm` (not checked: no connections file)"), "{stdout}");
}

/// At real API latency the limit must rise to what the latency needs: here every answer comes
/// only when the test lets one through, and each one that comes while batches wait opens one
/// more slot, up to `max-concurrency` and never past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_rises_while_batches_wait_and_stops_at_max_concurrency() {
    let emulator = emulator().await;
    let dir = folder(&emulator, 0);
    cm_export::sample::generate(&dir.path().join("profiles"), 3000, 1, 11).unwrap();
    let text = PIPELINE.replace(
        "concurrency = 1\nmax-concurrency = 1",
        "concurrency = 2\nmax-concurrency = 5",
    );
    let pipeline = definition(dir.path(), "all", &text);
    let connection = connection(dir.path());
    emulator.hold_imports();
    let live = std::sync::Arc::new(export::Live::default());
    let options = RunOptions {
        live: Some(live.clone()),
        ..options(dir.path(), false)
    };
    let run = run_to_end(&pipeline, &connection, &options);
    let answer = async {
        let step = std::time::Duration::from_secs(60);
        // Batches wait once the batcher has queued them (the limit holds them back); the
        // first answer must come after that, or it rightly opens nothing. Two queued: one is
        // in the channel even if the other is still being handed over.
        emulator.imports_waiting(1).await;
        while live.snapshot()["batches_queued"].as_u64().unwrap_or(0) < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // The rate gate lets one request go alone until an answer says what the API's limit
        // is; then each answer lets one more in: 2 -> 3 -> 4 -> 5.
        for (released, in_flight) in [(0, 1), (1, 3), (1, 4), (1, 5)] {
            emulator.release_imports(released);
            tokio::time::timeout(step, emulator.imports_waiting(in_flight))
                .await
                .unwrap_or_else(|_| panic!("{in_flight} imports never came in flight"));
        }
        emulator.open_imports();
    };
    let (report, ()) = tokio::join!(run, answer);
    assert_eq!(report.status, RunStatus::SucceededWithRejects, "{report:?}");
    assert_eq!(report.members_sent, report.members_unique);
    assert_eq!(report.concurrency_peak, 5, "{report:?}");
    assert!(report.concurrency_at_end <= 5);
}
