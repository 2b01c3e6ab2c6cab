//! Shared helpers: an emulator in-process, a client for it, Parquet files to export.

use std::path::{Path, PathBuf};

use cm_export::campaign_monitor::{BaseUrl, Client, ClientOptions, Credentials, Secret};
use cm_export::emulator::{Emulator, EmulatorConfig};

pub const KEY: &str = "test-key-5f1c0ffee";
pub const LIST: &str = "a58ee1d3039b8bec838e6d1482a8a965";

/// A pipeline sending every row of `DIR/profiles` through connection `cm` to [`LIST`],
/// followed by `rest` (its `[mapping]` and `[options]`).
pub fn all_profiles(rest: &str) -> String {
    format!(
        "[source]\npath = \"profiles\"\n[[segment]]\nname = \"all\"\nsql = \"SELECT * FROM profiles\"\n[destination]\nconnection = \"cm\"\nlist-id = \"{LIST}\"\n{rest}"
    )
}

pub async fn emulator_with(change: impl FnOnce(&mut EmulatorConfig)) -> Emulator {
    let mut config = EmulatorConfig {
        api_keys: vec![KEY.into()],
        lists: vec![(LIST.into(), "List One".into())],
        ..EmulatorConfig::default()
    };
    change(&mut config);
    Emulator::start(config, ([127, 0, 0, 1], 0).into()).await.unwrap()
}

pub async fn emulator() -> Emulator {
    emulator_with(|_| {}).await
}

pub fn client(emulator: &Emulator, credentials: Credentials) -> Client {
    Client::new(
        BaseUrl::parse(&emulator.base_url()).unwrap(),
        &credentials,
        ClientOptions::default(),
    )
    .unwrap()
}

pub fn key_client(emulator: &Emulator) -> Client {
    client(emulator, Credentials::ApiKey(Secret::new(KEY)))
}

pub fn fixture(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cm-export"))
}

/// Variables the tool reads that a developer's shell may have set: a test's command starts
/// without them, so it behaves the same on every machine.
const TOOL_ENV: [&str; 3] = ["CM_EXPORT_CONNECTIONS", "RUST_LOG", "CM_API_KEY"];

/// The binary, in a clean environment (see [`TOOL_ENV`]).
pub fn command() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(bin());
    for name in TOOL_ENV {
        command.env_remove(name);
    }
    command.kill_on_drop(true);
    command
}

/// The list's active members, addresses lowercased.
pub fn active_emails(emulator: &Emulator) -> std::collections::BTreeSet<String> {
    emulator
        .with_list(LIST, |l| {
            l.members
                .values()
                .filter(|m| m.state == cm_export::emulator::MemberState::Active)
                .map(|m| m.email().to_ascii_lowercase())
                .collect()
        })
        .unwrap()
}

/// Reads a child's stderr until a line holds `needle`; returns what it read. The test waits
/// on what the run says, not on the clock; the minute only keeps a broken run from hanging.
pub async fn read_until(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    needle: &str,
) -> String {
    let mut seen = String::new();
    let found = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(needle) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "`{needle}` never came:\n{seen}");
    seen
}

/// The rest of a child's stderr, once it has ended.
pub async fn read_rest(mut lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>) -> String {
    let mut rest = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push_str(&line);
        rest.push('\n');
    }
    rest
}

/// Runs a command to its end: exit code (-1 for a signal), stdout, stderr.
pub async fn output(mut command: tokio::process::Command) -> (i32, String, String) {
    let out = command.output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The addresses `sql` (over `profiles` = the Parquet files at `data`) should put on the
/// list, normalised and deduped apart from the exporter's own pipeline.
pub async fn segment_members(data: &Path, sql: &str) -> std::collections::BTreeSet<String> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::prelude::{ParquetReadOptions, SessionContext};
    let ctx = SessionContext::new();
    ctx.register_parquet("profiles", data.to_str().unwrap(), ParquetReadOptions::default())
        .await
        .unwrap();
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut set = std::collections::BTreeSet::new();
    for batch in batches {
        let column =
            datafusion::arrow::compute::cast(batch.column(0), &datafusion::arrow::datatypes::DataType::Utf8).unwrap();
        let emails = column.as_string::<i32>();
        for i in 0..emails.len() {
            if let Ok(email) = cm_export::members::normalise(emails.is_valid(i).then(|| emails.value(i))) {
                set.insert(email.to_ascii_lowercase());
            }
        }
    }
    set
}

