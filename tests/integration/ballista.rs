//! Exports whose queries run on a real Ballista cluster: the stock scheduler and executor
//! (the `ballista-scheduler` and `ballista-executor` examples, built with the feature
//! `ballista-cluster`) as processes of their own, reading the snapshot from the local S3
//! server `.ci/run` starts. Each list must equal the in-process run's, member by member.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use object_store::ObjectStoreExt;
use object_store::aws::AmazonS3Builder;

use crate::support::{KEY, LIST, active_emails, command, emulator, output, segment_members, server};

const SEGMENT: &str = "lifetime_value > 300";
const S3_KEY_ID: &str = "testing";
const S3_SECRET: &str = "testing-secret-b411";

/// A scheduler and an executor, killed when dropped.
struct Cluster {
    scheduler: u16,
    _processes: Vec<tokio::process::Child>,
    work: tempfile::TempDir,
}

impl Cluster {
    fn url(&self) -> String {
        format!("df://127.0.0.1:{}", self.scheduler)
    }

    /// How many tasks the executor has finished.
    fn tasks(&self) -> usize {
        std::fs::read_to_string(self.work.path().join("ballista-executor.log"))
            .unwrap()
            .matches("Finished task")
            .count()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The examples beside this test's binary (`target/debug/examples/`).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(Path::parent).unwrap().join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build --features ballista-cluster --examples`",
        path.display()
    );
    path
}

