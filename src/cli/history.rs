//! `cm-export history [EXPORT] [RUN_ID]`: past runs, newest first, or one run's report.

use std::path::{Path, PathBuf};

use clap::Args;
use cm_export::state::{self, History, HistoryEntry, Report};

use super::table::Table;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this export's runs.
    export: Option<String>,
    /// Show this run's report.
    run_id: Option<String>,
    /// At most this many runs.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    /// One JSON object per line (with RUN_ID: the report as JSON).
    #[arg(long)]
    json: bool,
    /// The state folder (default: `pipelines/.cm-export`, where runs of `pipelines/*.toml`
    /// record, else `.cm-export` here).
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

/// The explicit folder, else the first default that has a history.
fn locate(explicit: Option<PathBuf>) -> anyhow::Result<History> {
    let candidates = match explicit {
        Some(dir) => vec![dir],
        None => vec![
            state::default_dir(Path::new("pipelines")),
            state::default_dir(Path::new("")),
        ],
    };
    if let Some(history) = candidates.iter().map(|dir| History::new(dir)).find(History::exists) {
        return Ok(history);
    }
    let looked: Vec<String> = candidates
        .iter()
        .map(|dir| format!("`{}`", History::new(dir).path().display()))
        .collect();
    anyhow::bail!(
        "no run history at {}: nothing has run with this state folder yet (pass --state-dir if the runs use another)",
        looked.join(" or ")
    )
}

pub fn show(args: HistoryArgs) -> anyhow::Result<u8> {
    let history = locate(args.state_dir)?;
    match (&args.export, &args.run_id) {
        (Some(export), Some(run_id)) => one(&history, export, run_id, args.json),
        (export, _) => {
            let entries = history.list(export.as_deref(), args.limit as usize)?;
            if args.json {
                for entry in &entries {
                    println!("{}", serde_json::to_string(entry)?);
                }
            } else if entries.is_empty() {
                match export {
                    Some(export) => println!("no runs of export `{export}` in `{}`", history.path().display()),
                    None => println!("no runs in `{}`", history.path().display()),
                }
            } else {
                println!("{}", table(&entries));
            }
            Ok(0)
        }
    }
}

fn table(entries: &[HistoryEntry]) -> Table {
    let mut table = Table::new([
        "STARTED (UTC)",
        "EXPORT",
        "RUN ID",
        "TRIGGER",
        "STATUS",
        "TOOK",
        "MATCHED",
        "SENT",
        "UNCHANGED",
        "REMOVED",
        "REJECTED",
        "NOTE",
    ]);
    for e in entries {
        let mut note = e.message.clone().unwrap_or_default();
        if note.chars().count() > 80 {
            note = format!("{}…", note.chars().take(79).collect::<String>());
        }
        table.row([
            e.started_at.replace('T', " ").trim_end_matches('Z').to_owned(),
            e.export.clone(),
            e.run_id.clone(),
            e.trigger.as_str().to_owned(),
            e.status.describe().to_owned(),
            format!("{:.1}s", e.duration_seconds),
            e.rows_matched.to_string(),
            e.members_sent.to_string(),
            e.members_unchanged.to_string(),
            e.members_removed.to_string(),
            e.rejected_rows.to_string(),
            note,
        ]);
    }
    table
}

fn one(history: &History, export: &str, run_id: &str, json: bool) -> anyhow::Result<u8> {
    let attempts = history.run(export, run_id)?;
    let Some(latest) = attempts.first() else {
        anyhow::bail!(
            "export `{export}` has no run `{run_id}` in `{}`; `cm-export history {export}` lists its runs",
            history.path().display()
        );
    };
    let report = latest
        .report
        .as_ref()
        .map(|path| {
            std::fs::read(path)
                .map_err(anyhow::Error::from)
                .and_then(|bytes| Ok(serde_json::from_slice::<Report>(&bytes)?))
                .map_err(|e| anyhow::anyhow!("cannot read the report `{}`: {e}", path.display()))
        })
        .transpose()?;
    match (report, json) {
        (Some(report), true) => println!("{}", serde_json::to_string_pretty(&report)?),
        (Some(report), false) => {
            println!("{}", report.summary());
            if let Some(path) = &latest.report {
                println!("  report: {}", path.display());
            }
        }
        (None, true) => println!("{}", serde_json::to_string_pretty(latest)?),
        (None, false) => println!(
            "export `{export}` run {run_id}: {} ({} at {}){}",
            latest.status.describe(),
            latest.trigger.as_str(),
            latest.started_at,
            latest
                .message
                .as_deref()
                .map(|m| format!("\n  {m}"))
                .unwrap_or_default()
        ),
    }
    if attempts.len() > 1 && !json {
        println!("  attempts of this run (resumed), newest first:");
        println!("{}", table(&attempts));
    }
    Ok(0)
}
