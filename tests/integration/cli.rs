//! The binary end to end: generated Parquet, an in-process emulator, the list checked
//! member by member, the report's counts, the rejects file and exit codes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cm_export::emulator::{Emulator, MemberState};
use datafusion::arrow::array::{ArrayRef, BooleanArray, Date32Array, Float64Array, RecordBatch, StringArray};
use datafusion::parquet::arrow::ArrowWriter;
use serde_json::Value;

use crate::support::{KEY, LIST, emulator, output};

const KEY_VAR: &str = "CM_EXPORT_TEST_KEY";

/// Ten rows with every defect: ids 0..9.
fn write_profiles(dir: &Path) -> PathBuf {
    let path = dir.join("profiles.parquet");
    let emails = vec![
        Some("ana@example.com"),
        Some("  Bob@Example.com "),
        Some("bob@example.com"),
        None,
        Some("   "),
        Some("not-an-email"),
        Some("cara@example.org"),
        Some("dan@example.net"),
        Some("long@example.com"),
        Some("poor@example.com"),
    ];
    let long_city = "x".repeat(300);
    let cities = vec![
        "Cluj",
        "Iasi",
        "Iasi",
        "Arad",
        "Arad",
        "Arad",
        "Sibiu",
        "Brasov",
        long_city.as_str(),
        "Deva",
    ];
    let value = vec![
        1500.0, 2000.0, 2100.0, 3000.0, 3000.0, 3000.0, 1200.0, 5000.0, 1800.0, 10.0,
    ];
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("email", Arc::new(StringArray::from(emails))),
        (
            "full_name",
            Arc::new(StringArray::from(
                (0..10).map(|i| format!("Person {i}")).collect::<Vec<_>>(),
            )),
        ),
        ("city", Arc::new(StringArray::from(cities))),
        ("lifetime_value", Arc::new(Float64Array::from(value))),
        ("signup_date", Arc::new(Date32Array::from(vec![19_000; 10]))),
        (
            "consent",
            Arc::new(BooleanArray::from(vec![
                true, false, true, true, true, true, true, false, true, true,
            ])),
        ),
    ];
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    path
}

struct Setup {
    dir: tempfile::TempDir,
    emulator: Emulator,
}

impl Setup {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        write_profiles(dir.path());
        let emulator = emulator().await;
        emulator.with_list_mut(LIST, |l| {
            l.add_custom_field("City", "Text", vec![], true).unwrap();
            l.add_custom_field("Since", "Date", vec![], true).unwrap();
        });
        std::fs::write(
            dir.path().join("connections.toml"),
            format!(
                r#"
[marketing]
display-name = "Marketing (test)"
data-privacy-consent = true
api-key-env = "{KEY_VAR}"
export-user = "tester@example.com"
base-url = "{}"
"#,
                emulator.base_url()
            ),
        )
        .unwrap();
        Self { dir, emulator }
    }

    fn pipeline(&self, name: &str, body: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, body).unwrap();
        path
    }

    async fn cm(&self, args: &[&str]) -> (i32, String, String) {
        let mut command = crate::support::command();
        command
            .args(args)
            .env(KEY_VAR, KEY)
            .env("RUST_LOG", "cm_export=debug")
            .env_remove("CM_EXPORT_CONNECTIONS")
            .current_dir(self.dir.path());
        output(command).await
    }

    fn report(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir.path().join("report.json")).unwrap()).unwrap()
    }
}

const GOOD: &str = r#"
[source]
path = "profiles.parquet"

[[segment]]
name = "valuable"
sql = "SELECT * FROM profiles WHERE lifetime_value > 1000"

[destination]
connection = "marketing"
list-id = "a58ee1d3039b8bec838e6d1482a8a965"

[mapping]
email = "email"
name = "full_name"
consent-to-track = { column = "consent" }
custom-fields = { City = "city", Since = "signup_date" }

[options]
batch-size = 2
concurrency = 3
"#;

