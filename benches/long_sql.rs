//! Planning segments with long `OR` chains (balanced before planning) and a deep `||` chain
//! (not balanced; refused past 1,000 levels): `cargo bench --bench long_sql`. Prints how long
//! `validate` (parse, plan, optimise, physical plan) and `plan` (also reads the data) take,
//! so the time grows with the query's size, not with its square.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::Path;
use std::time::Instant;

use cm_export::config::Pipeline;
use cm_export::export;

fn pipeline(dir: &Path, name: &str, sql: &str) -> Pipeline {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[source]\npath = \"profiles\"\n[[segment]]\nname = \"s\"\nsql = \"{sql}\"\n[destination]\nconnection = \"cm\"\nlist-id = \"L\"\n[mapping]\nemail = \"email\"\n"
        ),
    )
    .unwrap();
    Pipeline::load(&path).unwrap()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    cm_export::sample::generate(&dir.path().join("profiles"), 20_000, 2, 1).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!();
    for terms in [1_500, 5_000, 9_000, 20_000] {
        let or: Vec<String> = (0..terms).map(|i| format!("customer_id = {i}")).collect();
        let p = pipeline(
            dir.path(),
            &format!("or{terms}"),
            &format!("SELECT * FROM profiles WHERE {}", or.join(" OR ")),
        );
        let start = Instant::now();
        runtime.block_on(export::validate(&p)).unwrap();
        let validate = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let plan = runtime
            .block_on(export::plan(&p, &export::RunOptions::default()))
            .unwrap();
        let planned = start.elapsed().as_secs_f64();
        println!(
            "{terms:>6} OR terms: validate {validate:.3} s, plan {planned:.3} s ({} rows matched); validate per 1000 terms {:.3} s",
            plan.rows_matched,
            validate * 1000.0 / terms as f64
        );
    }
    for depth in [250, 500, 900] {
        let chain = vec!["email"; depth].join(" || ");
        let p = pipeline(
            dir.path(),
            &format!("concat{depth}"),
            &format!("SELECT *, {chain} AS x FROM profiles"),
        );
        let start = Instant::now();
        runtime.block_on(export::validate(&p)).unwrap();
        println!(
            "{depth:>6}-level || chain: validate {:.3} s",
            start.elapsed().as_secs_f64()
        );
    }
}