fn spawn(name: &str, args: &[String], work: &Path) -> tokio::process::Child {
    let log = std::fs::File::create(work.join(format!("{name}.log"))).unwrap();
    tokio::process::Command::new(example(name))
        .args(args)
        // The cluster's own credentials: the exporter never sends secrets in a session.
        .env("AWS_ACCESS_KEY_ID", S3_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
        .env("RUST_LOG", "warn,ballista_executor::executor_server=info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Starts a scheduler and one executor; returns once the executor says it is registered.
async fn cluster() -> Cluster {
    let work = tempfile::tempdir().unwrap();
    let scheduler = free_port();
    let (flight, grpc, health) = (free_port(), free_port(), free_port());
    let mut processes = vec![spawn(
        "ballista-scheduler",
        &[
            "--bind-host",
            "127.0.0.1",
            "--external-host",
            "127.0.0.1",
            "--bind-port",
        ]
        .map(String::from)
        .into_iter()
        .chain([scheduler.to_string()])
        .collect::<Vec<_>>(),
        work.path(),
    )];
    let args: Vec<String> = [
        ("--bind-host", "127.0.0.1".to_owned()),
        ("--external-host", "127.0.0.1".to_owned()),
        ("--bind-port", flight.to_string()),
        ("--bind-grpc-port", grpc.to_string()),
        ("--bind-health-port", health.to_string()),
        ("--scheduler-host", "127.0.0.1".to_owned()),
        ("--scheduler-port", scheduler.to_string()),
        // The scheduler may still be starting: keep trying for a while.
        ("--scheduler-connect-timeout-seconds", "60".to_owned()),
        ("--work-dir", work.path().display().to_string()),
        ("--vcores", "2".to_owned()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_owned(), value])
    .collect();
    processes.push(spawn("ballista-executor", &args, work.path()));
    let ready = format!("http://127.0.0.1:{health}/readyz");
    let client = reqwest::Client::new();
    // Starting is not mid-run: waiting for the processes to come up is bounded and polled.
    for _ in 0..600 {
        if let Ok(answer) = client.get(&ready).send().await
            && answer.status().is_success()
        {
            return Cluster {
                scheduler,
                _processes: processes,
                work,
            };
        }
        for process in &mut processes {
            if let Ok(Some(status)) = process.try_wait() {
                let logs = ["ballista-scheduler", "ballista-executor"]
                    .map(|name| std::fs::read_to_string(work.path().join(format!("{name}.log"))).unwrap_or_default());
                panic!("a cluster process exited ({status}):\n{}", logs.join("\n"));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the Ballista executor did not register with its scheduler in 60 s");
}

/// A bucket on the local S3 server holding the sample profiles in two files; returns the
/// bucket and the local copy.
async fn bucket(endpoint: &str, dir: &Path) -> String {
    let bucket = format!("cm-export-ballista-{:08x}", rand::random::<u32>());
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    let store = AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_bucket_name(&bucket)
        .with_region("us-east-1")
        .with_access_key_id(S3_KEY_ID)
        .with_secret_access_key(S3_SECRET)
        .build()
        .unwrap();
    for file in cm_export::sample::generate(&dir.join("profiles"), 3000, 2, 23).unwrap() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        store
            .put(
                &object_store::path::Path::from(format!("profiles/{name}")),
                std::fs::read(&file).unwrap().into(),
            )
            .await
            .unwrap();
    }
    bucket
}

/// One `cm-export run` of `export.toml` (extra arguments `args`) against a fresh emulator:
/// exit code, stderr, the report and the list's members.
async fn export(dir: &Path, args: &[&str]) -> (i32, String, serde_json::Value, BTreeSet<String>) {
    let emulator = emulator().await;
    std::fs::write(
        dir.join("connections.toml"),
        format!(
            "[cm]\ndisplay-name = \"T\"\ndata-privacy-consent = true\napi-key-env = \"CM_BALLISTA_TEST_KEY\"\nexport-user = \"t\"\nbase-url = \"{}\"\n",
            emulator.base_url()
        ),
    )
    .unwrap();
    let report = dir.join("report.json");
    let _ = std::fs::remove_file(&report);
    let mut run = command();
    run.args(["run", "export.toml", "--progress", "never", "--report", "report.json"])
        .args(args)
        .env("CM_BALLISTA_TEST_KEY", KEY)
        .env("RUST_LOG", "off")
        .env("CM_TEST_S3_KEY_ID", S3_KEY_ID)
        .env("CM_TEST_S3_SECRET", S3_SECRET)
        .current_dir(dir);
    let (code, _, stderr) = output(run).await;
    let report = std::fs::read_to_string(&report)
        .map(|text| serde_json::from_str(&text).unwrap())
        .unwrap_or(serde_json::Value::Null);
    (code, stderr, report, active_emails(&emulator))
}

fn definition(dir: &Path, path: &str, endpoint: &str, sql: &str, mode: &str) {
    std::fs::write(
        dir.join("export.toml"),
        format!(
            "[source]\npath = \"{path}\"\n[source.storage]\nendpoint = \"{endpoint}\"\nallow-http = true\nregion = \"us-east-1\"\n\
             access-key-id-env = \"CM_TEST_S3_KEY_ID\"\nsecret-access-key-env = \"CM_TEST_S3_SECRET\"\n\
             [[segment]]\nname = \"valuable\"\nsql = \"{sql}\"\n[[segment]]\nname = \"recent\"\n\
             sql = \"SELECT * FROM valuable WHERE lower(country) <> 'de'\"\n\
             [destination]\nconnection = \"cm\"\nlist-id = \"{LIST}\"\nsegments = [\"recent\"]\nmode = \"{mode}\"\n\
             [mapping]\nemail = \"email\"\nname = \"full_name\"\n[options]\nbatch-size = 400\n"
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_on_a_ballista_cluster_puts_the_same_members_on_the_list() {
    let Some(endpoint) = server("CM_TEST_S3_ENDPOINT", "a local S3 server (moto_server)") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket(&endpoint, dir.path()).await;
    let cluster = cluster().await;
    let engine = cluster.url();
    let select = format!("SELECT * FROM profiles WHERE {SEGMENT}");
    definition(
        dir.path(),
        &format!("s3://{bucket}/profiles/"),
        &endpoint,
        &select,
        "upsert",
    );

    let (code, stderr, in_process, here) = export(dir.path(), &[]).await;
    assert_eq!(code, 1, "in process: {stderr}");
    let (code, stderr, on_cluster, there) = export(dir.path(), &["--engine", &engine]).await;
    assert_eq!(code, 1, "on the cluster: {stderr}");
    assert!(cluster.tasks() > 0, "the executor ran no task");
    assert_eq!(on_cluster["engine"], engine.as_str());
    assert_eq!(in_process.get("engine"), None);
    let expected = segment_members(
        &dir.path().join("profiles"),
        &format!("SELECT email FROM profiles WHERE {SEGMENT} AND lower(country) <> 'de'"),
    )
    .await;
    assert!(!expected.is_empty());
    assert_eq!(here, expected);
    assert_eq!(there, here, "the cluster's list differs from the in-process one");
    for count in [
        "source_files",
        "rows_matched",
        "members_unique",
        "members_sent",
        "rejected",
    ] {
        assert_eq!(on_cluster[count], in_process[count], "{count}");
    }

    // `plan` on the cluster: the same counts and samples as in process.
    let plan = |engine: &str| {
        let mut plan = command();
        plan.args([
            "plan",
            "export.toml",
            "--json",
            "--progress",
            "never",
            "--engine",
            engine,
        ])
        .env("CM_TEST_S3_KEY_ID", S3_KEY_ID)
        .env("CM_TEST_S3_SECRET", S3_SECRET)
        .env("RUST_LOG", "off")
        .current_dir(dir.path());
        plan
    };
    let (code, here, stderr) = output(plan("in-process")).await;
    assert_eq!(code, 0, "{stderr}");
    let (code, there, stderr) = output(plan(&engine)).await;
    assert_eq!(code, 0, "{stderr}");
    let mut there: serde_json::Value = serde_json::from_str(&there).unwrap();
    assert_eq!(
        there.as_object_mut().unwrap().remove("engine").unwrap(),
        engine.as_str()
    );
    assert_eq!(there, serde_json::from_str::<serde_json::Value>(&here).unwrap());

    // `changes`: the diff against the synced state (which only this machine holds) is
    // joined here over the rows the cluster streams back; a second run sends nobody but
    // members whose rows disagree (the sample has such duplicates), whose first row is
    // whichever the cluster returns first.
    definition(
        dir.path(),
        &format!("s3://{bucket}/profiles/"),
        &endpoint,
        &select,
        "changes",
    );
    let (code, stderr, first, on_list) = export(dir.path(), &["--engine", &engine]).await;
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(on_list, expected);
    assert_eq!(first["members_sent"], in_process["members_sent"]);
    let (code, stderr, second, resent) = export(dir.path(), &["--engine", &engine]).await;
    assert_eq!(code, 1, "{stderr}");
    let disagreeing = segment_members(
        &dir.path().join("profiles"),
        "SELECT email FROM profiles WHERE lower(trim(email)) IN \
         (SELECT lower(trim(email)) FROM profiles GROUP BY 1 HAVING count(DISTINCT coalesce(full_name, '')) > 1)",
    )
    .await;
    assert!(
        resent.is_subset(&disagreeing),
        "unchanged members were sent again: {resent:?}"
    );
    let unchanged = second["members_unchanged"].as_u64().unwrap();
    assert_eq!(unchanged + resent.len() as u64, first["members_sent"].as_u64().unwrap());
    assert!(unchanged > 1000, "{second}");

    // A query that fails only when it runs fails on the cluster: a clear error, nothing sent.
    definition(
        dir.path(),
        &format!("s3://{bucket}/profiles/"),
        &endpoint,
        "SELECT * FROM profiles WHERE CAST(email AS INT) > 0",
        "upsert",
    );
    let (code, stderr, report, on_list) = export(dir.path(), &["--engine", &engine]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(on_list.is_empty());
    assert_eq!(report["members_sent"], 0);
    let said = format!("error: a query failed on the Ballista cluster at {engine}: ");
    assert!(
        stderr.starts_with(&said) && stderr.contains("Cannot cast string '***'"),
        "{stderr}"
    );
    drop(cluster);
}

/// What a user reads when the cluster cannot be used: an unreachable scheduler (nothing
/// sent), a store stock executors cannot read, an engine that is not a scheduler.
#[tokio::test]
async fn what_the_engine_errors_say() {
    let dir = tempfile::tempdir().unwrap();
    cm_export::sample::generate(&dir.path().join("profiles"), 200, 1, 5).unwrap();
    let port = free_port();
    let write = |path: &str, engine: &str| {
        std::fs::write(
            dir.path().join("export.toml"),
            format!(
                "[source]\npath = \"{path}\"\n[[segment]]\nname = \"all\"\nsql = \"SELECT * FROM profiles\"\n\
                 [destination]\nconnection = \"cm\"\nlist-id = \"{LIST}\"\n[mapping]\nemail = \"email\"\n{engine}"
            ),
        )
        .unwrap();
    };
    let mut all = String::new();
    write("profiles", &format!("[engine]\nballista = \"df://127.0.0.1:{port}\"\n"));
    let (code, stderr, report, on_list) = export(dir.path(), &[]).await;
    assert_eq!(
        (code, report["members_sent"].as_u64(), on_list.len()),
        (2, Some(0), 0),
        "{stderr}"
    );
    all.push_str(&format!("== unreachable (exit {code})\n{stderr}\n"));
    write(
        "az://profiles/2026/",
        "[engine]\nballista = \"df://cluster.internal\"\n",
    );
    let (code, stderr, _, _) = export(dir.path(), &[]).await;
    all.push_str(&format!("== azure on a cluster (exit {code})\n{stderr}\n"));
    write("profiles", "");
    let (code, stderr, _, _) = export(dir.path(), &["--engine", "http://127.0.0.1:50050"]).await;
    all.push_str(&format!("== not a scheduler (exit {code})\n{stderr}\n"));
    insta::with_settings!({ filters => vec![(port.to_string().as_str(), "[PORT]")] }, {
        insta::assert_snapshot!("ballista_errors", all);
    });
}
