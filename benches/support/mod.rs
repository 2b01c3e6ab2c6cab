//! What the end-to-end benchmarks share: the cached snapshot, timing a command with its
//! peak memory, the emulator in its own process.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_cm-export");

pub struct Measured {
    pub wall: Duration,
    /// User plus system CPU seconds.
    pub cpu: f64,
    pub peak_rss_mib: f64,
    pub status: i32,
    pub stdout: String,
}

/// Runs a command under `/usr/bin/time`, which reports its peak resident memory.
pub fn measure(command: &mut Command) -> Measured {
    let rss_file = tempfile::NamedTempFile::new().unwrap();
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("%M %U %S")
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
    let line = std::fs::read_to_string(rss_file.path()).unwrap_or_default();
    let numbers: Vec<f64> = line
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .map(|n| n.parse().unwrap_or(f64::NAN))
        .collect();
    let number = |i: usize| numbers.get(i).copied().unwrap_or(f64::NAN);
    Measured {
        wall,
        cpu: number(1) + number(2),
        peak_rss_mib: number(0) / 1024.0,
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
    }
}

pub fn snapshot(rows: u64) -> PathBuf {
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

pub fn json_number(text: &str, key: &str) -> f64 {
    let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    value[key].as_f64().unwrap_or(f64::NAN)
}

/// `cm-export emulator` in its own process, holding `list`; its base URL.
pub fn emulator(list: &str) -> (Child, String) {
    emulator_of(BIN, list)
}

/// [`emulator`] of another build of `cm-export` (the e2e bench's baseline).
pub fn emulator_of(bin: &str, list: &str) -> (Child, String) {
    let mut emulator = Command::new(bin)
        .args([
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--api-key",
            "bench-key",
            "--list",
            list,
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
    (emulator, base)
}

/// `connections.toml` in `dir` with connection `bench` to `base`, key in `CM_BENCH_KEY`
/// (which `plan` and `run` set; the stores bench names it for its S3 keys too).
pub fn connections(dir: &Path, base: &str) {
    std::fs::write(
        dir.join("connections.toml"),
        format!(
            "[bench]\ndisplay-name = \"bench\"\ndata-privacy-consent = true\napi-key-env = \"CM_BENCH_KEY\"\nexport-user = \"bench\"\nbase-url = \"{base}\"\n"
        ),
    )
    .unwrap();
}

/// `DIR/bench.toml`: `segment` of the snapshot at `data` to `list` over connection `bench`,
/// mapping address, name and consent, with `options` (lines of its `[options]` table).
pub fn pipeline(dir: &Path, data: &Path, segment: &str, list: &str, options: &str) -> PathBuf {
    let file = dir.join("bench.toml");
    std::fs::write(
        &file,
        format!(
            "[source]\npath = \"{}\"\n[[segment]]\nname = \"valuable\"\nsql = \"{segment}\"\n[destination]\nconnection = \"bench\"\nlist-id = \"{list}\"\n[mapping]\nemail = \"email\"\nname = \"full_name\"\nconsent-to-track = {{ column = \"consent\" }}\n[options]\n{options}",
            data.display()
        ),
    )
    .unwrap();
    file
}

/// Rows of the snapshot: `CM_BENCH_ROWS`, default ten million.
pub fn rows() -> u64 {
    std::env::var("CM_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

/// About 1,100,000 rows whatever the snapshot's size, so about 1,000,000 distinct valid
/// members.
pub fn threshold(rows: u64) -> String {
    threshold_for(rows, 1_100_000)
}

/// The `lifetime_value` above which about `matched` of `rows` rows lie: `sample-data` draws
/// it from an exponential distribution of mean 400, so `P(value > t) = exp(-t / 400)`.
pub fn threshold_for(rows: u64, matched: u64) -> String {
    format!("{:.0}", 400.0 * (rows as f64 / matched as f64).ln().max(0.0))
}

/// CPU seconds (user + system) a running process has used so far, from `/proc`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, f)| f)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|t| t.parse::<f64>().ok()).unwrap_or(f64::NAN);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    (ticks(11) + ticks(12)) / 100.0
}

/// `cm-export plan --json` of `pipeline`, timed.
pub fn plan(pipeline: &Path) -> Measured {
    plan_with(BIN, pipeline)
}

/// [`plan`] by another build of `cm-export`.
pub fn plan_with(bin: &str, pipeline: &Path) -> Measured {
    let m = measure(
        Command::new(bin)
            .args(["plan", "--json", "--progress", "never"])
            .arg(pipeline)
            .env("CM_BENCH_KEY", "bench-key"),
    );
    assert_eq!(m.status, 0, "plan failed");
    m
}

/// `cm-export run` of `pipeline` with its report at `report`, timed; and the report.
pub fn run(pipeline: &Path, report: &Path) -> (Measured, String) {
    run_with(BIN, pipeline, report)
}

/// [`run`] by another build of `cm-export`.
pub fn run_with(bin: &str, pipeline: &Path, report: &Path) -> (Measured, String) {
    let m = measure(
        Command::new(bin)
            .args(["run", "--progress", "never", "--report"])
            .arg(report)
            .arg(pipeline)
            .env("CM_BENCH_KEY", "bench-key")
            .env("RUST_LOG", "warn"),
    );
    assert!(m.status <= 1, "run failed: {}", m.stdout);
    (m, std::fs::read_to_string(report).unwrap())
}
