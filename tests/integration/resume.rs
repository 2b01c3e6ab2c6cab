//! A run killed with SIGKILL mid-way resumes without re-sending what was accepted, and
//! ends with exactly the expected list.

use std::time::Duration;

use serde_json::Value;

use crate::support::{KEY, LIST, active_emails, emulator_with, output, wait_for_imports};

const PIPELINE: &str = r#"
[source]
path = "profiles"
[[segment]]
name = "all"
sql = "SELECT * FROM profiles"
[destination]
connection = "cm"
list-id = "a58ee1d3039b8bec838e6d1482a8a965"
[mapping]
email = "email"
[options]
batch-size = 100
concurrency = 2
"#;

/// Sample data, a slow emulator and the definitions, in a fresh folder.
async fn setup(rows: u64, seed: u64) -> (tempfile::TempDir, cm_export::emulator::Emulator) {
    setup_with(rows, seed, (Duration::from_millis(15), Duration::from_millis(25))).await
}

async fn setup_with(
    rows: u64,
    seed: u64,
    latency: (Duration, Duration),
) -> (tempfile::TempDir, cm_export::emulator::Emulator) {
    let dir = tempfile::tempdir().unwrap();
    cm_export::sample::generate(&dir.path().join("profiles"), rows, 2, seed).unwrap();
    let emulator = emulator_with(|c| c.latency = Some(latency)).await;
    std::fs::write(
        dir.path().join("connections.toml"),
        format!(
            "[cm]\ndisplay-name = \"x\"\ndata-privacy-consent = true\napi-key-env = \"CM_RESUME_KEY\"\nexport-user = \"t\"\nbase-url = \"{}\"\n",
            emulator.base_url()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("all.toml"), PIPELINE).unwrap();
    (dir, emulator)
}

fn cm(dir: &std::path::Path, args: &[&str]) -> tokio::process::Command {
    let mut command = crate::support::command();
    command
        .args(args)
        .env("CM_RESUME_KEY", KEY)
        .current_dir(dir)
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn a_killed_run_resumes_where_it_stopped() {
    let (dir, emulator) = setup(12_000, 3).await;
    let (code, _, stderr) = output(cm(dir.path(), &["run", "all.toml", "--resume"])).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("no unfinished run"), "{stderr}");

    let mut child = cm(dir.path(), &["run", "all.toml", "--progress", "never"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Waiting on another process: poll the emulator until some batches have landed.
    wait_for_imports(&emulator, 20).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let before = emulator.stats();
    let landed = before.lists[LIST].members.get("Active").copied().unwrap_or(0);
    assert!(landed > 0 && before.import_calls < 110, "{}", before.import_calls);

    // A changed definition is refused.
    std::fs::write(
        dir.path().join("all.toml"),
        PIPELINE.replace("concurrency = 2", "concurrency = 3"),
    )
    .unwrap();
    let (code, _, stderr) = output(cm(dir.path(), &["run", "all.toml", "--resume"])).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("the pipeline definition changed"), "{stderr}");
    // The killed run never released its lock; the kernel did, and the next run says so.
    assert!(
        stderr.contains("cleared a stale lock: run ") && stderr.contains("ended without releasing it"),
        "{stderr}"
    );
    std::fs::write(dir.path().join("all.toml"), PIPELINE).unwrap();

    let (code, stdout, stderr) = output(cm(
        dir.path(),
        &["run", "all.toml", "--resume", "--report", "report.json"],
    ))
    .await;
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(report["resumed"], true);
    let unique = report["members_unique"].as_u64().unwrap();
    assert_eq!(report["members_sent"].as_u64().unwrap(), unique, "{report}");

    let after = emulator.stats();
    let on_list = active_emails(&emulator);
    assert_eq!(on_list.len() as u64, unique);
    // Only the batches in flight at the kill (at most `concurrency` of 100) can come again.
    assert!(
        after.lists[LIST].imported_existing <= 200,
        "{}",
        after.lists[LIST].imported_existing
    );
    assert_eq!(after.subscribers_received - after.lists[LIST].imported_existing, unique);
}

#[tokio::test]
async fn ctrl_c_stops_cleanly_and_the_run_resumes() {
    let (dir, emulator) = setup(8_000, 4).await;
    let child = cm(
        dir.path(),
        &["run", "all.toml", "--progress", "never", "--report", "first.json"],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    wait_for_imports(&emulator, 10).await;
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let first: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("first.json")).unwrap()).unwrap();
    assert_eq!(first["status"], "interrupted");
    let sent_first = first["members_sent"].as_u64().unwrap();
    assert!(
        sent_first > 0 && sent_first < first["members_unique"].as_u64().unwrap_or(u64::MAX),
        "{first}"
    );
    // Every batch in flight at the signal finished: what the list holds is what the report says.
    assert_eq!(active_emails(&emulator).len() as u64, sent_first);

    let (code, stdout, stderr) = output(cm(
        dir.path(),
        &["run", "all.toml", "--resume", "--report", "second.json"],
    ))
    .await;
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let second: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("second.json")).unwrap()).unwrap();
    assert_eq!(second["run_id"], first["run_id"]);
    assert_eq!(second["members_sent"], second["members_unique"]);
    assert_eq!(
        active_emails(&emulator).len() as u64,
        second["members_unique"].as_u64().unwrap()
    );
    assert_eq!(emulator.stats().lists[LIST].imported_existing, 0);
}

#[tokio::test]
async fn a_second_signal_stops_at_once_and_the_run_still_resumes() {
    // Slow answers: the first signal has to wait for the batch in flight; the second does not.
    let latency = Duration::from_millis(1500);
    let (dir, emulator) = setup_with(2_000, 8, (latency, latency)).await;
    std::fs::write(
        dir.path().join("all.toml"),
        PIPELINE
            .replace("batch-size = 100", "batch-size = 1000")
            .replace("concurrency = 2", "concurrency = 1"),
    )
    .unwrap();
    let child = cm(dir.path(), &["run", "all.toml", "--progress", "never"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_imports(&emulator, 1).await;
    // The first batch is answered; a moment later the second is in flight for 1.5 s.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.id().unwrap().to_string();
    for _ in 0..2 {
        assert!(
            std::process::Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap()
                .success()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("second signal: stopping now"), "{stderr}");

    let (code, stdout, stderr) = output(cm(dir.path(), &["run", "all.toml", "--resume", "--report", "r.json"])).await;
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stderr.contains("cleared a stale lock"), "{stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(report["resumed"], true);
    assert_eq!(
        active_emails(&emulator).len() as u64,
        report["members_unique"].as_u64().unwrap()
    );
}
