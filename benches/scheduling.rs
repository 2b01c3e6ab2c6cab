//! The scheduler's own costs, so that reading the folder every two seconds and recording
//! every run stay negligible next to a run: `cargo bench --bench scheduling`.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use chrono::{DateTime, Utc};
use cm_export::config::Pipeline;
use cm_export::state::{ExportLock, History, HistoryEntry, Holder, RunStatus, Trigger};
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

const DEFINITION: &str = r#"
description = "VIPs"
alert-webhook = "https://hooks.example.com/T/B/secret"
[source]
path = "../sample_data/profiles"
[[segment]]
name = "vip"
sql = "SELECT * FROM profiles WHERE lifetime_value > 1000"
[destination]
connection = "marketing"
list-id = "a58ee1d3039b8bec838e6d1482a8a965"
[mapping]
email = "email"
name = "full_name"
custom-fields = { City = "city", Tier = "loyalty_tier" }
[schedule]
cron = "0 3 * * 1-5"
timezone = "Europe/Bucharest"
"#;

/// One definition, as each reload checks it (the scheduler does this for every file).
#[divan::bench]
fn parse_definition(bencher: Bencher) {
    bencher.bench(|| Pipeline::parse(Path::new("pipelines/vip.toml"), black_box(DEFINITION)).unwrap());
}

#[divan::bench]
fn next_scheduled_time(bencher: Bencher) {
    let schedule = Pipeline::parse(Path::new("pipelines/vip.toml"), DEFINITION)
        .unwrap()
        .schedule
        .unwrap();
    let now: DateTime<Utc> = "2026-11-28T22:00:00Z".parse().unwrap();
    bencher.bench(|| schedule.next_after(black_box(now)).unwrap());
}

fn entry(i: usize) -> HistoryEntry {
    HistoryEntry::without_report(
        &format!("export{}", i % 10),
        &format!("20261128T{:06}Z-{i:04x}", i % 240000),
        Trigger::Schedule,
        RunStatus::Succeeded,
        &format!("2026-11-28T00:00:{:02}.{:03}Z", (i / 1000) % 60, i % 1000),
        "bench".into(),
    )
}

fn filled(n: usize) -> (tempfile::TempDir, History) {
    let dir = tempfile::tempdir().unwrap();
    let history = History::new(dir.path());
    for i in 0..n {
        history.record(&entry(i)).unwrap();
    }
    (dir, history)
}

/// Open, one durable write transaction, close: what every run pays once.
#[divan::bench(sample_count = 30)]
fn history_record_into_1000(bencher: Bencher) {
    let (_dir, history) = filled(1000);
    let mut i = 1000;
    bencher.bench_local(|| {
        i += 1;
        history.record(&entry(i)).unwrap();
    });
}

#[divan::bench(sample_count = 30)]
fn history_list_20_of_one_export_in_5000(bencher: Bencher) {
    let (_dir, history) = filled(5000);
    bencher.bench(|| assert_eq!(history.list(Some("export3"), 20).unwrap().len(), 20));
}

#[divan::bench]
fn lock_acquire_release(bencher: Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let holder = Holder {
        run_id: "20261128T030000Z-0001".into(),
        trigger: Trigger::Schedule,
        pid: std::process::id(),
        started_at: "2026-11-28T03:00:00.000Z".into(),
    };
    bencher.bench(|| drop(ExportLock::acquire(dir.path(), "vip", &holder).unwrap()));
}
