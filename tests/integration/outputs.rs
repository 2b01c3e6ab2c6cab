//! What people read, pinned whole: the run summary, `plan`, `validate`, `history`,
//! `connection list`, and the errors met most often. Run ids, ports, times, rates and paths
//! are masked; anything else that changes shows up in review as a snapshot diff.

use std::path::Path;

use crate::support::{KEY, command, emulator, output};

const PIPELINE: &str = r#"
description = "Valuable customers"
[source]
path = "profiles"
[[segment]]
name = "valuable"
sql = "SELECT * FROM profiles WHERE lifetime_value > 150"
[destination]
connection = "marketing"
list-id = "a58ee1d3039b8bec838e6d1482a8a965"
[mapping]
email = "email"
name = "full_name"
consent-to-track = "Yes"
[options]
batch-size = 100
concurrency = 2
"#;

const KEY_VAR: &str = "CM_OUTPUTS_TEST_KEY";

/// Masks what differs from run to run: the folder, run ids, ports, times, rates.
fn settings(dir: &Path) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    let canonical = std::fs::canonicalize(dir).unwrap();
    for path in [canonical.as_path(), dir] {
        settings.add_filter(&regex_escape(&path.display().to_string()), "[DIR]");
    }
    settings.add_filter(r"\d{8}T\d{6}Z-[0-9a-f]{4}", "[RUN]");
    settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]");
    settings.add_filter(
        r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?",
        "[TIME]",
    );
    settings.add_filter(r"in \d+\.\d+s", "in [SECONDS]s");
    settings.add_filter(r"at \d+ members/s", "at [RATE] members/s");
    settings.add_filter(r"\b\d+\.\d+ ?s\b", "[SECONDS]s");
    settings
}

fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

struct Folder {
    dir: tempfile::TempDir,
    _emulator: cm_export::emulator::Emulator,
}

