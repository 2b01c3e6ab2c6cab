//! The `changes` re-run benchmark: `cargo bench --bench sync`.
//!
//! On the cached snapshot of the end-to-end benchmark (10,000,000 rows, or `CM_BENCH_ROWS`),
//! against `cm-export emulator` in its own process:
//! 1. an `upsert` run sends the whole segment (about 1,000,000 members), for comparison;
//!    then a first `changes` run sends it again and writes the synced state;
//! 2. the segment's SQL then gives 1% of its members another name;
//! 3. `plan` and the `changes` re-run are timed on that same snapshot.
//!
//! Prints the members the re-run sent as a share of the full run's (target <= 2%) and the
//! re-run's wall time as a ratio of `plan`'s (target <= 1.5).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use support::{Measured, connections, emulator, json_number, plan, rows, run, snapshot, threshold};

const LIST: &str = "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0";

fn main() {
    let rows = rows();
    let data = snapshot(rows);
    let threshold = threshold(rows);
    let work = tempfile::tempdir().unwrap();
    let (mut emulator, base) = emulator(LIST);
    connections(work.path(), &base);
    let pipeline = work.path().join("sync.toml");
    let define = |name: &str, mode: &str| {
        std::fs::write(
            &pipeline,
            format!(
                "[source]\npath = \"{}\"\n[[segment]]\nname = \"valuable\"\nsql = \"SELECT *, {name} AS display_name FROM profiles WHERE lifetime_value > {threshold}\"\n[destination]\nconnection = \"bench\"\nlist-id = \"{LIST}\"\nmode = \"{mode}\"\n[mapping]\nemail = \"email\"\nname = \"display_name\"\nconsent-to-track = {{ column = \"consent\" }}\n[options]\nbatch-size = 1000\nconcurrency = 8\nmax-profiles = 2000000\n",
                data.display()
            ),
        )
        .unwrap();
    };
    let run = |report: &str| {
        let (m, report) = run(&pipeline, &work.path().join(report));
        let sent = json_number(&report, "members_sent");
        (m, sent, json_number(&report, "members_unchanged"))
    };

    define("full_name", "upsert");
    let (upsert, _, _) = run("upsert.json");
    define("full_name", "changes");
    let (full, full_sent, _) = run("full.json");
    // 1% of the members get another name.
    define(
        "CASE WHEN customer_id % 100 = 7 THEN concat(full_name, ' Jr') ELSE full_name END",
        "changes",
    );
    let plan = plan(&pipeline);
    let planned = json_number(&plan.stdout, "members_unique");
    let (changes, sent, unchanged) = run("changes.json");
    let _ = emulator.kill();
    let _ = emulator.wait();

    let row = |name: &str, m: &Measured| {
        println!(
            "{name:<16} wall {:>7.2} s   peak RSS {:>7.1} MiB",
            m.wall.as_secs_f64(),
            m.peak_rss_mib
        );
    };
    println!("\ncm-export sync: {rows} rows scanned, segment `lifetime_value > {threshold}` ({planned:.0} members)");
    row("upsert run", &upsert);
    row("first run (full)", &full);
    row("plan (diff)", &plan);
    row("changes re-run", &changes);
    println!("members sent: full {full_sent:.0}, re-run {sent:.0} ({unchanged:.0} unchanged)");
    println!(
        "re-run sent / full run sent: {:.2}% (target <= 2%)",
        100.0 * sent / full_sent
    );
    println!(
        "re-run wall / plan wall: {:.2} (target <= 1.5)",
        changes.wall.as_secs_f64() / plan.wall.as_secs_f64()
    );
    println!(
        "first changes run wall / upsert run wall: {:.2} (what keeping the state costs)",
        full.wall.as_secs_f64() / upsert.wall.as_secs_f64()
    );
}