/// A server a test needs that `.ci/run` starts: its address from `variable`. Without it the
/// test says so in one loud line and passes, except under CI, where it fails.
pub fn server(variable: &str, what: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(address) if !address.is_empty() => Some(address),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI must start {what} and set {variable} (see .ci/run)")
        }
        _ => {
            eprintln!("SKIPPED: {what} is not running; set {variable} to run this test (.ci/run starts it)");
            None
        }
    }
}

/// `batch` as the only Parquet file of `DIR/profiles`.
pub fn write_profiles(dir: &Path, batch: &datafusion::arrow::array::RecordBatch) {
    let _ = std::fs::remove_dir_all(dir.join("profiles"));
    std::fs::create_dir(dir.join("profiles")).unwrap();
    let file = std::fs::File::create(dir.join("profiles/part-0.parquet")).unwrap();
    let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

/// An export as the library runs it: `text` as `DIR/export.toml`, connection `cm` to
/// `emulator` (the key in a file), state kept in `DIR/state`, no progress display.
pub fn local_export(
    emulator: &Emulator,
    dir: &Path,
    text: &str,
) -> (
    cm_export::config::Pipeline,
    cm_export::config::Connection,
    cm_export::export::RunOptions,
) {
    std::fs::write(dir.join("key.txt"), KEY).unwrap();
    std::fs::write(
        dir.join("connections.toml"),
        format!(
            "[cm]\ndisplay-name = \"T\"\ndata-privacy-consent = true\napi-key-file = \"key.txt\"\nexport-user = \"t\"\nbase-url = \"{}\"\n",
            emulator.base_url()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("export.toml"), text).unwrap();
    let pipeline = cm_export::config::Pipeline::load(&dir.join("export.toml")).unwrap();
    let connection = cm_export::config::Connections::load(&dir.join("connections.toml"))
        .unwrap()
        .get("cm")
        .unwrap()
        .clone();
    let options = cm_export::export::RunOptions {
        state_dir: Some(dir.join("state")),
        progress: cm_export::export::ProgressMode::Never,
        ..cm_export::export::RunOptions::default()
    };
    (pipeline, connection, options)
}

/// The code the emulator's authorize page sends `redirect` back with.
pub async fn authorization_code(emulator: &Emulator, client_id: &str, redirect: &str) -> String {
    let answer = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://{}/oauth", emulator.addr()))
        .query(&[
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("scope", "ManageLists,ImportSubscribers"),
            ("state", "st"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 302, "{client_id}");
    let back = url::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(back.as_str().split('?').next(), Some(redirect));
    let query: std::collections::HashMap<_, _> = back.query_pairs().into_owned().collect();
    assert_eq!(query["state"], "st");
    query["code"].clone()
}

/// The `columns` (text) of every row of a Parquet file, such as a rejects file.
pub fn text_rows(path: &Path, columns: &[&str]) -> Vec<Vec<Option<String>>> {
    use datafusion::arrow::array::{Array, AsArray};
    let reader = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(path).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let columns: Vec<_> = columns
            .iter()
            .map(|name| batch.column_by_name(name).unwrap().as_string::<i32>().clone())
            .collect();
        for i in 0..batch.num_rows() {
            rows.push(
                columns
                    .iter()
                    .map(|c| c.is_valid(i).then(|| c.value(i).to_owned()))
                    .collect(),
            );
        }
    }
    rows
}