#[tokio::test]
async fn exports_a_segment_and_accounts_for_every_row() {
    let s = Setup::new().await;
    let pipeline = s.pipeline("valuable", GOOD);
    let (code, stdout, stderr) = s
        .cm(&[
            "run",
            pipeline.to_str().unwrap(),
            "--report",
            "report.json",
            "--progress",
            "never",
        ])
        .await;
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("succeeded with rejected rows"), "{stdout}");

    // The list, member by member.
    let members = s
        .emulator
        .with_list(LIST, |l| {
            let mut m: Vec<_> = l
                .members
                .values()
                .map(|m| {
                    (
                        m.email().to_owned(),
                        m.name().to_owned(),
                        m.consent_to_track.as_str(),
                        m.custom_fields.clone(),
                        m.state,
                    )
                })
                .collect();
            m.sort();
            m
        })
        .unwrap();
    let fields = |city: &str| {
        vec![
            ("City".to_owned(), city.to_owned()),
            ("Since".to_owned(), "2022/01/08".to_owned()),
        ]
    };
    assert_eq!(
        members,
        vec![
            (
                "Bob@Example.com".into(),
                "Person 1".into(),
                "No",
                fields("Iasi"),
                MemberState::Active
            ),
            (
                "ana@example.com".into(),
                "Person 0".into(),
                "Yes",
                fields("Cluj"),
                MemberState::Active
            ),
            (
                "cara@example.org".into(),
                "Person 6".into(),
                "Yes",
                fields("Sibiu"),
                MemberState::Active
            ),
            (
                "dan@example.net".into(),
                "Person 7".into(),
                "No",
                fields("Brasov"),
                MemberState::Active
            ),
        ]
    );

    let report = s.report();
    assert_eq!(report["status"], "succeeded_with_rejects");
    assert_eq!(report["export"], "valuable");
    assert_eq!(report["export_user"], "tester@example.com");
    assert_eq!(report["rows_matched"], 9);
    assert_eq!(report["members_unique"], 4);
    assert_eq!(report["members_sent"], 4);
    assert_eq!(report["members_new"], 4);
    let rejected = &report["rejected"];
    assert_eq!(
        (
            &rejected["missing_email"],
            &rejected["invalid_email"],
            &rejected["invalid_field"],
            &rejected["duplicate"]
        ),
        (&Value::from(2), &Value::from(1), &Value::from(1), &Value::from(1))
    );
    let sum: u64 = ["members_unique"]
        .iter()
        .map(|k| report[k].as_u64().unwrap())
        .sum::<u64>()
        + ["missing_email", "invalid_email", "invalid_field", "duplicate"]
            .iter()
            .map(|k| rejected[k].as_u64().unwrap())
            .sum::<u64>();
    assert_eq!(sum, report["rows_matched"].as_u64().unwrap());
    assert_eq!(report["batches"], 2);
    assert_eq!(s.emulator.stats().import_calls, 2);

    // The rejects file: every row not exported but the duplicate.
    let rejects = s.dir.path().join("report-rejects.parquet");
    assert_eq!(report["rejects_file"], rejects.to_str().unwrap());
    let ctx = datafusion::prelude::SessionContext::new();
    let frame = ctx
        .read_parquet(rejects.to_str().unwrap(), Default::default())
        .await
        .unwrap()
        .sort(vec![datafusion::prelude::col("reason").sort(true, true)])
        .unwrap();
    let batches = frame.collect().await.unwrap();
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    for needle in [
        "invalid_email",
        "not-an-email",
        "missing_email",
        "invalid_field",
        "long@example.com",
        "city",
    ] {
        assert!(text.contains(needle), "{needle} in\n{text}");
    }
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 4);
    // No address in the logs unmasked, no key anywhere.
    assert!(!stderr.contains("ana@example.com") && !stderr.contains(KEY), "{stderr}");
    assert!(!stdout.contains(KEY));

    // A second run finds everyone there already.
    let (code, _, _) = s
        .cm(&[
            "run",
            pipeline.to_str().unwrap(),
            "--report",
            "report.json",
            "--progress",
            "never",
        ])
        .await;
    assert_eq!(code, 1);
    assert_eq!(s.report()["members_existing"], 4);
}

