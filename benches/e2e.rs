//! The end-to-end benchmark: `cargo bench --bench e2e`.
//!
//! 1. Generates (once, cached in `target/bench-data/`) a snapshot with
//!    `cm-export sample-data`: 10,000,000 rows in 8 files, or `CM_BENCH_ROWS` rows.
//! 2. Starts `cm-export emulator` as a separate process.
//! 3. Times `cm-export plan` (scan + filter + dedupe, nothing sent) and `cm-export run`
//!    (the same, plus sending about 1,000,000 members) on a segment of that snapshot.
//! 4. Prints wall time, members per second, peak resident memory of each, and run / plan.
//!
//! Peak memory comes from `/usr/bin/time` (Debian's `time` package). Both commands are
//! the release build of this crate's binary (benches build with the
//! release profile).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cm-export");
const LIST: &str = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";
/// The segment selects about 1,100,000 rows whatever the snapshot's size, so about
/// 1,000,000 distinct valid members: `sample-data` draws `lifetime_value` from an
/// exponential distribution of mean 400, so `P(value > t) = exp(-t / 400)`.
fn segment(rows: u64) -> String {
    let threshold = 400.0 * (rows as f64 / 1_100_000.0).ln().max(0.0);
    format!("SELECT * FROM profiles WHERE lifetime_value > {threshold:.0}")
}

struct Measured {
    wall: Duration,
    peak_rss_mib: f64,
    status: i32,
    stdout: String,
}

/// Runs a command under `/usr/bin/time`, which reports its peak resident memory.
fn measure(command: &mut Command) -> Measured {
    let rss_file = tempfile::NamedTempFile::new().unwrap();
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(rss_file.path())
        .arg(program)
        .args(args);
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => timed.env(key, value),
            None => timed.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        timed.current_dir(dir);
    }
    let start = Instant::now();
    let output = timed.stderr(Stdio::inherit()).output().expect("run /usr/bin/time");
    let wall = start.elapsed();
    let kib: f64 = std::fs::read_to_string(rss_file.path())
        .unwrap_or_default()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(f64::NAN);
    Measured {
        wall,
        peak_rss_mib: kib / 1024.0,
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
    }
}

fn snapshot(rows: u64) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-data/profiles-{rows}"));
    let done = dir.join(".complete");
    if !done.exists() {
        eprintln!("generating {rows} rows in {} (once; cached)", dir.display());
        let _ = std::fs::remove_dir_all(&dir);
        let files = (rows / 1_250_000).clamp(2, 40).to_string();
        let m = measure(
            Command::new(BIN)
                .args(["sample-data", "--rows", &rows.to_string(), "--files", &files, "--out"])
                .arg(&dir),
        );
        assert_eq!(m.status, 0, "sample-data failed");
        std::fs::write(&done, b"").unwrap();
        eprintln!("generated in {:.1}s", m.wall.as_secs_f64());
    }
    dir
}

fn json_number(text: &str, key: &str) -> f64 {
    let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    value[key].as_f64().unwrap_or(f64::NAN)
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no other flags.
    let rows: u64 = std::env::var("CM_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let data = snapshot(rows);
    let segment = segment(rows);
    let work = tempfile::tempdir().unwrap();

    let mut emulator = Command::new(BIN)
        .args([
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--api-key",
            "bench-key",
            "--list",
            LIST,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the emulator");
    let mut first = String::new();
    BufReader::new(emulator.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let base = first
        .trim()
        .strip_prefix("listening on ")
        .expect("emulator's first line")
        .to_owned();

    std::fs::write(
        work.path().join("connections.toml"),
        format!(
            "[bench]\ndisplay-name = \"bench\"\ndata-privacy-consent = true\napi-key-env = \"CM_BENCH_KEY\"\nexport-user = \"bench\"\nbase-url = \"{base}\"\n"
        ),
    )
    .unwrap();
    let pipeline = work.path().join("bench.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[source]\npath = \"{}\"\n[[segment]]\nname = \"valuable\"\nsql = \"{segment}\"\n[destination]\nconnection = \"bench\"\nlist-id = \"{LIST}\"\n[mapping]\nemail = \"email\"\nname = \"full_name\"\nconsent-to-track = {{ column = \"consent\" }}\n[options]\nbatch-size = 1000\nconcurrency = 8\nmax-profiles = 2000000\n",
            data.display()
        ),
    )
    .unwrap();

    let plan = measure(
        Command::new(BIN)
            .args(["plan", "--json", "--progress", "never"])
            .arg(&pipeline),
    );
    assert_eq!(plan.status, 0, "plan failed");
    let planned = json_number(&plan.stdout, "members_unique");
    let report = work.path().join("report.json");
    let run = measure(
        Command::new(BIN)
            .args(["run", "--progress", "never", "--report"])
            .arg(&report)
            .arg(&pipeline)
            .env("CM_BENCH_KEY", "bench-key")
            .env("RUST_LOG", "warn"),
    );
    assert!(run.status <= 1, "run failed: {}", run.stdout);
    let report = std::fs::read_to_string(&report).unwrap();
    let sent = json_number(&report, "members_sent");
    let _ = emulator.kill();
    let _ = emulator.wait();

    let row = |name: &str, m: &Measured, members: f64| {
        println!(
            "{name:<5} wall {:>7.2} s   {:>10.0} members/s   peak RSS {:>7.1} MiB",
            m.wall.as_secs_f64(),
            members / m.wall.as_secs_f64(),
            m.peak_rss_mib
        );
    };
    println!("\ncm-export end to end: {rows} rows scanned, segment `{segment}`");
    row("plan", &plan, planned);
    row("run", &run, sent);
    println!("members: planned {planned:.0}, sent {sent:.0}");
    println!("run / plan: {:.2}", run.wall.as_secs_f64() / plan.wall.as_secs_f64());
}
