//! What a run is told beyond its definition, and why it may be asked to stop.

use std::path::PathBuf;

use super::progress::ProgressMode;
use crate::campaign_monitor::ClientOptions;
use crate::retry::Backoff;
use crate::state::Trigger;

/// How to run, beyond what the pipeline says.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where a copy of the report goes; the state folder always keeps one.
    pub report_path: Option<PathBuf>,
    /// Default [`state::default_dir`] of the pipeline's folder.
    pub state_dir: Option<PathBuf>,
    pub progress: ProgressMode,
    pub backoff: Backoff,
    pub client: ClientOptions,
    pub sandbox: bool,
    /// Continue the last unfinished run of this export instead of starting a new one.
    pub resume: bool,
    pub trigger: Trigger,
    /// The id of a new run; default [`new_run_id`].
    pub run_id: Option<String>,
    /// `--full`: a `changes` or `mirror` export sends every member, not only the changes.
    pub full: bool,
    /// `--allow-removals N`: mirror may remove this many past `max-removals`, this run.
    pub allow_removals: u64,
    /// Where the run's counts can be read while it goes.
    pub live: Option<std::sync::Arc<super::progress::Live>>,
}

impl Default for RunOptions {
    /// A library caller gets no progress display unless it asks for one.
    fn default() -> Self {
        Self {
            report_path: None,
            state_dir: None,
            progress: ProgressMode::Never,
            backoff: Backoff::default(),
            client: ClientOptions::default(),
            sandbox: false,
            resume: false,
            trigger: Trigger::default(),
            run_id: None,
            full: false,
            allow_removals: 0,
            live: None,
        }
    }
}

/// Why a run is asked to stop before its next batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// A signal: the run ends `interrupted` and `--resume` continues it.
    Interrupt,
    /// Its definition or connection went away or was disabled: the run ends `cancelled`.
    Cancel(String),
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Interrupt => f.write_str("interrupted"),
            StopReason::Cancel(why) => write!(f, "cancelled: {why}"),
        }
    }
}

/// A new run id: UTC time and a random suffix, so ids sort by start time.
pub fn new_run_id() -> String {
    format!(
        "{}-{:04x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        rand::random::<u16>()
    )
}

/// Milliseconds: the history orders runs by start time, and two may start in one second.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
