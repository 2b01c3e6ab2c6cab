//! Where a run keeps its files and its lock, and its checkpoint: where it sends and what it
//! reads (refusing to resume when either changed), and the journal of what it got accepted.

use std::path::{Path, PathBuf};

use super::error::ExportError;
use super::options::{RunOptions, new_run_id, now_rfc3339};
use crate::config::Pipeline;
use crate::state::{
    self, ExportLock, History, HistoryEntry, Holder, Journal, LockError, Progress, RunState, RunStatus, StateError,
    Trigger,
};

pub struct Checkpoint {
    pub journal: Journal,
    /// What earlier attempts of this run got accepted.
    pub earlier: Progress,
}

/// Opens the checkpoint of the run in `run_dir`: checks that a resumed run still reads the
/// same snapshot with the same definition and sends to the same place, records what this
/// attempt runs on, and opens the journal.
pub fn open(run_dir: &Path, now: RunState, resumed: Option<&RunState>) -> Result<Checkpoint, ExportError> {
    if let Some(then) = resumed
        && let Some(why) = now.fingerprint.difference(&then.fingerprint)
    {
        return Err(StateError::Changed {
            export: now.export.clone(),
            run_id: then.run_id.clone(),
            why,
        }
        .into());
    }
    now.write(run_dir)?;
    let (journal, earlier) = Journal::open(&run_dir.join(state::JOURNAL_FILE)).map_err(StateError::from)?;
    if earlier.unanswered_members > 0 {
        tracing::warn!(
            members = earlier.unanswered_members,
            "an earlier attempt sent members without seeing the answer; they are sent again (an import updates, it does not double)"
        );
    }
    Ok(Checkpoint { journal, earlier })
}

/// Where a run keeps its files, and the state of the run it resumes, if any.
pub struct Place {
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub run_id: String,
    pub resumed: Option<RunState>,
    /// The state folder's report first, then the `--report` copy.
    pub reports: Vec<PathBuf>,
    pub rejects: PathBuf,
}

impl Place {
    pub fn find(pipeline: &Pipeline, options: &RunOptions) -> Result<Self, ExportError> {
        let dir = options
            .state_dir
            .clone()
            .unwrap_or_else(|| state::default_dir(pipeline.dir()));
        // Absolute, so reports point at their files from wherever they are read.
        let state_dir = std::path::absolute(&dir).unwrap_or(dir);
        let runs = state_dir.join("runs").join(&pipeline.name);
        let (run_dir, resumed) = match options.resume {
            true => state::last_unfinished(&runs, &pipeline.name).map(|(dir, then)| (dir, Some(then)))?,
            false => (runs.join(options.run_id.clone().unwrap_or_else(new_run_id)), None),
        };
        let run_id = run_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let copy = options
            .report_path
            .as_ref()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()));
        let rejects = match &copy {
            Some(report) => report.with_file_name(format!(
                "{}-rejects.parquet",
                report.file_stem().and_then(|s| s.to_str()).unwrap_or("report")
            )),
            None => run_dir.join("rejects.parquet"),
        };
        let reports = std::iter::once(run_dir.join(state::REPORT_FILE)).chain(copy).collect();
        Ok(Self {
            state_dir,
            run_dir,
            run_id,
            resumed,
            reports,
            rejects,
        })
    }

    /// Takes the export's lock, or records the run as skipped and says who holds it.
    pub async fn lock(&self, export: &str, trigger: Trigger, history: &History) -> Result<ExportLock, ExportError> {
        let holder = Holder {
            run_id: self.run_id.clone(),
            trigger,
            pid: std::process::id(),
            started_at: now_rfc3339(),
        };
        match ExportLock::acquire(&self.state_dir, export, &holder) {
            Ok(lock) => Ok(lock),
            Err(error @ LockError::Held { .. }) => {
                let why = error.to_string();
                let entry = HistoryEntry::without_report(
                    export,
                    &self.run_id,
                    trigger,
                    RunStatus::Skipped,
                    &holder.started_at,
                    why,
                );
                history.append(entry).await;
                Err(error.into())
            }
            Err(error) => Err(error.into()),
        }
    }
}
