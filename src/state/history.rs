//! Every run, on demand or scheduled, whatever its outcome, in an embedded store
//! (`<state dir>/history.redb`).
//!
//! `run` and the scheduler are separate processes sharing one file. redb lets one process
//! write at a time, so each call opens the store, does its one transaction and closes it,
//! waiting a little if another process is in the middle of its own.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::report::{Report, RunStatus, Trigger};

pub const HISTORY_FILE: &str = "history.redb";

/// Key: `started_at|export|run_id`, so the table's order is start time; a resumed run is a
/// new attempt of the same run id and gets its own row.
const RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("runs");

/// How long a call waits for another process to close the store.
const BUSY_WAIT: Duration = Duration::from_secs(15);

/// In-process callers take turns: redb refuses a second open of one file in one process.
static OPEN: Mutex<()> = Mutex::new(());

/// One attempt of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub export: String,
    pub run_id: String,
    pub trigger: Trigger,
    pub status: RunStatus,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: String,
    pub duration_seconds: f64,
    pub rows_matched: u64,
    pub members_sent: u64,
    /// Members a `changes` or `mirror` run did not send because they had not changed.
    #[serde(default)]
    pub members_unchanged: u64,
    /// Members a `mirror` run took off the list.
    #[serde(default)]
    pub members_removed: u64,
    pub rejected_rows: u64,
    /// None for a run skipped before it began.
    pub report: Option<PathBuf>,
    /// Why it failed, was cancelled or skipped.
    pub message: Option<String>,
}

impl HistoryEntry {
    /// The entry of a run that has its report.
    pub fn of(report: &Report) -> Self {
        Self {
            export: report.export.clone(),
            run_id: report.run_id.clone(),
            trigger: report.trigger,
            status: report.status,
            started_at: report.started_at.clone(),
            finished_at: report.finished_at.clone(),
            duration_seconds: report.duration_seconds,
            rows_matched: report.rows_matched,
            members_sent: report.members_sent,
            members_unchanged: report.members_unchanged,
            members_removed: report.members_removed,
            rejected_rows: report.rejected_rows(),
            report: report.report_file.clone(),
            message: report.error.clone(),
        }
    }

    /// A run without a report: skipped before it began, or ended abnormally.
    pub fn without_report(
        export: &str,
        run_id: &str,
        trigger: Trigger,
        status: RunStatus,
        at: &str,
        why: String,
    ) -> Self {
        Self {
            export: export.to_owned(),
            run_id: run_id.to_owned(),
            trigger,
            status,
            started_at: at.to_owned(),
            finished_at: at.to_owned(),
            duration_seconds: 0.0,
            rows_matched: 0,
            members_sent: 0,
            members_unchanged: 0,
            members_removed: 0,
            rejected_rows: 0,
            report: None,
            message: Some(why),
        }
    }

