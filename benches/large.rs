//! Ten times the members: `cargo bench --bench large`.
//!
//! Exports about 1,000,000 members of the 10M-row snapshot and about 10,000,000 members of a
//! 100M-row one (generated once, about 2 GB, cached in `target/bench-data/`), each into its
//! own `cm-export emulator` process, with `max-profiles` raised. Prints each run's wall time,
//! CPU time and peak resident memory, and the ratio of the two wall times: ten times the
//! members should take at most eleven times as long, in at most 1 GiB.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use support::{Measured, connections, emulator, json_number, pipeline, run, snapshot, threshold_for};

const LIST: &str = "1a4e0000000000000000000000000000";

/// Exports about `members` members of a `rows`-row snapshot; the run and the members sent.
fn export(rows: u64, members: u64) -> (Measured, f64) {
    let data = snapshot(rows);
    // About 3% of matched rows are rejected or duplicates.
    let segment = format!(
        "SELECT * FROM profiles WHERE lifetime_value > {}",
        threshold_for(rows, members * 103 / 100)
    );
    let work = tempfile::tempdir().unwrap();
    let (mut emulator, base) = emulator(LIST);
    connections(work.path(), &base);
    let options = format!("max-profiles = {}\n", members * 2);
    let pipeline = pipeline(work.path(), &data, &segment, LIST, &options);
    let (measured, report) = run(&pipeline, &work.path().join("report.json"));
    let _ = emulator.kill();
    let _ = emulator.wait();
    (measured, json_number(&report, "members_sent"))
}

fn main() {
    let (small, small_sent) = export(10_000_000, 1_000_000);
    let (large, large_sent) = export(100_000_000, 10_000_000);
    println!();
    for (name, m, sent) in [("1M", &small, small_sent), ("10M", &large, large_sent)] {
        println!(
            "{name:<4} members {sent:>10.0}: wall {:>7.2} s   CPU {:>7.2} s   {:>9.0} members/s   peak RSS {:>7.1} MiB",
            m.wall.as_secs_f64(),
            m.cpu,
            sent / m.wall.as_secs_f64(),
            m.peak_rss_mib
        );
    }
    println!(
        "10M / 1M: members {:.2}x, wall {:.2}x (at most 11x), peak RSS {:.0} MiB (at most 1024)",
        large_sent / small_sent,
        large.wall.as_secs_f64() / small.wall.as_secs_f64(),
        large.peak_rss_mib
    );
}
