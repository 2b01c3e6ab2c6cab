//! A run killed with SIGKILL mid-way resumes without re-sending what was accepted, and
//! ends with exactly the expected list.

use serde_json::Value;

use std::sync::LazyLock;

use crate::support::{KEY, LIST, active_emails, all_profiles, emulator, output, read_rest, read_until};

static PIPELINE: LazyLock<String> = LazyLock::new(|| {
    all_profiles(
        r#"[mapping]
email = "email"
[options]
batch-size = 100
concurrency = 2
max-concurrency = 2
"#,
    )
});

/// Sample data, an emulator and the definitions, in a fresh folder. Tests stop runs between
/// batches by holding the emulator's imports.
async fn setup(rows: u64, seed: u64) -> (tempfile::TempDir, cm_export::emulator::Emulator) {
    let dir = tempfile::tempdir().unwrap();
    cm_export::sample::generate(&dir.path().join("profiles"), rows, 2, seed).unwrap();
    let emulator = emulator().await;
    std::fs::write(
        dir.path().join("connections.toml"),
        format!(
            "[cm]\ndisplay-name = \"x\"\ndata-privacy-consent = true\napi-key-env = \"CM_RESUME_KEY\"\nexport-user = \"t\"\nbase-url = \"{}\"\n",
            emulator.base_url()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("all.toml"), PIPELINE.as_str()).unwrap();
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

    // Twenty batches land; the next ones wait at the emulator when the kill comes.
    emulator.hold_imports();
    emulator.release_imports(20);
    let mut child = cm(dir.path(), &["run", "all.toml", "--progress", "never"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    emulator.imports_waiting(1).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let before = emulator.stats();
    let landed = before.lists[LIST].members.get("Active").copied().unwrap_or(0);
    assert!(landed > 0 && before.import_calls == 20, "{}", before.import_calls);
    // What the killed run had in flight may still land, as it can in the wild.
    emulator.open_imports();

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
    std::fs::write(dir.path().join("all.toml"), PIPELINE.as_str()).unwrap();

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
    // Batches answered but not journaled when the kill came (at most `max-concurrency` of 100)
    // come again, and the report says how many members that was.
    let again = after.lists[LIST].imported_existing;
    let maybe = report["members_maybe_resent"].as_u64().unwrap();
    assert!(
        again <= maybe && maybe <= 200,
        "{again} landed twice, {maybe} said: {report}"
    );
    assert_eq!(after.subscribers_received - after.lists[LIST].imported_existing, unique);
}

#[tokio::test]
async fn ctrl_c_stops_cleanly_and_the_run_resumes() {
    let (dir, emulator) = setup(8_000, 4).await;
    emulator.hold_imports();
    emulator.release_imports(10);
    let mut child = cm(
        dir.path(),
        &["run", "all.toml", "--progress", "never", "--report", "first.json"],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stderr.take().unwrap()));
    emulator.imports_waiting(1).await;
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    // Once the run has taken the signal, the batches in flight may finish.
    let mut stderr = read_until(&mut lines, "no new batches").await;
    emulator.open_imports();
    let status = child.wait().await.unwrap();
    stderr.push_str(&read_rest(lines).await);
    assert_eq!(status.code(), Some(2), "{stderr}");
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
    // The second batch waits at the emulator: the first signal has to wait for it; the second
    // does not.
    let (dir, emulator) = setup(2_000, 8).await;
    std::fs::write(
        dir.path().join("all.toml"),
        PIPELINE
            .as_str()
            .replace("batch-size = 100", "batch-size = 1000")
            .replace("concurrency = 2", "concurrency = 1"),
    )
    .unwrap();
    emulator.hold_imports();
    emulator.release_imports(1);
    let mut child = cm(dir.path(), &["run", "all.toml", "--progress", "never"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stderr.take().unwrap()));
    emulator.imports_waiting(1).await;
    let pid = child.id().unwrap().to_string();
    let signal = || {
        assert!(
            std::process::Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap()
                .success()
        )
    };
    signal();
    let mut stderr = read_until(&mut lines, "no new batches").await;
    signal();
    let status = child.wait().await.unwrap();
    stderr.push_str(&read_rest(lines).await);
    emulator.open_imports();
    assert_eq!(status.code(), Some(130), "{stderr}");
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
