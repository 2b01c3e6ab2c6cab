//! `cm-export schedule DIR`: the long-running scheduler.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use cm_export::schedule::{Clock, ScheduleOptions, Scheduler};

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// The folder of pipeline definitions (`*.toml`).
    dir: PathBuf,
    /// The connections file (default: $CM_EXPORT_CONNECTIONS, then DIR/connections.toml, then its parent's).
    #[arg(long)]
    connections: Option<PathBuf>,
    /// The state folder (default: DIR/.cm-export, the same as `run` uses).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Seconds between reads of the folder for added, changed and removed definitions.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
    reload_every: u64,
}

pub async fn schedule(args: ScheduleArgs) -> anyhow::Result<u8> {
    let mut options = ScheduleOptions::new(args.dir);
    options.connections = args.connections;
    options.run.state_dir = args.state_dir;
    options.reload_every = Duration::from_secs(args.reload_every);
    let scheduler = Scheduler::new(options, Clock::System)?;
    scheduler.run(super::shutdown_signal()).await;
    Ok(0)
}
