//! Against a rate-limited emulator, how much of the allowed rate a run uses and how many
//! of its requests meet a 429: `cargo bench --bench rate_limit`.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_cm-export");
const LIST: &str = "ra7e0000000000000000000000000000";
/// Requests per window, and the window in seconds.
const LIMIT: u64 = 50;
const WINDOW: u64 = 1;

/// A plain HTTP/1.0 GET, enough for the emulator's stats.
fn get(host: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

fn main() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("profiles");
    let status = Command::new(BIN)
        .args(["sample-data", "--rows", "60000", "--files", "2", "--out"])
        .arg(&data)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    let mut emulator = Command::new(BIN)
        .args(["emulator", "--listen", "127.0.0.1:0", "--api-key", "k", "--list", LIST])
        .args(["--rate-limit", &LIMIT.to_string(), "--rate-window", &WINDOW.to_string()])
        .args(["--latency-ms", "2-10"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(emulator.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let base = first.trim().strip_prefix("listening on ").unwrap().to_owned();
    let origin = base
        .trim_start_matches("http://")
        .trim_end_matches("/api/v3.3")
        .to_owned();

    std::fs::write(
        work.path().join("connections.toml"),
        format!("[cm]\ndisplay-name = \"rl\"\ndata-privacy-consent = true\napi-key-env = \"K\"\nexport-user = \"b\"\nbase-url = \"{base}\"\n"),
    )
    .unwrap();
    std::fs::write(
        work.path().join("rl.toml"),
        format!(
            "[source]\npath = \"profiles\"\n[[segment]]\nname = \"all\"\nsql = \"SELECT * FROM profiles\"\n[destination]\nconnection = \"cm\"\nlist-id = \"{LIST}\"\n[mapping]\nemail = \"email\"\n[options]\nbatch-size = 100\nconcurrency = 8\n"
        ),
    )
    .unwrap();
    let start = Instant::now();
    let status = Command::new(BIN)
        .args(["run", "rl.toml", "--report", "report.json", "--progress", "never"])
        .env("K", "k")
        .env("RUST_LOG", "warn")
        .current_dir(work.path())
        .status()
        .unwrap();
    let wall = start.elapsed().as_secs_f64();
    assert!(status.code().is_some_and(|c| c <= 1), "run failed");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.path().join("report.json")).unwrap()).unwrap();
    let stats: serde_json::Value = serde_json::from_str(&get(&origin, "/_emulator/stats")).unwrap_or_default();
    let _ = emulator.kill();
    let _ = emulator.wait();

    let requests = report["requests"].as_f64().unwrap_or(f64::NAN);
    let limited = stats["faults"]["rate_limited"].as_f64().unwrap_or(f64::NAN);
    let duration = report["duration_seconds"].as_f64().unwrap_or(wall);
    // The checks before the scan use three requests of the first window.
    let allowed = LIMIT as f64 / WINDOW as f64;
    let accepted_rate = (requests - limited) / duration;
    println!("\nrate limit {LIMIT} requests / {WINDOW} s, latency 2-10 ms, concurrency 8, batches of 100");
    println!(
        "run: {requests:.0} import requests in {duration:.2} s ({:.0} members sent); 429s: {limited:.0} ({:.1}% of requests)",
        report["members_sent"].as_f64().unwrap_or(f64::NAN),
        100.0 * limited / requests
    );
    println!(
        "accepted requests per second: {accepted_rate:.1} of {allowed:.0} allowed ({:.1}% of the allowed rate)",
        100.0 * accepted_rate / allowed
    );
}
