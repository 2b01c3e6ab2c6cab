//! Sending under the API's limits and latency, each against its own `cm-export emulator`
//! process: `cargo bench --bench rate_limit`.
//!
//! - a rate limit of 50 requests/s, and a tight one of 5/s at concurrency 64: how much of
//!   the allowed rate a run uses and how many requests meet a 429;
//! - 643 imports of 100 members at concurrency 32, latency 40-60 ms and then 20-200 ms (as a
//!   real API jitters): the adaptive concurrency must not collapse on noise (it fell to about
//!   one request in flight, 69.6 s against 1.25 s);
//! - about a million members at latency 20-200 ms: the limit held at 8 (the old behaviour)
//!   against the limit that starts at 8 and rises while batches wait, with the concurrency
//!   it settled at.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_cm-export");
const LIST: &str = "ra7e0000000000000000000000000000";

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

fn profiles(work: &Path, rows: u64) -> PathBuf {
    let data = work.join(format!("profiles-{rows}"));
    let status = Command::new(BIN)
        .args(["sample-data", "--rows", &rows.to_string(), "--files", "4", "--out"])
        .arg(&data)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    data
}

struct Outcome {
    seconds: f64,
    requests: f64,
    rate_limited: f64,
    members_sent: f64,
    concurrency_at_end: f64,
    concurrency_peak: f64,
}

/// Starts an emulator with `emulator_args`, exports `data` to it, reads the report and the
/// emulator's counts.
fn export(work: &Path, data: &Path, emulator_args: &[&str], batch: u32, concurrency: (u32, u32)) -> Outcome {
    let (concurrency, max_concurrency) = concurrency;
    let mut emulator = Command::new(BIN)
        .args(["emulator", "--listen", "127.0.0.1:0", "--api-key", "k", "--list", LIST])
        .args(emulator_args)
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
    let dir = tempfile::tempdir_in(work).unwrap();
    std::fs::write(
        dir.path().join("connections.toml"),
        format!("[cm]\ndisplay-name = \"b\"\ndata-privacy-consent = true\napi-key-env = \"K\"\nexport-user = \"b\"\nbase-url = \"{base}\"\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("send.toml"),
        format!(
            "[source]\npath = \"{}\"\n[[segment]]\nname = \"all\"\nsql = \"SELECT * FROM profiles\"\n[destination]\nconnection = \"cm\"\nlist-id = \"{LIST}\"\n[mapping]\nemail = \"email\"\n[options]\nbatch-size = {batch}\nconcurrency = {concurrency}\nmax-concurrency = {max_concurrency}\nmax-profiles = 2000000\n",
            data.display()
        ),
    )
    .unwrap();
    let start = Instant::now();
    let status = Command::new(BIN)
        .args(["run", "send.toml", "--report", "report.json", "--progress", "never"])
        .stdout(Stdio::null())
        .env("K", "k")
        .env("RUST_LOG", "warn")
        .current_dir(dir.path())
        .status()
        .unwrap();
    let wall = start.elapsed().as_secs_f64();
    assert!(status.code().is_some_and(|c| c <= 1), "run failed");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
    let stats: serde_json::Value = serde_json::from_str(&get(&origin, "/_emulator/stats")).unwrap_or_default();
    let _ = emulator.kill();
    let _ = emulator.wait();
    let n = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    Outcome {
        seconds: report["duration_seconds"].as_f64().unwrap_or(wall),
        requests: n(&report["requests"]),
        rate_limited: n(&stats["faults"]["rate_limited"]),
        members_sent: n(&report["members_sent"]),
        concurrency_at_end: n(&report["concurrency_at_end"]),
        concurrency_peak: n(&report["concurrency_peak"]),
    }
}

fn limited(work: &Path, data: &Path, limit: u64, concurrency: u32) {
    let outcome = export(
        work,
        data,
        &[
            "--rate-limit",
            &limit.to_string(),
            "--rate-window",
            "1",
            "--latency-ms",
            "2-10",
        ],
        100,
        (concurrency, concurrency),
    );
    let accepted = (outcome.requests - outcome.rate_limited) / outcome.seconds;
    println!(
        "rate limit {limit}/s, concurrency {concurrency}: {:.0} import requests in {:.2} s; 429s: {:.0} ({:.1}% of requests); {accepted:.1} accepted requests/s ({:.0}% of the allowed rate)",
        outcome.requests,
        outcome.seconds,
        outcome.rate_limited,
        100.0 * outcome.rate_limited / outcome.requests,
        100.0 * accepted / limit as f64
    );
}

/// `concurrency`: where the limit starts and the most it may rise to.
fn latency(work: &Path, data: &Path, range: &str, batch: u32, concurrency: (u32, u32)) -> f64 {
    let outcome = export(work, data, &["--latency-ms", range], batch, concurrency);
    println!(
        "latency {range} ms, batches of {batch}, concurrency {} rising to at most {}: {:.0} members in {:.0} requests, {:.2} s, {:.0} members/s; the limit settled at {:.0} (peak {:.0})",
        concurrency.0,
        concurrency.1,
        outcome.members_sent,
        outcome.requests,
        outcome.seconds,
        outcome.members_sent / outcome.seconds,
        outcome.concurrency_at_end,
        outcome.concurrency_peak
    );
    outcome.seconds
}

fn main() {
    let work = tempfile::tempdir().unwrap();
    println!();
    let small = profiles(work.path(), 60_000);
    limited(work.path(), &small, 50, 8);
    let tiny = profiles(work.path(), 6_200);
    limited(work.path(), &tiny, 5, 64);

    // 643 imports of 100 members, as in the report of the collapse.
    let jitter = profiles(work.path(), 66_200);
    let steady = latency(work.path(), &jitter, "40-60", 100, (32, 32));
    let noisy = latency(work.path(), &jitter, "20-200", 100, (32, 32));
    println!(
        "jittered latency took {:.2}x the steady one (it was 55.7x)",
        noisy / steady
    );

    let million = profiles(work.path(), 1_030_000);
    let held = latency(work.path(), &million, "20-200", 1000, (8, 8));
    let rising = latency(work.path(), &million, "20-200", 1000, (8, 64));
    println!(
        "a limit that rises took {:.2}x the time of one held at 8",
        rising / held
    );
}
