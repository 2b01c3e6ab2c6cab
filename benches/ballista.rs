//! Queries on a Ballista cluster: `cargo bench --features ballista-cluster --bench ballista`.
//!
//! Starts the stock scheduler and one executor (the `ballista-cluster` examples, from the
//! same build) on this machine, then times `plan` and `run` of the end-to-end benchmark's
//! export (10,000,000 rows in 8 files, or `CM_BENCH_ROWS`; about 1,000,000 members, to
//! `cm-export emulator` in its own process) in process and on the cluster, alternately, three
//! times each, and prints the medians and their ratios.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{BIN, Measured, connections, emulator, json_number, measure, rows, run, snapshot, threshold};

const LIST: &str = "ba11157aba11157aba11157aba11157a";
const ROUNDS: usize = 3;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn example(name: &str) -> PathBuf {
    let release = Path::new(BIN).parent().unwrap();
    let path = release.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo bench --features ballista-cluster --bench ballista` builds it",
        path.display()
    );
    path
}

/// A scheduler and one executor on this machine; returns the scheduler's `df://` URL once
/// the executor is registered.
fn cluster(work: &Path) -> (String, Vec<Child>) {
    let scheduler = free_port();
    let (flight, grpc, health) = (free_port(), free_port(), free_port());
    let spawn = |name: &str, args: &[String]| {
        Command::new(example(name))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let scheduler_args = [
        "--bind-host",
        "127.0.0.1",
        "--external-host",
        "127.0.0.1",
        "--bind-port",
    ]
    .map(String::from)
    .into_iter()
    .chain([scheduler.to_string()])
    .collect::<Vec<_>>();
    let executor_args: Vec<String> = [
        ("--bind-host", "127.0.0.1".to_owned()),
        ("--external-host", "127.0.0.1".to_owned()),
        ("--bind-port", flight.to_string()),
        ("--bind-grpc-port", grpc.to_string()),
        ("--bind-health-port", health.to_string()),
        ("--scheduler-host", "127.0.0.1".to_owned()),
        ("--scheduler-port", scheduler.to_string()),
        ("--scheduler-connect-timeout-seconds", "60".to_owned()),
        ("--work-dir", work.display().to_string()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_owned(), value])
    .collect();
    let processes = vec![
        spawn("ballista-scheduler", &scheduler_args),
        spawn("ballista-executor", &executor_args),
    ];
    for _ in 0..600 {
        if ready(health) {
            return (format!("df://127.0.0.1:{scheduler}"), processes);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the Ballista executor did not register with its scheduler in 60 s");
}

/// Whether the executor's `/readyz` answers 200 (it is registered with the scheduler).
fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut answer = String::new();
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

fn plan(pipeline: &Path, engine: &str) -> Measured {
    let m = measure(
        Command::new(BIN)
            .args(["plan", "--json", "--progress", "never", "--engine", engine])
            .arg(pipeline)
            .env("CM_BENCH_KEY", "bench-key"),
    );
    assert_eq!(m.status, 0, "plan on {engine} failed");
    m
}

fn median(mut walls: Vec<f64>) -> f64 {
    walls.sort_by(f64::total_cmp);
    walls[walls.len() / 2]
}

fn main() {
    let rows = rows();
    let data = snapshot(rows);
    let work = tempfile::tempdir().unwrap();
    let (engine, mut processes) = cluster(work.path());
    let (mut emulator, base) = emulator(LIST);
    connections(work.path(), &base);
    let define = |name: &str, with: &str| {
        let pipeline = work.path().join(format!("{name}.toml"));
        std::fs::write(
            &pipeline,
            format!(
                "[source]\npath = \"{}\"\n[[segment]]\nname = \"valuable\"\nsql = \"SELECT * FROM profiles WHERE lifetime_value > {}\"\n[destination]\nconnection = \"bench\"\nlist-id = \"{LIST}\"\n[mapping]\nemail = \"email\"\nname = \"full_name\"\nconsent-to-track = {{ column = \"consent\" }}\n[options]\nbatch-size = 1000\nconcurrency = 8\nmax-profiles = 2000000\n{with}",
                data.display(),
                threshold(rows)
            ),
        )
        .unwrap();
        pipeline
    };
    let here = define("here", "");
    let there = define("there", &format!("[engine]\nballista = \"{engine}\"\n"));

    let (mut plans, mut runs) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    let (mut members_here, mut members_there) = (0.0, 0.0);
    for round in 0..ROUNDS {
        plans.0.push(plan(&here, "in-process").wall.as_secs_f64());
        plans.1.push(plan(&here, &engine).wall.as_secs_f64());
        let (m, report) = run(&here, &work.path().join(format!("here-{round}.json")));
        runs.0.push(m.wall.as_secs_f64());
        members_here = json_number(&report, "members_sent");
        let (m, report) = run(&there, &work.path().join(format!("there-{round}.json")));
        runs.1.push(m.wall.as_secs_f64());
        members_there = json_number(&report, "members_sent");
    }
    for process in processes.iter_mut().chain([&mut emulator]) {
        let _ = process.kill();
        let _ = process.wait();
    }
    let (plan_here, plan_there) = (median(plans.0), median(plans.1));
    let (run_here, run_there) = (median(runs.0), median(runs.1));
    println!(
        "\ncm-export in process and on a one-executor Ballista cluster ({engine}): {rows} rows, median of {ROUNDS}"
    );
    println!("plan in process {plan_here:>7.2} s   on the cluster {plan_there:>7.2} s");
    println!("run  in process {run_here:>7.2} s   on the cluster {run_there:>7.2} s");
    println!("members sent: in process {members_here:.0}, on the cluster {members_there:.0}");
    println!("plan cluster / in process: {:.2}", plan_there / plan_here);
    println!("run cluster / in process: {:.2}", run_there / run_here);
}
