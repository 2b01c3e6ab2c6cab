//! The audit log: who did what and when, one JSON line per act, appended to an owner-only
//! file of the state folder and never rewritten.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::state::open_private;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: String,
    /// The user, or `cli` for `cm-export user ...` on the machine.
    pub user: String,
    /// `connection.added`, `consent.given`, `export.saved`, `run.started`, `user.added`, ...
    pub action: String,
    /// What it was done to: a connection, an export, a run, a user.
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot {what} the audit log `{}`", path.display())]
pub struct AuditError {
    what: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

pub struct Audit {
    path: PathBuf,
    /// One writer at a time, so lines never interleave.
    turn: Mutex<()>,
}

impl Audit {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("serve").join("audit.jsonl"),
            turn: Mutex::new(()),
        }
    }

    pub fn record(&self, user: &str, action: &str, target: &str, detail: Option<String>) -> Result<(), AuditError> {
        let entry = AuditEntry {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            user: user.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            detail,
        };
        let error = |source| AuditError {
            what: "append to",
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(&entry).map_err(|e| error(std::io::Error::other(e)))?;
        line.push(b'\n');
        let _turn = self.turn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(error)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        let mut file = open_private(&self.path, &mut options).map_err(error)?;
        file.write_all(&line).map_err(error)?;
        file.sync_data().map_err(error)
    }

    /// The newest `limit` entries, newest first.
    pub fn newest(&self, limit: usize) -> Result<Vec<AuditEntry>, AuditError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(AuditError {
                    what: "read",
                    path: self.path.clone(),
                    source,
                });
            }
        };
        // A line cut short by a crash is skipped, not fatal: the rest still tells the story.
        Ok(text
            .lines()
            .rev()
            .filter_map(|line| serde_json::from_str(line).ok())
            .take(limit)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_appended_and_read_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let audit = Audit::new(dir.path());
        audit.record("ana", "connection.added", "marketing", None).unwrap();
        audit
            .record("ana", "consent.given", "marketing", Some("usable by admins".into()))
            .unwrap();
        let entries = audit.newest(10).unwrap();
        assert_eq!(
            entries.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            ["consent.given", "connection.added"]
        );
        assert_eq!(audit.newest(1).unwrap().len(), 1);
    }
}
