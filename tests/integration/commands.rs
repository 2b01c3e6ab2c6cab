//! `connection list`, `connection test` and `history`, as a person runs them.

use std::path::Path;

use serde_json::Value;

use crate::support::{KEY, LIST, emulator, output};

const KEY_VAR: &str = "CM_COMMANDS_TEST_KEY";

async fn cm(dir: &Path, key: &str, args: &[&str]) -> (i32, String, String) {
    let mut command = crate::support::command();
    command
        .args(args)
        .env(KEY_VAR, key)
        .env_remove("CM_EXPORT_CONNECTIONS")
        .current_dir(dir);
    output(command).await
}

/// `pipelines/connections.toml` with a connection `cm` on `base_url`.
fn folder(base_url: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    std::fs::write(
        dir.path().join("pipelines/connections.toml"),
        format!(
            r#"
[cm]
display-name = "Campaign Monitor - Test"
usable-by = "admins-and-contributors"
data-privacy-consent = true
api-key-env = "{KEY_VAR}"
export-user = "ops@example.com"
base-url = "{base_url}"

[legacy]
display-name = "Old account"
api-key-file = "legacy.key"
export-user = "ops@example.com"
alert-webhook = "https://hooks.example.com/T0/B0/SECRET"
"#
        ),
    )
    .unwrap();
    dir
}

#[tokio::test]
async fn connection_test_checks_key_and_list_against_the_api() {
    let emulator = emulator().await;
    emulator.with_list_mut(LIST, |l| {
        for email in ["ada@example.com", "grace@example.com"] {
            let body = serde_json::json!({ "EmailAddress": email, "ConsentToTrack": "Yes" }).to_string();
            let subscriber = serde_json::from_str(&body).unwrap();
            l.add(subscriber, "2026-11-28 10:00:00".parse().unwrap()).unwrap();
        }
    });
    let dir = folder(&emulator.base_url());

    let (code, stdout, stderr) = cm(dir.path(), KEY, &["connection", "test", "cm", "--list", LIST]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("credentials accepted"), "{stdout}");
    assert!(
        stdout.contains(&format!("list {LIST} \"List One\": 2 active subscribers")),
        "{stdout}"
    );

    let (code, stdout, stderr) = cm(dir.path(), "wrong-key", &["connection", "test", "cm"]).await;
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("connection `cm`: the credentials were not accepted: Campaign Monitor refused them"),
        "{stderr}"
    );
    assert!(stderr.contains("code 50") && !stderr.contains("wrong-key"), "{stderr}");

    let unknown = "ffffffffffffffffffffffffffffffff";
    let (code, stdout, stderr) = cm(dir.path(), KEY, &["connection", "test", "cm", "--list", unknown]).await;
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stdout.contains("credentials accepted"), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "list `{unknown}` cannot be used: Campaign Monitor has no such list"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("code 101"), "{stderr}");

    // Nobody listens on port 9.
    let down = folder("http://127.0.0.1:9/api/v3.3");
    let (code, _, stderr) = cm(down.path(), KEY, &["connection", "test", "cm"]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("Campaign Monitor at http://127.0.0.1:9/api/v3.3 could not be reached"),
        "{stderr}"
    );

    let (code, _, stderr) = cm(dir.path(), KEY, &["connection", "test", "sales"]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("connection `sales` is not defined") && stderr.contains("`cm`, `legacy`"),
        "{stderr}"
    );
}

#[tokio::test]
async fn connection_list_says_where_credentials_are_never_what() {
    let dir = folder("http://127.0.0.1:9/api/v3.3");
    let (code, stdout, stderr) = cm(dir.path(), KEY, &["connection", "list"]).await;
    assert_eq!(code, 0, "{stderr}");
    let line = |name: &str| stdout.lines().find(|l| l.starts_with(name)).unwrap().to_owned();
    let cm_line = line("cm ");
    for part in [
        "Campaign Monitor - Test",
        "admins and contributors",
        "given",
        "API key",
        &format!("env {KEY_VAR} (set)"),
    ] {
        assert!(cm_line.contains(part), "{part}: {cm_line}");
    }
    let legacy = line("legacy");
    for part in [
        "Old account",
        "admins ",
        "NOT GIVEN",
        "legacy.key (missing)",
        "https://hooks.example.com/…",
    ] {
        assert!(legacy.contains(part), "{part}: {legacy}");
    }
    assert!(!stdout.contains(KEY) && !stdout.contains("SECRET"), "{stdout}");
}