    fn key(&self) -> String {
        format!("{}|{}|{}", self.started_at, self.export, self.run_id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot use the run history `{}`", path.display())]
    Store {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("the run history `{}` stayed busy for {}s; another cm-export process holds it", path.display(), BUSY_WAIT.as_secs())]
    Busy { path: PathBuf },
    #[error("the run history `{}` holds an unreadable entry", path.display())]
    Entry {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The history of one state folder.
#[derive(Debug, Clone)]
pub struct History {
    path: PathBuf,
}

impl History {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join(HISTORY_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether any run was ever recorded here.
    pub fn exists(&self) -> bool {
        self.path.is_file()
    }

    pub fn record(&self, entry: &HistoryEntry) -> Result<(), HistoryError> {
        let value = serde_json::to_vec(entry).map_err(|source| self.entry_error(source))?;
        self.with_db(true, |db| {
            let tx = db.begin_write()?;
            {
                let mut runs = tx.open_table(RUNS)?;
                runs.insert(entry.key().as_str(), value.as_slice())?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Records from async code, off the runtime's threads. A run whose history cannot be
    /// written keeps its outcome (its report is on disk), and the failure is logged loudly.
    pub async fn append(&self, entry: HistoryEntry) {
        let history = self.clone();
        match tokio::task::spawn_blocking(move || history.record(&entry)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!("the run is not in the history: {}", crate::error_text::chain(&error)),
            Err(error) => tracing::error!("the run is not in the history: {error}"),
        }
    }

    /// Newest first; only `export`'s when given; at most `limit` (at least one).
    pub fn list(&self, export: Option<&str>, limit: usize) -> Result<Vec<HistoryEntry>, HistoryError> {
        if !self.exists() {
            return Ok(Vec::new());
        }
        let raw = self.with_db(false, |db| {
            let tx = db.begin_read()?;
            let runs = match tx.open_table(RUNS) {
                Ok(runs) => runs,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut raw = Vec::new();
            for row in runs.iter()?.rev() {
                let (key, value) = row?;
                let wanted = export.is_none_or(|e| export_of(key.value()) == Some(e));
                if wanted {
                    raw.push(value.value().to_vec());
                    if raw.len() >= limit {
                        break;
                    }
                }
            }
            Ok(raw)
        })?;
        raw.iter()
            .map(|bytes| serde_json::from_slice(bytes).map_err(|source| self.entry_error(source)))
            .collect()
    }

    /// Every attempt of one run, newest first.
    pub fn run(&self, export: &str, run_id: &str) -> Result<Vec<HistoryEntry>, HistoryError> {
        Ok(self
            .list(Some(export), usize::MAX)?
            .into_iter()
            .filter(|e| e.run_id == run_id)
            .collect())
    }

    fn entry_error(&self, source: serde_json::Error) -> HistoryError {
        HistoryError::Entry {
            path: self.path.clone(),
            source,
        }
    }

    fn with_db<T>(&self, create: bool, f: impl Fn(&Database) -> Result<T, redb::Error>) -> Result<T, HistoryError> {
        let _turn = OPEN.lock().unwrap_or_else(|p| p.into_inner());
        let store_error = |source: redb::Error| HistoryError::Store {
            path: self.path.clone(),
            source: Box::new(source),
        };
        if create {
            // Made (or made again) owner-only before redb fills it: it names runs and paths.
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(false);
            super::files::open_private(&self.path, &mut options).map_err(|e| store_error(e.into()))?;
        }
        let deadline = std::time::Instant::now() + BUSY_WAIT;
        let mut pause = Duration::from_millis(5);
        loop {
            let opened = if create {
                Database::create(&self.path)
            } else {
                Database::open(&self.path)
            };
            match opened {
                Ok(db) => return f(&db).map_err(store_error),
                Err(DatabaseError::DatabaseAlreadyOpen) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(DatabaseError::DatabaseAlreadyOpen) => {
                    return Err(HistoryError::Busy {
                        path: self.path.clone(),
                    });
                }
                Err(e) => return Err(store_error(e.into())),
            }
        }
    }
}

/// The export in a key `started_at|export|run_id`; neither end holds a `|`, the name may.
fn export_of(key: &str) -> Option<&str> {
    key.split_once('|')
        .and_then(|(_, rest)| rest.rsplit_once('|'))
        .map(|(export, _)| export)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(export: &str, run_id: &str, started_at: &str, status: RunStatus) -> HistoryEntry {
        HistoryEntry {
            export: export.into(),
            run_id: run_id.into(),
            trigger: Trigger::Schedule,
            status,
            started_at: started_at.into(),
            finished_at: started_at.into(),
            duration_seconds: 1.5,
            rows_matched: 10,
            members_sent: 9,
            members_unchanged: 0,
            members_removed: 0,
            rejected_rows: 1,
            report: None,
            message: None,
        }
    }

    #[test]
    fn lists_newest_first_by_export_with_a_limit() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::new(dir.path());
        assert_eq!(history.list(None, 10).unwrap(), vec![]);
        history
            .record(&entry("vip", "r1", "2026-11-28T01:00:00Z", RunStatus::Succeeded))
            .unwrap();
        history
            .record(&entry("weekly", "r2", "2026-11-28T02:00:00Z", RunStatus::Failed))
            .unwrap();
        history
            .record(&entry("vip", "r3", "2026-11-28T03:00:00Z", RunStatus::Skipped))
            .unwrap();
        // A resumed run: same id, a later attempt.
        history
            .record(&entry("vip", "r1", "2026-11-28T04:00:00Z", RunStatus::Interrupted))
            .unwrap();

        let ids = |entries: Vec<HistoryEntry>| entries.into_iter().map(|e| e.run_id).collect::<Vec<_>>();
        assert_eq!(ids(history.list(None, 10).unwrap()), ["r1", "r3", "r2", "r1"]);
        assert_eq!(ids(history.list(Some("vip"), 2).unwrap()), ["r1", "r3"]);
        assert_eq!(ids(history.list(Some("nope"), 2).unwrap()), Vec::<String>::new());
        assert_eq!(export_of("2026-11-28T01:00:00.000Z|a|b|r9"), Some("a|b"));
        let attempts = history.run("vip", "r1").unwrap();
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0].status, RunStatus::Interrupted);
        assert_eq!(attempts[1].status, RunStatus::Succeeded);
    }
}
