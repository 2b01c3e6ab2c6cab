//! The state folder (default `.cm-export/` beside the pipelines). Per run
//! (`runs/<export>/<run id>/`): what it was started on, the journal of accepted batches that
//! lets an interrupted run resume, and its report. Per export: the lock that keeps runs from
//! overlapping (`locks/`). For all: the run history (`history.redb`).

mod files;
mod fingerprint;
mod history;
mod journal;
mod lock;
mod report;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use files::{create_private, open_private, write_atomic};
pub use fingerprint::{Fingerprint, SendsTo};
pub use history::{HISTORY_FILE, History, HistoryEntry, HistoryError};
pub use journal::{Accepted, AcceptedBatch, Dropped, Journal, JournalError, Progress};
pub use lock::{ExportLock, Holder, LockError};
pub use report::{Rejected, Report, RunStatus, Trigger};

/// `state.json`: written (write-then-rename) when a run starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    pub export: String,
    pub run_id: String,
    pub fingerprint: Fingerprint,
}

pub const STATE_FILE: &str = "state.json";

/// The state folder of the pipelines in `dir` unless told otherwise: `dir/.cm-export`.
pub fn default_dir(dir: &Path) -> PathBuf {
    dir.join(".cm-export")
}
pub const JOURNAL_FILE: &str = "journal.jsonl";
pub const REPORT_FILE: &str = "report.json";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot write the run state `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("export `{export}` has no unfinished run to resume in `{}`; run it without --resume", dir.display())]
    NothingToResume { export: String, dir: PathBuf },
    #[error("cannot resume run {run_id} of export `{export}`: {why}; start a new run without --resume")]
    Changed {
        export: String,
        run_id: String,
        why: String,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl RunState {
    pub fn write(&self, run_dir: &Path) -> Result<(), StateError> {
        let path = run_dir.join(STATE_FILE);
        let err = |source| StateError::Write {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_vec_pretty(self).map_err(|e| err(std::io::Error::other(e)))?;
        std::fs::create_dir_all(run_dir).map_err(err)?;
        write_atomic(&path, &text).map_err(err)
    }
}

/// The one field of a report that says whether its run is over.
#[derive(Deserialize)]
struct Finished {
    status: RunStatus,
}

/// The newest run of `export` under `runs_dir` that did not finish: no report, or a report
/// whose status is `failed`, `interrupted` or `cancelled`.
pub fn last_unfinished(runs_dir: &Path, export: &str) -> Result<(PathBuf, RunState), StateError> {
    let nothing = || StateError::NothingToResume {
        export: export.to_owned(),
        dir: runs_dir.to_owned(),
    };
    let mut runs: Vec<PathBuf> = std::fs::read_dir(runs_dir)
        .map_err(|_| nothing())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(STATE_FILE).is_file())
        .collect();
    runs.sort();
    for dir in runs.into_iter().rev() {
        let finished = std::fs::read(dir.join(REPORT_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<Finished>(&b).ok())
            .is_some_and(|r| matches!(r.status, RunStatus::Succeeded | RunStatus::SucceededWithRejects));
        if finished {
            return Err(nothing());
        }
        if let Some(state) = std::fs::read(dir.join(STATE_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<RunState>(&b).ok())
        {
            return Ok((dir, state));
        }
    }
    Err(nothing())
}