#[tokio::test]
async fn history_lists_runs_and_shows_one() {
    let emulator = emulator().await;
    let dir = folder(&emulator.base_url());
    cm_export::sample::generate(&dir.path().join("profiles"), 300, 1, 9).unwrap();
    let definition = |list: &str| {
        format!(
            "[source]\npath = \"../profiles\"\n[[segment]]\nname = \"all\"\nsql = \"SELECT * FROM profiles\"\n[destination]\nconnection = \"cm\"\nlist-id = \"{list}\"\n[mapping]\nemail = \"email\"\n"
        )
    };
    std::fs::write(dir.path().join("pipelines/good.toml"), definition(LIST)).unwrap();
    std::fs::write(
        dir.path().join("pipelines/bad.toml"),
        definition("ffffffffffffffffffffffffffffffff"),
    )
    .unwrap();

    let (code, _, stderr) = cm(dir.path(), KEY, &["history"]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("no run history at `pipelines/.cm-export/history.redb`"),
        "{stderr}"
    );

    let (first, ..) = cm(dir.path(), KEY, &["run", "pipelines/good.toml"]).await;
    let (failed, ..) = cm(dir.path(), KEY, &["run", "pipelines/bad.toml"]).await;
    assert_eq!((first < 2, failed), (true, 2));

    let (code, stdout, _) = cm(dir.path(), KEY, &["history"]).await;
    assert_eq!(code, 0);
    let rows: Vec<&str> = stdout.lines().collect();
    assert!(
        rows[0].starts_with("STARTED (UTC)") && rows[0].contains("STATUS"),
        "{stdout}"
    );
    assert!(
        rows[1].contains(" bad ") && rows[1].contains("FAILED"),
        "newest first: {stdout}"
    );
    assert!(rows[2].contains(" good ") && rows[2].contains("manual"), "{stdout}");

    let (code, stdout, _) = cm(dir.path(), KEY, &["history", "good", "--json"]).await;
    assert_eq!(code, 0);
    let entries: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(entries.len(), 1);
    let run_id = entries[0]["run_id"].as_str().unwrap().to_owned();
    assert_eq!(entries[0]["trigger"], "manual");

    let (code, stdout, _) = cm(dir.path(), KEY, &["history", "good", &run_id]).await;
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&format!("export `good` run {run_id}: succeeded")),
        "{stdout}"
    );
    assert!(stdout.contains("rows matched 300"), "{stdout}");

    let (code, _, stderr) = cm(dir.path(), KEY, &["history", "good", "20200101T000000Z-0000"]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("has no run `20200101T000000Z-0000`"), "{stderr}");
}

