//! Reading from an object store: `cargo bench --bench stores`.
//!
//! Uploads the end-to-end benchmark's cached snapshot (10,000,000 rows in 8 files, or
//! `CM_BENCH_ROWS`) to a local S3 server (`moto_server`, from PyPI's `moto[server]`;
//! `CM_TEST_S3_ENDPOINT` names a running one, else the bench starts its own), then times
//! `plan` and `run` of the same export (about 1,000,000 members, to `cm-export emulator` in
//! its own process) from local disk and from `s3://`, one after the other, and prints the
//! ratios. Says so and stops when no S3 server can be had.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use object_store::ObjectStoreExt;
use object_store::aws::AmazonS3Builder;
use support::{Measured, connections, emulator, json_number, plan, rows, run, snapshot, threshold};

const LIST: &str = "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0";
const BUCKET: &str = "cm-export-bench";

/// An S3 server: the one `CM_TEST_S3_ENDPOINT` names, or a `moto_server` of our own.
fn s3_server() -> Option<(String, Option<Child>)> {
    if let Ok(endpoint) = std::env::var("CM_TEST_S3_ENDPOINT") {
        return Some((endpoint, None));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let endpoint = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((endpoint, Some(child)));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    None
}

fn upload(endpoint: &str, data: &Path) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let created = reqwest::Client::new()
            .put(format!("{endpoint}/{BUCKET}"))
            .send()
            .await
            .unwrap();
        assert!(
            created.status().is_success() || created.status().as_u16() == 409,
            "{}",
            created.status()
        );
        let store = AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_access_key_id("bench")
            .with_secret_access_key("bench")
            .build()
            .unwrap();
        for entry in std::fs::read_dir(data).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "parquet") {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let bytes = std::fs::read(&path).unwrap();
                store
                    .put(
                        &object_store::path::Path::from(format!("profiles/{name}")),
                        bytes.into(),
                    )
                    .await
                    .unwrap();
            }
        }
    });
}

fn main() {
    let Some((endpoint, mut moto)) = s3_server() else {
        println!(
            "stores bench skipped: no S3 server (`python3 -m pip install 'moto[server]'`, or set CM_TEST_S3_ENDPOINT)"
        );
        return;
    };
    let rows = rows();
    let data = snapshot(rows);
    upload(&endpoint, &data);
    let work = tempfile::tempdir().unwrap();
    let (mut emulator, base) = emulator(LIST);
    connections(work.path(), &base);
    let define = |name: &str, path: &str, storage: &str| {
        let pipeline = work.path().join(format!("{name}.toml"));
        std::fs::write(
            &pipeline,
            format!(
                "[source]\npath = \"{path}\"\n{storage}[[segment]]\nname = \"valuable\"\nsql = \"SELECT * FROM profiles WHERE lifetime_value > {}\"\n[destination]\nconnection = \"bench\"\nlist-id = \"{LIST}\"\n[mapping]\nemail = \"email\"\nname = \"full_name\"\nconsent-to-track = {{ column = \"consent\" }}\n[options]\nbatch-size = 1000\nconcurrency = 8\nmax-profiles = 2000000\n",
                threshold(rows)
            ),
        )
        .unwrap();
        pipeline
    };
    let local = define("local", &data.display().to_string(), "");
    let s3 = define(
        "s3",
        &format!("s3://{BUCKET}/profiles/"),
        &format!(
            "[source.storage]\nendpoint = \"{endpoint}\"\nallow-http = true\nregion = \"us-east-1\"\naccess-key-id-env = \"CM_BENCH_KEY\"\nsecret-access-key-env = \"CM_BENCH_KEY\"\n"
        ),
    );
    let plan_local = plan(&local);
    let plan_s3 = plan(&s3);
    let (run_local, local_report) = run(&local, &work.path().join("local.json"));
    let (run_s3, s3_report) = run(&s3, &work.path().join("s3.json"));
    let _ = emulator.kill();
    let _ = emulator.wait();
    if let Some(moto) = moto.as_mut() {
        let _ = moto.kill();
        let _ = moto.wait();
    }
    let row = |name: &str, m: &Measured| {
        println!(
            "{name:<12} wall {:>7.2} s   peak RSS {:>7.1} MiB",
            m.wall.as_secs_f64(),
            m.peak_rss_mib
        );
    };
    println!("\ncm-export from S3 ({endpoint}, moto) and from local disk: {rows} rows");
    row("plan local", &plan_local);
    row("plan s3", &plan_s3);
    row("run local", &run_local);
    row("run s3", &run_s3);
    println!(
        "members: local {:.0}, s3 {:.0}",
        json_number(&local_report, "members_sent"),
        json_number(&s3_report, "members_sent")
    );
    println!(
        "plan s3 / local: {:.2}",
        plan_s3.wall.as_secs_f64() / plan_local.wall.as_secs_f64()
    );
    println!(
        "run s3 / local: {:.2}",
        run_s3.wall.as_secs_f64() / run_local.wall.as_secs_f64()
    );
}