#[tokio::test]
async fn plan_and_validate_send_nothing() {
    let s = Setup::new().await;
    let pipeline = s.pipeline("valuable", GOOD);
    let (code, stdout, stderr) = s
        .cm(&["plan", pipeline.to_str().unwrap(), "--json", "--progress", "never"])
        .await;
    assert_eq!(code, 0, "{stderr}");
    let plan: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(plan["segments"]["valuable"], 9);
    assert_eq!(plan["members_unique"], 4);
    assert_eq!(plan["batches"], 2);
    assert_eq!(plan["rejected"]["invalid_email"], 1);
    assert!(
        plan["samples"][0].as_str().unwrap().contains("a***@example.com"),
        "{plan}"
    );
    let (code, stdout, stderr) = s.cm(&["validate", pipeline.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ok `"), "{stdout}");
    assert_eq!(s.emulator.stats().requests.len(), 0);
}

/// Each bad input: exit 2, a message naming what is wrong, and no import call.
#[tokio::test]
async fn refusals_name_the_problem_and_send_nothing() {
    let s = Setup::new().await;
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "ddl",
            GOOD.replace(
                "SELECT * FROM profiles WHERE lifetime_value > 1000",
                "CREATE TABLE x AS SELECT 1",
            ),
            "segment `valuable` is not a valid read-only query",
        ),
        (
            "dml",
            GOOD.replace(
                "SELECT * FROM profiles WHERE lifetime_value > 1000",
                "INSERT INTO profiles SELECT * FROM profiles",
            ),
            "segment `valuable`",
        ),
        (
            "set",
            GOOD.replace(
                "SELECT * FROM profiles WHERE lifetime_value > 1000",
                "SET datafusion.execution.batch_size = 1",
            ),
            "segment `valuable`",
        ),
        (
            "two_statements",
            GOOD.replace("lifetime_value > 1000\"", "lifetime_value > 1000; SELECT 1\""),
            "segment `valuable`",
        ),
        ("syntax", GOOD.replace("SELECT *", "SELEC *"), "segment `valuable`"),
        (
            "unknown_column",
            GOOD.replace("lifetime_value > 1000", "lifetime > 1000"),
            "lifetime",
        ),
        (
            "unknown_table",
            GOOD.replace("FROM profiles", "FROM profile"),
            "profile",
        ),
        (
            "missing_column",
            GOOD.replace("name = \"full_name\"", "name = \"nickname\""),
            "`nickname`",
        ),
        (
            "not_string",
            GOOD.replace("email = \"email\"", "email = \"lifetime_value\""),
            "not a string",
        ),
        (
            "misspelt_key",
            GOOD.replace("batch-size = 2", "batch-sise = 2"),
            "batch-sise",
        ),
        (
            "batch_zero",
            GOOD.replace("batch-size = 2", "batch-size = 0"),
            "options.batch-size",
        ),
        (
            "batch_big",
            GOOD.replace("batch-size = 2", "batch-size = 1001"),
            "between 1 and 1000",
        ),
        (
            "no_email",
            GOOD.replace("email = \"email\"\n", ""),
            "missing field `email`",
        ),
        (
            "unknown_connection",
            GOOD.replace("connection = \"marketing\"", "connection = \"sales\""),
            "`sales`",
        ),
        (
            "no_file",
            GOOD.replace("profiles.parquet", "nothing/*.parquet"),
            "matches nothing",
        ),
        ("unknown_list", GOOD.replace(LIST, "0000"), "list `0000`"),
        (
            "over_cap",
            GOOD.replace("concurrency = 3", "concurrency = 3\nmax-profiles = 3"),
            "max-profiles",
        ),
    ];
    for (name, body, needle) in cases {
        let pipeline = s.pipeline(name, &body);
        let (code, stdout, stderr) = s.cm(&["run", pipeline.to_str().unwrap(), "--progress", "never"]).await;
        assert_eq!(code, 2, "{name}: stdout {stdout}\nstderr {stderr}");
        assert!(stderr.contains(needle), "{name}: `{needle}` not in\n{stderr}");
    }
    assert_eq!(s.emulator.stats().import_calls, 0);
}

#[tokio::test]
async fn connection_refusals() {
    let s = Setup::new().await;
    let pipeline = s.pipeline("valuable", GOOD);
    let connections = s.dir.path().join("connections.toml");
    let original = std::fs::read_to_string(&connections).unwrap();

    std::fs::write(&connections, original.replace("data-privacy-consent = true\n", "")).unwrap();
    let (code, _, stderr) = s.cm(&["run", pipeline.to_str().unwrap()]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("data-privacy-consent = true"), "{stderr}");

    std::fs::write(&connections, original.replace(KEY_VAR, "CM_EXPORT_TEST_UNSET_VAR")).unwrap();
    let (code, _, stderr) = s.cm(&["run", pipeline.to_str().unwrap()]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("`CM_EXPORT_TEST_UNSET_VAR` is not set"), "{stderr}");

    std::fs::write(&connections, &original).unwrap();
    let empty = crate::support::command()
        .args(["run", pipeline.to_str().unwrap()])
        .env(KEY_VAR, "  ")
        .current_dir(s.dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(empty.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&empty.stderr);
    assert!(stderr.contains(&format!("`{KEY_VAR}` is empty")), "{stderr}");

    let plain = original.replace("http://127.0.0.1", "http://cm.example.com");
    std::fs::write(&connections, plain).unwrap();
    let (code, _, stderr) = s.cm(&["run", pipeline.to_str().unwrap()]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("plain http"), "{stderr}");

    std::fs::write(&connections, original.replace("export-user", "export-usr")).unwrap();
    let (code, _, stderr) = s.cm(&["run", pipeline.to_str().unwrap()]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("export-usr"), "{stderr}");

    // A wrong key: the credential check fails before the scan, and the key is never shown.
    std::fs::write(&connections, &original).unwrap();
    let output = crate::support::command()
        .args(["run", pipeline.to_str().unwrap(), "--report", "report.json"])
        .env(KEY_VAR, "wrong-key-d41d8cd9")
        .env("RUST_LOG", "trace")
        .current_dir(s.dir.path())
        .output()
        .await
        .unwrap();
    let all = format!(
        "{}{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(s.dir.path().join("report.json")).unwrap()
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        all.contains("credentials of connection `marketing` were refused"),
        "{all}"
    );
    assert!(!all.contains("wrong-key-d41d8cd9"), "the key leaked");
    assert_eq!(s.emulator.stats().import_calls, 0);
}

#[tokio::test]
async fn a_segment_with_no_rows_succeeds_without_import_calls() {
    let s = Setup::new().await;
    let pipeline = s.pipeline("empty", &GOOD.replace("lifetime_value > 1000", "lifetime_value > 1e9"));
    let (code, stdout, stderr) = s
        .cm(&[
            "run",
            pipeline.to_str().unwrap(),
            "--report",
            "report.json",
            "--progress",
            "never",
        ])
        .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(s.report()["rows_matched"], 0);
    assert_eq!(s.report()["status"], "succeeded");
    assert_eq!(s.emulator.stats().import_calls, 0);
}

#[tokio::test]
async fn quickstart_runs_against_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = crate::support::command()
        .args([
            "run",
            "pipelines/quickstart.toml",
            "--sandbox",
            "--progress",
            "never",
            "--report",
        ])
        .arg(dir.path().join("report.json"))
        .current_dir(root)
        .env_remove("CM_API_KEY")
        .env_remove("CM_EXPORT_CONNECTIONS")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
    let sent = report["members_sent"].as_u64().unwrap();
    assert!(sent > 500, "{report}");
    assert_eq!(report["sandbox"], true);
    assert!(stdout.contains(&format!("now holds {sent} active members")), "{stdout}");
}

#[tokio::test]
async fn views_build_on_views_and_fields_are_formatted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = crate::support::command()
        .args(["plan", "pipelines/vip_romania.toml", "--json", "--progress", "never"])
        .current_dir(root)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    let vip = plan["segments"]["vip"].as_u64().unwrap();
    let vip_ro = plan["segments"]["vip_ro"].as_u64().unwrap();
    assert!(vip_ro > 0 && vip_ro < vip, "{plan}");
    assert_eq!(plan["rows_matched"].as_u64().unwrap(), vip_ro);
    let sample = plan["samples"][0].as_str().unwrap();
    // Dates as yyyy/mm/dd, numbers in plain decimal, strings as they are.
    let date = sample.split("SignupDate=").nth(1).unwrap().split(' ').next().unwrap();
    assert!(
        date.len() == 10 && date.as_bytes()[4] == b'/' && date.as_bytes()[7] == b'/',
        "{sample}"
    );
    assert!(
        sample.contains("LifetimeValue=") && sample.contains("Tier="),
        "{sample}"
    );
}

#[tokio::test]
async fn hive_partitions_become_columns() {
    let s = Setup::new().await;
    let profiles = s.dir.path().join("profiles.parquet");
    for country in ["RO", "DE"] {
        let part = s.dir.path().join("lake").join(format!("country={country}"));
        std::fs::create_dir_all(&part).unwrap();
        std::fs::copy(&profiles, part.join("part-0.parquet")).unwrap();
    }
    let body = GOOD
        .replace("path = \"profiles.parquet\"", "path = \"lake\"")
        .replace("lifetime_value > 1000", "lifetime_value > 1000 AND country = 'RO'");
    let pipeline = s.pipeline("lake", &body);
    let (code, stdout, stderr) = s
        .cm(&["plan", pipeline.to_str().unwrap(), "--json", "--progress", "never"])
        .await;
    assert_eq!(code, 0, "{stderr}");
    let plan: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(plan["source_files"], 2);
    assert_eq!(plan["rows_matched"], 9);
    assert_eq!(plan["members_unique"], 4);
}

#[tokio::test]
async fn a_corrupt_snapshot_is_refused_by_name() {
    let s = Setup::new().await;
    std::fs::write(s.dir.path().join("profiles.parquet"), b"PAR1 this is not parquet").unwrap();
    let pipeline = s.pipeline("valuable", GOOD);
    let (code, _, stderr) = s.cm(&["run", pipeline.to_str().unwrap(), "--progress", "never"]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("cannot read the Parquet snapshot at `") && stderr.contains("profiles.parquet"),
        "{stderr}"
    );
    assert_eq!(s.emulator.stats().import_calls, 0);
}