#[tokio::test]
async fn schedule_logs_next_times_and_stops_cleanly_on_sigterm() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let dir = folder("http://127.0.0.1:9/api/v3.3");
    std::fs::write(
        dir.path().join("pipelines/yearly.toml"),
        format!(
            "[source]\npath = \"../profiles\"\n[[segment]]\nname = \"all\"\nsql = \"SELECT * FROM profiles\"\n[destination]\nconnection = \"cm\"\nlist-id = \"{LIST}\"\n[mapping]\nemail = \"email\"\n[schedule]\ncron = \"0 3 1 1 *\"\ntimezone = \"Europe/Bucharest\"\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("pipelines/typo.toml"), "[source]\npaht = \"x\"\n").unwrap();
    let mut child = crate::support::command()
        .args(["schedule", "pipelines"])
        .env(KEY_VAR, KEY)
        .env_remove("CM_EXPORT_CONNECTIONS")
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    // Reading the child's log until it has said what it will do: no clock is waited on.
    while !(seen.iter().any(|l: &String| l.contains("next run at")) && seen.iter().any(|l| l.contains("typo.toml"))) {
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap_or_else(|| panic!("the scheduler ended: {seen:#?}"));
        seen.push(line);
    }
    let log = seen.join("\n");
    assert!(
        log.contains("export=yearly") && log.contains("next run at 2027-01-01T03:00:00+02:00"),
        "{log}"
    );
    assert!(
        log.contains("not scheduled") && log.contains("paht"),
        "a broken file is reported: {log}"
    );

    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let mut rest = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push_str(&line);
        rest.push('\n');
    }
    assert!(rest.contains("scheduler stopped"), "{rest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_demand_run_stops_when_its_connection_is_removed() {
    let emulator = emulator().await;
    let dir = folder(&emulator.base_url());
    cm_export::sample::generate(&dir.path().join("profiles"), 3_000, 1, 9).unwrap();
    std::fs::write(
        dir.path().join("pipelines/slow.toml"),
        format!(
            "[source]\npath = \"../profiles\"\n[[segment]]\nname = \"all\"\nsql = \"SELECT * FROM profiles\"\n[destination]\nconnection = \"cm\"\nlist-id = \"{LIST}\"\n[mapping]\nemail = \"email\"\n[options]\nbatch-size = 10\nconcurrency = 1\n"
        ),
    )
    .unwrap();
    // Three batches land; the fourth waits at the emulator until the run has seen the removal.
    emulator.hold_imports();
    emulator.release_imports(3);
    let mut run = crate::support::command()
        .args([
            "run",
            "pipelines/slow.toml",
            "--report",
            "report.json",
            "--watch-every-ms",
            "20",
        ])
        .env(KEY_VAR, KEY)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(run.stderr.take().unwrap()));
    emulator.imports_waiting(1).await;
    let connections = dir.path().join("pipelines/connections.toml");
    let text = std::fs::read_to_string(&connections).unwrap();
    std::fs::write(&connections, text.replace("[cm]", "[cm_retired]")).unwrap();
    let mut stderr = crate::support::read_until(&mut lines, "no new batches").await;
    emulator.open_imports();
    let status = run.wait().await.unwrap();
    stderr.push_str(&crate::support::read_rest(lines).await);
    assert_eq!(status.code(), Some(2), "{stderr}");
    let report: Value = serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(report["status"], "cancelled");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("connection `cm` is not defined"),
        "{report}"
    );
    let sent = report["members_sent"].as_u64().unwrap();
    assert!(sent < report["members_unique"].as_u64().unwrap(), "{report}");
    assert_eq!(crate::support::active_emails(&emulator).len() as u64, sent);
}

#[tokio::test]
async fn connection_lists_and_fields_show_what_a_pipeline_can_name() {
    const SECOND: &str = "99bc35084a5739127a8ab81eae5bd305";
    let emulator =
        crate::support::emulator_with(|config| config.lists.push((SECOND.into(), "Newsletter".into()))).await;
    emulator.with_list_mut(LIST, |l| {
        for email in ["ada@example.com", "grace@example.com"] {
            let body = serde_json::json!({ "EmailAddress": email, "ConsentToTrack": "Yes" }).to_string();
            l.add(
                serde_json::from_str(&body).unwrap(),
                "2026-11-28 10:00:00".parse().unwrap(),
            )
            .unwrap();
        }
        l.add_custom_field("City", "Text", vec![], true).unwrap();
        let tiers = ["bronze", "silver", "gold"].map(String::from).to_vec();
        l.add_custom_field("Loyalty Tier", "MultiSelectOne", tiers, true)
            .unwrap();
    });
    let dir = folder(&emulator.base_url());

    let (code, stdout, stderr) = cm(dir.path(), KEY, &["connection", "lists", "cm"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    insta::assert_snapshot!("connection_lists", stdout);

    let (code, stdout, stderr) = cm(dir.path(), KEY, &["connection", "fields", "cm", "--list", LIST]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    insta::assert_snapshot!("connection_fields", stdout);

    let (code, stdout, _) = cm(dir.path(), KEY, &["connection", "fields", "cm", "--list", SECOND]).await;
    assert_eq!(code, 0);
    assert_eq!(stdout, format!("list {SECOND} \"Newsletter\" has no custom fields\n"));

    let unknown = "ffffffffffffffffffffffffffffffff";
    let (code, _, stderr) = cm(dir.path(), KEY, &["connection", "fields", "cm", "--list", unknown]).await;
    assert_eq!(code, 2);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "FAILED: connection `cm`: list `{unknown}` cannot be used: Campaign Monitor has no such list \
             for this account: \"Invalid ListID\" (code 101); check the list id"
        )
    );

    let (code, _, stderr) = cm(dir.path(), "wrong-key", &["connection", "lists", "cm"]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("FAILED: connection `cm`: its clients could not be listed: Campaign Monitor refused them")
            && !stderr.contains("wrong-key"),
        "{stderr}"
    );
}
