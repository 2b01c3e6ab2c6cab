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

mod support;

use support::{Measured, connections, emulator, json_number, plan, rows, run, snapshot, threshold};

const LIST: &str = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no other flags.
    let rows = rows();
    let data = snapshot(rows);
    let segment = format!("SELECT * FROM profiles WHERE lifetime_value > {}", threshold(rows));
    let work = tempfile::tempdir().unwrap();

    let (mut emulator, base) = emulator(LIST);
    connections(work.path(), &base);
    let pipeline = work.path().join("bench.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[source]\npath = \"{}\"\n[[segment]]\nname = \"valuable\"\nsql = \"{segment}\"\n[destination]\nconnection = \"bench\"\nlist-id = \"{LIST}\"\n[mapping]\nemail = \"email\"\nname = \"full_name\"\nconsent-to-track = {{ column = \"consent\" }}\n[options]\nbatch-size = 1000\nconcurrency = 8\nmax-profiles = 2000000\n",
            data.display()
        ),
    )
    .unwrap();

    let plan = plan(&pipeline);
    let planned = json_number(&plan.stdout, "members_unique");
    let (run, report) = run(&pipeline, &work.path().join("report.json"));
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