async fn folder() -> Folder {
    let dir = tempfile::tempdir().unwrap();
    cm_export::sample::generate(&dir.path().join("profiles"), 400, 1, 21).unwrap();
    let emulator = emulator().await;
    std::fs::write(
        dir.path().join("connections.toml"),
        format!(
            "[marketing]\ndisplay-name = \"Campaign Monitor - Marketing\"\nusable-by = \"admins-and-contributors\"\ndata-privacy-consent = true\napi-key-env = \"{KEY_VAR}\"\nexport-user = \"data-eng@example.com\"\nbase-url = \"{}\"\n\n[sales]\ndisplay-name = \"Sales\"\napi-key-file = \"sales.key\"\nexport-user = \"sales@example.com\"\n",
            emulator.base_url()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("valuable.toml"), PIPELINE).unwrap();
    Folder {
        dir,
        _emulator: emulator,
    }
}

/// Runs the binary in the folder with the key set and logs off: exit code, stdout, stderr.
async fn cm(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut run = command();
    run.args(args).env(KEY_VAR, KEY).env("RUST_LOG", "off").current_dir(dir);
    output(run).await
}

#[tokio::test]
async fn what_a_run_plan_validate_history_and_connection_list_print() {
    let f = folder().await;
    let dir = f.dir.path();
    let settings = settings(dir);

    let (code, stdout, stderr) = cm(dir, &["validate", "valuable.toml"]).await;
    assert_eq!(code, 0, "{stderr}");
    settings.bind(|| insta::assert_snapshot!("validate", stdout));

    let (code, stdout, stderr) = cm(dir, &["plan", "valuable.toml", "--progress", "never"]).await;
    assert_eq!(code, 0, "{stderr}");
    settings.bind(|| insta::assert_snapshot!("plan", stdout));

    let (code, stdout, stderr) = cm(dir, &["run", "valuable.toml", "--progress", "never"]).await;
    assert_eq!(code, 1, "{stderr}");
    settings.bind(|| insta::assert_snapshot!("run_summary", stdout));

    let (code, stdout, stderr) = cm(dir, &["history", "--state-dir", ".cm-export"]).await;
    assert_eq!(code, 0, "{stderr}");
    settings.bind(|| insta::assert_snapshot!("history", stdout));

    let (code, stdout, stderr) = cm(dir, &["connection", "list", "--connections", "connections.toml"]).await;
    assert_eq!(code, 0, "{stderr}");
    settings.bind(|| insta::assert_snapshot!("connection_list", stdout));
}

#[tokio::test]
async fn the_errors_met_most_often() {
    let f = folder().await;
    let dir = f.dir.path();
    let cases: [(&str, String, &[&str]); 10] = [
        ("misspelt_key", PIPELINE.replace("batch-size", "batchsize"), &[]),
        (
            "unknown_connection",
            PIPELINE.replace("connection = \"marketing\"", "connection = \"marketting\""),
            &[],
        ),
        (
            "no_consent",
            PIPELINE.replace("connection = \"marketing\"", "connection = \"sales\""),
            &[],
        ),
        ("key_not_set", PIPELINE.to_owned(), &["unset-key"]),
        (
            "source_matches_nothing",
            PIPELINE.replace("path = \"profiles\"", "path = \"profile\""),
            &[],
        ),
        (
            "sql_unknown_table",
            PIPELINE.replace("FROM profiles", "FROM profile"),
            &[],
        ),
        (
            "mapped_column_missing",
            PIPELINE.replace("name = \"full_name\"", "name = \"fullname\""),
            &[],
        ),
        (
            "unknown_list",
            PIPELINE.replace("a58ee1d3039b8bec838e6d1482a8a965", "00000000000000000000000000000000"),
            &[],
        ),
        (
            "over_the_cap",
            PIPELINE.replace("concurrency = 2", "concurrency = 2\nmax-profiles = 10"),
            &[],
        ),
        ("nothing_to_resume", PIPELINE.to_owned(), &["--resume"]),
    ];
    let mut all = String::new();
    for (name, text, extra) in cases {
        let file = format!("{name}.toml");
        std::fs::write(dir.join(&file), text).unwrap();
        let mut args = vec!["run", file.as_str(), "--progress", "never"];
        let unset = extra.contains(&"unset-key");
        args.extend(extra.iter().filter(|a| **a != "unset-key"));
        let mut run = command();
        run.args(&args).env("RUST_LOG", "off").current_dir(dir);
        if !unset {
            run.env(KEY_VAR, KEY);
        }
        let (code, _, stderr) = output(run).await;
        all.push_str(&format!("== {name} (exit {code})\n{stderr}\n"));
    }
    settings(dir).bind(|| insta::assert_snapshot!("common_errors", all));
}

#[tokio::test]
async fn what_mirror_runs_and_their_plan_print() {
    let f = folder().await;
    let dir = f.dir.path();
    let settings = settings(dir);
    let define = |sql: &str| {
        let text = PIPELINE
            .replace(
                "sql = \"SELECT * FROM profiles WHERE lifetime_value > 150\"",
                &format!("sql = \"{sql}\""),
            )
            .replace("concurrency = 2", "concurrency = 2\nmax-removals = \"5%\"")
            .replace(
                "list-id = \"a58ee1d3039b8bec838e6d1482a8a965\"",
                "list-id = \"a58ee1d3039b8bec838e6d1482a8a965\"\nmode = \"mirror\"",
            );
        std::fs::write(dir.join("valuable.toml"), text).unwrap();
    };
    define("SELECT * FROM profiles WHERE lifetime_value > 150");
    let (code, first, stderr) = cm(dir, &["run", "valuable.toml", "--progress", "never"]).await;
    assert_eq!(code, 1, "{stderr}");

    // A narrower segment: a few members leave, within the bound; a few get another name.
    define(
        "SELECT email, CASE WHEN customer_id % 50 = 0 THEN upper(full_name) ELSE full_name END AS full_name FROM profiles WHERE lifetime_value > 155",
    );
    let (code, plan, stderr) = cm(dir, &["plan", "valuable.toml", "--progress", "never"]).await;
    assert_eq!(code, 0, "{stderr}");
    let (code, second, stderr) = cm(dir, &["run", "valuable.toml", "--progress", "never"]).await;
    assert_eq!(code, 1, "{stderr}");

    // Far narrower: over the bound, refused.
    define("SELECT * FROM profiles WHERE lifetime_value > 400");
    let (code, refused, stderr) = cm(dir, &["run", "valuable.toml", "--progress", "never"]).await;
    assert_eq!(code, 2, "{stderr}");
    let all = format!("== first run\n{first}\n== plan\n{plan}\n== second run\n{second}\n== refused\n{refused}{stderr}");
    settings.bind(|| insta::assert_snapshot!("mirror_runs", all));
}

#[tokio::test]
async fn what_the_user_commands_and_serve_print() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::create_dir(dir.join("pipelines")).unwrap();
    let mut all = String::new();
    for args in [
        &["user", "add", "ana", "--role", "admin"][..],
        &["user", "add", "bob", "--role", "contributor"],
        &["user", "add", "ana", "--role", "viewer"],
        &["user", "add", "a b", "--role", "viewer"],
        &["user", "token", "bob"],
        &["user", "remove", "nobody"],
        &["user", "list"],
        &["serve", "nowhere"],
    ] {
        let (code, stdout, stderr) = cm(dir, args).await;
        all.push_str(&format!("== {} (exit {code})\n{stdout}{stderr}\n", args.join(" ")));
    }
    let mut settings = settings(dir);
    settings.add_filter(r"cmx_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", "[TOKEN]");
    settings.bind(|| insta::assert_snapshot!("user_commands", all));
}
