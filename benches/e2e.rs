//! The end-to-end benchmark: `cargo bench --bench e2e`.
//!
//! 1. Generates (once, cached in `target/bench-data/`) a snapshot with
//!    `cm-export sample-data`: 10,000,000 rows in 8 files, or `CM_BENCH_ROWS` rows.
//! 2. Starts `cm-export emulator` as a separate process.
//! 3. Times `cm-export plan` (scan + filter + dedupe, nothing sent) and `cm-export run`
//!    (the same, plus sending about 1,000,000 members) on a segment of that snapshot.
//! 4. Prints wall time, CPU time, members per second, peak resident memory of each, run /
//!    plan, and the emulator's CPU time during the run (it must not be what is measured).
//! 5. Times the cap's count alone (the one extra scan a run makes before sending), and, when
//!    Python's `duckdb` package is installed, DuckDB's distinct-address query over the same
//!    files, as the yardstick for the scan: `run` should take at most twice its wall time.
//!
//! 6. With `CM_BENCH_BASELINE` naming an older build of the binary, exports with that build
//!    and this one in turn and prints each pair's ratios (see [`against`]).
//!
//! Peak memory and CPU come from `/usr/bin/time` (Debian's `time` package). Both commands
//! are the release build of this crate's binary (benches build with the release profile).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use std::path::Path;
use std::process::Command;

use support::{
    BIN, Measured, connections, cpu_seconds, emulator_of, json_number, measure, pipeline, plan_with, rows, run_with,
    snapshot, threshold,
};

const LIST: &str = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no other flags.
    let rows = rows();
    let data = snapshot(rows);
    let segment = format!("SELECT * FROM profiles WHERE lifetime_value > {}", threshold(rows));

    let now = export(BIN, &data, &segment);
    let cap = cap_count(&data, &segment);
    let duckdb = duckdb(&data, &threshold(rows));

    let row = |name: &str, m: &Measured, members: f64| {
        println!(
            "{name:<7} wall {:>6.2} s   CPU {:>6.2} s   {:>10.0} members/s   peak RSS {:>7.1} MiB",
            m.wall.as_secs_f64(),
            m.cpu,
            members / m.wall.as_secs_f64(),
            m.peak_rss_mib
        );
    };
    let (plan, run) = (&now.plan, &now.run);
    println!("\ncm-export end to end: {rows} rows scanned, segment `{segment}`");
    row("plan", plan, now.planned);
    row("run", run, now.sent);
    println!("members: planned {:.0}, sent {:.0}", now.planned, now.sent);
    println!("run / plan: {:.2}", run.wall.as_secs_f64() / plan.wall.as_secs_f64());
    println!(
        "emulator: {:.2} s of CPU for the run's {:.0} imports",
        now.emulator_cpu, now.requests
    );
    println!(
        "the cap's count (`SELECT count(*)` of the segment, read by DataFusion in this process): {:.2} s wall",
        cap
    );
    match duckdb {
        Some(duck) => {
            row("duckdb", &duck, now.planned);
            println!(
                "run / duckdb: wall {:.2}, CPU {:.2}",
                run.wall.as_secs_f64() / duck.wall.as_secs_f64(),
                run.cpu / duck.cpu
            );
        }
        None => println!("duckdb: not compared (no `python3 -c 'import duckdb'` here; `pip install duckdb`)"),
    }
    if let Ok(baseline) = std::env::var("CM_BENCH_BASELINE") {
        against(&baseline, &data, &segment);
    }
}

/// One export of the segment by one build of `cm-export`, with an emulator of the same
/// build in its own process and a fresh working folder.
struct Export {
    plan: Measured,
    run: Measured,
    planned: f64,
    sent: f64,
    requests: f64,
    emulator_cpu: f64,
}

fn export(bin: &str, data: &Path, segment: &str) -> Export {
    let work = tempfile::tempdir().unwrap();
    let (mut emulator, base) = emulator_of(bin, LIST);
    connections(work.path(), &base);
    let options = "batch-size = 1000\nconcurrency = 8\nmax-profiles = 2000000\n";
    let pipeline = pipeline(work.path(), data, segment, LIST, options);
    let plan = plan_with(bin, &pipeline);
    let planned = json_number(&plan.stdout, "members_unique");
    let emulator_before = cpu_seconds(emulator.id());
    let (run, report) = run_with(bin, &pipeline, &work.path().join("report.json"));
    let emulator_cpu = cpu_seconds(emulator.id()) - emulator_before;
    let _ = emulator.kill();
    let _ = emulator.wait();
    Export {
        plan,
        run,
        planned,
        sent: json_number(&report, "members_sent"),
        requests: json_number(&report, "requests"),
        emulator_cpu,
    }
}

/// `CM_BENCH_BASELINE=/path/to/an/older/cm-export`: that build and this one export the
/// segment in turn, `CM_BENCH_PAIRS` times (default 3), each with its own emulator; each
/// pair's ratios are printed, since a noisy machine moves both of a pair alike.
fn against(baseline: &str, data: &Path, segment: &str) {
    let pairs: usize = std::env::var("CM_BENCH_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!("\nagainst {baseline} ({pairs} pairs, baseline first; CPU in seconds):");
    println!("pair   run CPU              run wall             plan wall            emulator CPU");
    let ratio = |before: f64, after: f64| format!("{before:>5.2} -> {after:>5.2} {:>5.2}x", after / before);
    for pair in 1..=pairs {
        let before = export(baseline, data, segment);
        let after = export(BIN, data, segment);
        assert_eq!(before.sent, after.sent, "both builds send as many members");
        println!(
            "{pair:<6} {}  {}  {}  {}",
            ratio(before.run.cpu, after.run.cpu),
            ratio(before.run.wall.as_secs_f64(), after.run.wall.as_secs_f64()),
            ratio(before.plan.wall.as_secs_f64(), after.plan.wall.as_secs_f64()),
            ratio(before.emulator_cpu, after.emulator_cpu),
        );
    }
}

/// The query the cap runs before a run sends anything, when no mapped value can fail to
/// compute: the segment's row count.
fn cap_count(data: &Path, segment: &str) -> f64 {
    use datafusion::prelude::{ParquetReadOptions, SessionContext};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let ctx = SessionContext::new();
        ctx.register_parquet("profiles", data.to_str().unwrap(), ParquetReadOptions::default())
            .await
            .unwrap();
        let start = std::time::Instant::now();
        let counted = ctx
            .sql(&format!("SELECT count(*) FROM ({segment})"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(counted.len(), 1);
        start.elapsed().as_secs_f64()
    })
}

/// DuckDB's own time for the scan, filter and distinct addresses of the export, written to
/// a Parquet file, when Python's `duckdb` package is installed.
fn duckdb(data: &Path, threshold: &str) -> Option<Measured> {
    let available = Command::new("python3").args(["-c", "import duckdb"]).status();
    if !available.is_ok_and(|s| s.success()) {
        return None;
    }
    let out = tempfile::tempdir().unwrap();
    let script = format!(
        "import duckdb\nduckdb.connect().execute(\"COPY (SELECT DISTINCT ON (lower(trim(email))) lower(trim(email)) AS email, full_name, consent FROM read_parquet('{}/*.parquet') WHERE lifetime_value > {threshold}) TO '{}/out.parquet'\")\n",
        data.display(),
        out.path().display()
    );
    let m = measure(Command::new("python3").args(["-c", &script]));
    assert_eq!(m.status, 0, "duckdb failed");
    Some(m)
}
